"""What a hostile or merely unusual client does to one HTTP/1.1 connection:
pipelining mixed with errors, streaming, upgrades, bytes after the last
request. Each test is the regression test of a defect, through real sockets
on both parsers where both were affected."""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import time
from typing import Any

import pytest
from support import RawConnection, exchange, serve, wait_for
from support.websocket import OP_TEXT, RawWebSocket, upgrade_request

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def busy_stream(scope: Any, receive: Any, send: Any) -> None:
    """/stream sends one-byte chunks as fast as the loop turns, for three seconds
    (longer than a linger); anything else is a plain 200."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/stream":
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"ok"})


def test_one_connection_cannot_stop_the_deadline_sweep(http_impl: str) -> None:
    """A streamed response with an invalid request pipelined behind it: whatever
    that connection does, the other connections' deadlines still fire."""
    with serve(busy_stream, http=http_impl, timeout_keep_alive=1) as running:
        with RawConnection(running.port) as hostile:
            hostile.send(
                b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /no-host HTTP/1.1\r\n\r\n"  # a 400, pipelined
            )
            # For four seconds (past the two-second linger a hasty error answer
            # would arm), every new idle connection is closed by its deadline.
            started = time.monotonic()
            while time.monotonic() - started < 4.0:
                with RawConnection(running.port) as idle:
                    idle.send(GET)
                    assert idle.read_response().status == 200
                    assert idle.is_closed(timeout=3), "the keep-alive deadline did not fire"
        assert exchange(running.port, GET).status == 200


# --- one app for the scenarios below -----------------------------------------------------
class Router:
    """/poll answers after 0.3 s and records that it finished; /echo answers with the
    body; /unread and /deny answer without reading it; /framings sends both
    Content-Length and Transfer-Encoding; /scope answers with what the scope says;
    a WebSocket is accepted, sent "hi" and closed."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hi"})
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        headers: list[tuple[bytes, bytes]] = []
        body = b"ok"
        if path == "/poll":
            await asyncio.sleep(0.3)
            body = b"polled"
        elif path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        elif path == "/deny":
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no"})
            self.finished.append(path)
            return
        elif path == "/framings":
            headers = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
            body = b"hello"
        elif path == "/scope":
            names = [name.decode() for name, _ in scope["headers"]]
            body = json.dumps({"type": scope["type"], "headers": names}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.finished.append(path)


def _no_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_an_error_answer_waits_for_the_response_before_it(
    http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 2: the 400 of a pipelined request comes after the whole response of
    the request before it, which is not cut short; then the connection closes."""
    app = Router()
    with serve(app, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET /no-host HTTP/1.1\r\n\r\n")
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"polled")
        assert conn.read_response().status == 400
        assert conn.is_closed()
    assert app.finished == ["/poll"]
    _no_errors(caplog)


def test_a_streamed_response_is_not_interrupted_by_an_error_answer(
    http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 2: the error answer never lands inside a chunked body."""
    with serve(busy_stream, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
        first = conn.read_response(timeout=10)
        assert first.status == 200
        assert first.header("transfer-encoding") == "chunked"
        assert first.body.endswith(b"ok") and set(first.body[:-2]) == {ord("x")}
        assert conn.read_response().status == 400
        assert conn.is_closed()
    _no_errors(caplog)


def test_bytes_after_an_error_answer_are_dropped(
    http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 2: more input after the answer to a bad request: nothing is written
    after the half-close, nothing fails, the server serves on."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host
        assert conn.read_response().status == 400
        for _ in range(20):
            try:
                conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\ngarbage\r\n\r\n")
            except OSError:
                break  # the server closed after its linger: fine
        assert conn.is_closed()
        assert exchange(running.port, GET).status == 200
    _no_errors(caplog)


def test_connection_header_tokens_are_not_substrings(http_impl: str) -> None:
    """Defect 3: `Connection: upgradex` asks for no upgrade: a plain request, answered
    at once, on a connection that serves on."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(
            b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: upgradex\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = conn.read_response()
        assert response.status == 200
        assert json.loads(response.body)["type"] == "http"
        conn.send(GET)
        assert conn.read_response().status == 200


def test_a_pipelined_upgrade_waits_for_the_response_before_it(http_impl: str) -> None:
    """Defect 4: a WebSocket upgrade pipelined behind a long-poll is handed over only
    once the long-poll is answered; the long-poll's app runs to its end."""
    app = Router()
    with serve(app, http=http_impl) as running:
        conn = RawConnection(running.port)
        conn.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n" + upgrade_request("/ws"))
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"polled")
        with RawWebSocket(running.port, conn=conn) as ws:
            assert ws.read_frame() == (OP_TEXT, b"hi")
            assert ws.read_close()[0] == 1000
        assert app.finished == ["/poll"]
        wait_for(lambda: not running.context.tasks, timeout=5)


def test_a_pipelined_post_body_is_read_when_its_turn_comes(http_impl: str) -> None:
    """Defect 5: the body of a POST queued behind a slow request arrives after the
    first answer; reading resumes for it."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(
            b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        )
        assert conn.read_response().body == b"polled"
        conn.send(b"b" * 100_000)
        response = conn.read_response(timeout=5)
        assert response.body == b"b" * 100_000


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /poll HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"GET /poll HTTP/1.0\r\n\r\nthis is not HTTP\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi\r\n",
    ],
    ids=["connection-close", "http-1.0", "http-1.0-post-crlf"],
)
def test_bytes_after_the_last_request_are_ignored(
    http_impl: str, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 6: after a request that ends the connection, what follows is dropped,
    not parsed: the request is answered normally, and only it."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(request_bytes)
        response = conn.read_response()
        assert response.status == 200
        assert response.body in (b"polled", b"hi")
        assert conn.is_closed()
        assert conn.buffer == b""  # no second answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_reading_stops_while_a_request_is_served(http_impl: str) -> None:
    """Defect 7: a client cannot push data into the server without bound while its
    request runs: reading pauses, and the kernel's buffers fill up."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.sock.setblocking(False)
        pushed = 0
        started = time.monotonic()
        blocked_since = None
        request = GET * 1000
        while time.monotonic() - started < 3:
            try:
                pushed += conn.sock.send(request)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 0.3:
                    break
                select.select([], [conn.sock], [], 0.05)
        # the socket buffers of both sides hold a few MiB at most on loopback
        assert pushed < 32 * 1024 * 1024, f"the server read {pushed} bytes"


def test_an_endless_header_line_is_refused_even_while_a_request_runs(http_impl: str) -> None:
    """Defect 8: the head-size limit counts every head, pipelined ones included."""
    with (
        serve(Router(), http=http_impl, limit_request_header_size=4096) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nX-Long: ")
        try:
            for _ in range(100):
                conn.send(b"a" * 1024)
        except OSError:
            pass  # the server answered and closed
        assert conn.read_response().body == b"polled"
        assert conn.read_response().status == 431


def test_trailers_never_join_the_request_headers(http_impl: str) -> None:
    """Defect 8: a trailer cannot add a Host or an X-Forwarded-For to the request."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(
            b"POST /scope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nHost: evil\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
        )
        response = conn.read_response()
        assert json.loads(response.body)["headers"] == ["host", "transfer-encoding"]
        conn.send(GET)  # and the connection goes on
        assert conn.read_response().status == 200


def test_an_unread_body_does_not_count_against_the_next_head(http_impl: str) -> None:
    """Defect 8: a stale counter gave a small request after an unread body a 431
    (the body's first bytes came with its head; the next head came, in two
    pieces, with the body's last bytes)."""
    with (
        serve(Router(), http=http_impl, limit_request_header_size=1024) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"z" * 2000)
        assert conn.read_response().status == 200
        conn.send(b"z" * 3000 + b"GET / HTTP/1.1\r\nHo")
        conn.send(b"st: x\r\n\r\n")
        assert conn.read_response().status == 200


def test_the_access_log_names_the_client_behind_a_trusted_proxy(
    http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 10: the access log shows the scope's client, as the proxy-headers
    middleware set it, not the proxy's address."""
    caplog.set_level(logging.INFO, "ketch.access")
    with serve(Router(), http=http_impl, log_config=None) as running:
        exchange(running.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "ketch.access"]
    assert lines and lines[-1].startswith("203.0.113.7:0 - "), lines


def test_expect_continue_answered_without_the_body_closes_the_connection(
    http_impl: str,
) -> None:
    """Defect 11: the client waited for 100 Continue and got a final answer instead;
    the body it may send anyway is not taken for the next request."""
    app = Router()
    with serve(app, http=http_impl) as running, RawConnection(running.port) as conn:
        body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.send(
            b"POST /deny HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        response = conn.read_response()
        assert response.status == 401
        assert response.header("connection") == "close"
        conn.send(body)
        assert conn.is_closed()
        assert conn.buffer == b""
    assert app.finished == ["/deny"]


def test_only_one_framing_goes_out(http_impl: str) -> None:
    """Defect 12: an app that sends Content-Length and Transfer-Encoding gets one
    framing on the wire (the length), never both."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET /framings HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_response()
        assert response.header("content-length") == "5"
        assert response.header("transfer-encoding") is None
        assert response.body == b"hello"
        conn.send(GET)
        assert conn.read_response().status == 200


def test_many_requests_after_a_split_head_are_not_a_large_head(http_impl: str) -> None:
    """The bytes of the requests pipelined behind a head that arrived in two
    pieces do not count against that head's size limit."""
    with serve(Router(), http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHo")
        wait_for(lambda: running.context.connections, timeout=5)
        conn.send(b"st: x\r\n\r\n" + GET * 3000)  # 87 KB: more than the 64 KiB head limit
        for _ in range(3001):
            assert conn.read_response().status == 200


async def endless(scope: Any, receive: Any, send: Any) -> None:
    """Streams until the client is gone."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"x" * 65536
    while True:  # send() returns at once once the client is gone; the Task is cancelled
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await asyncio.sleep(0)


def test_a_client_that_reads_nothing_is_cut_off(http_impl: str) -> None:
    """A client that stops reading cannot hold the app and the connection for
    ever: once the send buffer is full, --timeout-write bounds the wait."""
    with serve(endless, http=http_impl, timeout_write=1) as running:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", running.port))
        with sock:
            sock.sendall(GET)
            wait_for(lambda: running.context.tasks, timeout=5)
            # nothing is read: the app's send waits, then the connection is cut
            wait_for(lambda: not running.context.tasks, timeout=10)
            wait_for(lambda: not running.context.connections, timeout=5)
        with RawConnection(running.port) as other:  # and serves everyone else
            other.send(GET)
            assert other.read_response(head_only=True).status == 200
