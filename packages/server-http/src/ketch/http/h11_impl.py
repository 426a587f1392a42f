"""HTTP/1.1 on h11 (pure Python): the parser adapter.

h11 parses request heads; bodies are framed here (Content-Length, or the
strict `ChunkedDecoder`), so that both parsers refuse the same framing. The
adapter keeps one buffer and a position in it: every byte is scanned once,
however the client splits its requests (a head dripped in small pieces is
searched only where new bytes arrived) or however many it pipelines (no copy
of the rest per request).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Final

import h11

from ketch.core.api import ServerContext, ServerSettings
from ketch.http.chunked import ChunkedDecoder
from ketch.http.connection import HTTPConnection
from ketch.http.parser import ParserEvents
from ketch.http.request_head import BadRequest

# What h11 tolerates but httptools (and ketch) refuse, so both parsers answer
# alike: a bare LF as line end, and obsolete line folding (RFC 9112 2.2, 5.2).
_LENIENT = re.compile(rb"(?<!\r)\n|\r\n[ \t]")
# the method: what a request line starts with, up to its first space
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")


class _Mode(enum.Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNKED = "chunked"
    STOPPED = "stopped"


HEAD: Final = _Mode.HEAD
LENGTH: Final = _Mode.LENGTH
CHUNKED: Final = _Mode.CHUNKED
STOPPED: Final = _Mode.STOPPED


class H11Parser:
    """A parser adapter (`ketch.http.parser.Parser`) on h11."""

    __slots__ = (
        "_buffer",
        "_chunked",
        "_events",
        "_head_limit",
        "_incomplete_limit",
        "_max_fields",
        "_mode",
        "_remaining",
        "_scanned",
    )

    def __init__(self, events: ParserEvents, settings: ServerSettings) -> None:
        self._events = events
        self._head_limit = settings.limit_request_header_size
        # --h11-max-incomplete-event-size: how much of a head may wait for its end
        self._incomplete_limit = min(
            self._head_limit, settings.h11_max_incomplete_event_size or self._head_limit
        )
        self._max_fields = settings.limit_request_headers
        self._buffer = b""  # bytes not used yet
        self._scanned = 0  # how far the head being received has been searched
        self._mode = HEAD
        self._remaining = 0  # body bytes still due under Content-Length
        self._chunked: ChunkedDecoder | None = None

    def feed(self, data: bytes) -> None:
        if self._mode is STOPPED:
            return
        buf = self._buffer + data if self._buffer else data
        try:
            pos = self._parse(buf)
        except BadRequest as exc:
            self._mode = STOPPED
            self._buffer = b""
            self._events.on_bad_request(exc.status, exc.reason)
            return
        self._buffer = buf[pos:]

    def switches_protocol(self) -> bool:
        return True  # it frames bodies itself, so it stops wherever it is told

    def take_unparsed(self) -> bytes:
        data, self._buffer = self._buffer, b""
        return data

    def _parse(self, buf: bytes) -> int:
        """Parse what `buf` holds; the position of the first byte not used."""
        events = self._events
        pos = 0
        end = len(buf)
        while pos < end:
            mode = self._mode
            if mode is LENGTH:
                size = min(self._remaining, end - pos)
                events.on_body(buf if size == end and not pos else buf[pos : pos + size])
                pos += size
                self._remaining -= size
                if self._remaining:
                    return pos
                pos = self._complete(pos)
            elif mode is CHUNKED:
                decoder = self._chunked
                assert decoder is not None
                pos = decoder.decode(buf, pos)
                if not decoder.done:
                    return pos
                pos = self._complete(pos)
            elif mode is HEAD:
                pos = self._head(buf, pos, end)
                if pos < 0:
                    return -pos - 1
            else:
                return pos
        return pos

    def _head(self, buf: bytes, pos: int, end: int) -> int:
        """Parse the head starting at `pos` if it is complete: the position after
        it; else -(pos + 1), having checked what arrived."""
        if self._scanned == 0:
            while buf[pos : pos + 1] in (b"\r", b"\n"):  # empty lines before a request
                pos += 1
            if pos == end:
                return -(pos + 1)
            self._events.on_message_begin()
        start = max(pos, pos + self._scanned - 3)
        head_end = buf.find(b"\r\n\r\n", start)
        size = (head_end + 4 if head_end != -1 else end) - pos
        if size > self._head_limit:
            raise BadRequest(431, "Request head too large")
        if _LENIENT.search(buf, max(pos, start - 1), pos + size) is not None:
            raise BadRequest(400, "Bare LF or obsolete line folding in the request head")
        if head_end == -1:
            if size > self._incomplete_limit:
                raise BadRequest(431, "Request head too large")
            method = _METHOD.match(buf, pos)  # (matches, if only the empty string)
            method_end = method.end() if method is not None else pos
            if method_end < end and buf[method_end] != 0x20:
                raise BadRequest(400, "Invalid request line")  # at once, as llhttp does
            self._scanned = end - pos
            return -(pos + 1)
        self._scanned = 0
        parser = h11.Connection(h11.SERVER)
        parser.receive_data(buf[pos : pos + size])
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            status = 431 if exc.error_status_hint == 431 else 400
            raise BadRequest(status, str(exc) or "Bad request") from None
        if type(event) is not h11.Request:
            raise BadRequest(400, "Invalid request head")
        facts = self._events.on_head(
            event.method, event.target, event.http_version, list(event.headers)
        )
        pos += size
        if facts is None:
            self._mode = STOPPED
            return pos
        if facts.chunked:
            self._mode = CHUNKED
            self._chunked = ChunkedDecoder(self._events.on_body, self._head_limit, self._max_fields)
        elif facts.content_length:
            self._mode = LENGTH
            self._remaining = facts.content_length
        else:
            pos = self._complete(pos)
        return pos

    def _complete(self, pos: int) -> int:
        self._chunked = None
        self._mode = HEAD if self._events.on_message_complete() else STOPPED
        return pos


def protocol_factory(context: ServerContext) -> Callable[[], HTTPConnection]:
    settings = context.settings

    def make_parser(events: ParserEvents) -> H11Parser:
        return H11Parser(events, settings)

    return lambda: HTTPConnection(context, make_parser)
