"""Graceful stops over HTTP/2: two GOAWAY frames (RFC 9113 6.8), the streams
already opened finished, no request lost across SIGTERM and rolling restarts."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from support import KetchProcess, RawConnection, free_port, serve, wait_for, worker_pids
from support.apps import hello
from support.h2frames import (
    ACK,
    GOAWAY,
    NO_ERROR,
    PING,
    PREFACE,
    REFUSED_STREAM,
    Multiplexer,
    RawH2,
    frame,
    settings_frame,
)


def test_stop_sends_two_goaways_and_finishes_open_streams() -> None:
    started = 0
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal started
        started += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    with serve(app, http2=True) as running, RawH2(running.port, auto_ack=False) as h2:
        h2.request(1, "/first")
        wait_for(lambda: started == 1)
        running.server.request_exit()
        first = h2.goaway()
        assert (first.last_stream_id, first.error_code) == (2**31 - 1, NO_ERROR)
        probe = h2.read_until(lambda f: f.kind == PING and not f.flags & ACK)
        assert probe is not None
        # a stream opened before the client saw the GOAWAY is still served
        h2.request(3, "/racing")
        wait_for(lambda: started == 2)
        h2.send(frame(PING, ACK, 0, probe.payload))
        second = h2.read_until(lambda f: f.kind == GOAWAY and f.last_stream_id < 2**31 - 1)
        assert second is not None
        assert (second.last_stream_id, second.error_code) == (3, NO_ERROR)
        h2.request(5, "/late")  # after the last GOAWAY: refused, for a retry elsewhere
        assert h2.response(5).reset == REFUSED_STREAM
        running.server._loop.call_soon_threadsafe(release.set)
        assert h2.response(1).body == b"/first"
        assert h2.response(3).body == b"/racing"
        assert h2.wait_closed()
    assert started == 2


def test_a_client_that_never_answers_the_ping_gets_the_second_goaway_anyway() -> None:
    with serve(lambda *a: None, http2=True) as running, RawH2(running.port, auto_ack=False) as h2:
        h2.settled()
        running.server.request_exit()
        assert h2.goaway().last_stream_id == 2**31 - 1
        second = h2.read_until(lambda f: f.kind == GOAWAY and f.last_stream_id != 2**31 - 1)
        assert second is not None and second.error_code == NO_ERROR
        assert h2.wait_closed()


def test_a_connection_still_choosing_its_version_at_shutdown_is_answered() -> None:
    """Connected before the stop, first bytes after it: served, then closed."""
    with (
        serve(hello, http2=True) as running,
        RawConnection(running.port) as plain,
        RawH2(running.port, preface=False) as h2,
    ):
        wait_for(lambda: len(running.context.connections) == 2)
        running.server.request_exit()
        wait_for(lambda: running.context.shutting_down)
        plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = plain.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        h2.send(PREFACE + settings_frame())
        h2.request(1)
        assert h2.response(1).status == 200
        assert h2.wait_closed()


def test_idle_connection_closes_promptly_at_shutdown() -> None:
    with serve(lambda *a: None, http2=True) as running, RawH2(running.port) as h2:
        h2.settled()
        running.server.request_exit()
        assert h2.goaway().last_stream_id == 2**31 - 1
        assert h2.wait_closed(timeout=5)
        assert [f.last_stream_id for f in h2.frames if f.kind == GOAWAY] == [2**31 - 1, 0]


def test_five_sighups_lose_no_multiplexed_request() -> None:
    port = free_port()
    args = ["support.apps:brief", "--http2", "--port", str(port), "--workers", "2"]
    with KetchProcess(args) as ketch:
        parent = ketch.proc.pid
        wait_for(lambda: len(worker_pids(parent)) == 2, timeout=20)
        ketch.wait_started()
        with Multiplexer(port, threads=2, streams=20) as client:
            client.wait_for_requests(200)
            for _ in range(5):
                before = worker_pids(parent)
                ketch.signal(signal.SIGHUP)
                wait_for(lambda b=before: not (worker_pids(parent) & b), timeout=60)
                wait_for(lambda: len(worker_pids(parent)) == 2, timeout=30)
                client.wait_for_requests(200)
    assert client.failures == []
    assert client.connections > 5  # the restarts did move the clients
    assert client.ok > 1000
