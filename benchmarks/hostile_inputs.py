"""Send every hostile input of tests/support/hostile.py to ketch and to Uvicorn,
each with both parsers, and print what each answered.

    hatch run python benchmarks/hostile_inputs.py

Every server runs on 127.0.0.1 in a subprocess and is stopped at the end.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH_DIR, free_port

ROOT = BENCH_DIR.parent
# The table of hostile inputs is the tests' own (tests/support/hostile.py, which
# needs nothing but the standard library): loaded from its file, so that the
# benchmark compares servers on exactly what the tests check.
_spec = importlib.util.spec_from_file_location("hostile", ROOT / "tests/support/hostile.py")
assert _spec is not None and _spec.loader is not None
hostile = sys.modules["hostile"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)
CASES, CLOSE, send_case = hostile.CASES, hostile.CLOSE, hostile.send_case

BIN = Path(sys.executable).parent
SERVERS = {
    "ketch h11": [str(BIN / "ketch"), "--http", "h11"],
    "ketch httptools": [str(BIN / "ketch"), "--http", "httptools"],
    "uvicorn h11": [str(BIN / "uvicorn"), "--http", "h11"],
    "uvicorn httptools": [str(BIN / "uvicorn"), "--http", "httptools"],
}


def start(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
    process = subprocess.Popen(
        [*command, "apps:echo", "--port", str(port), "--log-level", "critical"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{command} did not start")


def answer(port: int, data: bytes) -> str:
    try:
        status, _ = send_case(port, data, timeout=3)
    except TimeoutError:
        return "hang (3 s)"
    except OSError as exc:
        return f"error {exc.errno}"
    return "close" if status == CLOSE else str(status)


def main() -> None:
    results: dict[str, dict[str, str]] = {}
    for name, command in SERVERS.items():
        process, port = start(command)
        try:
            results[name] = {case.id: answer(port, case.data) for case in CASES}
        finally:
            process.terminate()
            process.wait(10)
    names = list(SERVERS)
    print("| input | expected | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for case in CASES:
        expected = "close" if case.expected == CLOSE else str(case.expected)
        row = [results[name][case.id] for name in names]
        print(f"| {case.what} | {expected} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
