"""WebSocket test helpers: apps, and a raw client that can misbehave."""

from __future__ import annotations

import base64
import os
import struct
from typing import Any

from support import RawConnection

EVENTS: list[dict[str, Any]] = []  # what ws apps saw, for in-thread servers


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Accepts (with the first offered subprotocol) and echoes until the client leaves."""
    if scope["type"] == "lifespan":
        from support.apps import lifespan_with_state

        await lifespan_with_state(scope, receive, send)
        return
    if scope["type"] != "websocket":
        from support.apps import scope_json

        await scope_json(scope, receive, send)
        return
    assert (await receive())["type"] == "websocket.connect"
    subprotocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": subprotocols[0] if subprotocols else None,
            "headers": [(b"x-echo", b"yes")],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(message)
            print(f"app saw disconnect {message['code']}", flush=True)
            return
        text = message.get("text")
        if text == "scope":
            import json

            data = {
                k: v
                for k, v in scope.items()
                if k
                in (
                    "type",
                    "scheme",
                    "path",
                    "root_path",
                    "query_string",
                    "subprotocols",
                    "http_version",
                )
            }
            data["raw_path"] = scope["raw_path"].decode()
            data["query_string"] = scope["query_string"].decode()
            data["client"] = list(scope["client"]) if scope["client"] else None
            data["server"] = list(scope["server"]) if scope["server"] else None
            data["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
            data["state"] = dict(scope["state"])
            data["extensions"] = sorted(scope.get("extensions", {}))
            await send({"type": "websocket.send", "text": json.dumps(data)})
        elif text is not None and text.startswith("close "):
            _, code, reason = text.split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
        elif text is not None and text.startswith("flood "):
            chunk = b"f" * 65536
            for _ in range(int(text.split()[1])):
                await send({"type": "websocket.send", "bytes": chunk})
                EVENTS.append({"type": "flood-sent"})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def refuse(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def deny(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"are you?"})


async def fails_before_accept(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    raise RuntimeError("no accept")


async def fails_after_accept(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("broken handler")


async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
    """Accepts and never reads: messages pile up in the server's queue."""
    await receive()
    await send({"type": "websocket.accept"})
    import asyncio

    while True:
        await asyncio.sleep(3600)


class RawWebSocket:
    """A hand-rolled client: exact frames, masked or not, for misbehaving-peer tests."""

    def __init__(self, port: int, path: str = "/", headers: dict[str, str] | None = None) -> None:
        self.conn = RawConnection(port, timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.conn.send(
            (
                f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        self.response = self.conn.read_response(head_only=True)

    def send_frame(
        self, opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True
    ) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        size = len(payload)
        mask_bit = 0x80 if mask else 0
        if size < 126:
            head += bytes([mask_bit | size])
        elif size < 65536:
            head += bytes([mask_bit | 126]) + struct.pack("!H", size)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.conn.send(head + payload)

    def read_frame(self, timeout: float = 10.0) -> tuple[int, bytes]:
        first, second = self.conn.read_exactly(2, timeout)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self.conn.read_exactly(2, timeout))
        elif size == 127:
            (size,) = struct.unpack("!Q", self.conn.read_exactly(8, timeout))
        return first & 0x0F, self.conn.read_exactly(size, timeout)

    def read_close(self, timeout: float = 10.0) -> tuple[int, str]:
        while True:
            opcode, payload = self.read_frame(timeout)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode("utf-8", "replace")

    def close(self) -> None:
        self.conn.close()
