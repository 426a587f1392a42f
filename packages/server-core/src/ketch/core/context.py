"""What all connections of one server share, handed to every protocol plugin."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ketch.core._types import ASGI3Application
from ketch.core.headers import DefaultHeaders
from ketch.core.scope import client_text
from ketch.core.settings import ServerSettings
from ketch.core.transport import ConnectionInfo, connection_info

if TYPE_CHECKING:
    from ketch.core.plugins import WebSocketUpgrade

# How often the server refreshes the Date header, its coarse clock, and checks
# every connection's deadline (keep-alive, request head and body timeouts).
TICK_SECONDS = 0.5


class ClientDisconnected(OSError):
    """Raised by `send()` once the client is gone (ASGI spec 2.4: a subclass of
    OSError), so that a streaming app stops instead of producing for nobody."""


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

    Connections register in `connections` while they are open, and each
    request's Task is in `tasks` while it runs (`create_task()` adds it; the
    protocol discards it when the app returns): the server sweeps the first
    for deadlines and waits for both when it drains.
    """

    def __init__(
        self,
        settings: ServerSettings,
        app: ASGI3Application,
        loop: asyncio.AbstractEventLoop,
        default_headers: DefaultHeaders,
        lifespan_state: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.loop = loop
        self.default_headers = default_headers
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.lifespan_state: dict[str, Any] = lifespan_state if lifespan_state is not None else {}
        self.ws_upgrade: WebSocketUpgrade | None = None
        self.error_logger = logging.getLogger("ketch.error")
        access = logging.getLogger("ketch.access")
        # None when access logging is off, so that protocols skip all its work
        self.access_logger: logging.Logger | None = (
            access if settings.access_log and access.isEnabledFor(logging.INFO) else None
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

    def connection_info(self, transport: asyncio.BaseTransport) -> ConnectionInfo:
        """Who is connected over `transport`, for the scope and the logs."""
        return connection_info(transport)

    def over_concurrency_limit(self) -> bool:
        """True when a new request must be answered 503 (--limit-concurrency)."""
        limit = self.settings.limit_concurrency
        return limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)

    def create_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start the app's Task for one request or WebSocket and add it to `tasks`;
        the caller discards it from `tasks` when the app returns.

        Counts the request for --limit-max-requests. The Task starts once the
        caller's callback returns (not eagerly: measured under load, Python
        3.12's eager start costs more, 15.2 against 14.6 µs per hello request,
        as a loop turn that parses every ready connection and then runs their
        apps keeps the caches warmer than alternating the two)."""
        self.total_requests += 1
        if self.total_requests == self.max_requests:
            self.on_request_limit()
        loop = self.loop
        if self.settings.reset_contextvars:  # the Task copies an empty context
            task = contextvars.Context().run(loop.create_task, coro)
        elif loop.get_task_factory() is None:
            # named here, as create_task() names it only after the Task made
            # itself a "Task-<n>" name (2 % of a small request's cost)
            task = asyncio.Task(coro, loop=loop, name="ketch-request")
        else:
            task = loop.create_task(coro)  # the app's own task factory
        self.tasks.add(task)
        return task

    def log_access(
        self,
        client: tuple[str, int] | None,
        method: str,
        path: str,
        http_version: str,
        status: int,
    ) -> None:
        """One access-log line; nothing at all when access logging is off."""
        logger = self.access_logger
        if logger is not None:
            logger.info(
                '%s - "%s %s HTTP/%s" %d', client_text(client), method, path, http_version, status
            )


def _nothing() -> None:
    pass
