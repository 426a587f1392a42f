"""What all connections of one server share, handed to every protocol plugin."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ketch.core._types import ASGI3Application
from ketch.core.access import AccessFormat
from ketch.core.exchange import Observer
from ketch.core.headers import DefaultHeaders
from ketch.core.metrics import Metrics
from ketch.core.settings import ServerSettings
from ketch.core.transport import ConnectionInfo, connection_info

if TYPE_CHECKING:
    from ketch.core.plugins import WebSocketUpgrade
    from ketch.core.proxy_protocol import Addresses

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
        metrics: Metrics | None = None,
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
        # this process's counters when metrics are on (--metrics-port), else None
        self.metrics = metrics
        access = logging.getLogger("ketch.access")
        access_logger = (
            access if settings.access_log and access.isEnabledFor(logging.INFO) else None
        )
        # where protocols report their exchanges (ketch.core.exchange); None when
        # the access log and the metrics are both off, so that they build nothing
        self.observer: Observer | None = None
        if access_logger is not None or metrics is not None:
            fmt = settings.access_log_format
            self.observer = Observer(
                access_logger, AccessFormat(fmt) if fmt is not None else None, metrics
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
        # --proxy-protocol: the addresses each connection's PROXY header gave,
        # by socket descriptor (ketch.core.proxy_protocol); None without it
        self.proxied: dict[int, Addresses] | None = None

    def connection_info(self, transport: asyncio.BaseTransport) -> ConnectionInfo:
        """Who is connected over `transport`, for the scope and the logs: the
        one place a connection's client and server addresses come from."""
        info = connection_info(transport)
        proxied = self.proxied
        if proxied is not None:  # --proxy-protocol: what the PROXY header said
            sock = transport.get_extra_info("socket")
            addresses = None if sock is None else proxied.get(sock.fileno())
            if addresses is not None:
                return info._replace(client=addresses.client, server=addresses.server)
        return info

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


def _nothing() -> None:
    pass
