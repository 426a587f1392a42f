"""What the benchmark driver and the soak share: free ports, server processes
(each in its own process group, always stopped), /proc readings, wrk.

Standard library only. Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
BIN_DIR = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def raise_nofile() -> None:
    """Lift the open-files limit to the hard limit: 1,000 idle connections need it,
    on both sides (the servers inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds have passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def worker_pids(parent: int) -> set[int]:
    """The worker processes of a `--workers` parent: its children started by
    multiprocessing's spawn."""
    pids: set[int] = set()
    for task in Path(f"/proc/{parent}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.add(int(child))
    return pids


class RequestLoad:
    """Threads sending GETs as fast as they can, half on keep-alive connections and
    half on a new connection per request, counting every failure (an exception or
    a status other than 200)."""

    def __init__(self, port: int, threads: int = 4, timeout: float = 10.0) -> None:
        import threading

        self.port = port
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(index % 2 == 0,), daemon=True)
            for index in range(threads)
        ]

    def _run(self, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                failure = None if response.status == 200 else f"status {response.status}"
                if not keep_alive or response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append(failure)
        if conn is not None:
            conn.close()

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        start = self.ok
        if not wait_until(lambda: self.ok - start >= count, timeout):
            raise TimeoutError(f"fewer than {count} requests answered in {timeout} s")

    def __enter__(self) -> RequestLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)


# --- /proc ---------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (a server and any workers it forked)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat_fields(int(entry))
            except (OSError, ValueError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds used so far by the live processes of the group."""
    ticks = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError, ValueError):
            fields = _stat_fields(pid)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def group_memory_kib(pgid: int) -> dict[str, int]:
    """RSS and PSS (shared pages split fairly) summed over the group, in KiB."""
    rss = pss = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"rss_kib": rss, "pss_kib": pss}


# --- server processes ----------------------------------------------------------------------
class ServerProcess:
    """A server command in its own session (process group); `stop()` signals exactly
    that group: SIGINT, then SIGTERM, then SIGKILL, each with a bounded wait."""

    def __init__(self, argv: list[str], log: IO[bytes] | int, cwd: Path = BENCH_DIR) -> None:
        env = dict(os.environ)
        # `apps:hello` imports under every server, whatever its --app-dir handling
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid

    def _gone(self) -> bool:
        return self.proc.poll() is not None and not group_pids(self.pgid)

    def stop(self) -> None:
        for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if self._gone():
                break
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            wait_until(self._gone, wait)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pgid)

    def memory_kib(self) -> dict[str, int]:
        return group_memory_kib(self.pgid)


@contextlib.contextmanager
def running(argv: list[str], log: IO[bytes]) -> Iterator[ServerProcess]:
    server = ServerProcess(argv, log)
    try:
        yield server
    finally:
        server.stop()


def http_request(
    port: int, method: str = "GET", path: str = "/", body: bytes = b"", timeout: float = 5.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(server: ServerProcess, port: int, timeout: float = 20.0) -> None:
    """Poll until the server answers a GET / with 200; fail if it exits or times out."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with code {server.proc.returncode} at startup")
        try:
            status, _ = http_request(port, timeout=2.0)
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(0.05)
            continue
        if status == 200:
            return
        raise RuntimeError(f"server answered {status} to GET /")
    raise RuntimeError(f"server not ready within {timeout:.0f}s: {last}")


def read_head(sock: socket.socket) -> bytes:
    """A response head, with whatever arrived after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    return data


# --- wrk -----------------------------------------------------------------------------------
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    return float(match.group(1)) * _TO_MS[match.group(2)] if match else math.nan


def parse_wrk(out: str) -> dict[str, Any]:
    """Throughput, latency percentiles (wrk --latency), request and error counts."""
    result: dict[str, Any] = {}
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    result["rate"] = float(match.group(1)) if match else math.nan
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(match.group(1)) if match else math.nan
    match = re.search(r"(\d+) requests in", out)
    result["requests"] = int(match.group(1)) if match else 0
    errors = 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        errors += sum(int(n) for n in match.groups())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match:
        errors += int(match.group(1))
    result["errors"] = errors
    return result


def write_lua(directory: Path, body_size: int) -> Path:
    """A wrk script that POSTs a body of `body_size` bytes."""
    path = directory / f"post-{body_size}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("k", {body_size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return path


def run_wrk(
    wrk: str,
    port: int,
    *,
    duration: float,
    connections: int,
    path: str = "/",
    lua: Path | None = None,
    threads: int = 1,
    extra: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """One wrk run against 127.0.0.1:port; killed if it overruns by 30 s."""
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    argv += ["--timeout", "2s", "--latency", *(extra or [])]
    if lua is not None:
        argv += ["-s", str(lua)]
    argv.append(f"http://{HOST}:{port}{path}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return parse_wrk(proc.stdout), shlex.join(argv) + "\n" + proc.stdout
