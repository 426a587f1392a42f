"""What a hostile or merely unusual client does to one HTTP/1.1 connection:
pipelining mixed with errors, streaming, upgrades, bytes after the last
request. Each test is the regression test of a defect, through real sockets
on both parsers where both were affected."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support import RawConnection, exchange, serve

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def busy_stream(scope: Any, receive: Any, send: Any) -> None:
    """/stream sends one-byte chunks as fast as the loop turns, for three seconds
    (longer than a linger); anything else is a plain 200."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/stream":
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"ok"})


def test_one_connection_cannot_stop_the_deadline_sweep(http_impl: str) -> None:
    """A streamed response with an invalid request pipelined behind it: whatever
    that connection does, the other connections' deadlines still fire."""
    with serve(busy_stream, http=http_impl, timeout_keep_alive=1) as running:
        with RawConnection(running.port) as hostile:
            hostile.send(
                b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /no-host HTTP/1.1\r\n\r\n"  # a 400, pipelined
            )
            # For four seconds (past the two-second linger a hasty error answer
            # would arm), every new idle connection is closed by its deadline.
            started = time.monotonic()
            while time.monotonic() - started < 4.0:
                with RawConnection(running.port) as idle:
                    idle.send(GET)
                    assert idle.read_response().status == 200
                    assert idle.is_closed(timeout=3), "the keep-alive deadline did not fire"
        assert exchange(running.port, GET).status == 200
