from __future__ import annotations

import httpx
from support import serve
from support.apps import hello


def test_serves_hello(http_impl: str) -> None:
    with serve(hello, http=http_impl) as running:
        response = httpx.get(running.url)
    assert response.status_code == 200
    assert response.text == "Hello, world!"
