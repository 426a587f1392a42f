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
refusals (a 400 for a malformed request, a 408), each answered in its turn
before the connection ends. `incoming` is the request whose body is arriving (the current one
or the last queued). Reading pauses (`ReadFlow`) while the body buffer is full,
while a request waits in the queue, after the last request and before a
handover.

One deadline at a time, named by `due`: KEEP_ALIVE (idle between requests),
HEAD (a head arriving), BODY (the app waits for body bytes), WRITE (the client
reads none of a full send buffer), LINGER (closing). They are armed here;
how the connection ends, at a deadline or otherwise, is in `closing.py`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ketch.core.api import (
    EARLY_HINT,
    PATHSEND,
    TRAILERS,
    ConnectionInfo,
    Extensions,
    Headers,
    HTTPScope,
    ReadFlow,
    ServerContext,
    WebSocketScope,
    WriteFlow,
    http_scope,
    scope_extensions,
    send_file,
    websocket_scope,
)
from ketch.http import closing
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
    HANDOVER,
    HEAD,
    HEAD_DUE,
    IDLE,
    KEEP_ALIVE_DUE,
    LINGER_DUE,
    LINGER_SECONDS,
    NO_DEADLINE,
    OPEN,
    QUEUED,
    READ_HIGH_WATER,
    SWITCHING,
    WRITE_DUE,
    Refusal,
)

if TYPE_CHECKING:
    import io

    from ketch.http.parser import Parser, ParserEvents

# The ASGI extensions HTTP/1.1 implements (and `tls` on a TLS connection)
EXTENSIONS = (PATHSEND, TRAILERS, EARLY_HINT)


class HTTPConnection(asyncio.Protocol):
    """One HTTP/1.1 connection; `parser` turns its bytes into events
    (`ketch.http.parser.ParserEvents`, implemented here)."""

    __slots__ = (
        "context",
        "current",
        "deadline",
        "due",
        "extensions",
        "held",
        "incoming",
        "info",
        "last_request",
        "loop",
        "output",
        "parser",
        "queue",
        "read_flow",
        "reading",
        "served",
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
        self.served = False  # a response completed: the client reuses the connection
        self.last_request = False  # take no request after the incoming one
        self.held = b""  # bytes after an upgrade request, for the WebSocket protocol

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.output = Output(self.transport, self.loop)
        self.read_flow = ReadFlow(self.transport)
        context = self.context
        self.info: ConnectionInfo = context.connection_info(transport)
        self.extensions: Extensions = scope_extensions(self.info, EXTENSIONS)
        context.connections.add(self)
        self.due = KEEP_ALIVE_DUE
        self.deadline = context.now + self.settings.timeout_keep_alive

    def data_received(self, data: bytes) -> None:
        reading = self.reading
        if reading is DONE:
            return  # after the last request: dropped
        if reading is SWITCHING:
            self.held += data  # reading is paused: at most what was in flight
            return
        self.parser.feed(data)
        if self.reading is SWITCHING:
            # an upgrade request is complete; hand over if it is its turn (after
            # the parser returned, so that it could set the bytes that follow aside)
            current = self.current
            if current is not None and current.upgrade_target is not None:
                closing.hand_over(self, current)

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
        self.await_reader()

    def resume_writing(self) -> None:
        self.write_flow.resume()
        if self.due is WRITE_DUE:
            self.due = NO_DEADLINE
            self.deadline = 0.0

    def await_reader(self) -> None:
        """The send buffer is full: the client must read within --timeout-write."""
        if self.due is NO_DEADLINE and self.writing is OPEN:
            self.due = WRITE_DUE
            self.deadline = self.context.now + self.settings.timeout_write

    # --- how it ends (ketch.http.closing) -----------------------------------------------
    # what the server calls (ketch.core.api.Connection)
    on_deadline = closing.on_deadline
    shutdown = closing.shutdown
    abort = closing.abort
    # after the last answer, or at once (an error, a client gone)
    finish = closing.finish
    close = closing.close

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
            closing.refuse(self, exc.status, exc.reason)
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
                context,
                self.info,
                method.decode("ascii"),
                facts.http_version,
                target,
                headers,
                self.extensions,
            )
        keep_alive = facts.keep_alive and not self.last_request
        cycle = RequestCycle(self, scope, keep_alive)
        if not keep_alive:
            self.last_request = True
        if self.due is HEAD_DUE:
            self.due = NO_DEADLINE
            self.deadline = 0.0
        self.reading = BODY
        self.incoming = cycle
        if websocket:
            cycle.upgrade_target = target
            self.last_request = True
        else:
            limit = self.settings.limit_request_body
            length = facts.content_length
            if limit is not None and length is not None and length > limit:
                self.incoming = None
                closing.refuse(self, 413, "Request body too large")
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
            closing.refuse(self, 413, "Request body too large")
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
        if self.last_request:
            closing.stop_reading(self)
        else:
            self.reading = IDLE
        cycle.wake()
        if cycle.discarding and cycle.response is COMPLETE:
            self._next(cycle)  # the unread rest of its body is drained
        return self.reading is IDLE

    def on_bad_request(self, status: int, reason: str) -> None:
        if self.reading is DONE or self.writing is not OPEN:
            return
        closing.refuse(self, status, reason)

    # --- what the request cycle calls ---------------------------------------------------
    async def send_file(self, file: io.FileIO, offset: int, count: int) -> int:
        """Part of the current response: `count` bytes of `file` from `offset`,
        after what was written (ketch.core.api.send_file: the bytes sent, or
        ConnectionError)."""
        output = self.output
        output.flush()
        if not output.open:
            raise ConnectionError("the connection is closed")
        try:
            return await send_file(
                self.transport, self.write_flow, file, offset, count, self._sendfile_step
            )
        finally:
            self._sendfile_step(False)

    def _sendfile_step(self, kernel: bool) -> None:
        """The kernel sends the next step of a file: the client has --timeout-write
        to take it, as it has to read a full send buffer. Not the kernel: the
        transport's flow control arms that deadline when it is due."""
        if self.due is WRITE_DUE and not self.write_flow.paused:
            self.due = NO_DEADLINE
            self.deadline = 0.0
        if kernel:
            self.await_reader()

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
                self.served = True
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

    # --- request life cycle -------------------------------------------------------------
    def _start(self, cycle: RequestCycle) -> None:
        self.current = cycle
        if cycle.upgrade_target is not None:
            if self.reading is SWITCHING:  # the whole upgrade request is read
                closing.hand_over(self, cycle)
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
        self.served = True
        if not done.keep_alive:
            self.finish()
            return
        queue = self.queue
        if queue:
            item = queue.popleft()
            if not queue:
                self.read_flow.resume(QUEUED)
            if isinstance(item, Refusal):
                closing.answer(self, item)
            else:
                self._start(item)
            return
        reading = self.reading
        if reading is IDLE:
            self.due = KEEP_ALIVE_DUE
            self.deadline = self.context.now + self.settings.timeout_keep_alive
        elif reading is DONE:
            self.finish()
