"""A WebSocket connection's deadline and flow control: is the peer still there,
and how long do we wait for it.

`WebSocketProtocol` (`ketch.ws.protocol`) builds on this class, which owns the
connection's one deadline (what it means is `Due`, in `ketch.ws.states`) and
both directions of flow control:

- keepalive: a ping every --ws-ping-interval, then --ws-ping-timeout for its
  pong, else the connection fails with 1011;
- a peer that reads none of what we write: reading pauses (so that pings it
  sends cannot make us buffer pongs without bound), and if its backlog does
  not shrink within --ws-ping-timeout the TCP connection is cut;
- an app that falls behind: reading pauses at --ws-max-queue messages;
- the end: the peer has CLOSE_TIMEOUT to answer our close frame, then the TCP
  connection has LINGER_SECONDS to end before it is aborted.

The server's sweep reads `deadline` and calls `on_deadline()`
(`ketch.core.api.Connection`).
"""

from __future__ import annotations

import asyncio
import os

from ketch.core.api import ReadFlow, ServerContext, WebSocketSettings, WriteFlow, half_close
from ketch.ws.rfc6455 import ABNORMAL_CLOSURE, INTERNAL_ERROR
from ketch.ws.states import (
    CLOSE_REPLY,
    CLOSE_TIMEOUT,
    CLOSED,
    CONNECTED,
    CONNECTING,
    LINGER,
    LINGER_SECONDS,
    NOTHING,
    PING,
    PONG,
    QUEUE_FULL,
    UNREAD,
    WRITE_BACKLOG,
    State,
)


class Liveness(asyncio.Protocol):
    """The deadline and flow control of one WebSocket connection."""

    __slots__ = (
        "_backlog",
        "_due",
        "context",
        "deadline",
        "reading",
        "settings",
        "state",
        "transport",
        "write_flow",
    )

    def __init__(
        self, context: ServerContext, settings: WebSocketSettings, transport: asyncio.Transport
    ) -> None:
        self.context = context
        self.settings = settings
        self.transport = transport
        self.state: State = CONNECTING
        self.deadline = 0.0
        self._due = NOTHING
        self._backlog = 0  # bytes waiting in the transport when it last paused writing
        self.write_flow = WriteFlow()
        self.reading = ReadFlow(transport)

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.deadline = 0.0
        self._due = NOTHING
        self.write_flow.connection_lost()

    def pause_writing(self) -> None:
        """Our writes pile up unread: stop reading, so that a peer that sends pings
        (or anything we answer) and reads nothing cannot make us buffer without
        bound; and give it --ws-ping-timeout to read some before we cut it off."""
        self.write_flow.pause()
        state = self.state
        if state is CLOSED:
            return
        self.reading.pause(WRITE_BACKLOG)
        timeout = self.settings.ping_timeout
        if state is CONNECTED and timeout is not None:
            self._due = UNREAD
            self.deadline = self.context.now + timeout
            self._backlog = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        self.write_flow.resume()
        self.reading.resume(WRITE_BACKLOG)
        if self._due is UNREAD:
            self.schedule_ping()

    # --- what the server calls (ketch.core.api.Connection) -------------------------------
    def on_deadline(self) -> None:
        due = self._due
        if due is PING:
            self._ping()
        elif due is PONG:
            self._fail_locally(INTERNAL_ERROR, "keepalive ping timeout")
        elif due is CLOSE_REPLY:
            self.finish(linger=False)  # the peer does not answer: no reason to wait more
        elif due is LINGER:
            self.abort()
        elif due is UNREAD:
            if self.transport.get_write_buffer_size() < self._backlog:
                self.schedule_ping()  # it reads, slowly: keepalive pings judge it as usual
            else:
                self._abort_unread()

    def abort(self) -> None:
        self.state = CLOSED
        self.deadline = 0.0
        self.transport.abort()

    # --- the app's pace ------------------------------------------------------------------------
    def app_is_slow(self) -> None:
        """--ws-max-queue messages wait for the app: stop reading until it catches up."""
        self.reading.pause(QUEUE_FULL)

    def app_caught_up(self, queued: int) -> None:
        if self.reading.reasons and queued <= self.settings.resume_at:
            self.reading.resume(QUEUE_FULL)

    # --- keepalive -------------------------------------------------------------------------------
    def schedule_ping(self) -> None:
        """Schedule the next keepalive ping (if pings are on)."""
        interval = self.settings.ping_interval
        if interval is None:
            self._due = NOTHING
            self.deadline = 0.0
        else:
            self._due = PING
            self.deadline = self.context.now + interval

    def on_pong(self) -> None:
        if self._due is PONG:
            self.schedule_ping()

    def _ping(self) -> None:
        if self.state is not CONNECTED:
            return
        self.transport.write(self.ping_frame(os.urandom(4)))
        settings = self.settings
        if settings.ping_timeout is not None:
            self._due = PONG
            self.deadline = self.context.now + settings.ping_timeout
        else:
            assert settings.ping_interval is not None
            self.deadline = self.context.now + settings.ping_interval

    def _abort_unread(self) -> None:
        """The peer read none of our backlog in --ws-ping-timeout: cut the TCP
        connection. A close frame would wait behind the bytes it does not read,
        and a graceful close would hold them until then."""
        self.report_closed(ABNORMAL_CLOSURE, "the client stopped reading")
        self.abort()

    def _fail_locally(self, code: int, reason: str) -> None:
        """Give up on the peer (it stopped answering pings)."""
        if self.state is CONNECTED:
            self.transport.write(self.close_frame(code, reason))
        self.report_closed(code, reason)
        self.finish(linger=False)

    # --- the end ---------------------------------------------------------------------------------
    def await_close_reply(self) -> None:
        """Our close frame is sent: the peer's must get through, within CLOSE_TIMEOUT."""
        self._due = CLOSE_REPLY
        self.deadline = self.context.now + CLOSE_TIMEOUT
        self.reading.resume(QUEUE_FULL)

    def finish(self, linger: bool = True) -> None:
        """The WebSocket is over: end the TCP connection without losing what we sent.

        The server closes first (RFC 6455 7.1.1). Half-closing, then reading
        until the peer closes, avoids a reset that could destroy our last
        frames in the peer's receive buffer; the deadline bounds the wait."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self._due = LINGER
        self.deadline = self.context.now + LINGER_SECONDS
        transport = self.transport
        self.reading.resume_all()  # read (and drop) until the peer closes
        if linger:
            half_close(transport)
        elif not transport.is_closing():
            transport.close()

    # --- what the connection provides ------------------------------------------------------
    def report_closed(self, code: int, reason: str) -> None:
        """The connection ends without a closing handshake: log it, tell the app."""
        raise NotImplementedError

    def close_frame(self, code: int, reason: str) -> bytes:
        raise NotImplementedError

    def ping_frame(self, payload: bytes) -> bytes:
        raise NotImplementedError
