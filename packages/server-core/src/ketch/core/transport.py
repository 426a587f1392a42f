"""What every connection protocol needs from its transport: who is connected,
over what, and flow control both ways."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, NamedTuple

from ketch.core.tls import tls_extension


class ConnectionInfo(NamedTuple):
    """Who is on the other end of a connection, and where it arrived."""

    client: tuple[str, int] | None  # the peer's (host, port); None on a UNIX socket
    server: tuple[str, int | None] | None  # (host, port), or (path, None) on a UNIX socket
    scheme: str  # "https" over TLS, else "http"
    # the ASGI `tls` extension's dict on a TLS connection (ketch.core.tls); None on cleartext
    tls: dict[str, Any] | None = None


def connection_info(
    transport: asyncio.BaseTransport, server_cert: str | None = None
) -> ConnectionInfo:
    """Who is connected over `transport`; `server_cert` is the PEM of the
    server's certificate, for the `tls` extension of a TLS connection."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ConnectionInfo(get_remote_addr(transport), get_local_addr(transport), "http")
    return ConnectionInfo(
        get_remote_addr(transport),
        get_local_addr(transport),
        "https",
        tls_extension(ssl_object, server_cert),
    )


def get_remote_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The peer's (host, port), or None on a UNIX socket."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        try:
            info = sock.getpeername()
        except OSError:  # seen with uvloop on UNIX sockets
            return None
        return (str(info[0]), int(info[1])) if isinstance(info, tuple) else None
    info = transport.get_extra_info("peername")
    if isinstance(info, list | tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def get_local_addr(transport: asyncio.BaseTransport) -> tuple[str, int | None] | None:
    """The (host, port) this connection arrived on; (path, None) on a UNIX socket."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    info = sock.getsockname() if sock is not None else transport.get_extra_info("sockname")
    if isinstance(info, list | tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str):
        return (info, None)
    if isinstance(info, bytes):  # an abstract UNIX socket
        return (info.decode("latin-1"), None)
    return None


class ReadFlow:
    """Reading paused for one or more reasons, and resumed once none is left.

    Reasons are bits a protocol defines (body buffer full, a request waiting
    its turn, ...), so that one reason going away never resumes reading that
    another still needs paused."""

    __slots__ = ("reasons", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reasons = 0

    def pause(self, reason: int) -> None:
        if not self.reasons and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        reasons = self.reasons
        if reasons & reason:
            reasons = self.reasons = reasons & ~reason
            if not reasons and not self.transport.is_closing():
                self.transport.resume_reading()

    def resume_all(self) -> None:
        if self.reasons:
            self.reasons = 0
            if not self.transport.is_closing():
                self.transport.resume_reading()


class WriteFlow:
    """Write back-pressure: the transport's pause_writing/resume_writing turned
    into something senders can await, and a wake-up for connection loss."""

    __slots__ = ("_lost_waiter", "_waiter", "lost", "paused")

    def __init__(self) -> None:
        self.paused = False
        self.lost = False
        self._waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake()

    def connection_lost(self) -> None:
        self.paused = False
        self.lost = True
        self._wake()
        wake(self._lost_waiter)

    async def drain(self) -> None:
        """Wait until the transport accepts writes again (or the peer is gone)."""
        if not self.paused:
            return
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def when_lost(self) -> asyncio.Future[None]:
        """A future resolved when the connection is lost, for a wait that does
        not go through `drain()` (the kernel's sendfile)."""
        waiter = self._lost_waiter
        if waiter is None:
            waiter = self._lost_waiter = asyncio.get_running_loop().create_future()
            if self.lost:
                waiter.set_result(None)
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            wake(waiter)


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a future someone may be awaiting (nothing if it is None or done)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
