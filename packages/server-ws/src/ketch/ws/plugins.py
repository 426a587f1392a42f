"""The plugin objects ketch-ws registers in the `ketch.ws` entry-point group.
Importing this module imports neither websockets nor wsproto."""

from __future__ import annotations

import asyncio
import importlib.util

from ketch.core import ServerContext
from ketch.core._types import WebSocketScope
from ketch.core.plugins import WebSocketUpgrade


class Websockets:
    name = "websockets"
    priority = 20
    requirement = "ketch-ws[websockets]"

    def available(self) -> bool:
        return importlib.util.find_spec("websockets") is not None

    def upgrade_handler(self, context: ServerContext) -> WebSocketUpgrade:
        from ketch.ws.protocol import WebSocketProtocol
        from ketch.ws.websockets_impl import WebsocketsCodec

        def upgrade(
            transport: asyncio.Transport, scope: WebSocketScope, target: bytes, buffered: bytes
        ) -> None:
            protocol = WebSocketProtocol(context, WebsocketsCodec(context), scope)
            protocol.take_over(transport, target, buffered)

        return upgrade


class Wsproto:
    name = "wsproto"
    priority = 10
    requirement = "ketch-ws[wsproto]"

    def available(self) -> bool:
        return importlib.util.find_spec("wsproto") is not None

    def upgrade_handler(self, context: ServerContext) -> WebSocketUpgrade:
        from ketch.ws.protocol import WebSocketProtocol
        from ketch.ws.wsproto_impl import WsprotoCodec

        def upgrade(
            transport: asyncio.Transport, scope: WebSocketScope, target: bytes, buffered: bytes
        ) -> None:
            protocol = WebSocketProtocol(context, WsprotoCodec(context), scope)
            protocol.take_over(transport, target, buffered)

        return upgrade


WEBSOCKETS = Websockets()
WSPROTO = Wsproto()
