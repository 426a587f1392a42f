"""Hostile input gets the same answer from both parsers, and the server keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from support import exchange, serve
from support.apps import echo
from support.hostile import CASES, CLOSE, Case, send_case
from support.implementations import HTTP_IMPLEMENTATIONS

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module", params=HTTP_IMPLEMENTATIONS)
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    # one server per parser for the whole table: every case must leave it serving
    with serve(echo, http=request.param) as running:
        yield running.port


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_answer(server_port: int, case: Case) -> None:
    status, seconds = send_case(server_port, case.data)
    assert status == case.expected, f"{case.what}: got {status or 'a close'}"
    assert seconds < 3, "answered, but only after a timeout"
    # and the server still serves a normal request on a new connection
    assert exchange(server_port, GET).status == 200


@pytest.mark.parametrize("case", [c for c in CASES if c.expected >= 400], ids=lambda c: c.id)
def test_errors_close_the_connection(server_port: int, case: Case) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=5) as sock:
        sock.sendall(case.data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    if case.expected != CLOSE:
        assert b"connection: close" in received.lower()
