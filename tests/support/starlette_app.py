"""A Starlette application, served over HTTP/2 by tests/integration/test_http2_peers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "starlette", "http_version": request.scope["http_version"]})


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def stream(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for index in range(5):
            yield f"part {index}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")


app = Starlette(
    routes=[Route("/", hello), Route("/echo", echo, methods=["POST"]), Route("/stream", stream)]
)
