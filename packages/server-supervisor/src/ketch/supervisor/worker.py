"""One worker process, as the parent sees it: the process, the parent's end of
its health pipe, what it last said (ready, its request count, at its limit),
and how to signal it. Also the pipe that wakes the parent's loop, safe to poke
from a signal handler."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import time
import weakref
from collections.abc import Iterable
from multiprocessing.process import BaseProcess

from ketch.core import Config
from ketch.core.metrics import Metrics
from ketch.supervisor.child import AT_LIMIT, PING, READY, worker_main

PING_INTERVAL = 1.0  # a health check a second after the last answer
MIB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_memory(pid: int) -> int | None:
    """Bytes of a process in RAM (its resident set size) from /proc on Linux;
    None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class Wakeup:
    """Wakes the parent's loop, from a signal handler or another thread.

    A pipe, not a threading.Event: setting an Event from a signal handler
    deadlocks when the signal lands while the loop holds the Event's lock (in
    its wait() or clear()), and the parent then hangs for good."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        # closed once nothing can call set() any more (a file watcher's thread may
        # hold it after the supervisor is done)
        weakref.finalize(self, _close, self._read, self._write)

    def set(self) -> None:
        try:
            os.write(self._write, b"!")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def wait(self, timeout: float, also: Iterable[int] = ()) -> None:
        """Until set(), something to read in `also`, or `timeout` seconds; then clear."""
        select.select([self._read, *also], [], [], timeout)
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


class Worker:
    """One worker process and the parent's end of its health pipe."""

    def __init__(
        self, config: Config, sockets: list[object], metrics_dir: str | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.health, child_end = context.Pipe()
        # its metrics, in a file of `metrics_dir` that both processes map
        self.metrics: Metrics | None = None
        path = None
        if metrics_dir is not None:
            self.metrics, path = Metrics.create(metrics_dir)
        self.process: BaseProcess = context.Process(
            target=worker_main, args=(config, sockets, child_end, path), name="ketch-worker"
        )
        try:
            self.process.start()
        except BaseException:
            self.health.close()
            if self.metrics is not None:
                self.metrics.close()
            raise
        finally:
            child_end.close()
        now = time.monotonic()
        self.started_at = now
        self.ready = False
        self.requests = 0  # served so far, as it last said
        self.at_limit = False  # reached --limit-max-requests
        # why it is to be replaced (a RESTART_REASONS key), once it must be
        self.due: str | None = None
        self.successor: Worker | None = None  # its replacement, while that starts
        self.predecessor: Worker | None = None  # the worker this one is to replace
        self.expires: float | None = None  # when --limit-worker-lifetime is up
        self.memory_checked = now
        self.ping_sent: float | None = None
        self.last_answer = now
        self.kill_at: float | None = None  # unresponsive: killed then, after its stacks

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def receive(self, now: float) -> None:
        """Read what the worker said: answers to pings, readiness, its request limit."""
        try:
            while self.health.poll():
                answer = self.health.recv_bytes()
                self.ping_sent = None
                self.last_answer = now
                kind, requests = answer[:1], answer[1:]
                if kind == READY:
                    self.ready = True
                elif kind == AT_LIMIT:
                    self.at_limit = True
                if requests.isdigit():
                    self.requests = int(requests)
        except (EOFError, OSError):
            pass  # it is exiting: its exit is handled as such

    def ping(self, now: float) -> None:
        """Send the next health check, a second after the last answer."""
        if self.ping_sent is None and now - self.last_answer >= PING_INTERVAL:
            self.ping_sent = now
            try:
                self.health.send_bytes(PING)
            except OSError:
                pass  # exiting, or it misses this health check

    def overdue(self, now: float, timeout: float) -> bool:
        return self.ping_sent is not None and now - self.ping_sent > timeout

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def drain(self, restart: bool = False) -> None:
        """Tell the worker to finish what it serves and exit."""
        self.signal(signal.SIGHUP if restart else signal.SIGTERM)

    def detach(self) -> None:
        """No longer part of a hand-over (either side)."""
        if self.successor is not None:
            self.successor.predecessor = None
        if self.predecessor is not None:
            self.predecessor.successor = None
        self.successor = self.predecessor = None

    def close(self) -> None:
        self.health.close()
