"""The proxy-headers middleware on its own: a scope in, the scope the app sees out."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import pytest

from ketch.proxy import MAX_HOPS, ProxyHeadersMiddleware

Through = Callable[..., dict[str, Any]]  # the `through` fixture (conftest.py)
UNTRUSTED_PEER = ("198.51.100.1", 4000)


def host_headers(seen: dict[str, Any]) -> list[bytes]:
    return [value for name, value in seen["headers"] if name == b"host"]


# --- X-Forwarded-For / -Proto: Uvicorn's rules ------------------------------------------------
def test_trusted_peer_sets_client_and_scheme(through: Through) -> None:
    seen = through([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"


def test_untrusted_peer_changes_nothing(through: Through) -> None:
    headers = [
        ("Host", "backend:8000"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "1"),
    ]
    seen = through(headers, client=UNTRUSTED_PEER)
    assert seen["client"] == UNTRUSTED_PEER
    assert seen["scheme"] == "http"
    assert host_headers(seen) == [b"backend:8000"]
    assert seen["server"] == ("127.0.0.1", 8000)


def test_client_is_the_first_untrusted_hop_from_the_right(through: Through) -> None:
    seen = through(
        [("X-Forwarded-For", "1.1.1.1, 203.0.113.7, 10.0.0.2, 10.0.0.3")],
        trusted="127.0.0.1, 10.0.0.0/8",
    )
    assert seen["client"] == ("203.0.113.7", 0)


def test_all_hops_trusted_gives_the_leftmost(through: Through) -> None:
    seen = through([("X-Forwarded-For", "10.1.1.1, 10.0.0.2")], trusted=["127.0.0.1", "10.0.0.0/8"])
    assert seen["client"] == ("10.1.1.1", 0)


def test_repeated_headers_are_combined(through: Through) -> None:
    seen = through(
        [
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "10.0.0.2"),
            ("X-Forwarded-Proto", "http"),
        ],
        trusted="127.0.0.1,10.0.0.2",
    )
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"  # the entry that goes with the client's hop


@pytest.mark.parametrize("trusted", ["*", ["*"], "127.0.0.1, *"])
def test_star_trusts_everyone(through: Through, trusted: Any) -> None:
    seen = through(
        [("X-Forwarded-For", "203.0.113.7, 198.51.100.9")], trusted=trusted, client=("8.8.8.8", 1)
    )
    assert seen["client"] == ("203.0.113.7", 0)


def test_ipv6_peers_and_hops(through: Through) -> None:
    seen = through([("X-Forwarded-For", "2001:DB8::7, ::1")], trusted="::1", client=("::1", 5000))
    assert seen["client"] == ("2001:db8::7", 0)  # written the standard way


def test_ipv4_mapped_peer_is_trusted_by_its_ipv4_address(through: Through) -> None:
    # a dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d
    seen = through([("X-Forwarded-For", "203.0.113.7")], client=("::ffff:127.0.0.1", 5000))
    assert seen["client"] == ("203.0.113.7", 0)


def test_hops_with_ports(through: Through) -> None:
    seen = through(
        [("X-Forwarded-For", "[2001:db8::7]:4711, 10.0.0.1:80")], trusted="127.0.0.1,10.0.0.1"
    )
    assert seen["client"] == ("2001:db8::7", 4711)
    seen = through([("X-Forwarded-For", "203.0.113.7:8080")])
    assert seen["client"] == ("203.0.113.7", 8080)


@pytest.mark.parametrize(
    ("proto", "kind", "scheme"),
    [
        ("https", "http", "https"),
        ("http", "http", "http"),
        ("https", "websocket", "wss"),
        ("wss", "websocket", "wss"),
        ("http", "websocket", "ws"),
        ("ws", "websocket", "ws"),
        ("wss", "http", "https"),
        ("HTTPS", "http", "https"),
        (" https ", "http", "https"),
        ("gopher", "http", "http"),  # not a scheme: ignored
        ("https;x", "http", "http"),
    ],
)
def test_proto_sets_the_scheme(through: Through, proto: str, kind: str, scheme: str) -> None:
    assert through([("X-Forwarded-Proto", proto)], kind=kind)["scheme"] == scheme


def test_websocket_scope_gets_client_and_scheme(through: Through) -> None:
    seen = through(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], kind="websocket"
    )
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "wss"


def test_proto_list_is_matched_to_the_client_hop(through: Through) -> None:
    seen = through(
        [("X-Forwarded-For", "203.0.113.7, 10.0.0.2"), ("X-Forwarded-Proto", "https, http")],
        trusted="127.0.0.1,10.0.0.2",
    )
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"


def test_proto_list_of_another_length_uses_the_nearest_proxys_entry(through: Through) -> None:
    seen = through(
        [
            ("X-Forwarded-For", "203.0.113.7, 10.0.0.2, 10.0.0.3"),
            ("X-Forwarded-Proto", "http, https"),
        ],
        trusted="127.0.0.1,10.0.0.0/8",
    )
    assert seen["scheme"] == "https"


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_empty_forwarded_for_keeps_the_client(through: Through, value: str) -> None:
    seen = through([("X-Forwarded-For", value), ("X-Forwarded-Proto", "https")])
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "https"


def test_empty_list_items_are_skipped(through: Through) -> None:
    seen = through(
        [("X-Forwarded-For", "203.0.113.7, , 10.0.0.2,")], trusted="127.0.0.1, 10.0.0.0/8"
    )
    assert seen["client"] == ("203.0.113.7", 0)


@pytest.mark.parametrize("garbage", ["not-an-ip", "999.1.1.1", "1.2.3.4:http", "[::1", "_hidden"])
def test_garbage_hop_stops_the_walk(through: Through, garbage: str) -> None:
    seen = through(
        [("X-Forwarded-For", f"203.0.113.7, {garbage}, 10.0.0.2")],
        trusted="127.0.0.1, 10.0.0.0/8",
    )
    # the walk stops at the garbage: it is neither a trusted proxy nor an address
    assert seen["client"] == ("127.0.0.1", 5000)


def test_literal_hops_are_matched_against_trusted_literals(through: Through) -> None:
    # nginx reached over a UNIX socket writes `unix:` into X-Forwarded-For
    seen = through([("X-Forwarded-For", "203.0.113.7, unix:")], trusted="127.0.0.1, unix:")
    assert seen["client"] == ("203.0.113.7", 0)


def test_huge_lists_read_only_the_rightmost_hops(through: Through) -> None:
    many = ", ".join(["10.0.0.1"] * 100_000 + ["203.0.113.7"])
    seen = through([("X-Forwarded-For", many)], trusted="127.0.0.1,10.0.0.0/8")
    assert seen["client"] == ("203.0.113.7", 0)
    hops = ["203.0.113.7"] + [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(100_000)]
    seen = through([("X-Forwarded-For", ", ".join(hops))], trusted="127.0.0.1,10.0.0.0/8")
    # only the MAX_HOPS rightmost hops are read: the leftmost of those is taken
    assert seen["client"] == (hops[-MAX_HOPS], 0)


# --- X-Forwarded-Host / -Port -------------------------------------------------------------------
def test_host_and_port_from_a_trusted_peer(through: Through) -> None:
    seen = through(
        [
            ("Host", "backend:8000"),
            ("Accept", "*/*"),
            ("X-Forwarded-Host", "example.com"),
            ("X-Forwarded-Port", "443"),
        ]
    )
    assert seen["headers"][0] == (b"host", b"example.com")  # in the Host header's place
    assert host_headers(seen) == [b"example.com"]
    assert seen["server"] == ("127.0.0.1", 443)


@pytest.mark.parametrize("host", ["example.com:8443", "[2001:db8::1]:443", "10.0.0.1", "a_b.local"])
def test_forwarded_host_forms(through: Through, host: str) -> None:
    seen = through([("Host", "backend"), ("X-Forwarded-Host", host)])
    assert host_headers(seen) == [host.encode()]


def test_forwarded_host_replaces_every_host_header_or_adds_one(through: Through) -> None:
    seen = through([("Host", "a"), ("Host", "b"), ("X-Forwarded-Host", "example.com")])
    assert host_headers(seen) == [b"example.com"]
    seen = through([("X-Forwarded-Host", "example.com")])  # HTTP/1.0 without Host
    assert host_headers(seen) == [b"example.com"]


def test_forwarded_host_list_follows_the_client_hop(through: Through) -> None:
    seen = through(
        [
            ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
            ("X-Forwarded-Host", "example.com, internal.lan"),
        ],
        trusted="127.0.0.1,10.0.0.2",
    )
    assert host_headers(seen) == [b"example.com"]


@pytest.mark.parametrize(
    "bad",
    [
        "evil.com/path",
        "a b",
        "x@y",
        "é.com",
        "h" * 300,
        "[::1",
        "a:b",
        "a\r\nX-Injected: 1",
        "a:123456",
    ],
)
def test_invalid_forwarded_host_is_ignored(through: Through, bad: str) -> None:
    seen = through([("Host", "backend"), ("X-Forwarded-Host", bad)])
    assert host_headers(seen) == [b"backend"]


@pytest.mark.parametrize("bad", ["0", "65536", "http", "-1", "99999999", "4\u00b2"])
def test_invalid_forwarded_port_is_ignored(through: Through, bad: str) -> None:
    assert through([("X-Forwarded-Port", bad)])["server"] == ("127.0.0.1", 8000)


def test_forwarded_port_leaves_a_unix_socket_server_alone(through: Through) -> None:
    seen = through(
        [("X-Forwarded-Port", "443")], trusted="unix:", client=None, server=("/run/a.sock", None)
    )
    assert seen["server"] == ("/run/a.sock", None)


# --- one family at a time -------------------------------------------------------------------
def test_only_the_chosen_family_is_read(through: Through) -> None:
    forwarded = [("Forwarded", "for=203.0.113.9;proto=https;host=evil.example")]
    seen = through([("Host", "backend"), *forwarded])
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "http"
    assert host_headers(seen) == [b"backend"]
    x_forwarded = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    seen = through(x_forwarded, family="forwarded")
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "http"


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ValueError, match="x-forwarded"):
        ProxyHeadersMiddleware(_app, headers="via")


def test_family_name_is_case_insensitive(through: Through) -> None:
    seen = through([("Forwarded", "for=203.0.113.9")], family="Forwarded")
    assert seen["client"] == ("203.0.113.9", 0)


# --- what passes through untouched ----------------------------------------------------------
async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


async def receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def send(message: Any) -> None:
    pass


def test_without_proxy_headers_the_app_gets_the_same_scope_object() -> None:
    received: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope)

    headers = [(b"host", b"example.com"), (b"x-real-ip", b"203.0.113.7")]
    scope = {"type": "http", "client": ("127.0.0.1", 5000), "scheme": "http", "headers": headers}
    before = dict(scope)
    asyncio.run(ProxyHeadersMiddleware(app)(scope, receive, send))
    assert received[0] is scope
    assert scope == before
    assert scope["headers"] is headers


def test_lifespan_scope_passes_through() -> None:
    received: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts="*")(scope, receive, send))
    assert received == [{"type": "lifespan", "asgi": {"version": "3.0"}}]


def test_the_apps_result_and_errors_come_through() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("from the app")

    scope = {"type": "http", "client": ("127.0.0.1", 1), "headers": []}
    with pytest.raises(RuntimeError, match="from the app"):
        asyncio.run(ProxyHeadersMiddleware(failing)(scope, receive, send))


# --- one middleware, many requests ---------------------------------------------------
def _scope(client: Any, server: Any, kind: str, headers: list[tuple[bytes, bytes]]) -> Any:
    scheme = "http" if kind == "http" else "ws"
    return {"type": kind, "scheme": scheme, "client": client, "server": server, "headers": headers}


def test_repeated_header_values_give_the_same_answer_to_every_request() -> None:
    """What the headers ask for is remembered per header values; each request
    still gets its own peer check, scope type and server."""
    received: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope)

    middleware = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1, unix:")
    headers = [
        (b"host", b"backend"),
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-port", b"443"),
    ]
    scopes = [
        _scope(("127.0.0.1", 1), ("127.0.0.1", 8000), "http", headers),
        _scope(("127.0.0.1", 2), ("127.0.0.1", 8000), "websocket", headers),
        _scope(("198.51.100.1", 3), ("127.0.0.1", 8000), "http", headers),  # untrusted
        _scope(None, ("/run/a.sock", None), "http", headers),
        _scope(("127.0.0.1", 4), ("127.0.0.1", 8000), "http", list(headers)),
    ]
    for scope in scopes:
        asyncio.run(middleware(scope, receive, send))
    seen = [(s["client"], s["scheme"], s["server"]) for s in received]
    assert seen == [
        (("203.0.113.7", 0), "https", ("127.0.0.1", 443)),
        (("203.0.113.7", 0), "wss", ("127.0.0.1", 443)),
        (("198.51.100.1", 3), "http", ("127.0.0.1", 8000)),
        (("203.0.113.7", 0), "https", ("/run/a.sock", None)),
        (("203.0.113.7", 0), "https", ("127.0.0.1", 443)),
    ]


def test_many_distinct_header_values_keep_memory_bounded() -> None:
    received: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope["client"])

    middleware = ProxyHeadersMiddleware(app)
    addresses = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(10_000)]

    async def requests() -> None:
        for address in addresses:
            headers = [(b"x-forwarded-for", address.encode())]
            await middleware(_scope(("127.0.0.1", 1), None, "http", headers), receive, send)

    asyncio.run(requests())
    assert received == [(address, 0) for address in addresses]
    long_value = ", ".join(["10.0.0.1"] * 1000).encode()
    headers = [(b"x-forwarded-for", long_value)]
    asyncio.run(middleware(_scope(("127.0.0.1", 1), None, "http", headers), receive, send))
    assert received[-1] == ("10.0.0.1", 0)
    assert len(middleware._changes) <= 4096
    assert all(len(",".join(filter(None, key))) <= 512 for key in middleware._changes)


# --- UNIX sockets -------------------------------------------------------------------------------
@pytest.mark.parametrize("trusted", ["/run/app.sock", "unix:", "unix:/run/app.sock", "*"])
def test_unix_socket_peer_trusted_by_path_or_literal(through: Through, trusted: str) -> None:
    seen = through(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        trusted=trusted,
        client=None,
        server=("/run/app.sock", None),
    )
    assert seen["client"] == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"


@pytest.mark.parametrize("trusted", ["127.0.0.1,::1", "/run/other.sock", "unix:/run/other.sock"])
def test_unix_socket_peer_not_listed_is_untrusted(through: Through, trusted: str) -> None:
    seen = through(
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        trusted=trusted,
        client=None,
        server=("/run/app.sock", None),
    )
    assert seen["client"] is None
    assert seen["scheme"] == "http"


def test_peer_without_any_address_is_trusted_only_by_star(through: Through) -> None:
    headers = [("X-Forwarded-For", "203.0.113.7")]
    assert through(headers, client=None, server=None)["client"] is None
    assert through(headers, trusted="*", client=None, server=None)["client"] == ("203.0.113.7", 0)


# --- RFC 7239 Forwarded -------------------------------------------------------------------------
def test_forwarded_sets_client_proto_and_host(through: Through) -> None:
    seen = through(
        [("Host", "backend"), ("Forwarded", 'for=203.0.113.9;proto=https;host="example.com:8443"')],
        family="forwarded",
    )
    assert seen["client"] == ("203.0.113.9", 0)
    assert seen["scheme"] == "https"
    assert host_headers(seen) == [b"example.com:8443"]


def test_forwarded_parameter_names_are_case_insensitive(through: Through) -> None:
    seen = through([("Forwarded", "For=203.0.113.9 ; PROTO=https")], family="forwarded")
    assert seen["client"] == ("203.0.113.9", 0)
    assert seen["scheme"] == "https"


@pytest.mark.parametrize(
    ("node", "client"),
    [
        ('"[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711)),
        ('"[2001:db8:cafe::17]"', ("2001:db8:cafe::17", 0)),
        ('"203.0.113.9:80"', ("203.0.113.9", 80)),
        ('"[2001:db8::17]:_obfport"', ("2001:db8::17", 0)),
        ("203.0.113.9", ("203.0.113.9", 0)),
        # not valid RFC 7239 (IPv6 must be quoted) but a common mistake; still read
        ("[2001:db8::17]:4711", ("2001:db8::17", 4711)),
        ("2001:db8::17", ("2001:db8::17", 0)),
    ],
)
def test_forwarded_for_forms(through: Through, node: str, client: tuple[str, int]) -> None:
    assert through([("Forwarded", f"for={node}")], family="forwarded")["client"] == client


def test_forwarded_walks_elements_from_the_right(through: Through) -> None:
    seen = through(
        [
            ("Forwarded", "for=198.51.100.1;proto=http, for=203.0.113.9;proto=https"),
            ("Forwarded", "for=10.0.0.5;proto=http;by=10.0.0.6"),
        ],
        trusted="127.0.0.1, 10.0.0.0/8",
        family="forwarded",
    )
    assert seen["client"] == ("203.0.113.9", 0)
    assert seen["scheme"] == "https"


@pytest.mark.parametrize("node", ["unknown", "_hidden", '"_secret:_port"', '""'])
def test_forwarded_unknown_and_obfuscated_nodes_keep_the_client(
    through: Through, node: str
) -> None:
    seen = through([("Forwarded", f"for={node};proto=https")], family="forwarded")
    assert seen["client"] == ("127.0.0.1", 5000)  # the app only ever sees an address
    assert seen["scheme"] == "https"  # what the proxy knows is still used


def test_forwarded_element_without_for_still_gives_proto_and_host(through: Through) -> None:
    seen = through([("Forwarded", "proto=https;host=example.com")], family="forwarded")
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "https"
    assert host_headers(seen) == [b"example.com"]


def test_forwarded_by_sets_the_server_when_it_has_a_port(through: Through) -> None:
    seen = through([("Forwarded", 'for=203.0.113.9;by="[2001:db8::1]:443"')], family="forwarded")
    assert seen["server"] == ("2001:db8::1", 443)
    for by in ("203.0.113.1", "_proxy", "unknown"):
        seen = through([("Forwarded", f"for=203.0.113.9;by={by}")], family="forwarded")
        assert seen["server"] == ("127.0.0.1", 8000), by


@pytest.mark.parametrize(
    "value",
    [
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice
        'for="1.2.3.4',  # unterminated quote
        'for=1.2.3.4"',
        "for",  # no value
        "=1.2.3.4",  # no name
        "for=",
        "for=1.2.3.4 garbage",
        "for=1.2.3.4;" + ";".join(f"x{n}=y" for n in range(20)),  # too many parameters
    ],
)
def test_malformed_forwarded_element_stops_the_walk(through: Through, value: str) -> None:
    seen = through([("Forwarded", f"for=203.0.113.1, {value}")], trusted="*", family="forwarded")
    # an unreadable element is never trusted, never passed and never the client
    assert seen["client"] == ("127.0.0.1", 5000)


def test_forwarded_empty_elements_are_skipped(through: Through) -> None:
    seen = through([("Forwarded", ", for=203.0.113.9, ,")], family="forwarded")
    assert seen["client"] == ("203.0.113.9", 0)


def test_an_unclosed_quote_cannot_hide_the_element_a_proxy_appends(through: Through) -> None:
    # a client sends `Forwarded: for=1.1.1.1;host="` and its proxy appends its own element
    for appended in ("for=203.0.113.66", 'for="[2001:db8::66]"'):
        seen = through([("Forwarded", f'for=1.1.1.1;host=", {appended}')], family="forwarded")
        assert seen["client"][0] in ("203.0.113.66", "2001:db8::66")


def test_huge_forwarded_headers_read_only_the_rightmost_elements(through: Through) -> None:
    value = ", ".join(["for=10.0.0.1"] * 100_000 + ["for=203.0.113.7"])
    seen = through([("Forwarded", value)], trusted="127.0.0.1,10.0.0.0/8", family="forwarded")
    assert seen["client"] == ("203.0.113.7", 0)
    value = ", ".join(["for=203.0.113.7"] + ["for=10.0.0.1"] * 100_000)
    seen = through([("Forwarded", value)], trusted="127.0.0.1,10.0.0.0/8", family="forwarded")
    assert seen["client"] == ("10.0.0.1", 0)


# --- the environment ----------------------------------------------------------------------------
def test_standalone_environment_has_no_other_ketch_package() -> None:
    if os.environ.get("KETCH_PROXY_ALONE") != "1":
        pytest.skip("only meaningful in the proxy-alone environment (hatch run proxy-alone:unit)")
    for name in ("ketch.core", "ketch.http", "ketch.ws", "ketch.supervisor", "ketch.cli"):
        assert importlib.util.find_spec(name) is None, name
    assert importlib.util.find_spec("ketch.proxy") is not None
