"""WebSockets on the `websockets` library's sans-I/O `ServerProtocol` (websockets >= 14).

The HTTP protocol has parsed the upgrade request already, so the library's
protocol starts in the OPEN state (it parses frames only) and checks the
handshake with `accept()`; the 101 response it builds is sent when the app
accepts. The library does not check UTF-8 in text messages: that is done here.
"""

from __future__ import annotations

from websockets.datastructures import Headers as WSHeaders
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from ketch.core.api import Headers, ServerContext, WebSocketUpgrade
from ketch.ws.protocol import WebSocketProtocol
from ketch.ws.rfc6455 import INVALID_DATA

TEXT, BINARY, CONT, PONG, CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG, Opcode.CLOSE


def _deflate() -> list[ServerPerMessageDeflateFactory]:
    # the memory-saving settings the websockets documentation recommends
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
    ]


class WebSocketsProtocol(WebSocketProtocol):
    __slots__ = ("_conn", "_fragments", "_response", "_text")

    def handshake(self) -> bytes | None:
        settings = self.settings
        conn = self._conn = ServerProtocol(
            extensions=_deflate() if settings.per_message_deflate else None,
            state=OPEN,
            max_size=settings.max_size,
        )
        headers = WSHeaders(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.scope["headers"]
        )
        response = conn.accept(Request(self.target.decode("latin-1"), headers))
        if response.status_code != 101:
            return response.serialize()
        self._response: Response | None = response
        self._fragments: list[bytes] | None = None
        self._text = False
        self.raw_frames = not conn.extensions
        return None

    def accept_response(self, subprotocol: str | None, headers: Headers) -> bytes:
        response = self._response
        assert response is not None
        self._response = None
        response_headers = response.headers
        del response_headers["Date"]  # ketch's own Date (and Server) are in `headers`
        for name, value in headers:
            response_headers[name.decode("latin-1")] = value.decode("latin-1")
        if subprotocol is not None:
            response_headers["Sec-WebSocket-Protocol"] = subprotocol
        return response.serialize()

    def receive_frames(self, data: bytes) -> None:
        conn = self._conn
        conn.receive_data(data)
        close = None
        failed = False
        frames: list[Frame] = conn.events_received()  # type: ignore[assignment]
        for frame in frames:
            opcode = frame.opcode
            payload: bytes = frame.data  # type: ignore[assignment]
            if opcode is BINARY or opcode is TEXT:
                if not frame.fin:
                    self._fragments = [payload]
                    self._text = opcode is TEXT
                    continue
                if opcode is BINARY:
                    self.on_message(payload)
                    continue
            elif opcode is CONT:
                fragments = self._fragments
                assert fragments is not None
                fragments.append(payload)
                if not frame.fin:
                    continue
                self._fragments = None
                payload = b"".join(fragments)
                if not self._text:
                    self.on_message(payload)
                    continue
            else:
                if opcode is PONG:
                    self.on_pong()
                elif opcode is CLOSE:
                    close = conn.close_rcvd
                continue  # the library answers pings itself
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                conn.fail(INVALID_DATA, f"invalid UTF-8: {exc.reason} at position {exc.start}")
                failed = True
                break
            self.on_message(text)
        writes = conn.data_to_send()
        if writes:
            self._write(writes)
        if failed or conn.parser_exc is not None:
            sent = conn.close_sent
            assert sent is not None
            self.on_protocol_error(sent.code, sent.reason)
        elif close is not None:
            self.on_close(close.code, close.reason)

    def _write(self, writes: list[bytes]) -> None:
        if not writes[-1]:
            writes.pop()  # the library's end-of-stream mark: the base class ends the TCP connection
        if len(writes) == 1:
            self.transport.write(writes[0])
        elif writes:
            self.transport.write(b"".join(writes))

    def data_frame(self, data: bytes | str) -> bytes:
        conn = self._conn
        if type(data) is str:
            conn.send_text(data.encode("utf-8"))
        else:
            conn.send_binary(data)  # type: ignore[arg-type]
        return b"".join(conn.data_to_send())

    def close_frame(self, code: int, reason: str) -> bytes:
        conn = self._conn
        conn.send_close(code, reason)
        return b"".join(conn.data_to_send())

    def ping_frame(self, payload: bytes) -> bytes:
        conn = self._conn
        conn.send_ping(payload)
        return b"".join(conn.data_to_send())


def upgrade_handler(context: ServerContext) -> WebSocketUpgrade:
    """The plugin's entry (ketch.ws.plugins): what the HTTP protocols hand upgrades to."""
    return WebSocketsProtocol.upgrade_handler(context)
