"""Read-side flow control: the reasons a WebSocket connection stops reading.

Reading pauses for more than one reason at a time (the app's queue is full,
bytes wait for the app to accept, our replies pile up unread), each set and
cleared on its own; the transport reads again once no reason is left.
"""

from __future__ import annotations

import asyncio

# the reasons (ReadFlow bits)
QUEUE_FULL = 1  # --ws-max-queue messages wait for the app
PENDING = 2  # bytes that came before the app accepted wait for it
WRITE_BACKLOG = 4  # the peer does not read what we write (pongs would pile up)


class ReadFlow:
    """Reading paused for one or more reasons, and resumed once none is left."""

    __slots__ = ("reasons", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reasons = 0

    def pause(self, reason: int) -> None:
        if not self.reasons and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        reasons = self.reasons
        if reasons & reason:
            reasons = self.reasons = reasons & ~reason
            if not reasons and not self.transport.is_closing():
                self.transport.resume_reading()

    def resume_all(self) -> None:
        if self.reasons:
            self.reasons = 0
            if not self.transport.is_closing():
                self.transport.resume_reading()
