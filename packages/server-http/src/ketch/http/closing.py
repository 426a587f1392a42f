"""How an HTTP/1.1 connection ends: a deadline passes, a request is refused,
the server shuts down, the last answer is written, or a WebSocket plugin takes
the transport.

`HTTPConnection` (connection.py) serves requests and arms the deadlines; the
functions here are its methods that end it (`on_deadline`, `shutdown`,
`abort`, `finish`, `close`) and the steps they share (`refuse`, `answer`,
`stop_reading`, `hand_over`). None is on the path of a keep-alive request.

Every deadline, when it passes, ends the connection: 408 for a slow head, a
close for the others (an abort when the client does not read what is buffered
for it). A refusal is answered in its turn, whole, never inside or before an
earlier response, then the connection lingers: half-closed, reading and
dropping what still comes for LINGER_SECONDS, so that a reset cannot destroy
the answer in the client's receive buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ketch.core.api import error_response, half_close
from ketch.http.cycle import RequestCycle
from ketch.http.states import (
    BODY,
    BODY_DUE,
    CLOSED,
    DONE,
    HANDED_OVER,
    HEAD_DUE,
    IDLE,
    LINGER,
    LINGER_DUE,
    LINGER_SECONDS,
    NO_DEADLINE,
    NO_MORE,
    OPEN,
    SHUTDOWN_GRACE,
    WRITE_DUE,
    Refusal,
)

if TYPE_CHECKING:
    from ketch.http.connection import HTTPConnection


# --- what the server calls (ketch.core.api.Connection) ----------------------------------
def on_deadline(conn: HTTPConnection) -> None:
    due = conn.due
    conn.due = NO_DEADLINE
    conn.deadline = 0.0
    if due is HEAD_DUE:
        refuse(conn, 408, "Request header timeout")
    elif due is BODY_DUE or due is WRITE_DUE:
        what = "request body" if due is BODY_DUE else "write"
        conn.context.error_logger.info(
            "Closing connection from %s: %s timeout", _peer(conn.info.client), what
        )
        _give_up(conn)
    elif due is not NO_DEADLINE:
        _give_up(conn)
    if conn.write_flow.paused:  # another deadline fired first
        conn.await_reader()


def _give_up(conn: HTTPConnection) -> None:
    """Close at a deadline; abort when the client does not read what is
    buffered for it (a close would wait for that buffer forever)."""
    if conn.write_flow.paused:
        abort(conn)
    else:
        close(conn)


def shutdown(conn: HTTPConnection) -> None:
    """Take no new request; answer the ones read (the last with Connection:
    close), then close."""
    if conn.writing is not OPEN:
        return
    conn.last_request = True  # a head still arriving is the last one
    reading = conn.reading
    if reading is IDLE:
        last = conn.queue[-1] if conn.queue else conn.current
        if isinstance(last, RequestCycle):
            stop_reading(conn)
            last.keep_alive = False
        elif conn.served:  # (the loop's time: context.now may be a tick behind)
            conn.deadline = min(conn.deadline, conn.loop.time() + SHUTDOWN_GRACE)
    elif reading is BODY and conn.incoming is not None:
        conn.incoming.keep_alive = False


def abort(conn: HTTPConnection) -> None:
    if conn.writing is not CLOSED:
        conn.writing = CLOSED
        conn.output.open = False
        conn.deadline = 0.0
        conn.transport.abort()


# --- what the connection and the request cycle call --------------------------------------
def finish(conn: HTTPConnection) -> None:
    """Close without losing what was written: a client still sending would
    get a reset that can destroy the response in its receive buffer, so
    half-close, read and drop what still comes for a moment, then close."""
    if conn.writing is not OPEN:
        return
    conn.output.stop()
    stop_reading(conn)
    conn.incoming = None
    for item in conn.queue:  # requests read that will not be answered
        if isinstance(item, RequestCycle):
            item.end_exchange(False)
    conn.queue.clear()
    conn.writing = LINGER
    conn.due = LINGER_DUE
    conn.deadline = conn.context.now + LINGER_SECONDS
    conn.read_flow.resume_all()  # read (and drop) until the peer closes
    if not half_close(conn.transport):
        conn.writing = CLOSED
        conn.deadline = 0.0


def close(conn: HTTPConnection) -> None:
    if conn.writing is OPEN or conn.writing is LINGER:
        conn.output.stop()
        conn.writing = CLOSED
        conn.deadline = 0.0
        conn.transport.close()


def stop_reading(conn: HTTPConnection) -> None:
    """Take no more requests: what the client sends from now on is dropped."""
    conn.reading = DONE
    conn.read_flow.pause(NO_MORE)


def refuse(conn: HTTPConnection, status: int, reason: str) -> None:
    """A request ketch will not serve: answered in its turn, then the connection
    ends. Nothing more is read."""
    if conn.writing is not OPEN:
        return
    context = conn.context
    if status != 408:
        context.error_logger.warning(
            "%d answered to %s: %s", status, _peer(conn.info.client), reason
        )
    if context.metrics is not None:
        context.metrics.rejected(status)
    stop_reading(conn)
    incoming = conn.incoming
    conn.incoming = None
    current = conn.current
    if incoming is not None and incoming is current:
        # the request being served broke its own framing or limits: the app
        # hears http.disconnect, and the answer replaces its response if
        # none was started
        replaced = not incoming.head_written()
        if replaced:
            incoming.end_exchange(True, status)
        incoming.on_disconnect()
        if replaced:
            answer(conn, Refusal(status, reason))
        else:
            close(conn)
        return
    if incoming is not None:
        conn.queue.pop()  # queued, never started: refused in its place
        incoming.end_exchange(True, status)
    if current is None:
        answer(conn, Refusal(status, reason))
    else:
        conn.queue.append(Refusal(status, reason))


def answer(conn: HTTPConnection, refusal: Refusal) -> None:
    """It is `refusal`'s turn: write it, then end the connection."""
    conn.output.write(error_response(refusal.status, conn.context.default_headers))
    finish(conn)


def hand_over(conn: HTTPConnection, cycle: RequestCycle) -> None:
    """Give the connection to the WebSocket plugin, with the bytes read after
    the upgrade request."""
    handler = conn.context.ws_upgrade
    assert handler is not None and cycle.upgrade_target is not None
    buffered = conn.parser.take_unparsed() + conn.held
    conn.held = b""
    conn.current = None
    conn.output.stop()
    conn.writing = HANDED_OVER
    conn.reading = DONE
    conn.deadline = 0.0
    conn.context.connections.discard(conn)
    conn.read_flow.resume_all()
    handler(conn.transport, cycle.scope, cycle.upgrade_target, buffered)


def _peer(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else "a UNIX socket peer"
