"""One server process: load the app, run lifespan, listen, serve, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

from ketch.core.app import load_app
from ketch.core.config import Config
from ketch.core.context import TICK_SECONDS, Connection, ServerContext
from ketch.core.errors import STARTUP_FAILURE, ConfigError
from ketch.core.headers import DefaultHeaders
from ketch.core.lifespan import Lifespan
from ketch.core.logging import setup_logging
from ketch.core.malloc import tune_malloc
from ketch.core.metrics import Metrics, MetricsEndpoint, render
from ketch.core.negotiation import choosing_factory
from ketch.core.plugins import HTTP, HTTP2, LOOP, HTTPPlugin, WebSocketPlugin, select, select_ws
from ketch.core.settings import ServerSettings
from ketch.core.sockets import Listener, bind, create_ssl_context, describe
from ketch.core.systemd import Notifier
from ketch.core.tls import server_certificate

logger = logging.getLogger("ketch.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def resolve_http(choice: Any) -> HTTPPlugin:
    """`--http NAME`, or a plugin object passed to run()/Config directly."""
    if isinstance(choice, str):
        return select(HTTP, choice, f"--http {choice}")
    if not hasattr(choice, "protocol_factory"):
        raise ConfigError(f"http={choice!r} is neither a plugin name nor an HTTP plugin")
    plugin: HTTPPlugin = choice
    return plugin


def resolve_ws(choice: Any) -> WebSocketPlugin | None:
    if isinstance(choice, str):
        return select_ws(choice)
    if choice is None:
        return None
    if not hasattr(choice, "upgrade_handler"):
        raise ConfigError(f"ws={choice!r} is neither a plugin name nor a WebSocket plugin")
    plugin: WebSocketPlugin = choice
    return plugin


def new_event_loop(config: Config) -> asyncio.AbstractEventLoop:
    if callable(config.loop):
        loop: asyncio.AbstractEventLoop = config.loop()
        return loop
    return select(LOOP, config.loop, f"--loop {config.loop}").loop_factory()()


class Server:
    """Serves `config` in this process. `run()` owns an event loop;
    `serve()` runs inside an existing one (as under gunicorn or in tests)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.restarting = False
        self.exit_code = 0
        self.context: ServerContext | None = None
        self.listeners: list[Listener] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._lifespan: Lifespan | None = None
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        # systemd's Type=notify: only run() (the main process of a service) notifies
        self.notify = Notifier()
        self._next_notify = 0.0
        # called once the server listens and serves (supervisors report readiness)
        self.on_started: Callable[[], None] | None = None
        # called at --limit-max-requests instead of stopping, when a supervisor
        # first starts a replacement and then asks this server to drain
        self.on_request_limit: Callable[[], None] | None = None
        # Set by a supervisor that serves the pool's metrics: this server counts
        # into it (shared memory) and serves no endpoint of its own. Else, with
        # --metrics-port, the server keeps its own and serves them.
        self.metrics: Metrics | None = None
        self._metrics_endpoint: MetricsEndpoint | None = None

    # --- running ---------------------------------------------------------------------
    def run(
        self,
        sockets: list[socket.socket] | None = None,
        prepare: Callable[[asyncio.AbstractEventLoop], None] | None = None,
    ) -> None:
        """Serve until stopped, on a new event loop of the configured kind.

        `prepare(loop)` runs first, on that loop: supervisors use it to answer
        health checks from the loop that serves requests."""
        self.notify = Notifier.from_environment()
        loop = new_event_loop(self.config)
        try:
            asyncio.set_event_loop(loop)
            if prepare is not None:
                prepare(loop)
            loop.run_until_complete(self.serve(sockets))
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                self.notify.close()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self._capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None) -> None:
        config = self.config
        setup_logging(config)
        tune_malloc()
        loop = self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()

        # Everything that can be checked is checked before the app starts up.
        http_plugin = resolve_http(config.http)
        http2_plugin = select(HTTP2, "auto", "--http2") if config.http2 else None
        ws_plugin = resolve_ws(config.ws)
        ssl_context = create_ssl_context(config)
        app, _ = load_app(config)

        default_headers = DefaultHeaders(
            config.server_header, config.date_header, list(config.headers or [])
        )
        metrics = self.metrics
        serve_metrics = metrics is None and config.metrics_port is not None
        if serve_metrics:
            metrics = Metrics()
        context = self.context = ServerContext(
            ServerSettings.from_config(config),
            app,
            loop,
            default_headers,
            metrics=metrics,
            server_cert=server_certificate(config.ssl_certfile) if ssl_context else None,
        )
        context.restarting = self.restarting
        if config.limit_max_requests is not None:
            jitter = random.randint(0, config.limit_max_requests_jitter)
            context.max_requests = config.limit_max_requests + jitter
        context.on_request_limit = self.on_request_limit or self._max_requests_reached

        logger.info("Started server process [%d]", os.getpid())
        if config.lifespan != "off":
            self._lifespan = Lifespan(app, config.lifespan, context.lifespan_state)
            if not await self._lifespan.startup():
                if self._lifespan.failed:
                    logger.error("Application startup failed. Exiting.")
                    self.exit_code = STARTUP_FAILURE
                return
            if self.should_exit:  # stopped while it started: it is shut down as usual
                await self._lifespan.shutdown()
                return

        try:
            if ws_plugin is not None:
                context.ws_upgrade = ws_plugin.upgrade_handler(context)
            factory = http_plugin.protocol_factory(context)
            if http2_plugin is not None:
                # HTTP/1.1 or HTTP/2, chosen per connection (ALPN or the preface)
                factory = choosing_factory(context, factory, http2_plugin.protocol_factory(context))
            if sockets is None:
                self.listeners = bind(config)
            else:
                self.listeners = [Listener(sock) for sock in sockets]
            for listener in self.listeners:
                if config.proxy_protocol:  # accepts itself: a PROXY header comes first
                    from ketch.core.proxy_protocol import ProxyProtocolServer

                    server: asyncio.AbstractServer = ProxyProtocolServer(
                        context, factory, listener.sock, ssl_context, config.trusted_proxies
                    )
                else:
                    server = await loop.create_server(
                        factory, sock=listener.sock, ssl=ssl_context, backlog=config.backlog
                    )
                self._servers.append(server)
            if serve_metrics:
                assert config.metrics_port is not None
                self._metrics_endpoint = MetricsEndpoint(
                    config.metrics_host, config.metrics_port, self._collect_metrics
                )
        except BaseException:
            self._close_listeners()
            if self._lifespan is not None:
                await self._lifespan.shutdown()
            raise

        for listener in self.listeners:
            logger.info(
                "ketch running on %s (Press CTRL+C to quit)",
                describe(listener.sock, ssl_context is not None),
            )
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.start()
        self.started = True
        if self.on_started is not None:
            self.on_started()
        self.notify.ready()
        self._watchdog()
        self._next_notify = loop.time() + config.timeout_notify
        self._tick()
        try:
            await self._wakeup.wait()
        finally:
            await self._shutdown()

    def _collect_metrics(self) -> bytes:
        """The metrics endpoint's answer (from its thread): this server's metrics."""
        context = self.context
        assert context is not None and context.metrics is not None
        context.metrics.sample_connections(len(context.connections))
        return render(context.metrics.values)

    def _max_requests_reached(self) -> None:
        assert self.context is not None
        logger.warning(
            "Maximum request limit of %d exceeded. Terminating process.",
            self.context.max_requests,
        )
        self.context.restarting = True
        self.request_exit()

    def request_restart(self) -> None:
        """Stop gracefully because a replacement takes over (WebSockets then close
        with 1012, service restart); safe from any thread."""
        self.restarting = True
        if self.context is not None:
            self.context.restarting = True
        self.request_exit()

    def request_exit(self) -> None:
        """Ask the server to stop gracefully; safe from any thread."""
        self.should_exit = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _tick(self) -> None:
        """Twice a second: coarse clock, Date header, deadlines, exit requests.

        It reschedules itself whatever happens: every deadline of the process
        depends on it, so one connection's failure must not stop it."""
        context, loop = self.context, self._loop
        assert context is not None and loop is not None
        try:
            now = context.now = loop.time()
            context.default_headers.refresh()
            if context.metrics is not None:
                context.metrics.sample_connections(len(context.connections))
            due = [c for c in context.connections if 0.0 < c.deadline <= now]
            for connection in due:
                try:
                    connection.on_deadline()
                except Exception:
                    logger.exception("Error in a connection's deadline; closing the connection")
                    _abort_quietly(connection)
            if self.should_exit:
                self._wake()
            notify = self.config.callback_notify
            if notify is not None and now >= self._next_notify:
                self._next_notify = now + self.config.timeout_notify
                task = loop.create_task(self._notify(notify))
                context.tasks.add(task)
                task.add_done_callback(context.tasks.discard)
        except Exception:
            logger.exception("Error in the server's periodic sweep")
        finally:
            self._tick_handle = loop.call_later(TICK_SECONDS, self._tick)

    def _watchdog(self) -> None:
        """systemd's watchdog, fed from the event loop: a blocked loop starves it."""
        interval = self.notify.watchdog_interval
        if interval is not None and not self.should_exit and self._loop is not None:
            self.notify.watchdog()
            self._loop.call_later(interval, self._watchdog)

    @staticmethod
    async def _notify(notify: Callable[..., Awaitable[None]]) -> None:
        await notify()

    # --- stopping ----------------------------------------------------------------------
    async def _shutdown(self) -> None:
        context = self.context
        assert context is not None
        logger.info("Shutting down")
        self.notify.stopping()
        context.shutting_down = True
        for server in self._servers:
            server.close()
        self._close_listeners()
        for connection in list(context.connections):
            connection.shutdown()

        timeout = self.config.timeout_graceful_shutdown
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except asyncio.TimeoutError:
            logger.error(
                "Cancel %d running task(s), timeout graceful shutdown exceeded",
                len(context.tasks),
            )
        if context.connections or context.tasks:
            for connection in list(context.connections):
                connection.abort()
            for task in list(context.tasks):
                task.cancel()
            if context.tasks:
                await asyncio.wait(list(context.tasks), timeout=1.0)

        if self._lifespan is not None and not self.force_exit:
            await self._lifespan.shutdown()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()
        if context.metrics is not None:
            context.metrics.sample_connections(0)
        logger.info("Finished server process [%d]", os.getpid())

    async def _drain(self) -> None:
        context = self.context
        assert context is not None
        if context.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
        while context.connections and not self.force_exit:
            await asyncio.sleep(0.05)
        if context.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
        while context.tasks and not self.force_exit:
            await asyncio.sleep(0.05)

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()

    # --- signals ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM stop the server gracefully; a second SIGINT forces it.
        Only in the main thread, and the previous handlers are restored after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[signal.Signals, Any] = {}
        for sig in HANDLED_SIGNALS:
            previous[sig] = signal.signal(sig, self.handle_exit)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.request_exit()


def _abort_quietly(connection: Connection) -> None:
    try:
        connection.abort()
    except Exception:
        logger.exception("Error while aborting a connection")
    finally:
        # never due again: a connection that cannot even abort must not fail every tick
        connection.deadline = 0.0


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
