"""The proxy-headers middleware on its own: scopes in, the scope the app sees out.

These tests import nothing but ketch.proxy (and pytest/hypothesis), so they also
run in an environment where no other ketch package is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import os
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketch.proxy import ProxyHeadersMiddleware, TrustedHosts, forwarded_hops, parse_address


def run(
    headers: list[tuple[str, str]],
    *,
    trusted: Any = "127.0.0.1",
    family: str = "x-forwarded",
    client: tuple[str, int] | None = ("127.0.0.1", 5000),
    server: tuple[str, int | None] | None = ("127.0.0.1", 8000),
    kind: str = "http",
) -> dict[str, Any]:
    """Send one scope through the middleware and return what the app saw."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {
        "type": kind,
        "scheme": "http" if kind == "http" else "ws",
        "client": client,
        "server": server,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }
    middleware = ProxyHeadersMiddleware(app, trusted_hosts=trusted, headers=family)
    asyncio.run(middleware(scope, _receive, _send))
    return seen


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _send(message: Any) -> None:
    pass


def host_header(seen: dict[str, Any]) -> list[bytes]:
    return [v for k, v in seen["headers"] if k == b"host"]


# --- X-Forwarded-For / -Proto ---------------------------------------------------------
def test_trusted_peer_sets_client_and_scheme() -> None:
    seen = run([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"


def test_untrusted_peer_changes_nothing() -> None:
    seen = run(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        client=("198.51.100.1", 4000),
    )
    assert seen["client"] == ("198.51.100.1", 4000)
    assert seen["scheme"] == "http"


def test_client_is_the_first_untrusted_hop_from_the_right() -> None:
    seen = run(
        [("X-Forwarded-For", "1.1.1.1, 203.0.113.7, 10.0.0.2, 10.0.0.3")],
        trusted="127.0.0.1, 10.0.0.0/8",
    )
    assert seen["client"] == ("203.0.113.7", 0)


def test_all_hops_trusted_gives_the_leftmost() -> None:
    seen = run([("X-Forwarded-For", "10.1.1.1, 10.0.0.2")], trusted=["127.0.0.1", "10.0.0.0/8"])
    assert seen["client"] == ("10.1.1.1", 0)


def test_repeated_headers_are_combined() -> None:
    seen = run(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")],
        trusted="127.0.0.1,10.0.0.2",
    )
    assert seen["client"] == ("203.0.113.7", 0)


def test_star_trusts_everyone() -> None:
    seen = run([("X-Forwarded-For", "203.0.113.7")], trusted="*", client=("8.8.8.8", 1))
    assert seen["client"] == ("203.0.113.7", 0)


def test_ipv6_peers_and_hops() -> None:
    seen = run(
        [("X-Forwarded-For", "2001:db8::7, ::1")],
        trusted="::1",
        client=("::1", 5000),
    )
    assert seen["client"] == ("2001:db8::7", 0)


def test_hops_with_ports_are_understood() -> None:
    hops = "[2001:db8::7]:4711, 10.0.0.1:80"
    seen = run([("X-Forwarded-For", hops)], trusted="127.0.0.1,10.0.0.1")
    assert seen["client"] == ("2001:db8::7", 4711)


@pytest.mark.parametrize(
    ("proto", "kind", "scheme"),
    [
        ("https", "http", "https"),
        ("http", "http", "http"),
        ("https", "websocket", "wss"),
        ("wss", "websocket", "wss"),
        ("http", "websocket", "ws"),
        ("HTTPS", "http", "https"),
        ("gopher", "http", "http"),  # not a scheme: ignored
    ],
)
def test_proto_sets_the_scheme(proto: str, kind: str, scheme: str) -> None:
    assert run([("X-Forwarded-Proto", proto)], kind=kind)["scheme"] == scheme


def test_proto_list_is_matched_to_the_client_hop() -> None:
    seen = run(
        [("X-Forwarded-For", "203.0.113.7, 10.0.0.2"), ("X-Forwarded-Proto", "https, http")],
        trusted="127.0.0.1,10.0.0.2",
    )
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"


def test_host_and_port_from_a_trusted_peer() -> None:
    seen = run(
        [("Host", "backend:8000"), ("X-Forwarded-Host", "example.com"), ("X-Forwarded-Port", "443")]
    )
    assert host_header(seen) == [b"example.com"]
    assert seen["server"] == ("127.0.0.1", 443)


def test_host_and_port_ignored_from_an_untrusted_peer() -> None:
    seen = run(
        [("Host", "backend:8000"), ("X-Forwarded-Host", "evil.com"), ("X-Forwarded-Port", "1")],
        client=("198.51.100.1", 4000),
    )
    assert host_header(seen) == [b"backend:8000"]
    assert seen["server"] == ("127.0.0.1", 8000)


@pytest.mark.parametrize("bad", ["evil.com/path", "a b", "x@y", "", "é.com", "h" * 300])
def test_invalid_forwarded_host_is_ignored(bad: str) -> None:
    seen = run([("Host", "backend"), ("X-Forwarded-Host", bad)])
    assert host_header(seen) == [b"backend"]


@pytest.mark.parametrize("bad", ["0", "65536", "http", "-1", "99999999"])
def test_invalid_forwarded_port_is_ignored(bad: str) -> None:
    assert run([("X-Forwarded-Port", bad)])["server"] == ("127.0.0.1", 8000)


def test_only_the_chosen_family_is_read() -> None:
    forwarded = [("Forwarded", "for=203.0.113.9;proto=https")]
    assert run(forwarded)["client"] == ("127.0.0.1", 5000)
    x_forwarded = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    seen = run(x_forwarded, family="forwarded")
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "http"


def test_no_proxy_headers_leaves_the_scope_alone() -> None:
    seen = run([("Host", "example.com")])
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "http"


def test_lifespan_scope_passes_through() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    asyncio.run(ProxyHeadersMiddleware(app)({"type": "lifespan"}, _receive, _send))
    assert seen == {"type": "lifespan"}


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ValueError, match="x-forwarded"):
        ProxyHeadersMiddleware(run, headers="via")


# --- RFC 7239 Forwarded ----------------------------------------------------------------
def test_forwarded_sets_client_proto_and_host() -> None:
    seen = run(
        [("Host", "backend"), ("Forwarded", 'for=203.0.113.9;proto=https;host="example.com:8443"')],
        family="forwarded",
    )
    assert seen["client"] == ("203.0.113.9", 0)
    assert seen["scheme"] == "https"
    assert host_header(seen) == [b"example.com:8443"]


def test_forwarded_ipv6_in_brackets_with_port() -> None:
    seen = run([("Forwarded", 'For="[2001:db8:cafe::17]:4711"')], family="forwarded")
    assert seen["client"] == ("2001:db8:cafe::17", 4711)


def test_forwarded_walks_elements_from_the_right() -> None:
    seen = run(
        [
            ("Forwarded", "for=198.51.100.1;proto=http, for=203.0.113.9;proto=https"),
            ("Forwarded", "for=10.0.0.5;proto=http;by=10.0.0.6"),
        ],
        trusted="127.0.0.1, 10.0.0.0/8",
        family="forwarded",
    )
    assert seen["client"] == ("203.0.113.9", 0)
    assert seen["scheme"] == "https"


def test_forwarded_unknown_and_obfuscated_nodes_keep_the_client() -> None:
    for node in ("unknown", "_hidden", '"_secret:_port"'):
        seen = run([("Forwarded", f"for={node};proto=https")], family="forwarded")
        assert seen["client"] == ("127.0.0.1", 5000)
        assert seen["scheme"] == "https"


def test_forwarded_quoted_strings_with_escapes() -> None:
    hops = forwarded_hops('for="10.0.0.1";host="a\\"b", for=1.2.3.4')
    assert hops[0].node == "10.0.0.1"
    assert hops[0].host == 'a"b'
    assert hops[1].node == "1.2.3.4"


@pytest.mark.parametrize(
    "value",
    [
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice
        'for="1.2.3.4',  # unterminated quote
        "for",  # no value
        "=1.2.3.4",  # no name
        "for=1.2.3.4 garbage",
        "for=1.2.3.4,",  # trailing comma: an empty element
    ],
)
def test_malformed_forwarded_element_stops_the_walk(value: str) -> None:
    seen = run([("Forwarded", value)], trusted="*", family="forwarded")
    # an unreadable element is never trusted and never taken as the client
    assert seen["client"] == ("127.0.0.1", 5000)


def test_garbage_hop_is_not_skipped() -> None:
    seen = run(
        [("X-Forwarded-For", "203.0.113.7, not-an-ip, 10.0.0.2")],
        trusted="127.0.0.1, 10.0.0.0/8",
    )
    # walking stopped at the garbage: it is neither trusted nor an address
    assert seen["client"] == ("127.0.0.1", 5000)


def test_literal_hops_are_matched_against_trusted_literals() -> None:
    # nginx reached over a UNIX socket writes `unix:` into X-Forwarded-For
    seen = run([("X-Forwarded-For", "203.0.113.7, unix:")], trusted="127.0.0.1, unix:")
    assert seen["client"] == ("203.0.113.7", 0)


# --- UNIX sockets ------------------------------------------------------------------------
@pytest.mark.parametrize("trusted", ["/run/app.sock", "unix:", "unix:/run/app.sock", "*"])
def test_unix_socket_peer_trusted_by_path_or_literal(trusted: str) -> None:
    seen = run(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        trusted=trusted,
        client=None,
        server=("/run/app.sock", None),
    )
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"


def test_unix_socket_peer_not_listed_is_untrusted() -> None:
    seen = run(
        [("X-Forwarded-For", "203.0.113.7")],
        trusted="127.0.0.1,/run/other.sock",
        client=None,
        server=("/run/app.sock", None),
    )
    assert seen["client"] is None


# --- trusted hosts ---------------------------------------------------------------------------
def test_trusted_hosts_parsing() -> None:
    trusted = TrustedHosts(" 10.0.0.0/8 , ::1, 192.168.1.5, /tmp/s.sock, unix:, , bogus/net")
    assert "10.200.3.4" in trusted
    assert "::1" in trusted
    assert "192.168.1.5" in trusted
    assert "192.168.1.6" not in trusted
    assert "/tmp/s.sock" in trusted
    assert "unix:" in trusted
    assert "bogus/net" in trusted  # kept as a literal
    assert "11.0.0.1" not in trusted
    assert 123 not in trusted


def test_standalone_environment_has_no_other_ketch_package() -> None:
    if os.environ.get("KETCH_PROXY_ALONE") != "1":
        pytest.skip("only meaningful in the proxy-alone environment (hatch run proxy-alone:...)")
    for name in ("ketch.core", "ketch.http", "ketch.cli"):
        assert importlib.util.find_spec(name) is None, name


# --- properties of the trust walk -----------------------------------------------------------
ipv4 = st.ip_addresses(v=4).map(str)
trusted_net = ipaddress.ip_network("10.0.0.0/8")
trusted_ip = st.integers(0, 2**24 - 1).map(lambda n: str(trusted_net[n]))
untrusted_ip = ipv4.filter(
    lambda ip: ipaddress.ip_address(ip) not in trusted_net and ip != "127.0.0.1"
)
junk = st.text(alphabet=st.characters(codec="latin-1"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(hops=st.lists(st.one_of(trusted_ip, untrusted_ip), min_size=1, max_size=10))
def test_walk_picks_the_rightmost_untrusted_or_the_leftmost(hops: list[str]) -> None:
    seen = run([("X-Forwarded-For", ", ".join(hops))], trusted="127.0.0.1, 10.0.0.0/8")
    untrusted = [hop for hop in hops if ipaddress.ip_address(hop) not in trusted_net]
    expected = untrusted[-1] if untrusted else hops[0]
    assert seen["client"] == (expected, 0)


@settings(max_examples=300, deadline=None)
@given(hops=st.lists(st.one_of(trusted_ip, untrusted_ip, junk), max_size=10), peer=untrusted_ip)
def test_untrusted_peer_never_changes_anything(hops: list[str], peer: str) -> None:
    seen = run(
        [("X-Forwarded-For", ", ".join(hops)), ("X-Forwarded-Proto", "https")],
        trusted="127.0.0.1, 10.0.0.0/8",
        client=(peer, 1234),
    )
    assert seen["client"] == (peer, 1234)
    assert seen["scheme"] == "http"


@settings(max_examples=500, deadline=None)
@given(
    value=st.text(alphabet=st.characters(codec="latin-1"), max_size=200),
    family=st.sampled_from(["x-forwarded", "forwarded"]),
)
def test_garbage_never_raises_and_client_is_a_hop_or_the_peer(value: str, family: str) -> None:
    name = "X-Forwarded-For" if family == "x-forwarded" else "Forwarded"
    seen = run([(name, value), ("X-Forwarded-Host", value)], trusted="*", family=family)
    client = seen["client"]
    if client != ("127.0.0.1", 5000):
        # a new client must be an address that the header itself carried
        pieces = re.split(r'[,;="\\ \t]+', value)
        written = {parse_address(piece) for piece in pieces} - {None}
        assert ipaddress.ip_address(client[0]) in written
    assert seen["scheme"] in ("http", "https")


def test_huge_header_lists_are_bounded() -> None:
    many = ", ".join(["10.0.0.1"] * 100_000 + ["203.0.113.7"])
    seen = run([("X-Forwarded-For", many)], trusted="127.0.0.1,10.0.0.0/8")
    assert seen["client"] == ("203.0.113.7", 0)
    all_trusted = ", ".join(["203.0.113.7"] + ["10.0.0.1"] * 100_000)
    seen = run([("X-Forwarded-For", all_trusted)], trusted="127.0.0.1,10.0.0.0/8")
    # only the 64 rightmost hops are read: the leftmost of those is taken
    assert seen["client"] == ("10.0.0.1", 0)
