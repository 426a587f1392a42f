"""A third-party HTTP plugin for ketch, living only in the tests.

It shows that the public plugin API (`ketch.core.api`, docs/plugins.md) is all
a protocol needs: one request per connection, bodies by Content-Length only,
every response marked with `x-served-by: ketch-plugin-example`. Select it with
`--http example`. It imports nothing of ketch but `ketch.core.api`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from ketch.core.api import (
    Headers,
    Message,
    ServerContext,
    error_response,
    http_scope,
    response_head,
)

SERVED_BY = (b"x-served-by", b"ketch-plugin-example")


class ExampleProtocol(asyncio.Protocol):
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.buffer = b""
        self.deadline = 0.0
        self.started = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.info = self.context.connection_info(transport)
        self.context.connections.add(self)
        self.deadline = self.context.now + self.context.settings.timeout_keep_alive

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
            headers: Headers = [
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(b":") for line in lines[1:])
            ]
        except ValueError:
            self._write(error_response(400, self.context.default_headers))
            return
        length = next((int(v) for n, v in headers if n == b"content-length"), 0)
        if len(rest) < length:
            return  # wait for the whole body
        self.started = True
        self.deadline = 0.0
        if self.context.over_concurrency_limit():
            self._write(error_response(503, self.context.default_headers))
            return
        scope = http_scope(
            self.context,
            self.info,
            method.decode("ascii"),
            version.decode("ascii").removeprefix("HTTP/"),
            target,
            headers,
        )
        task = self.context.create_task(self._run(scope, rest[:length]))
        task.add_done_callback(self.context.tasks.discard)

    async def _run(self, scope: Any, body: bytes) -> None:
        sent_body = False
        status = 500
        response_headers: Headers = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent_body
            if sent_body:
                return {"type": "http.disconnect"}
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = [*message.get("headers", []), SERVED_BY]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.context.app(scope, receive, send)
        except Exception:
            self.context.error_logger.exception("Exception in ASGI application")
            self._write(error_response(500, self.context.default_headers))
            return
        content = b"".join(chunks)
        head, _, _, _ = response_head(
            status,
            response_headers,
            self.context.default_headers,
            scope["http_version"] == "1.0",  # http_10
            scope["method"] == "HEAD",  # head_only
            False,  # keep_alive
            len(content),  # final_size
        )
        self._write(head + content)

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.close()

    # what the server needs from every connection (ketch.core.api.Connection)
    def on_deadline(self) -> None:
        self.abort()

    def shutdown(self) -> None:
        if not self.started:
            self.abort()

    def abort(self) -> None:
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
