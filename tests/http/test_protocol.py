"""HTTP/1.1 behaviour every user relies on, for both parsers (h11 and httptools)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
import threading
import time
from typing import Any

import anyio
import httpx
import pytest
from support import RawConnection, exchange, serve, wait_for
from support.apps import echo, hello, raises, raises_after_start, returns_early, scope_json, stream

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_response_has_server_date_and_length(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running:
        response = exchange(running.port, GET)
    assert response.status == 200
    assert response.reason == "OK"
    assert response.body == b"Hello, world!"
    assert response.header("content-length") == "13"
    assert response.header("server") == "ketch"
    date = response.header("date")
    assert date is not None
    assert date.endswith(" GMT")


def test_keep_alive_serves_many_requests_on_one_connection(http_impl: str) -> None:
    with serve(scope_json, http=http_impl) as running, RawConnection(running.port) as conn:
        ports = set()
        for _ in range(5):
            conn.send(GET)
            response = conn.read_response()
            assert response.status == 200
            assert response.header("connection") is None
            ports.add(json.loads(response.body)["client"][1])
    assert len(ports) == 1


def test_pipelined_requests_are_answered_in_order(http_impl: str) -> None:
    requests = (
        b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % index for index in range(10))
        + b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    )
    with serve(scope_json, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(requests)
        paths = [json.loads(conn.read_response().body)["path"] for _ in range(11)]
    assert paths == [f"/{index}" for index in range(10)] + ["/body"]


def test_chunked_request_body_is_decoded(http_impl: str) -> None:
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    with serve(echo, http=http_impl) as running:
        response = exchange(running.port, request)
    assert response.status == 200
    assert response.body == b"hello world"


def test_request_body_in_many_pieces_reaches_the_app(http_impl: str) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    with serve(echo, http=http_impl) as running:
        pieces = [body[i : i + 7000] for i in range(0, len(body), 7000)]
        response = httpx.post(running.url, content=iter(pieces))
    assert response.status_code == 200
    assert response.content == body


def test_streamed_response_is_chunked(http_impl: str) -> None:
    with serve(stream, http=http_impl) as running:
        response = exchange(running.port, b"GET /?n=5&size=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-length") is None
    assert response.body == b"aaabbbcccdddeee"


async def _stream_then_wait(scope: Any, receive: Any, send: Any) -> None:
    """Sends two chunks at once, then waits for the client to leave."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first ", "more_body": True})
    await send({"type": "http.response.body", "body": b"second", "more_body": True})
    await receive()  # the (empty) request body
    await receive()  # http.disconnect


def test_streamed_chunks_reach_the_client_while_the_app_waits(http_impl: str) -> None:
    # chunks are gathered into one write, but never held back past the app's
    # next suspension (server-sent events depend on it)
    with serve(_stream_then_wait, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(GET)
        head = conn.read_until(b"\r\n\r\n", timeout=5)
        assert b"transfer-encoding: chunked" in head
        assert conn.read_until(b"6\r\nsecond\r\n", timeout=5) == b"6\r\nfirst \r\n6\r\nsecond\r\n"


def _answers_with_header(name: bytes, value: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(name, value)]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"x-split", b"a\r\nset-cookie: stolen=1"),  # response splitting
        (b"x-split", b"a\nset-cookie: stolen=1"),
        (b"x-nul", b"a\x00b"),
        (b"bad name", b"x"),
        (b"x-colon:", b"x"),
    ],
)
def test_a_header_that_would_corrupt_the_response_gives_500(
    http_impl: str, name: bytes, value: bytes
) -> None:
    with serve(_answers_with_header(name, value), http=http_impl) as running:
        for _ in range(2):  # the second time, from the name cache
            response = exchange(running.port, GET)
            assert response.status == 500
            assert response.header("set-cookie") is None


@pytest.mark.parametrize(
    "lengths",
    [[b"abc"], [b"-1"], [b"1" * 19], [b"2", b"3"]],
    ids=["not-a-number", "negative", "too-long", "conflicting"],
)
def test_an_apps_bad_content_length_gives_500(
    http_impl: str, lengths: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", length) for length in lengths]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    with serve(app, http=http_impl) as running:
        response = exchange(running.port, GET)
        assert response.status == 500
        assert exchange(running.port, GET).status == 500  # and it serves on
    assert "Content-Length header" in caplog.text


def test_header_names_are_checked_in_any_case(http_impl: str) -> None:
    # an app's Content-Length in capitals still frames the response
    with serve(_answers_with_header(b"Content-Length", b"2"), http=http_impl) as running:
        for _ in range(2):
            response = exchange(running.port, GET)
            assert response.status == 200
            assert response.header("content-length") == "2"
            assert response.header("transfer-encoding") is None
            assert response.body == b"ok"


def test_head_response_has_headers_but_no_body(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_response(head_only=True)
        assert response.status == 200
        assert response.header("content-length") == "13"
        # the connection stays usable: the next response is the next bytes
        conn.send(GET)
        assert conn.read_response().body == b"Hello, world!"


def test_expect_continue_is_sent_when_the_app_reads_the_body(http_impl: str) -> None:
    with serve(echo, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = conn.read_until(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"data")
        response = conn.read_response()
    assert response.status == 200
    assert response.body == b"data"


def test_expect_continue_is_not_sent_when_the_app_answers_without_reading(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        response = conn.read_response()
    assert response.status == 200
    assert b"100 Continue" not in response.raw_head


def test_http_10_closes_after_the_response(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert conn.is_closed()


def test_http_10_keep_alive_when_asked(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running, RawConnection(running.port) as conn:
        for _ in range(2):
            conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = conn.read_response()
            assert response.header("connection") == "keep-alive"
            assert response.body == b"Hello, world!"


def test_http_10_never_gets_a_chunked_response(http_impl: str) -> None:
    with serve(stream, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET /?n=3&size=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = conn.read_response()
    assert response.header("transfer-encoding") is None
    assert response.header("connection") == "close"
    assert response.body == b"aabbcc"  # delimited by the close


def test_connection_close_is_honoured(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = conn.read_response()
        assert response.header("connection") == "close"
        assert conn.is_closed()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(http_impl: str) -> None:
    with serve(hello, http=http_impl, timeout_keep_alive=1) as running:
        with RawConnection(running.port) as conn:
            conn.send(GET)
            conn.read_response()
            started = time.monotonic()
            assert conn.is_closed(timeout=5)
        elapsed = time.monotonic() - started
    # deadlines are kept by a twice-a-second sweep: within half a second of 1 s
    assert 0.25 < elapsed < 3.0


def test_connection_that_never_sends_is_closed_after_keep_alive_timeout(http_impl: str) -> None:
    with (
        serve(hello, http=http_impl, timeout_keep_alive=1) as running,
        RawConnection(running.port) as conn,
    ):
        assert conn.is_closed(timeout=5)


def test_default_headers_options(http_impl: str) -> None:
    options: dict[str, Any] = {
        "server_header": False,
        "date_header": False,
        "headers": ["X-Frame-Options: DENY", ("X-Region", "eu")],
    }
    with serve(hello, http=http_impl, **options) as running:
        response = exchange(running.port, GET)
    assert response.header("server") is None
    assert response.header("date") is None
    assert response.header("x-frame-options") == "DENY"
    assert response.header("x-region") == "eu"


def test_app_headers_replace_the_defaults(http_impl: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"server", b"my-app"), (b"x-region", b"us")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    with serve(app, http=http_impl, headers=["X-Region: eu"]) as running:
        response = exchange(running.port, GET)
    assert response.header_all("server") == ["my-app"]
    assert response.header_all("x-region") == ["us"]
    assert response.header("date") is not None


def test_root_path_is_in_scope(http_impl: str) -> None:
    with serve(scope_json, http=http_impl, root_path="/api") as running:
        response = exchange(running.port, b"GET /users/%C3%A9?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = json.loads(response.body)
    assert data["root_path"] == "/api"
    assert data["path"] == "/api/users/\u00e9"
    assert data["raw_path"] == "/api/users/%C3%A9"
    assert data["query_string"] == "q=1"


def test_scope_describes_the_request(http_impl: str) -> None:
    with serve(scope_json, http=http_impl) as running:
        response = exchange(
            running.port, b"PUT /a%20b?x=1&y=2 HTTP/1.1\r\nHost: x\r\nX-Thing: One\r\n\r\n"
        )
    data = json.loads(response.body)
    assert data["type"] == "http"
    assert data["method"] == "PUT"
    assert data["http_version"] == "1.1"
    assert data["scheme"] == "http"
    assert data["path"] == "/a b"
    assert data["raw_path"] == "/a%20b"
    assert data["query_string"] == "x=1&y=2"
    assert ["x-thing", "One"] in data["headers"]
    assert data["client"][0] == "127.0.0.1"
    assert data["server"] == ["127.0.0.1", running.port]
    assert data["asgi"] == {"version": "3.0", "spec_version": "2.5"}


def test_app_error_before_response_is_a_500(
    http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(raises, http=http_impl) as running:
        response = exchange(running.port, GET)
        assert response.status == 500
        assert response.body == b"Internal Server Error"
        assert response.header("connection") == "close"
    assert "Exception in ASGI application" in caplog.text
    assert "the app failed" in caplog.text


def test_app_returning_without_response_is_a_500(http_impl: str) -> None:
    with serve(returns_early, http=http_impl) as running:
        assert exchange(running.port, GET).status == 500


def test_app_error_after_response_start_closes_the_connection(http_impl: str) -> None:
    with serve(raises_after_start, http=http_impl) as running, RawConnection(running.port) as conn:
        conn.send(GET)
        head = conn.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"transfer-encoding: chunked" in head
        rest = conn.read_to_close()
        # the chunked body never gets its terminating chunk: the client knows it is cut
        assert rest.startswith(b"7\r\npartial\r\n")
        assert not rest.endswith(b"0\r\n\r\n")


def test_server_keeps_serving_after_an_app_error(http_impl: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await hello(scope, receive, send)

    with serve(app, http=http_impl) as running:
        assert exchange(running.port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n").status == 500
        assert httpx.get(running.url).status_code == 200


def test_malformed_request_gets_400_and_the_server_serves_others(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running:
        with RawConnection(running.port) as conn:
            conn.send(b"GARBAGE\x00\x01\r\n\r\n")
            response = conn.read_response()
            assert response.status == 400
            assert response.header("connection") == "close"
            assert conn.is_closed()
        assert httpx.get(running.url).text == "Hello, world!"


def test_app_sees_disconnect_when_the_client_goes(http_impl: str) -> None:
    events: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()  # the (empty) body
        assert message["type"] == "http.request"
        message = await receive()  # waits until the client goes
        events.append(message["type"])
        done.set()

    with serve(app, http=http_impl) as running:
        conn = RawConnection(running.port)
        conn.send(GET)
        wait_for(lambda: running.context.tasks)
        conn.close()
        assert done.wait(5)
    assert events == ["http.disconnect"]


def test_app_waiting_for_body_sees_disconnect(http_impl: str) -> None:
    events: list[Any] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            events.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        done.set()

    with serve(app, http=http_impl) as running:
        conn = RawConnection(running.port)
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        wait_for(lambda: events)
        conn.close()
        assert done.wait(5)
    assert events[0] == {"type": "http.request", "body": b"abc", "more_body": True}
    assert events[-1] == {"type": "http.disconnect"}


def test_send_after_disconnect_raises_oserror(http_impl: str) -> None:
    """ASGI 2.4 and later (ketch says 2.5): send() on a closed connection raises an
    OSError, so that a streaming app (Starlette's StreamingResponse relies on it)
    stops producing for nobody."""
    finished = threading.Event()
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
            assert (await receive())["type"] == "http.disconnect"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})
        except BaseException as exc:
            errors.append(exc)
        finished.set()

    with serve(app, http=http_impl) as running:
        conn = RawConnection(running.port)
        conn.send(GET)
        wait_for(lambda: running.context.tasks)
        conn.close()
        assert finished.wait(5)
    assert len(errors) == 1 and isinstance(errors[0], OSError)


def test_slow_reader_pauses_the_app(http_impl: str) -> None:
    """Write flow control: the app's send() waits while the client does not read,
    instead of the server buffering the whole response."""
    sent = [0]
    total = 64 * 1024 * 1024
    chunk = b"x" * 65536

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while sent[0] < total:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent[0] += len(chunk)
        await send({"type": "http.response.body", "body": b""})

    with serve(app, http=http_impl) as running, RawConnection(running.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        conn.send(GET)
        # the app gets ahead by the socket buffers and the transport's high-water mark, no more
        wait_for(lambda: sent[0] > 0)
        stalled_at = wait_for(lambda: _stable(sent), timeout=10)
        assert stalled_at < total // 4
        head = conn.read_until(b"\r\n\r\n")
        assert b"chunked" in head
        received = _drain_chunked(conn)
    assert received == total


def _stable(counter: list[int]) -> int | None:
    """The counter's value once it stopped moving for a moment."""
    before = counter[0]
    time.sleep(0.2)
    return before if counter[0] == before else None


def _drain_chunked(conn: RawConnection) -> int:
    size_total = 0
    while True:
        size = int(conn.read_until(b"\r\n", timeout=30).split(b";")[0], 16)
        if size == 0:
            conn.read_until(b"\r\n", timeout=30)
            return size_total
        size_total += len(conn.read_exactly(size, timeout=30))
        conn.read_exactly(2, timeout=30)


def test_slow_app_pauses_reading(http_impl: str) -> None:
    """Read flow control: while the app does not read the body, the server stops
    reading from the socket, so a fast client is held back by TCP."""
    release = threading.Event()
    received = [0]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        more = True
        while more:
            message = await receive()
            received[0] += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(received[0]).encode()})

    total = 64 * 1024 * 1024
    with serve(app, http=http_impl) as running, RawConnection(running.port, timeout=60) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        conn.sock.setblocking(False)
        pushed = 0
        block = b"y" * 65536
        stuck_since: float | None = None
        while True:  # push until TCP pushes back for a while
            try:
                pushed += conn.sock.send(block)
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 0.5:
                    break
                time.sleep(0.01)
            assert pushed < total // 4, "the server kept reading a body nobody consumed"
        release.set()
        conn.sock.setblocking(True)
        remaining = total - pushed
        while remaining:
            n = conn.sock.send(block[: min(len(block), remaining)])
            remaining -= n
        response = conn.read_response(timeout=60)
    assert response.body == str(total).encode()


def test_limit_concurrency_answers_503(http_impl: str) -> None:
    gate = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await hello(scope, receive, send)

    with serve(app, http=http_impl, limit_concurrency=1) as running:
        first = RawConnection(running.port)
        first.send(GET)
        wait_for(lambda: running.context.tasks)
        response = exchange(running.port, GET)
        assert response.status == 503
        gate.set()
        assert first.read_response().status == 200
        first.close()


def test_limit_max_requests_stops_the_server(http_impl: str) -> None:
    with serve(hello, http=http_impl, limit_max_requests=3) as running:
        with RawConnection(running.port) as conn:
            for _ in range(3):
                conn.send(GET)
                assert conn.read_response().status == 200
        running.thread.join(timeout=10)
        assert not running.thread.is_alive()


_REQUEST_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("request_mark", default="clean")


async def _task_probe(scope: Any, receive: Any, send: Any) -> None:
    """Reports what anyio-based frameworks (Starlette, FastAPI) need: a current
    asyncio Task (anyio's task groups and cancel scopes hang on it), and a
    context of its own."""
    if scope["type"] != "http":
        return
    report = {"task": asyncio.current_task() is not None, "seen": _REQUEST_MARK.get()}
    _REQUEST_MARK.set("dirty")
    async with anyio.create_task_group() as group:  # fails outside a Task
        group.start_soon(anyio.lowlevel.checkpoint)
    body = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_each_request_runs_in_a_task_with_its_own_context(http_impl: str) -> None:
    # a request that could complete without suspending still needs a Task:
    # without one, anyio (and so Starlette, FastAPI) cannot run
    with serve(_task_probe, http=http_impl) as running, httpx.Client() as client:
        for _ in range(3):  # one keep-alive connection: nothing leaks between requests
            report = client.get(running.url).json()
            assert report == {"task": True, "seen": "clean"}


@pytest.mark.parametrize(("reset", "seen"), [(False, "set at startup"), (True, "fresh")])
def test_reset_contextvars_gives_each_request_an_empty_context(
    http_impl: str, reset: bool, seen: str
) -> None:
    app = "support.apps:context_probe_factory"
    with serve(app, factory=True, reset_contextvars=reset, http=http_impl) as running:
        assert httpx.get(running.url).text == seen
