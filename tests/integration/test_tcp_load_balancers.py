"""ketch behind TCP load balancers with the PROXY protocol: HAProxy from
docs/deploy/haproxy*.cfg, and the AWS NLB recipe of docs/deploy/nlb.sh.

TCP mode, send-proxy-v2: HTTPS and WebSockets pass through HAProxy, ketch
reads the v2 header, then terminates TLS. HTTP mode, send-proxy (v1), to
ketch's UNIX socket with two workers. Either way the application sees the
visitor's address and port (the visitor connects from 127.0.0.2, HAProxy
from 127.0.0.1), and HAProxy's health checks (a LOCAL header, a `PROXY
UNKNOWN` line) are served, never refused. One HAProxy per recipe, started
once for the module. The NLB cannot run here: the test sends what it sends.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import KetchProcess, RawConnection, free_port, wait_for
from support.deploy import Certificates, app_dir, certificates, haproxy, shell_command, write
from websockets.sync.client import connect

VISITOR = "127.0.0.2"  # a loopback address other than HAProxy's
NLB_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # PROXY protocol v2


@dataclass
class Site:
    port: int  # HAProxy's
    ketch: KetchProcess
    haproxy: KetchProcess
    certificates: Certificates | None = None


@pytest.fixture(scope="module")
def tcp_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("haproxy-tcp")
    certs = certificates(tmp)
    port, ketch_port = free_port(), free_port()
    config = write("haproxy.cfg", tmp, listen=f"127.0.0.1:{port}", ketch_port=ketch_port)
    argv = shell_command(
        "haproxy.sh", ketch_port=ketch_port, certfile=certs.certfile, keyfile=certs.keyfile
    )
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp)) as ketch:
        ketch.wait_started()
        with haproxy(config, port) as proxy:
            yield Site(port, ketch, proxy, certs)


@pytest.fixture(scope="module")
def uds_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("haproxy-uds")
    socket_path = tmp / "ketch.sock"
    port = free_port()
    config = write("haproxy-uds.cfg", tmp, listen=f"127.0.0.1:{port}", socket_path=socket_path)
    argv = shell_command("haproxy-uds.sh", socket_path=socket_path)
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp)) as ketch:
        ketch.wait_started()
        with haproxy(config, port) as proxy:
            yield Site(port, ketch, proxy)


def visit(site: Site, request: bytes) -> tuple[int, dict[str, Any]]:
    """One request through HAProxy from the visitor's address, on its own
    connection: the visitor's port, and what the app saw."""
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((VISITOR, 0))
    sock.connect(("127.0.0.1", site.port))
    visitor_port = sock.getsockname()[1]
    if site.certificates is not None:
        sock = site.certificates.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):  # Connection: close
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    seen: dict[str, Any] = json.loads(body)
    return visitor_port, seen


GET = b"GET /who HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


def test_https_passes_through_and_the_app_sees_the_visitor(tcp_site: Site) -> None:
    visitor_port, seen = visit(tcp_site, GET)
    assert seen["client"] == [VISITOR, visitor_port]
    assert seen["server"] == ["127.0.0.1", tcp_site.port]  # where the visitor connected
    assert seen["scheme"] == "https"


def test_websocket_passes_through(tcp_site: Site) -> None:
    assert tcp_site.certificates is not None
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((VISITOR, 0))
    sock.connect(("127.0.0.1", tcp_site.port))
    uri = f"wss://127.0.0.1:{tcp_site.port}/chat"
    context = tcp_site.certificates.client_context()
    with connect(uri, sock=sock, ssl=context, open_timeout=10) as websocket:
        websocket.send("through haproxy")
        assert websocket.recv(timeout=10) == "wss: through haproxy"


def test_http_mode_over_a_unix_socket_with_two_workers(uds_site: Site) -> None:
    """A visitor's own X-Forwarded-* headers are not believed: the PROXY line
    says the peer is the visitor, whom --forwarded-allow-ips does not trust."""
    forged = (
        b"GET /who HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    pids: set[int] = set()

    def both_workers_answered() -> bool:
        visitor_port, seen = visit(uds_site, forged)
        assert seen["client"] == [VISITOR, visitor_port]
        assert seen["server"] == ["127.0.0.1", uds_site.port]
        assert seen["scheme"] == "http"
        pids.add(seen["pid"])
        return len(pids) == 2

    wait_for(both_workers_answered, timeout=20, interval=0)


def test_health_checks_are_served_never_refused(tcp_site: Site, uds_site: Site) -> None:
    uds_site.ketch.wait_for_output(r'"GET /healthz HTTP/1.0" 200', timeout=10)
    for site in (tcp_site, uds_site):
        assert "PROXY protocol: closed" not in site.ketch.output
        assert " is DOWN" not in site.haproxy.output


def test_nlb_recipe(tmp_path: Path) -> None:
    """What an NLB sends with proxy_protocol_v2.enabled: a v2 header with its
    VPC endpoint TLV before each client's bytes, and a LOCAL header (no client
    information) before each health check."""
    port = free_port()
    argv = shell_command("nlb.sh", host="127.0.0.1", port=port, subnets="127.0.0.0/8")
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp_path)) as ketch:
        ketch.wait_started()
        addresses = socket.inet_aton("198.51.100.7") + socket.inet_aton("10.0.3.4")
        addresses += struct.pack("!HH", 51234, 443)
        endpoint = b"\x01vpce-0123456789abcdef0"
        tlvs = bytes([0xEA]) + struct.pack("!H", len(endpoint)) + endpoint
        header = NLB_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(addresses + tlvs))
        with RawConnection(port) as conn:
            conn.send(header + addresses + tlvs + GET)
            seen = json.loads(conn.read_response().body)
        assert seen["client"] == ["198.51.100.7", 51234]
        assert seen["server"] == ["10.0.3.4", 443]
        health_check = b"GET /healthz HTTP/1.1\r\nHost: 10.0.3.4\r\n\r\n"
        with RawConnection(port) as conn:
            conn.send(NLB_SIGNATURE + b"\x20\x00\x00\x00" + health_check)
            assert conn.read_response().body == b"ok"
        # A PROXY header the client itself sent travels behind the NLB's: it is
        # no HTTP request, and never taken for the client's address.
        with RawConnection(port) as conn:
            forged = b"PROXY TCP4 203.0.113.1 10.0.3.4 1 443\r\n"
            conn.send(header + addresses + tlvs + forged + GET)
            assert conn.read_response().status == 400
