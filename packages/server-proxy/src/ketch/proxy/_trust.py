"""Which peers are trusted to tell us about the client: addresses, networks,
literals (a UNIX socket path, `unix:`) and `*`."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Decisions per host string are cached; the cache is dropped when it grows past
# this, so a flood of distinct addresses cannot grow memory.
_CACHE_LIMIT = 4096


def parse_address(text: str) -> IPAddress | None:
    """An IP address from `1.2.3.4`, `::1`, `[::1]`, `1.2.3.4:80` or `[::1]:80`;
    None for anything else."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end == -1 or (end + 1 < len(text) and not _is_port(text[end + 2 :], text[end + 1])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_port(port: str, separator: str) -> bool:
    return separator == ":" and port.isdigit() and len(port) <= 5


class TrustedHosts:
    """`trusted_hosts` as given to the middleware: a list, or a comma-separated string."""

    def __init__(self, trusted_hosts: str | Iterable[str]) -> None:
        if isinstance(trusted_hosts, str):
            entries = [entry.strip() for entry in trusted_hosts.split(",")]
        else:
            entries = [entry.strip() for entry in trusted_hosts]
        entries = [entry for entry in entries if entry]
        self.always = "*" in entries
        self.addresses: set[IPAddress] = set()
        self.networks: list[IPNetwork] = []
        self.literals: set[str] = set()
        for entry in entries:
            if entry == "*":
                continue
            address = parse_address(entry) if "/" not in entry else None
            if address is not None:
                self.addresses.add(address)
                continue
            if "/" in entry and not entry.startswith(("/", "unix:")):
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                except ValueError:
                    pass
            self.literals.add(entry)
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: object) -> bool:
        if self.always:
            return True
        if not isinstance(host, str):
            return False
        known = self._cache.get(host)
        if known is not None:
            return known
        trusted = self._decide(host)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[host] = trusted
        return trusted

    def _decide(self, host: str) -> bool:
        address = parse_address(host)
        if address is None:
            return host.strip() in self.literals
        if address in self.addresses:
            return True
        return any(address in network for network in self.networks)

    def trusts_unix_socket(self, path: str) -> bool:
        """A connection over the UNIX socket at `path`."""
        return self.always or bool(self.literals & {path, "unix:", f"unix:{path}"})

    def __repr__(self) -> str:
        parts = ["*"] if self.always else []
        parts += sorted(str(a) for a in self.addresses) + sorted(str(n) for n in self.networks)
        parts += sorted(self.literals)
        return f"TrustedHosts({', '.join(parts)!r})"
