"""One request and its response, as the access log and the metrics see them.

Every protocol (HTTP/1.1, WebSocket handshakes, HTTP/2 streams, a third
party's) reports its exchanges the same way:

    observer = context.observer          # None: nobody observes, build nothing
    if observer is not None:
        exchange = observer.begin(scope)  # when the request head is read
    ...
    exchange.status = 200                 # when the response starts
    exchange.response_headers = headers   # the app's, as given
    exchange.bytes_sent += len(body)      # response body bytes
    exchange.bytes_received += len(data)  # request body bytes
    ...
    exchange.end(complete=True)           # the response is written whole, or
    exchange.end(complete=False)          # the connection ended before that

`end()` is called once: it writes the access-log line (when the access log
is on) and counts the exchange (when metrics are on). When both are off,
`context.observer` is None and a protocol takes no timestamp and builds no
record.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ketch.core.access import CLIENT_CLOSED, UVICORN_MESSAGE, AccessFormat, uvicorn_args
from ketch.core.metrics import (
    BUCKETS,
    DURATION,
    DURATION_SUM,
    OTHER_SLOTS,
    RECEIVED_BYTES,
    REQUEST_SLOTS,
    SENT_BYTES,
    STARTED,
)

if TYPE_CHECKING:
    from ketch.core._types import Headers, HTTPScope, WebSocketScope
    from ketch.core.metrics import Metrics

INFO = logging.INFO


class Exchange:
    """One request/response exchange; the protocol fills in the response side."""

    __slots__ = (
        "_observer",
        "bytes_received",
        "bytes_sent",
        "complete",
        "duration",
        "response_headers",
        "scope",
        "started",
        "status",
    )

    def __init__(self, observer: Observer, scope: HTTPScope | WebSocketScope) -> None:
        self._observer = observer
        self.scope: Any = scope
        self.started: float = perf_counter()
        self.status: int = 0  # until the response starts
        self.response_headers: Headers | Any = ()
        self.bytes_received: int = 0  # request body bytes
        self.bytes_sent: int = 0  # response body bytes
        self.complete: bool = False  # set by end()
        self.duration: float = 0.0  # seconds, set by end()
        values = observer.values
        if values is not None:
            values[STARTED] += 1

    def end(self, complete: bool = True) -> None:
        """The exchange is over: the response went out whole (`complete`), or
        the connection ended first. Call it once."""
        self.complete = complete
        duration = self.duration = perf_counter() - self.started
        status = self.status
        if not status:
            status = self.status = CLIENT_CLOSED  # no response was started
        observer = self._observer
        values = observer.values
        if values is not None:  # the metrics (Metrics.request_ended(), inlined)
            slots = REQUEST_SLOTS.get(self.scope.get("method", "GET"), OTHER_SLOTS)
            values[slots[status // 100 if status < 1000 else 9]] += 1
            values[DURATION + bisect_left(BUCKETS, duration)] += 1
            values[DURATION_SUM] += duration
            if self.bytes_received:
                values[RECEIVED_BYTES] += self.bytes_received
            if self.bytes_sent:
                values[SENT_BYTES] += self.bytes_sent
        if observer.access_logger is not None:
            observer.log(self)


class Observer:
    """Where a server's exchanges go: its access log and its metrics."""

    __slots__ = ("access_format", "access_logger", "begin", "metrics", "values")

    def __init__(
        self,
        access_logger: logging.Logger | None,
        access_format: AccessFormat | None,
        metrics: Metrics | None,
    ) -> None:
        self.access_logger = access_logger
        self.access_format = access_format
        self.metrics = metrics
        self.values = metrics.values if metrics is not None else None
        # begin(scope) -> Exchange, when a request head was read: the class itself,
        # bound to this observer (one Python call less per request than a method)
        self.begin: Callable[[HTTPScope | WebSocketScope], Exchange] = partial(Exchange, self)

    def log(self, exchange: Exchange) -> None:
        """The exchange's access-log record."""
        logger = self.access_logger
        assert logger is not None
        fmt = self.access_format
        if fmt is None:
            msg: str = UVICORN_MESSAGE
            args: Any = uvicorn_args(exchange)
        else:
            msg, args = fmt.line(exchange), None
        # a record made here, not by logger.info(): no search of the caller's frame
        record = logger.makeRecord(logger.name, INFO, "", 0, msg, args, None)
        record.exchange = exchange
        logger.handle(record)
