"""HTTP/1.1 on h11 (pure Python).

h11 is used as a parser only: a fresh `h11.Connection` reads each request and
the bytes after it move on to the next one. Responses are framed by the shared
`HTTPProtocol`, so both parsers answer alike.
"""

from __future__ import annotations

import h11

from ketch.core import ServerContext
from ketch.http.protocol import IDLE, HTTPProtocol


class H11Protocol(HTTPProtocol):
    __slots__ = ("_max_event", "_parser")

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        config = context.config
        self._max_event = config.h11_max_incomplete_event_size or config.limit_request_header_size
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_event)

    def data_received(self, data: bytes) -> None:
        if self._state == IDLE:
            self._first_bytes()
        parser = self._parser
        parser.receive_data(data)
        self._process(parser)

    def _parse_next(self) -> None:
        data, closed = self._parser.trailing_data
        parser = self._parser = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_event
        )
        if data:
            self._first_bytes()
            parser.receive_data(bytes(data))
        if closed:
            parser.receive_data(b"")
        if data or closed:
            self._process(parser)

    def _process(self, parser: h11.Connection) -> None:
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                self._on_bad_request(431 if status == 431 else 400, str(exc) or "Bad request")
                return
            kind = type(event)
            if kind is h11.Request:
                self._on_head(
                    event.method,  # type: ignore[union-attr]
                    event.target,  # type: ignore[union-attr]
                    event.http_version,  # type: ignore[union-attr]
                    list(event.headers),  # type: ignore[union-attr]
                )
            elif kind is h11.Data:
                self._on_body(bytes(event.data))  # type: ignore[union-attr]
            elif kind is h11.EndOfMessage:
                self._on_message_complete()
                if self._upgrade is not None:
                    self._hand_over(bytes(parser.trailing_data[0]))
                    return
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                # PAUSED: a request is complete; the rest waits in the parser
                # until the response is done (_parse_next).
                return
            else:  # ConnectionClosed
                if self._cycle is None:
                    self._close()
                return
            if self._parser is not parser:  # a response completed and parsing moved on
                return
