from __future__ import annotations

import pytest
from support.implementations import WS_IMPLEMENTATIONS


@pytest.fixture(params=WS_IMPLEMENTATIONS)
def ws_impl(request: pytest.FixtureRequest) -> str:
    """Each WebSocket behaviour test runs once per library (and per HTTP parser)."""
    return str(request.param)
