"""Failed requests across rolling restarts: ketch against Uvicorn, run the same way.

Each server runs `--workers 2` on a loopback port; four client threads (two on
keep-alive connections, two opening a connection per request) send requests
without pause while the parent gets SIGHUP five times, each time once every
worker has been replaced and the pool serves again. Any exception or non-200
answer counts as a failure.

    hatch run python benchmarks/restart_under_load.py [--sighups 5] [--server ketch uvicorn]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from common import BENCH_DIR, RequestLoad, free_port, wait_until, worker_pids

COMMANDS = {
    "ketch": ["ketch", "apps:hello"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "apps:hello"],
}


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    if not wait_until(predicate, timeout):
        raise TimeoutError(f"condition not met within {timeout} s")


def pool_size(parent: int, workers: int) -> Callable[[], bool]:
    return lambda: len(worker_pids(parent)) == workers


def measure(name: str, sighups: int, workers: int) -> tuple[int, int, list[str]]:
    port = free_port()
    command = [*COMMANDS[name], "--port", str(port), "--workers", str(workers)]
    command += ["--no-access-log", "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(BENCH_DIR)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    try:
        wait_for(pool_size(server.pid, workers), timeout=30)
        with RequestLoad(port, threads=4) as hammer:
            hammer.wait_for_requests(50, timeout=30)
            for _ in range(sighups):
                before = worker_pids(server.pid)
                server.send_signal(signal.SIGHUP)
                wait_for(lambda b=before: not (worker_pids(server.pid) & b), timeout=60)  # type: ignore[misc]
                wait_for(pool_size(server.pid, workers), timeout=30)
                hammer.wait_for_requests(50, timeout=30)
        return hammer.ok, len(hammer.failures), hammer.failures
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sighups", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    args = parser.parse_args()
    print(f"{'server':8} {'ok':>7} {'failed':>7}  first failures")
    for name in args.server:
        started = time.monotonic()
        ok, failed, failures = measure(name, args.sighups, args.workers)
        took = time.monotonic() - started
        print(f"{name:8} {ok:7d} {failed:7d}  {failures[:3]} ({took:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
