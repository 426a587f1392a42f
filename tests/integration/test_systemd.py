"""systemd: socket activation and sd_notify, through the real `systemd-socket-activate`.

`systemd-socket-activate` (Debian's `systemd` package) listens as a .socket
unit does and, on the first connection, execs the service's command with the
sockets as file descriptors 3, 4, ... and LISTEN_FDS/LISTEN_PID set, as systemd
does. The tests bind the notify socket themselves (NOTIFY_SOCKET, as systemd
does for `Type=notify`) and read what ketch tells systemd, in order.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from support import Hammer, KetchProcess, RawConnection, free_port, wait_for, worker_pids
from support.deploy import KETCH, VENV, app_dir, program, render

WATCHDOG_USEC = 2_000_000  # WatchdogSec=2: ketch sends WATCHDOG=1 every second
SYSTEMD_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET", "WATCHDOG_USEC")

Message = dict[str, str]


class NotifySocket:
    """The socket systemd reads sd_notify(3) messages from, bound by the test: a
    path, or an abstract name when `address` starts with '@'. Collects every
    message with the time.monotonic() it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, Message]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def wait(
        self, predicate: Callable[[Message], bool], after: int = 0, timeout: float = 20
    ) -> int:
        """The index of the first message from `after` on that `predicate` accepts."""

        def found() -> int | None:
            with self._lock:
                for index in range(after, len(self.messages)):
                    if predicate(self.messages[index][1]):
                        return index + 1  # truthy, even for the first message
            return None

        return int(wait_for(found, timeout=timeout, interval=0.02)) - 1

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def times(self, key: str) -> list[float]:
        with self._lock:
            return [at for at, fields in self.messages if key in fields]

    def kinds(self) -> list[str]:
        """READY, RELOADING and STOPPING in the order they came."""
        with self._lock:
            return [
                key
                for _, fields in self.messages
                for key in fields
                if key in ("READY", "RELOADING", "STOPPING")
            ]

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _unit(name: str, **values: object) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(render(name, **values))
    return parser


def _activate(*listen: str, notify: NotifySocket) -> list[str]:
    """systemd-socket-activate with the sockets, the notify socket and the watchdog."""
    command = [program("systemd-socket-activate", "apt-get install systemd")]
    for address in listen:
        command += ["--listen", address]
    command += ["-E", f"NOTIFY_SOCKET={notify.address}", "-E", f"WATCHDOG_USEC={WATCHDOG_USEC}"]
    return command


def _systemd_environment(pid: int) -> list[str]:
    """The systemd variables a process was started with."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = [entry.split(b"=", 1)[0].decode() for entry in entries if entry]
    return [name for name in names if name in SYSTEMD_VARIABLES]


def _block_stops_the_watchdog(notify: NotifySocket, ketch: KetchProcess, port: int) -> None:
    """A request blocks a worker's event loop for 5 s: no WATCHDOG=1 from the
    moment its health check is overdue (2 s at most) until it answers again."""
    notify.wait(lambda m: "WATCHDOG" in m, after=notify.count())  # beating now
    with RawConnection(port, timeout=20) as conn:
        conn.send(b"GET /block?s=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        ketch.wait_for_output("blocking request started")
        blocked = time.monotonic()
        assert conn.read_response().body == b"blocked"
        unblocked = time.monotonic()
    starved = [t for t in notify.times("WATCHDOG") if blocked + 2.5 < t < unblocked - 0.5]
    assert starved == [], "WATCHDOG=1 while a worker was stuck"
    notify.wait(lambda m: "WATCHDOG" in m, after=notify.count())  # and again once it answers


def test_workers_with_two_activated_sockets_tell_systemd_each_step(tmp_path: Path) -> None:
    """The documented units: a TCP and a UNIX socket handed over, READY once both
    workers serve, RELOADING and READY again across SIGHUP under load, STATUS
    with the requests served, WATCHDOG only while the workers answer their
    health checks, STOPPING at SIGTERM."""
    port, unix = free_port(), str(tmp_path / "ketch.sock")
    listen = _unit("ketch.socket", listen=f"127.0.0.1:{port}")["Socket"]
    service = _unit("ketch.service", venv=VENV, app_dir=app_dir(tmp_path))["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert "--fd" not in service["ExecStart"]  # the sockets are found without it
    # the blocked worker must outlive the watchdog's notice: ketch kills it after 20 s
    argv = [*shlex.split(service["ExecStart"]), "--timeout-worker-healthcheck", "20"]
    with NotifySocket(str(tmp_path / "notify")) as notify:
        command = [*_activate(listen["ListenStream"], unix, notify=notify), *argv]
        with KetchProcess([], command=command, cwd=service["WorkingDirectory"]) as ketch:
            ketch.wait_for_output(r"Listening on .*ketch\.sock")
            # the first connection starts the service; it is answered once ketch serves
            url = f"http://127.0.0.1:{port}/"
            assert httpx.get(url, timeout=30).status_code == 200
            ready = notify.wait(lambda m: m.get("READY") == "1")
            assert notify.messages[ready][1]["STATUS"].startswith("2 workers, ")
            parent = ketch.proc.pid
            workers = worker_pids(parent)
            assert len(workers) == 2
            assert all(_systemd_environment(pid) == [] for pid in workers)
            uds = httpx.Client(transport=httpx.HTTPTransport(uds=unix))
            with uds:
                pids = {uds.get("http://localhost/").json()["pid"] for _ in range(20)}
            assert pids <= workers
            notify.wait(lambda m: m.get("STATUS", "").endswith(" 21 requests"))

            with Hammer(url, threads=2) as hammer:
                hammer.wait_for_requests(20)
                mark = notify.count()
                ketch.signal(signal.SIGHUP)
                reloading = notify.wait(lambda m: m.get("RELOADING") == "1", after=mark)
                sent_at = int(notify.messages[reloading][1]["MONOTONIC_USEC"])
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                assert 0 <= now - sent_at < 10_000_000
                notify.wait(lambda m: m.get("READY") == "1", after=reloading, timeout=30)
                ketch.wait_for_output(r"Every worker restarted \(SIGHUP\)")  # the log may lag
                hammer.wait_for_requests(20)
            assert hammer.failures == []

            _block_stops_the_watchdog(notify, ketch, port)

            ketch.signal(signal.SIGTERM)
            notify.wait(lambda m: m.get("STOPPING") == "1")
            assert ketch.wait(int(service["TimeoutStopSec"])) == 0
    assert notify.kinds() == ["READY", "RELOADING", "READY", "STOPPING"]
    beats = notify.times("WATCHDOG")
    assert len(beats) >= 5
    assert "Serving 2 socket(s) passed by systemd" in ketch.output


def test_one_process_tells_systemd_from_its_event_loop(tmp_path: Path) -> None:
    """Without --workers: READY once it serves, WATCHDOG from the event loop (a
    blocked loop starves it), STOPPING at SIGTERM; an abstract notify socket."""
    unix = str(tmp_path / "ketch.sock")
    with NotifySocket(f"@ketch-test-{uuid.uuid4().hex}") as notify:
        command = [*_activate(unix, notify=notify), KETCH, "main:app"]
        with KetchProcess([], command=command, cwd=app_dir(tmp_path)) as ketch:
            ketch.wait_for_output(r"Listening on .*ketch\.sock")
            with httpx.Client(transport=httpx.HTTPTransport(uds=unix), timeout=30) as client:
                assert client.get("http://localhost/").json()["pid"] == ketch.proc.pid
            notify.wait(lambda m: m.get("READY") == "1")
            notify.wait(lambda m: "WATCHDOG" in m, after=notify.count())
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(20)
                sock.connect(unix)
                sock.sendall(b"GET /block?s=4 HTTP/1.1\r\nHost: x\r\n\r\n")
                ketch.wait_for_output("blocking request started")
                blocked = time.monotonic()
                assert b"blocked" in sock.recv(4096)
                unblocked = time.monotonic()
            # the loop sends it every second: none while it was blocked (the one
            # overdue goes out as the loop resumes, with the response)
            starved = [t for t in notify.times("WATCHDOG") if blocked + 1.5 < t < unblocked - 0.5]
            assert starved == []
            notify.wait(lambda m: "WATCHDOG" in m, after=notify.count())
            ketch.signal(signal.SIGTERM)
            assert ketch.wait(15) == 0
    assert notify.kinds() == ["READY", "STOPPING"]
    assert not os.path.exists(unix) or Path(unix).is_socket()  # systemd's file, left alone


def test_a_datagram_socket_from_systemd_is_a_one_line_error(tmp_path: Path) -> None:
    port = free_port()
    with NotifySocket(str(tmp_path / "notify")) as notify:
        command = [*_activate(f"127.0.0.1:{port}", notify=notify), KETCH, "main:app"]
        command.insert(1, "--datagram")
        with KetchProcess([], command=command, cwd=app_dir(tmp_path)) as ketch:
            ketch.wait_for_output("Listening on")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"wake up", ("127.0.0.1", port))  # starts the service
            assert ketch.wait(15) != 0
    assert "systemd's socket (fd 3) is not a stream socket" in ketch.output
    assert "Traceback" not in ketch.output


def test_sockets_passed_to_another_process_are_not_taken() -> None:
    """LISTEN_PID names another process (inherited from a parent systemd started):
    ketch binds its own address and does not touch descriptor 3."""
    port = free_port()
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    with KetchProcess(["support.apps:hello", "--port", str(port)], env=env) as ketch:
        assert ketch.port() == port
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert "passed by systemd" not in ketch.output


def test_the_peers_do_what_the_page_says() -> None:
    """docs/systemd.md: Uvicorn has neither protocol; gunicorn takes activated
    sockets and says READY=1 when its arbiter boots, and has no watchdog."""
    import gunicorn
    import uvicorn

    def source(package: object) -> str:
        folder = Path(str(getattr(package, "__file__", ""))).parent
        return "\n".join(path.read_text() for path in sorted(folder.rglob("*.py")))

    uvicorn_source = source(uvicorn)
    assert "LISTEN_FDS" not in uvicorn_source
    assert "NOTIFY_SOCKET" not in uvicorn_source
    gunicorn_source = source(gunicorn)
    assert "LISTEN_FDS" in gunicorn_source
    assert 'sd_notify("READY=1\\nSTATUS=Gunicorn arbiter booted"' in gunicorn_source
    assert "WATCHDOG" not in gunicorn_source
