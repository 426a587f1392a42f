"""HTTP/1.1 on httptools (llhttp, in C): the fast parser, preferred by `--http auto`.

The parser adapter turns llhttp's callbacks into the connection's events.
llhttp frames bodies itself, strictly; the adapter adds what it leaves to its
user: the request-head size limit (counted over every byte of a head,
however it arrives; one still arriving is refused before it holds twice the
limit), trailers limited like heads and kept out of the
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
        "_events",
        "_fields",
        "_head_limit",
        "_headers",
        "_in_trailers",
        "_max_fields",
        "_on_body",
        "_parser",
        "_raw",
        "_size",
        "_stopped",
        "_switch",
        "_unparsed",
        "_url",
        "on_message_begin",
        "on_message_complete",
    )

    def __init__(self, events: ParserEvents, settings: ServerSettings) -> None:
        self._events = events
        self._on_body = events.on_body
        # called by llhttp as they are: one Python call less per request each
        self.on_message_begin = events.on_message_begin
        self.on_message_complete = events.on_message_complete
        self._head_limit = settings.limit_request_header_size
        self._max_fields = settings.limit_request_headers
        self._url = b""
        self._headers: Headers = []
        # Bytes fed since the last head or body bytes came out of llhttp (`_raw`)
        # count against the head-size limit: llhttp buffers a field until its
        # line ends, and would buffer an endless one. The exact size of a head or
        # a trailer section comes from the callbacks (`_size`).
        self._raw = 0
        self._size = _REQUEST_LINE_OVERHEAD
        self._in_trailers = False  # after a head: header lines are trailers
        self._fields = 0  # trailer fields
        self._switch = False  # the connection takes the protocol switch of this request
        self._stopped = False
        self._unparsed = b""
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: bytes | memoryview) -> None:
        if self._stopped:
            return
        size = len(data)
        if size > self._head_limit:
            self._feed_in_pieces(data)
            return
        self._raw += size
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            if self._switch:
                self._stopped = True
                self._unparsed = bytes(data[offset:])
            else:  # an upgrade ketch does not take: HTTP goes on, on a new parser
                self._parser = httptools.HttpRequestParser(self)
                self._raw = 0
                self._in_trailers = True  # (so that the next URL starts a new head)
                self.feed(data[offset:])
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Stop):
                return  # a callback stopped the parser on purpose
            raise
        except httptools.HttpParserError as exc:
            self._refuse(400, _reason(exc))
            return
        if self._raw > self._head_limit:
            self._refuse(431, f"Request {'trailers' if self._in_trailers else 'head'} too large")

    def _feed_in_pieces(self, data: bytes | memoryview) -> None:
        """llhttp does not say where in the bytes fed a head ended or body bytes
        came, so the bytes after them in the same feed are not counted in `_raw`:
        fed whole, a short request and the start of an endless head in one read
        would never reach the limit. In pieces of the limit, a head still
        arriving is refused before it holds twice the limit."""
        limit = self._head_limit
        view = memoryview(data)
        for start in range(0, len(view), limit):
            self.feed(view[start : start + limit])
            if self._stopped:
                if self._switch:  # the rest is the new protocol's
                    self._unparsed += view[start + limit :]
                return

    def switches_protocol(self) -> bool:
        return bool(self._parser.should_upgrade())

    def take_unparsed(self) -> bytes:
        data, self._unparsed = self._unparsed, b""
        return data

    def _refuse(self, status: int, reason: str) -> None:
        if not self._stopped:
            self._stopped = True
            self._events.on_bad_request(status, reason)

    # --- llhttp's callbacks -------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        if self._in_trailers:  # the first piece of the next request's URL
            self._in_trailers = False
            self._url = url
            self._size = _REQUEST_LINE_OVERHEAD + len(url)
            return
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
        headers = self._headers
        self._headers = []  # (the next request's)
        self._raw = 0
        facts = self._events.on_head(
            parser.get_method(), self._url, parser.get_http_version().encode("ascii"), headers
        )
        if facts is None:
            self._stopped = True
            raise _Stop
        self._switch = facts.websocket
        self._in_trailers = True
        self._size = 0
        self._fields = 0

    def on_body(self, data: bytes) -> None:
        self._raw = 0
        self._on_body(data)


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
