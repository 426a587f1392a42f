"""ketch-proxy: the proxy-headers ASGI middleware, usable with any ASGI server.

    from ketch.proxy import ProxyHeadersMiddleware

    app = ProxyHeadersMiddleware(app, trusted_hosts="10.0.0.0/8", headers="x-forwarded")

It depends on nothing but the standard library and imports nothing else from ketch.
"""

from __future__ import annotations

from ketch.proxy._headers import (
    MAX_HOPS,
    MAX_PARAMETERS,
    Hop,
    forwarded_hops,
    x_forwarded_hops,
)
from ketch.proxy._trust import TrustedHosts, parse_address, parse_node
from ketch.proxy.middleware import FORWARDED, X_FORWARDED, ProxyHeadersMiddleware

__all__ = [
    "FORWARDED",
    "MAX_HOPS",
    "MAX_PARAMETERS",
    "X_FORWARDED",
    "Hop",
    "ProxyHeadersMiddleware",
    "TrustedHosts",
    "forwarded_hops",
    "parse_address",
    "parse_node",
    "x_forwarded_hops",
]
