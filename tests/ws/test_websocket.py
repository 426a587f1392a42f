"""The ASGI WebSocket cycle as a client sees it (the `websockets` client library),
for both WebSocket libraries and both HTTP parsers."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from support import RawConnection, exchange, serve, wait_for
from support.websocket import WebSocketApp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def url(port: int, path: str = "/echo", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{port}{path}"


async def closed_by_server(ws: ClientConnection) -> ConnectionClosed:
    """Wait for the server to close; the exception says how."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        return exc


# --- messages ------------------------------------------------------------------------------------
def test_text_and_binary_messages_echo(ws_impl: str, http_impl: str, loop_impl: str) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, many TCP segments both ways

    async def client(port: int) -> None:
        async with connect(url(port), max_size=None) as ws:
            await ws.send("hello ✓")
            assert await ws.recv() == "hello ✓"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            await ws.send(b"")
            assert await ws.recv() == b""
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "mented ", "text ✓"])  # one message in three frames
            assert await ws.recv() == "fragmented text ✓"
            await ws.send([b"a" * 70000, b"b" * 10])
            assert await ws.recv() == b"a" * 70000 + b"b" * 10

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl, loop=loop_impl) as running:
        run(client(running.port))


def test_many_messages_in_one_read_all_arrive_in_order(ws_impl: str, http_impl: str) -> None:
    async def client(port: int) -> None:
        async with connect(url(port)) as ws:
            for index in range(200):  # written back to back, without awaiting answers
                await ws.send(str(index))
            assert [await ws.recv() for _ in range(200)] == [str(i) for i in range(200)]

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        run(client(running.port))


# --- the scope -----------------------------------------------------------------------------------
def test_scope_describes_the_connection(ws_impl: str, http_impl: str) -> None:
    async def client(port: int) -> dict[str, Any]:
        target = url(port, "/api/caf%C3%A9/echo?x=1&y=%20")
        async with connect(target, subprotocols=["chat", "json"], compression=None) as ws:
            await ws.send("scope")
            data: dict[str, Any] = json.loads(await ws.recv())
            data["local_port"] = ws.local_address[1]
            return data

    with serve(
        WebSocketApp(), ws=ws_impl, http=http_impl, root_path="/root", lifespan="on"
    ) as running:
        scope = run(client(running.port))
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/root/api/café/echo"
    assert scope["raw_path"] == "/root/api/caf%C3%A9/echo"
    assert scope["root_path"] == "/root"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["subprotocols"] == ["chat", "json"]
    headers = dict(scope["headers"])
    assert headers["host"] == f"127.0.0.1:{running.port}"
    assert headers["upgrade"] == "websocket"
    assert "sec-websocket-key" in headers
    assert scope["client"] == ["127.0.0.1", scope["local_port"]]
    assert scope["server"] == ["127.0.0.1", running.port]
    assert scope["state"] == {"greeting": "hello from lifespan"}
    assert scope["asgi"]["version"] == "3.0"
    assert scope["extensions"] == ["websocket.http.response"]


# --- the handshake -------------------------------------------------------------------------------
def test_subprotocol_chosen_by_the_app(ws_impl: str, http_impl: str) -> None:
    async def client(port: int) -> str | None:
        async with connect(
            url(port, "/echo?subprotocol=json"), subprotocols=["chat", "json"]
        ) as ws:
            return ws.subprotocol

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        assert run(client(running.port)) == "json"


def test_subprotocol_the_client_did_not_offer_is_refused(ws_impl: str, http_impl: str) -> None:
    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(port, "/echo?subprotocol=xml"), subprotocols=["chat"]):
                pass
        assert info.value.response.status_code == 500

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        run(client(running.port))


def test_accept_headers_and_ketch_defaults(ws_impl: str, http_impl: str) -> None:
    async def client(port: int) -> Any:
        async with connect(url(port, "/echo?headers=x-one:1,x-two:two")) as ws:
            assert ws.response is not None
            return ws.response.headers

    with serve(
        WebSocketApp(), ws=ws_impl, http=http_impl, headers=[("x-site", "ketch")]
    ) as running:
        headers = run(client(running.port))
    assert headers["x-one"] == "1"
    assert headers["x-two"] == "two"
    assert headers["x-site"] == "ketch"
    assert headers["server"] == "ketch"
    assert headers["date"].endswith("GMT")
    assert len(headers.get_all("date")) == 1


def test_close_before_accept_is_403(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()

    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(port, "/reject")):
                pass
        assert info.value.response.status_code == 403

    with serve(app, ws=ws_impl, http=http_impl) as running:
        run(client(running.port))
        wait_for(lambda: app.events)
    assert app.events == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


@pytest.mark.parametrize("parts", [1, 3])
def test_denial_response(ws_impl: str, http_impl: str, parts: int) -> None:
    app = WebSocketApp()
    with serve(app, ws=ws_impl, http=http_impl) as running:
        with RawConnection(running.port) as conn:
            conn.send(
                b"GET /deny?status=418&parts=%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n" % parts
            )
            response = conn.read_response()
            assert conn.is_closed()
        wait_for(lambda: app.events)
    assert response.status == 418
    assert response.body == b"".join(b"denied %d;" % index for index in range(parts))
    assert response.header("x-denied") == "yes"
    assert response.header("content-type") == "text/plain"
    assert response.header("server") == "ketch"
    assert response.header("connection") == "close"
    if parts == 1:
        assert response.header("content-length") == str(len(response.body))
    else:
        assert response.header("transfer-encoding") == "chunked"
    assert app.events == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


def test_denial_response_seen_by_the_client_library(ws_impl: str, http_impl: str) -> None:
    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(port, "/deny?status=401&parts=2")):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.body == b"denied 0;denied 1;"  # read back from chunks

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        run(client(running.port))


def test_app_error_before_accept_is_500(ws_impl: str, http_impl: str) -> None:
    async def client(port: int, path: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(port, path)):
                pass
        assert info.value.response.status_code == 500

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        run(client(running.port, "/error-before"))
        run(client(running.port, "/return-before"))
        run(_echo_once(running.port))  # and everyone else is served


def test_app_error_after_accept_closes_with_1011(
    ws_impl: str, http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def client(port: int, path: str) -> ConnectionClosed:
        async with connect(url(port, path)) as ws:
            return await closed_by_server(ws)

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        failed = run(client(running.port, "/error-after"))
        returned = run(client(running.port, "/return-after"))
    assert failed.rcvd is not None and failed.rcvd.code == 1011
    assert returned.rcvd is not None and returned.rcvd.code == 1000
    assert "Exception in ASGI application" in caplog.text
    assert "the app failed after accepting" in caplog.text


def test_invalid_handshake_is_refused_and_others_are_served(ws_impl: str, http_impl: str) -> None:
    bad_key = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: not-base64!\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    bad_version = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    )
    app = WebSocketApp()
    with serve(app, ws=ws_impl, http=http_impl) as running:
        for request in (bad_key, bad_version):
            response = exchange(running.port, request)
            assert 400 <= response.status < 500
        run(_echo_once(running.port))
    assert app.events[-1]["code"] == 1000  # only the good client reached the app


async def _echo_once(port: int) -> None:
    async with connect(url(port)) as ws:
        await ws.send("ping?")
        assert await ws.recv() == "ping?"


# --- closing -------------------------------------------------------------------------------------
def test_server_close_with_code_and_reason(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()

    async def client(port: int) -> ConnectionClosed:
        async with connect(url(port)) as ws:
            await ws.send("close 4000 see you ✓")
            return await closed_by_server(ws)

    with serve(app, ws=ws_impl, http=http_impl) as running:
        closed = run(client(running.port))
        wait_for(lambda: app.events)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4000, "see you ✓")
    assert closed.rcvd_then_sent is True  # the server started the closing handshake
    assert app.events == [{"type": "websocket.disconnect", "code": 4000, "reason": "see you ✓"}]


def test_client_close_code_reaches_the_app(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()

    async def client(port: int) -> None:
        async with connect(url(port)) as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.close(4321, "client leaves")
            assert ws.close_code == 4321  # the server echoed the close frame

    with serve(app, ws=ws_impl, http=http_impl) as running:
        run(client(running.port))
        wait_for(lambda: app.events)
    assert app.events == [{"type": "websocket.disconnect", "code": 4321, "reason": "client leaves"}]


def test_after_disconnect_receive_repeats_and_send_raises_oserror(
    ws_impl: str, http_impl: str
) -> None:
    app = WebSocketApp()

    async def client(port: int) -> None:
        async with connect(url(port, "/after-disconnect")) as ws:
            await ws.close(1000)

    with serve(app, ws=ws_impl, http=http_impl) as running:
        run(client(running.port))
        wait_for(lambda: len(app.events) == 3)
    disconnect = {"type": "websocket.disconnect", "code": 1000, "reason": ""}
    assert app.events[0] == {"first": disconnect, "second": disconnect}
    assert app.events[1] == {"send raised": "ClientDisconnected"}
    assert app.events[2] == "close after disconnect is harmless"


def test_restart_closes_with_1012(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()

    async def client(running: Any) -> ConnectionClosed:
        async with connect(url(running.port)) as ws:
            await ws.send("hi")
            await ws.recv()
            running.server.request_restart()
            return await closed_by_server(ws)

    with serve(app, ws=ws_impl, http=http_impl) as running:
        closed = run(client(running))
        wait_for(lambda: app.events)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1012, "Server restarting")
    assert app.events == [
        {"type": "websocket.disconnect", "code": 1012, "reason": "Server restarting"}
    ]


# --- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("enabled", [True, False])
def test_per_message_deflate(ws_impl: str, http_impl: str, enabled: bool) -> None:
    text = "compress me " * 20000

    async def client(port: int) -> str | None:
        async with connect(url(port), compression="deflate", max_size=None) as ws:
            await ws.send(text)
            assert await ws.recv() == text
            await ws.send(b"\x00" * 100000)
            assert await ws.recv() == b"\x00" * 100000
            assert ws.response is not None
            extensions: str | None = ws.response.headers.get("Sec-WebSocket-Extensions")
            return extensions

    with serve(
        WebSocketApp(), ws=ws_impl, http=http_impl, ws_per_message_deflate=enabled
    ) as running:
        extensions = run(client(running.port))
    if enabled:
        assert extensions is not None and extensions.startswith("permessage-deflate")
    else:
        assert extensions is None


def test_message_over_max_size_closes_with_1009(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()

    async def client(port: int) -> ConnectionClosed:
        async with connect(url(port), compression=None) as ws:
            await ws.send("x" * 1000)  # at the limit: fine
            assert await ws.recv() == "x" * 1000
            await ws.send(["é" * 300, "é" * 300])  # 1200 bytes in two frames
            return await closed_by_server(ws)

    with serve(app, ws=ws_impl, http=http_impl, ws_max_size=1000) as running:
        closed = run(client(running.port))
        wait_for(lambda: app.events)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    assert app.events[0]["code"] == 1009


def test_ws_none_serves_upgrade_requests_as_http(http_impl: str) -> None:
    request = (
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with serve(WebSocketApp(), ws="none", http=http_impl) as running:
        response = exchange(running.port, request)
    assert response.status == 200
    assert response.body == b"plain HTTP for /chat"


def test_auto_prefers_websockets_and_the_plugins_import_no_library() -> None:
    code = (
        "import sys, ketch.ws.plugins as p\n"
        "from ketch.core.plugins import select_ws\n"
        "print(sorted(m for m in ('websockets', 'wsproto') if m in sys.modules))\n"
        "print(select_ws('auto').name, p.WEBSOCKETS.requirement, p.WSPROTO.requirement)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert output == ["[]", "websockets ketch-ws[websockets] ketch-ws[wsproto]"]


def test_uvicorns_websockets_sansio_name_works(http_impl: str) -> None:
    with serve(WebSocketApp(), ws="websockets-sansio", http=http_impl) as running:
        run(_echo_once(running.port))


# --- logging -------------------------------------------------------------------------------------
def test_connections_are_logged_like_uvicorn(
    ws_impl: str, http_impl: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ketch.error")

    async def client(port: int) -> None:
        await _echo_once(port)
        with pytest.raises(InvalidStatus):
            async with connect(url(port, "/reject")):
                pass

    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        run(client(running.port))
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith("127.0.0.1:") and m.endswith('"WebSocket /echo" [accepted]') for m in messages
    )
    assert any(m.endswith('"WebSocket /reject" 403') for m in messages)


# --- TLS -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_wss_over_tls(
    ws_impl: str, http_impl: str, loop_impl: str, ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    app = WebSocketApp()

    async def client(port: int) -> str:
        async with connect(url(port, scheme="wss"), ssl=context, max_size=None) as ws:
            await ws.send(b"y" * 300000)
            assert await ws.recv() == b"y" * 300000
            await ws.send("scope")
            scheme: str = json.loads(await ws.recv())["scheme"]
            return scheme

    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    with serve(app, ws=ws_impl, http=http_impl, loop=loop_impl, **tls) as running:
        assert run(client(running.port)) == "wss"
        wait_for(lambda: app.events)
    assert app.events == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
