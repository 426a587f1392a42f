"""Peers that break the rules, over raw sockets: each gets a clear close code, the
app hears about it, and the server goes on serving everyone else."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from support import RawConnection, serve, wait_for
from support.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    WebSocketApp,
    frame,
)


def _still_serving(port: int) -> None:
    with RawWebSocket(port) as ws:
        ws.send(frame(OP_TEXT, b"still there?"))
        assert ws.read_frame() == (OP_TEXT, b"still there?")


def _expect_close(ws: RawWebSocket, code: int) -> str:
    """The server's close frame with `code`, then the end of the connection."""
    got, reason = ws.read_close()
    assert got == code, reason
    assert ws.conn.is_closed()
    return reason


def test_unmasked_client_frame_is_a_protocol_error(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    with serve(app, ws=ws_impl, http=http_impl) as running:
        with RawWebSocket(running.port) as ws:
            ws.send(frame(OP_TEXT, b"hello", mask=False))
            _expect_close(ws, 1002)
        wait_for(lambda: app.events)
        _still_serving(running.port)
    assert app.events[0]["code"] == 1002


@pytest.mark.parametrize(
    "bad",
    [
        frame(0x3, b"x"),  # a reserved opcode
        b"\xc1\x81" + b"\x00" * 4 + b"x",  # RSV1 without an extension
        frame(OP_CONT, b"x"),  # a continuation of nothing
        frame(OP_PING, b"x" * 126),  # a control frame over 125 bytes
        frame(OP_CLOSE, struct.pack("!H", 1005)),  # a close code no peer may send
    ],
    ids=["opcode", "rsv1", "continuation", "long-ping", "close-1005"],
)
def test_malformed_frames_are_protocol_errors(ws_impl: str, http_impl: str, bad: bytes) -> None:
    with serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running:
        with RawWebSocket(running.port) as ws:
            ws.send(bad)
            _expect_close(ws, 1002)
        _still_serving(running.port)


@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_in_text_closes_with_1007(
    ws_impl: str, http_impl: str, fragmented: bool
) -> None:
    app = WebSocketApp()
    with serve(app, ws=ws_impl, http=http_impl) as running:
        with RawWebSocket(running.port) as ws:
            if fragmented:
                ws.send(frame(OP_TEXT, b"ok \xe2", fin=False) + frame(OP_CONT, b"\x28\xa1"))
            else:
                ws.send(frame(OP_TEXT, b"bad \xff\xfe utf-8"))
            _expect_close(ws, 1007)
        wait_for(lambda: app.events)
        _still_serving(running.port)
    assert app.events[0]["code"] == 1007


def test_utf8_split_between_frames_is_fine(ws_impl: str, http_impl: str) -> None:
    with (
        serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running,
        RawWebSocket(running.port) as ws,
    ):
        text = "ünïcödé ✓".encode()
        ws.send(frame(OP_TEXT, text[:2], fin=False) + frame(OP_CONT, text[2:]))
        assert ws.read_frame() == (OP_TEXT, text)


def test_oversized_frame_closes_with_1009(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    size = 256 * 1024
    with serve(app, ws=ws_impl, http=http_impl, ws_max_size=size) as running:
        with RawWebSocket(running.port) as ws:
            ws.send(frame(OP_BINARY, b"\x01" * size))  # at the limit: fine
            assert ws.read_frame() == (OP_BINARY, b"\x01" * size)
            # claims 16 MiB, sends 1 MiB: the server stops at the limit, not at the end
            ws.send(frame(OP_BINARY, b"", length=16 * 1024 * 1024) + b"\x00" * (1024 * 1024))
            _expect_close(ws, 1009)
        wait_for(lambda: app.events)
        _still_serving(running.port)
    assert app.events[0]["code"] == 1009


def test_abrupt_disconnect_reaches_the_app_as_1006(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    with serve(app, ws=ws_impl, http=http_impl) as running:
        with RawWebSocket(running.port) as ws:
            ws.send(frame(OP_TEXT, b"hi"))
            assert ws.read_frame() == (OP_TEXT, b"hi")
        # the socket closed without a close frame
        wait_for(lambda: app.events)
        assert app.events == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
        _still_serving(running.port)


def test_peer_that_stops_answering_pings_is_dropped(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    options = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.2}
    with serve(app, ws=ws_impl, http=http_impl, **options) as running:
        with RawWebSocket(running.port) as ws:
            opcode, _ = ws.read_frame()
            assert opcode == OP_PING  # ... and no pong goes back
            reason = _expect_close(ws, 1011)
        wait_for(lambda: app.events)
    assert "ping timeout" in reason
    assert app.events[0]["code"] == 1011


def test_peer_that_answers_pings_stays(ws_impl: str, http_impl: str) -> None:
    options = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.2}
    with (
        serve(WebSocketApp(), ws=ws_impl, http=http_impl, **options) as running,
        RawWebSocket(running.port) as ws,
    ):
        for _ in range(2):  # a second ping, not a close: the pong counted
            opcode, payload = ws.read_frame()
            assert opcode == OP_PING
            ws.send(frame(OP_PONG, payload))
        ws.send(frame(OP_TEXT, b"alive"))
        assert ws.read_frame() == (OP_TEXT, b"alive")


def test_client_ping_gets_a_pong_with_its_payload(ws_impl: str, http_impl: str) -> None:
    with (
        serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running,
        RawWebSocket(running.port) as ws,
    ):
        ws.send(frame(OP_PING, b"are you there"))
        assert ws.read_frame() == (OP_PONG, b"are you there")


def test_client_close_without_code_reaches_app_as_1005(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    with serve(app, ws=ws_impl, http=http_impl) as running:
        with RawWebSocket(running.port) as ws:
            ws.send(frame(OP_CLOSE, b""))
            assert ws.read_frame() == (OP_CLOSE, b"")  # the echo
            assert ws.conn.is_closed()
        wait_for(lambda: app.events)
    assert app.events == [{"type": "websocket.disconnect", "code": 1005, "reason": ""}]


def test_frames_sent_with_the_handshake_are_kept_until_accepted(
    ws_impl: str, http_impl: str
) -> None:
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key
    )
    with (
        serve(WebSocketApp(), ws=ws_impl, http=http_impl) as running,
        RawConnection(running.port) as conn,
    ):
        conn.send(request + frame(OP_TEXT, b"early") + frame(OP_BINARY, b"bird"))
        assert conn.read_response(head_only=True).status == 101
        expected = b"\x81\x05early\x82\x04bird"
        assert conn.read_exactly(len(expected)) == expected
