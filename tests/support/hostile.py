"""Hostile request heads and bodies, and the answer ketch gives to each.

The same table drives the parity tests (tests/http/test_hostile.py, both
parsers) and `benchmarks/hostile_inputs.py`, which also asks Uvicorn.
`expected` is a status code, or CLOSE where no response can be framed.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

CLOSE = 0  # the connection is closed without a response


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    expected: int
    what: str


def _req(head: bytes, body: bytes = b"") -> bytes:
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


_CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

CASES = [
    Case(
        "cl-and-te",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n")
        + b"0\r\n\r\n",
        400,
        "Content-Length together with Transfer-Encoding",
    ),
    Case(
        "two-cl",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\nContent-Length: 6\n", b"hello!"),
        400,
        "two different Content-Lengths",
    ),
    Case(
        "cl-list",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 5, 6\n", b"hello!"),
        400,
        "a Content-Length list with different values",
    ),
    Case(
        "cl-letters",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: abc\n"),
        400,
        "a Content-Length that is not a number",
    ),
    Case(
        "cl-negative",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: -1\n"),
        400,
        "a negative Content-Length",
    ),
    Case(
        "cl-plus",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: +5\n", b"hello"),
        400,
        "a Content-Length with a sign",
    ),
    Case(
        "cl-huge",
        _req(b"POST / HTTP/1.1\nHost: x\nContent-Length: 99999999999999999999999\n"),
        400,
        "a Content-Length too large to be real",
    ),
    Case(
        "chunk-size-bad",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n")
        + b"zz\r\nhello\r\n0\r\n\r\n",
        400,
        "a chunk size that is not hexadecimal",
    ),
    Case(
        "chunk-size-overflow",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n")
        + b"fffffffffffffffffffff\r\nhello\r\n",
        400,
        "a chunk size that overflows",
    ),
    Case(
        "chunk-size-2-64",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n")
        + b"%x\r\nhello\r\n0\r\n\r\n" % (2**64 + 5),
        400,
        "a chunk size of 2^64 + 5 (that wraps around to 5 in a 64-bit counter)",
    ),
    Case(
        "chunk-size-space",
        _CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n",
        400,
        "whitespace after a chunk size",
    ),
    Case(
        "chunk-ext-bare-cr",
        _CHUNKED + b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        400,
        "a bare CR in a chunk extension",
    ),
    Case(
        "chunk-ext-nul",
        _CHUNKED + b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
        400,
        "NUL in a chunk extension",
    ),
    Case(
        "chunk-size-bare-lf",
        _CHUNKED + b"5\nhello\r\n0\r\n\r\n",
        400,
        "a chunk-size line ending in a bare LF",
    ),
    Case(
        "chunk-data-no-crlf",
        _CHUNKED + b"5\r\nhelloX\r\n0\r\n\r\n",
        400,
        "chunk data longer than its size (no CRLF where it must end)",
    ),
    Case(
        "last-chunk-bare-lf",
        _CHUNKED + b"5\r\nhello\r\n0\r\n\n",
        400,
        "the end of a chunked body in a bare LF",
    ),
    Case(
        "trailer-bare-lf",
        _CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
        400,
        "a trailer line ending in a bare LF",
    ),
    Case(
        "trailer-obs-fold",
        _CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n",
        400,
        "obsolete line folding in a trailer",
    ),
    Case(
        "trailer-bad-name",
        _CHUNKED + b"5\r\nhello\r\n0\r\nX T: 1\r\n\r\n",
        400,
        "a trailer name that is not a token",
    ),
    Case(
        "trailer-control",
        _CHUNKED + b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n",
        400,
        "a control character in a trailer value",
    ),
    Case(
        "trailer-too-large",
        _CHUNKED + b"5\r\nhello\r\n0\r\nX-T: " + b"a" * 70_000 + b"\r\n\r\n",
        431,
        "trailers larger than --limit-request-header-size",
    ),
    Case(
        "chunked-with-trailer",
        _CHUNKED + b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        200,
        "chunk extensions and a trailer (accepted; the trailer is dropped)",
    ),
    Case(
        "te-gzip",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: gzip\n") + b"hello",
        400,
        "a Transfer-Encoding other than chunked",
    ),
    Case(
        "te-gzip-chunked",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: gzip, chunked\n") + b"0\r\n\r\n",
        400,
        "a transfer coding ketch does not decode before chunked",
    ),
    Case(
        "te-xchunked",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: xchunked\n") + b"0\r\n\r\n",
        400,
        "an unknown transfer coding",
    ),
    Case(
        "te-space-before-colon",
        _req(b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding : chunked\n") + b"0\r\n\r\n",
        400,
        "whitespace between a header name and its colon",
    ),
    Case("no-host", _req(b"GET / HTTP/1.1\n"), 400, "HTTP/1.1 without Host"),
    Case("two-hosts", _req(b"GET / HTTP/1.1\nHost: a\nHost: b\n"), 400, "two Host headers"),
    Case("nul-in-target", _req(b"GET /a\x00b HTTP/1.1\nHost: x\n"), 400, "NUL in the request line"),
    Case(
        "space-in-target",
        _req(b"GET /a b HTTP/1.1\nHost: x\n"),
        400,
        "a space inside the request target",
    ),
    Case(
        "non-ascii-target",
        _req(b"GET /caf\xc3\xa9 HTTP/1.1\nHost: x\n"),
        400,
        "raw non-ASCII bytes in the request target",
    ),
    Case("bad-method", _req(b"G@T / HTTP/1.1\nHost: x\n"), 400, "a method that is not a token"),
    Case(
        "nul-in-value",
        _req(b"GET / HTTP/1.1\nHost: x\nX-A: a\x00b\n"),
        400,
        "NUL in a header value",
    ),
    Case(
        "bare-cr-in-value",
        _req(b"GET / HTTP/1.1\nHost: x\nX-A: a\rb\n"),
        400,
        "a bare CR in a header value",
    ),
    Case(
        "control-in-value",
        _req(b"GET / HTTP/1.1\nHost: x\nX-A: a\x01b\n"),
        400,
        "a control character in a header value",
    ),
    Case(
        "obs-fold",
        _req(b"GET / HTTP/1.1\nHost: x\nX-A: a\n b\n"),
        400,
        "obsolete line folding (obs-fold)",
    ),
    Case(
        "space-in-name",
        _req(b"GET / HTTP/1.1\nHost: x\nBad Name: x\n"),
        400,
        "a space inside a header name",
    ),
    Case("empty-name", _req(b"GET / HTTP/1.1\nHost: x\n: novalue\n"), 400, "an empty header name"),
    Case(
        "no-colon",
        _req(b"GET / HTTP/1.1\nHost: x\nNoColonHere\n"),
        400,
        "a header line without a colon",
    ),
    Case("http-0.9", b"GET /\r\n\r\n", 400, "an HTTP/0.9 request"),
    Case("http-2.0", _req(b"GET / HTTP/2.0\nHost: x\n"), 505, "HTTP/2.0 on an HTTP/1.1 connection"),
    Case("http-1.2", _req(b"GET / HTTP/1.2\nHost: x\n"), 400, "an unknown HTTP/1 minor version"),
    Case("bad-version", _req(b"GET / HTTQ/1.1\nHost: x\n"), 400, "a malformed version"),
    Case(
        "tls-hello",
        bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00",
        400,
        "a TLS ClientHello on the cleartext port",
    ),
    Case("binary", bytes(range(256)) * 4, 400, "binary garbage"),
    Case("lf-only", b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare LF line endings"),
    Case("http-1.0-no-host", b"GET / HTTP/1.0\r\n\r\n", 200, "HTTP/1.0 without Host (accepted)"),
]


def send_case(
    port: int, data: bytes, timeout: float = 5.0, half_close: bool = False
) -> tuple[int, float]:
    """Send one hostile input on a new connection: (status or CLOSE, seconds taken).
    With `half_close`, the client then shuts its side (nothing more will come).
    Raises TimeoutError when the server neither answers nor closes in time."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            return CLOSE, time.monotonic() - started
        buffer = b""
        while b"\r\n" not in buffer:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                return CLOSE, time.monotonic() - started
            except TimeoutError:
                raise TimeoutError("no answer and no close") from None
            if not chunk:
                return CLOSE, time.monotonic() - started
            buffer += chunk
    line = buffer.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1]), time.monotonic() - started
