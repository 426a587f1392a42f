"""One HTTP/1.1 connection: requests in, answers out, in order, parser-independent.

Two states say what the connection may still do, and every path that reads,
writes, closes or hands over asks them first:

- `reading`: where the client's byte stream is. IDLE (before a request head),
  HEAD (a head is arriving), BODY (a request's body is arriving), DONE (no more
  requests are taken: bytes are dropped), SWITCHING (an upgrade request was
  read: bytes are kept for the WebSocket protocol).
- `writing`: OPEN (answers may be written), LINGER (everything is answered and
  our side half-closed: reading and dropping until the peer closes or the
  deadline), HANDED_OVER (the WebSocket plugin owns the transport), CLOSED.
  Leaving OPEN closes the `Output` gate: no write can follow, whatever asks.

Requests are answered strictly in the order they came. The one being answered
is `current`; complete requests pipelined behind it wait in `queue`, and so do
refusals (a 400 for a malformed request, a 408): a refusal is written in its
turn, whole, never inside or before an earlier response, and ends the
connection. `incoming` is the request whose body is arriving (the current one
or the last queued). Reading pauses (`ReadFlow`) while the body buffer is full,
while a request waits in the queue, after the last request and before a
handover.

One deadline at a time, named by `due`: KEEP_ALIVE (idle between requests),
HEAD (a head arriving), BODY (the app waits for body bytes), WRITE (the client
reads none of a full send buffer), LINGER (closing).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ketch.core.api import (
    ConnectionInfo,
    Headers,
    HTTPScope,
    ReadFlow,
    ServerContext,
    WebSocketScope,
    WriteFlow,
    error_response,
    half_close,
    http_scope,
    websocket_scope,
)
from ketch.http.cycle import COMPLETE, RequestCycle
from ketch.http.output import Output
from ketch.http.request_head import BadRequest, HeadFacts, check_head
from ketch.http.states import (
    BODY,
    BODY_BUFFER,
    BODY_DUE,
    CLOSED,
    DONE,
    DRAIN_LIMIT,
    HANDED_OVER,
    HANDOVER,
    HEAD,
    HEAD_DUE,
    IDLE,
    KEEP_ALIVE_DUE,
    LINGER,
    LINGER_DUE,
    LINGER_SECONDS,
    NO_DEADLINE,
    NO_MORE,
    OPEN,
    QUEUED,
    READ_HIGH_WATER,
    SHUTDOWN_GRACE,
    SWITCHING,
    WRITE_DUE,
    Refusal,
)

if TYPE_CHECKING:
    from ketch.http.parser import Parser, ParserEvents

logger = logging.getLogger("ketch.error")


class HTTPConnection(asyncio.Protocol):
    """One HTTP/1.1 connection; `parser` turns its bytes into events
    (`ketch.http.parser.ParserEvents`, implemented here)."""

    __slots__ = (
        "_held",
        "_last_request",
        "_served",
        "context",
        "current",
        "deadline",
        "due",
        "incoming",
        "info",
        "loop",
        "output",
        "parser",
        "queue",
        "read_flow",
        "reading",
        "settings",
        "transport",
        "write_flow",
        "writing",
    )

    def __init__(
        self, context: ServerContext, make_parser: Callable[[ParserEvents], Parser]
    ) -> None:
        self.context = context
        self.loop = context.loop
        self.settings = context.settings
        self.parser = make_parser(self)
        self.write_flow = WriteFlow()
        self.deadline = 0.0
        self.due = NO_DEADLINE
        self.reading = IDLE
        self.writing = OPEN
        self.current: RequestCycle | None = None
        self.incoming: RequestCycle | None = None
        self.queue: deque[RequestCycle | Refusal] = deque()
        self._served = False  # a response completed: the client reuses the connection
        self._last_request = False  # take no request after the incoming one
        self._held = b""  # bytes after an upgrade request, for the WebSocket protocol

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.output = Output(self.transport, self.loop)
        self.read_flow = ReadFlow(self.transport)
        context = self.context
        self.info: ConnectionInfo = context.connection_info(transport)
        context.connections.add(self)
        self.due = KEEP_ALIVE_DUE
        self.deadline = context.now + self.settings.timeout_keep_alive

    def data_received(self, data: bytes) -> None:
        reading = self.reading
        if reading is DONE:
            return  # after the last request: dropped
        if reading is SWITCHING:
            self._held += data  # reading is paused: at most what was in flight
            return
        self.parser.feed(data)
        if self.reading is SWITCHING:
            # an upgrade request is complete; hand over if it is its turn (after
            # the parser returned, so that it could set the bytes that follow aside)
            current = self.current
            if current is not None and current.upgrade_target is not None:
                self._hand_over(current)

    def eof_received(self) -> bool | None:
        # The client closed its side. Like Uvicorn (and nginx's default), take it
        # as the client leaving: the transport closes and the app is told.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.writing = CLOSED
        self.output.open = False
        self.reading = DONE
        self.deadline = 0.0
        self.context.connections.discard(self)
        self.write_flow.connection_lost()
        for cycle in (self.current, self.incoming, *self.queue):
            if isinstance(cycle, RequestCycle):
                cycle.on_disconnect()

    def pause_writing(self) -> None:
        self.write_flow.pause()
        self._await_reader()

    def resume_writing(self) -> None:
        self.write_flow.resume()
        if self.due is WRITE_DUE:
            self.due = NO_DEADLINE
            self.deadline = 0.0

    def _await_reader(self) -> None:
        """The send buffer is full: the client must read within --timeout-write."""
        if self.due is NO_DEADLINE and self.writing is OPEN:
            self.due = WRITE_DUE
            self.deadline = self.context.now + self.settings.timeout_write

    # --- what the server calls (ketch.core.api.Connection) -----------------------------
    def on_deadline(self) -> None:
        due = self.due
        self.due = NO_DEADLINE
        self.deadline = 0.0
        if due is HEAD_DUE:
            self._refuse(408, "Request header timeout")
        elif due is BODY_DUE or due is WRITE_DUE:
            what = "request body" if due is BODY_DUE else "write"
            self.context.error_logger.info(
                "Closing connection from %s: %s timeout", _peer(self.info.client), what
            )
            self._give_up()
        elif due is not NO_DEADLINE:
            self._give_up()
        if self.write_flow.paused:  # another deadline fired first
            self._await_reader()

    def _give_up(self) -> None:
        """Close at a deadline; abort when the client does not read what is
        buffered for it (a close would wait for that buffer forever)."""
        if self.write_flow.paused:
            self.abort()
        else:
            self.close()

    def shutdown(self) -> None:
        """Take no new request; answer the ones read (the last with Connection:
        close), then close."""
        if self.writing is not OPEN:
            return
        self._last_request = True  # a head still arriving is the last one
        reading = self.reading
        if reading is IDLE:
            last = self.queue[-1] if self.queue else self.current
            if isinstance(last, RequestCycle):
                self._stop_reading()
                last.keep_alive = False
            elif self._served:  # (the loop's time: context.now may be a tick behind)
                self.deadline = min(self.deadline, self.loop.time() + SHUTDOWN_GRACE)
        elif reading is BODY and self.incoming is not None:
            self.incoming.keep_alive = False

    def abort(self) -> None:
        if self.writing is not CLOSED:
            self.writing = CLOSED
            self.output.open = False
            self.deadline = 0.0
            self.transport.abort()

    # --- parser events (ketch.http.parser.ParserEvents) --------------------------------
    def on_message_begin(self) -> None:
        if self.reading is IDLE:
            self.reading = HEAD
            self.due = HEAD_DUE
            self.deadline = self.context.now + self.settings.timeout_request_header

    def on_head(
        self, method: bytes, target: bytes, http_version: bytes, headers: Headers
    ) -> HeadFacts | None:
        if self.reading is not HEAD:
            return None  # after the last request (a C parser may parse on)
        try:
            facts = check_head(
                method, target, http_version, headers, self.settings.limit_request_headers
            )
        except BadRequest as exc:
            self._refuse(exc.status, exc.reason)
            return None
        context = self.context
        websocket = facts.websocket
        if websocket and (context.ws_upgrade is None or not self.parser.switches_protocol()):
            # served as plain HTTP: the parser reads on, or no WebSocket plugin runs
            websocket = False
            facts = facts._replace(websocket=False)
        scope: HTTPScope | WebSocketScope
        if websocket:
            scope = websocket_scope(context, self.info, facts.http_version, target, headers)
        else:
            scope = http_scope(
                context, self.info, method.decode("ascii"), facts.http_version, target, headers
            )
        keep_alive = facts.keep_alive and not self._last_request
        cycle = RequestCycle(self, scope, keep_alive)
        if not keep_alive:
            self._last_request = True
        if self.due is HEAD_DUE:
            self.due = NO_DEADLINE
            self.deadline = 0.0
        self.reading = BODY
        self.incoming = cycle
        if websocket:
            cycle.upgrade_target = target
            self._last_request = True
        else:
            limit = self.settings.limit_request_body
            length = facts.content_length
            if limit is not None and length is not None and length > limit:
                self.incoming = None
                self._refuse(413, "Request body too large")
                return None
            cycle.content_length = length
            cycle.expect_continue = facts.expect_continue
            observer = context.observer
            if observer is not None:  # the access log or metrics: the exchange starts
                cycle.exchange = observer.begin(scope)
        if self.current is None:
            self._start(cycle)
        else:
            self.queue.append(cycle)
            self.read_flow.pause(QUEUED)
        return facts

    def on_body(self, data: bytes) -> None:
        cycle = self.incoming
        if cycle is None:
            return
        received = cycle.received = cycle.received + len(data)
        if cycle.discarding or cycle.disconnected:
            if received - (cycle.content_length or 0) > DRAIN_LIMIT:
                self.close()  # not worth reading on to keep the connection
            return
        limit = self.settings.limit_request_body
        if limit is not None and received > limit:
            self._refuse(413, "Request body too large")
            return
        cycle.body.append(data)
        buffered = cycle.buffered = cycle.buffered + len(data)
        cycle.wake()
        if buffered > READ_HIGH_WATER:
            self.read_flow.pause(BODY_BUFFER)

    def on_message_complete(self) -> bool:
        cycle = self.incoming
        if cycle is None:
            return False
        self.incoming = None
        cycle.more_body = False
        if cycle.upgrade_target is not None:
            self.reading = SWITCHING  # handed over in its turn
            self.read_flow.pause(HANDOVER)
            return False
        if self._last_request:
            self._stop_reading()
        else:
            self.reading = IDLE
        cycle.wake()
        if cycle.discarding and cycle.response is COMPLETE:
            self._next(cycle)  # the unread rest of its body is drained
        return self.reading is IDLE

    def on_bad_request(self, status: int, reason: str) -> None:
        if self.reading is DONE or self.writing is not OPEN:
            return
        self._refuse(status, reason)

    # --- what the request cycle calls ---------------------------------------------------
    def wait_for_body(self) -> None:
        """The app waits for body bytes: read on, and start the body deadline."""
        self.read_flow.resume(BODY_BUFFER)
        if self.due is NO_DEADLINE:
            self.due = BODY_DUE
            self.deadline = self.context.now + self.settings.timeout_request_body

    def body_waited(self) -> None:
        if self.due is BODY_DUE:
            self.due = NO_DEADLINE
            self.deadline = 0.0

    def body_taken(self) -> None:
        """The app took the buffered body: read more."""
        self.read_flow.resume(BODY_BUFFER)

    def response_complete(self, cycle: RequestCycle) -> None:
        """`cycle`'s response is written: go on to the next request, or close."""
        if cycle is not self.current or self.writing is not OPEN:
            return
        if not cycle.more_body:
            if cycle.keep_alive and not self.queue and self.reading is IDLE:
                # (the common case, inlined: wait for the next request)
                self.current = None
                self._served = True
                self.due = KEEP_ALIVE_DUE
                self.deadline = self.context.now + self.settings.timeout_keep_alive
            else:
                self._next(cycle)
        else:  # part of its body is still unread
            if (
                cycle.keep_alive
                and (cycle.content_length or 0) - cycle.received <= DRAIN_LIMIT
                and self.due is NO_DEADLINE
            ):
                cycle.discarding = True
                cycle.body.clear()
                cycle.buffered = 0
                self.read_flow.resume(BODY_BUFFER)
                self.due = LINGER_DUE  # draining is bounded like a lingering close
                self.deadline = self.context.now + LINGER_SECONDS
                return  # on_message_complete() goes on to the next request
            self.finish()

    def finish(self) -> None:
        """Close without losing what was written: a client still sending would
        get a reset that can destroy the response in its receive buffer, so
        half-close, read and drop what still comes for a moment, then close."""
        if self.writing is not OPEN:
            return
        self.output.stop()
        self._stop_reading()
        self.incoming = None
        for item in self.queue:  # requests read that will not be answered
            if isinstance(item, RequestCycle):
                item.end_exchange(False)
        self.queue.clear()
        self.writing = LINGER
        self.due = LINGER_DUE
        self.deadline = self.context.now + LINGER_SECONDS
        self.read_flow.resume_all()  # read (and drop) until the peer closes
        if not half_close(self.transport):
            self.writing = CLOSED
            self.deadline = 0.0

    def close(self) -> None:
        if self.writing is OPEN or self.writing is LINGER:
            self.output.stop()
            self.writing = CLOSED
            self.deadline = 0.0
            self.transport.close()

    # --- request life cycle -------------------------------------------------------------
    def _start(self, cycle: RequestCycle) -> None:
        self.current = cycle
        if cycle.upgrade_target is not None:
            if self.reading is SWITCHING:  # the whole upgrade request is read
                self._hand_over(cycle)
            return
        context = self.context
        if self.settings.limit_concurrency is not None and context.over_concurrency_limit():
            if context.metrics is not None:
                context.metrics.rejected(503)
            cycle.respond_error(503, "Service Unavailable")
            return
        cycle.task = context.create_task(cycle.run_asgi(context.app))

    def _next(self, done: RequestCycle) -> None:
        """`done` is answered; start the next request in the queue, or wait for one."""
        self.current = None
        self._served = True
        if not done.keep_alive:
            self.finish()
            return
        queue = self.queue
        if queue:
            item = queue.popleft()
            if not queue:
                self.read_flow.resume(QUEUED)
            if isinstance(item, Refusal):
                self._answer(item)
            else:
                self._start(item)
            return
        reading = self.reading
        if reading is IDLE:
            self.due = KEEP_ALIVE_DUE
            self.deadline = self.context.now + self.settings.timeout_keep_alive
        elif reading is DONE:
            self.finish()

    def _stop_reading(self) -> None:
        self.reading = DONE
        self.read_flow.pause(NO_MORE)

    def _refuse(self, status: int, reason: str) -> None:
        """A request ketch will not serve: answered in its turn, then the connection
        ends. Nothing more is read."""
        if self.writing is not OPEN:
            return
        context = self.context
        if status != 408:
            context.error_logger.warning(
                "%d answered to %s: %s", status, _peer(self.info.client), reason
            )
        if context.metrics is not None:
            context.metrics.rejected(status)
        self._stop_reading()
        incoming = self.incoming
        self.incoming = None
        current = self.current
        if incoming is not None and incoming is current:
            # the request being served broke its own framing or limits: the app
            # hears http.disconnect, and the answer replaces its response if
            # none was started
            replaced = not incoming.head_written()
            if replaced:
                incoming.end_exchange(True, status)
            incoming.on_disconnect()
            if replaced:
                self._answer(Refusal(status, reason))
            else:
                self.close()
            return
        if incoming is not None:
            self.queue.pop()  # queued, never started: refused in its place
            incoming.end_exchange(True, status)
        if current is None:
            self._answer(Refusal(status, reason))
        else:
            self.queue.append(Refusal(status, reason))

    def _answer(self, refusal: Refusal) -> None:
        self.output.write(error_response(refusal.status, self.context.default_headers))
        self.finish()

    def _hand_over(self, cycle: RequestCycle) -> None:
        """Give the connection to the WebSocket plugin, with the bytes read after
        the upgrade request."""
        handler = self.context.ws_upgrade
        assert handler is not None and cycle.upgrade_target is not None
        buffered = self.parser.take_unparsed() + self._held
        self._held = b""
        self.current = None
        self.output.stop()
        self.writing = HANDED_OVER
        self.reading = DONE
        self.deadline = 0.0
        self.context.connections.discard(self)
        self.read_flow.resume_all()
        handler(self.transport, cycle.scope, cycle.upgrade_target, buffered)


def _peer(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else "a UNIX socket peer"
