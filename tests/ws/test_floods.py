"""Floods that cost the server memory: a client that sends pings and reads no
pong, and a compressed frame that inflates a thousand times. The server runs in
its own process; its memory is read from /proc while the flood runs."""

from __future__ import annotations

import asyncio
import select
import time
import zlib
from pathlib import Path

import pytest
from support import KetchProcess, RawConnection, serve
from support.websocket import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    RawWebSocket,
    WebSocketApp,
    frame,
    upgrade_request,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

MiB = 1024 * 1024
# RSS growth allowed while a flood runs: a few MiB of buffers, far below the flood
GROWTH_LIMIT_MIB = 16


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def echo_once(port: int) -> None:
    with RawWebSocket(port, "/echo") as ws:
        ws.send(frame(OP_TEXT, b"still here"))
        assert ws.read_frame() == (OP_TEXT, b"still here")


def send_pings(ws: RawWebSocket, total: int, stall: float) -> str:
    """Send `total` bytes of pings, reading nothing; how it ended."""
    sock = ws.conn.sock
    sock.setblocking(False)
    pings = frame(OP_PING, b"p" * 125) * 1000
    sent = 0
    while sent < total:
        _, writable, _ = select.select([], [sock], [], stall)
        if not writable:
            return f"stalled after {sent} bytes"
        try:
            sent += sock.send(pings)
        except OSError as exc:  # reset by the server
            return f"{type(exc).__name__} after {sent} bytes"
    return "all sent"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_ping_flood_from_a_client_that_reads_nothing(ws_impl: str, loop: str) -> None:
    """The server stops reading once its pongs pile up, and cuts the connection
    (a reset: a close frame would wait behind the unread pongs) when the client
    has read nothing for --ws-ping-timeout."""
    args = ["support.websocket:app", "--port", "0", "--ws", ws_impl, "--loop", loop]
    with KetchProcess([*args, "--ws-ping-timeout", "1"]) as server:
        port = server.port()
        echo_once(port)  # the WebSocket code is loaded and warm
        before = memory_mib(server.proc.pid, "VmRSS")
        with RawWebSocket(port, "/echo", rcvbuf=64 * 1024) as ws:
            outcome = send_pings(ws, 48 * MiB, stall=10)
        growth = memory_mib(server.proc.pid, "VmHWM") - before
        assert growth < GROWTH_LIMIT_MIB, f"RSS grew by {growth:.0f} MiB ({outcome})"
        assert outcome.startswith(("ConnectionResetError", "BrokenPipeError")), outcome
        server.wait_for_output(r'"code": 1006, "reason": "the client stopped reading"')
        echo_once(port)


def test_a_slow_reader_of_a_big_message_keeps_its_connection(ws_impl: str) -> None:
    """A client that reads, however slowly, is not cut off: it takes 3 s to read
    a message, with a --ws-ping-timeout of 1 s."""
    app = WebSocketApp()
    size = 12 * MiB
    with (
        serve(app, ws=ws_impl, ws_ping_timeout=1.0) as running,
        RawWebSocket(running.port, f"/flood?count=1&size={size}", rcvbuf=64 * 1024) as ws,
    ):
        head = ws.conn.read_exactly(10, timeout=5)  # a binary frame with a 64-bit length
        assert head == b"\x82\x7f" + size.to_bytes(8, "big")
        for _ in range(size // MiB):
            time.sleep(0.25)  # a slow client, not a synchronisation: 3 s in all
            assert ws.conn.read_exactly(MiB, timeout=5) == bytes(MiB)


def compressed_frame(size: int) -> bytes:
    """A final binary frame whose payload inflates to `size` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    block = bytes(MiB)
    payload = b"".join(compressor.compress(block) for _ in range(size // MiB))
    payload += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]  # RFC 7692 7.2.1
    data = bytearray(frame(OP_BINARY, payload))
    data[0] |= 0x40  # RSV1: compressed
    return bytes(data)


def test_compression_bomb_closes_1009_before_inflating_it(ws_impl: str) -> None:
    """A 64 KB frame that inflates to 64 MiB, with --ws-max-size 1 MiB: the server
    inflates a little over 1 MiB, closes with 1009, and serves on."""
    args = ["support.websocket:app", "--port", "0", "--ws", ws_impl, "--ws-max-size", str(MiB)]
    bomb = compressed_frame(64 * MiB)
    with KetchProcess(args) as server:
        port = server.port()
        echo_once(port)
        before = memory_mib(server.proc.pid, "VmRSS")
        conn = RawConnection(port, timeout=10)
        extension = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        conn.send(upgrade_request("/echo")[:-2] + extension + b"\r\n")
        with RawWebSocket(port, conn=conn) as ws:
            assert "permessage-deflate" in (ws.response.header("sec-websocket-extensions") or "")
            ws.send(bomb)
            code, reason = ws.read_close(timeout=10)
        growth = memory_mib(server.proc.pid, "VmHWM") - before
        assert code == 1009, reason
        assert growth < GROWTH_LIMIT_MIB, f"RSS grew by {growth:.0f} MiB"
        echo_once(port)


def test_compressed_messages_under_max_size_pass(ws_impl: str) -> None:
    """The limit counts inflated bytes over all frames of a message, and resets
    for the next one."""
    limit = 100_000

    async def client(port: int) -> ConnectionClosed:
        url = f"ws://127.0.0.1:{port}/echo"
        async with connect(url, compression="deflate", max_size=None) as ws:
            # (the websockets library refuses a compressed message of exactly the limit)
            for _ in range(3):
                await ws.send([b"\0" * 50_000, b"\0" * 49_999])  # in two frames
                assert await ws.recv() == b"\0" * (limit - 1)
            await ws.send(b"\0" * (limit - 1))
            assert await ws.recv() == b"\0" * (limit - 1)
            await ws.send([b"\0" * 60_000, b"\0" * 60_000])
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as exc:
                return exc
            raise AssertionError("the server took a message over --ws-max-size")

    with serve(WebSocketApp(), ws=ws_impl, ws_max_size=limit) as running:
        closed = asyncio.run(client(running.port))
    assert closed.rcvd is not None and closed.rcvd.code == 1009
