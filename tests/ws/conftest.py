from __future__ import annotations

import pytest


@pytest.fixture(params=["websockets", "wsproto"])
def ws_impl(request: pytest.FixtureRequest) -> str:
    """Each WebSocket behaviour runs once per library (and, with http_impl, per parser)."""
    return str(request.param)
