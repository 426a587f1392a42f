"""The ASGI applications the benchmarks serve: standard library only, as little work
as possible, the same under every server, so that the server is what is measured.

    hello    GET  -> 200 text/plain "Hello, world!"
    json     GET  -> 200 application/json {"message": "Hello, world!"}
    echo     POST -> 200 application/octet-stream, the request body sent back
    stream   GET  -> 200 chunked: STREAM_CHUNKS chunks of STREAM_CHUNK_SIZE bytes
    ws_echo  WebSocket: every message sent back unchanged; plain HTTP gets hello

Each also answers the lifespan protocol, so every server starts it cleanly.
"""

from __future__ import annotations

import json as _json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, world!"
JSON_BODY = _json.dumps({"message": "Hello, world!"}).encode()
STREAM_CHUNKS = 16
STREAM_CHUNK_SIZE = 1024

# Messages built once: the apps must cost next to nothing per request.
_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_HELLO_BODY = {"type": "http.response.body", "body": HELLO_BODY}
_JSON_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(JSON_BODY)).encode()),
    ],
}
_JSON_BODY = {"type": "http.response.body", "body": JSON_BODY}
_STREAM_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/octet-stream")],
}
_STREAM_CHUNK = {"type": "http.response.body", "body": b"x" * STREAM_CHUNK_SIZE, "more_body": True}
_STREAM_END = {"type": "http.response.body", "body": b"", "more_body": False}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send(_HELLO_START)
        await send(_HELLO_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def json(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send(_JSON_START)
        await send(_JSON_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(_STREAM_START)
    for _ in range(STREAM_CHUNKS):
        await send(_STREAM_CHUNK)
    await send(_STREAM_END)


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        await hello(scope, receive, send)
        return
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes")})
        elif kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.disconnect":
            return
