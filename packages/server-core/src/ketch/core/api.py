"""The public plugin API of ketch-core: everything a protocol plugin may use.

A plugin (ketch's own HTTP/1.1, WebSocket and HTTP/2 protocols, or a third
party's) imports from this module and nothing else of ketch; the other modules
of `ketch.core` are its implementation and may change. docs/plugins.md
describes each name; an import-linter contract keeps ketch's plugins to it.

- Plugin interfaces: `Plugin`, `HTTPPlugin`, `WebSocketPlugin` (with
  `WebSocketUpgrade`), `LoopPlugin`, `SupervisorPlugin`, and `LazyPlugin` to
  declare one whose libraries are imported only when it is used.
- `ClientDisconnected`: what `send()` raises once the client is gone.
- Per server: `ServerContext` (the app, the loop, the settings, the registry
  of connections and tasks, limits, the observer and the metrics) and its
  frozen `ServerSettings` / `WebSocketSettings` / `HTTP2Settings`; every
  connection satisfies `Connection` (a deadline, shutdown, abort).
- Observing: `Observer` (`context.observer`, None when the access log and the
  metrics are off) begins an `Exchange` per request, which the protocol fills
  in and ends once; `Metrics` (`context.metrics`) counts what only a protocol
  sees (refusals, WebSockets and their messages).
- Per connection: `ConnectionInfo` (`context.connection_info(transport)`,
  with the `tls` extension of a TLS connection), `ReadFlow` and `WriteFlow`
  (flow control both ways), `wake()`.
- Scopes: `http_scope()`, `websocket_scope()`, `split_target()`,
  `path_with_query()`, `client_text()`; the ASGI extensions a protocol
  announces (`scope_extensions()`, `PATHSEND`, `TRAILERS`, `EARLY_HINT`, `TLS`).
- HTTP/1 on the wire: `response_head()` (checked head and framing),
  `chunk()`, `last_chunk()` (with trailers), `accepts_trailers()`,
  `early_hints()`, `error_response()`, `status_line()`, `header_name()`,
  `checked_headers()`, `app_content_length()`, `half_close()`, with
  `Framing` and its members; the field grammar both HTTP/1 and HTTP/2
  check against (`TOKEN`, `CONTENT_LENGTH`).
- Files for `http.response.pathsend`: `open_path()`, `send_file()`.
- One request's ASGI `receive`/`send`, whatever the protocol: `ASGICycle`
  (the message rules, the extensions, the exchange; a protocol subclasses
  it with hooks that write), its connection's `CycleConnection`, and the
  response's progress `Response` with its members `START`, `STARTED`,
  `STREAMING`, `TRAILERS_DUE`, `COMPLETE`.
"""

from __future__ import annotations

from ketch.core._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    Headers,
    HTTPScope,
    Message,
    Scope,
    WebSocketScope,
)
from ketch.core.context import TICK_SECONDS, ClientDisconnected, Connection, ServerContext
from ketch.core.cycle import (
    COMPLETE,
    START,
    STARTED,
    STREAMING,
    TRAILERS_DUE,
    ASGICycle,
    CycleConnection,
    Response,
)
from ketch.core.exchange import Exchange, Observer
from ketch.core.files import open_path, send_file
from ketch.core.headers import DefaultHeaders
from ketch.core.http1 import (
    CHUNKED,
    CONTENT_LENGTH,
    CONTINUE,
    EARLY_HINTS,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    TOKEN,
    UNTIL_CLOSE,
    Framing,
    ResponseHead,
    accepts_trailers,
    app_content_length,
    check_values,
    checked_headers,
    chunk,
    early_hints,
    error_response,
    half_close,
    header_name,
    last_chunk,
    response_head,
    status_line,
)
from ketch.core.metrics import Metrics
from ketch.core.plugins import (
    HTTPPlugin,
    LazyPlugin,
    LoopPlugin,
    Plugin,
    SupervisorPlugin,
    WebSocketPlugin,
    WebSocketUpgrade,
)
from ketch.core.scope import (
    EARLY_HINT,
    PATHSEND,
    TLS,
    TRAILERS,
    Extensions,
    client_text,
    http_scope,
    path_with_query,
    scope_extensions,
    split_target,
    websocket_scope,
)
from ketch.core.settings import HTTP2Settings, ServerSettings, WebSocketSettings
from ketch.core.transport import ConnectionInfo, ReadFlow, WriteFlow, wake

__all__ = [
    "CHUNKED",
    "COMPLETE",
    "CONTENT_LENGTH",
    "CONTINUE",
    "EARLY_HINT",
    "EARLY_HINTS",
    "LAST_CHUNK",
    "LENGTH",
    "NO_BODY",
    "PATHSEND",
    "START",
    "STARTED",
    "STREAMING",
    "TICK_SECONDS",
    "TLS",
    "TOKEN",
    "TRAILERS",
    "TRAILERS_DUE",
    "UNTIL_CLOSE",
    "ASGI3Application",
    "ASGICycle",
    "ASGIReceiveCallable",
    "ASGISendCallable",
    "ClientDisconnected",
    "Connection",
    "ConnectionInfo",
    "CycleConnection",
    "DefaultHeaders",
    "Exchange",
    "Extensions",
    "Framing",
    "HTTP2Settings",
    "HTTPPlugin",
    "HTTPScope",
    "Headers",
    "LazyPlugin",
    "LoopPlugin",
    "Message",
    "Metrics",
    "Observer",
    "Plugin",
    "ReadFlow",
    "Response",
    "ResponseHead",
    "Scope",
    "ServerContext",
    "ServerSettings",
    "SupervisorPlugin",
    "WebSocketPlugin",
    "WebSocketScope",
    "WebSocketSettings",
    "WebSocketUpgrade",
    "WriteFlow",
    "accepts_trailers",
    "app_content_length",
    "check_values",
    "checked_headers",
    "chunk",
    "client_text",
    "early_hints",
    "error_response",
    "half_close",
    "header_name",
    "http_scope",
    "last_chunk",
    "open_path",
    "path_with_query",
    "response_head",
    "scope_extensions",
    "send_file",
    "split_target",
    "status_line",
    "wake",
    "websocket_scope",
]
