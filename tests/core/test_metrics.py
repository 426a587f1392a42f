"""Prometheus metrics of one server (--metrics-port), read with prometheus-client's
parser: what each metric counts, on a socket of its own."""

from __future__ import annotations

import socket

import httpx
from support import KetchProcess, RawConnection, apps, free_port, run_ketch, serve, wait_for
from support.metrics import scrape, value
from support.websocket import OP_TEXT, RawWebSocket, frame, upgrade_request


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_what_one_server_counts() -> None:
    port, metrics_port = free_port(), free_port()
    args = ["support.apps:observed", "--port", str(port), "--metrics-port", str(metrics_port)]
    with KetchProcess([*args, "--limit-request-headers", "8"]) as process:
        wait_for(lambda: _accepts(metrics_port) and _accepts(port), timeout=15)
        process.wait_for_output(rf"Metrics on http://127\.0\.0\.1:{metrics_port}/metrics")
        url = f"http://127.0.0.1:{port}"
        for _ in range(3):
            assert httpx.get(f"{url}/").status_code == 200
        assert httpx.post(f"{url}/?status=201", content=b"12345").status_code == 201
        assert httpx.get(f"{url}/?status=404").status_code == 404
        assert httpx.get(f"{url}/crash").status_code == 500
        with RawConnection(port) as conn:  # malformed: ketch answers 400 itself
            conn.send(b"NOT HTTP\r\n\r\n")
            assert conn.read_response().status == 400
        with RawConnection(port) as conn:  # too many headers: 431
            conn.send(
                b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(9)) + b"\r\n"
            )
            assert conn.read_response().status == 431
        with RawConnection(port) as conn:  # denied WebSocket handshake
            conn.send(upgrade_request("/no"))
            assert conn.read_response().status == 403
        # still open while scraped: a WebSocket, an idle connection, a request in flight
        with (
            RawWebSocket(port, "/ws") as ws,
            RawConnection(port) as idle,
            RawConnection(port) as busy,
        ):
            for text in (b"one", b"two"):
                ws.send(frame(OP_TEXT, text))
                assert ws.read_frame() == (OP_TEXT, text)
            busy.send(b"GET /?sleep=5 HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.read_response().status == 200
            samples = wait_for(
                lambda: (
                    (s := scrape(metrics_port))
                    and value(s, "ketch_requests_in_progress") == 1
                    and s
                ),
                timeout=5,
            )
        # the app's port never serves the metrics
        assert httpx.get(f"{url}/metrics").content == b"0123456789"
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/other").status_code == 404

    requests = {
        labels: count for (name, labels), count in samples.items() if name == "ketch_requests_total"
    }
    assert requests == {
        (("method", "GET"), ("status", "1xx")): 1,  # the WebSocket handshake's 101
        (("method", "GET"), ("status", "2xx")): 4,
        (("method", "POST"), ("status", "2xx")): 1,
        (("method", "GET"), ("status", "4xx")): 2,  # the 404, the denied handshake
        (("method", "GET"), ("status", "5xx")): 1,
    }
    assert value(samples, "ketch_request_duration_seconds_count") == 9
    assert value(samples, "ketch_request_duration_seconds_bucket", le="+Inf") == 9
    assert 0 < value(samples, "ketch_request_duration_seconds_sum") < 5
    assert value(samples, "ketch_request_body_bytes_total") == 5
    # 10 bytes from each of the six answers of the app, "Internal Server Error" (21), none
    # for the denied handshake
    assert value(samples, "ketch_response_body_bytes_total") == 6 * 10 + 21
    assert value(samples, "ketch_rejected_requests_total", status="400") == 1
    assert value(samples, "ketch_rejected_requests_total", status="431") == 1
    assert value(samples, "ketch_rejected_requests_total", status="408") == 0
    assert value(samples, "ketch_websocket_messages_total", direction="received") == 2
    assert value(samples, "ketch_websocket_messages_total", direction="sent") == 2
    assert value(samples, "ketch_open_connections", protocol="websocket") == 1
    assert value(samples, "ketch_open_connections", protocol="http") == 2


def test_off_builds_nothing_and_on_records_every_exchange() -> None:
    with serve(apps.hello, access_log=False) as running:
        assert running.context.observer is None  # no record, no timestamp per request
        assert running.context.metrics is None
    with serve(apps.hello, access_log=False, metrics_port=0) as running:
        assert running.context.observer is not None


def test_a_metrics_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_ketch(["support.apps:hello", "--port", "0", "--metrics-port", str(port)])
    assert result.returncode != 0
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
