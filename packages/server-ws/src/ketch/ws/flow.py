"""Read-side flow control: the reasons a connection stops reading from its peer.

Reading pauses for more than one reason at a time (the app's queue is full,
bytes wait for the app to accept, our replies pile up unread), each set and
cleared on its own; the transport reads again once no reason is left.
"""

from __future__ import annotations

import asyncio

# the reasons (bits of ReadPause.reasons)
QUEUE_FULL = 1  # --ws-max-queue messages wait for the app
PENDING = 2  # bytes that came before the app accepted wait for it
WRITE_BACKLOG = 4  # the peer does not read what we write (pongs would pile up)
ALL = QUEUE_FULL | PENDING | WRITE_BACKLOG


class ReadPause:
    """Pauses a transport's reading while any reason holds."""

    __slots__ = ("reasons", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reasons = 0

    def pause(self, reason: int) -> None:
        if not self.reasons:
            self.transport.pause_reading()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        """Drop `reason` (several at once with `|`); read again if none is left."""
        reasons = self.reasons
        if reasons & reason:
            self.reasons = reasons & ~reason
            if not self.reasons:
                self.transport.resume_reading()

    def forget(self) -> None:
        """The transport is gone: nothing to resume."""
        self.reasons = 0
