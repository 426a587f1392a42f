"""What one HTTP/1.1 connection writes: the write gate, and a streamed
response's chunks gathered until the app next suspends.

The connection closes the gate (`stop()`) the moment it stops writing (the
lingering close, a close, a hand-over, the client gone): from then on every
write is dropped, so nothing can be written after the half-close whatever path
asks. The chunks of a streamed response are written together (one `writev`),
not with one system call each.
"""

from __future__ import annotations

import asyncio

# Gathered chunks of a streamed response are written once they reach this size
# (so that flow control sees them).
UNSENT_LIMIT = 64 * 1024


class Output:
    __slots__ = ("_flush_handle", "_loop", "_transport", "_unsent", "_unsent_size", "open")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self.open = True  # the gate: False once the connection stops writing
        self._unsent: list[bytes] = []
        self._unsent_size = 0
        self._flush_handle: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        """Write `data` after what was gathered."""
        if self._unsent:
            self.flush(data)
        elif self.open:
            self._transport.write(data)

    def write_pair(self, first: bytes, second: bytes) -> None:
        """Write two parts with one system call (no copy of a large body)."""
        self.flush()
        if self.open:
            self._transport.writelines((first, second))

    def write_soon(self, data: bytes) -> None:
        """Part of a streamed response: written with whatever else the app sends
        before it next suspends (a burst of chunks costs one system call)."""
        self._unsent.append(data)
        self._unsent_size += len(data)
        if self._unsent_size >= UNSENT_LIMIT:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self, last: bytes = b"") -> None:
        """Write what `write_soon()` gathered, and `last` after it."""
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()
        unsent = self._unsent
        if last:
            unsent.append(last)
        if unsent:
            self._unsent = []
            self._unsent_size = 0
            if self.open:
                self._transport.writelines(unsent)

    def stop(self) -> None:
        """Write what is gathered, then nothing more."""
        self.flush()
        self.open = False
