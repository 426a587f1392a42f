"""WebSockets on the `websockets` library's sans-I/O `ServerProtocol`."""

from __future__ import annotations

from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State as WSState
from websockets.server import ServerProtocol

from ketch.core import ServerContext
from ketch.core._types import Headers, WebSocketScope
from ketch.ws.protocol import Closed, Event, Pong, Received, default_headers

_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class WebsocketsCodec:
    __slots__ = ("_chosen", "_context", "_parts", "_protocol", "_request", "_text")

    def __init__(self, context: ServerContext) -> None:
        config = context.config
        self._context = context
        self._chosen: str | None = None
        self._protocol = ServerProtocol(
            extensions=[ServerPerMessageDeflateFactory()] if config.ws_per_message_deflate else [],
            select_subprotocol=lambda _protocol, _offered: self._chosen,  # type: ignore[arg-type,return-value]
            max_size=config.ws_max_size,
        )
        self._request: Request | None = None
        self._parts: list[bytes] = []
        self._text = False

    def handshake(self, scope: WebSocketScope, target: bytes) -> str | None:
        # The protocol reads the request itself, then moves on to frames.
        head = [b"GET %s HTTP/1.1\r\n" % target]
        head += [b"%s: %s\r\n" % (name, value) for name, value in scope["headers"]]
        head.append(b"\r\n")
        self._protocol.receive_data(b"".join(head))
        requests = [e for e in self._protocol.events_received() if isinstance(e, Request)]
        if not requests:
            return "Invalid WebSocket upgrade"
        request = self._request = requests[0]
        # websockets checks the request when it builds the response: try it now on
        # a throwaway protocol, so that a bad upgrade is refused before the app runs
        probe = ServerProtocol()
        if probe.accept(request).status_code != 101:
            exc = probe.handshake_exc
            return str(exc) if isinstance(exc, InvalidHandshake) else "Invalid WebSocket upgrade"
        return None

    def accept(self, subprotocol: str | None, headers: Headers) -> bytes:
        assert self._request is not None
        self._chosen = subprotocol
        response = self._protocol.accept(self._request)
        for own in ("Server", "Date"):  # ketch's own go in instead
            if own in response.headers:
                del response.headers[own]
        for key, value in default_headers(self._context, headers):
            response.headers[key.decode("latin-1")] = value.decode("latin-1")
        self._protocol.send_response(response)
        return self.pending()

    def receive(self, data: bytes) -> list[Event]:
        protocol = self._protocol
        protocol.receive_data(data)
        events: list[Event] = []
        for frame in protocol.events_received():
            if not isinstance(frame, Frame):
                continue  # the handshake request was parsed by ketch-http
            opcode = frame.opcode
            if opcode in _DATA:
                if opcode is not Opcode.CONT:
                    self._text = opcode is Opcode.TEXT
                    self._parts = []
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    payload = b"".join(self._parts)
                    self._parts = []
                    if self._text:
                        try:
                            events.append(Received(payload.decode("utf-8")))
                        except UnicodeDecodeError:
                            protocol.fail(1007, "invalid UTF-8 in a text message")
                            events.append(Closed(1007, "invalid UTF-8 in a text message"))
                            return events
                    else:
                        events.append(Received(payload))
            elif opcode is Opcode.PONG:
                events.append(Pong(bytes(frame.data)))
            elif opcode is Opcode.CLOSE:
                close = Close.parse(frame.data) if frame.data else None
                # websockets has queued the reply close frame
                events.append(Closed(close.code if close else 1005, close.reason if close else ""))
                return events
        exc = protocol.parser_exc
        if exc is not None or protocol.state is WSState.CLOSING:
            sent = protocol.close_sent
            events.append(Closed(sent.code if sent else 1002, sent.reason if sent else str(exc)))
        return events

    def send(self, data: str | bytes) -> bytes:
        if isinstance(data, str):
            self._protocol.send_text(data.encode("utf-8"))
        else:
            self._protocol.send_binary(data)
        return self.pending()

    def ping(self, payload: bytes) -> bytes:
        self._protocol.send_ping(payload)
        return self.pending()

    def close(self, code: int, reason: str) -> bytes:
        if self._protocol.state is not WSState.OPEN:
            return b""
        self._protocol.send_close(code, reason)
        return self.pending()

    def pending(self) -> bytes:
        # an empty chunk means "half-close": ketch closes the socket itself
        return b"".join(self._protocol.data_to_send())
