"""Gunicorn worker classes: `gunicorn -k ketch.supervisor.gunicorn.KetchWorker`.

Gunicorn's arbiter manages the processes (HUP, TTIN/TTOU, graceful TERM, QUIT);
each worker runs a ketch Server on gunicorn's sockets. Gunicorn's settings map
to ketch's options as follows:

| gunicorn | ketch |
|---|---|
| bind (the listening sockets) | the sockets served |
| keepalive | timeout_keep_alive |
| timeout | heartbeat from the event loop (every timeout/2 seconds) |
| graceful_timeout | timeout_graceful_shutdown |
| max_requests + max_requests_jitter | limit_max_requests |
| worker_connections | limit_concurrency |
| forwarded_allow_ips | forwarded_allow_ips |
| limit_request_fields | limit_request_headers |
| limit_request_line, limit_request_field_size | limit_request_header_size |
| keyfile, certfile, ca_certs, cert_reqs, ciphers, ssl_version | the ssl_* options |
| backlog | backlog |
| SCRIPT_NAME (environment) | root_path |
| http_protocols with h2 (gunicorn 25+) | http2 (TLS by ALPN, cleartext by the preface) |
| http2_max_concurrent_streams | http2_max_concurrent_streams |
| accesslog (or a logging config), access_log_format | access_log, access_log_format |

ketch's loggers write through gunicorn's handlers, so a gunicorn logging
configuration (`--log-config-json`) with `ketch.core.logging.JSONFormatter`
gives JSON lines with the access fields.

Subclass and set `CONFIG_KWARGS` to choose anything else (`KetchH11Worker`
uses the pure-Python h11 parser and the asyncio loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any, ClassVar

try:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the gunicorn worker classes need gunicorn: pip install 'ketch-supervisor[gunicorn]'"
    ) from None

from ketch.core import Config, Server

NO_LIMIT_HEADERS = 32768
NO_LIMIT_HEAD = 1024 * 1024


def config_from_gunicorn(cfg: Any, max_requests: int, timeout: int) -> dict[str, Any]:
    """ketch options from a gunicorn configuration."""
    fields = cfg.limit_request_fields or NO_LIMIT_HEADERS
    if cfg.limit_request_line and cfg.limit_request_fields and cfg.limit_request_field_size:
        head = cfg.limit_request_line + cfg.limit_request_fields * cfg.limit_request_field_size
    else:
        head = NO_LIMIT_HEAD
    options: dict[str, Any] = {
        "log_config": None,
        "timeout_keep_alive": cfg.keepalive,
        "timeout_notify": max(1, timeout // 2),
        "timeout_graceful_shutdown": cfg.graceful_timeout,
        "limit_max_requests": max_requests if max_requests < sys.maxsize else None,
        "limit_concurrency": cfg.worker_connections,
        "forwarded_allow_ips": cfg.forwarded_allow_ips,
        "limit_request_headers": max(1, fields),
        "limit_request_header_size": max(256, head),
        "backlog": cfg.backlog,
        "root_path": os.environ.get("SCRIPT_NAME", ""),
    }
    if "h2" in (getattr(cfg, "http_protocols", None) or ()):
        options["http2"] = True
        options["http2_max_concurrent_streams"] = cfg.http2_max_concurrent_streams
    if cfg.is_ssl:
        ssl_options = cfg.ssl_options
        for ours, theirs in (
            ("ssl_keyfile", "keyfile"),
            ("ssl_certfile", "certfile"),
            ("ssl_keyfile_password", "password"),
            ("ssl_version", "ssl_version"),
            ("ssl_cert_reqs", "cert_reqs"),
            ("ssl_ca_certs", "ca_certs"),
            ("ssl_ciphers", "ciphers"),
        ):
            if ssl_options.get(theirs) is not None:
                options[ours] = ssl_options[theirs]
    return options


class KetchWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker serving ASGI (or WSGI) apps with ketch."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ketch's loggers write through gunicorn's handlers and levels
        loggers = (("ketch.error", self.log.error_log), ("ketch.access", self.log.access_log))
        for name, source in loggers:
            target = logging.getLogger(name)
            target.handlers = source.handlers
            target.setLevel(source.level)
            target.propagate = False
        options = config_from_gunicorn(self.cfg, self.max_requests, self.timeout)
        # gunicorn's access log: on with --access-logfile (or a logging config),
        # in its --access-logformat (gunicorn's atoms, its default included)
        options["access_log"] = bool(
            getattr(self.log, "access_log_enabled", False) or self.cfg.accesslog
        )
        options["access_log_format"] = self.cfg.access_log_format
        options.update(self.CONFIG_KWARGS)
        # the heartbeat: called from the event loop, so a blocked loop misses it
        self.config = Config(app="", callback_notify=self.callback_notify, **options)
        self.server: Server | None = None

    def init_signals(self) -> None:
        # The ketch server takes SIGINT/SIGTERM (graceful); QUIT is gunicorn's
        # quick stop; USR1 reopens log files.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    def run(self) -> None:
        self.config.app = self.wsgi
        server = self.server = Server(self.config)

        def prepare(loop: asyncio.AbstractEventLoop) -> None:
            loop.add_signal_handler(signal.SIGQUIT, self._quick_stop)

        # Server.run: its own loop, and at the end the app's tasks cancelled and
        # async generators closed, as for every ketch server
        server.run([getattr(sock, "sock", sock) for sock in self.sockets], prepare=prepare)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _quick_stop(self) -> None:
        if self.server is not None:
            self.server.force_exit = True
            self.server.request_exit()

    async def callback_notify(self) -> None:
        self.notify()

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        self.log.reopen_files()


class KetchH11Worker(KetchWorker):
    """The pure-Python variant: h11 and the asyncio loop."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "asyncio", "http": "h11"}
