"""The plugin objects ketch-ws registers in the `ketch.ws` entry-point group.
Importing this module imports neither websockets nor wsproto."""

from __future__ import annotations

import importlib.util

from ketch.core import ServerContext
from ketch.core.plugins import WebSocketUpgrade


class WebSockets:
    name = "websockets"
    priority = 20
    requirement = "ketch-ws[websockets]"

    def available(self) -> bool:
        return importlib.util.find_spec("websockets") is not None

    def upgrade_handler(self, context: ServerContext) -> WebSocketUpgrade:
        from ketch.ws.websockets_impl import WebSocketsProtocol

        return WebSocketsProtocol.upgrade_handler(context)


class WebSocketsSansIO(WebSockets):
    """`--ws websockets-sansio`, Uvicorn's name for the same implementation, so that
    a Uvicorn command line works unchanged; `auto` prefers `websockets`."""

    name = "websockets-sansio"
    priority = 15


class WSProto:
    name = "wsproto"
    priority = 10
    requirement = "ketch-ws[wsproto]"

    def available(self) -> bool:
        return importlib.util.find_spec("wsproto") is not None

    def upgrade_handler(self, context: ServerContext) -> WebSocketUpgrade:
        from ketch.ws.wsproto_impl import WSProtoProtocol

        return WSProtoProtocol.upgrade_handler(context)


WEBSOCKETS = WebSockets()
WEBSOCKETS_SANSIO = WebSocketsSansIO()
WSPROTO = WSProto()
