"""Apps that use the ASGI extensions (served in a thread, or as
`support.extension_apps:NAME` in a subprocess)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


async def pathsend(scope: Scope, receive: Any, send: Any) -> None:
    """Sends the file `?path=` by http.response.pathsend, with the `?length=`
    Content-Length if given. With `?catch=1`, an error that send() raises is
    caught and its text sent as the body instead (what the app heard)."""
    if scope["type"] != "http":
        return
    query = _query(scope)
    headers = [(b"content-type", b"application/octet-stream")]
    if "length" in query:
        headers.append((b"content-length", query["length"].encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    try:
        await send({"type": "http.response.pathsend", "path": query["path"]})
    except (RuntimeError, OSError) as exc:
        if not query.get("catch"):
            raise
        await send({"type": "http.response.body", "body": f"heard {exc!r}".encode()})


async def extensions_json(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the scope's extensions as JSON (an HTTP request), or sends
    them as the first message (a WebSocket)."""
    if scope["type"] == "lifespan":
        return
    data = json.dumps(scope.get("extensions"), default=list)
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": data})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data.encode()})


async def trailers(scope: Scope, receive: Any, send: Any) -> None:
    """A body in `?chunks=` messages (1 by default), then two trailers messages;
    `?length=1` gives a Content-Length."""
    if scope["type"] != "http":
        return
    query = _query(scope)
    chunks = int(query.get("chunks", "1"))
    body = [b"part %d;" % index for index in range(chunks)]
    headers = [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum, x-status")]
    if query.get("length"):
        headers.append((b"content-length", b"%d" % sum(map(len, body))))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    for index, part in enumerate(body):
        await send({"type": "http.response.body", "body": part, "more_body": index < chunks - 1})
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"x-checksum", b"abc")],
            "more_trailers": True,
        }
    )
    await send({"type": "http.response.trailers", "headers": [(b"x-status", b"0")]})


async def early_hints(scope: Scope, receive: Any, send: Any) -> None:
    """Two 103 Early Hints (the second after http.response.start), then the page."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.early_hint",
            "links": [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"],
        }
    )
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.early_hint", "links": [b"</font.woff2>; rel=preload"]})
    await send({"type": "http.response.body", "body": b"<!doctype html>"})
