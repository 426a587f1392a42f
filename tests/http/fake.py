"""One HTTP/1.1 connection driven without sockets: a fake transport, the real
connection and parser, a real event loop turned step by step.

Byte-exact and state-machine tests run here in milliseconds; the socket tests
prove the same behaviour through the kernel.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ketch.core.config import Config
from ketch.core.context import ServerContext
from ketch.core.headers import DefaultHeaders
from ketch.core.settings import ServerSettings
from ketch.http.connection import HTTPConnection


class WriteAfterEOF(AssertionError):
    pass


class FakeTransport(asyncio.Transport):
    """Records what the connection writes; refuses a write after the half-close."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.out = bytearray()
        self.eof = False
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        if self.eof or self.closed:
            raise WriteAfterEOF(f"write after {'EOF' if self.eof else 'close'}: {bytes(data)!r}")
        self.out += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def write_eof(self) -> None:
        assert not self.closed
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)


@dataclass
class Handover:
    scope: Any
    buffered: bytes
    written_before: int  # bytes the HTTP connection had written when it handed over


@dataclass
class Harness:
    """A connection of `impl` ("h11", "httptools") serving `app` over a FakeTransport."""

    impl: str
    app: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    handovers: list[Handover] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        config = Config(self.app, log_config=None, access_log=False, **self.options)
        self.context = ServerContext(
            ServerSettings.from_config(config),
            self.app,
            self.loop,
            DefaultHeaders(False, False, []),
        )
        self.context.ws_upgrade = self._hand_over
        module = importlib.import_module(f"ketch.http.{self.impl}_impl")
        self.conn: HTTPConnection = module.protocol_factory(self.context)()
        self.transport = FakeTransport(self.loop)
        self.transport.set_protocol(self.conn)
        self.conn.connection_made(self.transport)

    def _hand_over(self, transport: Any, scope: Any, target: bytes, buffered: bytes) -> None:
        self.handovers.append(Handover(scope, buffered, len(self.transport.out)))
        transport.set_protocol(None)

    def feed(self, data: bytes) -> None:
        if self.transport.protocol is self.conn and not self.transport.closed:
            self.conn.data_received(data)

    def run(self, turns: int = 20) -> None:
        """Let the app's tasks run until nothing is ready (at most `turns` loop turns)."""
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not self.loop._ready:  # type: ignore[attr-defined]
                return

    def client_leaves(self) -> None:
        if not self.transport.closed:
            self.transport.closed = True
            self.conn.connection_lost(None)

    def close(self) -> None:
        self.client_leaves()
        self.run()
        for task in list(self.context.tasks):
            task.cancel()
        self.run()
        self.loop.close()

    @property
    def out(self) -> bytes:
        return bytes(self.transport.out)


def parse_responses(data: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    """The complete responses in `data` (status, headers, body), and what is left."""
    responses = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end == -1:
            return responses, data
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = data[end + 4 :]
        if status < 200 and status != 101:
            data = rest
            continue  # 100 Continue
        if "content-length" in headers:
            size = int(headers["content-length"])
            if len(rest) < size:
                return responses, data
            body, data = rest[:size], rest[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            position = 0
            while True:
                line_end = rest.find(b"\r\n", position)
                if line_end == -1:
                    return responses, data
                size = int(rest[position:line_end].split(b";")[0], 16)
                if size == 0:
                    if rest[line_end + 2 : line_end + 4] != b"\r\n":
                        return responses, data
                    data = rest[line_end + 4 :]
                    break
                if len(rest) < line_end + 2 + size + 2:
                    return responses, data
                body += rest[line_end + 2 : line_end + 2 + size]
                position = line_end + 2 + size + 2
        else:
            body, data = rest, b""  # until the close
        responses.append((status, headers, body))
