"""Reading the two families of proxy headers into hops.

A hop is what one proxy recorded about the peer it received the request from:
its address (`node`), and how that peer spoke to it (`proto`, `host`, `port`).
Hops are listed left to right, the rightmost added by the nearest proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

# At most this many hops are read, counted from the right: enough for any real
# chain of proxies, and a bound on the work a forged header can cause.
MAX_HOPS = 64
# RFC 9110 5.6.2 token characters.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Hop:
    node: str | None  # the "for" address as written; None when the hop is unreadable
    proto: str | None = None
    host: str | None = None
    port: str | None = None


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def x_forwarded_hops(
    for_value: str | None,
    proto_value: str | None,
    host_value: str | None,
    port_value: str | None,
) -> list[Hop]:
    """Hops from X-Forwarded-For/-Proto/-Host/-Port (each already combined).

    A list that has one entry per hop is matched to the hops by position;
    otherwise its rightmost entry (set by the nearest proxy) applies to every hop.
    """
    nodes = _split(for_value)[-MAX_HOPS:] if for_value else []
    count = max(len(nodes), 1)

    def per_hop(value: str | None) -> list[str | None]:
        if not value:
            return [None] * count
        items = _split(value)
        if len(items) >= count and len(nodes) > 1:
            return list(items[-count:])
        return [items[-1]] * count

    protos, hosts, ports = per_hop(proto_value), per_hop(host_value), per_hop(port_value)
    if not nodes:
        return [Hop(None, protos[0], hosts[0], ports[0])]
    return [Hop(node or None, protos[i], hosts[i], ports[i]) for i, node in enumerate(nodes)]


def forwarded_hops(value: str) -> list[Hop]:
    """Hops from RFC 7239 `Forwarded` headers (already combined with commas).

    Each element is one hop; an element that does not parse becomes a hop with
    no node, which stops the trust walk there."""
    hops: list[Hop] = []
    for element in _elements(value)[-MAX_HOPS:]:
        if element is None:
            hops.append(Hop(None))
            continue
        node = element.get("for")
        hops.append(Hop(node, element.get("proto"), element.get("host"), None))
    return hops


def _elements(value: str) -> list[dict[str, str] | None]:
    """Parse `forwarded-element *( "," forwarded-element )`; None for a bad element."""
    elements: list[dict[str, str] | None] = []
    size = len(value)
    index = 0
    while index < size:
        element: dict[str, str] | None = {}
        while True:
            index = _skip_space(value, index)
            start = index
            while index < size and value[index] in _TCHAR:
                index += 1
            name = value[start:index].lower()
            if not name or index >= size or value[index] != "=":
                element = None
                break
            index += 1
            if index < size and value[index] == '"':
                parsed, index = _quoted(value, index)
                if parsed is None:
                    element = None
                    break
                text = parsed
            else:
                start = index
                while (index < size and value[index] in _TCHAR) or (
                    index < size and value[index] in ":[]"
                ):
                    index += 1
                text = value[start:index]
                if not text:
                    element = None
                    break
            if element is not None:
                if name in element:  # a parameter may appear once per element
                    element = None
                    break
                element[name] = text
            index = _skip_space(value, index)
            if index < size and value[index] == ";":
                index += 1
                continue
            break
        # skip to the end of this element (past garbage, outside quotes)
        index = _skip_space(value, index)
        if index < size and value[index] != ",":
            element = None
            index = _next_comma(value, index)
        elements.append(element)
        index += 1  # past the comma
    if value.rstrip().endswith(","):
        elements.append(None)
    return elements


def _skip_space(value: str, index: int) -> int:
    while index < len(value) and value[index] in " \t":
        index += 1
    return index


def _quoted(value: str, index: int) -> tuple[str | None, int]:
    """A quoted-string starting at `index` (the opening quote)."""
    out: list[str] = []
    index += 1
    while index < len(value):
        char = value[index]
        if char == "\\":
            if index + 1 >= len(value):
                return None, index + 1
            out.append(value[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(out), index + 1
        out.append(char)
        index += 1
    return None, index


def _next_comma(value: str, index: int) -> int:
    quoted = False
    while index < len(value):
        char = value[index]
        if char == "\\" and quoted:
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            return index
        index += 1
    return index
