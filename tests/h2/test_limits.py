"""HTTP/2 limits and hostile input, frame by frame: each gets a clear answer
(a status, RST_STREAM or GOAWAY with the right code) and the server keeps
serving everyone else. docs/limits.md lists them."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hpack
import pytest
from support import Running, serve, wait_for
from support.apps import echo, hello
from support.h2frames import (
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    NO_ERROR,
    PREFACE,
    PRIORITY,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    RawH2,
    frame,
    ping,
    rst_stream,
    settings_frame,
    window_update,
)


def assert_serves(running: Running) -> None:
    """Everyone else is still served: a new connection gets an answer."""
    with RawH2(running.port) as other:
        other.request(1, "/now")  # (the held app answers /now at once)
        assert other.response(1).status == 200


@contextmanager
def held_app() -> Iterator[tuple[Any, dict[str, Any]]]:
    """An app whose requests wait until released; it counts what happened."""
    state: dict[str, Any] = {"started": 0, "cancelled": 0, "disconnected": 0, "release": None}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if state["release"] is None:
            state["release"] = asyncio.Event()
        state["started"] += 1
        try:
            if scope["path"] != "/now":
                await state["release"].wait()
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    yield app, state


def release(running: Running, state: dict[str, Any]) -> None:
    running.server._loop.call_soon_threadsafe(state["release"].set)


# --- streams and request limits ---------------------------------------------------------
def test_max_concurrent_streams_is_advertised_and_refused_beyond() -> None:
    with (
        held_app() as (app, state),
        serve(app, http2=True, http2_max_concurrent_streams=3) as running,
        RawH2(running.port) as h2,
    ):
        settings = h2.read_until(lambda f: f.kind == SETTINGS and not f.flags & 1)
        assert settings is not None
        values = dict(struct.iter_unpack("!HI", settings.payload))
        assert values[MAX_CONCURRENT_STREAMS] == 3
        assert values[MAX_HEADER_LIST_SIZE] == 64 * 1024
        for stream_id in (1, 3, 5, 7):
            h2.request(stream_id)
        assert h2.response(7).reset == REFUSED_STREAM
        wait_for(lambda: state["started"] == 3)
        release(running, state)
        assert [h2.response(i).body for i in (1, 3, 5)] == [b"done"] * 3
        h2.request(9)  # a stream is free again
        assert h2.response(9).body == b"done"


def test_header_list_over_the_limit_is_431_and_the_connection_goes_on() -> None:
    with (
        serve(
            hello, http2=True, limit_request_header_size=1024, limit_request_headers=10
        ) as running,
        RawH2(running.port) as h2,
    ):
        h2.request(1, extra=[(b"x-big", b"v" * 1100)])
        assert h2.response(1).status == 431
        h2.request(3, extra=[(b"x-%d" % i, b"v") for i in range(12)])
        assert h2.response(3).status == 431
        h2.request(5)
        assert h2.response(5).status == 200


def test_hpack_bomb_is_not_decoded_past_twice_the_limit() -> None:
    """One 4 KB header in the dynamic table, then referenced 100 times: 400 KB
    decoded from a few hundred bytes. GOAWAY ENHANCE_YOUR_CALM."""
    with serve(hello, http2=True, limit_request_header_size=8192) as running:
        with RawH2(running.port) as h2:
            h2.request(1, extra=[(b"x-bomb", b"b" * 4000)])  # indexed on the way
            assert h2.response(1).status == 200
            block = h2.header_block(h2.request_headers()) + bytes([0xBE]) * 100  # index 62
            h2.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block))
            goaway = h2.goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            assert h2.wait_closed()
        assert_serves(running)


def test_request_body_limit_413_before_and_reset_after_the_response_started() -> None:
    async def streaming_echo(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": b".", "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})

    with serve(echo, http2=True, limit_request_body=1000) as running, RawH2(running.port) as h2:
        h2.request(1, method="POST", extra=[(b"content-length", b"2000")], end_stream=False)
        assert h2.response(1).status == 413
        h2.request(3, method="POST", end_stream=False)  # no length: counted as it comes
        h2.send(frame(DATA, 0, 3, b"x" * 800) + frame(DATA, 0, 3, b"x" * 800))
        response = h2.response(3)
        assert response.status == 413
        h2.request(5, method="POST", body=b"small")
        assert h2.response(5).body == b"small"
    with (
        serve(streaming_echo, http2=True, limit_request_body=1000) as running,
        RawH2(running.port) as h2,
    ):
        h2.request(1, method="POST", end_stream=False)
        h2.send(frame(DATA, 0, 1, b"x" * 600))
        h2.read_until(lambda f: f.kind == DATA and f.stream_id == 1)
        h2.send(frame(DATA, 0, 1, b"x" * 600))
        assert h2.response(1).reset == CANCEL


def test_slow_header_block_is_closed_at_the_header_timeout() -> None:
    with serve(hello, http2=True, timeout_request_header=0.5) as running, RawH2(running.port) as h2:
        h2.settled()
        block = h2.header_block(h2.request_headers())
        h2.send(frame(HEADERS, END_STREAM, 1, block[:5]))  # no END_HEADERS: more to come
        goaway = h2.goaway(timeout=5)
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert h2.wait_closed()


def test_idle_connection_gets_goaway_at_the_keep_alive_timeout() -> None:
    with (
        held_app() as (app, state),
        serve(app, http2=True, timeout_keep_alive=1) as running,
        RawH2(running.port) as idle,
        RawH2(running.port) as busy,
    ):
        idle.request(1, "/now")
        assert idle.response(1).status == 200
        busy.request(1)  # held by the app: not idle
        goaway = idle.goaway(timeout=5)
        assert (goaway.error_code, goaway.last_stream_id) == (NO_ERROR, 1)
        assert idle.wait_closed()
        release(running, state)
        assert busy.response(1).status == 200


def test_a_long_lived_connection_does_not_grow() -> None:
    """h2 remembers how each closed stream ended, for the last 65,536 streams
    (about 9 MB on a proxy's connection that serves for hours); ketch keeps
    the last 1,024."""
    with serve(hello, http2=True) as running, RawH2(running.port) as h2:
        for start in range(1, 3001, 200):
            ids = range(start, start + 200, 2)
            h2.send(b"".join(h2.headers(i, h2.request_headers()) for i in ids))
            for i in ids:
                assert h2.response(i).status == 200
        (connection,) = running.context.connections
        assert len(connection.h2._closed_streams) == 1024  # (h2's record, 1,500 streams on)


# --- floods --------------------------------------------------------------------------
def test_rapid_reset_ends_in_goaway_and_cancels_the_apps_work() -> None:
    """CVE-2023-44487: streams opened and reset at once, over and over."""
    with held_app() as (app, state), serve(app, http2=True) as running:
        with RawH2(running.port) as h2:
            stream_id = 1
            for _ in range(40):  # bursts of 50 streams, each reset once its app runs
                ids = list(range(stream_id, stream_id + 100, 2))
                stream_id += 100
                h2.send(b"".join(h2.headers(i, h2.request_headers()) for i in ids))
                target = (stream_id - 1) // 2

                def started_or_gone() -> bool:
                    h2.poll()
                    gone = h2.closed or any(f.kind == GOAWAY for f in h2.frames)
                    return gone or state["started"] >= target  # noqa: B023

                wait_for(started_or_gone)
                if h2.closed or any(f.kind == GOAWAY for f in h2.frames):
                    break
                h2.send(b"".join(rst_stream(i) for i in ids))
            goaway = h2.goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
        # every app those streams started was cancelled, none still runs
        wait_for(lambda: not running.context.tasks)
        assert state["started"] > 0
        assert state["cancelled"] == state["started"]
        assert_serves(running)


def test_rapid_reset_in_one_burst_starts_no_app() -> None:
    with held_app() as (app, state), serve(app, http2=True) as running:
        with RawH2(running.port) as h2:
            burst = b"".join(
                h2.headers(i, h2.request_headers()) + rst_stream(i) for i in range(1, 4001, 2)
            )
            h2.send(burst)
            assert h2.goaway().error_code == ENHANCE_YOUR_CALM
        wait_for(lambda: not running.context.tasks)
        assert state["started"] == state["cancelled"]
        assert_serves(running)


@pytest.mark.parametrize(
    "flood",
    [
        pytest.param(lambda h2: settings_frame({INITIAL_WINDOW_SIZE: 65535}) * 1500, id="settings"),
        pytest.param(lambda h2: ping() * 1500, id="ping"),
        pytest.param(
            lambda h2: frame(PRIORITY, 0, 3, b"\x00\x00\x00\x01\x10") * 1500, id="priority"
        ),
        pytest.param(
            lambda h2: (
                h2.headers(1, h2.request_headers(method="POST"), False) + frame(DATA, 0, 1) * 1500
            ),
            id="empty-data",
        ),
        pytest.param(lambda h2: frame(0x20, 0, 0, b"junk") * 1500, id="unknown-frames"),
    ],
)
def test_frame_floods_end_in_enhance_your_calm(flood: Any) -> None:
    with serve(hello, http2=True) as running, RawH2(running.port, auto_ack=False) as h2:
        h2.send(flood(h2))
        goaway = h2.goaway()
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert h2.wait_closed()
        assert_serves(running)


def test_continuation_without_end_is_cut_off() -> None:
    """CVE-2024-27316: CONTINUATION frames that never end the header block,
    whether they carry bytes or nothing."""
    with serve(hello, http2=True, limit_request_header_size=4096) as running:
        for payload in (b"\x00" * 1000, b""):
            with RawH2(running.port) as h2:
                h2.settled()
                head = h2.header_block(h2.request_headers())
                h2.send(frame(HEADERS, END_STREAM, 1, head))
                sent = 0
                try:
                    while sent < 200 and not h2.closed:
                        h2.send(frame(CONTINUATION, 0, 1, payload) * 10)
                        sent += 10
                except OSError:
                    pass
                goaway = h2.goaway()
                assert goaway.error_code == ENHANCE_YOUR_CALM
        assert_serves(running)


def test_zero_window_held_forever_resets_the_stream() -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.body", "body": b"x" * 100})
        except OSError as exc:  # ClientDisconnected (ASGI 2.4)
            raised.append(exc)

    with (
        serve(app, http2=True, timeout_write=1) as running,
        RawH2(running.port, settings={INITIAL_WINDOW_SIZE: 0}) as h2,
    ):
        h2.request(1)
        response = h2.response(1, timeout=5, window=False)
        assert response.status == 200 and response.body == b""
        assert response.reset == CANCEL
        wait_for(lambda: raised)
        assert_serves(running)


def test_client_that_reads_nothing_is_cut_off_at_the_write_timeout() -> None:
    """Windows wide open, nothing read: the send buffer fills, and after
    --timeout-write the connection is aborted (a close would wait for the
    buffer forever); the app's send() raises."""
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/now":
            await send({"type": "http.response.body", "body": b"now"})
            return
        try:
            while True:
                await send({"type": "http.response.body", "body": b"z" * 65536, "more_body": True})
        except OSError as exc:
            raised.append(exc)

    with serve(app, http2=True, timeout_write=1) as running:
        sock = socket.create_connection(("127.0.0.1", running.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw = RawH2.__new__(RawH2)  # (only its header block encoder)
        raw.encoder = hpack.Encoder()
        sock.sendall(
            PREFACE
            + settings_frame({INITIAL_WINDOW_SIZE: 2**31 - 1, MAX_FRAME_SIZE: 2**24 - 1})
            + window_update(0, 2**31 - 65536)
            + raw.headers(1, raw.request_headers())
        )
        wait_for(lambda: raised, timeout=15)
        wait_for(lambda: not running.context.connections)
        sock.close()
        assert_serves(running)


# --- HPACK and protocol errors -----------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param(lambda h2: frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR, id="data-on-stream-0"),
        pytest.param(
            lambda h2: frame(HEADERS, END_HEADERS, 2, h2.header_block(h2.request_headers())),
            PROTOCOL_ERROR,
            id="even-stream-id",
        ),
        pytest.param(
            lambda h2: frame(DATA, 0, 1, b"x" * 20000), FRAME_SIZE_ERROR, id="frame-too-large"
        ),
        pytest.param(
            lambda h2: window_update(0, 2**31 - 1) * 2, FLOW_CONTROL_ERROR, id="window-overflow"
        ),
        pytest.param(
            lambda h2: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\x0f"),
            COMPRESSION_ERROR,
            id="hpack-bad-index",
        ),
        pytest.param(
            lambda h2: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe1\xff\x03"),
            COMPRESSION_ERROR,
            id="hpack-table-size-over-settings",
        ),
        pytest.param(
            lambda h2: frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08"),
            PROTOCOL_ERROR,
            id="reset-idle-stream",
        ),
    ],
)
def test_protocol_errors_get_goaway_with_the_right_code(raw: Any, code: int) -> None:
    with serve(hello, http2=True) as running:
        with RawH2(running.port) as h2:
            h2.send(raw(h2))
            goaway = h2.goaway()
            assert goaway.error_code == code
            assert h2.wait_closed()
        assert_serves(running)


MALFORMED = [
    pytest.param([(b"X-Upper", b"1")], id="uppercase-name"),
    pytest.param([(b"connection", b"keep-alive")], id="connection-header"),
    pytest.param([(b"transfer-encoding", b"chunked")], id="transfer-encoding"),
    pytest.param([(b"te", b"gzip")], id="te-not-trailers"),
    pytest.param([(b"x-space", b" leading")], id="whitespace-at-the-start"),
    pytest.param([(b"x-nul", b"a\x00b")], id="nul-in-value"),
    pytest.param([(b"x-lf", b"a\nb")], id="lf-in-value"),
    pytest.param([(b"", b"empty name")], id="empty-name"),
    pytest.param([(b"x:colon", b"1")], id="colon-in-name"),
    pytest.param([(b":path", b"/again")], id="repeated-pseudo-header"),
    pytest.param([(b":status", b"200")], id="response-pseudo-header"),
    pytest.param([(b":protocol", b"websocket")], id="protocol-without-extended-connect"),
    pytest.param([(b"host", b"elsewhere")], id="host-differs-from-authority"),
]


@pytest.mark.parametrize("extra", MALFORMED)
def test_malformed_request_resets_its_stream_only(extra: list[tuple[bytes, bytes]]) -> None:
    """RFC 9113 8.1.1: a malformed request is a stream error (PROTOCOL_ERROR);
    the connection's other streams go on."""
    with serve(hello, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, extra=extra)
        assert h2.response(1).reset == PROTOCOL_ERROR
        h2.request(3)
        assert h2.response(3).status == 200


def test_pseudo_header_after_a_regular_field_or_missing_is_malformed() -> None:
    with serve(echo, http2=True) as running, RawH2(running.port) as h2:
        fields = h2.request_headers()
        h2.send(h2.headers(1, [fields[0], (b"x-a", b"1"), *fields[1:]]))
        assert h2.response(1).reset == PROTOCOL_ERROR
        h2.send(h2.headers(3, [field for field in fields if field[0] != b":path"]))
        assert h2.response(3).reset == PROTOCOL_ERROR
        h2.request(5, body=b"x", end_stream=False)
        h2.send(h2.headers(5, [(b":path", b"/trailer")], end_stream=True))
        assert h2.response(5).reset == PROTOCOL_ERROR
        h2.request(7, method="POST", body=b"ok")
        assert h2.response(7).body == b"ok"


def test_malformed_method_target_or_value_is_400_on_the_stream() -> None:
    with serve(hello, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, method="GE T")
        assert h2.response(1).status == 400
        h2.request(3, path="/a b")
        assert h2.response(3).status == 400
        h2.request(5, extra=[(b"x-control", b"a\x01b")])
        assert h2.response(5).status == 400
        h2.request(7)
        assert h2.response(7).status == 200


def test_client_goaway_lets_open_streams_finish() -> None:
    with held_app() as (app, state), serve(app, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        wait_for(lambda: state["started"] == 1)
        h2.send(frame(GOAWAY, 0, 0, struct.pack("!II", 0, NO_ERROR)))
        release(running, state)
        assert h2.response(1).body == b"done"
        assert h2.wait_closed()
