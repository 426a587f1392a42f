"""The states of an HTTP/1.1 connection, and the limits it keeps.

Module constants name each Enum member: the connection reads them on every
request, and reading `Enum.MEMBER` costs ten times a global.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple


class Reading(enum.Enum):
    IDLE = "idle"
    HEAD = "head"
    BODY = "body"
    DONE = "done"
    SWITCHING = "switching"


class Writing(enum.Enum):
    OPEN = "open"
    LINGER = "linger"
    HANDED_OVER = "handed over"
    CLOSED = "closed"


class Due(enum.Enum):
    """What the connection's deadline means."""

    NOTHING = "nothing"
    KEEP_ALIVE = "keep-alive"
    HEAD = "request head"
    BODY = "request body"
    WRITE = "write"
    LINGER = "linger"


IDLE: Final = Reading.IDLE
HEAD: Final = Reading.HEAD
BODY: Final = Reading.BODY
DONE: Final = Reading.DONE
SWITCHING: Final = Reading.SWITCHING
OPEN: Final = Writing.OPEN
LINGER: Final = Writing.LINGER
HANDED_OVER: Final = Writing.HANDED_OVER
CLOSED: Final = Writing.CLOSED
# (see the module docstring)
NO_DEADLINE: Final = Due.NOTHING
KEEP_ALIVE_DUE: Final = Due.KEEP_ALIVE
HEAD_DUE: Final = Due.HEAD
BODY_DUE: Final = Due.BODY
WRITE_DUE: Final = Due.WRITE
LINGER_DUE: Final = Due.LINGER

# reasons to pause reading (ReadFlow bits)
BODY_BUFFER: Final = 1  # the app has not taken what was read of the body
QUEUED: Final = 2  # a complete request waits for its turn
NO_MORE: Final = 4  # no more requests will be taken (until the lingering close)
HANDOVER: Final = 8  # an upgrade request waits for its turn

# Buffer at most this much unread request body before pausing the transport.
READ_HIGH_WATER = 64 * 1024
# After a response that left part of the request body unread, read and discard
# at most this much (and for at most LINGER_SECONDS) to keep the connection.
DRAIN_LIMIT = 1024 * 1024
LINGER_SECONDS = 2.0
# When the server stops, a keep-alive connection idle after a response stays open
# this long, so that a request already on its way is answered (with Connection:
# close) instead of meeting a closed socket. A connection that has not sent its
# first request yet keeps its keep-alive timeout: its client is about to send
# one, and unlike a reused connection's, that request is not retried.
SHUTDOWN_GRACE = 0.5


class Refusal(NamedTuple):
    """A request ketch answers itself, in its turn, before closing."""

    status: int
    reason: str
