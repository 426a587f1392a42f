"""glibc's malloc set for request bodies (ketch.core.malloc), in a real ketch
process, and the operator's own setting left alone."""

from __future__ import annotations

import platform

import httpx
import pytest
from support import KetchProcess, free_port

_LIBC, _VERSION = platform.libc_ver()
pytestmark = pytest.mark.skipif(
    _LIBC != "glibc" or tuple(map(int, _VERSION.split(".")[:2])) < (2, 33),
    reason="the tuning is for glibc's malloc; the probe needs mallinfo2 (glibc 2.33)",
)


def _where_a_3_mib_block_goes(**env: str) -> tuple[str, str]:
    port = free_port()
    args = ["support.apps:malloc_probe", "--port", str(port), "--log-level", "debug"]
    with KetchProcess(args, env=env) as ketch:
        ketch.wait_started()
        where = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
        return where, ketch.output


def test_a_body_under_4_mib_comes_from_the_heap() -> None:
    where, output = _where_a_3_mib_block_goes()
    assert where == "heap"
    assert "malloc: blocks under 4 MiB from the heap, up to 16 MiB kept free" in output


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
    ],
    ids=["MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"],
)
def test_the_operators_malloc_settings_win(env: dict[str, str]) -> None:
    where, output = _where_a_3_mib_block_goes(**env)
    assert where == "mmap"
    assert f"malloc left as set by {next(iter(env))}" in output
