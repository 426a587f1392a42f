"""The bundled example: a plain ASGI application with no dependencies.

    ketch app:app     # from this folder (see README.md)

GET /        a small HTML page
GET /json    {"hello": "world", ...} with the client address ketch saw
POST /echo   the request body, back
"""

from __future__ import annotations

import json
from typing import Any

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>ketch</title></head>
<body><h1>Hello from ketch</h1>
<p>This page is served by the bundled example app
(<code>examples/hello/app.py</code>). Try <a href="/json">/json</a>.</p>
</body></html>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return

    path, method = scope["path"], scope["method"]
    if path == "/json":
        client = scope.get("client")
        payload = {
            "hello": "world",
            "client": f"{client[0]}:{client[1]}" if client else None,
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
        }
        await _respond(send, 200, "application/json", json.dumps(payload).encode())
    elif path == "/echo" and method == "POST":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await _respond(send, 200, "application/octet-stream", body)
    elif path == "/":
        await _respond(send, 200, "text/html; charset=utf-8", PAGE)
    else:
        await _respond(send, 404, "text/plain; charset=utf-8", b"Not Found")


async def _respond(send: Any, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
