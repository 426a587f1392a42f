"""Properties of the trust walk and the parsers, over generated headers."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ketch.proxy import ProxyHeadersMiddleware, TrustedHosts, forwarded_hops, parse_address

Through = Callable[..., dict[str, Any]]  # the `through` fixture (conftest.py)

TRUSTED = "127.0.0.1, 10.0.0.0/8, 2001:db8:1::/48"
TRUSTED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:1::/48")]
PEER = ("127.0.0.1", 5000)


def is_trusted(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return str(ip) == "127.0.0.1" or any(ip in network for network in TRUSTED_NETWORKS)


trusted_ip = st.one_of(
    st.integers(0, 2**24 - 1).map(lambda n: str(TRUSTED_NETWORKS[0][n])),
    st.integers(0, 2**80 - 1).map(lambda n: str(TRUSTED_NETWORKS[1][n])),
)
any_ip = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
untrusted_ip = any_ip.filter(lambda ip: not is_trusted(ip))
port = st.one_of(st.none(), st.integers(1, 65535))
junk = st.text(alphabet=st.characters(codec="latin-1"), max_size=40)


def x_forwarded_node(address: str, port: int | None) -> str:
    """A hop as X-Forwarded-For writes it."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def forwarded_node(address: str, port: int | None) -> str:
    """A `for=` value as RFC 7239 writes it (IPv6 and ports quoted)."""
    if ":" in address:
        return f'"[{address}]"' if port is None else f'"[{address}]:{port}"'
    return address if port is None else f'"{address}:{port}"'


hop = st.tuples(st.one_of(trusted_ip, untrusted_ip), port)


def expected_client(hops: list[tuple[str, int | None]]) -> tuple[str, int]:
    """The rightmost untrusted hop, else the leftmost; port 0 when not written."""
    untrusted = [h for h in hops if not is_trusted(h[0])]
    address, written_port = untrusted[-1] if untrusted else hops[0]
    return address, written_port or 0


@settings(max_examples=300, deadline=None)
@given(hops=st.lists(hop, min_size=1, max_size=12), family=st.sampled_from(["x", "rfc"]))
def test_walk_picks_the_rightmost_untrusted_hop_or_the_leftmost(
    through: Through, hops: list[tuple[str, int | None]], family: str
) -> None:
    if family == "x":
        headers = [("X-Forwarded-For", ", ".join(x_forwarded_node(*h) for h in hops))]
        seen = through(headers, trusted=TRUSTED)
    else:
        value = ", ".join(f"for={forwarded_node(*h)}" for h in hops)
        seen = through([("Forwarded", value)], trusted=TRUSTED, family="forwarded")
    assert seen["client"] == expected_client(hops)


@settings(max_examples=200, deadline=None)
@given(hops=st.lists(trusted_ip, min_size=1, max_size=12))
def test_all_hops_trusted_gives_the_leftmost(through: Through, hops: list[str]) -> None:
    seen = through([("X-Forwarded-For", ", ".join(hops))], trusted=TRUSTED)
    assert seen["client"] == (hops[0], 0)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(trusted_ip, untrusted_ip, junk), max_size=8),
    peer=untrusted_ip,
    family=st.sampled_from(["x", "rfc"]),
)
def test_an_untrusted_peer_never_changes_anything(
    through: Through, values: list[str], peer: str, family: str
) -> None:
    headers = [
        ("Host", "backend"),
        ("X-Forwarded-For", ", ".join(values)),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "1"),
        ("Forwarded", ", ".join(f"for={v};proto=https;host=evil;by=10.0.0.1:1" for v in values)),
    ]
    seen = through(
        headers,
        trusted=TRUSTED,
        client=(peer, 1234),
        family="x-forwarded" if family == "x" else "forwarded",
    )
    assert seen["client"] == (peer, 1234)
    assert seen["scheme"] == "http"
    assert seen["server"] == ("127.0.0.1", 8000)
    assert [v for k, v in seen["headers"] if k == b"host"] == [b"backend"]


@settings(max_examples=500, deadline=None)
@given(
    value=st.text(alphabet=st.characters(codec="latin-1"), max_size=200),
    family=st.sampled_from(["x-forwarded", "forwarded"]),
    trusted=st.sampled_from(["*", TRUSTED, "unix:, ::1"]),
)
def test_garbage_never_raises_and_the_client_is_a_written_hop_or_the_peer(
    through: Through, value: str, family: str, trusted: str
) -> None:
    headers = [
        ("X-Forwarded-For", value),
        ("X-Forwarded-Proto", value),
        ("X-Forwarded-Host", value),
        ("X-Forwarded-Port", value),
        ("Forwarded", value),
    ]
    seen = through(headers, trusted=trusted, family=family)
    client = seen["client"]
    if client != PEER:
        # a new client is an address that the header itself carried
        pieces = re.split(r'[,;="\\ \t]+', value)
        written = {parse_address(piece) for piece in pieces} - {None}
        assert ipaddress.ip_address(client[0]) in written
        assert 0 <= client[1] <= 65535
    assert seen["scheme"] in ("http", "https")
    assert 0 < seen["server"][1] <= 65535
    hosts = [v for k, v in seen["headers"] if k == b"host"]
    assert len(hosts) <= 1
    assert all(host.isascii() and b" " not in host and b"/" not in host for host in hosts)


@settings(max_examples=300, deadline=None)
@given(forged=junk, real=untrusted_ip, real_port=port, same_line=st.booleans())
def test_what_a_client_forges_cannot_hide_the_hop_its_proxy_appends(
    through: Through, forged: str, real: str, real_port: int | None, same_line: bool
) -> None:
    """Whatever a client writes to the left, the hop its (trusted) proxy
    appends on the right is read, and it is the client."""
    expected = (real, real_port or 0)
    appended = x_forwarded_node(real, real_port)
    if same_line:
        headers = [("X-Forwarded-For", f"{forged}, {appended}")]
    else:
        headers = [("X-Forwarded-For", forged), ("X-Forwarded-For", appended)]
    assert through(headers, trusted=TRUSTED)["client"] == expected

    appended = f"for={forwarded_node(real, real_port)}"
    if same_line:
        headers = [("Forwarded", f"{forged}, {appended}")]
    else:
        headers = [("Forwarded", forged), ("Forwarded", appended)]
    assert through(headers, trusted=TRUSTED, family="forwarded")["client"] == expected


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
quotable = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters=",\r\n"), min_size=1, max_size=20
)


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def case(name: str, upper: bool) -> str:
    return name.upper() if upper else name


@settings(max_examples=300, deadline=None)
@given(
    elements=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "for": st.tuples(any_ip, port).map(lambda h: forwarded_node(*h)),
                "by": st.one_of(token.map(lambda t: "_" + t), any_ip.map(lambda ip: f'"[{ip}]"')),
                "proto": st.sampled_from(["http", "https", "ws", "wss"]),
                "host": st.one_of(token, quotable.map(quoted)),
                "ext": quotable.map(quoted),
            },
        ),
        min_size=1,
        max_size=6,
    ),
    upper=st.booleans(),
    spaces=st.sampled_from(["", " ", "\t "]),
)
def test_forwarded_elements_read_back_as_written(
    elements: list[dict[str, str]], upper: bool, spaces: str
) -> None:
    header = f"{spaces},{spaces}".join(
        f"{spaces};{spaces}".join(f"{case(k, upper)}={v}" for k, v in element.items())
        for element in elements
    )
    hops = forwarded_hops(header)
    written = [element for element in elements if element]  # empty elements are skipped
    assert len(hops) == len(written)

    def unquoted(value: str | None) -> str | None:
        if value is None or not value.startswith('"'):
            return value
        return re.sub(r"\\(.)", r"\1", value[1:-1])

    for hop_read, element in zip(hops, written, strict=True):
        assert hop_read.node == unquoted(element.get("for"))
        assert hop_read.by == unquoted(element.get("by"))
        assert hop_read.proto == element.get("proto")
        assert hop_read.host == unquoted(element.get("host"))


networks = st.lists(
    st.one_of(
        st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
        st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
    ).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(nets=networks, address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_trust_agrees_with_the_ipaddress_module(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    trusted = TrustedHosts([str(net) for net in nets])
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    expected = any(ip in net for ip in candidates for net in nets)
    assert (str(address) in trusted) is expected
    assert (str(address) in trusted) is expected  # the cached answer is the same


request = st.tuples(
    st.sampled_from([("127.0.0.1", 1), ("10.0.0.9", 2), ("198.51.100.1", 3), None]),
    st.sampled_from(["http", "websocket"]),
    st.lists(
        st.tuples(
            st.sampled_from(["x-forwarded-for", "x-forwarded-proto", "forwarded", "host"]),
            st.sampled_from(["203.0.113.7", "10.0.0.2, 198.51.100.4", "https", "for=1.2.3.4", ""]),
        ),
        max_size=4,
    ),
)


@settings(max_examples=200, deadline=None)
@given(requests=st.lists(request, min_size=1, max_size=8))
def test_remembered_answers_equal_fresh_ones(through: Through, requests: list[Any]) -> None:
    """One middleware serving many requests answers each as a new one would."""
    shared = ProxyHeadersMiddleware(_record, trusted_hosts=TRUSTED)

    async def serve_all() -> list[Any]:
        seen = []
        for peer, kind, headers in requests:
            scope = {
                "type": kind,
                "scheme": "http" if kind == "http" else "ws",
                "client": peer,
                "server": ("127.0.0.1", 8000),
                "headers": [(k.encode(), v.encode()) for k, v in headers],
            }
            await shared(scope, _receive, _send)
            seen.append((scope["client"], scope["scheme"], scope["headers"]))
        return seen

    remembered = asyncio.run(serve_all())
    for (peer, kind, headers), answer in zip(requests, remembered, strict=True):
        fresh = through(headers, trusted=TRUSTED, client=peer, kind=kind)
        assert answer == (fresh["client"], fresh["scheme"], fresh["headers"])


async def _record(scope: Any, receive: Any, send: Any) -> None:
    pass


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _send(message: Any) -> None:
    pass
