"""The pieces under the middleware: reading nodes, trusted hosts and the two header families."""

from __future__ import annotations

import ipaddress

import pytest

from ketch.proxy import Hop, TrustedHosts, forwarded_hops, parse_node, x_forwarded_hops


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        ("1.2.3.4", "1.2.3.4", 0),
        (" 1.2.3.4 ", "1.2.3.4", 0),
        ("1.2.3.4:80", "1.2.3.4", 80),
        ("::1", "::1", 0),
        ("[::1]", "::1", 0),
        ("[::1]:8080", "::1", 8080),
        ("[2001:db8::1]:_obf", "2001:db8::1", 0),
        ("1.2.3.4:_obf-port.1", "1.2.3.4", 0),
        ("fe80::1%eth0", "fe80::1%eth0", 0),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1", 0),
    ],
)
def test_parse_node_reads_addresses_and_ports(text: str, address: str, port: int) -> None:
    assert parse_node(text) == (ipaddress.ip_address(address), port)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "unknown",
        "_hidden",
        "unix:",
        "unix:/run/app.sock",
        "example.com",
        "1.2.3.4:http",
        "1.2.3.4:65536",
        "1.2.3.4:",
        "[::1]:",
        "[::1]x",
        "[::1",
        "01.2.3.4",
        "1.2.3.4.5",
        "[::1]:_",
        "[::1]:_a b",
        "fe80::1%<script>",
        "fe80::1%",
        "1.2.3.4%eth0",
        "1" * 100,
    ],
)
def test_parse_node_rejects_everything_else(text: str) -> None:
    assert parse_node(text) == (None, 0)


def test_trusted_hosts_entries() -> None:
    trusted = TrustedHosts(
        " 10.0.0.0/8 , ::1, 192.168.1.5, [2001:db8::1], 172.16.5.4/12, /tmp/s.sock, unix:, ,"
        " bogus/net"
    )
    assert "10.200.3.4" in trusted
    assert "::1" in trusted
    assert "192.168.1.5" in trusted
    assert "192.168.1.6" not in trusted
    assert "2001:db8::1" in trusted
    assert "172.31.0.1" in trusted  # a network written with host bits set
    assert "/tmp/s.sock" in trusted
    assert "unix:" in trusted
    assert "bogus/net" in trusted  # kept as a literal
    assert "11.0.0.1" not in trusted
    assert "::ffff:10.0.0.1" in trusted  # IPv4-mapped
    assert "::ffff:11.0.0.1" not in trusted
    assert 123 not in trusted
    assert None not in trusted
    assert "x" * 1000 not in trusted


def test_trusted_hosts_from_a_list_and_star() -> None:
    assert "8.8.8.8" not in TrustedHosts(["127.0.0.1", "::1"])
    assert "8.8.8.8" in TrustedHosts(["127.0.0.1", "*"])
    assert "anything at all" in TrustedHosts("*")
    assert "127.0.0.1" not in TrustedHosts("")


def test_trusted_hosts_cache_stays_bounded() -> None:
    trusted = TrustedHosts("10.0.0.0/8")
    for n in range(20_000):
        assert (f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" in trusted) is True
    assert len(trusted._cache) <= 4096
    assert "11.0.0.1" not in trusted


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        ("/run/app.sock", True),
        ("unix:/run/app.sock", True),
        ("unix:", True),
        ("*", True),
        ("/run/other.sock", False),
        ("127.0.0.1, ::1", False),
    ],
)
def test_unix_socket_trust(trusted: str, expected: bool) -> None:
    assert TrustedHosts(trusted).trusts_unix_socket("/run/app.sock") is expected


def test_trusted_hosts_repr_lists_what_it_understood() -> None:
    assert repr(TrustedHosts("::1, 10.0.0.0/8, unix:")) == "TrustedHosts('::1,10.0.0.0/8,unix:')"


def test_x_forwarded_hops() -> None:
    assert x_forwarded_hops("1.1.1.1, 2.2.2.2", "https") == [
        Hop("1.1.1.1", "https"),
        Hop("2.2.2.2", "https"),
    ]
    assert x_forwarded_hops(None, "https", "example.com", "443") == [
        Hop(None, "https", "example.com", "443")
    ]
    assert x_forwarded_hops("1.1.1.1,2.2.2.2", "https,http,http") == [
        Hop("1.1.1.1", "http"),
        Hop("2.2.2.2", "http"),
    ]


def test_forwarded_hops() -> None:
    hops = forwarded_hops(
        'for="10.0.0.1";host="a\\"b";by=_p, for=1.2.3.4;proto=https;ext="x;y=z", bad element'
    )
    assert hops == [
        Hop("10.0.0.1", host='a"b', by="_p"),
        Hop("1.2.3.4", "https"),
        Hop(None),
    ]


def test_forwarded_quoted_comma_makes_its_element_unreadable() -> None:
    # elements are split at every comma, so a forged element cannot swallow the next
    assert forwarded_hops('for=1.1.1.1;ext="a,b", for=2.2.2.2') == [
        Hop(None),
        Hop(None),
        Hop("2.2.2.2"),
    ]
