"""`--workers N` stops accepting at once on SIGTERM, in the parent too.

Had the parent kept its copy of the listening socket while the workers drain,
new connections would wait in the backlog and be reset when it exits; a load
balancer cannot retry a POST it has already sent (tests/integration/
test_many_machines.py shows that end to end).
"""

from __future__ import annotations

import signal
import socket

from support import KetchProcess, RawConnection, free_port, wait_for, wait_workers


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_new_connections_are_refused_while_workers_drain() -> None:
    port = free_port()
    args = ["support.apps:slow", "--port", str(port), "--workers", "2"]
    with KetchProcess(args) as ketch:
        wait_workers(ketch.proc.pid, 2)
        ketch.wait_for_output(r"(?s)(ketch running on.*){3}", timeout=20)
        with RawConnection(port, timeout=20) as conn:
            conn.send(b"GET /?seconds=3 HTTP/1.1\r\nHost: x\r\n\r\n")
            ketch.wait_for_output("slow request started")
            ketch.signal(signal.SIGTERM)
            wait_for(lambda: _refused(port), timeout=2)  # well before the request ends
            response = conn.read_response()
        assert response.status == 200
        assert response.body == b"slept 3.0"
        assert ketch.wait(20) == 0
