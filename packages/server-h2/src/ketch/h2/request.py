"""Reading and checking an HTTP/2 request's header list (RFC 9113 8.2, 8.3).

h2 decodes the header block; ketch checks it here, in one pass over the
fields and a regular expression over the names and one over the values (h2's
own checks loop over every byte in Python, which costs more than the rest of a
small request). A malformed request (RFC 9113 8.1.1) is a stream error: that
stream is reset with PROTOCOL_ERROR and the connection's other streams go on.
What HTTP/1.1 would refuse with 400 (a method that is not a token, a target
that is not visible ASCII, control characters in a value) gets 400 here too.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from ketch.core.api import TOKEN, Headers

# RFC 9113 8.2.2: connection-specific header fields make a request malformed
# (and an app's are left out of a response).
CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# RFC 9113 8.2.1: a field name holds none of 0x00-0x20, A-Z, 0x7f-0xff, nor a
# colon (pseudo-header fields aside); names are joined with NUL to be checked
# at once.
_BAD_NAMES = re.compile(rb"[^\x00\x21-\x39\x3b-\x40\x5b-\x7e]")
# ... and a value neither NUL, CR nor LF, nor whitespace at its ends; ketch
# also refuses the other control characters, as over HTTP/1.1 (values are
# joined with NUL: a NUL in a value shows in the count).
_MALFORMED_VALUES = re.compile(rb"[\r\n]|(?:^|\x00)[ \t]|[ \t](?:\x00|$)")
_CONTROL_IN_VALUES = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
# a method is a token; a target, visible ASCII
_COMMON_METHODS = {
    method: method.decode("ascii")
    for method in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS")
}
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")


class RequestHead(NamedTuple):
    method: str  # "GET" when `bad`
    target: bytes  # the :path (the :authority of a CONNECT); "/" when `bad`
    headers: Headers  # the pseudo-header fields left out, :authority first as `host` (ASGI)
    size: int  # of the header list as RFC 9113 counts it: names, values, 32 bytes a field
    malformed: str  # why the request is malformed; empty when it is not
    bad: bool  # something HTTP/1.1 answers with 400
    content_length: int | None  # of the request body, when given (h2 checks it is a number)
    expect_continue: bool  # the client waits for 100 Continue before the body


def read_request(raw: list[tuple[bytes, bytes]]) -> RequestHead:
    """The request of a decoded header list, checked."""
    method: bytes | None = None
    path: bytes | None = None
    scheme: bytes | None = None
    authority: bytes | None = None
    host: bytes | None = None
    headers: Headers = []
    names: list[bytes] = []
    values: list[bytes] = []
    size = 0
    malformed = ""
    content_length: int | None = None
    expect_continue = False
    for field in raw:
        name, value = field
        size += len(name) + len(value) + 32
        values.append(value)
        if name[:1] == b":":
            if names:
                malformed = "pseudo-header field after a regular one"
            elif name == b":method" and method is None:
                method = value
            elif name == b":path" and path is None:
                path = value
            elif name == b":scheme" and scheme is None:
                scheme = value
            elif name == b":authority" and authority is None:
                authority = value
            else:
                malformed = f"unknown or repeated pseudo-header field {name!r}"
            continue
        names.append(name)
        if not name:
            malformed = "an empty header field name"
        elif name in CONNECTION_SPECIFIC:
            malformed = f"connection-specific header field {name!r}"
        elif name == b"host":
            if host is not None:
                malformed = "two Host header fields"
            host = value
            continue  # the host goes first, below
        elif name == b"te" and value.lower() != b"trailers":
            malformed = "TE other than trailers"
        elif name == b"content-length" and value.isdigit():
            content_length = int(value)
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
        headers.append(field)
    if method is None:
        malformed = "no :method"
    elif method == b"CONNECT":
        if path is not None or scheme is not None or authority is None:
            malformed = "a CONNECT with :path or :scheme, or without :authority"
    elif path is None or scheme is None or not path:
        malformed = "no :path or :scheme"
    if authority is not None and host is not None and host != authority:
        malformed = "Host differs from :authority"
    if names and _BAD_NAMES.search(b"\x00".join(names)) is not None:
        malformed = "a header field name with characters HTTP/2 forbids"
    joined = b"\x00".join(values)
    if _MALFORMED_VALUES.search(joined) is not None or joined.count(b"\x00") != len(values) - 1:
        malformed = "a header field value with characters HTTP/2 forbids"
    if authority is None:
        authority = host
    if authority is not None:
        headers.insert(0, (b"host", authority))
    target = path or authority or b"/"
    method_name = _COMMON_METHODS.get(method or b"")
    if method_name is None and method and TOKEN.fullmatch(method) is not None:
        method_name = method.decode("ascii")
    bad = (
        method_name is None
        or _BAD_TARGET.search(target) is not None
        or _CONTROL_IN_VALUES.search(joined) is not None
    )
    if bad or method_name is None:
        method_name, target = "GET", b"/"  # (for the scope of the 400)
    return RequestHead(
        method_name, target, headers, size, malformed, bad, content_length, expect_continue
    )
