"""Prometheus metrics: what one server process counts, and the text format.

A process keeps its counters and gauges in one array of float64 (`Metrics`),
each at a fixed index. A server alone keeps the array in its own memory and
serves `GET /metrics` itself (`MetricsEndpoint`, on its own socket). Under the
workers supervisor each worker's array lives in a small file that the worker
and the supervisor both map into memory (`Metrics.create()` /
`Metrics.attach()`): a worker writes as it serves, with no message and no
lock, and the supervisor reads every array when it is scraped. A count is in
the shared memory as soon as it is made, so nothing is lost when a worker is
killed: the supervisor folds the last values of a worker that ended into its
totals (`PoolTotals`), and a counter never goes down.

The metrics are listed with their names in docs/metrics.md.
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ketch.core.errors import ConfigError

logger = logging.getLogger("ketch.error")

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# the request-duration histogram's upper bounds in seconds (Prometheus' defaults), then +Inf
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# the answers ketch gives itself to requests it refuses (timeouts, limits, bad input)
REJECTED = (400, 408, 413, 431, 503, 505)

# --- where each value lives in the array -----------------------------------------------
REQUESTS = 0  # len(METHODS) * len(STATUS_CLASSES) counters, method-major
DURATION = REQUESTS + len(METHODS) * len(STATUS_CLASSES)  # len(BUCKETS) + 1 bucket counts
DURATION_SUM = DURATION + len(BUCKETS) + 1
STARTED = DURATION_SUM + 1  # exchanges begun (in progress: begun - ended)
RECEIVED_BYTES = STARTED + 1
SENT_BYTES = RECEIVED_BYTES + 1
REJECTIONS = SENT_BYTES + 1  # one per REJECTED status
WS_RECEIVED = REJECTIONS + len(REJECTED)
WS_SENT = WS_RECEIVED + 1
WS_OPEN = WS_SENT + 1  # gauge
HTTP_OPEN = WS_OPEN + 1  # gauge, sampled by the server twice a second
SLOTS = HTTP_OPEN + 1
SIZE = SLOTS * 8
# the values that are gauges: summed over live processes only
GAUGES = frozenset({WS_OPEN, HTTP_OPEN})
_REJECTED_INDEX = {status: REJECTIONS + index for index, status in enumerate(REJECTED)}
# a method's request counters by the status's hundreds digit (0-9; 0 and 1: 1xx, 5-9: 5xx)
REQUEST_SLOTS = {
    method: tuple(REQUESTS + m * 5 + min(4, max(0, digit - 1)) for digit in range(10))
    for m, method in enumerate(METHODS)
}
OTHER_SLOTS = REQUEST_SLOTS["other"]


class Metrics:
    """One process's metrics. Protocols count what only they see through the
    methods below (`context.metrics`, None when metrics are off); exchanges
    are counted by `Exchange` (ketch.core.exchange), which writes into
    `values` itself."""

    __slots__ = ("_buffer", "values")

    def __init__(self, buffer: bytearray | mmap.mmap | None = None) -> None:
        self._buffer = buffer if buffer is not None else bytearray(SIZE)
        self.values = memoryview(self._buffer).cast("d")

    # --- in shared memory (the workers supervisor) ---------------------------------------
    @classmethod
    def create(cls, directory: str) -> tuple[Metrics, str]:
        """A new, zeroed array in a new file in `directory`, and the file's path
        (for a worker to attach to)."""
        fd, path = tempfile.mkstemp(dir=directory, prefix="worker-")
        try:
            os.ftruncate(fd, SIZE)
            return cls(mmap.mmap(fd, SIZE)), path
        finally:
            os.close(fd)

    @classmethod
    def attach(cls, path: str) -> Metrics:
        """The array the supervisor created in `path` (in a worker)."""
        fd = os.open(path, os.O_RDWR)
        try:
            return cls(mmap.mmap(fd, SIZE))
        finally:
            os.close(fd)

    def close(self) -> None:
        self.values.release()
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()

    # --- what protocols count ---------------------------------------------------------
    def rejected(self, status: int) -> None:
        """ketch answered a request itself and closed: 400, 408, 413, 431, 503, 505."""
        index = _REJECTED_INDEX.get(status)
        if index is not None:
            self.values[index] += 1

    def websocket_opened(self) -> None:
        self.values[WS_OPEN] += 1

    def websocket_closed(self) -> None:
        self.values[WS_OPEN] -= 1

    def websocket_received(self) -> None:
        self.values[WS_RECEIVED] += 1

    def websocket_sent(self) -> None:
        self.values[WS_SENT] += 1

    def sample_connections(self, open_connections: int) -> None:
        """The server's open connections (HTTP and WebSocket) right now."""
        self.values[HTTP_OPEN] = open_connections - self.values[WS_OPEN]


class PoolTotals:
    """The sum of many processes' metrics: counters over every process that
    ever lived, gauges over the live ones."""

    def __init__(self) -> None:
        self.ended = [0.0] * SLOTS  # the counters of processes that ended

    def process_ended(self, metrics: Metrics) -> None:
        """Keep the final counts of a process that ended (then close its array)."""
        values = metrics.values
        for index in range(SLOTS):
            if index not in GAUGES:
                self.ended[index] += values[index]
        # what it had in progress ended with it
        self.ended[STARTED] += sum(values[REQUESTS:DURATION]) - values[STARTED]

    def total(self, live: Iterable[Metrics]) -> list[float]:
        totals = list(self.ended)
        for metrics in live:
            values = metrics.values
            for index in range(SLOTS):
                totals[index] += values[index]
        return totals


# --- the text format ----------------------------------------------------------------------
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{sample} {_number(value)}" for sample, value in samples)
    return "\n".join(lines) + "\n"


def render(values: Sequence[float], extra: Iterable[str] = ()) -> bytes:
    """The Prometheus text format (0.0.4) of `values` (laid out as in `Metrics`),
    followed by the `extra` families (the supervisor's own)."""
    requests = [
        (f'ketch_requests_total{{method="{method}",status="{status}"}}', count)
        for m, method in enumerate(METHODS)
        for s, status in enumerate(STATUS_CLASSES)
        if (count := values[REQUESTS + m * 5 + s])
    ]
    ended = sum(values[REQUESTS:DURATION])
    buckets, cumulative = [], 0.0
    for index, bound in enumerate([*map(repr, BUCKETS), "+Inf"]):
        cumulative += values[DURATION + index]
        buckets.append((f'ketch_request_duration_seconds_bucket{{le="{bound}"}}', cumulative))
    parts = [
        _family(
            "ketch_requests_total",
            "counter",
            "Requests answered (WebSocket handshakes included), by method and status class.",
            requests,
        ),
        _family(
            "ketch_request_duration_seconds",
            "histogram",
            "Time from a request's head to the end of its response.",
            [
                *buckets,
                ("ketch_request_duration_seconds_sum", values[DURATION_SUM]),
                ("ketch_request_duration_seconds_count", cumulative),
            ],
        ),
        _family(
            "ketch_requests_in_progress",
            "gauge",
            "Requests read whose response is not complete yet.",
            [("ketch_requests_in_progress", max(0.0, values[STARTED] - ended))],
        ),
        _family(
            "ketch_open_connections",
            "gauge",
            "Open client connections, by protocol.",
            [
                ('ketch_open_connections{protocol="http"}', max(0.0, values[HTTP_OPEN])),
                ('ketch_open_connections{protocol="websocket"}', max(0.0, values[WS_OPEN])),
            ],
        ),
        _family(
            "ketch_request_body_bytes_total",
            "counter",
            "Request body bytes received.",
            [("ketch_request_body_bytes_total", values[RECEIVED_BYTES])],
        ),
        _family(
            "ketch_response_body_bytes_total",
            "counter",
            "Response body bytes sent.",
            [("ketch_response_body_bytes_total", values[SENT_BYTES])],
        ),
        _family(
            "ketch_rejected_requests_total",
            "counter",
            "Requests ketch answered itself and closed the connection, by status.",
            [
                (f'ketch_rejected_requests_total{{status="{status}"}}', values[REJECTIONS + i])
                for i, status in enumerate(REJECTED)
            ],
        ),
        _family(
            "ketch_websocket_messages_total",
            "counter",
            "WebSocket data messages, by direction.",
            [
                ('ketch_websocket_messages_total{direction="received"}', values[WS_RECEIVED]),
                ('ketch_websocket_messages_total{direction="sent"}', values[WS_SENT]),
            ],
        ),
        *extra,
    ]
    return "".join(parts).encode("utf-8")


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> str:
    """One metric family in the text format: for the supervisor's own metrics."""
    return _family(name, kind, help_text, samples)


# --- the endpoint ---------------------------------------------------------------------------
class MetricsEndpoint:
    """`GET /metrics` on its own socket, answered from a thread with
    `collect()`; never through the application."""

    def __init__(self, host: str, port: int, collect: Callable[[], bytes]) -> None:
        handler = type("Handler", (_Handler,), {"collect": staticmethod(collect)})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="ketch-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        host, port = self.address
        logger.info("Metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    collect: Callable[[], bytes]
    timeout = 10  # a client that stops sending loses its thread after this
    server_version = "ketch"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path.partition("?")[0] != "/metrics":
            self.send_error(404, "Only /metrics is served here")
            return
        try:
            body = self.collect()
        except Exception:
            logger.exception("Error while collecting metrics")
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes are not access-logged
