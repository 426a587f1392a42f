"""A third-party HTTP plugin for ketch, living only in the tests.

It shows that the plugin interface (docs/plugins.md) is all a protocol needs:
one request per connection, bodies by Content-Length only, every response
marked with `x-served-by: ketch-plugin-example`. Select it with `--http example`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ketch.core import ServerContext
from ketch.core.scope import http_scope, split_target
from ketch.core.transport import get_local_addr, get_remote_addr, is_ssl


class ExampleProtocol(asyncio.Protocol):
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0
        self.started = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.context.connections.add(self)
        self.deadline = self.context.now + self.context.config.timeout_keep_alive

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, found, rest = self.buffer.partition(b"\r\n\r\n")
        if not found or self.started:
            return
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ")
            headers = [
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(b":") for line in lines[1:])
            ]
        except ValueError:
            self._write(400, b"Bad Request")
            return
        length = next((int(v) for n, v in headers if n == b"content-length"), 0)
        if len(rest) < length:
            return  # wait for the whole body
        self.started = True
        self.deadline = 0.0
        raw_path, query = split_target(target)
        assert self.transport is not None
        scope = http_scope(
            method=method.decode("ascii"),
            http_version=version.decode("ascii").removeprefix("HTTP/"),
            raw_path=raw_path,
            query_string=query,
            headers=headers,
            scheme="https" if is_ssl(self.transport) else "http",
            server=get_local_addr(self.transport),
            client=get_remote_addr(self.transport),
            root_path=self.context.config.root_path,
            state=self.context.lifespan_state,
        )
        task = self.context.loop.create_task(self._run(scope, rest[:length]))
        self.context.tasks.add(task)
        task.add_done_callback(self.context.tasks.discard)

    async def _run(self, scope: Any, body: bytes) -> None:
        sent_body = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if sent_body:
                return {"type": "http.disconnect"}
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.context.app(scope, receive, send)
        except Exception:
            self.context.error_logger.exception("Exception in ASGI application")
            self._write(500, b"Internal Server Error")
            return
        self._write(status, b"".join(chunks), headers)

    def _write(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
        assert self.transport is not None
        lines = [b"HTTP/1.1 %d \r\n" % status]
        for name, value in [*self.context.default_headers.pairs, *headers]:
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"x-served-by: ketch-plugin-example\r\n")
        lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(lines) + body)
        self.transport.close()

    # what the server needs from every connection (ketch.core.context.Connection)
    def on_deadline(self) -> None:
        self.abort()

    def shutdown(self) -> None:
        if not self.started:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ExamplePlugin:
    name = "example"
    priority = 0
    requirement = "ketch-plugin-example"

    def available(self) -> bool:
        return True

    def protocol_factory(self, context: ServerContext) -> Callable[[], asyncio.Protocol]:
        return lambda: ExampleProtocol(context)


PLUGIN = ExamplePlugin()
