"""HTTP/1.1 on httptools (llhttp, in C): the fast parser, preferred by `--http auto`.

The parser's callbacks feed the shared `HTTPProtocol`; responses are framed
there, so this protocol answers exactly like the h11 one.
"""

from __future__ import annotations

import httptools

from ketch.core import ServerContext
from ketch.core._types import Headers
from ketch.http.protocol import HEAD, IDLE, LINGER, HTTPProtocol


class HttpToolsProtocol(HTTPProtocol):
    __slots__ = ("_fed", "_head_limit", "_head_size", "_headers", "_parser", "_url")

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0  # the complete head, counted from the parser's callbacks
        self._fed = 0  # bytes received while a head is incomplete
        self._head_limit = context.config.limit_request_header_size

    def data_received(self, data: bytes) -> None:
        if self._state == IDLE:
            self._first_bytes()
            self._fed = 0
        if self._state == HEAD:
            self._fed += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            if self._upgrade is not None:
                self._hand_over(data[offset:])
            else:
                # an upgrade ketch does not take (h2c, or --ws none): carry on
                # with plain HTTP on a fresh parser
                self._parser = httptools.HttpRequestParser(self)
                if offset < len(data):
                    self._feed(data[offset:])
            return
        except httptools.HttpParserError as exc:
            self._on_bad_request(400, _reason(exc))
            return
        if self._state == HEAD and self._fed > self._head_limit:
            self._on_bad_request(431, "Request head too large")

    def _parse_next(self) -> None:
        # httptools has already parsed everything it was given; pipelined
        # requests wait in the shared pipeline queue.
        pass

    # --- parser callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 16  # the request line around the URL, and the blank line
        if self._state == IDLE:
            self._first_bytes()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        if self._state >= LINGER:
            return
        if self._head_size > self._head_limit:
            self._on_bad_request(431, "Request head too large")
            return
        parser = self._parser
        self._on_head(
            parser.get_method(),
            self._url,
            parser.get_http_version().encode("ascii"),
            self._headers,
        )

    # called by the parser as they are: one Python call less per request each
    on_body = HTTPProtocol._on_body
    on_message_complete = HTTPProtocol._on_message_complete


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.removeprefix("HPE_").replace("_", " ").capitalize()
