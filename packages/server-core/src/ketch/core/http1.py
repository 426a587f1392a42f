"""Writing HTTP/1.1 responses: status lines, checked heads, body framing, error
answers and the lingering close. One writer for every protocol that speaks
HTTP/1 on the wire: ketch-http's responses and ketch-ws's denial responses.

The head is built once, in one pass over the app's headers: names are checked
as tokens and lowercased (remembered, as names are few), values are checked
for CR, LF and NUL with one scan of the joined block, ketch's default headers
(Server, Date, `--header`) are added unless the app set the same name, and the
framing headers are written from what ketch decides, never copied from the
app, so that exactly one framing goes out.
"""

from __future__ import annotations

import asyncio
import enum
import http
import re
from collections.abc import Iterable
from typing import Final

from ketch.core.headers import DefaultHeaders

STATUS_LINES: Final[dict[int, bytes]] = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in http.HTTPStatus
}
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
EARLY_HINTS: Final = b"HTTP/1.1 103 Early Hints\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"

# RFC 9110 5.6.2: a token (a field name, a method); `TOKEN.fullmatch(value)`
TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 8.6: a Content-Length value (18 digits at most: it fits in 64 bits)
CONTENT_LENGTH: Final = re.compile(rb"[0-9]{1,18}")
# response header names already checked, to their lowercase form (bounded)
_CHECKED_NAMES: dict[bytes, bytes] = {}
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class Framing(enum.Enum):
    """How a response body is delimited on the wire."""

    LENGTH = "content-length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"  # HTTP/1.0 without a length: the close ends the body
    NONE = "none"  # HEAD, 1xx, 204, 304: no body at all


LENGTH: Final = Framing.LENGTH
CHUNKED: Final = Framing.CHUNKED
UNTIL_CLOSE: Final = Framing.UNTIL_CLOSE
NO_BODY: Final = Framing.NONE


# What response_head() returns: (the head, ending with its blank line; the
# framing; the Content-Length when the framing is LENGTH, for HEAD too; whether
# the connection may be kept after the response). A plain tuple, not a
# NamedTuple: it is built for every response.
ResponseHead = tuple[bytes, Framing, int, bool]


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def app_content_length(value: bytes, known: int | None) -> int:
    """The length a Content-Length header of the app's response gives;
    RuntimeError if it is no number or differs from the one `known` before."""
    if CONTENT_LENGTH.fullmatch(value) is None:
        raise RuntimeError(f"Invalid Content-Length header: {value!r}")
    length = int(value)
    if known is not None and length != known:
        raise RuntimeError("Conflicting Content-Length headers")
    return length


def header_name(name: bytes) -> bytes:
    """The lowercase form of a response header name; RuntimeError if it is no token."""
    lower = _CHECKED_NAMES.get(name)
    if lower is not None:
        return lower
    if TOKEN.fullmatch(name) is None:
        raise RuntimeError(f"Invalid HTTP header name {name!r}")
    lower = name.lower()
    if len(_CHECKED_NAMES) < 1024:  # names are few, but an app could make them up
        _CHECKED_NAMES[name] = lower
    return lower


def check_values(block: bytes, lines: int) -> None:
    """`block` is `lines` header lines, each ending with CRLF: raise if a value
    smuggles CR, LF or NUL (one scan of the block instead of one per value)."""
    if block.count(b"\n") != lines or block.count(b"\r") != lines or block.count(b"\0"):
        raise RuntimeError("Invalid HTTP header value: line breaks or NUL are not allowed")


def checked_headers(
    headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """An app's response headers with lowercase names, checked (names are
    tokens, values hold no CR, LF or NUL), leaving out the names in `drop`
    (the headers the protocol writes itself)."""
    checked = []
    for name, value in headers:
        lower = header_name(name)
        if lower not in drop:
            checked.append((lower, value))
    if checked:
        check_values(b"".join(b"%s\r\n" % value for _, value in checked), len(checked))
    return checked


def response_head(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    defaults: DefaultHeaders,
    http_10: bool,
    head_only: bool,
    keep_alive: bool,
    final_size: int | None,
) -> ResponseHead:
    """The head of a response to an HTTP/1.x request, and its framing.

    `final_size` is the body's size when the whole body is known (the first
    body message is also the last): it becomes the Content-Length unless the
    app gave one. Without either, the body is chunked (HTTP/1.1) or ends with
    the connection (HTTP/1.0). The app's Transfer-Encoding and Connection
    headers are never copied: ketch writes the framing it chose, and a
    `Connection: close` from the app only makes this the last response.
    """
    content_length: int | None = None
    overridden: set[bytes] | None = None
    default_names = defaults.names
    app_lines = []
    for name, value in headers:
        lower = _CHECKED_NAMES.get(name)
        if lower is None:
            lower = header_name(name)
        if lower in _FRAMING_HEADERS:
            if lower == b"content-length":
                if content_length is None:
                    content_length = app_content_length(value, None)
                    app_lines.append(b"%s: %s\r\n" % (name, value))
                else:
                    app_content_length(value, content_length)
            elif lower == b"connection" and value.lower().find(b"close") != -1:
                keep_alive = False
            continue
        if lower in default_names:
            if overridden is None:
                overridden = set()
            overridden.add(lower)
        app_lines.append(b"%s: %s\r\n" % (name, value))
    block = b"".join(app_lines)
    # (check_values(), inlined: this runs for every response)
    count = len(app_lines)
    if block.count(b"\n") != count or block.count(b"\r") != count or block.count(b"\0"):
        raise RuntimeError("Invalid HTTP header value: line breaks or NUL are not allowed")
    lines = [
        STATUS_LINES.get(status) or status_line(status),
        block,
        defaults.block_without(overridden) if overridden else defaults.block,
    ]
    length = 0
    if status < 200 or status == 204 or status == 304:
        framing = NO_BODY
    elif content_length is not None:
        framing = NO_BODY if head_only else LENGTH
        length = content_length
    elif final_size is not None:
        # the whole body is known: its length (for HEAD, the length a GET would get)
        framing = NO_BODY if head_only else LENGTH
        length = final_size
        lines.append(b"content-length: %d\r\n" % final_size)
    elif head_only:
        framing = NO_BODY
    elif not http_10:
        framing = CHUNKED
        lines.append(b"transfer-encoding: chunked\r\n")
    else:
        framing = UNTIL_CLOSE  # HTTP/1.0 knows no chunks
        keep_alive = False
    if not keep_alive:
        lines.append(b"connection: close\r\n\r\n")
    elif http_10:
        lines.append(b"connection: keep-alive\r\n\r\n")
    else:
        lines.append(b"\r\n")
    return b"".join(lines), framing, length, keep_alive


def chunk(body: bytes) -> bytes:
    """One chunk of a chunked body (empty for an empty body: that would end it)."""
    return b"%x\r\n%s\r\n" % (len(body), body) if body else b""


def last_chunk(trailers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The end of a chunked body with trailer fields (RFC 9112 7.1.2), checked
    like response headers; the framing fields are never sent as trailers."""
    fields = checked_headers(trailers, _FRAMING_HEADERS)
    return b"0\r\n%s\r\n" % b"".join(b"%s: %s\r\n" % field for field in fields)


def accepts_trailers(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request said `TE: trailers` (RFC 9110 10.1.4): the client
    takes trailer fields, so a server may send them (lowercase names)."""
    return any(name == b"te" and b"trailers" in _tokens(value) for name, value in headers)


def early_hints(links: Iterable[bytes]) -> bytes:
    """A `103 Early Hints` interim response (RFC 8297), one Link field per link
    (RFC 8288 values such as `</style.css>; rel=preload; as=style`, as
    `ASGICycle` hands them to `write_early_hints()`: bytes, stripped); empty
    when there are none. Never to an HTTP/1.0 client (RFC 9110 15.2)."""
    lines = [b"link: %s\r\n" % link for link in links]
    if not lines:
        return b""
    block = b"".join(lines)
    check_values(block, len(lines))
    return EARLY_HINTS + block + b"\r\n"


def _tokens(value: bytes) -> list[bytes]:
    """The lowercase tokens of a comma-separated value, without parameters."""
    return [item.split(b";", 1)[0].strip(b" \t") for item in value.lower().split(b",")]


def error_response(status: int, defaults: DefaultHeaders, text: str | None = None) -> bytes:
    """A whole plain-text response that ends the connection: the answer to a
    request ketch refuses (400, 408, 413, 431, 503) or one the app failed (500)."""
    body = (text if text is not None else http.HTTPStatus(status).phrase).encode("utf-8")
    return status_line(status) + (
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n%s\r\n%s" % (len(body), defaults.block, body)
    )


def half_close(transport: asyncio.Transport) -> bool:
    """End our side of the connection after the last response, keeping it open
    for reading: closing a socket with unread input sends a reset, which can
    destroy the response in the client's receive buffer (RFC 9112 9.6). The
    caller reads and drops what still comes, for a bounded time, then closes.
    False when the transport cannot half-close (TLS): then it is closed."""
    if transport.is_closing():
        return False
    if transport.can_write_eof():
        try:
            transport.write_eof()
            return True
        except OSError:
            pass
    transport.close()
    return False
