"""What RFC 6455 says that both WebSocket libraries must do alike: close codes,
the header of a server data frame, the close reason's size, and the checks of
the upgrade request that come before any library sees it."""

from __future__ import annotations

import base64
import struct

from ketch.core.api import Headers, WebSocketScope

# Close codes (RFC 6455 7.4.1)
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
ABNORMAL_CLOSURE = 1006
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012

# Server-to-client frame headers with FIN set and no mask (RFC 6455 5.2)
OP_TEXT, OP_BINARY = 0x1, 0x2
SHORT_HEADERS = {
    opcode: [bytes((0x80 | opcode, length)) for length in range(126)]
    for opcode in (OP_TEXT, OP_BINARY)
}
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final data frame of `length` payload bytes."""
    if length < 126:
        return SHORT_HEADERS[opcode][length]
    if length < 65536:
        return _HEADER_16.pack(0x80 | opcode, 126, length)
    return _HEADER_64.pack(0x80 | opcode, 127, length)


def check_request(scope: WebSocketScope) -> tuple[int, bytes, Headers] | None:
    """What both libraries must refuse alike (RFC 6455 4.2.1): the HTTP
    version, the key and the protocol version. The adapters check the rest."""
    if scope["http_version"] != "1.1":
        return 505, b"WebSocket needs HTTP/1.1", []
    keys = [value for name, value in scope["headers"] if name == b"sec-websocket-key"]
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        return 400, b"Invalid Sec-WebSocket-Key header", []
    versions = [value for name, value in scope["headers"] if name == b"sec-websocket-version"]
    if versions != [b"13"]:
        return 426, b"Unsupported WebSocket version", [(b"sec-websocket-version", b"13")]
    return None


def valid_close_code(code: object) -> bool:
    """Codes an endpoint may send (RFC 6455 7.4)."""
    return isinstance(code, int) and (
        code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


def short_reason(reason: str) -> str:
    """A close reason that fits a control frame (125 bytes, 2 for the code)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    return encoded[:123].decode("utf-8", "ignore")
