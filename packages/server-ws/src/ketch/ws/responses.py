"""The HTTP/1.1 responses a WebSocket handshake may get, written with ketch-core's
HTTP/1 writer: the headers of the 101, a plain refusal, and a denial response
(the ASGI `websocket.http.response` extension) sent in pieces."""

from __future__ import annotations

from typing import Any

from ketch.core.api import (
    CHUNKED,
    LAST_CHUNK,
    DefaultHeaders,
    Headers,
    checked_headers,
    chunk,
    response_head,
)

# the handshake sets Connection itself
_HANDSHAKE_OWNED = frozenset({b"connection"})


def accept_headers(headers: Any, defaults: DefaultHeaders) -> Headers:
    """For the 101: the app's headers (checked, lowercased, without Connection),
    then ketch's defaults the app did not set."""
    checked = checked_headers(headers, drop=_HANDSHAKE_OWNED)
    names = {name for name, _ in checked}
    checked.extend(pair for pair in defaults.pairs if pair[0] not in names)
    return checked


def refusal(status: int, body: bytes, headers: Headers, defaults: DefaultHeaders) -> bytes:
    """A whole plain-text response to the upgrade request, ending the connection."""
    headers = [*headers, (b"content-type", b"text/plain; charset=utf-8")]
    head, _, _, _ = response_head(status, headers, defaults, False, False, False, len(body))
    return head + body


class DenialResponse:
    """A response the app sends in place of the handshake. Its head waits for the
    first body message, so a small response is one write; the body is chunked
    unless the app gave a Content-Length or the whole body came at once."""

    __slots__ = ("_defaults", "_framing", "_head")

    def __init__(self, status: int, headers: Headers, defaults: DefaultHeaders) -> None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response")
        self._head: tuple[int, Headers] | None = (status, headers)
        self._defaults = defaults
        self._framing = CHUNKED

    def body(self, body: bytes, more_body: bool) -> bytes:
        """The bytes to write for one `websocket.http.response.body` message."""
        data = b""
        if self._head is not None:
            status, headers = self._head
            self._head = None
            final_size = None if more_body else len(body)
            data, self._framing, _, _ = response_head(
                status, headers, self._defaults, False, False, False, final_size
            )
        if self._framing is CHUNKED:
            return data + (chunk(body) if more_body else chunk(body) + LAST_CHUNK)
        return data + body
