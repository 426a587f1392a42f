"""HTTP/1.1 on httptools (llhttp, in C): the fast parser, preferred by `--http auto`.

The parser adapter turns llhttp's callbacks into the connection's events.
llhttp frames bodies itself, strictly; the adapter adds what it leaves to its
user: the request-head size limit (counted over every byte of a head,
however it arrives), trailers limited like heads and kept out of the
request's headers, and the bytes after an upgrade request.
"""

from __future__ import annotations

from collections.abc import Callable

import httptools

from ketch.core.api import Headers, ServerContext, ServerSettings
from ketch.http.connection import HTTPConnection
from ketch.http.parser import ParserEvents

# on_header's lengths leave out the ": " and CRLF of each line, and on_url's the
# request line around the URL and the blank line at the end
_LINE_OVERHEAD = 4
_REQUEST_LINE_OVERHEAD = 16


class HttpToolsParser:
    """A parser adapter (`ketch.http.parser.Parser`) on httptools."""

    __slots__ = (
        "_counting",
        "_events",
        "_fields",
        "_head_limit",
        "_headers",
        "_in_trailers",
        "_max_fields",
        "_more",
        "_on_body",
        "_parser",
        "_raw",
        "_size",
        "_stopped",
        "_unparsed",
        "_url",
    )

    def __init__(self, events: ParserEvents, settings: ServerSettings) -> None:
        self._events = events
        self._on_body = events.on_body
        self._head_limit = settings.limit_request_header_size
        self._max_fields = settings.limit_request_headers
        self._url = b""
        self._headers: Headers = []
        # While a head arrives, and while what arrives may be trailers, the bytes
        # fed count against the head-size limit (`_raw`): llhttp buffers a field
        # until its line ends, and would buffer an endless one. The exact size of
        # a complete head or trailer section comes from the callbacks (`_size`).
        self._counting = True
        self._raw = 0
        self._size = 0
        self._fields = 0  # trailer fields
        self._in_trailers = False
        self._more = True  # the connection takes another request
        self._stopped = False
        self._unparsed = b""
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._counting:
            self._raw += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            if self._more:  # an upgrade ketch does not take: HTTP goes on
                self._parser = httptools.HttpRequestParser(self)
                self._counting = True
                self._raw = 0
                self.feed(data[offset:])
            else:
                self._stopped = True
                self._unparsed = data[offset:]
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Stop):
                return  # a callback stopped the parser on purpose
            raise
        except httptools.HttpParserError as exc:
            self._refuse(400, _reason(exc))
            return
        if self._counting and self._raw > self._head_limit:
            self._refuse(431, f"Request {'trailers' if self._in_trailers else 'head'} too large")

    def take_unparsed(self) -> bytes:
        data, self._unparsed = self._unparsed, b""
        return data

    def _refuse(self, status: int, reason: str) -> None:
        if not self._stopped:
            self._stopped = True
            self._events.on_bad_request(status, reason)

    # --- llhttp's callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._events.on_message_begin()
        self._url = b""
        self._headers = []
        self._counting = True
        self._in_trailers = False
        self._raw = 0
        self._size = _REQUEST_LINE_OVERHEAD

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value) + _LINE_OVERHEAD
        if self._in_trailers:
            self._fields += 1
            if self._size > self._head_limit or self._fields > self._max_fields:
                self._refuse(431, "Request trailers too large")
                raise _Stop
            return  # checked by llhttp and dropped: never among the request's headers
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self._size > self._head_limit:
            self._refuse(431, "Request head too large")
            raise _Stop
        parser = self._parser
        facts = self._events.on_head(
            parser.get_method(),
            self._url,
            parser.get_http_version().encode("ascii"),
            self._headers,
            parser.should_upgrade(),
        )
        if facts is None:
            self._stopped = True
            raise _Stop
        self._counting = False
        self._in_trailers = True
        self._size = 0
        self._fields = 0

    def on_chunk_header(self) -> None:
        # a chunk's data follows, or, after the last chunk, the trailers
        self._counting = True
        self._raw = 0

    def on_body(self, data: bytes) -> None:
        self._counting = False  # it was a chunk with data
        self._on_body(data)

    def on_message_complete(self) -> None:
        self._counting = True
        self._raw = 0
        more = self._more = self._events.on_message_complete()
        if not more and not self._parser.should_upgrade():
            # llhttp would parse on: what follows the last request is dropped
            self._stopped = True
            raise _Stop


class _Stop(Exception):
    """Raised from a callback to stop llhttp where the connection said so."""


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.removeprefix("HPE_").replace("_", " ").capitalize()


def protocol_factory(context: ServerContext) -> Callable[[], HTTPConnection]:
    settings = context.settings

    def make_parser(events: ParserEvents) -> HttpToolsParser:
        return HttpToolsParser(events, settings)

    return lambda: HTTPConnection(context, make_parser)
