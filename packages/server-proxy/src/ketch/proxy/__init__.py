# TEMPORARY pass-through until the ketch-proxy branch lands (issue 5).
from __future__ import annotations

from typing import Any


class ProxyHeadersMiddleware:
    def __init__(
        self, app: Any, trusted_hosts: Any = "127.0.0.1", headers: str = "x-forwarded"
    ) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
