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

A worker is also replaced (the same way as on SIGHUP) when it reaches
--limit-max-requests, --limit-worker-memory or --limit-worker-lifetime. The
pool and its replacements are `ketch.supervisor.pool.WorkerPool`, the base of
`Supervisor`; this module is the loop that drives them.

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
from ketch.supervisor.pool import CRASHED, RELOAD, SIGHUP, UNRESPONSIVE, WorkerPool
from ketch.supervisor.pool_metrics import PoolMetrics
from ketch.supervisor.systemd_report import SystemdReport
from ketch.supervisor.worker import Wakeup, Worker, resident_memory

logger = logging.getLogger("ketch.error")

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
CHECK_INTERVAL = 0.25  # how often the parent looks at its workers
READY_TIMEOUT = 60.0  # how long a new worker may take to start serving
STOP_MARGIN = 5.0  # beyond --timeout-graceful-shutdown before workers are killed
DUMP_GRACE = 0.5  # time for an unresponsive worker to write its stacks before the kill
CRASH_WINDOW = 10.0  # a worker that dies sooner than this after starting "crashed"


class Supervisor(WorkerPool):
    """Keeps `config.workers` workers serving the sockets it bound once."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        # systemd: set from the environment by run()
        self.systemd = SystemdReport(Notifier())
        self.listeners: list[Listener] = []
        self.signals: deque[int] = deque()
        self.wakeup = Wakeup()
        self.exit_code = 0
        # False under --reload: a worker that fails to start waits for the next change
        self.stop_on_startup_failure = True
        # called once per loop turn: the reload supervisor asks for restarts here
        self.poll_hooks: list[Callable[[], None]] = []

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
            self.reap_retiring(worker, now)
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
            self.check_limits(worker, now)
        self.advance_replacements(now)
        self.resize(now)
        if self.systemd.notify.enabled:
            rolling = self.rolling_reason if self.rolling else None
            self.systemd.turn(
                self.workers, self.retiring, self.requests_done, self.target, rolling, now
            )
        return True

    # --- workers that stop ----------------------------------------------------------------
    def _exited(self, worker: Worker, now: float) -> bool:
        """A worker of the pool exited unasked; False when the server must stop."""
        self.workers.remove(worker)
        self.forget(worker)
        code = worker.process.exitcode
        old = worker.predecessor
        worker.detach()  # a successor it had takes its place
        if old is not None and not worker.ready:
            self.replacement_failed(old, worker, f"exited with status {code}", now)
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
        self.count_restart(CRASHED)
        if now - worker.started_at < CRASH_WINDOW:
            self.back_off(now)
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
        self.retire(worker, drain=False)
        if old is not None and not worker.ready:
            self.replacement_failed(old, worker, why, now)
        else:
            self.count_restart(UNRESPONSIVE)

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
                    self.forget(worker)
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
