"""ProxyHeadersMiddleware: the client address, scheme and host from proxy headers.

Only a trusted peer's headers are read. The hops they list are walked from the
right (the nearest proxy) to the left; the first hop that is not itself a
trusted proxy is the client. When every hop is trusted, the leftmost is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ketch.proxy._headers import Hop, forwarded_hops, x_forwarded_hops
from ketch.proxy._trust import TrustedHosts, parse_address

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

X_FORWARDED = "x-forwarded"
FORWARDED = "forwarded"
_X_NAMES = {
    b"x-forwarded-for": "for",
    b"x-forwarded-proto": "proto",
    b"x-forwarded-host": "host",
    b"x-forwarded-port": "port",
}
_SCHEMES = {
    "http": ("http", "ws"),
    "ws": ("http", "ws"),
    "https": ("https", "wss"),
    "wss": ("https", "wss"),
}
_HOST_FORBIDDEN = frozenset(" \t\r\n\x00/\\?#@")


class ProxyHeadersMiddleware:
    """Set `client`, `scheme` and the `host` header from proxy headers sent by
    trusted peers, for `http` and `websocket` scopes.

    `trusted_hosts`: IP addresses, networks (CIDR), literals such as a UNIX
    socket path or `unix:`, or `*`; a list or a comma-separated string.
    `headers`: `"x-forwarded"` (X-Forwarded-For/-Proto/-Host/-Port) or
    `"forwarded"` (RFC 7239). Only that family is read.

    The scope is changed in place, as servers create a new one per request.
    """

    def __init__(
        self,
        app: ASGIApp,
        trusted_hosts: str | Iterable[str] = "127.0.0.1",
        headers: str = X_FORWARDED,
    ) -> None:
        if headers not in (X_FORWARDED, FORWARDED):
            raise ValueError(f"headers must be {X_FORWARDED!r} or {FORWARDED!r}, not {headers!r}")
        self.app = app
        self.trusted = TrustedHosts(trusted_hosts)
        self.family = headers
        self._names: frozenset[bytes] = (
            frozenset(_X_NAMES) if headers == X_FORWARDED else frozenset({b"forwarded"})
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A request without proxy headers costs one scan of the header names.
        if scope["type"] in ("http", "websocket"):
            names = self._names
            for name, _ in scope["headers"]:
                if name in names:
                    self.apply(scope)
                    break
        await self.app(scope, receive, send)

    def apply(self, scope: Scope) -> None:
        """Rewrite the scope from its proxy headers, if the peer is trusted."""
        if not self._peer_is_trusted(scope):
            return
        hops = self._hops(scope["headers"])
        if not hops:
            return
        hop = self._client_hop(hops)
        if hop.node is not None:
            address = parse_address(hop.node)
            if address is not None:
                scope["client"] = (str(address), _node_port(hop.node))
        if hop.proto is not None:
            schemes = _SCHEMES.get(hop.proto.strip().lower())
            if schemes is not None:
                scope["scheme"] = schemes[1] if scope["type"] == "websocket" else schemes[0]
        if hop.host is not None and _valid_host(hop.host):
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            headers.append((b"host", hop.host.encode("latin-1")))
            scope["headers"] = headers
        port = _port(hop.port) if hop.port is not None else None
        if port is not None and scope.get("server"):
            scope["server"] = (scope["server"][0], port)

    def _peer_is_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if client:
            return client[0] in self.trusted
        server = scope.get("server")
        if server and server[1] is None:  # a UNIX socket: (path, None)
            return self.trusted.trusts_unix_socket(str(server[0]))
        return self.trusted.always

    def _hops(self, raw_headers: Iterable[tuple[bytes, bytes]]) -> list[Hop]:
        if self.family == FORWARDED:
            values = [v.decode("latin-1") for k, v in raw_headers if k == b"forwarded"]
            return forwarded_hops(", ".join(values))
        found: dict[str, list[str]] = {}
        for name, value in raw_headers:
            key = _X_NAMES.get(name)
            if key is not None:
                found.setdefault(key, []).append(value.decode("latin-1"))

        def combined(key: str) -> str | None:
            values = found.get(key)
            return ", ".join(values) if values else None

        return x_forwarded_hops(
            combined("for"), combined("proto"), combined("host"), combined("port")
        )

    def _client_hop(self, hops: list[Hop]) -> Hop:
        """The first hop from the right that is not a trusted proxy; the
        leftmost when all are. An unreadable hop is never trusted."""
        for hop in reversed(hops):
            if hop.node is None or hop.node not in self.trusted:
                return hop
        return hops[0]


def _node_port(node: str) -> int:
    """The port of a node such as `[::1]:4711` or `1.2.3.4:80`; 0 without one."""
    node = node.strip()
    if node.startswith("["):
        _, _, rest = node.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        port = node.partition(":")[2]
    else:
        port = ""
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else 0


def _port(text: str) -> int | None:
    text = text.strip()
    if text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536:
        return int(text)
    return None


def _valid_host(host: str) -> bool:
    return 0 < len(host) <= 255 and not (_HOST_FORBIDDEN & set(host)) and host.isascii()
