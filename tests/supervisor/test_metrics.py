"""The pool's metrics under --workers: served once by the supervisor, counters
over every worker of the run (a killed and replaced one included), gauges over
the live ones."""

from __future__ import annotations

import os
import signal
import socket

import httpx
from support import KetchProcess, free_port, wait_for, wait_workers, worker_pids
from support.metrics import requests_served, scrape, value


def test_the_request_counter_survives_a_killed_worker_exactly() -> None:
    port, metrics_port = free_port(), free_port()
    args = ["support.apps:observed", "--port", str(port), "--workers", "2"]
    with KetchProcess([*args, "--metrics-port", str(metrics_port)]) as process:
        wait_workers(process.proc.pid, 2, timeout=30)
        process.wait_for_output(r"(?s)(Application startup complete.*){2}", timeout=30)
        sent = 0
        served_by: dict[str, int] = {}

        def request() -> str:
            nonlocal sent
            # a new connection each time, so that both workers take some
            response = httpx.get(f"http://127.0.0.1:{port}/", headers={"connection": "close"})
            assert response.status_code == 200
            sent += 1
            pid = response.headers["x-pid"]
            served_by[pid] = served_by.get(pid, 0) + 1
            return pid

        wait_for(lambda: request() and len(served_by) == 2 and sent >= 20, timeout=30)
        # every response the client has is counted (the workers write as they serve)
        wait_for(lambda: requests_served(metrics_port) == sent)

        victim = int(next(iter(served_by)))
        os.kill(victim, signal.SIGKILL)  # no goodbye: its counts are read from shared memory
        wait_for(
            lambda: victim not in (pids := worker_pids(process.proc.pid)) and len(pids) == 2,
            timeout=30,
        )
        before = sent
        wait_for(lambda: request() and sent - before >= 20, timeout=30)
        samples = scrape(metrics_port)
        assert value(samples, "ketch_requests_total", method="GET", status="2xx") == sent
        assert value(samples, "ketch_request_duration_seconds_count") == sent
        assert value(samples, "ketch_response_body_bytes_total") == 10 * sent
        assert value(samples, "ketch_requests_in_progress") == 0
        assert value(samples, "ketch_workers") == 2
        assert value(samples, "ketch_worker_restarts_total", reason="crashed") == 1
        assert value(samples, "ketch_worker_restarts_total", reason="SIGHUP") == 0
        # the workers serve no metrics of their own: only the supervisor listens
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", metrics_port)) == 0
        assert f"Metrics on http://127.0.0.1:{metrics_port}/metrics" in process.output
        assert process.output.count("Metrics on") == 1

        process.signal(signal.SIGHUP)  # a rolling restart: two more replacements
        wait_for(
            lambda: (
                value(scrape(metrics_port), "ketch_worker_restarts_total", reason="SIGHUP") == 2
            ),
            timeout=30,
        )
        assert requests_served(metrics_port) == sent
