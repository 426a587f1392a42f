"""The states of a WebSocket connection, the meaning of its deadline, and the
limits it keeps. Module constants name each Enum member: reading
`Enum.MEMBER` costs ten times a global, and some of these are read per message.
"""

from __future__ import annotations

import enum
from typing import Final


class State(enum.Enum):
    """Where a connection is in the ASGI WebSocket spec."""

    CONNECTING = "connecting"  # handshake request received; the app has not answered yet
    RESPONDING = "responding"  # the app sends a denial response (websocket.http.response.*)
    CONNECTED = "connected"  # accepted: messages flow both ways
    CLOSING = "closing"  # our close frame is sent; waiting for the peer's
    CLOSED = "closed"  # done; the TCP connection is closing (bounded by a deadline)


CONNECTING: Final = State.CONNECTING
RESPONDING: Final = State.RESPONDING
CONNECTED: Final = State.CONNECTED
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED


class Due(enum.Enum):
    """What the connection's deadline means."""

    NOTHING = "nothing"
    PING = "send a keepalive ping"
    PONG = "the ping's answer"
    CLOSE_REPLY = "the peer's close frame"
    LINGER = "the end of the TCP connection"
    UNREAD = "the peer reading what we wrote"


NOTHING: Final = Due.NOTHING
PING: Final = Due.PING
PONG: Final = Due.PONG
CLOSE_REPLY: Final = Due.CLOSE_REPLY
LINGER: Final = Due.LINGER
UNREAD: Final = Due.UNREAD

# How long the peer has to answer our close frame, and how long a finished
# connection may take to end its TCP connection, before we cut it.
CLOSE_TIMEOUT = 5.0
LINGER_SECONDS = 2.0
# Reasons to pause reading (ReadFlow bits)
QUEUE_FULL = 1  # --ws-max-queue messages wait for the app
PENDING = 2  # bytes that came before the app accepted wait for it
WRITE_BACKLOG = 4  # the peer does not read what we write (pongs would pile up)
# Unread bytes that arrive before the app accepts are held (the client may
# not send frames yet); past this much, reading pauses until the app answers.
PENDING_LIMIT = 64 * 1024
# Data frames at least this big go out as two buffers (header, payload), not
# concatenated: no copy of the payload.
WRITE_SEPARATELY = 16 * 1024
