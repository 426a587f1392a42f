"""--proxy-protocol: PROXY protocol v1 and v2 headers sent from raw sockets.

The header's source becomes the scope's client and its destination the
server; LOCAL and UNKNOWN keep the peer's own addresses; anything else (an
untrusted peer, a malformed, truncated, oversized or slow header) is closed
without a byte of answer, logged once, and the server goes on serving. TLS
starts right after the header. HAProxy itself: tests/integration/test_haproxy.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from support import KetchProcess, RawConnection, Running, run_ketch, serve, wait_for, worker_pids
from support.apps import scope_json, scope_json_ws
from websockets.sync.client import connect

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
LOCAL, PROXY = 0x20, 0x21
TCP4, TCP6, UNIX, UNSPEC = 0x11, 0x21, 0x31, 0x00


def v1(line: str) -> bytes:
    return f"PROXY {line}\r\n".encode()


def v2(command: int, family: int, block: bytes = b"", tlvs: bytes = b"") -> bytes:
    return (
        SIGNATURE + bytes([command, family]) + struct.pack("!H", len(block + tlvs)) + block + tlvs
    )


def inet(
    family: socket.AddressFamily, source: str, destination: str, ports: tuple[int, int]
) -> bytes:
    return (
        socket.inet_pton(family, source)
        + socket.inet_pton(family, destination)
        + struct.pack("!HH", *ports)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def scope_of(response_body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response_body)
    return data


def ask(conn: RawConnection, request: bytes = GET) -> dict[str, Any]:
    conn.send(request)
    response = conn.read_response()
    assert response.status == 200, response
    return scope_of(response.body)


def refused(conn: RawConnection) -> bool:
    """Closed by the server without a byte of answer."""
    return conn.is_closed(timeout=5) and conn.buffer == b""


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[Running]:
    """One server for the module (per event loop), trusting 127.0.0.1 and 10.0.0.0/8."""
    with serve(
        scope_json_ws,
        proxy_protocol=True,
        loop=request.param,
        forwarded_allow_ips="127.0.0.1,10.0.0.0/8",
        timeout_request_header=1,
    ) as running:
        yield running


# --- what the application sees ------------------------------------------------------------
ADDRESSED = [
    pytest.param(
        v1("TCP4 203.0.113.7 192.0.2.1 4711 443"),
        ["203.0.113.7", 4711],
        ["192.0.2.1", 443],
        id="v1-tcp4",
    ),
    pytest.param(
        v1("TCP6 2001:db8::7 2001:db8:0:0:0:0:0:1 65535 0"),
        ["2001:db8::7", 65535],
        ["2001:db8::1", 0],
        id="v1-tcp6",
    ),
    pytest.param(
        v1("TCP6 ::ffff:203.0.113.7 ::ffff:192.0.2.1 4711 443"),
        ["::ffff:203.0.113.7", 4711],
        ["::ffff:192.0.2.1", 443],
        id="v1-tcp6-mapped",
    ),
    pytest.param(
        v2(PROXY, TCP4, inet(socket.AF_INET, "203.0.113.7", "192.0.2.1", (4711, 443))),
        ["203.0.113.7", 4711],
        ["192.0.2.1", 443],
        id="v2-tcp4",
    ),
    pytest.param(
        v2(PROXY, TCP6, inet(socket.AF_INET6, "2001:db8::7", "2001:db8::1", (4711, 8443))),
        ["2001:db8::7", 4711],
        ["2001:db8::1", 8443],
        id="v2-tcp6",
    ),
    pytest.param(
        # the TLVs an AWS NLB, HAProxy and GCP send, then an unknown one: all skipped
        v2(
            PROXY,
            TCP4,
            inet(socket.AF_INET, "198.51.100.1", "10.0.0.5", (50000, 80)),
            tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9")
            + tlv(0x01, b"h2")
            + tlv(0x02, b"example.com")
            + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))
            + tlv(0x04, b"\x00" * 64)
            + tlv(0xE0, b"\x00" * 8)
            + tlv(0xF3, b"anything"),
        ),
        ["198.51.100.1", 50000],
        ["10.0.0.5", 80],
        id="v2-tlvs",
    ),
    pytest.param(
        v2(PROXY, TCP4, inet(socket.AF_INET, "203.0.113.7", "192.0.2.1", (4711, 443)) + b"\0" * 3),
        ["203.0.113.7", 4711],
        ["192.0.2.1", 443],
        id="v2-padding",
    ),
    pytest.param(
        v2(
            PROXY,
            UNIX,
            b"/run/lb/client.sock".ljust(108, b"\0") + b"/run/lb/front.sock".ljust(108, b"\0"),
        ),
        None,
        ["/run/lb/front.sock", None],
        id="v2-unix",
    ),
]


@pytest.mark.parametrize(("header", "client", "server_address"), ADDRESSED)
def test_the_header_gives_client_and_server(
    server: Running, header: bytes, client: Any, server_address: Any
) -> None:
    with RawConnection(server.port) as conn:
        # the header and the request in one segment: not one byte of the request is lost
        first = ask(conn, header + GET)
        assert (first["client"], first["server"]) == (client, server_address)
        second = ask(conn)  # the next request on the connection: the same addresses
        assert (second["client"], second["server"]) == (client, server_address)


KEEP_PEER = [
    pytest.param(v1("UNKNOWN"), id="v1-unknown"),
    pytest.param(v1("UNKNOWN 2001:db8::7 2001:db8::1 4711 443"), id="v1-unknown-long"),
    # LOCAL (a proxy's health check): whatever the address block says is ignored
    pytest.param(v2(LOCAL, UNSPEC), id="v2-local"),
    pytest.param(
        v2(LOCAL, TCP4, inet(socket.AF_INET, "203.0.113.7", "192.0.2.1", (1, 2))),
        id="v2-local-addressed",
    ),
    pytest.param(v2(PROXY, UNSPEC, b"ignored"), id="v2-unspec"),
    pytest.param(
        v2(PROXY, 0x10, inet(socket.AF_INET, "203.0.113.7", "192.0.2.1", (1, 2))),
        id="v2-unspec-transport",
    ),
]


@pytest.mark.parametrize("header", KEEP_PEER)
def test_local_and_unknown_keep_the_peers_own_addresses(server: Running, header: bytes) -> None:
    with RawConnection(server.port) as conn:
        scope = ask(conn, header + GET)
        assert scope["client"] == ["127.0.0.1", conn.sock.getsockname()[1]]
        assert scope["server"] == ["127.0.0.1", server.port]


def test_a_header_in_pieces_is_read_up_to_its_last_byte(server: Running) -> None:
    """The header may come in several segments (and the request right behind
    it): every piece is read, and the request starts exactly after it."""
    header = v1("TCP4 203.0.113.7 192.0.2.1 4711 443")
    binary = v2(
        PROXY, TCP4, inet(socket.AF_INET, "198.51.100.1", "192.0.2.1", (1, 2)), tlv(4, b"x")
    )
    for data, client in ((header, "203.0.113.7"), (binary, "198.51.100.1")):
        with RawConnection(server.port) as conn:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for cut in (1, 5, 13, 15, len(data) - 1):
                piece, data = data[:cut], data[cut:]
                conn.send(piece)
                time.sleep(0.02)  # separate segments, well within the header timeout
            assert ask(conn, data + GET)["client"][0] == client


def test_websocket_scope_has_the_proxied_client(server: Running) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(v1("TCP4 203.0.113.7 192.0.2.1 4711 443"))
    with connect(f"ws://127.0.0.1:{server.port}/", sock=sock, open_timeout=5) as websocket:
        data = json.loads(websocket.recv(timeout=5))
    assert data["client"] == ["203.0.113.7", 4711]


def test_access_log_names_the_proxied_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ketch.access")
    with serve(scope_json, proxy_protocol=True) as running, RawConnection(running.port) as conn:
        ask(conn, v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)
        wait_for(lambda: any("203.0.113.7:4711 - " in m for m in caplog.messages), timeout=5)


# --- refused: closed without an answer, logged once ---------------------------------------
MALFORMED = [
    pytest.param(GET, "not a PROXY protocol header", id="no-header"),
    pytest.param(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not a PROXY protocol header", id="tls"
    ),
    pytest.param(b"PROXY\r\n", "not a PROXY protocol header", id="v1-empty"),
    pytest.param(v1("TCP5 1.2.3.4 5.6.7.8 1 2"), "not TCP4, TCP6 or UNKNOWN", id="v1-tcp5"),
    pytest.param(v1("TCP4 1.2.3.4 5.6.7.8 1"), "four fields", id="v1-fields"),
    pytest.param(v1("TCP4 1.2.3.4 5.6.7.8 1 2 3"), "four fields", id="v1-more-fields"),
    pytest.param(v1("TCP4  1.2.3.4 5.6.7.8 1 2"), "four fields", id="v1-two-spaces"),
    pytest.param(v1("TCP4 01.2.3.4 5.6.7.8 1 2"), "address '01.2.3.4'", id="v1-leading-zero"),
    pytest.param(v1("TCP4 2001:db8::1 5.6.7.8 1 2"), "address '2001:db8::1'", id="v1-family"),
    pytest.param(v1("TCP6 fe80::1%eth0 ::1 1 2"), "address 'fe80::1%eth0'", id="v1-zone"),
    pytest.param(v1("TCP4 example.com 5.6.7.8 1 2"), "address 'example.com'", id="v1-name"),
    pytest.param(v1("TCP4 1.2.3.4 5.6.7.8 080 2"), "port '080'", id="v1-port-zero"),
    pytest.param(v1("TCP4 1.2.3.4 5.6.7.8 65536 2"), "port '65536'", id="v1-port-range"),
    pytest.param(v1("TCP4 1.2.3.4 5.6.7.8 -1 2"), "port '-1'", id="v1-port-sign"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "does not end with CRLF", id="v1-bare-lf"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET", "does not end with CRLF", id="v1-bare-cr"),
    pytest.param(
        b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", "without CRLF in its first 107", id="v1-oversized"
    ),
    pytest.param(
        v2(0x11, TCP4, inet(socket.AF_INET, "1.2.3.4", "5.6.7.8", (1, 2))),
        "version 1",
        id="v2-version",
    ),
    pytest.param(
        v2(0x22, TCP4, inet(socket.AF_INET, "1.2.3.4", "5.6.7.8", (1, 2))),
        "bytes 2211",
        id="v2-command",
    ),
    pytest.param(v2(PROXY, 0x41, b"\0" * 12), "bytes 2141", id="v2-family"),
    pytest.param(v2(PROXY, 0x13, b"\0" * 12), "bytes 2113", id="v2-transport"),
    pytest.param(v2(PROXY, TCP4, b"\0" * 11), "take 11 bytes, not 12", id="v2-short-inet"),
    pytest.param(v2(PROXY, TCP6, b"\0" * 35), "take 35 bytes, not 36", id="v2-short-inet6"),
    pytest.param(v2(PROXY, UNIX, b"\0" * 215), "take 215 bytes, not 216", id="v2-short-unix"),
    pytest.param(
        SIGNATURE + bytes([PROXY, TCP4]) + struct.pack("!H", 4081),
        "v2 header of 4097 bytes, more than 4096",
        id="v2-oversized",
    ),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_header_is_closed_without_an_answer(
    server: Running, data: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with RawConnection(server.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(data)
        assert refused(conn)
    logged = [m for m in caplog.messages if f"127.0.0.1:{port}" in m]
    assert len(logged) == 1, caplog.messages
    assert logged[0].startswith(f"PROXY protocol: closed the connection from 127.0.0.1:{port}: ")
    assert reason in logged[0]
    with RawConnection(server.port) as conn:  # everyone else is still served
        assert ask(conn, v1("UNKNOWN") + GET)["path"] == "/"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6", id="v1"),
        pytest.param(
            v2(PROXY, TCP4, inet(socket.AF_INET, "1.2.3.4", "5.6.7.8", (1, 2)))[:20], id="v2"
        ),
        pytest.param(SIGNATURE[:7], id="v2-signature"),
    ],
)
def test_truncated_header_is_closed_and_logged(
    server: Running, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with RawConnection(server.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(data)
        conn.sock.shutdown(socket.SHUT_WR)  # the proxy gave up half-way
        assert refused(conn)
    wait_for(lambda: f"127.0.0.1:{port}: closed before the end of its PROXY header" in caplog.text)


def test_slow_header_is_closed_at_the_header_timeout(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with RawConnection(server.port, timeout=10) as conn:
        port = conn.sock.getsockname()[1]
        started = time.monotonic()
        conn.send(b"PROXY TCP4 ")  # and nothing more: the server holds no socket for it
        assert conn.is_closed(timeout=5)
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.5  # --timeout-request-header 1
    assert conn.buffer == b""
    messages = [m for m in caplog.messages if f"127.0.0.1:{port}" in m]
    assert messages == [
        f"PROXY protocol: closed the connection from 127.0.0.1:{port}: "
        "no complete PROXY header within 1 s"
    ]


def test_silent_connection_is_closed_at_the_header_timeout(server: Running) -> None:
    with RawConnection(server.port, timeout=10) as conn:
        started = time.monotonic()
        assert conn.is_closed(timeout=5)
        assert 0.9 < time.monotonic() - started < 2.5


def test_untrusted_peer_is_closed_even_with_a_valid_header(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trusting = serve(scope_json, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8")
    with trusting as running, RawConnection(running.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(v1("TCP4 10.1.2.3 10.0.0.1 4711 80") + GET)
        assert refused(conn)
    assert (
        caplog.messages.count(
            f"PROXY protocol: closed the connection from 127.0.0.1:{port}: "
            "not a peer in --forwarded-allow-ips"
        )
        == 1
    )


def test_ipv6_peer_is_trusted_by_its_address() -> None:
    ipv6 = serve(scope_json, host="::1", proxy_protocol=True, forwarded_allow_ips="::1")
    with ipv6 as running, RawConnection(running.port, host="::1") as conn:
        scope = ask(conn, v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)
    assert scope["client"] == ["203.0.113.7", 4711]


# --- X-Forwarded-* behind a PROXY header --------------------------------------------------
def test_forwarded_headers_are_checked_against_the_proxied_client(server: Running) -> None:
    """The PROXY source is the peer the proxy-headers middleware trusts or not:
    10.0.0.0/8 is trusted here, 198.51.100.0/24 is not, 127.0.0.1 (the real
    peer) is, but no longer counts."""
    forwarded = (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    with RawConnection(server.port) as conn:
        scope = ask(conn, v1("TCP4 10.1.2.3 10.0.0.1 4711 80") + forwarded)
        assert (scope["client"], scope["scheme"]) == (["203.0.113.9", 0], "https")
    with RawConnection(server.port) as conn:
        scope = ask(conn, v1("TCP4 198.51.100.1 10.0.0.1 4711 80") + forwarded)
        assert (scope["client"], scope["scheme"]) == (["198.51.100.1", 4711], "http")
    with RawConnection(server.port) as conn:  # LOCAL: the real peer, trusted
        scope = ask(conn, v2(LOCAL, UNSPEC) + forwarded)
        assert (scope["client"], scope["scheme"]) == (["203.0.113.9", 0], "https")


# --- TLS after the header -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA, tmp_path: Path, loop_impl: str) -> Iterator[Running]:
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    with serve(
        scope_json,
        proxy_protocol=True,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        loop=loop_impl,
    ) as running:
        yield running


def test_tls_is_read_after_the_header(tls_server: Running, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    for header in (
        v1("TCP4 203.0.113.7 192.0.2.1 4711 443"),
        v2(PROXY, TCP4, inet(socket.AF_INET, "203.0.113.7", "192.0.2.1", (4711, 443))),
    ):
        raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=5)
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(GET)
            data = b""
            while not data.endswith(b"}"):
                chunk = tls.recv(65536)
                assert chunk, data
                data += chunk
        scope = scope_of(data.partition(b"\r\n\r\n")[2])
        assert (scope["client"], scope["server"], scope["scheme"]) == (
            ["203.0.113.7", 4711],
            ["192.0.2.1", 443],
            "https",
        )


def test_tls_without_a_header_is_refused(tls_server: Running, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with pytest.raises(httpx.ConnectError):
        httpx.get(tls_server.url, verify=context, timeout=5)


def test_failed_handshake_after_a_header_closes_the_socket(tls_server: Running) -> None:
    def fail_twice() -> None:
        with RawConnection(tls_server.port) as conn:
            conn.send(v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)  # plain HTTP: no TLS
            assert conn.is_closed(timeout=5)
        with RawConnection(tls_server.port) as conn:
            conn.send(v1("UNKNOWN"))
            conn.sock.shutdown(socket.SHUT_WR)  # a health check: header, then nothing
            assert conn.is_closed(timeout=5)

    fail_twice()  # uvloop opens a descriptor of its own at the first failure
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        fail_twice()
    wait_for(lambda: len(os.listdir("/proc/self/fd")) <= before, timeout=5)


# --- UNIX sockets ------------------------------------------------------------------------------
def test_unix_socket_trusted_by_its_path(tmp_path: Path) -> None:
    uds = str(tmp_path / "ketch.sock")
    with serve(scope_json, uds=uds, proxy_protocol=True, forwarded_allow_ips=uds):
        with RawConnection(uds=uds) as conn:
            scope = ask(conn, v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)
            assert (scope["client"], scope["server"]) == (["203.0.113.7", 4711], ["192.0.2.1", 443])
        with RawConnection(uds=uds) as conn:
            scope = ask(conn, v2(LOCAL, UNSPEC) + GET)
            assert (scope["client"], scope["server"]) == (None, [uds, None])
        with RawConnection(uds=uds) as conn:
            conn.send(GET)
            assert refused(conn)


def test_untrusted_unix_socket_is_a_one_line_error(tmp_path: Path) -> None:
    uds = str(tmp_path / "ketch.sock")
    result = run_ketch(["support.apps:hello", "--uds", uds, "--proxy-protocol"])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: --proxy-protocol on the UNIX socket {uds}: its peers are not in "
        f"--forwarded-allow-ips, so every connection would be refused; add {uds} "
        "(or unix:) to --forwarded-allow-ips"
    )


def test_inherited_unix_socket_that_is_not_trusted_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "inherited.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen()
    fd = sock.detach()  # the server owns it now, and closes it as it stops
    refused = pytest.raises(RuntimeError, match="its peers are not in --forwarded-allow-ips")
    with refused, serve(scope_json, fd=fd, proxy_protocol=True):
        pass


# --- many connections, several workers, shutdown ---------------------------------------------
def test_a_flood_of_unfinished_headers_does_not_stop_accepting(tmp_path: Path) -> None:
    """200 connections that never finish their header, in a process allowed
    64 file descriptors: a proxy's connection is still served at once (the
    header that waited longest makes room), not at the header timeout (30 s)."""
    args = ["support.apps:scope_json", "--port", "0", "--proxy-protocol"]
    with KetchProcess([*args, "--timeout-request-header", "30"]) as ketch:
        port = ketch.port()
        resource.prlimit(ketch.proc.pid, resource.RLIMIT_NOFILE, (64, 64))
        flood = []
        try:
            for _ in range(200):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                flood.append(sock)
                with contextlib.suppress(OSError):  # already closed to make room
                    sock.sendall(b"PROXY TCP4 1.2.3.4")
            started = time.monotonic()
            with RawConnection(port, timeout=10) as conn:
                scope = ask(conn, v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)
            assert scope["client"] == ["203.0.113.7", 4711]
            assert time.monotonic() - started < 5
        finally:
            for sock in flood:
                sock.close()
        assert "closed to accept a new connection (Too many open files)" in ketch.output


def test_every_worker_reads_the_header() -> None:
    args = ["support.apps:scope_json", "--port", "0", "--proxy-protocol", "--workers", "2"]
    with KetchProcess(args) as ketch:
        port = ketch.port()
        wait_for(lambda: len(worker_pids(ketch.proc.pid)) == 2, timeout=15)
        pids: set[int] = set()

        def both_answered() -> bool:
            with RawConnection(port) as conn:
                scope = ask(conn, v1(f"TCP4 203.0.113.{len(pids) + 1} 192.0.2.1 4711 443") + GET)
            assert scope["client"] == [f"203.0.113.{len(pids) + 1}", 4711]
            pids.add(scope["pid"])
            return len(pids) == 2

        wait_for(both_answered, timeout=20, interval=0)


def test_shutdown_closes_unfinished_headers() -> None:
    with serve(scope_json, proxy_protocol=True, timeout_request_header=30) as running:
        conn = RawConnection(running.port, timeout=10)
        conn.send(b"PROXY TCP4 1.2.3.4")
        with RawConnection(running.port) as other:  # the header is pending
            ask(other, v1("UNKNOWN") + GET)
        started = time.monotonic()
    assert time.monotonic() - started < 5  # the server did not wait for it
    assert conn.is_closed(timeout=1)
    conn.close()


def test_without_the_option_a_header_is_a_bad_request() -> None:
    with serve(scope_json) as running, RawConnection(running.port) as conn:
        conn.send(v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)
        assert conn.read_response().status == 400


def test_no_descriptor_is_left_behind(server: Running) -> None:
    """Served, refused, truncated and LOCAL connections all give their socket back."""

    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    with RawConnection(server.port) as conn:  # warm up: the loop's own descriptors
        ask(conn, v1("UNKNOWN") + GET)
    before = open_descriptors()
    for _ in range(20):
        with RawConnection(server.port) as conn:
            ask(conn, v1("TCP4 203.0.113.7 192.0.2.1 4711 443") + GET)
        with RawConnection(server.port) as conn:
            conn.send(b"garbage\r\n")
            assert refused(conn)
        with RawConnection(server.port) as conn:
            conn.send(b"PROXY TCP4 1.2.3.4 ")
        with RawConnection(server.port) as conn:
            conn.send(v2(LOCAL, UNSPEC))
    wait_for(lambda: open_descriptors() <= before, timeout=5)
