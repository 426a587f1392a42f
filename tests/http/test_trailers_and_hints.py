"""`http.response.trailers` and `http.response.early_hint` on HTTP/1.1, read
byte for byte from raw sockets (the Date header off, so that whole responses
compare), by h11 as a client, and by curl."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import h11
import pytest
from support import RawConnection, serve
from support.extension_apps import early_hints, trailers

NO_DATE = {"date_header": False}
CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/plain\r\n"
    b"trailer: x-checksum, x-status\r\n"
    b"server: ketch\r\n"
    b"transfer-encoding: chunked\r\n"
    b"\r\n"
    b"7\r\npart 0;\r\n7\r\npart 1;\r\n"
    b"0\r\nx-checksum: abc\r\nx-status: 0\r\n\r\n"
)


def exchange_raw(port: int, request: bytes, until: bytes) -> bytes:
    """Send `request` and read until the response ends with `until`."""
    with RawConnection(port) as conn:
        conn.send(request)
        return conn.read_until(until)


# --- trailers -------------------------------------------------------------------------------
def test_trailers_after_a_chunked_body(http_impl: str) -> None:
    with serve(trailers, http=http_impl, **NO_DATE) as running:
        request = b"GET /?chunks=2 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"
        assert exchange_raw(running.port, request, b"x-status: 0\r\n\r\n") == (
            CHUNKED_WITH_TRAILERS
        )


def test_a_single_body_message_is_chunked_for_its_trailers(http_impl: str) -> None:
    with serve(trailers, http=http_impl, **NO_DATE) as running:
        request = b"GET /?chunks=1 HTTP/1.1\r\nHost: x\r\nTE: deflate, trailers\r\n\r\n"
        response = exchange_raw(running.port, request, b"x-status: 0\r\n\r\n")
    assert response.endswith(
        b"transfer-encoding: chunked\r\n\r\n"
        b"7\r\npart 0;\r\n0\r\nx-checksum: abc\r\nx-status: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("request_", "ending"),
    [
        # the client did not say it takes trailers
        (b"GET /?chunks=2 HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n"),
        (b"GET /?chunks=1 HTTP/1.1\r\nHost: x\r\n\r\n", b"content-length: 7\r\n\r\npart 0;"),
        # the app gave a Content-Length: no chunks to end with trailers
        (
            b"GET /?chunks=2&length=1 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            b"content-length: 14\r\nserver: ketch\r\n\r\npart 0;part 1;",
        ),
    ],
)
def test_trailers_are_dropped_when_they_cannot_be_sent(
    request_: bytes, ending: bytes, http_impl: str
) -> None:
    with serve(trailers, http=http_impl, **NO_DATE) as running, RawConnection(running.port) as conn:
        conn.send(request_)
        assert conn.read_until(ending).endswith(ending)
        # the response is complete: the connection serves the next request
        conn.send(b"GET /?chunks=2 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        assert conn.read_until(b"x-status: 0\r\n\r\n") == CHUNKED_WITH_TRAILERS
        assert conn.buffer == b""


def test_no_trailers_to_http_1_0_or_head(http_impl: str) -> None:
    with serve(trailers, http=http_impl, **NO_DATE) as running:
        with RawConnection(running.port) as conn:
            conn.send(b"GET /?chunks=2 HTTP/1.0\r\nTE: trailers\r\n\r\n")
            assert conn.read_to_close().endswith(b"connection: close\r\n\r\npart 0;part 1;")
        with RawConnection(running.port) as conn:
            conn.send(b"HEAD /?chunks=2 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
            head = conn.read_until(b"\r\n\r\n")
            assert b"transfer-encoding" not in head and b"content-length" not in head
            assert not conn.is_closed(timeout=0.3)
            assert conn.buffer == b""


def test_h11_reads_the_trailers() -> None:
    """A client's HTTP/1.1 parser (h11) sees them as the end of the message."""
    with serve(trailers) as running, RawConnection(running.port) as conn:
        client = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET", target="/?chunks=3", headers=[("Host", "x"), ("TE", "trailers")]
        )
        conn.send(client.send(request) + client.send(h11.EndOfMessage()))
        body = b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(conn.sock.recv(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
    assert body == b"part 0;part 1;part 2;"
    assert list(event.headers) == [(b"x-checksum", b"abc"), (b"x-status", b"0")]


def test_trailer_fields_are_checked_and_framing_fields_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        fields = [(b"content-length", b"5"), (b"X-Digest", b"sha-256=abc")]
        if scope["path"] == "/bad":
            fields.append((b"x-smuggled", b"a\r\nset-cookie: x"))
        await send({"type": "http.response.trailers", "headers": fields})

    with serve(app, **NO_DATE) as running:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"
        assert exchange_raw(running.port, request, b"\r\n0\r\n").endswith(b"2\r\nok\r\n0\r\n")
        assert exchange_raw(running.port, request, b"0\r\nx-digest: sha-256=abc\r\n\r\n")
        with RawConnection(running.port) as conn:
            conn.send(b"GET /bad HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
            assert conn.read_to_close().endswith(b"2\r\nok\r\n")  # no last chunk: broken off
    assert "Invalid HTTP header value" in caplog.text


def test_an_app_that_owes_its_trailers(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        if scope["path"] == "/body":
            await send({"type": "http.response.body", "body": b"more"})

    with serve(app) as running:
        for path in (b"/", b"/body"):
            with RawConnection(running.port) as conn:
                conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n" % path)
                assert conn.read_to_close().endswith(b"2\r\nok\r\n")
    assert "ASGI callable returned without completing response." in caplog.text
    assert (
        "Expected ASGI message 'http.response.trailers', but got 'http.response.body'."
        in caplog.text
    )


# --- early hints ------------------------------------------------------------------------------
EARLY_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\n"
    b"link: </style.css>; rel=preload; as=style\r\n"
    b"link: </app.js>; rel=preload; as=script\r\n"
    b"\r\n"
    b"HTTP/1.1 103 Early Hints\r\n"
    b"link: </font.woff2>; rel=preload\r\n"
    b"\r\n"
    b"HTTP/1.1 200 OK\r\n"
    b"server: ketch\r\n"
    b"content-length: 15\r\n"
    b"\r\n"
    b"<!doctype html>"
)


def test_early_hints_before_the_response(http_impl: str) -> None:
    with serve(early_hints, http=http_impl, **NO_DATE) as running:
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        assert exchange_raw(running.port, request, b"<!doctype html>") == EARLY_HINTS


def test_no_early_hints_to_http_1_0(http_impl: str) -> None:
    with (
        serve(early_hints, http=http_impl, **NO_DATE) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(b"GET / HTTP/1.0\r\n\r\n")
        assert conn.read_to_close() == (
            b"HTTP/1.1 200 OK\r\nserver: ketch\r\ncontent-length: 15\r\n"
            b"connection: close\r\n\r\n<!doctype html>"
        )


def test_curl_reads_the_early_hints() -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    with serve(early_hints) as running:
        result = subprocess.run(
            [curl, "-s", "-D", "-", "-o", "/dev/null", running.url],
            capture_output=True,
            timeout=10,
            check=True,
        )
    heads = result.stdout.decode().split("\r\n\r\n")
    assert heads[0].splitlines() == [
        "HTTP/1.1 103 Early Hints",
        "link: </style.css>; rel=preload; as=style",
        "link: </app.js>; rel=preload; as=script",
    ]
    assert heads[1].startswith("HTTP/1.1 103 Early Hints")
    assert heads[2].startswith("HTTP/1.1 200 OK")


def test_hints_too_late_or_malformed(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if path == "/late":
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            # the final head is on the wire: ignored (the spec lets a server do so)
            await send({"type": "http.response.early_hint", "links": [b"</x>; rel=preload"]})
        elif path == "/crlf":
            links = [b"</x>; rel=preload\r\nset-cookie: stolen=1"]
            await send({"type": "http.response.early_hint", "links": links})
        elif path == "/text":
            await send({"type": "http.response.early_hint", "links": ["</x>; rel=preload"]})
        await send({"type": "http.response.body", "body": b"b"})

    with serve(app, **NO_DATE) as running:
        with RawConnection(running.port) as conn:
            conn.send(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
            response = conn.read_until(b"0\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"103" not in response
        for path in (b"/crlf", b"/text"):
            with RawConnection(running.port) as conn:
                conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                response = conn.read_response()
                assert response.status == 500  # the app heard it, and did not catch it
    assert "Invalid HTTP header value" in caplog.text
    assert "Early hint links must be byte strings" in caplog.text
