"""ProxyHeadersMiddleware: the client address, scheme, host and server port
from the headers that trusted proxies send.

Only a trusted peer's headers are read. The hops they list are walked from the
right (the nearest proxy) to the left; the first hop that is not itself a
trusted proxy is the client. When every hop is trusted, the leftmost is.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, NamedTuple

from ketch.proxy._headers import Hop, forwarded_hops, x_forwarded_hops
from ketch.proxy._trust import TrustedHosts, parse_node

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

X_FORWARDED = "x-forwarded"
FORWARDED = "forwarded"
# The headers of each family, in the order `x_forwarded_hops` takes them.
_X_FORWARDED_ORDER = (
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
)
_FORWARDED_ORDER = (b"forwarded",)
# What the headers ask for is remembered per header values, for this many
# distinct values (then forgotten at once), and only for values this short.
_CACHE_LIMIT = 4096
_CACHED_VALUES_SIZE = 512
# A forwarded protocol: the scheme for an http scope, and for a websocket scope.
_SCHEMES = {
    "http": ("http", "ws"),
    "ws": ("http", "ws"),
    "https": ("https", "wss"),
    "wss": ("https", "wss"),
}
# A host name or an IP address (IPv6 in brackets), and an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?\Z")


class ProxyHeadersMiddleware:
    """Set `client`, `scheme`, the `host` header and the `server` port from
    proxy headers sent by trusted peers, in `http` and `websocket` scopes;
    other scopes (lifespan) pass through untouched.

    `trusted_hosts`: the peers (and proxy hops) trusted to report the client:
    IP addresses, networks in CIDR form, literals such as a UNIX socket path or
    `unix:`, or `*`; a list or a comma-separated string.

    `headers`: `"x-forwarded"` (X-Forwarded-For, -Proto, -Host, -Port) or
    `"forwarded"` (RFC 7239). Only that family is read.

    A request carrying no header of that family costs one pass over its header
    names and reaches the app with the same scope. Otherwise the scope is
    changed in place, as Uvicorn does (servers build a new scope per request);
    the header list is replaced by a new one, not mutated, when the host
    changes. What a set of header values asks for is remembered (bounded), as
    behind a proxy most requests repeat earlier values.
    """

    __slots__ = ("_changes", "_names", "_order", "app", "headers", "trusted_hosts")

    def __init__(
        self,
        app: ASGIApp,
        trusted_hosts: str | Iterable[str] = "127.0.0.1",
        headers: str = X_FORWARDED,
    ) -> None:
        family = headers.strip().lower()
        if family not in (X_FORWARDED, FORWARDED):
            raise ValueError(f"headers must be {X_FORWARDED!r} or {FORWARDED!r}, not {headers!r}")
        self.app = app
        self.trusted_hosts = TrustedHosts(trusted_hosts)
        self.headers = family
        self._order = _X_FORWARDED_ORDER if family == X_FORWARDED else _FORWARDED_ORDER
        self._names = frozenset(self._order)
        self._changes: dict[tuple[str | None, ...], _Change] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.prepare(scope)
        return await self.app(scope, receive, send)

    def prepare(self, scope: Scope) -> None:
        """What `__call__` does to the scope before the app runs. A server that
        calls the app itself can call this instead and skip one await per request."""
        if scope["type"] in ("http", "websocket"):
            names = self._names
            for name, _ in scope["headers"]:
                if name in names:
                    self._rewrite(scope)
                    break

    def _rewrite(self, scope: Scope) -> None:
        """Change the scope as the proxy headers say, if the peer is trusted."""
        if not self._peer_is_trusted(scope):
            return
        change = self._change(scope["headers"])
        if change.client is not None:
            scope["client"] = change.client
        if change.schemes is not None:
            scope["scheme"] = change.schemes[scope["type"] == "websocket"]
        if change.host is not None:
            scope["headers"] = _with_host(scope["headers"], change.host)
        if change.port is not None:
            server = scope.get("server")
            if server and server[1] is not None:  # a TCP server; a UNIX socket has no port
                scope["server"] = (server[0], change.port)
        if change.server is not None:
            scope["server"] = change.server

    def _peer_is_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if client:
            return client[0] in self.trusted_hosts
        server = scope.get("server")
        if server and server[1] is None:  # a UNIX socket: (path, None)
            return self.trusted_hosts.trusts_unix_socket(str(server[0]))
        return self.trusted_hosts.always

    def _change(self, raw_headers: Iterable[tuple[bytes, bytes]]) -> _Change:
        """What the headers of the chosen family say, remembered per header values:
        behind a proxy most requests repeat the values of earlier ones."""
        names = self._names
        found: dict[bytes, str] = {}  # repeated headers joined with commas
        size = 0
        for name, value in raw_headers:
            if name in names:
                text = value.decode("latin-1")
                found[name] = f"{found[name]},{text}" if name in found else text
                size += len(text)
        key = tuple(map(found.get, self._order))
        change = self._changes.get(key)
        if change is None:
            change = self._read(key)
            if size <= _CACHED_VALUES_SIZE:  # long values are read each time, never kept
                if len(self._changes) >= _CACHE_LIMIT:
                    self._changes.clear()
                self._changes[key] = change
        return change

    def _read(self, values: tuple[str | None, ...]) -> _Change:
        """The change the header values ask for: from the client's hop, each
        value checked on its own."""
        if self.headers == FORWARDED:
            hops = forwarded_hops(values[0] or "")
        else:
            hops = x_forwarded_hops(*values)
        hop = self._client_hop(hops)
        if hop is None:
            return _NO_CHANGE
        client = None
        if hop.node is not None:
            address, port = parse_node(hop.node)
            client = None if address is None else (str(address), port)
        schemes = None if hop.proto is None else _SCHEMES.get(hop.proto.strip().lower())
        host = hop.host.encode("ascii") if hop.host and _HOST.match(hop.host) else None
        server_port = None if hop.port is None else _port(hop.port)
        server = None
        if hop.by is not None:
            by_address, by_port = parse_node(hop.by)
            if by_address is not None and by_port:
                server = (str(by_address), by_port)
        return _Change(client, schemes, host, server_port, server)

    def _client_hop(self, hops: list[Hop]) -> Hop | None:
        """The first hop from the right that is not a trusted proxy; the
        leftmost when all are. A hop with no node is never passed."""
        trusted = self.trusted_hosts
        for hop in reversed(hops):
            if hop.node is None or hop.node not in trusted:
                return hop
        return hops[0] if hops else None


class _Change(NamedTuple):
    """What one set of proxy headers changes in a scope (None: nothing)."""

    client: tuple[str, int] | None
    schemes: tuple[str, str] | None  # for an http scope, for a websocket scope
    host: bytes | None
    port: int | None  # X-Forwarded-Port: the server's port
    server: tuple[str, int] | None  # by=: the server's address and port


_NO_CHANGE = _Change(None, None, None, None, None)


def _with_host(headers: Iterable[tuple[bytes, bytes]], host: bytes) -> list[tuple[bytes, bytes]]:
    """A new header list where `host` is the only Host header, in the first one's place."""
    result: list[tuple[bytes, bytes]] = []
    placed = False
    for name, value in headers:
        if name == b"host":
            if not placed:
                result.append((name, host))
                placed = True
        else:
            result.append((name, value))
    if not placed:
        result.append((b"host", host))
    return result


def _port(text: str) -> int | None:
    text = text.strip()
    if text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) <= 65535:
        return int(text)
    return None
