"""WebSockets on `wsproto`.

The upgrade request, already parsed by the HTTP protocol, is handed to
wsproto's handshake with `initiate_upgrade_connection()`. Once accepted, the
handshake object is dropped and frames go straight through its
`wsproto.connection.Connection`. wsproto has no message size limit and
delivers a long frame in pieces: the pieces are joined and counted here, and
compressed ones are inflated no further than the limit (`BoundedDeflate`).
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ketch.core.api import Headers, ServerContext, WebSocketUpgrade
from ketch.ws.protocol import WebSocketProtocol
from ketch.ws.rfc6455 import MESSAGE_TOO_BIG

OPEN = ConnectionState.OPEN
REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
CLOSED = ConnectionState.CLOSED


class WSProtoProtocol(WebSocketProtocol):
    __slots__ = ("_conn", "_handshake", "_parts", "_size")

    def handshake(self) -> bytes | None:
        handshake = WSConnection(ConnectionType.SERVER)
        try:
            handshake.initiate_upgrade_connection(self.scope["headers"], self.target)
        except RemoteProtocolError as exc:
            return handshake.send(exc.event_hint)  # type: ignore[arg-type]
        self._handshake: WSConnection | None = handshake
        self._parts: list[Any] | None = None  # a message arriving in pieces
        self._size = 0
        return None

    def accept_response(self, subprotocol: str | None, headers: Headers) -> bytes:
        handshake = self._handshake
        assert handshake is not None
        self._handshake = None
        settings = self.settings
        extensions: list[Extension] = (
            [BoundedDeflate(settings.max_size)] if settings.per_message_deflate else []
        )
        data = handshake.send(
            AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=headers)
        )
        conn = handshake.connection
        assert conn is not None
        self._conn: Connection = conn
        self.raw_frames = not any(extension.enabled() for extension in extensions)
        return data

    def receive_frames(self, data: bytes) -> None:
        conn = self._conn
        try:
            conn.receive_data(data)
        except LocalProtocolError:
            return  # the closing handshake is complete: nothing more to read
        for event in conn.events():
            kind = type(event)
            if kind is BytesMessage or kind is TextMessage:
                payload = event.data  # type: ignore[attr-defined]
                size = self._size + _byte_length(payload)
                if size > self.settings.max_size:
                    self._too_big()
                    return
                parts = self._parts
                if event.message_finished:  # type: ignore[attr-defined]
                    if parts is not None:
                        parts.append(payload)
                        payload = _join(parts)
                        self._parts = None
                        self._size = 0
                    self.on_message(payload)
                    continue
                if parts is None:
                    parts = self._parts = []
                parts.append(payload)
                self._size = size
            elif kind is Ping:
                if conn.state is OPEN:
                    self.transport.write(conn.send(event.response()))  # type: ignore[attr-defined]
            elif kind is Pong:
                self.on_pong()
            elif kind is CloseConnection:
                code: int = event.code  # type: ignore[attr-defined]
                reason: str = event.reason or ""  # type: ignore[attr-defined]
                state = conn.state
                if state is REMOTE_CLOSING:  # the peer closes: answer
                    self.transport.write(conn.send(event.response()))  # type: ignore[attr-defined]
                    self.on_close(code, reason)
                elif state is CLOSED:  # the peer answered our close frame
                    self.on_close(code, reason)
                elif state is OPEN:  # wsproto reports a protocol error this way
                    self.transport.write(conn.send(CloseConnection(code=code, reason=reason)))
                    self.on_protocol_error(code, reason)
                else:  # a protocol error after our close frame
                    self.on_protocol_error(code, reason)
                return

    def _too_big(self) -> None:
        """Over --ws-max-size: close with 1009."""
        reason = _too_big_reason(self.settings.max_size)
        conn = self._conn
        if conn.state is OPEN:
            self.transport.write(conn.send(CloseConnection(code=MESSAGE_TOO_BIG, reason=reason)))
        self.on_protocol_error(MESSAGE_TOO_BIG, reason)

    def data_frame(self, data: bytes | str) -> bytes:
        return self._conn.send(Message(data=data))  # type: ignore[type-var]

    def close_frame(self, code: int, reason: str) -> bytes:
        return self._conn.send(CloseConnection(code=code, reason=reason))

    def ping_frame(self, payload: bytes) -> bytes:
        return self._conn.send(Ping(payload=payload))


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that inflates a message no further than `max_size`.

    wsproto inflates each piece of a frame whole: a 200 KB frame of zeros is
    200 MB in memory before anyone can count it. Here zlib stops one byte past
    what the message may still hold, and that byte fails the message (1009).

    Only wsproto's public surface is used: the negotiation (`offer`, `accept`,
    `finalize`) and compression (`frame_outbound`) are PerMessageDeflate's;
    the inbound side is the documented `Extension` interface
    (`frame_inbound_header`, `frame_inbound_payload_data`,
    `frame_inbound_complete`) implemented here on zlib, with the negotiated
    public attributes `client_max_window_bits` and `client_no_context_takeover`
    (a server inflates what the client deflated)."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self._inflater: Any = None  # zlib.decompressobj, kept across messages (context takeover)
        self._message_compressed: bool | None = None  # None between messages
        self._data_frame = False  # the frame being read is a data frame (not a control frame)
        self._inflated = 0  # bytes of the current message so far

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        control = opcode.iscontrol()
        if rsv.rsv1 and (control or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR  # only a message's first frame says "compressed"
        self._data_frame = not control
        if not control and self._message_compressed is None:  # a message begins
            self._message_compressed = rsv.rsv1
            if rsv.rsv1 and self._inflater is None:
                self._inflater = zlib.decompressobj(-self.client_max_window_bits)
        return RsvBits(True, False, False)  # RSV1 is ours

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._data_frame or not self._message_compressed:
            return data
        try:
            inflated: bytes = self._inflater.decompress(data, self.max_size - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return self._count(inflated)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._data_frame:
            return None
        compressed = self._message_compressed
        self._message_compressed = None
        self._inflated, inflated = 0, self._inflated
        if not compressed:
            return None
        # the end of the message: the 4 bytes the sender stripped (RFC 7692 7.2.2),
        # still bounded (zlib held nothing back, since it had room)
        inflater = self._inflater
        try:
            data: bytes = inflater.decompress(b"\x00\x00\xff\xff", self.max_size - inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self.client_no_context_takeover:
            self._inflater = None
        if inflated + len(data) > self.max_size:
            raise ParseFailed(_too_big_reason(self.max_size), CloseReason.MESSAGE_TOO_BIG)
        return data

    def _count(self, inflated: bytes) -> bytes:
        size = self._inflated = self._inflated + len(inflated)
        if size > self.max_size:
            raise ParseFailed(_too_big_reason(self.max_size), CloseReason.MESSAGE_TOO_BIG)
        return inflated


def _too_big_reason(max_size: int) -> str:
    return f"message over the maximum size ({max_size} bytes)"


def _join(parts: list[Any]) -> bytes | str:
    return "".join(parts) if type(parts[0]) is str else b"".join(parts)


def _byte_length(payload: bytes | str) -> int:
    """A message's size in bytes; text counts in UTF-8 (isascii() is O(1) for str)."""
    if type(payload) is str and not payload.isascii():
        return len(payload.encode("utf-8"))
    return len(payload)


def upgrade_handler(context: ServerContext) -> WebSocketUpgrade:
    """The plugin's entry (ketch.ws.plugins): what the HTTP protocols hand upgrades to."""
    return WSProtoProtocol.upgrade_handler(context)
