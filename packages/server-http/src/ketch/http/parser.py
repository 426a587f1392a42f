"""The contract between the HTTP/1.1 connection and a parser adapter.

The connection (`ketch.http.connection.HTTPConnection`) owns the transport and
every decision; a parser adapter (h11, httptools, or another) only turns bytes
into the events below, in the order they happen on the wire, and keeps the
bytes it did not parse when told to stop:

    connection                        parser adapter
    ----------                        --------------
    data_received(data)  ──feed──>    parse; for each request:
                         <─────────     on_message_begin()      (its first byte)
                         <─────────     on_head(...)            -> HeadFacts | None
                         <─────────     on_body(data)           (zero or more)
                         <─────────     on_message_complete()    -> bool
                         <─────────   or on_bad_request(status, reason), then stop
    (a WebSocket handover) ─take_unparsed─> the bytes after the upgrade request

`on_head()` returns the facts of an accepted head (the adapter frames the body
by them, if it frames bodies itself; `facts.websocket` says whether the
connection takes the protocol switch after this request), or None: the
connection refuses the request and takes no more, so the adapter stops.
`on_message_complete()` returns whether the connection takes another request
on these bytes; when it does not (the request said `Connection: close`, or
switches protocol), the adapter stops and keeps the rest for
`take_unparsed()`. Events an adapter still produces after it should have
stopped (a C parser cannot stop mid-buffer) are ignored by the connection.
"""

from __future__ import annotations

from typing import Protocol

from ketch.core.api import Headers
from ketch.http.request_head import HeadFacts


class ParserEvents(Protocol):
    """What the connection offers a parser adapter."""

    def on_message_begin(self) -> None:
        """The first byte of a request head (empty lines before it do not count):
        the request-header timeout starts."""

    def on_head(
        self, method: bytes, target: bytes, http_version: bytes, headers: Headers
    ) -> HeadFacts | None:
        """A complete request head; `headers` with lowercase names, trailers
        never among them."""

    def on_body(self, data: bytes) -> None:
        """Request body bytes, decoded from their framing."""

    def on_message_complete(self) -> bool:
        """The request (its body, and trailers if any) is complete; True when the
        connection takes another request after it."""

    def on_bad_request(self, status: int, reason: str) -> None:
        """The input is not acceptable HTTP/1.1 (400, 431); the adapter stops."""


class Parser(Protocol):
    """What a parser adapter offers the connection."""

    def feed(self, data: bytes) -> None:
        """Parse `data`, calling the events as requests come out of it."""

    def switches_protocol(self) -> bool:
        """Asked during `on_head()` of a request that asks for an upgrade: True
        when the parser can stop after this request and leave what follows to
        another protocol (llhttp decides this by itself; the connection hands
        over only when the parser agrees)."""

    def take_unparsed(self) -> bytes:
        """After parsing stopped at a protocol switch: the bytes that followed
        the request, which belong to the new protocol."""
