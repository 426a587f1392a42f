"""Which HTTP version a connection speaks when `--http2` is on: ketch-core's one
place for it.

- Over TLS, ALPN offers `h2` then `http/1.1` (`ALPN_PROTOCOLS`, set on the SSL
  context by `ketch.core.sockets`), and the client's choice is known when the
  connection is made.
- Over cleartext TCP and UNIX sockets, a connection that opens with the HTTP/2
  connection preface is HTTP/2 ("prior knowledge", RFC 9113 3.3); anything
  else is HTTP/1.1, on the same port.

The choice is made once per connection by `VersionChoice`, which then hands
the transport to the chosen protocol (`transport.set_protocol()`) and is gone:
the requests themselves cost nothing more with `--http2` on. Without
`--http2`, none of this runs.

`Upgrade: h2c` (RFC 7540 3.2, deprecated by RFC 9113) is not taken: such a
request is answered over HTTP/1.1, which RFC 9113 allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

from ketch.core.context import Connection, ServerContext

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ALPN_PROTOCOLS: Final = ("h2", "http/1.1")

ProtocolFactory = Callable[[], asyncio.Protocol]


def choosing_factory(
    context: ServerContext, http1: ProtocolFactory, http2: ProtocolFactory
) -> ProtocolFactory:
    """A protocol factory for the listeners: each connection is served by
    `http2()` or `http1()`, as it chooses."""
    return lambda: VersionChoice(context, http1, http2)


class VersionChoice(asyncio.Protocol):
    """A connection whose HTTP version is not known yet (a `Connection` of the
    server while it waits for the first bytes)."""

    __slots__ = ("context", "deadline", "http1", "http2", "received", "transport")

    def __init__(
        self, context: ServerContext, http1: ProtocolFactory, http2: ProtocolFactory
    ) -> None:
        self.context = context
        self.http1 = http1
        self.http2 = http2
        self.received = b""
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:  # the TLS handshake is done: ALPN has chosen
            chosen = self.http2 if ssl_object.selected_alpn_protocol() == "h2" else self.http1
            self._hand_over(chosen, b"")
            return
        # until the first bytes, an idle connection like any other
        self.context.connections.add(self)
        self.deadline = self.context.now + self.context.settings.timeout_keep_alive

    def data_received(self, data: bytes) -> None:
        received = self.received + data if self.received else data
        if len(received) < len(PREFACE) and PREFACE.startswith(received):
            self.received = received  # perhaps the preface: wait for the rest
            return
        self.context.connections.discard(self)
        self.deadline = 0.0
        chosen = self.http2 if received.startswith(PREFACE) else self.http1
        self._hand_over(chosen, received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)

    def _hand_over(self, factory: ProtocolFactory, received: bytes) -> None:
        protocol = factory()
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.context.shutting_down:
            # made after the server asked every connection to finish
            cast(Connection, protocol).shutdown()
        if received:
            protocol.data_received(received)

    # --- what the server calls (ketch.core.context.Connection) -------------------------
    def on_deadline(self) -> None:
        self.deadline = 0.0
        self.transport.close()

    def shutdown(self) -> None:
        # Like an HTTP/1.1 connection before its first request: its client is
        # about to send one, which it would not retry; the deadline still holds.
        pass

    def abort(self) -> None:
        self.deadline = 0.0
        self.transport.abort()
