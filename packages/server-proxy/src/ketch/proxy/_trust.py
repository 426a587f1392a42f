"""Which peers are trusted to tell us about the client: addresses, networks
(CIDR), literals (a UNIX socket path, `unix:`) and `*`; and reading the
addresses that peers and proxy headers carry."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Trust decisions are cached per host string; the cache is dropped when it grows
# past this, so a flood of distinct addresses cannot grow memory.
_CACHE_LIMIT = 4096
# Longer than any written address ("[v6%zone]:port"): such a string is no address.
_MAX_ADDRESS_LENGTH = 64
_OBFUSCATED_PORT = re.compile(r"_[A-Za-z0-9._-]+\Z")
# An IPv6 zone (`fe80::1%eth0`): the ipaddress module takes any text there.
_ZONE = re.compile(r"%[A-Za-z0-9._-]+\Z")


def parse_node(text: str) -> tuple[IPAddress | None, int]:
    """The address and port of a node as proxies write it: `1.2.3.4`, `::1`,
    `[::1]`, `1.2.3.4:80`, `[::1]:80`, or with an RFC 7239 obfuscated port
    (`[::1]:_abc`). The port is 0 when absent or obfuscated; the address is
    None for anything that is not an IP address (`unknown`, `_hidden`, `unix:`,
    garbage)."""
    text = text.strip()
    if not text or len(text) > _MAX_ADDRESS_LENGTH:
        return None, 0
    port: str | None = None  # what follows the address's `:`, if anything does
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, 0
        if rest:
            port = rest[1:]
    elif text.count(":") == 1:  # IPv4 and a port; a bare IPv6 has two colons or more
        host, _, port = text.partition(":")
    else:
        host = text
    number = 0 if port is None else _port_number(port)
    if number is None or ("%" in host and not _ZONE.search(host)):
        return None, 0
    try:
        return ipaddress.ip_address(host), number
    except ValueError:
        return None, 0


def parse_address(text: str) -> IPAddress | None:
    """The IP address of a node (see `parse_node`), or None."""
    return parse_node(text)[0]


def _port_number(port: str) -> int | None:
    """A port as written after a node: digits (0 to 65535), or an RFC 7239
    obfuscated port (`_` then letters, digits, `.`, `_`, `-`), read as 0;
    None for anything else."""
    if port.isascii() and port.isdigit() and len(port) <= 5:
        number = int(port)
        return number if number <= 65535 else None
    return 0 if _OBFUSCATED_PORT.match(port) else None


class TrustedHosts:
    """The `trusted_hosts` given to the middleware: a list, or a comma-separated
    string, of IP addresses, networks in CIDR form, literals (anything else, such
    as a UNIX socket path or `unix:`) and `*` (trust everyone).

    `host in trusted` says whether a peer or a hop is trusted: an address is
    checked against the addresses and networks (an IPv4-mapped IPv6 address
    such as `::ffff:127.0.0.1` also as its IPv4 form), anything else against
    the literals.
    """

    def __init__(self, trusted_hosts: str | Iterable[str]) -> None:
        if isinstance(trusted_hosts, str):
            trusted_hosts = trusted_hosts.split(",")
        entries = [entry.strip() for entry in trusted_hosts]
        entries = [entry for entry in entries if entry]
        self.always: bool = "*" in entries
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        literals: set[str] = set()
        for entry in entries:
            if entry == "*":
                continue
            if "/" in entry:
                try:  # 10.0.0.0/8; a host part is allowed (10.1.2.3/8 is 10.0.0.0/8)
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:  # a path such as /run/app.sock or unix:/run/app.sock
                    literals.add(entry)
                continue
            address = parse_address(entry)
            if address is not None:
                addresses.add(address)
            else:
                literals.add(entry)
        self.addresses: frozenset[IPAddress] = frozenset(addresses)
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        self.literals: frozenset[str] = frozenset(literals)
        self._any_unix_socket = "unix:" in self.literals
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: object) -> bool:
        if self.always:
            return True
        if not isinstance(host, str):
            return False
        if len(host) > _MAX_ADDRESS_LENGTH:  # no address; not worth a cache entry
            return host in self.literals
        known = self._cache.get(host)
        if known is None:
            known = self._decide(host)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[host] = known
        return known

    def _decide(self, host: str) -> bool:
        address = parse_address(host)
        if address is None:
            return host in self.literals
        if self._address_trusted(address):
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return mapped is not None and self._address_trusted(mapped)

    def _address_trusted(self, address: IPAddress) -> bool:
        return address in self.addresses or any(address in net for net in self.networks)

    def trusts_unix_socket(self, path: str) -> bool:
        """A peer connected over the UNIX socket at `path`: trusted when `*`,
        `unix:`, the path itself or `unix:PATH` is listed."""
        return (
            self.always
            or self._any_unix_socket
            or path in self.literals
            or f"unix:{path}" in self.literals
        )

    def __repr__(self) -> str:
        parts = ["*"] if self.always else []
        parts += sorted(map(str, self.addresses)) + sorted(map(str, self.networks))
        parts += sorted(self.literals)
        return f"TrustedHosts({','.join(parts)!r})"
