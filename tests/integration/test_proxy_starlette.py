"""The middleware added to a Starlette application the way docs/proxy-middleware.md says."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support import serve

from ketch.proxy import ProxyHeadersMiddleware


async def where(request: Request) -> JSONResponse:
    client = request.client
    return JSONResponse({"client": client.host if client else None, "url": str(request.url)})


def test_starlette_add_middleware() -> None:
    app = Starlette(routes=[Route("/where", where)])
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=["127.0.0.1", "10.0.0.0/8"])
    headers = {
        "X-Forwarded-For": "203.0.113.7, 10.0.0.2",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "example.com",
    }
    # the server's own proxy handling is off: only the application's middleware reads them
    with serve(app, proxy_headers=False) as running:
        data = httpx.get(f"{running.url}/where?q=1", headers=headers).json()
        plain = httpx.get(f"{running.url}/where").json()
    assert data == {"client": "203.0.113.7", "url": "https://example.com/where?q=1"}
    assert plain == {"client": "127.0.0.1", "url": f"{running.url}/where"}
