"""The application the deployment tests serve: it stands for the user's `main:app`.

It imports only the standard library, because the tests copy this file as
`main.py` into a directory of their own and run the documented commands there
(`ketch main:app ...`, `command=.../ketch main:app --fd 0`, ...), under process
managers that do not pass our PYTHONPATH on.

GET /healthz      "ok" (the Kubernetes probes)
GET /cached       cacheable by anyone for a minute (Cache-Control set by the app)
GET /slow?s=N     answers after N seconds: a request in flight during a restart
GET /block?s=N    blocks its event loop for N seconds: a stuck worker
POST /upload      {"size": ..., "sha256": ...} of the body, read as it streams
anything else     what the app saw: client, scheme, host, path, pid, ...
WebSocket         echoes text, prefixed with the scheme it saw
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
    elif scope["path"] == "/healthz":
        await respond(send, b"ok", b"text/plain")
    elif scope["path"] == "/cached":
        await respond(send, b"the same for everyone", b"text/plain", b"public, max-age=60")
    elif scope["path"] == "/slow":
        seconds = float(scope["query_string"].decode().partition("=")[2] or "1")
        print("slow request started", flush=True)  # tests wait for this line
        await asyncio.sleep(seconds)
        await respond(send, b"slept", b"text/plain")
    elif scope["path"] == "/block":
        seconds = float(scope["query_string"].decode().partition("=")[2] or "1")
        print("blocking request started", flush=True)  # tests wait for this line
        time.sleep(seconds)  # what a misbehaving endpoint does: no worker serves meanwhile
        await respond(send, b"blocked", b"text/plain")
    elif scope["path"] == "/upload":
        digest, size = hashlib.sha256(), 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        await respond_json(send, {"size": size, "sha256": digest.hexdigest()})
    else:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        await respond_json(
            send,
            {
                "client": list(client) if client else None,
                "server": list(scope["server"]) if scope.get("server") else None,
                "scheme": scope["scheme"],
                "host": headers.get("host"),
                "path": scope["path"],
                "root_path": scope["root_path"],
                "http_version": scope["http_version"],
                "pid": os.getpid(),
            },
        )


async def websocket_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": f"{scope['scheme']}: {message['text']}"})


async def respond_json(send: Any, data: dict[str, Any]) -> None:
    await respond(send, json.dumps(data).encode(), b"application/json")


async def respond(send: Any, body: bytes, content_type: bytes, cache: bytes = b"") -> None:
    headers = [(b"content-type", content_type)]
    if cache:
        headers.append((b"cache-control", cache))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
