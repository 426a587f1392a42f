"""The first areas of `Config`'s settings: how the server is set up.

The configuration file, the sockets, the supervisors, the protocol
implementations, logging and metrics. `Config` (`ketch.core.config`) inherits
these fields and declares the rest after them (HTTP, TLS, the application), so
the command line and the settings page list every option in one order.
"""

from __future__ import annotations

import os
from configparser import RawConfigParser
from copy import deepcopy
from dataclasses import KW_ONLY, dataclass, field
from typing import IO, Any

from ketch.core.logging import LOG_LEVELS, LOGGING_CONFIG
from ketch.core.options import Option, option_field

_opt = option_field  # the short name the declarations below use

LIFESPAN_MODES: tuple[str, ...] = ("auto", "on", "off")
INTERFACES: tuple[str, ...] = ("auto", "asgi3", "asgi2", "wsgi")
LOG_LEVEL_NAMES: tuple[str, ...] = tuple(LOG_LEVELS)
LOG_FORMATS: tuple[str, ...] = ("text", "json")


def _logging_config() -> Any:
    return field(
        default_factory=lambda: deepcopy(LOGGING_CONFIG),
        repr=False,
        metadata={
            "option": Option(
                "Logging configuration file. Supported formats: .ini, .json, .yaml.",
                kind="path",
            )
        },
    )


@dataclass
class SetupOptions:
    """The settings that set the server up; `Config` is the class to use."""

    app: Any
    _: KW_ONLY
    # --- configuration file ------------------------------------------------------------
    config: str | os.PathLike[str] | None = _opt(
        None,
        Option(
            "(ketch) Read settings from this TOML file, keyed by run()'s keywords (from a "
            "pyproject.toml, its [tool.ketch] table). The command line and the environment "
            "win over it. Reread at a SIGHUP rolling restart.",
            "file",
        ),
    )
    # --- sockets -----------------------------------------------------------------
    host: str = _opt("127.0.0.1", Option("Bind socket to this host."))
    port: int = _opt(
        8000,
        Option(
            "Bind socket to this port. If 0, an available port will be picked.",
            "int",
            low=0,
            high=65535,
        ),
    )
    uds: str | None = _opt(None, Option("Bind to a UNIX domain socket.", "file"))
    fd: int | None = _opt(None, Option("Bind to socket from this file descriptor.", "int", low=0))
    # --- supervisors ---------------------------------------------------------------
    reload: bool = _opt(False, Option("Enable auto-reload.", "bool"))
    reload_dirs: list[str] | str | None = _opt(
        None,
        Option(
            "Set reload directories explicitly, instead of using the current working directory.",
            "path",
            flag="--reload-dir",
            multiple=True,
        ),
    )
    reload_includes: list[str] | str | None = _opt(
        None,
        Option(
            "Set glob patterns to include while watching for files. Includes '*.py' by default; "
            "these defaults can be overridden with `--reload-exclude`.",
            flag="--reload-include",
            multiple=True,
        ),
    )
    reload_excludes: list[str] | str | None = _opt(
        None,
        Option(
            "Set glob patterns to exclude while watching for files. Includes '.*, .py[cod], "
            ".sw.*, ~*' by default; these defaults can be overridden with `--reload-include`. "
            "A pattern that names a directory excludes everything under it.",
            flag="--reload-exclude",
            multiple=True,
        ),
    )
    reload_delay: float = _opt(
        0.25,
        Option("Delay between previous and next check if application needs to be.", "float", low=0),
    )
    workers: int | None = _opt(
        None,
        Option(
            "Number of worker processes. Defaults to the $WEB_CONCURRENCY environment "
            "variable if available, or 1.",
            "int",
            envvars=("WEB_CONCURRENCY",),
            show_default=False,
            low=1,
        ),
    )
    # --- implementations -----------------------------------------------------------
    loop: str = _opt("auto", Option("Event loop factory implementation.", registry="ketch.loop"))
    http: Any = _opt("auto", Option("HTTP protocol implementation.", registry="ketch.http"))
    http2: bool = _opt(
        False,
        Option(
            "Enable HTTP/2 support: over TLS, offered by ALPN next to HTTP/1.1; over "
            "cleartext TCP and UNIX sockets, for connections that open with the HTTP/2 "
            "preface (prior knowledge). Needs ketch-h2.",
            "bool",
        ),
    )
    http2_max_concurrent_streams: int = _opt(
        100,
        Option(
            "(ketch) With --http2, the requests (streams) one HTTP/2 connection may have "
            "open at once; more are refused (REFUSED_STREAM) for the client to retry.",
            "int",
            low=1,
            high=2**31 - 1,
        ),
    )
    ws: Any = _opt(
        "auto",
        Option(
            "WebSocket protocol implementation; 'none' treats upgrade requests as plain HTTP.",
            registry="ketch.ws",
            extra_choices=("none",),
        ),
    )
    ws_max_size: int = _opt(
        16 * 1024 * 1024, Option("WebSocket max size message in bytes", "int", low=1)
    )
    ws_max_queue: int = _opt(
        32, Option("The maximum length of the WebSocket message queue.", "int", low=1)
    )
    ws_ping_interval: float | None = _opt(
        20.0, Option("WebSocket ping interval in seconds.", "float")
    )
    ws_ping_timeout: float | None = _opt(
        20.0, Option("WebSocket ping timeout in seconds.", "float")
    )
    ws_per_message_deflate: bool = _opt(
        True, Option("WebSocket per-message-deflate compression", "boolean")
    )
    lifespan: str = _opt("auto", Option("Lifespan implementation.", choices=LIFESPAN_MODES))
    interface: str = _opt(
        "auto",
        Option("Select ASGI3, ASGI2, or WSGI as the application interface.", choices=INTERFACES),
    )
    wsgi_threads: int = _opt(
        10,
        Option(
            "(ketch) Threads that run a WSGI application; at most half of them wait for "
            "request bodies over 64 KiB, smaller ones are read before a thread is taken.",
            "int",
            low=1,
        ),
    )
    # --- logging -------------------------------------------------------------------
    env_file: str | os.PathLike[str] | None = _opt(
        None, Option("Environment configuration file.", "path")
    )
    log_config: dict[str, Any] | str | os.PathLike[str] | RawConfigParser | IO[Any] | None = (
        _logging_config()
    )
    log_level: str | int | None = _opt(
        None, Option("Log level. [default: info]", choices=LOG_LEVEL_NAMES, show_default=False)
    )
    access_log: bool = _opt(True, Option("Enable/Disable access log.", "bool"))
    access_log_format: str | None = _opt(
        None,
        Option(
            "(ketch) The access-log line in gunicorn's atoms, such as "
            "'%(h)s \"%(r)s\" %(s)s %(D)s' (docs/logging.md). Default: Uvicorn's line.",
            show_default=False,
        ),
    )
    log_format: str = _opt(
        "text",
        Option(
            "(ketch) text: Uvicorn's lines. json: one JSON object per line for every log "
            "record (a --log-config file wins over it).",
            choices=LOG_FORMATS,
        ),
    )
    use_colors: bool | None = _opt(
        None, Option("Enable/Disable colorized logging.", "bool", show_default=False)
    )
    # --- metrics -------------------------------------------------------------------
    metrics_port: int | None = _opt(
        None,
        Option(
            "(ketch) Serve Prometheus metrics at GET /metrics on this port, on a socket of "
            "its own (with --workers, once for the whole pool). Default: off.",
            "int",
            show_default=False,
            low=0,
            high=65535,
        ),
    )
    metrics_host: str = _opt(
        "127.0.0.1", Option("(ketch) The address the --metrics-port socket listens on.")
    )
