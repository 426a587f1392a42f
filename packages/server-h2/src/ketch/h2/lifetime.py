"""How long an HTTP/2 connection and its streams may wait, and how the
connection ends: its states, and functions of `HTTP2Connection`
(`ketch.h2.connection`).

`conn.state` says what the connection may still do:

- OPEN: serving.
- DRAINING: a GOAWAY went out (the server stops, or the client sent its own):
  the streams already opened are finished, new ones refused; the connection
  closes when the last one is done.
- LINGER: everything is written and our side is closed; what still arrives is
  dropped until the client closes, or the deadline.
- CLOSED.

A graceful stop sends two GOAWAY frames (RFC 9113 6.8): the first announces
the stop without naming a last stream, with a PING; once the PING's answer
shows that the client has seen it (or after GOAWAY_GRACE seconds), the
second names the last stream served. Streams opened in between are served,
so no request is lost to the race. h2 would close its state at the first
GOAWAY either way, so ketch writes its GOAWAY frames itself, and the guard
(`ketch.h2.guard`) takes the client's out of what h2 parses. An error (h2's
protocol errors, a flood the guard counted) closes at once, with one GOAWAY.

One deadline at a time for the whole connection (`conn.deadline`, the earliest
of): idle with no stream (`--timeout-keep-alive`: GOAWAY and close), a header
block arriving (`--timeout-request-header`), a stream's app waiting for body
bytes (`--timeout-request-body`) or for the client's flow-control window
(`--timeout-write`): that stream is reset; a send buffer the client does not
read (`--timeout-write`: the connection is aborted), the two GOAWAYs of a
graceful stop, the lingering close.
"""

from __future__ import annotations

import enum
import logging
import os
from typing import TYPE_CHECKING, Final

from hpack import HPACKError

from h2.errors import ErrorCodes
from h2.exceptions import DenialOfServiceError, ProtocolError
from ketch.core.api import ConnectionInfo, half_close
from ketch.h2.h2_setup import ANY_STREAM, goaway_frame
from ketch.h2.stream import CANCEL, ENHANCE_YOUR_CALM, NO_ERROR

if TYPE_CHECKING:
    from ketch.h2.connection import HTTP2Connection
    from ketch.h2.stream import Stream

logger = logging.getLogger("ketch.error")


class State(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"
    LINGER = "linger"
    CLOSED = "closed"


OPEN: Final = State.OPEN
DRAINING: Final = State.DRAINING
LINGER: Final = State.LINGER
CLOSED: Final = State.CLOSED

# After the first GOAWAY of a graceful stop, the second follows once the
# client answered our PING, or after this many seconds.
GOAWAY_GRACE: Final = 1.0
LINGER_SECONDS: Final = 2.0


# --- the graceful stop ------------------------------------------------------------------
def shutdown(conn: HTTP2Connection) -> None:
    """The server stops: announce it (the first GOAWAY, with a PING to know
    when the client has seen it), finish the streams, then close."""
    if conn.state is not OPEN:
        return
    conn.state = DRAINING
    conn.ping = os.urandom(8)
    conn.goaway_since = conn.context.now
    writer = conn.writer
    writer.flush()
    writer.write(goaway_frame(ANY_STREAM, NO_ERROR))
    conn.h2.ping(conn.ping)
    writer.flush()
    reschedule(conn)


def second_goaway(conn: HTTP2Connection) -> None:
    """The client has seen the first GOAWAY (or had time to): name the last
    stream that will be served."""
    conn.ping = b""
    conn.last_stream_id = conn.h2.highest_inbound_stream_id
    conn.writer.flush()
    conn.writer.write(goaway_frame(conn.last_stream_id, NO_ERROR))
    if not conn.streams:
        finish(conn)
    else:
        reschedule(conn)


# --- closing ----------------------------------------------------------------------------
def close_with(conn: HTTP2Connection, error_code: int) -> None:
    """GOAWAY now, naming the last stream served, and close once written."""
    if conn.ended():
        return
    conn.writer.flush()
    conn.writer.write(goaway_frame(conn.h2.highest_inbound_stream_id, error_code))
    conn.disconnect_all()
    finish(conn)


def calm_down(conn: HTTP2Connection) -> None:
    """The client floods: GOAWAY ENHANCE_YOUR_CALM, and every app it started
    here is cancelled."""
    if conn.ended():
        return
    context = conn.context
    context.error_logger.warning(
        "Closing HTTP/2 connection from %s: too many frames that do no work "
        "(a flood or a rapid reset)",
        peer(conn.info),
    )
    for stream in [*conn.streams.values(), *conn.orphans]:
        if stream.task is not None:
            if not stream.started:
                context.tasks.discard(stream.task)
            stream.task.cancel()
    conn.orphans.clear()
    close_with(conn, ENHANCE_YOUR_CALM)


def protocol_error(conn: HTTP2Connection, exc: ProtocolError) -> None:
    """h2 found a protocol error: send its GOAWAY and close.

    h2 queues a GOAWAY with the error's code, except for a bad preface
    (over TLS: cleartext connections reach HTTP/2 with a good one), which
    gets ketch's; and it answers a header block it cannot decode with
    PROTOCOL_ERROR, where RFC 9113 4.3 says COMPRESSION_ERROR."""
    code = int(exc.error_code)
    last_stream_id = conn.h2.highest_inbound_stream_id
    data = conn.h2.data_to_send()
    queued = goaway_frame(last_stream_id, code)
    if data.endswith(queued):
        data = data[: -len(queued)]
    if isinstance(exc.__cause__, HPACKError) and not isinstance(exc, DenialOfServiceError):
        code = ErrorCodes.COMPRESSION_ERROR
    logger.info(
        "Closing HTTP/2 connection from %s: %s (GOAWAY %s)",
        peer(conn.info),
        exc,
        error_name(code),
    )
    conn.writer.write(data + goaway_frame(last_stream_id, code))
    conn.disconnect_all()
    finish(conn)


def finish(conn: HTTP2Connection) -> None:
    """Everything is written: close our side, read and drop what still comes
    for a moment (a reset could destroy the GOAWAY in the client's buffer)."""
    if conn.ended():
        return
    writer = conn.writer
    writer.flush()
    conn.state = LINGER
    writer.writable = False
    conn.read_flow.resume_all()
    if half_close(conn.transport):
        conn.deadline = conn.context.now + LINGER_SECONDS
    else:
        conn.state = CLOSED
        conn.deadline = 0.0


# --- deadlines --------------------------------------------------------------------------
def on_deadline(conn: HTTP2Connection) -> None:
    """The connection's deadline passed: end whatever waited too long."""
    context = conn.context
    settings = conn.settings
    now = context.now
    conn.deadline = 0.0
    if conn.state is LINGER:
        conn.abort()
        return
    if conn.write_due and now >= conn.write_due:
        # the client reads none of a full send buffer: a close would wait for it forever
        context.error_logger.info(
            "Closing HTTP/2 connection from %s: write timeout", peer(conn.info)
        )
        conn.abort()
        return
    block_since = conn.guard.block_since
    if block_since and now >= block_since + settings.timeout_request_header:
        context.error_logger.info(
            "Closing HTTP/2 connection from %s: request header timeout", peer(conn.info)
        )
        close_with(conn, ENHANCE_YOUR_CALM)
        return
    if conn.ping and now >= conn.goaway_since + GOAWAY_GRACE:
        second_goaway(conn)
    for stream in list(conn.timed):
        if stream.body_due and now >= stream.body_due:
            context.error_logger.info(
                "Resetting HTTP/2 stream from %s: request body timeout", peer(conn.info)
            )
            conn.reset(stream, CANCEL)
        elif stream.window_due and now >= stream.window_due:
            context.error_logger.info(
                "Resetting HTTP/2 stream from %s: the client opens no window for the response",
                peer(conn.info),
            )
            conn.reset(stream, CANCEL)
    if not conn.streams and not conn.ended():
        if conn.state is DRAINING and not conn.ping:
            finish(conn)
        elif conn.idle_since and now >= conn.idle_since + settings.timeout_keep_alive:
            close_with(conn, NO_ERROR)
    conn.writer.flush()
    reschedule(conn)


def timed(conn: HTTP2Connection, stream: Stream) -> None:
    """The stream waits with a deadline (`body_due` or `window_due`)."""
    conn.timed.add(stream)
    due = stream.body_due or stream.window_due
    if not conn.deadline or due < conn.deadline:
        conn.deadline = due


def untimed(conn: HTTP2Connection, stream: Stream) -> None:
    if not stream.body_due and not stream.window_due:
        conn.timed.discard(stream)


def reschedule(conn: HTTP2Connection) -> None:
    """The connection's deadline: the earliest thing it waits for."""
    if conn.ended():
        return
    settings = conn.settings
    candidates: list[float] = []
    if conn.guard.block_since:
        candidates.append(conn.guard.block_since + settings.timeout_request_header)
    if conn.ping:
        candidates.append(conn.goaway_since + GOAWAY_GRACE)
    if conn.write_due:
        candidates.append(conn.write_due)
    if not conn.streams and conn.idle_since and conn.state is OPEN:
        candidates.append(conn.idle_since + settings.timeout_keep_alive)
    for stream in conn.timed:
        if stream.body_due:
            candidates.append(stream.body_due)
        if stream.window_due:
            candidates.append(stream.window_due)
    conn.deadline = min(candidates) if candidates else 0.0


def peer(info: ConnectionInfo) -> str:
    """The client, for the error log."""
    return "%s:%d" % info.client if info.client else "a UNIX socket peer"


def error_name(code: int) -> str:
    """The name of an HTTP/2 error code, or its number if RFC 9113 has none."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
