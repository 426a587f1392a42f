"""HTTP/2 behaviour every user relies on (`--http2`, ketch-h2): ASGI over
streams, bodies and flow control both ways, the choice of version per
connection, and the server-wide settings that apply to HTTP/1.1 as well."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import KetchProcess, RawConnection, exchange, free_port, run_ketch, serve, wait_for
from support.apps import echo, hello, raises, raises_after_start, scope_json, stream
from support.h2frames import (
    CANCEL,
    DATA,
    END_STREAM,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    INTERNAL_ERROR,
    NO_ERROR,
    PREFACE,
    WINDOW_UPDATE,
    RawH2,
    frame,
    rst_stream,
    settings_frame,
    window_update,
)
from support.metrics import scrape, value


def h2_client(**options: Any) -> httpx.Client:
    """httpx speaking HTTP/2 with prior knowledge (cleartext)."""
    return httpx.Client(http1=False, http2=True, timeout=10, **options)


def test_scope_says_http_version_2_and_host_from_authority() -> None:
    with serve(scope_json, http2=True) as running, h2_client() as client:
        response = client.get(f"{running.url}/a%20b/c?x=1", headers={"x-custom": "yes"})
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    scope = response.json()
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == "/a%20b/c"
    assert scope["query_string"] == "x=1"
    headers = scope["headers"]
    # pseudo-header fields are left out; :authority is the Host header, first
    assert headers[0] == ["host", f"127.0.0.1:{running.port}"]
    assert not [name for name, _ in headers if name.startswith(":")]
    assert ["x-custom", "yes"] in headers
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", running.port]


def test_response_headers_lowercased_defaults_added_connection_specific_dropped() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"X-Mixed-Case", b"kept"),
                    (b"Connection", b"keep-alive"),
                    (b"Keep-Alive", b"timeout=5"),
                    (b"Transfer-Encoding", b"chunked"),
                    (b"Upgrade", b"h2c"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"created"})

    with serve(app, http2=True, headers=[("X-Extra", "1")]) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert response.status == 201
    names = [name for name, _ in response.headers]
    assert names == [name.lower() for name in names]
    assert response.header(b"x-mixed-case") == b"kept"
    for name in (b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"):
        assert response.header(name) is None
    assert response.header(b"server") == b"ketch"
    assert response.header(b"date") is not None
    assert response.header(b"x-extra") == b"1"
    assert response.header(b"content-length") == b"7"
    assert response.body == b"created"


def test_app_server_header_replaces_ketchs() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"server", b"mine")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert [value for name, value in response.headers if name == b"server"] == [b"mine"]


def test_large_bodies_both_ways_under_flow_control() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: many windows each way
    with serve(echo, http2=True) as running, h2_client() as client:
        response = client.post(running.url, content=body)
    assert response.status_code == 200
    assert response.content == body


def test_streamed_response_arrives_in_order() -> None:
    with serve(stream, http2=True) as running, h2_client() as client:
        response = client.get(f"{running.url}/?n=50&size=1000")
    assert response.content == b"".join(bytes([97 + i % 26]) * 1000 for i in range(50))
    assert response.headers.get("content-length") is None


def test_head_and_204_have_no_body() -> None:
    with serve(hello, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, method="HEAD")
        head = h2.response(1)

    assert head.status == 200
    assert head.header(b"content-length") == b"13"  # what a GET would get
    assert head.body == b""

    async def no_content(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored"})

    with serve(no_content, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert response.status == 204
    assert response.body == b""
    assert response.header(b"content-length") is None


def test_hundred_concurrent_streams_on_one_connection() -> None:
    started = 0
    all_in = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal started
        started += 1
        if started == 100:
            all_in.set()
        await all_in.wait()  # every request is in flight at once
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        ids = range(1, 201, 2)
        h2.send(b"".join(h2.headers(i, h2.request_headers(f"/{i}")) for i in ids))
        responses = [h2.response(i) for i in ids]
    assert [r.body for r in responses] == [f"/{i}".encode() for i in ids]


def test_slow_app_pauses_the_clients_stream() -> None:
    """The request body is acknowledged as the app reads it: an app that reads
    nothing holds the client to the stream's first window."""
    release = threading.Event()
    read = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % sum(read)})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, method="POST", end_stream=False)
        h2.send(frame(DATA, 0, 1, b"x" * 16384) * 3 + frame(DATA, 0, 1, b"x" * 16383))
        # the stream's window (65,535) is spent and nothing is given back yet
        with pytest.raises(TimeoutError):
            h2.read_until(lambda f: f.kind == WINDOW_UPDATE and f.stream_id == 1, timeout=0.5)
        release.set()
        update = h2.read_until(lambda f: f.kind == WINDOW_UPDATE and f.stream_id == 1)
        assert update is not None
        h2.send(frame(DATA, END_STREAM, 1, b"y" * 1000))
        response = h2.response(1)
    assert response.body == b"66535"


def test_slow_client_pauses_the_apps_send() -> None:
    """A client that opens no window holds the app in send()."""
    progress: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(10):
            await send({"type": "http.response.body", "body": b"z" * 10000, "more_body": True})
            progress.append(index)
        await send({"type": "http.response.body", "body": b""})

    with (
        serve(app, http2=True) as running,
        RawH2(running.port, settings={INITIAL_WINDOW_SIZE: 15000}) as h2,
    ):
        h2.request(1)
        wait_for(lambda: len(progress) >= 1)
        # 15,000 bytes fit the window: the second send waits for more
        with pytest.raises(TimeoutError):
            wait_for(lambda: len(progress) >= 3, timeout=0.5)
        response = h2.response(1)  # gives the window back as the body arrives
    assert response.body == b"z" * 100000
    assert progress == list(range(10))


def test_rst_stream_sends_http_disconnect_and_others_go_on() -> None:
    disconnected = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/wait":
            assert (await receive())["type"] == "http.request"
            if (await receive())["type"] == "http.disconnect":
                disconnected.set()
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"other"})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, "/wait")
        h2.request(3, "/")
        assert h2.response(3).body == b"other"
        h2.send(rst_stream(1, CANCEL))
        assert disconnected.wait(5)
        h2.request(5, "/")
        assert h2.response(5).body == b"other"


def test_app_errors_are_500_or_a_reset_stream() -> None:
    with serve(raises, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        assert h2.response(1).status == 500
    with serve(raises_after_start, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert response.body == b"partial"
    assert response.reset == INTERNAL_ERROR


@pytest.mark.parametrize("lengths", [[b"abc"], [b"2", b"3"]], ids=["invalid", "conflicting"])
def test_an_apps_bad_content_length_is_a_500(
    lengths: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", length) for length in lengths]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        assert h2.response(1).status == 500
        h2.request(3)  # the connection serves on
        assert h2.response(3).status == 500
    assert "Content-Length header" in caplog.text


def test_response_longer_than_content_length_is_reset() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"3")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"too long"})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert response.reset == INTERNAL_ERROR


def test_expect_100_continue_gets_an_interim_response() -> None:
    with serve(echo, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, method="POST", extra=[(b"expect", b"100-continue")], end_stream=False)
        h2.read_until(lambda f: f.kind == HEADERS and f.stream_id == 1)
        assert h2.responses[1].informational == [100]
        h2.send(frame(DATA, END_STREAM, 1, b"payload"))
        assert h2.response(1).body == b"payload"


def test_root_path_lifespan_state_and_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ketch.access")
    with (
        serve(scope_json, http2=True, root_path="/api", lifespan="on") as running,
        h2_client() as client,
    ):
        scope = client.get(f"{running.url}/items?q=1").json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items"
    assert scope["state"] == {"greeting": "hello from lifespan"}
    assert any('"GET /api/items?q=1 HTTP/2" 200' in r.getMessage() for r in caplog.records)


def test_limit_concurrency_answers_503_per_stream() -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with serve(app, http2=True, limit_concurrency=2) as running, RawH2(running.port) as h2:
        h2.request(1, "/hold")
        h2.request(3, "/hold")
        h2.request(5, "/")
        refused = h2.response(5)
        assert refused.status == 503
        running.server._loop.call_soon_threadsafe(release.set)
        assert h2.response(1).status == 200
        assert h2.response(3).status == 200


def test_proxy_headers_apply_to_http2() -> None:
    with serve(scope_json, http2=True) as running, h2_client() as client:
        scope = client.get(
            running.url, headers={"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
        ).json()
    assert scope["client"][0] == "203.0.113.7"
    assert scope["scheme"] == "https"


def test_metrics_count_http2_requests_and_refusals() -> None:
    metrics_port = free_port()
    with (
        serve(hello, http2=True, metrics_port=metrics_port, limit_request_headers=5) as running,
        RawH2(running.port) as h2,
    ):
        for stream_id in (1, 3, 5):
            h2.request(stream_id)
            assert h2.response(stream_id).status == 200
        h2.request(7, extra=[(b"x-%d" % i, b"v") for i in range(6)])
        assert h2.response(7).status == 431
        samples = scrape(metrics_port)
    assert value(samples, "ketch_requests_total", method="GET", status="2xx") == 3
    assert value(samples, "ketch_requests_total", method="GET", status="4xx") == 1
    assert value(samples, "ketch_rejected_requests_total", status="431") == 1


def test_behind_the_proxy_protocol_the_preface_follows_the_header() -> None:
    """--proxy-protocol reads the PROXY header, then --http2 chooses the version."""
    with (
        serve(scope_json, http2=True, proxy_protocol=True) as running,
        RawH2(running.port, preface=False) as h2,
    ):
        h2.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 4711 443\r\n" + PREFACE + settings_frame())
        h2.request(1)
        scope = json.loads(h2.response(1).body)
    assert scope["http_version"] == "2"
    assert scope["client"] == ["203.0.113.7", 4711]


def test_http1_and_http2_clients_on_the_same_port() -> None:
    with serve(scope_json, http2=True) as running:
        with h2_client() as h2c, httpx.Client(timeout=10) as h1c:
            for _ in range(3):
                assert h2c.get(running.url).json()["http_version"] == "2"
                assert h1c.get(running.url).json()["http_version"] == "1.1"
        # a client sending the preface a byte at a time is still HTTP/2
        with RawConnection(running.port) as conn:
            for byte in PREFACE:
                conn.send(bytes([byte]))
            conn.send(settings_frame())
            reply = conn.read_exactly(9)
        assert reply[3] == 0x4  # the server's SETTINGS frame


def test_silent_or_half_preface_connections_close_at_the_keep_alive_timeout() -> None:
    with (
        serve(hello, http2=True, timeout_keep_alive=1) as running,
        RawConnection(running.port) as silent,
        RawConnection(running.port) as half,
    ):
        half.send(b"PRI * HTTP/2.0\r\n")
        assert silent.is_closed(timeout=5)
        assert half.is_closed(timeout=5)
        assert exchange(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 200


def test_http2_over_a_unix_socket(tmp_path: Path) -> None:
    uds = str(tmp_path / "ketch.sock")
    with serve(scope_json, http2=True, uds=uds):
        with RawH2(uds=uds) as h2:
            h2.request(1)
            scope = json.loads(h2.response(1).body)
        assert scope["http_version"] == "2"
        assert scope["client"] is None
        # and HTTP/1.1 on the same socket
        transport = httpx.HTTPTransport(uds=uds)
        with httpx.Client(transport=transport) as client:
            assert client.get("http://localhost/").json()["http_version"] == "1.1"


def test_without_http2_the_preface_gets_an_http11_refusal(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running:
        response = exchange(running.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert response.status == {"h11": 505, "httptools": 400}[http_impl]


def test_upgrade_h2c_is_served_over_http11() -> None:
    """RFC 9113 deprecates the h2c upgrade: ketch answers the request over HTTP/1.1."""
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    with serve(scope_json, http2=True) as running:
        response = exchange(running.port, request)
    assert response.status == 200
    assert json.loads(response.body)["http_version"] == "1.1"


def test_ketch_http2_environment_variable_turns_it_on() -> None:
    port = free_port()
    with KetchProcess(
        ["support.apps:hello", "--port", str(port)], env={"KETCH_HTTP2": "1"}
    ) as ketch:
        ketch.wait_started()
        with RawH2(port) as h2:
            h2.request(1)
            assert h2.response(1).status == 200


def test_http2_without_ketch_h2_is_one_line_naming_the_package(tmp_path: Path) -> None:
    # ketch-h2 hidden: its entry point's distribution is not on the path
    hide = tmp_path / "sitecustomize.py"
    hide.write_text(
        "import importlib.metadata as m\n"
        "_eps = m.entry_points\n"
        "def entry_points(**kw):\n"
        "    found = _eps(**kw)\n"
        "    if kw.get('group') == 'ketch.http2':\n"
        "        return m.EntryPoints([])\n"
        "    return found\n"
        "m.entry_points = entry_points\n"
    )
    result = run_ketch(
        ["support.apps:hello", "--http2"], env={"PYTHONPATH": f"{tmp_path}:{Path.cwd()}/tests"}
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["Error: --http2: no HTTP/2 plugin can run here: pip install ketch-h2"], (
        result.stderr
    )


def test_end_stream_on_an_empty_final_body() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert response.body == b"part"
    assert response.ended and response.reset is None


def test_response_before_the_whole_request_body_stops_the_client() -> None:
    """RFC 9113 8.1: a complete response to a request still being sent ends with
    RST_STREAM NO_ERROR, so the client stops sending."""
    with serve(hello, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, method="POST", end_stream=False)
        response = h2.response(1)
        assert response.body == b"Hello, world!"
        reset = h2.read_until(lambda f: f.kind == 0x3 and f.stream_id == 1)
        assert reset is not None and reset.error_code == NO_ERROR
        h2.send(window_update(0, 1))  # and the connection serves on
        h2.request(3)
        assert h2.response(3).status == 200


def test_request_trailers_end_the_body() -> None:
    with serve(echo, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, method="POST", body=b"data", end_stream=False)
        h2.send(h2.headers(1, [(b"x-checksum", b"abc")], end_stream=True))
        assert h2.response(1).body == b"data"
