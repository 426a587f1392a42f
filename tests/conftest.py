from __future__ import annotations

import pytest

try:
    from support.implementations import HTTP_IMPLEMENTATIONS
except ModuleNotFoundError:  # the proxy-alone environment has no ketch-core
    HTTP_IMPLEMENTATIONS = []


@pytest.fixture(params=HTTP_IMPLEMENTATIONS)
def http_impl(request: pytest.FixtureRequest) -> str:
    """Each HTTP behaviour test runs once per parser."""
    return str(request.param)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)
