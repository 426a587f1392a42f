"""WebSockets on `wsproto`."""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.events import Pong as WSPong
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from ketch.core import ServerContext
from ketch.core._types import Headers, WebSocketScope
from ketch.ws.protocol import TOO_BIG, Closed, Event, Pong, Received, default_headers


class WsprotoCodec:
    __slots__ = ("_connection", "_context", "_out", "_parts", "_size")

    def __init__(self, context: ServerContext) -> None:
        self._context = context
        self._connection = WSConnection(ConnectionType.SERVER)
        self._out = bytearray()
        self._parts: list[str | bytes] = []
        self._size = 0

    def handshake(self, scope: WebSocketScope, target: bytes) -> str | None:
        head = [b"GET %s HTTP/1.1\r\n" % target]
        head += [b"%s: %s\r\n" % (name, value) for name, value in scope["headers"]]
        head.append(b"\r\n")
        try:
            self._connection.receive_data(b"".join(head))
            events = list(self._connection.events())
        except RemoteProtocolError as exc:
            return str(exc) or "Invalid WebSocket upgrade"
        if not events or not isinstance(events[0], Request):
            return "Invalid WebSocket upgrade"
        return None

    def accept(self, subprotocol: str | None, headers: Headers) -> bytes:
        deflate = self._context.config.ws_per_message_deflate
        return self._connection.send(
            AcceptConnection(
                subprotocol=subprotocol,
                extensions=[PerMessageDeflate()] if deflate else [],
                extra_headers=default_headers(self._context, headers),
            )
        )

    def receive(self, data: bytes) -> list[Event]:
        connection = self._connection
        connection.receive_data(data)
        events: list[Event] = []
        limit = self._context.config.ws_max_size
        for event in connection.events():
            if isinstance(event, TextMessage | BytesMessage):
                part = bytes(event.data) if isinstance(event, BytesMessage) else event.data
                self._parts.append(part)
                self._size += len(event.data)
                if self._size > limit:
                    self._out += connection.send(CloseConnection(TOO_BIG, "message too big"))
                    events.append(Closed(TOO_BIG, "message too big"))
                    return events
                if event.message_finished:
                    parts, self._parts, self._size = self._parts, [], 0
                    if isinstance(event, TextMessage):
                        events.append(Received("".join(parts)))  # type: ignore[arg-type]
                    else:
                        events.append(Received(b"".join(parts)))  # type: ignore[arg-type]
            elif isinstance(event, Ping):
                self._out += connection.send(event.response())
            elif isinstance(event, WSPong):
                events.append(Pong(bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                # the peer's close (REMOTE_CLOSING) or wsproto's own verdict on a
                # bad frame (still OPEN): either way a close frame goes back
                if connection.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    self._out += connection.send(event.response())
                events.append(Closed(int(event.code), event.reason or ""))
                return events
        return events

    def send(self, data: str | bytes) -> bytes:
        if isinstance(data, str):
            return self._connection.send(TextMessage(data=data))
        return self._connection.send(BytesMessage(data=data))

    def ping(self, payload: bytes) -> bytes:
        return self._connection.send(Ping(payload=payload))

    def close(self, code: int, reason: str) -> bytes:
        if self._connection.state is not ConnectionState.OPEN:
            return b""
        return self._connection.send(CloseConnection(code=code, reason=reason))

    def pending(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
