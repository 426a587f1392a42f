"""HPACK (RFC 7541) for response headers, in place of the hpack library's encoder.

The same compression, less work: a header already in the dynamic table is
found by a dictionary lookup (hpack searches the table entry by entry, for
every header of every response), and literals are written as they are
(no Huffman coding: once indexed, a header costs one byte anyway). h2 calls
`encode()` for each header block and sets `header_table_size` when the
client's SETTINGS_HEADER_TABLE_SIZE changes.

Every header is indexed (incremental indexing) except `set-cookie`, which is
never indexed (RFC 7541 7.1.3: a secret is not left in a shared table).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

from hpack.table import HeaderTable

# the protocol's initial table size, and the most ketch uses
DEFAULT_TABLE_SIZE: Final = 4096
ENTRY_OVERHEAD: Final = 32  # RFC 7541 4.1
NEVER_INDEXED: Final = frozenset({b"set-cookie"})
# RFC 7541 appendix A: 1-based
STATIC: Final[dict[tuple[bytes, bytes], int]] = {}
STATIC_NAMES: Final[dict[bytes, int]] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    STATIC.setdefault((_name, _value), _index)
    STATIC_NAMES.setdefault(_name, _index)
FIRST_DYNAMIC: Final = len(HeaderTable.STATIC_TABLE) + 1


def _integer(out: bytearray, value: int, prefix_bits: int, first: int) -> None:
    """RFC 7541 5.1: `value` with a `prefix_bits`-bit prefix, after the bits of `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        out.append(first | value)
        return
    out.append(first | limit)
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)


def _string(out: bytearray, data: bytes) -> None:
    """RFC 7541 5.2: a string literal, not Huffman-coded."""
    _integer(out, len(data), 7, 0x00)
    out += data


class HeaderEncoder:
    """An HPACK encoder with constant-time table lookups (see the module)."""

    __slots__ = ("_entries", "_fields", "_max", "_names", "_next", "_size", "_updates")

    def __init__(self) -> None:
        self._max = DEFAULT_TABLE_SIZE  # the dynamic table's size, as the client knows it
        self._size = 0
        # oldest first: (name, value, number, size); an entry's number never changes,
        # its index is FIRST_DYNAMIC + (newest number - its number)
        self._entries: deque[tuple[bytes, bytes, int, int]] = deque()
        self._fields: dict[tuple[bytes, bytes], int] = {}  # field -> number of its entry
        self._names: dict[bytes, int] = {}  # name -> number of its newest entry
        self._next = 0  # the number of the next entry
        self._updates: list[int] = []  # table sizes to announce at the next block

    @property
    def header_table_size(self) -> int:
        return self._max

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """The client's SETTINGS_HEADER_TABLE_SIZE: the table is never larger."""
        size = min(value, DEFAULT_TABLE_SIZE)
        if size != self._max:
            self._max = size
            self._updates.append(size)
            self._evict()

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        """One header block. (`huffman` is h2's argument; literals are never Huffman-coded.)"""
        out = bytearray()
        updates = self._updates
        if updates:  # RFC 7541 4.2: the smallest size since the last block, then the last
            smallest = min(updates)
            _integer(out, smallest, 5, 0x20)
            if updates[-1] != smallest:
                _integer(out, updates[-1], 5, 0x20)
            updates.clear()
        fields = self._fields
        for field in headers:
            index = STATIC.get(field)
            if index is not None:
                out.append(0x80 | index)  # (static indices fit in the 7-bit prefix)
                continue
            number = fields.get(field)
            if number is not None:
                _integer(out, FIRST_DYNAMIC + self._next - 1 - number, 7, 0x80)
                continue
            name, value = field
            size = len(name) + len(value) + ENTRY_OVERHEAD
            if name in NEVER_INDEXED:
                first, prefix, indexed = 0x10, 4, False
            elif size > self._max:
                first, prefix, indexed = 0x00, 4, False  # would empty the table for nothing
            else:
                first, prefix, indexed = 0x40, 6, True
            name_index = STATIC_NAMES.get(name)
            if name_index is None:
                number = self._names.get(name)
                if number is not None:
                    name_index = FIRST_DYNAMIC + self._next - 1 - number
            if name_index is None:
                out.append(first)
                _string(out, name)
            else:
                _integer(out, name_index, prefix, first)
            _string(out, value)
            if indexed:
                self._insert(name, value, size)
        return bytes(out)

    def _insert(self, name: bytes, value: bytes, size: int) -> None:
        number = self._next
        self._next = number + 1
        self._entries.append((name, value, number, size))
        self._fields[(name, value)] = number
        self._names[name] = number
        self._size += size
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
        while self._size > self._max:
            name, value, number, size = entries.popleft()
            self._size -= size
            if self._fields.get((name, value)) == number:
                del self._fields[(name, value)]
            if self._names.get(name) == number:
                del self._names[name]
