"""The settings protocol plugins read: frozen, built once per server from `Config`.

A connection reads `context.settings.timeout_keep_alive` and never the mutable
`Config`, so what a plugin may depend on is exactly what is listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ketch.core.config import Config


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """The `--ws-*` options."""

    max_size: int  # bytes in one message; larger ones close with 1009
    max_queue: int  # messages received but not yet taken by the app
    ping_interval: float | None  # None: no keepalive pings
    ping_timeout: float | None  # None: a ping's answer is never awaited
    per_message_deflate: bool

    @property
    def resume_at(self) -> int:
        """After a full queue paused reading, read again once the app is this close."""
        return self.max_queue // 4


@dataclass(frozen=True, slots=True)
class HTTP2Settings:
    """The `--http2-*` options (read by the HTTP/2 plugin when `--http2` is on)."""

    max_concurrent_streams: int  # streams a client may have open at once; REFUSED_STREAM beyond


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What every connection of one server shares, read once at start-up."""

    root_path: str  # the ASGI root_path, without a trailing slash
    timeout_keep_alive: float  # idle time between requests before a close
    timeout_request_header: float  # a request head's whole arrival, from its first byte
    timeout_request_body: float  # the app's wait for request body bytes
    timeout_write: float  # a response's wait for a client that reads nothing
    limit_request_body: int | None  # bytes; None for no limit
    limit_request_header_size: int  # bytes of a request head (line and fields)
    limit_request_headers: int  # fields in a request head
    limit_concurrency: int | None  # connections or tasks before 503
    reset_contextvars: bool  # each request's Task starts from an empty context
    h11_max_incomplete_event_size: int | None
    access_log: bool
    access_log_format: str | None  # gunicorn's atoms; None: Uvicorn's line
    websocket: WebSocketSettings
    http2: HTTP2Settings

    @classmethod
    def from_config(cls, config: Config) -> ServerSettings:
        interval = config.ws_ping_interval
        timeout = config.ws_ping_timeout
        return cls(
            root_path=config.root_path,
            timeout_keep_alive=float(config.timeout_keep_alive),
            timeout_request_header=float(config.timeout_request_header),
            timeout_request_body=float(config.timeout_request_body),
            timeout_write=float(config.timeout_write),
            limit_request_body=config.limit_request_body,
            limit_request_header_size=config.limit_request_header_size,
            limit_request_headers=config.limit_request_headers,
            limit_concurrency=config.limit_concurrency,
            reset_contextvars=config.reset_contextvars,
            h11_max_incomplete_event_size=config.h11_max_incomplete_event_size,
            access_log=config.access_log,
            access_log_format=config.access_log_format,
            websocket=WebSocketSettings(
                max_size=config.ws_max_size,
                max_queue=config.ws_max_queue,
                ping_interval=interval if interval and interval > 0 else None,
                ping_timeout=timeout if timeout and timeout > 0 else None,
                per_message_deflate=config.ws_per_message_deflate,
            ),
            http2=HTTP2Settings(max_concurrent_streams=config.http2_max_concurrent_streams),
        )
