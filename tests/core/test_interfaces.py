"""ASGI 3, ASGI 2 and WSGI applications, told apart automatically or by --interface."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from support import RawConnection, serve
from support.apps import (
    ASGI2App,
    asgi2_function,
    asgi3_instance,
    hello,
    wsgi_app,
    wsgi_stream,
)

from ketch.core.app import detect_interface


@pytest.mark.parametrize(
    ("app", "text", "interface"),
    [
        (hello, "Hello, world!", "asgi3"),
        (asgi3_instance, "asgi3 instance", "asgi3"),
        (ASGI2App, "asgi2 class", "asgi2"),
        (asgi2_function, "asgi2 function", "asgi2"),
        (wsgi_stream, "part 0\npart 1\npart 2\n", "wsgi"),
    ],
)
def test_auto_detects_the_interface(app: Any, text: str, interface: str) -> None:
    assert detect_interface(app) == interface
    with serve(app) as running:
        assert httpx.get(running.url).text == text


def test_detects_asgi3_classes_and_partials() -> None:
    import functools

    class AwaitableApp:
        def __init__(self, scope: Any, receive: Any, send: Any) -> None:
            pass

        def __await__(self) -> Any:
            yield

    async def with_option(scope: Any, receive: Any, send: Any, option: int) -> None:
        pass

    assert detect_interface(AwaitableApp) == "asgi3"
    assert detect_interface(functools.partial(with_option, option=1)) == "asgi3"


@pytest.mark.parametrize(("interface", "text"), [("asgi2", "asgi2 class"), ("asgi3", None)])
def test_explicit_interface(interface: str, text: str | None) -> None:
    app = ASGI2App if interface == "asgi2" else hello
    with serve(app, interface=interface) as running:
        assert httpx.get(running.url).text == (text or "Hello, world!")


def test_wsgi_environ(http_impl: str) -> None:
    with serve(wsgi_app, interface="wsgi", root_path="/app", http=http_impl) as running:
        response = httpx.post(
            running.url + "/items/caf%C3%A9?a=1&b=2",
            content=b"payload",
            headers={"Content-Type": "text/plain", "X-Custom": "one"},
        )
    data = response.json()
    assert data["REQUEST_METHOD"] == "POST"
    assert data["SCRIPT_NAME"] == "/app"
    assert data["PATH_INFO"] == "/items/caf\u00c3\u00a9"  # PEP 3333: bytes as latin-1
    assert data["QUERY_STRING"] == "a=1&b=2"
    assert data["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert data["CONTENT_TYPE"] == "text/plain"
    assert data["CONTENT_LENGTH"] == "7"
    assert data["HTTP_X_CUSTOM"] == "one"
    assert data["REMOTE_ADDR"] == "127.0.0.1"
    assert data["wsgi.url_scheme"] == "http"
    assert data["body"] == "payload"


def test_wsgi_headers_with_underscores_are_dropped() -> None:
    with serve(wsgi_app, interface="wsgi") as running:
        data = httpx.get(running.url, headers={"X_Custom": "spoofed"}).json()
    assert data["HTTP_X_CUSTOM"] is None


def test_wsgi_streams_the_request_body_in() -> None:
    chunks: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        total = 0
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            chunks.append(len(piece))
            total += len(piece)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(total).encode()]

    body = b"z" * (4 * 1024 * 1024)
    with serve(app, interface="wsgi") as running:
        response = httpx.post(running.url, content=body)
    assert response.text == str(len(body))
    assert max(chunks) <= 65536
    assert len(chunks) >= 64


def test_wsgi_readline_and_iteration() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = list(stream)
        start_response("200 OK", [])
        return [json.dumps([first.decode(), [line.decode() for line in rest]]).encode()]

    with serve(app, interface="wsgi") as running:
        data = httpx.post(running.url, content=b"one\ntwo\nthree").json()
    assert data == ["one\n", ["two\n", "three"]]


def test_wsgi_streams_the_response_out() -> None:
    with serve(wsgi_stream, interface="wsgi") as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_response()
    assert response.header("transfer-encoding") == "chunked"
    assert response.body == b"part 0\npart 1\npart 2\n"


def test_wsgi_single_chunk_gets_a_content_length() -> None:
    with serve(wsgi_app, interface="wsgi") as running:
        response = httpx.get(running.url)
    assert response.headers["content-length"] == str(len(response.content))


def test_wsgi_error_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("wsgi failed")

    with serve(app, interface="wsgi") as running:
        assert httpx.get(running.url).status_code == 500
