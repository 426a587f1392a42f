"""`--workers N`: one parent that binds the sockets and keeps N healthy workers.

Signals (to the parent):

- SIGINT/SIGTERM: every worker drains gracefully; the parent exits 0. A second
  SIGINT forces the workers out.
- SIGHUP: rolling restart. One worker at a time, a replacement is started and
  waits until it serves before the old worker is told to drain. A `--config`
  file is read again first: the new workers take its settings
  (`ketch.core.config_file.reread`); a bad file keeps the running workers.
- SIGTTIN / SIGTTOU: one worker more / fewer (never fewer than one).

A worker that reaches --limit-max-requests is replaced the same way as on
SIGHUP: it serves on until its replacement serves, then drains.

With --metrics-port the parent serves the pool's metrics: each worker counts
into an array in a file the parent maps too (`ketch.core.metrics`), and the
parent keeps the last counts of every worker that ended, so a counter covers
every worker of the run and never goes down. Replacements are counted by
reason in `Supervisor.restarts`.

Every second the parent pings each worker over a pipe that the worker answers
from its event loop. A worker that does not answer within
`--timeout-worker-healthcheck` has its Python stacks dumped to the log and is
killed and replaced. A worker that exits is replaced (with growing delays if it
keeps crashing), except one that failed its startup (exit status 3): then the
whole server stops, as a restart would fail the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from ketch.core import Config
from ketch.core.config_file import reread
from ketch.core.errors import STARTUP_FAILURE, ConfigError
from ketch.core.metrics import Metrics, MetricsEndpoint, PoolTotals, family, render
from ketch.core.sockets import Listener, bind, describe
from ketch.supervisor.child import AT_LIMIT, DUMP_STACKS, PING, READY, worker_main

logger = logging.getLogger("ketch.error")

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
CHECK_INTERVAL = 0.25  # how often the parent looks at its workers
PING_INTERVAL = 1.0
READY_TIMEOUT = 60.0  # how long a new worker may take to start serving
STOP_MARGIN = 5.0  # beyond --timeout-graceful-shutdown before workers are killed
CRASH_WINDOW = 10.0  # a worker that dies sooner than this after starting "crashed"
MAX_BACKOFF = 30.0
# Why workers were replaced: the keys of `Supervisor.restarts`.
CRASHED = "crashed"  # it exited on its own
UNRESPONSIVE = "unresponsive"  # it missed its health check and was killed
MAX_REQUESTS = "max-requests"  # it reached --limit-max-requests
SIGHUP = "SIGHUP"  # a rolling restart asked for with SIGHUP
RELOAD = "reload"  # a rolling restart for changed files (--reload)
RESTART_REASONS = (CRASHED, UNRESPONSIVE, MAX_REQUESTS, SIGHUP, RELOAD)


class Worker:
    """One worker process and the parent's end of its health pipe."""

    def __init__(
        self, config: Config, sockets: list[object], metrics_dir: str | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.health, child_end = context.Pipe()
        # the worker's metrics, in a file both processes map (with --metrics-port)
        self.metrics: Metrics | None = None
        path = None
        if metrics_dir is not None:
            self.metrics, path = Metrics.create(metrics_dir)
        self.process: BaseProcess = context.Process(
            target=worker_main, args=(config, sockets, child_end, path), name="ketch-worker"
        )
        self.process.start()
        child_end.close()
        self.started_at = time.monotonic()
        self.ready = False
        self.stopping = False
        self.at_limit = False  # reached --limit-max-requests: to be replaced
        self.successor: Worker | None = None  # its replacement, while it starts
        self.ping_sent: float | None = None
        self.last_answer = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def check(self, now: float) -> bool:
        """Read answers and send the next ping; False when the worker failed to
        answer in time."""
        try:
            while self.health.poll():
                answer = self.health.recv_bytes()
                self.ping_sent = None
                self.last_answer = now
                if answer == READY:
                    self.ready = True
                elif answer == AT_LIMIT:
                    self.at_limit = True
        except (EOFError, OSError):
            return self.alive()  # it is exiting: its exit is handled as such
        if self.ping_sent is None and now - self.last_answer >= PING_INTERVAL:
            try:
                self.health.send_bytes(PING)
            except OSError:
                return self.alive()
            self.ping_sent = now
        return True

    def overdue(self, now: float, timeout: float) -> bool:
        return self.ping_sent is not None and now - self.ping_sent > timeout

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def drain(self, restart: bool = False) -> None:
        """Tell the worker to finish what it serves and exit."""
        self.stopping = True
        self.signal(signal.SIGHUP if restart else signal.SIGTERM)

    def close(self) -> None:
        self.health.close()


class Supervisor:
    """Keeps `config.workers` workers serving the sockets it bound once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers or 1
        self.workers: list[Worker] = []
        self.retiring: list[Worker] = []  # drained, waiting to be reaped
        self.listeners: list[Listener] = []
        self.signals: deque[int] = deque()
        self.wakeup = threading.Event()
        self.crashes = 0
        self.next_spawn = 0.0
        self.exit_code = 0
        self.sockets: list[object] = []
        # how many workers were replaced, by reason (RESTART_REASONS)
        self.restarts: dict[str, int] = dict.fromkeys(RESTART_REASONS, 0)
        # --metrics-port: the workers' arrays live in this directory; the counts
        # of the workers that ended are kept in `totals`
        self.metrics_dir: str | None = None
        self.totals = PoolTotals()
        self.metrics_lock = threading.Lock()  # the endpoint's thread reads the workers
        # False under --reload: a worker that fails to start waits for the next change
        self.stop_on_startup_failure = True
        self.paused = False  # no new workers until reload() (after a failed start)
        # called once per loop turn: the reload supervisor asks for restarts here
        self.poll_hooks: list[Callable[[], None]] = []

    # --- the parent's loop --------------------------------------------------------------
    def run(self) -> int:
        endpoint = None
        if self.config.metrics_port is not None:
            endpoint = MetricsEndpoint(
                self.config.metrics_host, self.config.metrics_port, self.collect_metrics
            )
            self.metrics_dir = tempfile.mkdtemp(prefix="ketch-metrics-")
        try:
            return self._run(endpoint)
        finally:
            if endpoint is not None:
                endpoint.close()
            if self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _run(self, endpoint: MetricsEndpoint | None) -> int:
        self.listeners = bind(self.config)
        sockets = self.sockets = [listener.sock for listener in self.listeners]
        for listener in self.listeners:
            os.set_inheritable(listener.sock.fileno(), True)
            logger.info(
                "ketch running on %s (Press CTRL+C to quit)",
                describe(listener.sock, self.config.is_ssl),
            )
        logger.info("Started parent process [%d]", os.getpid())
        if endpoint is not None:
            endpoint.start()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in HANDLED}
        try:
            for _ in range(self.target):
                self._spawn(sockets)
            self._loop(sockets)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for listener in self.listeners:
                listener.close()
        logger.info("Stopping parent process [%d]", os.getpid())
        return self.exit_code

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        self.wakeup.set()

    def _loop(self, sockets: list[object]) -> None:
        while True:
            self.wakeup.wait(CHECK_INTERVAL)
            self.wakeup.clear()
            while self.signals:
                sig = self.signals.popleft()
                if sig in (signal.SIGINT, signal.SIGTERM):
                    self._stop_all()
                    return
                if sig == signal.SIGHUP:
                    logger.info("Received SIGHUP: restarting workers one by one")
                    try:  # new workers get the --config file as it is now
                        previous, self.config = self.config, reread(self.config)
                    except Exception as exc:  # a bad file (one line), or a bug (a traceback)
                        bug = not isinstance(exc, ConfigError)
                        logger.error("%s; keeping the running workers", exc, exc_info=bug)
                        continue
                    if not self.restart_all(sockets, SIGHUP):
                        self.config = previous  # replacements are not started with it
                elif sig == signal.SIGTTIN:
                    self.target += 1
                    logger.info("Received SIGTTIN: %d workers", self.target)
                elif sig == signal.SIGTTOU:
                    if self.target > 1:
                        self.target -= 1
                        logger.info("Received SIGTTOU: %d workers", self.target)
                        self._retire(self.workers[-1])
                    else:
                        logger.info("Received SIGTTOU: keeping the last worker")
            for hook in self.poll_hooks:
                hook()
            if self.signals:
                continue
            if not self._supervise(sockets):
                return

    def _supervise(self, sockets: list[object]) -> bool:
        """Reap, health-check and replace workers; False when the server must stop."""
        now = time.monotonic()
        for worker in list(self.retiring):
            if not worker.alive():
                self._remove(worker)
        for worker in list(self.workers):
            if not worker.alive():
                worker.check(now)  # it may have said it was ready before it died
                self._remove(worker)
                code = worker.process.exitcode
                if (code == STARTUP_FAILURE or (code and not worker.ready)) and (
                    not self.stop_on_startup_failure
                ):
                    logger.error(
                        "Worker [%d] failed to start (exit status %s): waiting for a change",
                        worker.pid,
                        code,
                    )
                    self.paused = True
                    continue
                if code == STARTUP_FAILURE or (code and not worker.ready):
                    logger.error(
                        "Worker [%d] failed to start (exit status %s): stopping. "
                        "Fix the error above and start ketch again.",
                        worker.pid,
                        code,
                    )
                    self.exit_code = STARTUP_FAILURE
                    self._stop_all()
                    return False
                self.restarts[CRASHED] += 1
                if code == 0:
                    logger.info("Worker [%d] exited; starting a new one", worker.pid)
                else:
                    logger.warning(
                        "Worker [%d] died (exit status %s); restarting", worker.pid, code
                    )
                    if now - worker.started_at < CRASH_WINDOW:
                        self.crashes += 1
                        delay = min(MAX_BACKOFF, 0.5 * 2 ** (self.crashes - 1))
                        self.next_spawn = now + delay
                        logger.warning("Worker crashed soon after starting; waiting %.1fs", delay)
                    else:
                        self.crashes = 0
                continue
            # a worker still starting (importing the app) gets READY_TIMEOUT
            timeout = self.config.timeout_worker_healthcheck if worker.ready else READY_TIMEOUT
            if not worker.check(now) or worker.overdue(now, timeout):
                self._replace_unhealthy(worker)
            elif worker.at_limit:
                self._hand_over(worker, sockets)
        while (
            not self.paused
            and len(self.workers) < self.target
            and time.monotonic() >= self.next_spawn
        ):
            self._spawn(sockets)
        return True

    # --- workers ------------------------------------------------------------------------
    def _spawn(self, sockets: list[object]) -> Worker:
        worker = Worker(self.config, sockets, self.metrics_dir)
        with self.metrics_lock:
            self.workers.append(worker)
        logger.info("Started worker process [%d]", worker.pid)
        return worker

    def _retire(self, worker: Worker, restart: bool = False) -> None:
        with self.metrics_lock:
            if worker in self.workers:
                self.workers.remove(worker)
            self.retiring.append(worker)
        worker.drain(restart)

    def _remove(self, worker: Worker) -> None:
        """A worker process has ended: its final counts join the totals."""
        with self.metrics_lock:
            for pool in (self.workers, self.retiring):
                if worker in pool:
                    pool.remove(worker)
            if worker.metrics is not None:
                self.totals.process_ended(worker.metrics)
                worker.metrics.close()
                worker.metrics = None
        worker.close()

    def collect_metrics(self) -> bytes:
        """The pool's metrics (from the endpoint's thread): counters over every
        worker of this run, gauges over the live ones, and the supervisor's own."""
        with self.metrics_lock:
            live = [w for w in (*self.workers, *self.retiring) if w.metrics is not None]
            values = self.totals.total(w.metrics for w in live if w.metrics is not None)
            alive = sum(1 for w in live if w.alive())
            restarts = dict(self.restarts)
        workers = family(
            "ketch_workers", "gauge", "Worker processes alive.", [("ketch_workers", alive)]
        )
        replaced = family(
            "ketch_worker_restarts_total",
            "counter",
            "Workers replaced, by reason.",
            [(f'ketch_worker_restarts_total{{reason="{r}"}}', n) for r, n in restarts.items()],
        )
        return render(values, [workers, replaced])

    def _hand_over(self, worker: Worker, sockets: list[object]) -> None:
        """A worker at --limit-max-requests serves on until its replacement
        serves; then it drains. Capacity never drops, not even with one worker."""
        successor = worker.successor
        if successor is None or successor not in self.workers:  # none yet, or it died
            logger.info("Worker [%d] reached its request limit; replacing it", worker.pid)
            worker.successor = self._spawn(sockets)
        elif successor.ready:
            worker.successor = None
            self._retire(worker, restart=True)
            self.restarts[MAX_REQUESTS] += 1

    def _replace_unhealthy(self, worker: Worker) -> None:
        logger.error(
            "Worker [%d] did not answer its health check within %ds; its stacks follow, "
            "then it is killed and replaced",
            worker.pid,
            self.config.timeout_worker_healthcheck,
        )
        worker.signal(DUMP_STACKS)
        worker.process.join(0.5)  # time for faulthandler to write (if it is not frozen)
        worker.process.kill()
        worker.process.join(5)
        self._remove(worker)
        self.restarts[UNRESPONSIVE] += 1

    def reload(self) -> None:
        """New code: restart the pool, or start it if the last start failed."""
        if self.paused or not self.workers:
            self.paused = False
            self.next_spawn = 0.0
            self.crashes = 0
            return
        self.restart_all(self.sockets, RELOAD)

    def restart_all(self, sockets: list[object], reason: str = SIGHUP) -> bool:
        """Replace every worker, one at a time, each replacement serving before the
        old one drains. If a replacement does not start, the old workers stay (and
        the result is False)."""
        for old in list(self.workers):
            new = self._spawn(sockets)
            if not self._wait_ready(new):
                logger.error(
                    "Worker [%d] did not start serving; keeping the running workers", new.pid
                )
                new.process.kill()
                new.process.join(5)
                self._remove(new)
                return False
            self._retire(old, restart=True)
            self.restarts[reason] += 1
        return True

    def _wait_ready(self, worker: Worker) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not worker.alive():
                return False
            worker.check(time.monotonic())
            if worker.ready:
                return True
            if self.signals and self.signals[0] in (signal.SIGINT, signal.SIGTERM):
                return False
            worker.health.poll(0.05)
        return False

    def _stop_all(self) -> None:
        """Drain every worker, waiting at most --timeout-graceful-shutdown plus a
        margin; a SIGINT meanwhile (a second Ctrl+C) forces them out."""
        # Stop accepting first: while the parent holds the listening sockets,
        # connections still queue in the backlog after the workers close theirs,
        # and are reset when the parent exits. Closed everywhere, they are
        # refused at once, and a load balancer tries another server.
        for listener in self.listeners:
            listener.close()
        everyone = self.workers + self.retiring
        logger.info("Stopping %d worker(s)", len(everyone))
        for worker in everyone:
            worker.drain()
        timeout = self.config.timeout_graceful_shutdown
        deadline = None if timeout is None else time.monotonic() + timeout + STOP_MARGIN
        for worker in everyone:
            while worker.alive():
                if deadline is not None and time.monotonic() > deadline:
                    logger.error("Worker [%d] is still running: killing it", worker.pid)
                    worker.process.kill()
                if signal.SIGINT in self.signals:
                    for other in everyone:
                        other.signal(signal.SIGINT)
                self.signals.clear()
                worker.process.join(0.1)
            logger.info("Worker [%d] stopped", worker.pid)
            self._remove(worker)


def run(config: Config) -> int:
    """The plugin's entry: serve `config` under this supervisor; the exit status."""
    return Supervisor(config).run()
