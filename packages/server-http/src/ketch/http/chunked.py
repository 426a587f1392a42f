"""A strict decoder of chunked request bodies (RFC 9112 7.1), for parsers that
leave body framing to ketch (h11).

It accepts exactly what llhttp (httptools) accepts in its strict mode, so both
parsers answer every framing case alike: a chunk size of hex digits up to
2^64 - 1 followed at once by extensions or CRLF; extensions as `;name` or
`;name=token` or `;name="quoted"`, without spaces; CRLF, never a bare CR or
LF; trailer fields as header fields (a token, a colon, a value without
control characters), without obsolete line folding, limited in size and
number like a request head (431). Trailers are checked and dropped: ASGI
has no request trailers, and they never join the request's headers.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Final

from ketch.http.request_head import BadRequest

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_TRAILER_FIELD = re.compile(_TOKEN + rb":[\t\x20-\x7e\x80-\xff]*")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_MAX_SIZE = 2**64 - 1
# A chunk-size line (with its extensions) longer than this is refused.
SIZE_LINE_LIMIT = 4096


class _Part(enum.Enum):
    SIZE = "size line"
    DATA = "data"
    DATA_END = "CRLF after data"
    TRAILERS = "trailers"
    DONE = "done"


SIZE: Final = _Part.SIZE
DATA: Final = _Part.DATA
DATA_END: Final = _Part.DATA_END
TRAILERS: Final = _Part.TRAILERS
DONE: Final = _Part.DONE


class ChunkedDecoder:
    """Decodes one chunked body out of a buffer the caller keeps."""

    __slots__ = ("_max_fields", "_max_trailer", "_on_body", "_part", "_remaining")

    def __init__(
        self, on_body: Callable[[bytes], None], max_trailer_size: int, max_fields: int
    ) -> None:
        self._on_body = on_body
        self._max_trailer = max_trailer_size
        self._max_fields = max_fields
        self._part = SIZE
        self._remaining = 0

    @property
    def done(self) -> bool:
        return self._part is DONE

    def decode(self, buf: bytes | bytearray, pos: int) -> int:
        """Decode from `buf[pos:]`, giving data to `on_body`; the position where
        it stopped: at the end of what it could use, or right after the body
        (`done`). BadRequest for anything llhttp would refuse."""
        end = len(buf)
        while pos < end:
            part = self._part
            if part is DATA:
                size = min(self._remaining, end - pos)
                self._on_body(bytes(buf[pos : pos + size]))
                pos += size
                self._remaining -= size
                if not self._remaining:
                    self._part = DATA_END
            elif part is DATA_END:
                if buf[pos : pos + 2] != b"\r\n"[: end - pos]:
                    raise BadRequest(400, "Missing CRLF after chunk data")
                if end - pos < 2:
                    return pos
                pos += 2
                self._part = SIZE
            elif part is SIZE:
                line_end = self._size_line(buf, pos, end)
                if line_end == -1:
                    if end - pos > SIZE_LINE_LIMIT:
                        raise BadRequest(400, "Chunk size line too long")
                    _check_line_ends(buf, pos, end)
                    return pos
                pos = line_end
            elif part is TRAILERS:
                return self._trailers(buf, pos, end)
            else:
                return pos
        return pos

    def _size_line(self, buf: bytes | bytearray, pos: int, end: int) -> int:
        """Parse a complete chunk-size line; -1 when it is not complete yet."""
        eol = buf.find(b"\r\n", pos, pos + SIZE_LINE_LIMIT + 2)
        if eol == -1:
            return -1
        match = _SIZE_LINE.fullmatch(buf, pos, eol)
        if match is None:
            raise BadRequest(400, "Invalid chunk size line")
        size = int(match.group(1), 16)
        if size > _MAX_SIZE:
            raise BadRequest(400, "Chunk size overflow")
        self._remaining = size
        self._part = DATA if size else TRAILERS
        return eol + 2

    def _trailers(self, buf: bytes | bytearray, pos: int, end: int) -> int:
        if buf[pos : pos + 2] == b"\r\n":
            self._part = DONE
            return pos + 2
        block_end = buf.find(b"\r\n\r\n", pos)
        size = (block_end if block_end != -1 else end) - pos
        if size > self._max_trailer:
            raise BadRequest(431, "Request trailers too large")
        if block_end == -1:
            _check_line_ends(buf, pos, end)
            return pos
        lines = bytes(buf[pos:block_end]).split(b"\r\n")
        if len(lines) > self._max_fields:
            raise BadRequest(431, "Too many request trailers")
        for line in lines:
            if _TRAILER_FIELD.fullmatch(line) is None:
                raise BadRequest(400, "Invalid trailer field")
        self._part = DONE
        return block_end + 4


def _check_line_ends(buf: bytes | bytearray, pos: int, end: int) -> None:
    """What arrived of an incomplete line must not already hold a bare LF or CR."""
    if _BARE_LF.search(buf, pos, end) is not None:
        raise BadRequest(400, "Bare LF in chunked framing")
    match = _BARE_CR.search(buf, pos, end)
    if match is not None and match.start() != end - 1:  # a CR last may yet see its LF
        raise BadRequest(400, "Bare CR in chunked framing")
