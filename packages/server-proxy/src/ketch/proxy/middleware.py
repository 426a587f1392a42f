"""ProxyHeadersMiddleware: the client address, scheme, host and server port
from the headers that trusted proxies send.

Only a trusted peer's headers are read. The hops they list are walked from the
right (the nearest proxy) to the left; the first hop that is not itself a
trusted proxy is the client. When every hop is trusted, the leftmost is.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ketch.proxy._headers import Hop, forwarded_hops, x_forwarded_hops
from ketch.proxy._trust import TrustedHosts, parse_node

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

X_FORWARDED = "x-forwarded"
FORWARDED = "forwarded"
_X_FORWARDED_NAMES = {
    b"x-forwarded-for": "for",
    b"x-forwarded-proto": "proto",
    b"x-forwarded-host": "host",
    b"x-forwarded-port": "port",
}
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
    names. Otherwise the scope is changed in place, as Uvicorn does (servers
    build a new scope per request); the header list is replaced by a new one,
    not mutated, when the host changes.
    """

    __slots__ = ("_names", "app", "headers", "trusted_hosts")

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
        self._names: frozenset[bytes] = (
            frozenset(_X_FORWARDED_NAMES) if family == X_FORWARDED else frozenset({b"forwarded"})
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            names = self._names
            for name, _ in scope["headers"]:
                if name in names:
                    self._rewrite(scope)
                    break
        return await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> None:
        """Change the scope as the proxy headers say, if the peer is trusted."""
        if not self._peer_is_trusted(scope):
            return
        hop = self._client_hop(self._hops(scope["headers"]))
        if hop is None:
            return
        if hop.node is not None:
            address, port = parse_node(hop.node)
            if address is not None:
                scope["client"] = (str(address), port)
        if hop.proto is not None:
            schemes = _SCHEMES.get(hop.proto.strip().lower())
            if schemes is not None:
                scope["scheme"] = schemes[scope["type"] == "websocket"]
        if hop.host is not None and _HOST.match(hop.host):
            scope["headers"] = _with_host(scope["headers"], hop.host.encode("ascii"))
        server = scope.get("server")
        if hop.port is not None and server and server[1] is not None:
            server_port = _port(hop.port)
            if server_port is not None:
                scope["server"] = (server[0], server_port)
        if hop.by is not None:
            by_address, by_port = parse_node(hop.by)
            if by_address is not None and by_port:
                scope["server"] = (str(by_address), by_port)

    def _peer_is_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if client:
            return client[0] in self.trusted_hosts
        server = scope.get("server")
        if server and server[1] is None:  # a UNIX socket: (path, None)
            return self.trusted_hosts.trusts_unix_socket(str(server[0]))
        return self.trusted_hosts.always

    def _hops(self, raw_headers: Iterable[tuple[bytes, bytes]]) -> list[Hop]:
        if self.headers == FORWARDED:
            values = [v.decode("latin-1") for name, v in raw_headers if name == b"forwarded"]
            return forwarded_hops(",".join(values))
        found: dict[str, list[str]] = {}
        for name, value in raw_headers:
            key = _X_FORWARDED_NAMES.get(name)
            if key is not None:
                found.setdefault(key, []).append(value.decode("latin-1"))
        joined = {key: ",".join(values) for key, values in found.items()}
        return x_forwarded_hops(
            joined.get("for"), joined.get("proto"), joined.get("host"), joined.get("port")
        )

    def _client_hop(self, hops: list[Hop]) -> Hop | None:
        """The first hop from the right that is not a trusted proxy; the
        leftmost when all are. A hop with no node is never passed."""
        trusted = self.trusted_hosts
        for hop in reversed(hops):
            if hop.node is None or hop.node not in trusted:
                return hop
        return hops[0] if hops else None


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
