"""The ASGI WebSocket spec through real clients, for both ws plugins on both parsers."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from support import KetchProcess, RawConnection, serve, wait_for
from support.ws import (
    EVENTS,
    RawWebSocket,
    deny,
    echo,
    fails_after_accept,
    fails_before_accept,
    refuse,
    slow_reader,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


@pytest.fixture
def options(ws_impl: str, http_impl: str) -> dict[str, Any]:
    return {"ws": ws_impl, "http": http_impl}


def _url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_echo_text_and_bytes(options: dict[str, Any]) -> None:
    async def client(port: int) -> None:
        async with connect(_url(port), compression=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            big = "x" * 300_000  # many frames' worth
            await ws.send(big)
            assert await ws.recv() == big

    with serve(echo, **options) as running:
        run(client(running.port))


def test_scope(options: dict[str, Any]) -> None:
    async def client(port: int) -> dict[str, Any]:
        async with connect(_url(port, "/chat/r%C3%A9?room=1"), subprotocols=["v2", "v1"]) as ws:
            await ws.send("scope")
            return json.loads(await ws.recv())  # type: ignore[no-any-return]

    with serve(echo, root_path="/api", lifespan="on", **options) as running:
        data = run(client(running.port))
    assert data["type"] == "websocket"
    assert data["scheme"] == "ws"
    assert data["path"] == "/api/chat/r\u00e9"
    assert data["raw_path"] == "/api/chat/r%C3%A9"
    assert data["root_path"] == "/api"
    assert data["query_string"] == "room=1"
    assert data["subprotocols"] == ["v2", "v1"]
    assert data["http_version"] == "1.1"
    assert data["client"][0] == "127.0.0.1"
    assert data["server"] == ["127.0.0.1", running.port]
    assert ["sec-websocket-protocol", "v2, v1"] in data["headers"]
    assert data["state"] == {"greeting": "hello from lifespan"}
    assert data["extensions"] == ["websocket.http.response"]


def test_accept_with_subprotocol_and_headers(options: dict[str, Any]) -> None:
    async def client(port: int) -> tuple[str | None, str | None, str | None]:
        async with connect(_url(port), subprotocols=["chat"]) as ws:
            headers = ws.response.headers
            return ws.subprotocol, headers.get("x-echo"), headers.get("server")

    with serve(echo, **options) as running:
        assert run(client(running.port)) == ("chat", "yes", "ketch")


def test_server_close_with_code_and_reason(options: dict[str, Any]) -> None:
    async def client(port: int) -> tuple[int | None, str | None]:
        async with connect(_url(port)) as ws:
            await ws.send("close 4001 go away")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason

    with serve(echo, **options) as running:
        assert run(client(running.port)) == (4001, "go away")


def test_client_close_code_reaches_the_app(options: dict[str, Any]) -> None:
    EVENTS.clear()

    async def client(port: int) -> None:
        async with connect(_url(port)) as ws:
            await ws.close(code=4321, reason="bye")

    with serve(echo, **options) as running:
        run(client(running.port))
        wait_for(lambda: EVENTS)
    assert EVENTS[-1]["type"] == "websocket.disconnect"
    assert EVENTS[-1]["code"] == 4321


def test_close_before_accept_is_403(options: dict[str, Any]) -> None:
    with serve(refuse, **options) as running, pytest.raises(InvalidStatus) as info:
        run(connect(_url(running.port)).__aenter__())
    assert info.value.response.status_code == 403


def test_denial_response(options: dict[str, Any]) -> None:
    with serve(deny, **options) as running:
        raw = RawWebSocket(running.port)
        response = raw.response
        body = raw.conn.read_exactly(int(response.header("content-length") or 0))
        raw.close()
    assert response.status == 401
    assert response.header("www-authenticate") == "Bearer"
    assert body == b"who are you?"


def test_app_error_before_accept_is_500(options: dict[str, Any]) -> None:
    with serve(fails_before_accept, **options) as running:
        raw = RawWebSocket(running.port)
        assert raw.response.status == 500
        raw.close()


def test_app_error_after_accept_closes_1011(options: dict[str, Any]) -> None:
    with serve(fails_after_accept, **options) as running:
        raw = RawWebSocket(running.port)
        raw.send_frame(0x1, b"trigger")
        assert raw.read_close()[0] == 1011
        raw.close()


def test_oversized_message_closes_1009(options: dict[str, Any]) -> None:
    with serve(echo, ws_max_size=1024, **options) as running:
        raw = RawWebSocket(running.port)
        raw.send_frame(0x2, b"a" * 2000)
        assert raw.read_close()[0] == 1009
        raw.close()


def test_unmasked_frame_closes_1002(options: dict[str, Any]) -> None:
    with serve(echo, **options) as running:
        raw = RawWebSocket(running.port)
        raw.send_frame(0x1, b"not masked", mask=False)
        assert raw.read_close()[0] == 1002
        raw.close()


def test_bad_utf8_closes_1007(options: dict[str, Any]) -> None:
    with serve(echo, **options) as running:
        raw = RawWebSocket(running.port)
        raw.send_frame(0x1, b"\xff\xfe bad")
        assert raw.read_close()[0] == 1007
        raw.close()


def test_abrupt_disconnect_reaches_the_app_as_1006(options: dict[str, Any]) -> None:
    EVENTS.clear()
    with serve(echo, **options) as running:
        raw = RawWebSocket(running.port)
        raw.send_frame(0x1, b"hi")
        assert raw.read_frame() == (0x1, b"hi")
        raw.close()  # no close frame: the TCP connection just goes
        wait_for(lambda: EVENTS)
    assert EVENTS[-1]["code"] == 1006


def test_peer_that_stops_answering_pings_is_dropped(options: dict[str, Any]) -> None:
    EVENTS.clear()
    with serve(echo, ws_ping_interval=0.2, ws_ping_timeout=0.3, **options) as running:
        raw = RawWebSocket(running.port)
        opcode, _ = raw.read_frame()
        assert opcode == 0x9  # a ping, which this client never answers
        assert raw.conn.is_closed(timeout=5)
        wait_for(lambda: EVENTS)
        raw.close()
    assert EVENTS[-1]["code"] in (1011, 1006)


def test_answered_pings_keep_the_connection(options: dict[str, Any]) -> None:
    async def client(port: int) -> None:
        async with connect(_url(port)) as ws:  # the client library answers pings
            for _ in range(5):
                await asyncio.sleep(0.2)
                await ws.send("still here")
                assert await ws.recv() == "still here"

    with serve(echo, ws_ping_interval=0.1, ws_ping_timeout=0.5, **options) as running:
        run(client(running.port))


@pytest.mark.parametrize("deflate", [True, False])
def test_per_message_deflate(options: dict[str, Any], deflate: bool) -> None:
    async def client(port: int) -> str | None:
        async with connect(_url(port)) as ws:  # offers permessage-deflate
            await ws.send("z" * 10000)
            assert await ws.recv() == "z" * 10000
            return ws.response.headers.get("sec-websocket-extensions")

    with serve(echo, ws_per_message_deflate=deflate, **options) as running:
        extensions = run(client(running.port))
    assert (extensions is not None and "permessage-deflate" in extensions) is deflate


def test_slow_reader_holds_back_the_app(options: dict[str, Any]) -> None:
    """The app's send() waits while the client does not read."""
    EVENTS.clear()
    with serve(echo, **options) as running:
        raw = RawWebSocket(running.port)
        raw.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        raw.send_frame(0x1, b"flood 2000")  # 2000 x 64 KiB = 125 MiB if nothing held it back
        wait_for(lambda: EVENTS)
        wait_for(lambda: _stable(EVENTS), timeout=10)
        assert len(EVENTS) < 500
        raw.close()


def _stable(items: list[Any]) -> bool:
    """True once the list stopped growing for a moment."""
    before = len(items)
    time.sleep(0.2)
    return len(items) == before


def test_slow_app_pauses_reading(options: dict[str, Any]) -> None:
    """Past --ws-max-queue unread messages, the server stops reading the socket."""
    with serve(slow_reader, ws_max_queue=4, **options) as running:
        raw = RawWebSocket(running.port)
        raw.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        raw.conn.sock.setblocking(False)
        frame_count = 0
        stuck = 0
        while stuck < 50:
            try:
                raw.send_frame(0x2, b"m" * 65536)
                frame_count += 1
                stuck = 0
            except (BlockingIOError, TimeoutError, OSError):
                stuck += 1
                time.sleep(0.01)  # input pacing while TCP pushes back
            assert frame_count < 1000, "the server kept reading messages nobody consumes"
        raw.close()


def test_ws_none_makes_upgrades_plain_http(http_impl: str) -> None:
    with serve(echo, ws="none", http=http_impl) as running:
        raw = RawWebSocket(running.port)
        body = raw.conn.read_exactly(int(raw.response.header("content-length") or 0))
        raw.close()
    assert raw.response.status == 200
    assert json.loads(body)["type"] == "http"


def test_wss_over_tls(ws_impl: str, http_impl: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def client(port: int) -> dict[str, Any]:
        async with connect(f"wss://127.0.0.1:{port}/", ssl=context) as ws:
            await ws.send("scope")
            return json.loads(await ws.recv())  # type: ignore[no-any-return]

    options = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
    with serve(echo, ws=ws_impl, http=http_impl, **options) as running:
        assert run(client(running.port))["scheme"] == "wss"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_closes_websockets_with_1001(ws_impl: str, sig: int) -> None:
    args = ["support.ws:echo", "--port", "0", "--ws", ws_impl]
    with KetchProcess(args) as ketch:
        port = ketch.port()

        async def client() -> tuple[int | None, str | None]:
            async with connect(_url(port)) as ws:
                await ws.send("ping")
                assert await ws.recv() == "ping"
                ketch.signal(sig)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                return ws.close_code, ws.close_reason

        code, reason = run(client())
        assert ketch.wait(10) == 0
    assert code == 1001
    assert reason == "Server shutting down"
    assert "app saw disconnect 1001" in ketch.output


def test_500_connections_echo_100_messages_each(ws_impl: str) -> None:
    async def one(port: int, index: int) -> int:
        async with connect(_url(port), compression=None, ping_interval=None) as ws:
            for n in range(100):
                await ws.send(f"{index}:{n}")
                assert await ws.recv() == f"{index}:{n}"
        return 100

    async def many(port: int) -> int:
        results = await asyncio.gather(*(one(port, i) for i in range(500)))
        return sum(results)

    args = ["support.ws:echo", "--port", "0", "--ws", ws_impl, "--no-access-log"]
    with KetchProcess(args) as ketch:
        port = ketch.port()
        assert asyncio.run(asyncio.wait_for(many(port), 120)) == 50_000
        assert "Exception" not in ketch.output


def test_invalid_upgrade_is_400(options: dict[str, Any]) -> None:
    with serve(echo, **options) as running, RawConnection(running.port) as conn:
        conn.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"  # no Sec-WebSocket-Key
        )
        response = conn.read_response()
        assert response.status == 400
        assert httpx.get(f"http://127.0.0.1:{running.port}/").status_code == 200
