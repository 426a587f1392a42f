"""Flow control both ways: a peer that reads slowly makes the app's send() wait
instead of the server buffering without bound, and a slow app makes the server
stop reading once --ws-max-queue messages wait."""

from __future__ import annotations

import select
import time

from support import serve, wait_for
from support.websocket import (
    OP_BINARY,
    OP_TEXT,
    RawWebSocket,
    WebSocketApp,
    frame,
    wait_until_stable,
)

MiB = 1024 * 1024


def test_slow_reader_blocks_the_app_instead_of_buffering(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    count = 64
    with (
        serve(app, ws=ws_impl, http=http_impl) as running,
        RawWebSocket(running.port, f"/flood?count={count}&size={MiB}", rcvbuf=64 * 1024) as ws,
    ):
        wait_for(lambda: app.sent > 0)
        # nothing is read: the app gets as far as the socket buffers allow, then waits
        stalled_at = wait_until_stable(lambda: app.sent)
        assert stalled_at <= count // 4, f"{stalled_at} MiB went out to a peer that reads nothing"
        for index in range(count):  # now read: every message arrives, whole and in order
            opcode, payload = ws.read_frame(timeout=10)
            assert (opcode, len(payload), payload[:1]) == (OP_BINARY, MiB, bytes([index]))
        assert app.sent == count


def test_slow_app_pauses_reading_at_max_queue(ws_impl: str, http_impl: str) -> None:
    app = WebSocketApp()
    message = frame(OP_BINARY, b"m" * 16384)
    total = 2000  # 32 MiB
    data = message * total
    size = len(data)
    with (
        serve(app, ws=ws_impl, http=http_impl, ws_max_queue=4) as running,
        RawWebSocket(running.port, "/stall") as ws,
    ):
        sock = ws.conn.sock
        sock.setblocking(False)
        sent = 0
        while sent < size:  # write until the server stops reading
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                break
            sent += sock.send(data[sent : sent + MiB])
        assert sent < size // 2, f"the server read {sent} bytes the app did not want"
        app.release.set()  # the app reads: the server reads again
        sock.setblocking(True)
        sock.settimeout(10)
        sock.sendall(data[sent:])
        deadline = time.monotonic() + 10
        last = b""
        while last != str(total).encode() and time.monotonic() < deadline:
            opcode, last = ws.read_frame(timeout=10)
            assert opcode == OP_TEXT
        assert last == str(total).encode()  # every message reached the app
