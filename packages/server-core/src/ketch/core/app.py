"""Loading the application and presenting it as one ASGI 3 callable.

`load_app()` imports the app (or calls its factory), tells its interface, and
wraps it: WSGI and ASGI 2 adapters, the proxy-headers middleware, and the
message logger at `--log-level trace`.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Awaitable
from typing import Any

from ketch.core._types import (
    ASGI2Application,
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    Message,
    Scope,
)
from ketch.core.config import Config
from ketch.core.errors import AppLoadError
from ketch.core.importer import import_from_string
from ketch.core.logging import TRACE_LOG_LEVEL

logger = logging.getLogger("ketch.error")


def add_app_dir(app_dir: str | None) -> None:
    """Put `--app-dir` (the working directory by default) first on sys.path."""
    path = os.path.abspath(app_dir) if app_dir else os.getcwd()
    if path not in sys.path:
        sys.path.insert(0, path)


def load_app(config: Config) -> tuple[ASGI3Application, str]:
    """The application as an ASGI 3 callable, and the interface it was found to have."""
    add_app_dir(config.app_dir)
    app = import_from_string(config.app)

    if config.factory:
        if not callable(app):
            raise AppLoadError(f"--factory: {config.app!r} is not callable, so it is no factory")
        try:
            app = app()
        except TypeError as exc:
            raise AppLoadError(f"--factory: calling {config.app!r} failed: {exc}") from exc
    elif _looks_like_factory(app):
        logger.warning(
            "%r looks like an application factory; add --factory if it is one", config.app
        )

    if not callable(app):
        raise AppLoadError(f"{config.app!r} is not an ASGI or WSGI application (not callable)")

    interface = config.interface
    if interface == "auto":
        interface = detect_interface(app)

    asgi: ASGI3Application
    if interface == "wsgi":
        from ketch.core.wsgi import WSGIMiddleware

        asgi = WSGIMiddleware(app, workers=config.wsgi_threads)
    elif interface == "asgi2":
        asgi = ASGI2Middleware(app)
    else:
        asgi = app

    if config.log_level_number is not None and config.log_level_number <= TRACE_LOG_LEVEL:
        asgi = MessageLoggerMiddleware(asgi)
    if config.proxy_headers:
        asgi = with_proxy_headers(asgi, config)
    return asgi, interface


def with_proxy_headers(app: ASGI3Application, config: Config) -> ASGI3Application:
    """The app behind ketch-proxy's middleware. Its `prepare()` is called
    directly rather than awaiting the middleware: one coroutine less per request."""
    from ketch.proxy import ProxyHeadersMiddleware

    prepare = ProxyHeadersMiddleware(
        app, trusted_hosts=config.trusted_proxies, headers=config.forwarded_headers
    ).prepare

    def proxied(
        scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> Awaitable[None]:
        prepare(scope)
        return app(scope, receive, send)

    return proxied


def detect_interface(app: Any) -> str:
    """ASGI 3 or ASGI 2, for classes, functions and instances.

    - a class: ASGI 2 when instances are called with the scope alone
      (`__init__(self, scope)` and an async `__call__(receive, send)`), ASGI 3
      when instances are awaitable (`__init__(self, scope, receive, send)`);
    - a coroutine function (or anything whose `__call__` is one): ASGI 3;
    - a plain function or callable: WSGI when its arguments are named
      `(environ, start_response)` as PEP 3333 writes them (Flask, Django),
      ASGI 2 when it takes exactly one argument, else ASGI 3.
    """
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    call = app if inspect.isroutine(app) or _is_partial(app) else type(app).__call__
    if inspect.iscoroutinefunction(call):
        return "asgi3"
    try:
        parameters = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return "asgi3"
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if [p.name for p in positional] == ["environ", "start_response"]:
        return "wsgi"
    return "asgi2" if len(positional) == 1 else "asgi3"


def _is_partial(app: Any) -> bool:
    import functools

    return isinstance(app, functools.partial)


def _looks_like_factory(app: Any) -> bool:
    """A plain function taking no arguments is a factory passed without --factory."""
    if not inspect.isfunction(app) or inspect.iscoroutinefunction(app):
        return False
    try:
        return not inspect.signature(app).parameters
    except (TypeError, ValueError):
        return False


class ASGI2Middleware:
    """Runs an ASGI 2 application (`app(scope)` then `instance(receive, send)`)."""

    def __init__(self, app: ASGI2Application) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        instance = self.app(scope)
        await instance(receive, send)


class MessageLoggerMiddleware:
    """At `--log-level trace`, logs every ASGI message in and out (bodies summarised)."""

    def __init__(self, app: ASGI3Application) -> None:
        self.app = app
        self.logger = logging.getLogger("ketch.asgi")
        self.counter = 0

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self.counter += 1
        name = f"ASGI [{self.counter}]"
        log = self.logger.log

        async def logged_receive() -> Message:
            message = await receive()
            log(TRACE_LOG_LEVEL, "%s Receive %s", name, _summary(message))
            return message

        async def logged_send(message: Message) -> None:
            log(TRACE_LOG_LEVEL, "%s Send %s", name, _summary(message))
            await send(message)

        log(TRACE_LOG_LEVEL, "%s Started scope=%s", name, _summary(scope))
        try:
            await self.app(scope, logged_receive, logged_send)
        except BaseException:
            log(TRACE_LOG_LEVEL, "%s Raised exception", name)
            raise
        log(TRACE_LOG_LEVEL, "%s Completed", name)


def _summary(message: Message | Scope) -> dict[str, Any]:
    summary = dict(message)
    for key in ("body", "bytes", "text"):
        if summary.get(key) is not None:
            summary[key] = f"<{len(summary[key])} {'chars' if key == 'text' else 'bytes'}>"
    summary.pop("state", None)
    return summary
