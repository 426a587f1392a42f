"""Reading the two families of proxy headers into hops.

A hop is what one proxy recorded about the peer it received the request from:
that peer's address (`node`), how it spoke to the proxy (`proto`, `host`,
`port`) and, in RFC 7239, the proxy's own interface (`by`). Hops are listed
left to right; the rightmost was added by the nearest proxy.

Work is bounded whatever the headers hold: at most `MAX_HOPS` hops are read,
counted from the right, and at most `MAX_PARAMETERS` parameters per
`Forwarded` element. Nothing here raises on any input.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Enough for any real chain of proxies, and a bound on the work a forged header
# can cause. Hops further left are not read; when all the hops read are trusted,
# the leftmost of them is the client.
MAX_HOPS = 64
# An element with more parameters than this is not read (RFC 7239 defines four).
MAX_PARAMETERS = 16

# RFC 9110 token; unquoted values also take `:`, `[` and `]`, so that an IPv6
# address or a port written without the quotes RFC 7239 asks for still reads.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
# One `name=value` pair (or nothing), then `;` or the end of the element.
_PAIR = re.compile(rf"[ \t]*(?:({_TOKEN})=({_VALUE_TOKEN}|{_QUOTED}))?[ \t]*(;|\Z)")
_ESCAPE = re.compile(r"\\(.)")


class Hop(NamedTuple):
    """One proxy's record; `node` is None when the hop names no peer or is unreadable."""

    node: str | None
    proto: str | None = None
    host: str | None = None
    port: str | None = None
    by: str | None = None


def _list_items(value: str) -> list[str]:
    """The rightmost `MAX_HOPS` items of a comma-separated list, empty items
    skipped (RFC 9110 5.6.1 asks recipients to ignore them)."""
    if "," not in value:  # the usual single item, without the list machinery
        value = value.strip(" \t")
        return [value] if value else []
    items = value.rsplit(",", MAX_HOPS)
    if len(items) > MAX_HOPS:
        del items[0]  # the unread rest of the list
    return [item for item in (raw.strip(" \t") for raw in items) if item]


def x_forwarded_hops(
    for_value: str | None,
    proto_value: str | None = None,
    host_value: str | None = None,
    port_value: str | None = None,
) -> list[Hop]:
    """Hops from X-Forwarded-For/-Proto/-Host/-Port (each header's values
    already joined with commas).

    When -Proto (or -Host, -Port) lists one entry per hop, entries are matched
    to hops by position from the right; otherwise its rightmost entry (set by
    the nearest proxy) applies to every hop. Without X-Forwarded-For there is
    one hop with no node, carrying the other headers.
    """
    nodes: list[str | None] = list(_list_items(for_value)) if for_value else []
    if len(nodes) <= 1:  # the usual case: one proxy, one hop
        node = nodes[0] if nodes else None
        return [Hop(node, _last(proto_value), _last(host_value), _last(port_value))]
    count = len(nodes)
    protos = _per_hop(proto_value, count)
    hosts = _per_hop(host_value, count)
    ports = _per_hop(port_value, count)
    return [Hop(node, protos[i], hosts[i], ports[i]) for i, node in enumerate(nodes)]


def _last(value: str | None) -> str | None:
    """The rightmost item of a list header, or None."""
    if not value:
        return None
    if "," not in value:
        return value.strip(" \t") or None
    items = _list_items(value)
    return items[-1] if items else None


def _per_hop(value: str | None, count: int) -> list[str | None]:
    """One entry of an X-Forwarded-Proto/-Host/-Port list for each of `count` hops."""
    items = _list_items(value) if value else []
    if not items:
        return [None] * count
    if count > 1 and len(items) >= count:
        return list(items[-count:])
    return [items[-1]] * count


def forwarded_hops(value: str) -> list[Hop]:
    """Hops from RFC 7239 `Forwarded` headers (already joined with commas).

    Each element is one hop. An element that does not parse (bad quoting, a
    parameter twice, stray characters) becomes a hop with no node, which the
    trust walk never passes.

    Elements are split at every comma, even inside quotes: no standard
    parameter holds a comma, and this way an unclosed quote in a forged
    element cannot swallow the elements that proxies append after it.
    """
    hops: list[Hop] = []
    for element in _list_items(value):
        parameters = _parameters(element)
        if parameters is None:
            hops.append(Hop(None))
        else:
            get = parameters.get
            hops.append(Hop(get("for") or None, get("proto"), get("host"), None, get("by")))
    return hops


def _parameters(element: str) -> dict[str, str] | None:
    """The parameters of one element, names lowercased; None when it does not parse."""
    parameters: dict[str, str] = {}
    position = 0
    for _ in range(MAX_PARAMETERS + 1):
        match = _PAIR.match(element, position)
        if match is None:
            return None
        name, value, separator = match.groups()
        if name is not None:
            name = name.lower()
            if name in parameters:  # RFC 7239 4: at most once per element
                return None
            parameters[name] = _unquote(value)
        if not separator:  # the end of the element
            return parameters
        position = match.end()
    return None


def _unquote(value: str) -> str:
    if value.startswith('"'):
        inner = value[1:-1]
        return _ESCAPE.sub(r"\1", inner) if "\\" in inner else inner
    return value
