"""What all connections of one server share, handed to every protocol plugin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ketch.core._types import ASGI3Application
from ketch.core.headers import DefaultHeaders
from ketch.core.scope import client_text

if TYPE_CHECKING:
    from ketch.core.config import Config
    from ketch.core.plugins import WebSocketUpgrade

# How often the server refreshes the Date header, its coarse clock, and checks
# every connection's deadline (keep-alive, request head and body timeouts).
TICK_SECONDS = 0.5


class Connection(Protocol):
    """What the server needs from each open connection (HTTP or WebSocket)."""

    # loop time at which on_deadline() is due; 0.0 when there is none
    deadline: float

    def on_deadline(self) -> None:
        """The deadline passed: close an idle connection, answer 408, and so on."""

    def shutdown(self) -> None:
        """The server is stopping: finish what is in flight, then close."""

    def abort(self) -> None:
        """Close now (graceful shutdown ran out of time, or a forced exit)."""


class ServerContext:
    """Shared state of one server: settings, the app, open connections, tasks.

    Connection protocols read settings from here (not from `Config` attribute
    chains on every request) and register themselves in `connections`.
    """

    def __init__(
        self,
        config: Config,
        app: ASGI3Application,
        loop: asyncio.AbstractEventLoop,
        lifespan_state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.lifespan_state: dict[str, Any] = lifespan_state if lifespan_state is not None else {}
        self.default_headers = DefaultHeaders(
            config.server_header, config.date_header, list(config.headers or [])
        )
        self.ws_upgrade: WebSocketUpgrade | None = None
        self.error_logger = logging.getLogger("ketch.error")
        access = logging.getLogger("ketch.access")
        # None when access logging is off, so that protocols skip all its work
        self.access_logger: logging.Logger | None = (
            access if config.access_log and access.isEnabledFor(logging.INFO) else None
        )
        # coarse clock (loop.time()), refreshed every tick: cheap deadlines
        self.now = loop.time()
        self.total_requests = 0
        self.max_requests: int | None = None  # set by the server (with jitter)
        self.shutting_down = False
        # True when the stop is a restart (SIGHUP, max requests, reload), so that
        # WebSockets close with 1012 (service restart) instead of 1001 (going away)
        self.restarting = False
        # set by the server: called once --limit-max-requests is reached
        self.on_request_limit: Callable[[], None] = _nothing

    def count_request(self) -> None:
        """Called once per request; asks the server to stop at --limit-max-requests."""
        self.total_requests += 1
        limit = self.max_requests
        if limit is not None and self.total_requests == limit:
            self.on_request_limit()

    def over_concurrency_limit(self) -> bool:
        limit = self.config.limit_concurrency
        return limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)

    def log_access(
        self,
        client: tuple[str, int] | None,
        method: str,
        path: str,
        http_version: str,
        status: int,
    ) -> None:
        logger = self.access_logger
        if logger is not None:
            logger.info(
                '%s - "%s %s HTTP/%s" %d', client_text(client), method, path, http_version, status
            )


def _nothing() -> None:
    pass
