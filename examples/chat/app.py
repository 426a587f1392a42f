"""A WebSocket chat room as a plain ASGI application.

    ketch app:app     # from this folder (see README.md)

GET /                       the chat page (open it in two browser tabs)
WebSocket /ws?name=NAME     every text message is sent to everyone in the room

One process keeps the room in memory: with `--workers N`, each worker has a
room of its own (share messages through Redis or a database instead).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

Send = Any
ROOM: set[Send] = set()  # the `send` of every connected client

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>ketch chat</title></head>
<body>
<h1>ketch chat</h1>
<ul id="messages"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
<script>
const name = prompt("Your name?") || "anonymous";
const scheme = location.protocol === "https:" ? "wss" : "ws";
const ws = new WebSocket(`${scheme}://${location.host}/ws?name=${encodeURIComponent(name)}`);
ws.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  document.getElementById("messages").appendChild(item);
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  ws.send(input.value);
  input.value = "";
};
</script>
</body></html>
"""


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "http":
        await page(scope, send)
    elif scope["type"] == "websocket":
        await chat(scope, receive, send)


async def page(scope: dict[str, Any], send: Send) -> None:
    found = scope["path"] == "/"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": PAGE if found else b"Not Found"})


async def chat(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 4404})  # refuses the handshake
        return
    query = parse_qs(scope["query_string"].decode())
    name = query.get("name", ["anonymous"])[0][:32]
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    ROOM.add(send)
    try:
        await broadcast(f"* {name} joined")
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text"):
                await broadcast(f"{name}: {message['text']}")
    finally:
        ROOM.discard(send)
    await broadcast(f"* {name} left")


async def broadcast(text: str) -> None:
    """Send to everyone; a client that is gone is left out of the room."""
    clients = list(ROOM)
    results = await asyncio.gather(
        *(client({"type": "websocket.send", "text": text}) for client in clients),
        return_exceptions=True,
    )
    for client, result in zip(clients, results, strict=True):
        if isinstance(result, Exception):
            ROOM.discard(client)
