"""Request-head validation (RFC 9112), the same for every parser.

A parser hands over what it parsed; `check_head()` decides whether ketch
accepts the request and what the head says about the rest of it: how the body
is framed, whether the connection may be kept, whether the client waits for
`100 Continue`, whether it asks for a WebSocket. Token lists (Connection,
Upgrade) are parsed as tokens, never searched for substrings.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ketch.core.api import CONTENT_LENGTH, TOKEN, Headers

# what a field value may not hold
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# a request target is visible ASCII (RFC 9112 3.2)
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")
_COMMON_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"})


class BadRequest(Exception):
    """A request ketch refuses, with the status and the reason to log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HeadFacts(NamedTuple):
    """What an accepted request head says about the request."""

    http_version: str  # "1.1" or "1.0"
    content_length: int | None  # None: no Content-Length (chunked, or no body)
    chunked: bool  # Transfer-Encoding: chunked
    keep_alive: bool  # the client may send another request on this connection
    expect_continue: bool  # the client waits for 100 Continue before the body
    websocket: bool  # a GET asking to switch to WebSocket (RFC 6455 4.1)


def check_head(
    method: bytes, target: bytes, http_version: bytes, headers: Headers, max_headers: int
) -> HeadFacts:
    """The facts of an acceptable head; BadRequest otherwise. `headers` have
    lowercase names."""
    if len(headers) > max_headers:
        raise BadRequest(431, "Too many request headers")
    if method not in _COMMON_METHODS and TOKEN.fullmatch(method) is None:
        raise BadRequest(400, "Invalid request method")
    if _BAD_TARGET.search(target) is not None:
        raise BadRequest(400, "Invalid request target")
    if http_version == b"1.1":
        version = "1.1"
    elif http_version == b"1.0":
        version = "1.0"
    elif http_version[:1] in (b"2", b"3"):
        raise BadRequest(505, "HTTP/2 and HTTP/3 are not served on an HTTP/1.1 connection")
    else:  # HTTP/0.9 (no version) and unknown minor versions
        raise BadRequest(400, "Unsupported HTTP version")

    hosts = 0
    length: bytes | None = None
    transfer_encoding: bytes | None = None
    connection: list[bytes] | None = None
    expect = upgrade = False
    for name, value in headers:
        if _BAD_VALUE.search(value) is not None:
            raise BadRequest(400, "Invalid character in header value")
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            for item in value.split(b","):
                item = item.strip()
                if length is not None and item != length:
                    raise BadRequest(400, "Conflicting Content-Length headers")
                length = item
        elif name == b"transfer-encoding":
            transfer_encoding = (
                value if transfer_encoding is None else transfer_encoding + b"," + value
            )
        elif name == b"connection":
            connection = (connection or []) + tokens(value)
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
        elif name == b"upgrade":
            upgrade = upgrade or any(
                protocol.partition(b"/")[0] == b"websocket" for protocol in tokens(value)
            )
    if hosts != 1 and (hosts > 1 or version == "1.1"):
        raise BadRequest(400, "Missing Host header" if hosts == 0 else "More than one Host header")
    if length is not None and CONTENT_LENGTH.fullmatch(length) is None:
        raise BadRequest(400, "Invalid Content-Length header")
    chunked = transfer_encoding is not None
    if transfer_encoding is not None:
        if length is not None:
            raise BadRequest(400, "Both Content-Length and Transfer-Encoding")
        if transfer_encoding.strip().lower() != b"chunked":
            raise BadRequest(400, "Unsupported Transfer-Encoding")
        if version != "1.1":
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
    if connection is None:
        keep_alive = version == "1.1"
    elif b"close" in connection:
        keep_alive = False
    else:
        keep_alive = version == "1.1" or b"keep-alive" in connection
    # (tuple.__new__: the NamedTuple's own __new__ is one Python call more)
    return tuple.__new__(
        HeadFacts,
        (
            version,
            int(length) if length is not None else None,
            chunked,
            keep_alive,
            expect and version == "1.1",
            upgrade and method == b"GET" and connection is not None and b"upgrade" in connection,
        ),
    )


def tokens(value: bytes) -> list[bytes]:
    """The lowercase tokens of a comma-separated header value (RFC 9110 5.6.1)."""
    return [token for item in value.lower().split(b",") if (token := item.strip(b" \t"))]
