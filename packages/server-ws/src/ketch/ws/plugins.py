"""The plugin objects ketch-ws registers in the `ketch.ws` entry-point group.
Importing this module imports neither websockets nor wsproto."""

from __future__ import annotations

from ketch.core.api import LazyPlugin

WEBSOCKETS = LazyPlugin(
    name="websockets",
    priority=20,
    requirement="ketch-ws[websockets]",
    implementation="ketch.ws.websockets_impl",
    needs=("websockets",),
)
# Uvicorn's name for the same implementation, so that a Uvicorn command line
# works unchanged; `auto` prefers `websockets`.
WEBSOCKETS_SANSIO = LazyPlugin(
    name="websockets-sansio",
    priority=15,
    requirement="ketch-ws[websockets]",
    implementation="ketch.ws.websockets_impl",
    needs=("websockets",),
)
WSPROTO = LazyPlugin(
    name="wsproto",
    priority=10,
    requirement="ketch-ws[wsproto]",
    implementation="ketch.ws.wsproto_impl",
    needs=("wsproto",),
)
