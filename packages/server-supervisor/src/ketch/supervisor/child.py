"""What runs in each worker process: a ketch Server on the sockets the parent
bound, answering the parent's health checks from the server's own event loop."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import socket
import sys
from multiprocessing.connection import Connection

from ketch.core import Config, Server
from ketch.core.metrics import Metrics

logger = logging.getLogger("ketch.error")

# Health protocol on the pipe: the parent writes PING, the child answers READY
# once its server listens (STARTING before that), followed by the number of
# requests it has served, in ASCII digits (b"1" + b"1234"; the parent's STATUS
# line for systemd adds them up). A child that reaches --limit-max-requests
# says AT_LIMIT and serves on until the parent, once a replacement serves,
# tells it to drain. Its last message, as it exits, is its final count.
PING, READY, STARTING, AT_LIMIT = b"?", b"1", b"0", b"L"
# The signal the parent sends to get a stuck worker's stacks in the log.
DUMP_STACKS = signal.SIGUSR1


def worker_main(
    config: Config,
    sockets: list[socket.socket],
    health: Connection,
    metrics_path: str | None = None,
) -> None:
    """The target of every worker process (spawned, so it imports the app itself).
    With `metrics_path`, the server counts into the array the parent created
    there, and the parent serves the pool's metrics."""
    # a worker stuck in Python code can still print where it is
    faulthandler.register(DUMP_STACKS, file=sys.stderr, all_threads=True, chain=False)
    server = Server(config)
    if metrics_path is not None:
        server.metrics = Metrics.attach(metrics_path)
    # tell the parent as soon as we serve, without waiting for its next ping
    server.on_started = lambda: _send(health, READY)
    server.on_request_limit = lambda: _on_request_limit(health, server)

    def prepare(loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(health.fileno(), _answer, health, server)
        # SIGHUP from the parent: drain, a replacement is taking over
        loop.add_signal_handler(signal.SIGHUP, server.request_restart)

    server.run(sockets, prepare=prepare)
    _send(health, _state(server))
    sys.exit(server.exit_code)


def _send(health: Connection, message: bytes) -> None:
    try:
        health.send_bytes(message)
    except OSError:
        pass


def _on_request_limit(health: Connection, server: Server) -> None:
    assert server.context is not None
    logger.warning(
        "Maximum request limit of %d reached: a replacement is starting",
        server.context.max_requests,
    )
    _send(health, AT_LIMIT)


def _state(server: Server) -> bytes:
    """READY or STARTING, then the number of requests served."""
    requests = server.context.total_requests if server.context is not None else 0
    return (READY if server.started else STARTING) + b"%d" % requests


def _answer(health: Connection, server: Server) -> None:
    try:
        while health.poll():
            health.recv_bytes()
            health.send_bytes(_state(server))
    except (EOFError, OSError):
        # the parent is gone: nobody supervises us any more, so stop
        server.request_exit()
