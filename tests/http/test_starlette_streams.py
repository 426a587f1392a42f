"""Starlette's StreamingResponse stops when its client leaves.

ketch's HTTP scopes say ASGI spec 2.5, so Starlette streams without listening
for http.disconnect and relies on send() raising an OSError once the client is
gone (spec 2.4): without it, an endless stream would run for nobody, forever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from support import RawConnection, serve, wait_for

stopped = threading.Event()


async def events(request: Request) -> StreamingResponse:
    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    return StreamingResponse(forever(), media_type="text/event-stream")


app = Starlette(routes=[Route("/events", events)])


def test_an_endless_stream_stops_when_its_client_leaves(http_impl: str) -> None:
    stopped.clear()
    with serve(app, http=http_impl) as running:
        conn = RawConnection(running.port)
        conn.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.read_until(b"data: tick")
        conn.close()
        assert stopped.wait(5), "the stream went on after the client left"
        wait_for(lambda: not running.context.tasks, timeout=5)
