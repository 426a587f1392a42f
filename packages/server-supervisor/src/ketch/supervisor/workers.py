"""`--workers N`: one parent that binds the sockets and keeps N healthy workers.

Signals (to the parent), each safe at every moment: while the workers start,
while they wait out a crash back-off, during a rolling restart, during shutdown.

- SIGINT/SIGTERM: every worker drains gracefully; the parent exits 0. A second
  SIGINT forces the workers out.
- SIGHUP: rolling restart. One worker at a time, a replacement is started and
  serves before the old worker is told to drain. A `--config` file is read
  again first: the new workers take its settings
  (`ketch.core.config_file.reread`); a bad file keeps the running workers.
- SIGTTIN / SIGTTOU: one worker more / fewer (never fewer than one).

The parent's loop never waits on one worker. It wakes at each signal and four
times a second, and each turn takes a step: reap the workers that exited,
health-check the others, advance the replacements under way, grow or shrink the
pool to its size. A rolling restart is state that those turns advance (the
workers still to replace, in order), so a SIGTERM is acted on at the next turn
and health checks go on during a restart.

A worker is replaced the same way as on SIGHUP (it serves on until its
successor serves, then drains) when it reaches --limit-max-requests, when its
resident memory passes --limit-worker-memory (read from /proc on the health
check beat) and when it has run for --limit-worker-lifetime seconds (plus a
random --limit-worker-lifetime-jitter). Each replacement is logged with its
reason and counted in `Supervisor.restarts`.

Under systemd (`Type=notify`) the parent says READY=1 once every worker
serves, RELOADING=1 at a rolling restart and READY=1 again when the new pool
serves, STOPPING=1 at shutdown, a STATUS= line ("4 workers, 1,234 requests"),
and WATCHDOG=1 only while the workers pass their health checks.

With --metrics-port the parent serves the whole pool's metrics
(`ketch.supervisor.pool_metrics`).

Every second the parent pings each worker over a pipe that the worker answers
from its event loop. A worker that does not answer within
`--timeout-worker-healthcheck` has its Python stacks dumped to the log and is
killed and replaced. A worker that exits is replaced (with growing delays if it
keeps crashing), except one that failed its startup (exit status 3, or an error
before it served): then the whole server stops, as a restart would fail the
same way.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from types import FrameType

from ketch.core import Config
from ketch.core.config_file import reread
from ketch.core.errors import STARTUP_FAILURE, ConfigError
from ketch.core.sockets import Listener, bind, describe
from ketch.core.systemd import Notifier
from ketch.supervisor.child import DUMP_STACKS
from ketch.supervisor.pool_metrics import PoolMetrics
from ketch.supervisor.systemd_report import SystemdReport
from ketch.supervisor.worker import MIB, PING_INTERVAL, Wakeup, Worker, resident_memory

logger = logging.getLogger("ketch.error")

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
CHECK_INTERVAL = 0.25  # how often the parent looks at its workers
READY_TIMEOUT = 60.0  # how long a new worker may take to start serving
STOP_MARGIN = 5.0  # beyond --timeout-graceful-shutdown before workers are killed
DUMP_GRACE = 0.5  # time for an unresponsive worker to write its stacks before the kill
CRASH_WINDOW = 10.0  # a worker that dies sooner than this after starting "crashed"
MAX_BACKOFF = 30.0

# Why workers were replaced: the keys of `Supervisor.restarts`.
CRASHED = "crashed"  # exited without being asked to
UNRESPONSIVE = "unresponsive"  # missed its health check, killed
MAX_REQUESTS = "max-requests"  # --limit-max-requests
MEMORY = "memory"  # --limit-worker-memory
LIFETIME = "lifetime"  # --limit-worker-lifetime
SIGHUP = "SIGHUP"  # a rolling restart asked for with SIGHUP
RELOAD = "reload"  # a rolling restart for changed files (--reload)
RESTART_REASONS = (CRASHED, UNRESPONSIVE, MAX_REQUESTS, MEMORY, LIFETIME, SIGHUP, RELOAD)


class Supervisor:
    """Keeps `config.workers` workers serving the sockets it bound once."""

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
        # systemd: set from the environment by run()
        self.systemd = SystemdReport(Notifier())
        self.listeners: list[Listener] = []
        self.signals: deque[int] = deque()
        self.wakeup = Wakeup()
        self.crashes = 0
        self.next_spawn = 0.0
        self.exit_code = 0
        self.sockets: list[object] = []
        # False under --reload: a worker that fails to start waits for the next change
        self.stop_on_startup_failure = True
        self.paused = False  # no new workers until reload() (after a failed start)
        # called once per loop turn: the reload supervisor asks for restarts here
        self.poll_hooks: list[Callable[[], None]] = []
        self.metrics: PoolMetrics | None = None  # --metrics-port

    # --- the parent's loop --------------------------------------------------------------
    def run(self) -> int:
        # first of all: from here on every signal only queues work for the loop
        previous = {sig: signal.signal(sig, self._on_signal) for sig in HANDLED}
        # before any worker starts: they must not inherit systemd's variables
        self.systemd = SystemdReport(Notifier.from_environment())
        try:
            if self.config.metrics_port is not None:
                self.metrics = PoolMetrics(self.config, self.restarts)
            self.listeners = bind(self.config)
            self.sockets = [listener.sock for listener in self.listeners]
            for listener in self.listeners:
                os.set_inheritable(listener.sock.fileno(), True)
                logger.info(
                    "ketch running on %s (Press CTRL+C to quit)",
                    describe(listener.sock, self.config.is_ssl),
                )
            logger.info("Started parent process [%d]", os.getpid())
            if self.metrics is not None:
                self.metrics.start()
            if self.config.limit_worker_memory and resident_memory(os.getpid()) is None:
                logger.warning(
                    "--limit-worker-memory reads /proc/<pid>/statm, which this system does "
                    "not have: the memory limit is not enforced"
                )
            try:
                self._loop()
            finally:
                self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for listener in self.listeners:
                listener.close()
            self.systemd.notify.close()
            if self.metrics is not None:
                self.metrics.close()
        logger.info("Stopping parent process [%d]", os.getpid())
        return self.exit_code

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        self.wakeup.set()

    def _loop(self) -> None:
        """Turn after turn until a signal or a failed startup says stop. No turn
        waits on a worker; whatever one worker does, the loop goes on."""
        while True:
            if self._take_signals():
                return
            try:
                for hook in self.poll_hooks:
                    hook()
                if not self._supervise(time.monotonic()):
                    return
            except Exception:
                logger.exception("Error in the supervisor's loop; it goes on")
            # a new worker's READY wakes the loop too: a hand-over waits for nothing
            self.wakeup.wait(
                CHECK_INTERVAL, [w.health.fileno() for w in self.workers if not w.ready]
            )

    def _take_signals(self) -> bool:
        """Act on the queued signals, in order; True at SIGINT/SIGTERM."""
        while self.signals:
            sig = self.signals.popleft()
            if sig in (signal.SIGINT, signal.SIGTERM):
                return True
            if sig == signal.SIGHUP:
                logger.info("Received SIGHUP: restarting workers one by one")
                self.restart_all(SIGHUP)
            elif sig == signal.SIGTTIN:
                self.target += 1
                logger.info("Received SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU and self.target > 1:
                self.target -= 1
                logger.info("Received SIGTTOU: %d workers", self.target)
            elif sig == signal.SIGTTOU:
                logger.info("Received SIGTTOU: keeping the last worker")
        return False

    def _supervise(self, now: float) -> bool:
        """One turn: reap, health-check, replace, resize; False when the server must stop."""
        for worker in list(self.retiring):
            self._reap_retiring(worker, now)
        for worker in list(self.workers):
            if worker not in self.workers:
                continue  # retired earlier in this turn
            worker.receive(now)
            if not worker.alive():
                if not self._exited(worker, now):
                    return False
                continue
            # a worker still starting (importing the app) gets READY_TIMEOUT
            timeout = self.config.timeout_worker_healthcheck if worker.ready else READY_TIMEOUT
            if worker.overdue(now, timeout):
                self._kill_unresponsive(
                    worker, f"did not answer its health check within {timeout:.0f}s", now
                )
                continue
            replacing = worker.predecessor is not None and not worker.ready
            if replacing and now - worker.started_at > READY_TIMEOUT:
                # a replacement that never serves: the old worker stays
                self._kill_unresponsive(
                    worker, f"did not start serving within {READY_TIMEOUT:.0f}s", now
                )
                continue
            worker.ping(now)
            self._check_limits(worker, now)
        self._advance_replacements(now)
        self._resize(now)
        if self.systemd.notify.enabled:
            rolling = self.rolling_reason if self.rolling else None
            self.systemd.turn(
                self.workers, self.retiring, self.requests_done, self.target, rolling, now
            )
        return True

    # --- workers that stop ----------------------------------------------------------------
    def _reap_retiring(self, worker: Worker, now: float) -> None:
        worker.receive(now)
        if not worker.alive():
            self.retiring.remove(worker)
            self._forget(worker)
        elif worker.kill_at is not None and now >= worker.kill_at:
            worker.process.kill()

    def _exited(self, worker: Worker, now: float) -> bool:
        """A worker of the pool exited unasked; False when the server must stop."""
        self.workers.remove(worker)
        self._forget(worker)
        code = worker.process.exitcode
        old = worker.predecessor
        worker.detach()  # a successor it had takes its place
        if old is not None and not worker.ready:
            self._replacement_failed(old, worker, f"exited with status {code}", now)
            return True
        if code is not None and (code == STARTUP_FAILURE or (code > 0 and not worker.ready)):
            if not self.stop_on_startup_failure:
                logger.error(
                    "Worker [%d] failed to start (exit status %s): waiting for a change",
                    worker.pid,
                    code,
                )
                self.paused = True
                return True
            logger.error(
                "Worker [%d] failed to start (exit status %s): stopping. "
                "Fix the error above and start ketch again.",
                worker.pid,
                code,
            )
            self.exit_code = STARTUP_FAILURE
            return False
        if code == 0:
            logger.info("Worker [%d] exited; starting a new one", worker.pid)
        else:
            logger.warning("Worker [%d] died (exit status %s); restarting", worker.pid, code)
        self._count_restart(CRASHED)
        if now - worker.started_at < CRASH_WINDOW:
            self._back_off(now)
            logger.warning(
                "Worker crashed soon after starting; waiting %.1fs", self.next_spawn - now
            )
        else:
            self.crashes = 0
        return True

    def _kill_unresponsive(self, worker: Worker, why: str, now: float) -> None:
        """Dump its stacks, kill it a moment later (from a later turn), replace it."""
        logger.error(
            "Worker [%d] %s; its stacks follow, then it is killed and replaced", worker.pid, why
        )
        worker.signal(DUMP_STACKS)
        worker.kill_at = now + DUMP_GRACE
        old = worker.predecessor
        self._retire(worker, drain=False)
        if old is not None and not worker.ready:
            self._replacement_failed(old, worker, why, now)
        else:
            self._count_restart(UNRESPONSIVE)

    def _retire(self, worker: Worker, drain: bool = True, restart: bool = False) -> None:
        """Out of the pool, told to drain (unless it is being killed)."""
        if worker in self.workers:
            self.workers.remove(worker)
        worker.detach()
        if drain:
            worker.drain(restart)
        self.retiring.append(worker)

    def _forget(self, worker: Worker) -> None:
        """A worker has exited (and said its last words): its requests go to the
        total, its final counts to the metrics."""
        self.requests_done += worker.requests
        worker.close()
        if self.metrics is not None:
            self.metrics.ended(worker)

    def _back_off(self, now: float) -> None:
        """Workers keep dying: wait longer before each new one (0.5 s, 1 s, ... 30 s)."""
        self.crashes += 1
        self.next_spawn = now + min(MAX_BACKOFF, 0.5 * 2 ** (self.crashes - 1))

    def _count_restart(self, reason: str) -> None:
        self.restarts[reason] += 1

    # --- replacements -------------------------------------------------------------------
    def _check_limits(self, worker: Worker, now: float) -> None:
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

    def _advance_replacements(self, now: float) -> None:
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
            self._retire(worker, restart=True)
            self._count_restart(reason)

    def _replacement_failed(self, old: Worker, new: Worker, why: str, now: float) -> None:
        logger.error("Worker [%d] %s; worker [%d] serves on", new.pid, why, old.pid)
        if self.rolling and self.rolling[0] is old:
            logger.error("Worker [%d] did not start serving; keeping the running workers", new.pid)
            self.rolling.clear()
            self.config = self.serving_config
        else:
            self._back_off(now)  # then the next successor is tried

    def _resize(self, now: float) -> None:
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
                    self._retire(worker.successor)
                self._retire(worker)
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
            self._back_off(now)
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

    # --- restarts -----------------------------------------------------------------------
    def config_for_restart(self) -> Config:
        """The configuration of the workers a rolling restart starts (SIGHUP, a
        reload): the `--config` file read again (ConfigError if it is bad)."""
        return reread(self.config)

    def reload(self) -> None:
        """New code: restart the pool, or start it if the last start failed."""
        if self.paused or not self.workers:
            self.systemd.reloading()
            self.paused = False
            self.next_spawn = 0.0
            self.crashes = 0
            return
        self.restart_all(RELOAD)

    def restart_all(self, reason: str = SIGHUP) -> None:
        """Replace every worker, one at a time, each replacement serving before the
        old one drains. If a replacement does not start, the old workers stay.
        A restart asked for during another one starts over with every worker."""
        try:
            config = self.config_for_restart()
        except Exception as exc:  # a bad file (one line), or a bug (a traceback)
            logger.error(
                "%s; keeping the running workers", exc, exc_info=not isinstance(exc, ConfigError)
            )
            return
        self.systemd.reloading()
        # kept, for the case the new settings do not start: replacements of
        # workers that die later must be started with what serves
        self.serving_config, self.config = self.config, config
        self.rolling = list(self.workers)
        self.rolling_reason = reason
        # a restart is a fresh start: no back-off left from earlier crashes
        self.crashes = 0
        self.next_spawn = 0.0

    # --- stopping -----------------------------------------------------------------------
    def _stop_all(self) -> None:
        """Drain every worker, waiting at most --timeout-graceful-shutdown plus a
        margin (a worker not serving yet gets only the margin: it has nothing to
        finish); a SIGINT meanwhile (a second Ctrl+C) forces them out."""
        # Stop accepting first: while the parent holds the listening sockets,
        # connections still queue in the backlog after the workers close theirs,
        # and are reset when the parent exits. Closed everywhere, they are
        # refused at once, and a load balancer tries another server.
        for listener in self.listeners:
            listener.close()
        everyone = self.workers + self.retiring
        self.workers, self.retiring, self.rolling = [], [], []
        logger.info("Stopping %d worker(s)", len(everyone))
        self.systemd.notify.stopping(f"stopping {len(everyone)} worker(s)")
        now = time.monotonic()
        timeout = self.config.timeout_graceful_shutdown
        drained_by = None if timeout is None else now + timeout + STOP_MARGIN
        deadlines: dict[Worker, float | None] = {}
        for worker in everyone:
            worker.receive(now)  # a READY not read yet: it serves, so it drains in full
            if worker.kill_at is not None:
                worker.process.kill()  # unresponsive: it was being killed anyway
            else:
                worker.drain()
            deadlines[worker] = drained_by if worker.ready else now + STOP_MARGIN
        forced = False
        while everyone:
            if signal.SIGINT in self.signals and not forced:
                forced = True
                for worker in everyone:
                    if worker.ready:
                        worker.signal(signal.SIGINT)
                    else:
                        worker.process.kill()  # still starting: it serves nothing
            self.signals.clear()
            now = time.monotonic()
            for worker in list(everyone):
                if not worker.alive():
                    logger.info("Worker [%d] stopped", worker.pid)
                    everyone.remove(worker)
                    worker.receive(now)
                    self._forget(worker)
                    continue
                deadline = deadlines[worker]
                if deadline is not None and now > deadline:
                    logger.error("Worker [%d] is still running: killing it", worker.pid)
                    worker.process.kill()
                    deadlines[worker] = None
            self.wakeup.wait(0.05)


def run(config: Config) -> int:
    """The plugin's entry: serve `config` under this supervisor; the exit status."""
    return Supervisor(config).run()
