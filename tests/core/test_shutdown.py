"""Graceful shutdown on SIGINT/SIGTERM: in-flight requests are answered, idle
connections closed, lifespan shutdown run; the timeout and a second Ctrl+C cut it short."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from support import KetchProcess, RawConnection, serve
from support.apps import hello

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _slow_request(port: int, seconds: float) -> RawConnection:
    conn = RawConnection(port, timeout=30)
    conn.send(b"GET /?seconds=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(seconds).encode())
    return conn


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_request_in_flight_is_answered_then_exit_0(sig: int) -> None:
    with KetchProcess(["support.apps:slow", "--port", "0", "--lifespan", "on"]) as ketch:
        port = ketch.port()
        with RawConnection(port) as idle:
            idle.send(b"GET /?seconds=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.read_response().status == 200  # now an idle keep-alive connection
            busy = _slow_request(port, 1.0)
            ketch.wait_for_output(r"slow request started \(1.0s\)")
            ketch.signal(sig)
            ketch.wait_for_output("Shutting down")
            assert idle.is_closed(timeout=5)  # idle connections go at once
            response = busy.read_response()
            busy.close()
            assert response.status == 200
            assert response.body == b"slept 1.0"
            assert response.header("connection") == "close"
        assert ketch.wait(10) == 0
        output = ketch.output
    assert "Waiting for application shutdown." in output
    assert "Application shutdown complete." in output
    assert "Finished server process" in output


def test_a_connection_made_before_shutdown_still_gets_its_answer() -> None:
    # A client that connected just before the server stopped and is slow to send
    # its request (a loaded machine, a rolling restart) must not meet a closed
    # socket: unlike a request on a reused connection, nobody retries it.
    with KetchProcess(["support.apps:slow", "--port", "0"]) as ketch:
        port = ketch.port()
        with RawConnection(port) as fresh, RawConnection(port) as other:
            other.send(b"GET /?seconds=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            # accepted in order: once `other` is answered, `fresh` was accepted too
            assert other.read_response().status == 200
            ketch.signal(signal.SIGTERM)
            ketch.wait_for_output("Shutting down")
            time.sleep(1.5)  # the slow client, longer than an idle connection's grace
            fresh.send(b"GET /?seconds=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            response = fresh.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert ketch.wait(10) == 0


def test_new_connections_are_refused_while_draining() -> None:
    with KetchProcess(["support.apps:slow", "--port", "0"]) as ketch:
        port = ketch.port()
        with _slow_request(port, 1.5) as busy:
            ketch.wait_for_output(r"slow request started \(")
            ketch.signal(signal.SIGTERM)
            ketch.wait_for_output("Shutting down")
            with pytest.raises(OSError):
                RawConnection(port, timeout=2).send(GET)
            assert busy.read_response().status == 200
        assert ketch.wait(10) == 0


def test_graceful_timeout_cancels_what_is_left() -> None:
    args = ["support.apps:slow", "--port", "0", "--timeout-graceful-shutdown", "1"]
    with KetchProcess(args) as ketch:
        port = ketch.port()
        with _slow_request(port, 30) as busy:
            ketch.wait_for_output(r"slow request started \(")
            started = time.monotonic()
            ketch.signal(signal.SIGTERM)
            assert ketch.wait(10) == 0
            elapsed = time.monotonic() - started
            assert busy.is_closed(timeout=2)
    assert elapsed < 5
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in ketch.output


def test_second_ctrl_c_forces_exit() -> None:
    with KetchProcess(["support.apps:slow", "--port", "0"]) as ketch:
        port = ketch.port()
        with _slow_request(port, 30):
            ketch.wait_for_output(r"slow request started \(")
            ketch.signal(signal.SIGINT)
            ketch.wait_for_output("Waiting for connections to close")
            started = time.monotonic()
            ketch.signal(signal.SIGINT)
            assert ketch.wait(10) == 0
            assert time.monotonic() - started < 5


def test_shutdown_waits_for_background_tasks() -> None:
    finished = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await hello(scope, receive, send)
        # work after the response (as Starlette's background tasks do)
        import asyncio

        await asyncio.sleep(0.5)
        finished.set()

    with serve(app) as running, RawConnection(running.port) as conn:
        conn.send(GET)
        assert conn.read_response().status == 200
    # leaving serve() stopped the server; it waited for the task
    assert finished.is_set()


def test_sigterm_during_lifespan_startup_runs_the_shutdown_after_it(tmp_path: Any) -> None:
    """The app finishes starting, is shut down as it expects, and never serves."""
    slow = tmp_path / "slow-start"
    slow.write_text("1")
    args = ["support.apps:slow_start", "--port", "0", "--lifespan", "on"]
    with KetchProcess(args, env={"KETCH_TEST_SLOW_START": str(slow)}) as ketch:
        ketch.wait_for_output("slow startup")
        ketch.signal(signal.SIGTERM)
        assert ketch.wait(10) == 0
    assert "Application startup complete" in ketch.output
    assert "Application shutdown complete" in ketch.output
    assert "Traceback" not in ketch.output
    assert "ketch running on" not in ketch.output
