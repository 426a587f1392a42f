"""The PROXY protocol of TCP load balancers (v1 text, v2 binary): `--proxy-protocol`.

A load balancer that passes TCP through (HAProxy, an AWS NLB, ...) cannot add
an X-Forwarded-For header, so it writes who the client is in a header before
the connection's first byte. With --proxy-protocol every listening socket is
served by a `ProxyProtocolServer` instead of the loop's `create_server()`: it
accepts the connections itself, reads each one's header up to its last byte
and not one byte further (peeking first, so that TLS or HTTP start right after
it), and hands the socket to the loop with `connect_accepted_socket()`. The
addresses it read go to `ServerContext.connection_info()`, per socket.

Only peers that `--forwarded-allow-ips` trusts may connect; a connection from
another peer, with a header that is malformed or does not arrive within
`--timeout-request-header`, is closed without an answer and logged once.
Without the option none of this runs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from ketch.core.errors import ConfigError
from ketch.proxy import TrustedHosts

if TYPE_CHECKING:
    from ketch.core.context import ServerContext

logger = logging.getLogger("ketch.error")

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line the specification allows, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version and command, family, length
# Addresses (216 bytes at most, for UNIX sockets) and TLVs: what load balancers
# send is far smaller; this bounds what a connection may make the server hold.
V2_MAX = 4096
# Connections accepted in one go before the loop runs other callbacks.
ACCEPT_BATCH = 100
# When the process is out of file descriptors and no header is pending, the
# listening socket rests this long (as asyncio's own servers do).
ACCEPT_RETRY_DELAY = 1.0

ClientAddress = tuple[str, int] | None
ServerAddress = tuple[str, int | None] | None


class Addresses(NamedTuple):
    """What a PROXY header says of a connection: the ASGI `client` and `server`."""

    client: ClientAddress
    server: ServerAddress


class Header(NamedTuple):
    """A complete PROXY header: its length in bytes, and the addresses it gives
    (None for LOCAL, UNKNOWN and unspecified families: the peer's own hold)."""

    length: int
    addresses: Addresses | None


class HeaderError(Exception):
    """Not a valid PROXY protocol header; the message says why."""


# --- reading a header ---------------------------------------------------------------------
def parse(data: bytes) -> Header | int:
    """The PROXY header at the start of `data`, or, while it may be incomplete,
    how many more bytes at most can still belong to it (every byte of `data`
    then does). Raises HeaderError for anything that cannot become a header."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data):
        return V2_FIXED - len(data)
    if V1_PREFIX.startswith(data):
        return V1_MAX - len(data)
    raise HeaderError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> Header | int:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX:
            raise HeaderError(f"a v1 header without CRLF in its first {V1_MAX} bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise HeaderError("a v1 header line that does not end with CRLF")
        return V1_MAX - len(data)
    words = data[len(V1_PREFIX) : end].split(b" ")
    if words[0] == b"UNKNOWN":  # the rest of the line is to be ignored
        return Header(end + 2, None)
    families = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}
    if words[0] not in families:
        raise HeaderError(f"a v1 header for {_printable(words[0])}, not TCP4, TCP6 or UNKNOWN")
    if len(words) != 5:
        raise HeaderError("a v1 header without its four fields")
    family = families[words[0]]
    source, destination = _text_address(family, words[1]), _text_address(family, words[2])
    source_port, destination_port = _text_port(words[3]), _text_port(words[4])
    return Header(end + 2, Addresses((source, source_port), (destination, destination_port)))


def _text_address(family: socket.AddressFamily, text: bytes) -> str:
    """The address in the form getpeername() gives; refused when not canonical
    enough for the specification (leading zeros, an IPv6 zone, the wrong family)."""
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text.decode("ascii")))
    except (OSError, UnicodeDecodeError, ValueError):
        raise HeaderError(f"a v1 header with the address {_printable(text)}") from None


def _text_port(text: bytes) -> int:
    if (
        text.isdigit()
        and len(text) <= 5
        and (text == b"0" or not text.startswith(b"0"))
        and int(text) <= 65535
    ):
        return int(text)
    raise HeaderError(f"a v1 header with the port {_printable(text)}")


def _printable(text: bytes) -> str:
    return repr(text[:48].decode("ascii", "backslashreplace"))


def _parse_v2(data: bytes) -> Header | int:
    if len(data) < V2_FIXED:
        return V2_FIXED - len(data)
    version_command, family_transport = data[12], data[13]
    length = int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2:
        raise HeaderError(f"a v2 header of version {version_command >> 4}")
    command = version_command & 0x0F
    family, transport = family_transport >> 4, family_transport & 0x0F
    if command > 1 or family > 3 or transport > 2:
        raise HeaderError(f"a v2 header with the command and family bytes {data[12:14].hex()}")
    total = V2_FIXED + length
    if total > V2_MAX:
        raise HeaderError(f"a v2 header of {total} bytes, more than {V2_MAX}")
    if len(data) < total:
        return total - len(data)
    # LOCAL (a health check of the proxy itself) and unspecified families keep
    # the connection's own addresses; TLVs after the addresses are skipped.
    if command == 0 or family == 0 or transport == 0:
        return Header(total, None)
    block = data[V2_FIXED:total]
    if family == 3:  # AF_UNIX: two paths of 108 bytes
        if length < 216:
            raise HeaderError(f"a v2 header whose UNIX addresses take {length} bytes, not 216")
        return Header(total, Addresses(None, (_unix_path(block[108:216]), None)))
    size = 4 if family == 1 else 16
    if length < 2 * size + 4:
        raise HeaderError(f"a v2 header whose addresses take {length} bytes, not {2 * size + 4}")
    af = socket.AF_INET if family == 1 else socket.AF_INET6
    source = socket.inet_ntop(af, block[:size])
    destination = socket.inet_ntop(af, block[size : 2 * size])
    source_port, destination_port = struct.unpack_from("!HH", block, 2 * size)
    return Header(total, Addresses((source, source_port), (destination, destination_port)))


def _unix_path(raw: bytes) -> str:
    """A UNIX socket address of a v2 header: NUL-terminated (an abstract name
    starts with a NUL, as the socket module writes it)."""
    if raw[:1] == b"\x00":
        return "\x00" + os.fsdecode(raw[1:].partition(b"\x00")[0])
    return os.fsdecode(raw.partition(b"\x00")[0])


# --- accepting -----------------------------------------------------------------------------
class _Pending:
    """A connection whose PROXY header is still being read."""

    __slots__ = ("peer", "received", "registered", "sock", "timer", "want")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer  # for the log
        self.received = b""  # the header's bytes taken off the socket so far
        self.want = V1_MAX  # how many more bytes at most belong to the header
        self.registered = False  # the loop watches the socket for us
        self.timer: asyncio.TimerHandle | None = None


class ProxyProtocolServer(asyncio.AbstractServer):
    """Serves one listening socket whose peers send a PROXY header first.

    Accepting never waits for a header: each connection is watched on its own
    until its header is complete (then handed over) or its time is up. When
    the process runs out of file descriptors, the connection whose header has
    waited longest is closed to make room, so that connections that send
    their header at once are still accepted during a flood of slow ones."""

    def __init__(
        self,
        context: ServerContext,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None,
        trusted_proxies: Iterable[str],
    ) -> None:
        self.loop = context.loop
        if context.proxied is None:
            context.proxied = {}
        self.proxied = context.proxied
        self.protocol_factory = protocol_factory
        self.sock = sock
        self.ssl_context = ssl_context
        self.timeout = context.settings.timeout_request_header
        self.trusted = TrustedHosts(trusted_proxies)
        # Over a UNIX socket every peer is the same: trusted or not by the path.
        self.unix_path: str | None = None
        if sock.family == socket.AF_UNIX:
            self.unix_path = os.fsdecode(sock.getsockname())
            refusal = unix_socket_refusal(self.unix_path, self.trusted)
            if refusal is not None:
                raise ConfigError(refusal)
        self.pending: dict[_Pending, None] = {}  # in the order of arrival: oldest first
        self.connecting: set[asyncio.Task[None]] = set()  # TLS handshakes, hand-overs
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self.loop.add_reader(sock, self._accept)
        self.serving = True

    # --- asyncio.AbstractServer ---------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, and close the connections whose header is not complete."""
        if self.serving:
            self.serving = False
            if self._retry is not None:
                self._retry.cancel()
            else:
                self.loop.remove_reader(self.sock)
        for pending in list(self.pending):
            self._forget(pending)
            pending.sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def is_serving(self) -> bool:
        return self.serving

    async def start_serving(self) -> None:
        return None  # it serves from the start

    async def serve_forever(self) -> None:
        raise NotImplementedError("the ketch Server runs the loop")

    async def wait_closed(self) -> None:
        return None

    # --- accepting ----------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left (or another worker took it)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if self.pending:  # the header that waited longest makes room
                        oldest = next(iter(self.pending))
                        self._refuse(oldest, f"closed to accept a new connection ({exc.strerror})")
                        continue
                    self._rest(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that peer left before it was accepted
                logger.error("PROXY protocol: cannot accept connections: %s", exc)
                self._rest(exc)
                return
            self._begin(sock, address)

    def _rest(self, exc: OSError) -> None:
        """Stop accepting for a moment (out of file descriptors, memory, ...)."""
        logger.error(
            "PROXY protocol: cannot accept connections (%s); trying again in %g s",
            exc.strerror,
            ACCEPT_RETRY_DELAY,
        )
        self.loop.remove_reader(self.sock)
        self._retry = self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self.serving:
            self.loop.add_reader(self.sock, self._accept)

    def _begin(self, sock: socket.socket, address: object) -> None:
        sock.setblocking(False)
        if self.unix_path is not None:
            peer = f"unix socket {self.unix_path}"
        else:
            assert isinstance(address, tuple)
            host = str(address[0])
            peer = f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
            if host not in self.trusted:
                logger.warning(
                    "PROXY protocol: closed the connection from %s: "
                    "not a peer in --forwarded-allow-ips",
                    peer,
                )
                sock.close()
                return
        pending = _Pending(sock, peer)
        self.pending[pending] = None
        pending.timer = self.loop.call_later(self.timeout, self._expire, pending)
        self._read(pending)  # the header usually came with the connection
        if pending in self.pending:
            pending.registered = True
            self.loop.add_reader(sock, self._read, pending)

    def _read(self, pending: _Pending) -> None:
        """Take the header's bytes off the socket, and not one byte more: peek,
        then receive exactly what belongs to the header."""
        sock = pending.sock
        while True:
            want = pending.want
            try:
                data = sock.recv(want, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._refuse(pending, f"{exc.strerror} before the end of its PROXY header")
                return
            if not data:
                self._refuse(pending, "closed before the end of its PROXY header")
                return
            try:
                result = parse(pending.received + data)
            except HeaderError as exc:
                self._refuse(pending, str(exc))
                return
            if isinstance(result, Header):
                self._take(sock, result.length - len(pending.received))
                self._hand_over(pending, result.addresses)
                return
            pending.received += self._take(sock, len(data))
            pending.want = result
            if len(data) < want:
                return  # the rest is still on its way

    @staticmethod
    def _take(sock: socket.socket, size: int) -> bytes:
        """Receive `size` bytes that a peek just saw (so they are there)."""
        data = sock.recv(size)
        assert len(data) == size, "a socket returned less than it had peeked"
        return data

    def _expire(self, pending: _Pending) -> None:
        timeout = f"{self.timeout:g}"
        self._refuse(pending, f"no complete PROXY header within {timeout} s")

    def _refuse(self, pending: _Pending, reason: str) -> None:
        """Close without an answer: nothing but a PROXY header may come first."""
        self._forget(pending)
        logger.warning("PROXY protocol: closed the connection from %s: %s", pending.peer, reason)
        pending.sock.close()

    def _forget(self, pending: _Pending) -> None:
        del self.pending[pending]
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.registered:
            self.loop.remove_reader(pending.sock)

    def _hand_over(self, pending: _Pending, addresses: Addresses | None) -> None:
        """The header is read: the rest of the connection belongs to the protocol."""
        self._forget(pending)
        sock = pending.sock
        # Every connection of this server is accepted here, so an entry left by
        # an earlier connection on the same descriptor is always replaced first.
        if addresses is None:
            self.proxied.pop(sock.fileno(), None)
        else:
            self.proxied[sock.fileno()] = addresses
        task = self.loop.create_task(self._connect(sock))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(
                self.protocol_factory, sock, ssl=self.ssl_context
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            # a failed TLS handshake: the transport is closed, and asyncio's own
            # servers do not log it either
            logger.debug("TLS handshake failed after a PROXY header: %s", exc)


def unix_socket_refusal(path: str, trusted: TrustedHosts) -> str | None:
    """Why --proxy-protocol cannot serve the UNIX socket at `path`, if it cannot."""
    if trusted.trusts_unix_socket(path):
        return None
    return (
        f"--proxy-protocol on the UNIX socket {path}: its peers are not in "
        f"--forwarded-allow-ips, so every connection would be refused; add {path} "
        "(or unix:) to --forwarded-allow-ips"
    )
