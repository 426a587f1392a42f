"""HTTP/1.1 on h11 (pure Python).

h11 is used as a parser only: a fresh `h11.Connection` reads each request and
the bytes after it move on to the next one. Responses are framed by the shared
`HTTPProtocol`, so both parsers answer alike.
"""

from __future__ import annotations

import re

import h11

from ketch.core import ServerContext
from ketch.http.protocol import HEAD, IDLE, HTTPProtocol

# What h11 tolerates but httptools (and ketch) refuse, so both parsers answer
# alike: a bare LF as line end, and obsolete line folding (RFC 9112 2.2, 5.2).
_LENIENT = re.compile(rb"(?<!\r)\n|\r\n[ \t]")


class H11Protocol(HTTPProtocol):
    __slots__ = ("_head", "_head_limit", "_max_event", "_parser")

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        config = context.config
        self._head_limit = config.limit_request_header_size
        self._max_event = config.h11_max_incomplete_event_size or config.limit_request_header_size
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_event)
        self._head = b""

    def data_received(self, data: bytes) -> None:
        if self._state == IDLE:
            self._first_bytes()
            self._head = b""
        if self._state == HEAD and not self._head_is_strict(data):
            return
        parser = self._parser
        parser.receive_data(data)
        self._process(parser)

    def _head_is_strict(self, data: bytes) -> bool:
        """Check the raw bytes of the head being received (until its blank line):
        its size, and what h11 would tolerate but httptools would not."""
        head = self._head = self._head + data if self._head else data
        end = head.find(b"\r\n\r\n")
        size = len(head) if end == -1 else end + 4
        if size > self._head_limit:
            self._on_bad_request(431, "Request head too large")
            return False
        if _LENIENT.search(head, 0, size) is not None:
            self._on_bad_request(400, "Bare LF or obsolete line folding in the request head")
            return False
        return True

    def _parse_next(self) -> None:
        data, closed = self._parser.trailing_data
        parser = self._parser = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_event
        )
        if data:
            self._first_bytes()
            self._head = b""
            if not self._head_is_strict(bytes(data)):
                return
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
