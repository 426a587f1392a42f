"""WebSocket test helpers: an app whose behaviour the request path chooses and that
records what it sees, and a raw client for peers that break the rules.

The app runs in a server thread (tests read `app.events`) or, as
`support.websocket:app`, in a subprocess (it prints its events, one a line).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from support import RawConnection, RawResponse
from support.apps import lifespan_with_state

Scope = dict[str, Any]


class WebSocketApp:
    """`/echo` (default) echoes, and obeys text commands: `close CODE REASON`,
    `scope` (answers with the scope as JSON). Other paths: see the methods."""

    def __init__(self, print_events: bool = False) -> None:
        self.print_events = print_events
        self.events: list[Any] = []  # appended from the server thread
        self.sent = 0  # messages /flood completed
        self.release = threading.Event()  # lets /stall go on

    def record(self, event: Any) -> None:
        self.events.append(event)
        if self.print_events:
            print("app event:", json.dumps(event), flush=True)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_with_state(scope, receive, send)
            return
        if scope["type"] == "http":
            body = b"plain HTTP for " + scope["path"].encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        name = scope["path"].rsplit("/", 1)[-1].replace("-", "_") or "echo"
        query = dict(parse_qsl(scope["query_string"].decode()))
        handler = getattr(self, f"ws_{name}", self.ws_echo)
        try:
            await handler(scope, receive, send, query)
        except OSError as exc:
            self.record({"raised": type(exc).__name__, "oserror": True})
            raise

    async def _accept(self, receive: Any, send: Any, query: dict[str, str]) -> None:
        message = await receive()
        assert message["type"] == "websocket.connect", message
        headers = [
            tuple(item.encode().split(b":", 1))
            for item in query.get("headers", "").split(",")
            if item
        ]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": query.get("subprotocol"),
                "headers": headers,
            }
        )

    async def ws_echo(self, scope: Scope, receive: Any, send: Any, query: dict[str, str]) -> None:
        await self._accept(receive, send, query)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.record(message)
                return
            text = message.get("text")
            if text is not None and text.startswith("close "):
                _, code, reason = text.split(" ", 2)
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
            elif text == "scope":
                await send({"type": "websocket.send", "text": json.dumps(_scope_data(scope))})
            elif text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    async def ws_reject(self, scope: Scope, receive: Any, send: Any, query: dict[str, str]) -> None:
        await receive()
        await send({"type": "websocket.close"})
        self.record(await receive())

    async def ws_deny(self, scope: Scope, receive: Any, send: Any, query: dict[str, str]) -> None:
        """A denial response: `?status=`, the body in `?parts=` messages."""
        await receive()
        status = int(query.get("status", "401"))
        parts = int(query.get("parts", "1"))
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")],
            }
        )
        for index in range(parts):
            last = index == parts - 1
            body = b"denied %d;" % index
            await send(
                {"type": "websocket.http.response.body", "body": body, "more_body": not last}
            )
        self.record(await receive())

    async def ws_error_before(self, scope: Scope, receive: Any, send: Any, query: Any) -> None:
        await receive()
        raise RuntimeError("the app failed before accepting")

    async def ws_error_after(self, scope: Scope, receive: Any, send: Any, query: Any) -> None:
        await self._accept(receive, send, query)
        raise RuntimeError("the app failed after accepting")

    async def ws_return_before(self, scope: Scope, receive: Any, send: Any, query: Any) -> None:
        await receive()

    async def ws_return_after(self, scope: Scope, receive: Any, send: Any, query: Any) -> None:
        await self._accept(receive, send, query)

    async def ws_flood(self, scope: Scope, receive: Any, send: Any, query: dict[str, str]) -> None:
        """Sends `?count=` binary messages of `?size=` bytes as fast as it may."""
        await self._accept(receive, send, query)
        count, size = int(query["count"]), int(query["size"])
        for index in range(count):
            await send({"type": "websocket.send", "bytes": bytes([index % 256]) * size})
            self.sent = index + 1
        self.record(await receive())

    async def ws_stall(self, scope: Scope, receive: Any, send: Any, query: dict[str, str]) -> None:
        """Reads nothing until the test sets `release`, then counts what arrived."""
        await self._accept(receive, send, query)
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        received = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            received += 1
            await send({"type": "websocket.send", "text": str(received)})

    async def ws_after_disconnect(self, scope: Scope, receive: Any, send: Any, query: Any) -> None:
        """After the client leaves: receive() again, then send(), as an app might."""
        await self._accept(receive, send, query)
        first = await receive()
        second = await receive()
        self.record({"first": first, "second": second})
        try:
            await send({"type": "websocket.send", "text": "anyone there?"})
        except OSError as exc:
            self.record({"send raised": type(exc).__name__})
            await send({"type": "websocket.close"})  # closing again is harmless
            self.record("close after disconnect is harmless")


def _scope_data(scope: Scope) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "scheme": scope["scheme"],
        "http_version": scope["http_version"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "subprotocols": list(scope["subprotocols"]),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "state": {k: v for k, v in scope.get("state", {}).items() if isinstance(v, str | int)},
        "asgi": scope["asgi"],
        "extensions": sorted(scope.get("extensions", {})),
    }


# the app for subprocess servers (`support.websocket:app`)
app = WebSocketApp(print_events=True)


def wait_until_stable(read: Callable[[], int], quiet: float = 0.3, timeout: float = 10.0) -> int:
    """A counter's value once it stopped changing for `quiet` seconds (bounded):
    how far something got before it blocked."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        current = read()
        if current != value:
            value, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return value
    raise TimeoutError(f"still changing after {timeout}s (at {value})")


# --- a raw client -------------------------------------------------------------------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, length: int | None = None
) -> bytes:
    """A client frame; `length` claims a payload size other than the real one."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head = struct.pack("!BB", first, mask_bit | size)
    elif size < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not mask:
        return head + payload
    masked = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return head + MASK + masked


def upgrade_request(path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key)
    )


class RawWebSocket:
    """A WebSocket client over a plain socket: it sends exactly what a test says."""

    def __init__(
        self,
        port: int,
        path: str = "/",
        timeout: float = 5.0,
        rcvbuf: int | None = None,
        conn: RawConnection | None = None,
    ) -> None:
        if conn is not None:  # the upgrade request was sent already
            self.conn = conn
            self.response = conn.read_response(head_only=True)
            assert self.response.status == 101, self.response.raw_head
            return
        self.conn = RawConnection(port, timeout=timeout)
        if rcvbuf is not None:  # a small window: a client that reads slowly fills it soon
            self.conn.sock.close()
            self.conn.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.conn.sock.settimeout(timeout)
            self.conn.sock.connect(("127.0.0.1", port))
        self.conn.send(upgrade_request(path))
        self.response: RawResponse = self.conn.read_response(head_only=True)
        assert self.response.status == 101, self.response.raw_head

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    def read_frame(self, timeout: float | None = None) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (never masked)."""
        first, second = self.conn.read_exactly(2, timeout)
        assert not second & 0x80, "the server masked a frame"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self.conn.read_exactly(2, timeout))
        elif size == 127:
            (size,) = struct.unpack("!Q", self.conn.read_exactly(8, timeout))
        return first & 0x0F, self.conn.read_exactly(size, timeout)

    def read_close(self, timeout: float | None = None) -> tuple[int, str]:
        """Skip to the server's close frame: its (code, reason)."""
        while True:
            opcode, payload = self.read_frame(timeout)
            if opcode == OP_CLOSE:
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode("utf-8")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
