"""Calling the middleware with a scope and seeing what the app received.

The middleware is the unit under test here, so it is called directly; nothing
but ketch.proxy is imported, and these tests also run where no other ketch
package is installed (`hatch run proxy-alone:unit`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ketch.proxy import ProxyHeadersMiddleware

Through = Callable[..., dict[str, Any]]


def through_middleware(
    headers: list[tuple[str, str]],
    *,
    trusted: Any = "127.0.0.1",
    family: str = "x-forwarded",
    client: tuple[str, int] | None = ("127.0.0.1", 5000),
    server: tuple[str, int | None] | None = ("127.0.0.1", 8000),
    kind: str = "http",
) -> dict[str, Any]:
    """Send one scope through the middleware; return the scope the app saw."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {
        "type": kind,
        "scheme": "http" if kind == "http" else "ws",
        "client": client,
        "server": server,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }
    middleware = ProxyHeadersMiddleware(app, trusted_hosts=trusted, headers=family)
    asyncio.run(middleware(scope, receive, send))
    return seen


async def receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def send(message: Any) -> None:
    pass


@pytest.fixture(scope="session")
def through() -> Through:
    """`through(headers, trusted=..., family=..., client=..., server=..., kind=...)`."""
    return through_middleware
