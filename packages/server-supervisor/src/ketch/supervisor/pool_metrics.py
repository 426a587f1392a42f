"""`--metrics-port` under the workers supervisor: the whole pool's metrics,
served once by the parent.

Each worker counts into an array in a file of a private directory that the
parent maps too (`ketch.core.metrics.Metrics.create()`; the worker attaches to
it). A count is in that shared memory as soon as it is made, without a
message or a lock, so the parent reads every live worker's counts when
scraped, and keeps the final counts of each worker that exited
(`PoolTotals`): a counter covers every worker of the run, a killed one
included, and never goes down. Gauges are summed over the live workers.
"""

from __future__ import annotations

import shutil
import tempfile
import threading

from ketch.core import Config
from ketch.core.metrics import MetricsEndpoint, PoolTotals, family, render
from ketch.supervisor.worker import Worker


class PoolMetrics:
    """The arrays of the workers started and not yet reaped, the totals of
    those that exited, and the endpoint; `restarts` is the supervisor's count
    of replacements by reason, read as it is."""

    def __init__(self, config: Config, restarts: dict[str, int]) -> None:
        assert config.metrics_port is not None
        self.restarts = restarts
        self.metered: list[Worker] = []
        self.totals = PoolTotals()
        self.lock = threading.Lock()  # the endpoint's thread reads what the loop changes
        self.endpoint = MetricsEndpoint(config.metrics_host, config.metrics_port, self.collect)
        self.directory = tempfile.mkdtemp(prefix="ketch-metrics-")

    def start(self) -> None:
        self.endpoint.start()

    def started(self, worker: Worker) -> None:
        if worker.metrics is not None:
            with self.lock:
                self.metered.append(worker)

    def ended(self, worker: Worker) -> None:
        """A worker has exited: its final counts join the totals."""
        metrics = worker.metrics
        if metrics is not None:
            with self.lock:
                self.totals.process_ended(metrics)
                self.metered.remove(worker)
                worker.metrics = None
            metrics.close()

    def collect(self) -> bytes:
        """The pool's metrics (from the endpoint's thread)."""
        with self.lock:
            values = self.totals.total(w.metrics for w in self.metered if w.metrics is not None)
            alive = len(self.metered)
            restarts = dict(self.restarts)
        workers = family(
            "ketch_workers",
            "gauge",
            "Worker processes alive (serving, starting or draining).",
            [("ketch_workers", alive)],
        )
        replaced = family(
            "ketch_worker_restarts_total",
            "counter",
            "Workers replaced, by reason.",
            [(f'ketch_worker_restarts_total{{reason="{r}"}}', n) for r, n in restarts.items()],
        )
        return render(values, [workers, replaced])

    def close(self) -> None:
        self.endpoint.close()
        shutil.rmtree(self.directory, ignore_errors=True)
