"""Draining shutdown: on SIGTERM/SIGINT every open WebSocket gets a close frame
(1001, going away), the closing handshake completes, the app sees
websocket.disconnect, and the process exits 0; nothing is just reset."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import struct
import threading
import time
from typing import Any

import pytest
from support import KetchProcess, RawConnection, serve, wait_for
from support.websocket import (
    OP_CLOSE,
    OP_TEXT,
    RawWebSocket,
    WebSocketApp,
    frame,
    upgrade_request,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK


def _app_events(output: str) -> list[Any]:
    return [json.loads(line) for line in re.findall(r"app event: (.*)", output)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_open_websockets_are_closed_with_1001_on_shutdown(
    ws_impl: str, http_impl: str, sig: int
) -> None:
    args = ["support.websocket:app", "--port", "0", "--ws", ws_impl, "--http", http_impl]
    with KetchProcess(args) as ketch:
        port = ketch.port()

        async def clients() -> list[ConnectionClosedOK]:
            sockets = [await connect(f"ws://127.0.0.1:{port}/") for _ in range(3)]
            for ws in sockets:
                await ws.send("hello")
                assert await ws.recv() == "hello"
            ketch.signal(sig)
            closed: list[ConnectionClosedOK] = []
            for ws in sockets:
                # a clean closing handshake: ConnectionClosedOK, not ...Error
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                closed.append(info.value)
            return closed

        closed = asyncio.run(asyncio.wait_for(clients(), 15))
        assert ketch.wait(10) == 0
        output = ketch.output
    for exc in closed:
        assert exc.rcvd is not None
        assert (exc.rcvd.code, exc.rcvd.reason) == (1001, "Server shutting down")
        assert exc.sent is not None and exc.sent.code == 1001  # the client answered
    disconnect = {"type": "websocket.disconnect", "code": 1001, "reason": "Server shutting down"}
    assert _app_events(output) == [disconnect] * 3
    assert "Finished server process" in output


def test_a_peer_that_never_answers_the_close_frame_does_not_hold_shutdown() -> None:
    args = ["support.websocket:app", "--port", "0"]
    with KetchProcess(args) as ketch:
        port = ketch.port()
        with RawWebSocket(port) as ws:
            ws.send(frame(OP_TEXT, b"hi"))
            assert ws.read_frame() == (OP_TEXT, b"hi")
            started = time.monotonic()
            ketch.signal(signal.SIGTERM)
            assert ws.read_close() == (1001, "Server shutting down")  # ... and it never answers
            assert ketch.wait(15) == 0
            assert time.monotonic() - started < 8  # the close timeout: 5 s
            assert ws.conn.is_closed()


def test_a_websocket_accepted_during_shutdown_is_closed_right_away(
    ws_impl: str, http_impl: str
) -> None:
    app = WebSocketApp()
    release = threading.Event()

    async def slow_accept(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "websocket.accept"})
        app.record(await receive())

    with serve(slow_accept, ws=ws_impl, http=http_impl) as running:
        conn = RawConnection(running.port)
        conn.send(upgrade_request())
        wait_for(lambda: running.context.tasks)  # the app has the connect event
        running.server.request_exit()
        wait_for(lambda: running.context.shutting_down)
        release.set()
        with RawWebSocket(running.port, conn=conn) as ws:  # 101 Switching Protocols, then
            assert ws.read_close() == (1001, "Server shutting down")
            ws.send(frame(OP_CLOSE, struct.pack("!H", 1001)))
            assert ws.conn.is_closed()
        wait_for(lambda: app.events)
    assert app.events == [
        {"type": "websocket.disconnect", "code": 1001, "reason": "Server shutting down"}
    ]
