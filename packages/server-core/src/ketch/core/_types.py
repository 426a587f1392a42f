"""ASGI types shared by every ketch package (ASGI 3.0, HTTP 2.5, WebSocket 2.5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal, TypedDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

ASGIReceiveCallable = Callable[[], Awaitable[Message]]
ASGISendCallable = Callable[[Message], Awaitable[None]]
ASGI3Application = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]
ASGI2Instance = Callable[[ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]
ASGI2Application = Callable[[Scope], ASGI2Instance]
ASGIApplication = ASGI3Application | ASGI2Application

# PEP 3333
Environ = MutableMapping[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApplication = Callable[[Environ, StartResponse], Iterable[bytes]]

Headers = list[tuple[bytes, bytes]]
Address = tuple[str, int]


class ASGIVersions(TypedDict):
    version: str
    spec_version: str


class _ScopeExtensions(TypedDict, total=False):
    extensions: dict[str, dict[str, Any]]


class HTTPScope(_ScopeExtensions):
    type: Literal["http"]
    asgi: ASGIVersions
    http_version: str
    server: tuple[str, int | None] | None
    client: tuple[str, int] | None
    scheme: str
    method: str
    root_path: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    state: dict[str, Any]


class WebSocketScope(_ScopeExtensions):
    type: Literal["websocket"]
    asgi: ASGIVersions
    http_version: str
    server: tuple[str, int | None] | None
    client: tuple[str, int] | None
    scheme: str
    root_path: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    subprotocols: list[str]
    state: dict[str, Any]


class LifespanScope(TypedDict):
    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: dict[str, Any]
