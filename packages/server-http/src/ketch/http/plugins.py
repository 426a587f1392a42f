"""The plugin objects ketch-http registers in the `ketch.http` entry-point group.
Importing this module imports neither h11 nor httptools."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

from ketch.core import ServerContext


class H11:
    name = "h11"
    priority = 10
    requirement = "ketch-http"

    def available(self) -> bool:
        return importlib.util.find_spec("h11") is not None

    def protocol_factory(self, context: ServerContext) -> Callable[[], asyncio.Protocol]:
        from ketch.http.h11_impl import H11Protocol

        return lambda: H11Protocol(context)


class HttpTools:
    name = "httptools"
    priority = 20
    requirement = "ketch-http[httptools]"

    def available(self) -> bool:
        return importlib.util.find_spec("httptools") is not None

    def protocol_factory(self, context: ServerContext) -> Callable[[], asyncio.Protocol]:
        from ketch.http.httptools_impl import HttpToolsProtocol

        return lambda: HttpToolsProtocol(context)


H11_PLUGIN = H11()
HTTPTOOLS_PLUGIN = HttpTools()
