"""The headers ketch adds to every response: Server, Date and `--header` ones.

The Date value is formatted once per second by the server's tick, never per
request. HTTP protocols append `block` to each response head as is.
"""

from __future__ import annotations

import time
from email.utils import formatdate

SERVER_NAME = b"ketch"


class DefaultHeaders:
    __slots__ = ("_custom", "_date", "_second", "_server", "block", "names", "pairs")

    def __init__(
        self, server_header: bool, date_header: bool, custom: list[tuple[str, str]]
    ) -> None:
        encoded = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in custom]
        custom_names = {name for name, _ in encoded}
        # A --header server:... or date:... replaces ketch's own.
        self._server = server_header and b"server" not in custom_names
        self._date = date_header and b"date" not in custom_names
        self._custom = encoded
        self._second = -1
        own = {b"server"} if self._server else set()
        if self._date:
            own.add(b"date")
        self.names = frozenset(custom_names | own)
        self.block = b""
        self.pairs: list[tuple[bytes, bytes]] = []
        self.refresh()

    def refresh(self) -> None:
        """Recompute for the current second (cheap when the second has not changed)."""
        now = time.time()
        second = int(now)
        if second == self._second:
            return
        self._second = second
        pairs: list[tuple[bytes, bytes]] = []
        if self._server:
            pairs.append((b"server", SERVER_NAME))
        if self._date:
            pairs.append((b"date", formatdate(now, usegmt=True).encode("ascii")))
        pairs.extend(self._custom)
        self.pairs = pairs
        self.block = b"".join(b"%s: %s\r\n" % pair for pair in pairs)

    def block_without(self, names: set[bytes]) -> bytes:
        """The block, leaving out headers the application set itself."""
        return b"".join(b"%s: %s\r\n" % pair for pair in self.pairs if pair[0] not in names)
