"""What systemd hears about the pool of a `Type=notify` unit: READY=1 once every
worker serves, RELOADING=1 at a rolling restart (and READY=1 again when the
new pool serves), a STATUS= line a person reads, and WATCHDOG=1 only while
every serving worker answers its health checks."""

from __future__ import annotations

from ketch.core.systemd import Notifier
from ketch.supervisor.worker import PING_INTERVAL, Worker


class SystemdReport:
    __slots__ = ("announced_ready", "next_status", "next_watchdog", "notify", "status_sent")

    def __init__(self, notify: Notifier) -> None:
        self.notify = notify
        self.announced_ready = False  # READY=1 sent for the pool as it is
        self.status_sent = ""
        self.next_status = 0.0
        self.next_watchdog = 0.0

    def reloading(self) -> None:
        """systemd shows the unit reloading until READY=1, sent once the new pool serves."""
        self.notify.reloading()
        self.announced_ready = False

    def turn(
        self,
        workers: list[Worker],
        retiring: list[Worker],
        requests_done: int,
        target: int,
        rolling: str | None,
        now: float,
    ) -> None:
        """One turn of the supervisor's loop: tell systemd what changed."""
        notify = self.notify
        serving = [worker for worker in workers if worker.ready]
        status = _status(len(serving), requests_done + sum(w.requests for w in workers + retiring))
        if rolling is not None:
            status = f"restarting ({rolling}): {status}"
        if not self.announced_ready and len(serving) >= target and rolling is None:
            self.announced_ready = True
            self.status_sent = status
            notify.ready(status)
        elif now >= self.next_status and status != self.status_sent:
            self.next_status = now + PING_INTERVAL  # the counts change that often at most
            self.status_sent = status
            notify.status(status)
        interval = notify.watchdog_interval
        # the watchdog stands for: some workers serve, and each answered its last
        # health check in time
        healthy = bool(serving) and not any(w.overdue(now, PING_INTERVAL) for w in serving)
        if interval is not None and now >= self.next_watchdog and healthy:
            self.next_watchdog = now + interval
            notify.watchdog()


def _status(serving: int, requests: int) -> str:
    """The pool in a line a person reads (`systemctl status`)."""
    return f"{serving} worker{'' if serving == 1 else 's'}, {requests:,} requests"
