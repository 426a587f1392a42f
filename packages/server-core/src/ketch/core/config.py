"""Every setting of the server, in one place.

`Config` is plain, validated data. Each field carries an `Option` that says how
the command line spells it, so the CLI, `run()` and `Config` cannot drift apart:
`ketch.cli` builds its options from `options()`, `run()` passes its keywords
to `Config`. Side effects (importing the app, binding sockets, building the SSL
context, configuring logging) live in small functions elsewhere in
`ketch.core`, never here.

The declarations are split by area, in the order the command line and the
settings page list them: `SetupOptions` (`ketch.core.config_setup`: the
configuration file, sockets, supervisors, implementations, logging, metrics)
comes first, then the areas below (HTTP, TLS, the application).

Names and defaults are Uvicorn's (0.54), keyword for keyword; the options
ketch adds are marked "(ketch)" in their help.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from ketch.core.access import AccessFormat
from ketch.core.config_setup import SetupOptions
from ketch.core.errors import ConfigError
from ketch.core.logging import LOG_LEVELS
from ketch.core.options import (
    Option,
    check_option,
    int_from_env,
    option_field,
    parse_header,
)

_opt = option_field  # the short name the declarations below use

FORWARDED_HEADERS: tuple[str, ...] = ("x-forwarded", "forwarded")

# The default TLS protocol: whatever both sides support, server side.
SSL_PROTOCOL_VERSION = int(ssl.PROTOCOL_TLS_SERVER)


@dataclass
class Config(SetupOptions):
    """The settings of one ketch server. Every keyword of `ketch.core.run()`."""

    _: KW_ONLY
    # --- HTTP ----------------------------------------------------------------------
    proxy_headers: bool = _opt(
        True,
        Option(
            "Enable/Disable X-Forwarded-Proto, X-Forwarded-For (or Forwarded) to populate "
            "url scheme and remote address info.",
            "bool",
        ),
    )
    server_header: bool = _opt(True, Option("Enable/Disable default Server header.", "bool"))
    date_header: bool = _opt(True, Option("Enable/Disable default Date header.", "bool"))
    forwarded_allow_ips: list[str] | str | None = _opt(
        None,
        Option(
            "Comma separated list of IP Addresses, IP Networks, or literals (e.g. UNIX Socket "
            "path) to trust with proxy headers. Defaults to the $FORWARDED_ALLOW_IPS "
            "environment variable if available, or '127.0.0.1,::1'. The literal '*' means "
            "trust everything.",
            aliases=("--forwarded-trust-ips",),
            envvars=("FORWARDED_ALLOW_IPS",),
        ),
    )
    forwarded_headers: str = _opt(
        "x-forwarded",
        Option(
            "(ketch) Which proxy headers to read from trusted peers: X-Forwarded-* or "
            "RFC 7239 Forwarded. Only that family is read.",
            choices=FORWARDED_HEADERS,
        ),
    )
    proxy_protocol: bool = _opt(
        False,
        Option(
            "(ketch) Read a PROXY protocol header (v1 or v2, as HAProxy and AWS Network Load "
            "Balancers send) at the start of every connection: the client and server "
            "addresses come from it. Only peers in --forwarded-allow-ips may connect; "
            "connections from others are closed.",
            "bool",
        ),
    )
    root_path: str = _opt(
        "",
        Option("Set the ASGI 'root_path' for applications submounted below a given URL path."),
    )
    limit_concurrency: int | None = _opt(
        None,
        Option(
            "Maximum number of concurrent connections or tasks to allow, before issuing "
            "HTTP 503 responses.",
            "int",
            low=0,
        ),
    )
    backlog: int = _opt(
        2048, Option("Maximum number of connections to hold in backlog", "int", low=1)
    )
    limit_max_requests: int | None = _opt(
        None,
        Option(
            "Maximum number of requests to service before terminating the process.", "int", low=0
        ),
    )
    limit_max_requests_jitter: int = _opt(
        0,
        Option(
            "Maximum jitter to add to limit_max_requests. Staggers worker restarts to avoid "
            "all workers restarting simultaneously.",
            "int",
            low=0,
        ),
    )
    limit_worker_memory: int | None = _opt(
        None,
        Option(
            "(ketch) Replace a worker whose resident memory passes this many MiB (checked every "
            "second; Linux): its successor starts and serves, then it drains. Runs the workers "
            "supervisor, with one worker unless --workers says more.",
            "int",
            low=1,
        ),
    )
    limit_worker_lifetime: float | None = _opt(
        None,
        Option(
            "(ketch) Replace each worker once it has run this many seconds, the same way: its "
            "successor serves first, then it drains.",
            "float",
            low=0,
            above=True,
        ),
    )
    limit_worker_lifetime_jitter: float = _opt(
        0.0,
        Option(
            "(ketch) Maximum seconds added at random to each worker's --limit-worker-lifetime, "
            "so that workers started together are not replaced together.",
            "float",
            low=0,
        ),
    )
    timeout_keep_alive: int = _opt(
        5,
        Option(
            "Close Keep-Alive connections if no new data is received within this timeout "
            "(in seconds).",
            "int",
            low=0,
        ),
    )
    timeout_graceful_shutdown: int | None = _opt(
        None,
        Option("Maximum number of seconds to wait for graceful shutdown.", "int", low=0),
    )
    timeout_worker_healthcheck: int = _opt(
        5,
        Option(
            "Maximum number of seconds to wait for a worker to respond to a healthcheck.",
            "int",
            low=1,
        ),
    )
    timeout_request_header: float = _opt(
        10.0,
        Option(
            "(ketch) Seconds for the whole request head to arrive after its first byte; "
            "slower clients get 408 and are disconnected.",
            "float",
            low=0,
            above=True,
        ),
    )
    timeout_request_body: float = _opt(
        60.0,
        Option(
            "(ketch) Seconds the application may wait for request body bytes that do not "
            "come before the connection is closed and it receives http.disconnect.",
            "float",
            low=0,
            above=True,
        ),
    )
    timeout_write: float = _opt(
        60.0,
        Option(
            "(ketch) Seconds a response may wait for a client that reads none of it (the "
            "connection's send buffer full) before the connection is closed; the application "
            "then receives http.disconnect.",
            "float",
            low=0,
            above=True,
        ),
    )
    limit_request_body: int | None = _opt(
        None,
        Option(
            "(ketch) Maximum request body size in bytes; larger bodies get 413. Default: no limit.",
            "int",
            show_default=False,
            low=0,
        ),
    )
    limit_request_header_size: int = _opt(
        64 * 1024,
        Option(
            "(ketch) Maximum size in bytes of a request head (request line and headers); "
            "larger heads get 431.",
            "int",
            low=256,
        ),
    )
    limit_request_headers: int = _opt(
        128,
        Option("(ketch) Maximum number of request headers; more get 431.", "int", low=1),
    )
    timeout_notify: int = _opt(
        30, Option("Seconds between calls of callback_notify (gunicorn heartbeat).", cli=False)
    )
    callback_notify: Callable[..., Awaitable[None]] | None = _opt(
        None, Option("Called every timeout_notify seconds while serving.", cli=False)
    )
    # --- TLS -----------------------------------------------------------------------
    ssl_keyfile: str | os.PathLike[str] | None = _opt(None, Option("SSL key file"))
    ssl_certfile: str | os.PathLike[str] | None = _opt(None, Option("SSL certificate file"))
    ssl_keyfile_password: str | None = _opt(None, Option("SSL keyfile password"), repr=False)
    ssl_version: int = _opt(
        SSL_PROTOCOL_VERSION, Option("SSL version to use (see stdlib ssl module's)", "int")
    )
    ssl_cert_reqs: int = _opt(
        int(ssl.CERT_NONE),
        Option(
            "Whether client certificate is required (see stdlib ssl module's): none, "
            "optional or required (or 0, 1, 2).",
            "cert_reqs",
            low=0,
            high=2,
        ),
    )
    ssl_ca_certs: str | os.PathLike[str] | None = _opt(None, Option("CA certificates file"))
    ssl_ciphers: str | None = _opt(
        None,
        Option(
            "Ciphers to use (see stdlib ssl module's). Defaults to OpenSSL's safe defaults.",
            show_default=False,
        ),
    )
    ssl_context_factory: Callable[..., ssl.SSLContext] | None = _opt(
        None,
        Option("Called as factory(config, default_factory) to build the SSL context.", cli=False),
    )
    # --- the application -------------------------------------------------------------
    headers: list[tuple[str, str]] | None = _opt(
        None,
        Option(
            "Specify custom default HTTP response headers as a Name:Value pair",
            flag="--header",
            multiple=True,
        ),
    )
    app_dir: str | None = _opt(
        "",
        Option(
            "Look for APP in the specified directory, by adding this to the PYTHONPATH. "
            "Defaults to the current working directory.",
            show_default=False,
        ),
    )
    factory: bool = _opt(
        False,
        Option("Treat APP as an application factory, i.e. a () -> <ASGI app> callable.", "bool"),
    )
    h11_max_incomplete_event_size: int | None = _opt(
        None,
        Option(
            "For h11, the maximum number of bytes to buffer of an incomplete event.", "int", low=0
        ),
    )
    reset_contextvars: bool = _opt(
        False,
        Option(
            "Run each ASGI request in a fresh contextvars.Context. Hides context set in the "
            "lifespan.",
            "bool",
        ),
    )
    # Not an option: the settings run() was given besides the config file (by the
    # command line, the environment, keywords), which stay above the file when a
    # SIGHUP rereads it (ketch.core.config_file).
    given: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.workers is None:
            self.workers = int_from_env("WEB_CONCURRENCY", default=1)
        if self.forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        for name in ("reload_dirs", "reload_includes", "reload_excludes"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, [])
            elif isinstance(value, str | os.PathLike):
                setattr(self, name, [os.fspath(value)])
            else:
                setattr(self, name, [os.fspath(v) for v in value])
        if self.headers is None:
            self.headers = []
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError, naming the option, for a value ketch cannot use."""
        for f, option in options():  # the ranges and choices each Option declares
            check_option(cli_flag(f, option), option, getattr(self, f.name))
        if self.access_log_format is not None:
            AccessFormat(self.access_log_format)  # a malformed one fails here
        if self.root_path and not self.root_path.startswith("/"):
            raise ConfigError(f"--root-path must start with '/', got {self.root_path!r}")
        if self.root_path.endswith("/"):
            self.root_path = self.root_path.rstrip("/")
        if bool(self.ssl_keyfile) != bool(self.ssl_certfile) and self.ssl_context_factory is None:
            missing = "--ssl-certfile" if self.ssl_keyfile else "--ssl-keyfile"
            raise ConfigError(f"TLS needs both a key and a certificate: add {missing}")
        if self.proxy_protocol and self.uds is not None:
            from ketch.core.proxy_protocol import unix_socket_refusal
            from ketch.proxy import TrustedHosts

            refusal = unix_socket_refusal(self.uds, TrustedHosts(self.trusted_proxies))
            if refusal is not None:
                raise ConfigError(refusal)
        if self.uds is not None and self.fd is not None:
            raise ConfigError("--uds and --fd both choose the listening socket: keep one")
        self.headers = [parse_header(h) for h in self.headers or []]

    # --- derived -----------------------------------------------------------------------
    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def log_level_number(self) -> int | None:
        if self.log_level is None or isinstance(self.log_level, int):
            return self.log_level
        return LOG_LEVELS[self.log_level]

    @property
    def recycles_workers(self) -> bool:
        """Workers are replaced by memory or age: only a supervisor can do that."""
        return self.limit_worker_memory is not None or self.limit_worker_lifetime is not None

    @property
    def use_subprocess(self) -> bool:
        """True when a supervisor runs the server in child processes."""
        return bool(self.reload or (self.workers or 1) > 1 or self.recycles_workers)

    @property
    def trusted_proxies(self) -> list[str]:
        value = self.forwarded_allow_ips or []
        items = value.split(",") if isinstance(value, str) else list(value)
        return [item.strip() for item in items if item.strip()]

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (supervisors use it for their children)."""
        return dataclasses.replace(self, **changes)


def options() -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """Each setting with its command-line description, in declaration order."""
    for f in dataclasses.fields(Config):
        option = f.metadata.get("option")
        if option is not None:
            yield f, option


def cli_flag(f: dataclasses.Field[Any], option: Option) -> str:
    return option.flag or "--" + f.name.replace("_", "-")
