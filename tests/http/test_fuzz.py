"""Random and mutated requests through a real socket, against both parsers: every
one is answered (never with a server error) or closed, in bounded time, and the
server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import exchange, serve
from support.hostile import CLOSE, send_case
from support.implementations import HTTP_IMPLEMENTATIONS
from support.websocket import WebSocketApp  # HTTP and WebSocket

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

SEEDS = [
    GET,
    b"POST /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
]
SPECIAL = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"0",
    b"\xff",
    b"chunked",
    b"Content-Length: ",
    b"Transfer-Encoding: ",
    b"Host: ",
    b"HTTP/1.1",
    b"999999999999999999999",
    b"-1",
    b"%",
    b"%00",
    b"\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "special", "repeat"]))
        if action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "special":
            data[position:position] = draw(st.sampled_from(SPECIAL))
        else:
            data[position:position] = data[position : position + draw(st.integers(1, 20))] * 3
    return bytes(data)


requests = st.one_of(mutated(), st.binary(max_size=300))


@pytest.fixture(scope="module", params=HTTP_IMPLEMENTATIONS)
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    options = {
        "http": request.param,
        "timeout_keep_alive": 1,
        "timeout_request_header": 1,
        "timeout_request_body": 1,
    }
    with serve(WebSocketApp(), **options) as running:
        yield running.port
        # whatever was thrown at it, it still serves
        assert exchange(running.port, GET).status == 200


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=requests)
def test_fuzzed_requests_are_answered_or_closed(port: int, data: bytes) -> None:
    try:
        # the half-close says "that is all": no waiting for deadlines on cut-off input
        status, _ = send_case(port, data, timeout=4, half_close=True)
    except TimeoutError:
        pytest.fail(f"no answer and no close for {data!r}")
    # 505 (HTTP Version Not Supported) is the one deliberate 5xx: "HTTP/2.0" on HTTP/1
    assert status == CLOSE or status < 500 or status == 505, f"{status} for {data!r}"
