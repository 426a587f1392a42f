"""The workers of `--workers N` and how the pool changes: a worker is started,
retired (told to drain, or killed), replaced without losing capacity, and the
pool is resized to its target. `ketch.supervisor.workers.Supervisor` builds
its loop (signals, health checks, exits, shutdown) on this class.

A worker is replaced the same way as on SIGHUP (it serves on until its
successor serves, then drains) when it reaches --limit-max-requests, when its
resident memory passes --limit-worker-memory (read from /proc on the health
check beat) and when it has run for --limit-worker-lifetime seconds (plus a
random --limit-worker-lifetime-jitter). Each replacement is logged with its
reason and counted in `restarts`. A rolling restart replaces every worker that
way, one at a time; if a replacement does not start, the old workers stay.
"""

from __future__ import annotations

import logging
import random

from ketch.core import Config
from ketch.supervisor.pool_metrics import PoolMetrics
from ketch.supervisor.worker import MIB, PING_INTERVAL, Worker, resident_memory

logger = logging.getLogger("ketch.error")

MAX_BACKOFF = 30.0  # the longest wait before a new worker after repeated crashes

# Why workers were replaced: the keys of `WorkerPool.restarts`.
CRASHED = "crashed"  # exited without being asked to
UNRESPONSIVE = "unresponsive"  # missed its health check, killed
MAX_REQUESTS = "max-requests"  # --limit-max-requests
MEMORY = "memory"  # --limit-worker-memory
LIFETIME = "lifetime"  # --limit-worker-lifetime
SIGHUP = "SIGHUP"  # a rolling restart asked for with SIGHUP
RELOAD = "reload"  # a rolling restart for changed files (--reload)
RESTART_REASONS = (CRASHED, UNRESPONSIVE, MAX_REQUESTS, MEMORY, LIFETIME, SIGHUP, RELOAD)


class WorkerPool:
    """`config.workers` workers sharing the sockets bound once, and the
    replacements under way among them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers or 1
        # the pool: workers serving or starting (replacements included)
        self.workers: list[Worker] = []
        # told to drain (or being killed), waiting to be reaped
        self.retiring: list[Worker] = []
        # a rolling restart under way: the workers still to replace, in order
        self.rolling: list[Worker] = []
        self.rolling_reason = SIGHUP
        self.serving_config = config  # what the running workers were started with
        # how many workers were replaced, by reason (one place, for metrics)
        self.restarts: dict[str, int] = dict.fromkeys(RESTART_REASONS, 0)
        self.requests_done = 0  # served by workers that have exited
        self.crashes = 0
        self.next_spawn = 0.0
        self.sockets: list[object] = []
        self.paused = False  # no new workers until reload() (after a failed start)
        self.metrics: PoolMetrics | None = None  # --metrics-port

    # --- workers that leave, crashes, counts -------------------------------------------------
    def reap_retiring(self, worker: Worker, now: float) -> None:
        worker.receive(now)
        if not worker.alive():
            self.retiring.remove(worker)
            self.forget(worker)
        elif worker.kill_at is not None and now >= worker.kill_at:
            worker.process.kill()

    def retire(self, worker: Worker, drain: bool = True, restart: bool = False) -> None:
        """Out of the pool, told to drain (unless it is being killed)."""
        if worker in self.workers:
            self.workers.remove(worker)
        worker.detach()
        if drain:
            worker.drain(restart)
        self.retiring.append(worker)

    def forget(self, worker: Worker) -> None:
        """A worker has exited (and said its last words): its requests go to the
        total, its final counts to the metrics."""
        self.requests_done += worker.requests
        worker.close()
        if self.metrics is not None:
            self.metrics.ended(worker)

    def back_off(self, now: float) -> None:
        """Workers keep dying: wait longer before each new one (0.5 s, 1 s, ... 30 s)."""
        self.crashes += 1
        self.next_spawn = now + min(MAX_BACKOFF, 0.5 * 2 ** (self.crashes - 1))

    def count_restart(self, reason: str) -> None:
        self.restarts[reason] += 1

    # --- replacements -------------------------------------------------------------------
    def check_limits(self, worker: Worker, now: float) -> None:
        """Mark a serving worker for replacement once it reaches a limit."""
        if worker.due is not None or not worker.ready:
            return
        config = self.config
        if worker.at_limit:
            worker.due = MAX_REQUESTS
            logger.info("Worker [%d] reached its request limit; replacing it", worker.pid)
        elif worker.expires is not None and now >= worker.expires:
            worker.due = LIFETIME
            logger.info(
                "Worker [%d] has run for %.0fs (--limit-worker-lifetime %gs); replacing it",
                worker.pid,
                now - worker.started_at,
                config.limit_worker_lifetime,
            )
        elif config.limit_worker_memory and now - worker.memory_checked >= PING_INTERVAL:
            worker.memory_checked = now  # on the health check beat
            resident = resident_memory(worker.pid)
            if resident is not None and resident > config.limit_worker_memory * MIB:
                worker.due = MEMORY
                logger.warning(
                    "Worker [%d] uses %d MiB (--limit-worker-memory %d); replacing it",
                    worker.pid,
                    resident // MIB,
                    config.limit_worker_memory,
                )

    def advance_replacements(self, now: float) -> None:
        """Take the next step of every replacement under way: the workers due for
        one (each on its own), and the rolling restart (one worker at a time)."""
        for worker in list(self.workers):
            if worker.due is not None and worker in self.workers:
                self._hand_over(worker, worker.due, now)
        while self.rolling and self.rolling[0] not in self.workers:
            self.rolling.pop(0)  # replaced, or gone meanwhile
            if not self.rolling:
                logger.info("Every worker restarted (%s)", self.rolling_reason)
        if self.rolling:
            self._hand_over(self.rolling[0], self.rolling_reason, now)

    def _hand_over(self, worker: Worker, reason: str, now: float) -> None:
        """A worker to replace serves on until its successor serves; then it
        drains. Capacity never drops, not even with one worker."""
        successor = worker.successor
        if successor is None:
            if self.paused or now < self.next_spawn:
                return
            successor = self._spawn(now)
            if successor is not None:
                worker.successor, successor.predecessor = successor, worker
        elif successor.ready:
            logger.info(
                "Worker [%d] serves in place of worker [%d] (%s), which drains",
                successor.pid,
                worker.pid,
                reason,
            )
            self.retire(worker, restart=True)
            self.count_restart(reason)

    def replacement_failed(self, old: Worker, new: Worker, why: str, now: float) -> None:
        """A successor exited or hung before it served: `old` serves on. A rolling
        restart stops there (its settings do not start); a single replacement
        is tried again after a back-off."""
        logger.error("Worker [%d] %s; worker [%d] serves on", new.pid, why, old.pid)
        if self.rolling and self.rolling[0] is old:
            logger.error("Worker [%d] did not start serving; keeping the running workers", new.pid)
            self.rolling.clear()
            self.config = self.serving_config
        else:
            self.back_off(now)  # then the next successor is tried

    # --- the size of the pool --------------------------------------------------------------
    def resize(self, now: float) -> None:
        """SIGTTIN/SIGTTOU and replacing the dead: as many slots as the target, a
        worker and the successor starting in its place sharing one slot."""
        slots = [worker for worker in self.workers if worker.predecessor is None]
        surplus = len(slots) - self.target
        if surplus > 0:
            # first the workers being replaced anyway, then those not serving yet,
            # then the youngest
            slots.sort(
                key=lambda w: (w.due is None and w not in self.rolling, w.ready, -w.started_at)
            )
            for worker in slots[:surplus]:
                logger.info("Stopping worker [%d]: %d wanted", worker.pid, self.target)
                if worker.successor is not None:
                    self.retire(worker.successor)
                self.retire(worker)
        missing = self.target - len(slots)
        while missing > 0 and not self.paused and now >= self.next_spawn:
            if self._spawn(now) is None:
                break
            missing -= 1

    def _spawn(self, now: float) -> Worker | None:
        try:
            metrics_dir = self.metrics.directory if self.metrics is not None else None
            worker = Worker(self.config, self.sockets, metrics_dir)
        except OSError as exc:  # out of processes or memory: try again later
            self.back_off(now)
            logger.error(
                "Cannot start a worker process (%s); trying again in %.1fs",
                exc,
                self.next_spawn - now,
            )
            return None
        lifetime = self.config.limit_worker_lifetime
        if lifetime is not None:
            jitter = random.uniform(0, self.config.limit_worker_lifetime_jitter)
            worker.expires = worker.started_at + lifetime + jitter
        self.workers.append(worker)
        if self.metrics is not None:
            self.metrics.started(worker)
        logger.info("Started worker process [%d]", worker.pid)
        return worker
