"""Limits and deadlines, the same on both parsers: 408, 413, 431, body timeout."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from support import RawConnection, exchange, serve, wait_for
from support.apps import echo, hello

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_slowloris_head_is_cut_off_with_408(http_impl: str) -> None:
    with serve(hello, http=http_impl, timeout_request_header=1) as running:
        with RawConnection(running.port, timeout=10) as conn:
            started = time.monotonic()
            conn.send(b"GET / HTTP/1.1\r\n")
            # trickle a header line every 0.3 s: each byte resets nothing
            for index in range(20):
                try:
                    conn.send(b"X-Slow-%d: y\r\n" % index)
                except OSError:
                    break
                if conn.is_closed(timeout=0.3):
                    break
            elapsed = time.monotonic() - started
            data = conn.buffer
        assert data.startswith(b"HTTP/1.1 408 ")
        assert elapsed < 3.5
        assert exchange(running.port, GET).status == 200


def test_head_deadline_does_not_hit_idle_keep_alive(http_impl: str) -> None:
    options: dict[str, Any] = {"timeout_request_header": 1, "timeout_keep_alive": 5}
    with serve(hello, http=http_impl, **options) as running, RawConnection(running.port) as conn:
        conn.send(GET)
        assert conn.read_response().status == 200
        assert not conn.is_closed(timeout=1.6)  # idle: the keep-alive timeout applies
        conn.send(GET)
        assert conn.read_response().status == 200


def test_body_that_never_comes_disconnects_the_app(http_impl: str) -> None:
    seen: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        done.set()

    with serve(app, http=http_impl, timeout_request_body=1) as running:
        with RawConnection(running.port) as conn:
            conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            started = time.monotonic()
            assert conn.is_closed(timeout=5)
            assert time.monotonic() - started < 3
        assert done.wait(5)
    assert seen == ["http.request", "http.disconnect"]


def test_content_length_over_limit_is_413_before_the_app_runs(http_impl: str) -> None:
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await hello(scope, receive, send)

    with serve(app, http=http_impl, limit_request_body=100) as running:
        with RawConnection(running.port) as conn:
            conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + b"a" * 101)
            response = conn.read_response()
            assert response.status == 413
            assert response.header("connection") == "close"
        assert exchange(running.port, GET).status == 200
    assert calls == [1]  # only the GET


def test_413_instead_of_100_continue(http_impl: str) -> None:
    with (
        serve(echo, http=http_impl, limit_request_body=100) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        response = conn.read_response()
    assert response.status == 413
    assert b"100 Continue" not in response.raw_head


def test_chunked_body_growing_past_the_limit(http_impl: str) -> None:
    received: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(len(message.get("body", b"")))
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                return

    with serve(app, http=http_impl, limit_request_body=1000) as running:
        with RawConnection(running.port) as conn:
            conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(5):
                conn.send(b"190\r\n" + b"b" * 400 + b"\r\n")  # 5 x 400 bytes
            response = conn.read_response()
        assert response.status == 413
        wait_for(lambda: received and received[-1] == 0)
    assert sum(received) <= 1000  # the app never got more than the limit


def test_chunked_body_past_the_limit_after_the_response_started(http_impl: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    with (
        serve(app, http=http_impl, limit_request_body=1000) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert conn.read_until(b"started")
        for _ in range(4):
            try:
                conn.send(b"190\r\n" + b"b" * 400 + b"\r\n")
            except OSError:
                break
        assert conn.is_closed(timeout=5)


def test_too_many_headers_is_431(http_impl: str) -> None:
    headers = b"".join(b"X-%d: v\r\n" % index for index in range(11))
    with serve(hello, http=http_impl, limit_request_headers=10) as running:
        response = exchange(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert response.status == 431
        few = b"".join(b"X-%d: v\r\n" % index for index in range(9))
        request = b"GET / HTTP/1.1\r\nHost: x\r\n" + few + b"\r\n"
        assert exchange(running.port, request).status == 200


@pytest.mark.parametrize("size", [1100, 50_000])
def test_head_over_the_size_limit_is_431(http_impl: str, size: int) -> None:
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    with serve(hello, http=http_impl, limit_request_header_size=1024) as running:
        with RawConnection(running.port) as conn:
            try:
                conn.send(big)
            except OSError:
                pass  # the server may close before reading everything
            response = conn.read_response()
        assert response.status == 431
        assert exchange(running.port, GET).status == 200


def test_default_head_limit_allows_big_cookies(http_impl: str) -> None:
    cookie = b"c=" + b"x" * 30_000
    request = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + b"\r\n\r\n"
    with serve(hello, http=http_impl) as running:
        assert exchange(running.port, request).status == 200


def test_h11_max_incomplete_event_size() -> None:
    # h11 refuses to buffer more than this of an event that is not complete yet
    part = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000
    with (
        serve(hello, http="h11", h11_max_incomplete_event_size=1024) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(part)
        assert conn.read_response().status == 431
