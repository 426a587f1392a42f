"""Shared test helpers: servers in a thread or a process, raw HTTP clients, waiting.

Every server started here listens on 127.0.0.1 (or a UNIX socket in a temp
dir), is bounded in time, and is stopped when its context manager exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core import Config, Server

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = TESTS_DIR.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


# --- a server in a thread of the test process --------------------------------------------
@dataclass
class Running:
    server: Server
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.is_ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def context(self) -> Any:
        return self.server.context


@contextlib.contextmanager
def serve(app: Any, *, start_timeout: float = 10.0, **options: Any) -> Iterator[Running]:
    """Run a ketch server for `app` in a thread, on 127.0.0.1 and a free port
    unless `uds`/`fd` say otherwise. Logging is left to pytest (caplog)."""
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    options.setdefault("log_config", None)
    options.setdefault("lifespan", "off")
    config = Config(app, **options)
    server = Server(config)
    running = Running(server, threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # reported to the test below
            running.errors.append(exc)

    thread = running.thread = threading.Thread(target=target, name="ketch-test-server", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=start_timeout)
        if not server.started:
            raise RuntimeError(f"server did not start: {running.errors or server.exit_code}")
        address = server.listeners[0].sock.getsockname()
        running.port = address[1] if isinstance(address, tuple) else 0
        yield running
    finally:
        server.request_exit()
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            server.request_exit()
            thread.join(timeout=5)
        assert not thread.is_alive(), "the test server did not stop"


# --- a server in its own process ----------------------------------------------------------
class KetchProcess:
    """`python -m ketch ARGS` in its own session, its output collected as it comes."""

    def __init__(
        self,
        args: list[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR), *filter(None, [full_env.get("PYTHONPATH")])]
        )
        full_env.pop("KETCH_APP", None)
        full_env.update(env or {})
        self.args = args
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "ketch"]), *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def wait_for_output(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            match = regex.search(self.output)
            if match is None and self.proc.poll() is not None:
                self._reader.join(timeout=2)
                match = regex.search(self.output)
                if match is None:
                    raise AssertionError(
                        f"ketch exited ({self.proc.returncode}) before printing {pattern!r}:\n"
                        + self.output
                    )
            return match

        try:
            match: re.Match[str] = wait_for(found, timeout=timeout, interval=0.02)
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.output}") from None
        return match

    def wait_started(self, timeout: float = 15.0) -> str:
        """Wait for the 'running on' line; the URL (or socket) it names."""
        match = self.wait_for_output(r"ketch running on (.+?) \(Press CTRL", timeout)
        return match.group(1)

    def port(self, timeout: float = 15.0) -> int:
        url = self.wait_started(timeout)
        return int(url.rsplit(":", 1)[1])

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the exit status; afterwards `output` holds everything written."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ketch did not exit within {timeout}s:\n{self.output}") from None
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        """End the process group: SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        else:
            # children it may have left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reader.join(timeout=2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> KetchProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_ketch(
    args: list[str],
    timeout: float = 30.0,
    command: list[str] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m ketch ARGS` to completion (for --help, --version, errors)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("KETCH_APP", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [*(command or [sys.executable, "-m", "ketch"]), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


# --- raw HTTP over a socket -----------------------------------------------------------------
@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class RawConnection:
    """A plain socket for sending exactly the bytes a test wants and reading
    responses as they come off the wire."""

    def __init__(
        self,
        port: int | None = None,
        *,
        uds: str | None = None,
        host: str = "127.0.0.1",
        timeout: float = 5.0,
    ) -> None:
        if uds is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(uds)
        else:
            assert port is not None
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_until(self, marker: bytes, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer!r}")
        data, _, self.buffer = self.buffer.partition(marker)
        return data + marker

    def read_exactly(self, size: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buffer) < size:
            if not self._fill(deadline):
                raise ConnectionError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_close(self, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while self._fill(deadline):
            pass
        data, self.buffer = self.buffer, b""
        return data

    def read_response(self, timeout: float | None = None, head_only: bool = False) -> RawResponse:
        """One response: by Content-Length, chunked, or until the server closes."""
        head = self.read_until(b"\r\n\r\n", timeout)
        lines = head[:-4].decode("latin-1").split("\r\n")
        _, status, *reason = lines[0].split(" ", 2)
        headers = [tuple(line.split(":", 1)) for line in lines[1:]]
        pairs = [(k.strip(), v.strip()) for k, v in headers]
        response = RawResponse(int(status), reason[0] if reason else "", pairs, b"", head)
        code = response.status
        if head_only or code < 200 or code in (204, 304):
            return response
        length = response.header("content-length")
        if response.header("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line = self.read_until(b"\r\n", timeout)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n", timeout)
                    break
                body += self.read_exactly(size, timeout)
                self.read_exactly(2, timeout)
            response.body = body
        elif length is not None:
            response.body = self.read_exactly(int(length), timeout)
        else:
            response.body = self.read_to_close(timeout)
        return response

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                try:
                    chunk = self.sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    return True
                if not chunk:
                    return True
                self.buffer += chunk
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> RawResponse:
    """Send `data` on a new connection and read one response."""
    with RawConnection(port, timeout=timeout) as conn:
        conn.send(data)
        return conn.read_response()


# Ports for servers the tests start by number. bind(0) would hand out the same
# free port to two pytest-xdist workers in turn (or to a client connection's
# local end), and a test whose server then failed to bind would talk to another
# test's server. So each worker takes ports from a block of its own, below the
# kernel's ephemeral range (which bind(0) and client connections use).
_PORT_BLOCK = 1000
_PORT_BASE = 10000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _worker_ports() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _PORT_BASE + (int(worker) if worker.isdigit() else 0) * _PORT_BLOCK
    if first + _PORT_BLOCK > _ephemeral_low():
        return  # no room below the ephemeral range here: the kernel's choice
    while True:  # round and round: the servers of earlier tests are stopped
        yield from range(first, first + _PORT_BLOCK)


_PORTS = _worker_ports()


def free_port() -> int:
    """A free port on 127.0.0.1 that no other test of the run is given."""
    for _ in range(_PORT_BLOCK):
        port = next(_PORTS, None)
        if port is None:
            break
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or lingering): the next one
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


# --- processes and load ------------------------------------------------------------------
def child_pids(parent: int) -> set[int]:
    """The processes a parent has started (every thread's children)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{parent}/task").glob("*"):
        try:
            pids.update(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def wait_workers(parent: int, count: int, timeout: float = 20.0) -> set[int]:
    """Wait until the `--workers` parent `parent` has exactly `count` worker
    processes; their pids."""
    found: set[int] = set()

    def exactly() -> bool:
        nonlocal found
        found = worker_pids(parent)
        return len(found) == count

    wait_for(exactly, timeout=timeout)
    return found


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def worker_pids(parent: int) -> set[int]:
    """The worker processes of a ketch parent (multiprocessing spawn children)."""
    pids: set[int] = set()
    for child in child_pids(parent):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.add(child)
    return pids


class LoadThreads:
    """Client threads that count the requests answered (`ok`) and every
    failure, started and stopped as a context manager."""

    join_timeout = 30.0

    def __init__(self, threads: list[threading.Thread]) -> None:
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = threads

    def wait_for_requests(self, count: int, timeout: float = 20.0) -> None:
        start = self.ok
        wait_for(lambda: self.ok - start >= count, timeout=timeout)

    def __enter__(self) -> Any:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.join_timeout)


class Hammer(LoadThreads):
    """Threads sending requests as fast as they can, on keep-alive connections
    and on new connections, counting every failure (exception or non-200)."""

    def __init__(self, url: str, threads: int = 4, timeout: float = 10.0) -> None:
        import httpx

        super().__init__(
            [
                threading.Thread(target=self._run, args=(index % 2 == 0,), daemon=True)
                for index in range(threads)
            ]
        )
        self.url = url
        self._httpx = httpx
        self._timeout = timeout
        self.join_timeout = timeout + 5

    def _run(self, keep_alive: bool) -> None:
        httpx = self._httpx
        client = httpx.Client(timeout=self._timeout) if keep_alive else None
        try:
            while not self._stop.is_set():
                try:
                    if client is not None:
                        response = client.get(self.url)
                    else:
                        response = httpx.get(self.url, timeout=self._timeout)
                    if response.status_code == 200:
                        with self._lock:
                            self.ok += 1
                    else:
                        with self._lock:
                            self.failures.append(f"status {response.status_code}")
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                client.close()
