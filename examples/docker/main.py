"""The application of the Docker example: a plain ASGI app with a health endpoint.

GET /         a greeting, with the client address and scheme ketch saw
GET /healthz  "ok": what the image's HEALTHCHECK asks for
"""

from __future__ import annotations

import json
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    if scope["path"] == "/healthz":
        body, content_type = b"ok", b"text/plain"
    else:
        client = scope.get("client")
        greeting = {"hello": "docker", "client": client and client[0], "scheme": scope["scheme"]}
        body, content_type = json.dumps(greeting).encode(), b"application/json"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
    )
    await send({"type": "http.response.body", "body": body})
