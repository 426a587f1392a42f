"""WSGI applications in ketch's thread pool: streamed responses go out chunk by
chunk, a client that leaves stops its stream, and clients that send their
bodies slowly cannot take every thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from support import RawConnection, serve, wait_for

SECONDS = 10  # what any wait here may take at most


def test_each_chunk_goes_out_as_it_is_yielded() -> None:
    """A server-sent-events style generator: its first line arrives while it
    waits for the next."""
    release = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        yield b"data: first\n\n"
        release.wait(SECONDS)
        yield b"data: second\n\n"

    with serve(app, interface="wsgi") as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.read_until(b"\r\n\r\n", timeout=5)
        assert b"transfer-encoding: chunked" in head.lower()
        assert b"data: first" in conn.read_until(b"data: first\n\n\r\n", timeout=5)
        release.set()
        assert b"data: second" in conn.read_until(b"0\r\n\r\n", timeout=5)


def test_only_a_one_item_sequence_gets_a_content_length() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        kind = environ["PATH_INFO"]
        if kind == "/list":
            return [b"one item"]
        if kind == "/tuple":
            return (b"two ", b"items")
        return iter([b"one item from an iterator"])

    with serve(app, interface="wsgi") as running:
        one = httpx.get(running.url + "/list")
        two = httpx.get(running.url + "/tuple")
        iterator = httpx.get(running.url + "/iterator")
    assert (one.text, one.headers.get("content-length")) == ("one item", "8")
    assert (two.text, two.headers.get("transfer-encoding")) == ("two items", "chunked")
    assert iterator.headers.get("transfer-encoding") == "chunked"
    assert iterator.text == "one item from an iterator"


def test_a_stream_stops_when_its_client_leaves() -> None:
    """The app's iterable is closed at its next chunk, not run to its end in a
    thread that no one reads from."""
    closed = threading.Event()
    ticks: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            for tick in range(SECONDS * 20):  # endless, for a client
                ticks.append(tick)
                yield b"tick\n"
                time.sleep(0.05)  # the app's pace
        finally:
            closed.set()

    with serve(app, interface="wsgi") as running:
        with RawConnection(running.port) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.read_until(b"tick\n", timeout=5)
        wait_for(closed.is_set, timeout=5)
    assert len(ticks) < SECONDS * 20


def test_slow_request_bodies_leave_threads_for_everyone_else() -> None:
    """Sixteen clients drip their bodies into a pool of four threads: those with
    small bodies get no thread until their body is in, those with long ones get
    at most half of the threads, and other requests are served meanwhile."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pong" if environ["PATH_INFO"] == "/ping" else b"%d" % len(body)]

    def dripping(port: int, length: int, sent: int) -> RawConnection:
        conn = RawConnection(port, timeout=SECONDS)
        conn.send(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length + b"x" * sent
        )
        return conn

    with serve(app, interface="wsgi", wsgi_threads=4) as running:
        port = running.port
        attackers = [dripping(port, 1000, 10) for _ in range(8)]
        attackers += [dripping(port, 10 * 1024 * 1024, 100 * 1024) for _ in range(8)]
        try:
            with httpx.Client(base_url=running.url, timeout=5) as client:
                for _ in range(5):
                    assert client.get("/ping").text == "pong"
                    assert client.post("/upload", content=b"y" * 20_000).text == "20000"
        finally:
            for conn in attackers:
                conn.close()
        # the threads come back: the app saw its clients leave
        with httpx.Client(base_url=running.url, timeout=5) as client:
            for _ in range(8):
                assert client.get("/ping").text == "pong"
