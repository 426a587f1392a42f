"""`--workers N` through real processes and signals."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from support import (
    Hammer,
    KetchProcess,
    RawConnection,
    free_port,
    wait_for,
    wait_workers,
    worker_pids,
)


def _start(
    *args: str, workers: int = 2, app: str = "support.apps:scope_json", **env: str
) -> tuple[KetchProcess, int]:
    port = free_port()
    ketch = KetchProcess([app, "--port", str(port), "--workers", str(workers), *args], env=env)
    wait_workers(ketch.proc.pid, workers)
    # the parent's line, then one per worker once it serves
    ketch.wait_for_output(r"(?s)" + r"ketch running on.*" * (workers + 1), timeout=20)
    return ketch, port


def _pid_answering(port: int) -> int:
    pid: int = httpx.get(f"http://127.0.0.1:{port}/").json()["pid"]
    return pid


def test_workers_share_the_port() -> None:
    ketch, port = _start(workers=2)
    with ketch:
        pids = worker_pids(ketch.proc.pid)
        assert len(pids) == 2
        seen = set()
        wait_for(lambda: seen.add(_pid_answering(port)) or seen == pids, timeout=20)
        assert "Started parent process" in ketch.output


def test_a_killed_worker_is_replaced() -> None:
    ketch, port = _start(workers=2)
    with ketch:
        before = worker_pids(ketch.proc.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(ketch.proc.pid) - before) == 1, timeout=20)
        after = worker_pids(ketch.proc.pid)
        assert victim not in after
        assert len(after) == 2
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/").status_code == 200)


def test_startup_failure_stops_everything() -> None:
    port = free_port()
    args = ["support.apps:startup_fails", "--port", str(port), "--workers", "2", "--lifespan", "on"]
    with KetchProcess(args) as ketch:
        assert ketch.wait(30) == 3
    assert "failed to start (exit status 3): stopping" in ketch.output
    assert ketch.output.count("Started worker process") == 2  # no restart loop


def test_blocked_event_loop_is_dumped_and_replaced() -> None:
    port = free_port()
    args = [
        "support.apps:blocking",
        "--port",
        str(port),
        "--workers",
        "2",
        "--timeout-worker-healthcheck",
        "1",
    ]
    with KetchProcess(args) as ketch:
        wait_workers(ketch.proc.pid, 2)
        ketch.wait_for_output(r"(?s)(ketch running on.*){3}", timeout=20)
        with RawConnection(port, timeout=30) as conn:
            conn.send(b"GET /?seconds=60 HTTP/1.1\r\nHost: x\r\n\r\n")
            found = ketch.wait_for_output(
                r"Worker \[(\d+)\] did not answer its health check "
                r"within 1s",
                timeout=20,
            )
            stuck = int(found.group(1))
            ketch.wait_for_output(r"in run|time\.sleep", timeout=10)  # its stack, dumped
            assert conn.is_closed(timeout=10)
        wait_for(lambda: stuck not in worker_pids(ketch.proc.pid), timeout=20)
        wait_workers(ketch.proc.pid, 2)
        assert 'File "' in ketch.output  # faulthandler's frames
        assert "apps.py" in ketch.output


def test_frozen_worker_is_killed_and_replaced() -> None:
    ketch, _ = _start("--timeout-worker-healthcheck", "1", workers=2)
    with ketch:
        before = worker_pids(ketch.proc.pid)
        frozen = min(before)
        os.kill(frozen, signal.SIGSTOP)
        ketch.wait_for_output(rf"Worker \[{frozen}\] did not answer its health check", timeout=20)
        wait_for(lambda: frozen not in worker_pids(ketch.proc.pid), timeout=20)
        wait_workers(ketch.proc.pid, 2)


def test_ttin_adds_and_ttou_removes_workers() -> None:
    ketch, port = _start(workers=2)
    with ketch:
        parent = ketch.proc.pid
        ketch.signal(signal.SIGTTIN)
        wait_workers(parent, 3)
        ketch.signal(signal.SIGTTOU)
        wait_workers(parent, 2)
        ketch.signal(signal.SIGTTOU)
        wait_workers(parent, 1)
        ketch.signal(signal.SIGTTOU)  # never below one
        ketch.wait_for_output("keeping the last worker")
        assert len(worker_pids(parent)) == 1
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200


def test_five_sighups_under_load_fail_no_request() -> None:
    ketch, port = _start(workers=2)
    with ketch, Hammer(f"http://127.0.0.1:{port}/", threads=4) as hammer:
        parent = ketch.proc.pid
        hammer.wait_for_requests(50)
        for _ in range(5):
            before = worker_pids(parent)
            ketch.signal(signal.SIGHUP)
            # every old worker is replaced, one at a time
            wait_for(lambda b=before: not (worker_pids(parent) & b), timeout=60)
            wait_workers(parent, 2, timeout=30)
            hammer.wait_for_requests(50)
    assert hammer.failures == []
    assert hammer.ok > 500


def test_sigterm_drains_and_exits_0() -> None:
    port = free_port()
    args = [
        "support.apps:slow",
        "--port",
        str(port),
        "--workers",
        "2",
        "--timeout-graceful-shutdown",
        "5",
    ]
    with KetchProcess(args) as ketch:
        wait_workers(ketch.proc.pid, 2)
        ketch.wait_for_output(r"(?s)startup complete.*startup complete", timeout=20)
        with RawConnection(port, timeout=20) as conn:
            conn.send(b"GET /?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            ketch.wait_for_output("slow request started")
            started = time.monotonic()
            ketch.signal(signal.SIGTERM)
            assert conn.read_response().body == b"slept 1.0"
        assert ketch.wait(15) == 0
        assert time.monotonic() - started < 5 + 5
    assert "Stopping parent process" in ketch.output


def test_max_requests_replaces_workers_without_failures() -> None:
    ketch, port = _start("--limit-max-requests", "40", "--limit-max-requests-jitter", "10")
    with ketch, Hammer(f"http://127.0.0.1:{port}/", threads=4) as hammer:
        first = worker_pids(ketch.proc.pid)
        hammer.wait_for_requests(300)
        wait_for(lambda: not (worker_pids(ketch.proc.pid) & first), timeout=30)
    assert "Maximum request limit" in ketch.output
    assert hammer.failures == []


def test_a_worker_at_its_request_limit_serves_until_its_replacement_does() -> None:
    ketch, port = _start("--limit-max-requests", "30")
    with ketch, Hammer(f"http://127.0.0.1:{port}/", threads=4) as hammer:
        first = "|".join(str(pid) for pid in worker_pids(ketch.proc.pid))
        # both workers reach the limit together; either replacement may be ready first
        handover = ketch.wait_for_output(
            rf"Worker \[(\d+)\] serves in place of worker \[({first})\] \(max-requests\)",
            timeout=30,
        )
        new, old = handover[1], handover[2]
        ketch.wait_for_output(rf"Finished server process \[{old}\]", timeout=30)
        hammer.wait_for_requests(50)
    assert hammer.failures == []
    output = ketch.output
    assert f"Worker [{old}] reached its request limit; replacing it" in output
    # the replacement listened before the old worker stopped: capacity never dropped
    serving = output.index("ketch running on", output.index(f"Started server process [{new}]"))
    assert serving < output.index(f"Finished server process [{old}]")


def test_sigttou_while_every_worker_waits_out_its_crash_back_off() -> None:
    ketch, port = _start(workers=2)
    with ketch:
        parent = ketch.proc.pid
        for pid in worker_pids(parent):
            os.kill(pid, signal.SIGKILL)
        # both died soon after starting: no worker runs during the second delay
        ketch.wait_for_output("waiting 1.0s")
        ketch.signal(signal.SIGTTOU)
        ketch.wait_for_output("Received SIGTTOU: 1 workers")
        wait_workers(parent, 1)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/").status_code == 200, timeout=20)
        assert ketch.proc.poll() is None
    assert "Traceback" not in ketch.output


def _slow_replacements(tmp_path: Path, *args: str) -> tuple[KetchProcess, int]:
    """Two workers; those started from now on take 30 s to serve."""
    slow = tmp_path / "slow-start"
    ketch, port = _start(*args, app="support.apps:slow_start", KETCH_TEST_SLOW_START=str(slow))
    slow.write_text("30")
    return ketch, port


def test_sigterm_behind_another_signal_stops_a_rolling_restart_at_once(tmp_path: Path) -> None:
    ketch, _ = _slow_replacements(tmp_path, "--timeout-graceful-shutdown", "1")
    with ketch:
        ketch.signal(signal.SIGHUP)
        ketch.wait_for_output("slow startup")  # the first replacement is starting
        # Python runs pending handlers in signal-number order: SIGHUP (1) is
        # queued before SIGTERM (15) whatever the timing
        ketch.signal(signal.SIGHUP)
        ketch.signal(signal.SIGTTIN)
        ketch.signal(signal.SIGTERM)
        stopping = time.monotonic()
        ketch.wait_for_output(r"Stopping \d+ worker", timeout=5)
        assert time.monotonic() - stopping < 2
        # the replacement still starting is stopped too, within the drain time
        assert ketch.wait(1 + 5 + 5) == 0
    assert "Traceback" not in ketch.output


def test_health_checks_go_on_during_a_rolling_restart(tmp_path: Path) -> None:
    ketch, port = _slow_replacements(tmp_path, "--timeout-worker-healthcheck", "1")
    with ketch:
        parent = ketch.proc.pid
        frozen = min(worker_pids(parent))
        ketch.signal(signal.SIGHUP)
        ketch.wait_for_output("slow startup")
        os.kill(frozen, signal.SIGSTOP)
        # found and replaced while the restart waits for its slow replacement
        ketch.wait_for_output(rf"Worker \[{frozen}\] did not answer its health check", timeout=10)
        wait_for(lambda: frozen not in worker_pids(parent), timeout=10)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200


def test_a_leaking_worker_is_replaced_under_load_without_failures() -> None:
    # a worker starts at about 30 MiB and leaks 64 KiB per request
    ketch, port = _start("--limit-worker-memory", "48", app="support.apps:leaky")
    with ketch, Hammer(f"http://127.0.0.1:{port}/", threads=2) as hammer:
        parent = ketch.proc.pid
        first = worker_pids(parent)
        wait_for(lambda: not (worker_pids(parent) & first), timeout=60)
        second = worker_pids(parent) - first
        wait_for(lambda: not (worker_pids(parent) & second), timeout=60)
        hammer.wait_for_requests(50)
    assert hammer.failures == []
    output = ketch.output
    replaced = re.findall(r"Worker \[(\d+)\] uses \d+ MiB \(--limit-worker-memory 48\)", output)
    assert {int(pid) for pid in replaced} >= first | second
    assert re.search(r"serves in place of worker \[\d+\] \(memory\), which drains", output)


def test_workers_are_replaced_at_the_end_of_their_lifetime_without_failures() -> None:
    args = ("--limit-worker-lifetime", "2", "--limit-worker-lifetime-jitter", "1")
    ketch, port = _start(*args)
    with ketch, Hammer(f"http://127.0.0.1:{port}/", threads=2) as hammer:
        parent = ketch.proc.pid
        first = worker_pids(parent)
        wait_for(lambda: not (worker_pids(parent) & first), timeout=30)
        hammer.wait_for_requests(50)
    assert hammer.failures == []
    output = ketch.output
    aged = re.findall(r"Worker \[(\d+)\] has run for \d+s \(--limit-worker-lifetime 2s\)", output)
    assert {int(pid) for pid in aged} >= first
    assert "(lifetime), which drains" in output


def test_one_worker_is_recycled_without_workers_option() -> None:
    """The limits need a parent to start the successor: ketch runs one for them."""
    port = free_port()
    args = ["support.apps:scope_json", "--port", str(port), "--limit-worker-lifetime", "1"]
    with KetchProcess(args) as ketch:
        ketch.wait_for_output(r"(?s)Started parent process.*ketch running on", timeout=20)
        first = ketch.wait_for_output(r"Started worker process \[(\d+)\]")[1]
        with Hammer(f"http://127.0.0.1:{port}/", threads=2) as hammer:
            ketch.wait_for_output(rf"serves in place of worker \[{first}\] \(lifetime\)", 20)
            hammer.wait_for_requests(50)
    assert hammer.failures == []


@pytest.mark.parametrize("workers_env", ["3"])
def test_web_concurrency(workers_env: str) -> None:
    port = free_port()
    with KetchProcess(
        ["support.apps:hello", "--port", str(port)], env={"WEB_CONCURRENCY": workers_env}
    ) as ketch:
        wait_workers(ketch.proc.pid, 3)
