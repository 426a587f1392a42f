"""Building ASGI scopes from a parsed request head, shared by every HTTP and
WebSocket protocol so that they all present a request the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

from ketch.core._types import ASGIVersions, Headers, HTTPScope, WebSocketScope

if TYPE_CHECKING:
    from ketch.core.context import ServerContext
    from ketch.core.transport import ConnectionInfo

ASGI_VERSIONS: ASGIVersions = {"version": "3.0", "spec_version": "2.5"}

# The ASGI extensions a protocol may announce (docs/asgi-extensions.md)
PATHSEND: Final = "http.response.pathsend"
TRAILERS: Final = "http.response.trailers"
EARLY_HINT: Final = "http.response.early_hint"
TLS: Final = "tls"

Extensions = dict[str, dict[str, Any]]


def scope_extensions(info: ConnectionInfo, names: Iterable[str]) -> Extensions:
    """The `extensions` a protocol announces in the scopes of one connection:
    the extensions it implements (`names`), and `tls` on a TLS connection.

    Built once per connection and given to `http_scope()`, which puts a copy in
    each scope: an app (or a middleware) that adds or removes an extension in
    its scope changes nothing for the connection's next request. The values
    are shared by the connection's requests: they describe the connection."""
    extensions: Extensions = {name: {} for name in names}
    if info.tls is not None:
        extensions[TLS] = info.tls
    return extensions


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw_path, query_string) of a request target in origin or absolute form."""
    if target[:1] != b"/" and target != b"*":
        # absolute form (RFC 9112 3.2.2): http://host/path?query
        scheme_end = target.find(b"://")
        if scheme_end != -1:
            path_start = target.find(b"/", scheme_end + 3)
            query_start = target.find(b"?", scheme_end + 3)
            if path_start == -1 or (query_start != -1 and query_start < path_start):
                target = b"/" + (target[query_start:] if query_start != -1 else b"")
            else:
                target = target[path_start:]
    raw_path, _, query = target.partition(b"?")
    return raw_path, query


def decode_path(raw_path: bytes) -> str:
    """The ASGI `path`: percent-decoded UTF-8."""
    # bytes.find, not `in`: `in` first tries the operand as an integer, and that
    # failed conversion (an exception made and dropped) costs more than the search
    if raw_path.find(b"%") == -1:
        return raw_path.decode("ascii", "surrogateescape")
    return unquote(raw_path.decode("ascii", "surrogateescape"))


def http_scope(
    context: ServerContext,
    info: ConnectionInfo,
    method: str,
    http_version: str,
    target: bytes,
    headers: Headers,
    extensions: Extensions | None = None,
) -> HTTPScope:
    """The scope of an HTTP request for the raw request `target`; `headers`
    with lowercase names; `extensions` from `scope_extensions()` (copied),
    else only `tls` on a TLS connection."""
    if target[:1] == b"/":  # origin form, the usual one: split here (one call less)
        raw_path, _, query = target.partition(b"?")
    else:
        raw_path, query = split_target(target)
    if raw_path.find(b"%") == -1:  # (decode_path(), inlined)
        path = raw_path.decode("ascii", "surrogateescape")
    else:
        path = unquote(raw_path.decode("ascii", "surrogateescape"))
    root_path = context.settings.root_path
    server, client, scheme = info.server, info.client, info.scheme
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("ascii") + raw_path
    return {
        "type": "http",
        "asgi": ASGI_VERSIONS,
        "http_version": http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": method,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "state": context.lifespan_state.copy(),
        # (a new dict for each request, the values shared: {**d} is the cheapest copy)
        "extensions": {**extensions} if extensions is not None else scope_extensions(info, ()),
    }


def websocket_scope(
    context: ServerContext,
    info: ConnectionInfo,
    http_version: str,
    target: bytes,
    headers: Headers,
) -> WebSocketScope:
    """The scope of a WebSocket handshake request for the raw request `target`;
    `headers` with lowercase names."""
    raw_path, query_string = split_target(target)
    subprotocols: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            subprotocols.extend(
                token.strip() for token in value.decode("latin-1").split(",") if token.strip()
            )
    root_path = context.settings.root_path
    return {
        "type": "websocket",
        "asgi": ASGI_VERSIONS,
        "http_version": http_version,
        "server": info.server,
        "client": info.client,
        "scheme": "wss" if info.scheme == "https" else "ws",
        "root_path": root_path,
        "path": root_path + decode_path(raw_path),
        "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
        "query_string": query_string,
        "headers": headers,
        "subprotocols": subprotocols,
        "state": context.lifespan_state.copy(),
        "extensions": scope_extensions(info, ("websocket.http.response",)),
    }


def client_text(client: tuple[str, int] | None) -> str:
    """`host:port` for logs; empty on UNIX sockets."""
    if not client:
        return ""
    return "%s:%d" % client


def path_with_query(scope: HTTPScope | WebSocketScope) -> str:
    path = quote(scope["path"])
    query = scope["query_string"]
    return f"{path}?{query.decode('ascii', 'replace')}" if query else path
