"""`http.response.pathsend`: a file the app names, sent by the server (the
kernel's sendfile on asyncio's loop over cleartext, read-and-write under TLS
and uvloop), through real sockets: whole files, HEAD, the app's
Content-Length, errors the app hears, files that shrink or vanish while they
are sent, clients that leave or stop reading, and a 1 GiB file with the
server's memory read from /proc."""

from __future__ import annotations

import array
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import KetchProcess, RawConnection, memory_mib, serve, wait_for
from support.deploy import certificates
from support.extension_apps import pathsend

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> Path:
    """A file of `size` bytes whose every 4-byte word says where it is, so
    that a misplaced block shows."""
    words = array.array("I", range((size + 3) // 4))
    if sys.byteorder == "little":
        words.byteswap()
    path.write_bytes(words.tobytes()[:size])
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "empty": make_file(tmp_path / "empty", 0),
        "small": make_file(tmp_path / "small", 1000),
        # more than a write of the small-file path, and more than one step of sendfile
        "large": make_file(tmp_path / "large", 3 * MiB + 7),
    }


@pytest.mark.parametrize("name", ["empty", "small", "large"])
def test_the_file_is_sent(
    files: dict[str, Path], name: str, http_impl: str, loop_impl: str
) -> None:
    path = files[name]
    with (
        serve(pathsend, http=http_impl, loop=loop_impl) as running,
        httpx.Client(base_url=running.url) as client,
    ):
        for _ in range(2):  # and the connection is kept for the next request
            response = client.get("/", params={"path": str(path)})
            assert response.status_code == 200
            assert response.headers["content-length"] == str(path.stat().st_size)
            assert response.content == path.read_bytes()
        assert len(running.context.connections) == 1


def test_http_1_0_gets_a_content_length(files: dict[str, Path], http_impl: str) -> None:
    path = files["large"]
    with serve(pathsend, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET /?path=%s HTTP/1.0\r\n\r\n" % str(path).encode())
        response = conn.read_response()
        assert response.header("content-length") == str(path.stat().st_size)
        assert response.body == path.read_bytes()
        assert conn.is_closed()


def test_head_sends_the_length_and_no_body(files: dict[str, Path], http_impl: str) -> None:
    path = files["large"]
    with serve(pathsend, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"HEAD /?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(path).encode())
        head = conn.read_response(head_only=True)
        assert head.header("content-length") == str(path.stat().st_size)
        # nothing follows the head: the next answer on the connection is the next request's
        conn.send(b"GET /?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["small"]).encode())
        assert conn.read_response().body == files["small"].read_bytes()


def test_the_apps_content_length(
    files: dict[str, Path], http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = files["large"]
    size = path.stat().st_size
    with serve(pathsend, http=http_impl) as running, httpx.Client(base_url=running.url) as client:
        same = client.get("/", params={"path": str(path), "length": size})
        assert same.content == path.read_bytes()
        # a file that grew since the app read its size: the length the app announced
        fewer = client.get("/", params={"path": str(path), "length": 2 * MiB + 1})
        assert fewer.content == path.read_bytes()[: 2 * MiB + 1]
        # a file shorter than announced: the app hears it before anything is sent
        more = client.get("/", params={"path": str(path), "length": size + 1})
        assert more.status_code == 500
    assert "Exception in ASGI application" in caplog.text
    assert f"{size} bytes, fewer than the response's Content-Length ({size + 1})" in caplog.text


@pytest.mark.parametrize(
    ("path", "heard"),
    [
        ("relative/file", 'RuntimeError("http.response.pathsend needs an absolute path, not '),
        ("/no/such/file", "FileNotFoundError(2, 'No such file or directory')"),
        ("/tmp", "RuntimeError('http.response.pathsend: /tmp is not a regular file')"),
    ],
)
def test_errors_the_app_hears(path: str, heard: str, http_impl: str) -> None:
    with serve(pathsend, http=http_impl) as running:
        response = httpx.get(running.url, params={"path": path, "catch": 1})
    assert response.status_code == 200
    assert response.text.startswith(f"heard {heard}")


def test_an_error_the_app_does_not_catch_is_a_500(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with serve(pathsend) as running, httpx.Client(base_url=running.url) as client:
        response = client.get("/", params={"path": "relative"})
        assert response.status_code == 500
        assert response.headers["connection"] == "close"
        # and the server serves on
        assert client.get("/", params={"path": str(files["small"])}).status_code == 200
    assert "Exception in ASGI application" in caplog.text
    assert "needs an absolute path, not 'relative'" in caplog.text


def test_the_access_log_counts_the_files_bytes(
    files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The request's line has the file's size, and says when a file came short."""
    caplog.set_level(logging.INFO, "ketch.access")
    shrinking = make_file(tmp_path / "shrinking", 32 * MiB)
    with serve(pathsend, access_log_format="%(U)s %(s)s %(B)s %(X)s") as running:
        for name in ("small", "large"):
            httpx.get(running.url, params={"path": str(files[name])})
        client = SlowReader(running.port, shrinking)
        try:
            client.read_some(100_000)
            os.truncate(shrinking, 0)
            client.read_to_end(64 * MiB)
        finally:
            client.close()
        wait_for(lambda: caplog.text.count("/ 200") == 3, timeout=5)
    lines = [line.split("INFO")[-1] for line in caplog.text.splitlines()]
    assert any(line.endswith(f"/ 200 {files['small'].stat().st_size} -") for line in lines)
    assert any(line.endswith(f"/ 200 {files['large'].stat().st_size} -") for line in lines)
    assert any(re.search(r"/ 200 \d+ X$", line) for line in lines)


def test_a_fifo_does_not_block_the_server(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with serve(pathsend) as running:
        response = httpx.get(running.url, params={"path": str(fifo), "catch": 1}, timeout=5)
    assert "is not a regular file" in response.text


class SlowReader:
    """A client that asks for a file and reads it only when told, with a small
    receive buffer, so that the server is held mid-file."""

    def __init__(self, port: int, path: Path, context: ssl.SSLContext | None = None) -> None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        self.sock: Any = (
            context.wrap_socket(raw, server_hostname="127.0.0.1") if context is not None else raw
        )
        self.sock.sendall(b"GET /?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(path).encode())
        self.received = b""

    def read_some(self, size: int) -> None:
        while len(self.received) < size:
            chunk = self.sock.recv(65536)
            assert chunk, "closed early"
            self.received += chunk

    def read_to_end(self, limit: int) -> str:
        """Read until the server closes (or `limit` bytes): how it ended."""
        try:
            while len(self.received) < limit:
                chunk = self.sock.recv(1024 * 1024)
                if not chunk:
                    return "closed"
                self.received += chunk
        except (ConnectionResetError, ssl.SSLError):
            return "reset"
        return "read it all"

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("tls", [False, True])
def test_a_file_that_shrinks_while_it_is_sent(
    tmp_path: Path, loop_impl: str, tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A clear error in the log, the connection closed, nothing hangs."""
    path = make_file(tmp_path / "shrinking", 32 * MiB)
    options, context = tls_options(tmp_path) if tls else ({}, None)
    with serve(pathsend, loop=loop_impl, **options) as running:
        client = SlowReader(running.port, path, context)
        try:
            client.read_some(100_000)
            os.truncate(path, 0)
            assert client.read_to_end(64 * MiB) in ("closed", "reset")
        finally:
            client.close()
        assert len(client.received) < 32 * MiB
        wait_for(lambda: "shrank while it was sent" in caplog.text, timeout=5)
        # and the server serves on
        make_file(path, 10)
        assert httpx.get(running.url, params={"path": str(path)}, verify=False).content == (
            path.read_bytes()
        )
    assert f"File {path} shrank while it was sent" in caplog.text


def test_a_file_removed_while_it_is_sent_is_sent_whole(tmp_path: Path, loop_impl: str) -> None:
    """Once opened, a file is the server's until sent, whatever happens to its name."""
    path = make_file(tmp_path / "removed", 8 * MiB)
    expected = path.read_bytes()
    with serve(pathsend, loop=loop_impl) as running:
        client = SlowReader(running.port, path)
        try:
            client.read_some(100_000)
            path.unlink()
            head_size = client.received.index(b"\r\n\r\n") + 4
            client.read_some(head_size + len(expected))
        finally:
            client.close()
    assert client.received[head_size:] == expected


@pytest.mark.parametrize("tls", [False, True])
def test_a_client_that_leaves_mid_file(
    tmp_path: Path, loop_impl: str, tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's send() raises ClientDisconnected (an OSError), the server serves on."""
    caplog.set_level(logging.DEBUG, "ketch.error")
    path = make_file(tmp_path / "file", 32 * MiB)
    options, context = tls_options(tmp_path) if tls else ({}, None)
    with serve(pathsend, loop=loop_impl, **options) as running:
        client = SlowReader(running.port, path, context)
        client.read_some(100_000)
        client.close()
        wait_for(lambda: "ClientDisconnected" in caplog.text, timeout=10)
        wait_for(lambda: not running.context.tasks, timeout=5)
        response = httpx.get(running.url, params={"path": str(path)}, verify=False, timeout=10)
        assert response.content == path.read_bytes()
    assert "Exception in ASGI application after the client left" in caplog.text


@pytest.mark.parametrize("tls", [False, True])
def test_a_client_that_stops_reading_is_cut_off(
    tmp_path: Path, loop_impl: str, tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """--timeout-write holds for files too, whether the kernel or the transport writes them."""
    caplog.set_level(logging.INFO, "ketch.error")
    path = make_file(tmp_path / "file", 64 * MiB)
    options, context = tls_options(tmp_path) if tls else ({}, None)
    with serve(pathsend, loop=loop_impl, timeout_write=1, **options) as running:
        client = SlowReader(running.port, path, context)
        try:
            client.read_some(10_000)
            wait_for(lambda: "write timeout" in caplog.text, timeout=10)
            assert client.read_to_end(64 * MiB) in ("closed", "reset")
        finally:
            client.close()
        wait_for(lambda: not running.context.tasks, timeout=5)
    assert len(client.received) < 64 * MiB


def test_a_client_that_reads_slowly_but_steadily_is_never_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The kernel's sendfile (asyncio's loop) goes in steps the client must take
    within --timeout-write: short ones for a slow client, so that it is held to
    what the transport's flow control would ask of it."""
    caplog.set_level(logging.INFO, "ketch.error")
    path = make_file(tmp_path / "file", 12 * MiB)
    with serve(pathsend, loop="asyncio", timeout_write=1) as running:
        client = SlowReader(running.port, path)
        try:
            head = client.sock.recv(200)
            size = len(head) - head.index(b"\r\n\r\n") - 4
            # about 5 MB/s: five times the pace the largest step (1 MiB) needs
            while size < 12 * MiB:
                time.sleep(0.05)
                for _ in range(4):
                    if size == 12 * MiB:
                        break
                    chunk = client.sock.recv(64 * 1024)
                    assert chunk, f"cut off after {size} bytes"
                    size += len(chunk)
        finally:
            client.close()
    assert "write timeout" not in caplog.text


def tls_options(directory: Path) -> tuple[dict[str, Any], ssl.SSLContext]:
    certs = certificates(directory)
    options = {"ssl_certfile": str(certs.certfile), "ssl_keyfile": str(certs.keyfile)}
    return options, certs.client_context()


@pytest.mark.parametrize(
    ("loop", "tls", "size"),
    [("asyncio", False, 1024 * MiB), ("uvloop", False, 1024 * MiB), ("uvloop", True, 256 * MiB)],
)
def test_a_huge_file_keeps_the_servers_memory_flat(
    tmp_path: Path, loop: str, tls: bool, size: int
) -> None:
    """A sparse file of 1 GiB (256 MiB under TLS, which costs more CPU) read by
    a client as fast as it can: the server's peak RSS grows by a few MiB."""
    path, warm = tmp_path / "huge", tmp_path / "warm"
    for file, length in ((path, size), (warm, 2 * MiB)):
        with file.open("wb") as opened:
            opened.truncate(length)
    args = ["support.extension_apps:pathsend", "--port", "0", "--loop", loop]
    context = None
    if tls:
        options, context = tls_options(tmp_path)
        args += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    with KetchProcess(args) as process:
        port = process.port()
        pid = process.proc.pid
        assert download(port, warm, context) == 2 * MiB
        before = memory_mib(pid, "VmRSS")
        received = download(port, path, context)
        peak = memory_mib(pid, "VmHWM")
    assert received == size
    assert peak - before < 24, f"RSS {before:.1f} MiB before, peak {peak:.1f} MiB"


def download(port: int, path: Path, context: ssl.SSLContext | None) -> int:
    """GET the file as fast as a socket reads: the size of the body."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with (
        context.wrap_socket(raw, server_hostname="127.0.0.1") if context is not None else raw
    ) as sock:
        sock.sendall(b"GET /?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(path).encode())
        buffer = bytearray(4 * MiB)
        view = memoryview(buffer)
        received = sock.recv_into(view)
        head, _, rest = bytes(view[:received]).partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = len(rest)
        while body < length:
            count = sock.recv_into(view)
            assert count, f"closed after {body} of {length} bytes"
            body += count
    return body


def test_many_files_at_once(tmp_path: Path, loop_impl: str) -> None:
    """Concurrent transfers each get their own file, whole."""
    paths = [make_file(tmp_path / f"f{n}", MiB + n * 4099) for n in range(8)]
    results: dict[int, bytes] = {}
    with serve(pathsend, loop=loop_impl) as running:

        def fetch(n: int) -> None:
            results[n] = httpx.get(running.url, params={"path": str(paths[n])}, timeout=10).content

        threads = [threading.Thread(target=fetch, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    assert all(results[n] == paths[n].read_bytes() for n in range(8))


def test_pathsend_after_body_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_file(tmp_path / "file", 100)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.pathsend", "path": str(path)})

    with serve(app) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.read_until(b"\r\n\r\n")
        assert conn.is_closed()
    assert "Expected ASGI message 'http.response.body', but got 'http.response.pathsend'" in (
        caplog.text
    )
