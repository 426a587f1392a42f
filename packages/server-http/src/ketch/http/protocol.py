"""The HTTP/1.1 connection and its ASGI request-response cycle, parser-independent.

The h11 and httptools protocols only parse: they turn bytes into calls of
`_on_head()`, `_on_body()`, `_on_message_complete()` and `_on_bad_request()`.
Everything else lives here, once, so that both parsers behave identically:
request validation, limits and deadlines, the ASGI cycle, response framing
(Content-Length, chunked, close-delimited for HTTP/1.0, none for HEAD/204/304),
keep-alive, pipelining, flow control, WebSocket hand-over and shutdown.

Response heads are serialised here, not by the parsers, and written together
with the first body chunk: a small response is one `transport.write()`. The
chunks of a streamed response are gathered until the app next suspends and
written together (one `writev`), not with one system call each.
"""

from __future__ import annotations

import asyncio
import contextvars
import http
import logging
import re
from collections import deque
from typing import Any, Final, cast

from ketch.core import ServerContext
from ketch.core._types import ASGI3Application, Headers, Message
from ketch.core.scope import http_scope, path_with_query, split_target, websocket_scope
from ketch.core.transport import WriteFlow, get_local_addr, get_remote_addr, is_ssl

# --- connection states (what the deadline means) --------------------------------------
IDLE: Final = 0  # between requests: keep-alive timeout
HEAD: Final = 1  # part of a request head received: request-header timeout
BUSY: Final = 2  # a request is being served: body timeout while the app waits for body
LINGER: Final = 3  # response sent, reading what the client still sends before closing
CLOSED: Final = 4

# --- response progress ------------------------------------------------------------------
START: Final = 0  # waiting for http.response.start
STARTED: Final = 1  # start received, head not written yet (it goes out with the body)
STREAMING: Final = 2  # head written, more body to come
COMPLETE: Final = 3

# how a response body is delimited on the wire
LENGTH, CHUNKED, UNTIL_CLOSE, NO_BODY = 0, 1, 2, 3

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
# Up to this size a response body is copied behind its head for a single
# write; a larger one is written beside the head (writev) rather than copied.
SMALL_BODY = 4096
# Gathered chunks of a streamed response are written once they reach this size
# (so that flow control sees them).
UNSENT_LIMIT = 64 * 1024

STATUS_LINES: dict[int, bytes] = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in http.HTTPStatus
}
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"

# RFC 9110 5.6.2 token characters for header names, and what a field value may hold
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")
# a request target is visible ASCII (RFC 9112 3.2)
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_CHECKED_NAMES: dict[bytes, bytes] = {}  # response header names already checked: lowercased
_COMMON_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"})

logger = logging.getLogger("ketch.error")


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


class HTTPProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection. Subclasses add a parser (`data_received`) and
    `_parse_next()`, which resumes parsing buffered bytes after a response."""

    __slots__ = (
        "_app",
        "_body_limit",
        "_concurrency_limit",
        "_cycle",
        "_flush_handle",
        "_fresh_context",
        "_header_timeout",
        "_incoming",
        "_keep_alive_timeout",
        "_max_headers",
        "_paused_for_body",
        "_paused_for_pipeline",
        "_pipeline",
        "_root_path",
        "_served",
        "_state",
        "_unsent",
        "_unsent_size",
        "_upgrade",
        "client",
        "context",
        "deadline",
        "flow",
        "loop",
        "scheme",
        "server",
        "transport",
    )

    def __init__(self, context: ServerContext) -> None:
        config = context.config
        self.context = context
        self.loop = context.loop
        self._app: ASGI3Application = context.app
        self._root_path = config.root_path
        self._keep_alive_timeout = float(config.timeout_keep_alive)
        self._header_timeout = config.timeout_request_header
        self._body_limit = config.limit_request_body
        self._max_headers = config.limit_request_headers
        self._concurrency_limit = config.limit_concurrency
        self._fresh_context = config.reset_contextvars
        self.flow = WriteFlow()
        self.deadline = 0.0
        self._state = IDLE
        self._served = False  # a response completed: the client reuses the connection
        self._cycle: RequestCycle | None = None  # the request the app is serving
        self._incoming: RequestCycle | None = None  # the request whose body is arriving
        self._pipeline: deque[RequestCycle] = deque()  # complete requests waiting their turn
        self._paused_for_body = False
        self._paused_for_pipeline = False
        self._upgrade: RequestCycle | None = None  # a WebSocket request to hand over
        # a streamed response's chunks not written yet, and the flush scheduled
        self._unsent: list[bytes] = []
        self._unsent_size = 0
        self._flush_handle: asyncio.Handle | None = None

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        context = self.context
        context.connections.add(self)
        self.deadline = context.now + self._keep_alive_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = CLOSED
        self.deadline = 0.0
        self._unsent.clear()
        self.context.connections.discard(self)
        self.flow.connection_lost()
        for cycle in (self._cycle, self._incoming, *self._pipeline):
            if cycle is not None:
                cycle.on_disconnect()

    def eof_received(self) -> bool | None:
        # The client closed its side. Like Uvicorn (and nginx's default), take it
        # as the client leaving: the transport closes and the app is told.
        return None

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # --- what the server calls (ketch.core.context.Connection) -------------------------
    def on_deadline(self) -> None:
        state = self._state
        if state == HEAD:
            self._send_error(408, "Request header timeout")
        elif state == BUSY:
            # the app has waited --timeout-request-body for body bytes
            self.context.error_logger.info(
                "Closing connection from %s: request body timeout", _peer(self.client)
            )
            self._close()
        else:
            self._close()

    def shutdown(self) -> None:
        cycle = self._cycle
        if cycle is not None:
            cycle.keep_alive = False  # finish this response, then close
            for queued in self._pipeline:
                queued.keep_alive = False
        elif self._state == IDLE and self._served:
            # (the loop's time: context.now may be a tick behind)
            self.deadline = min(self.deadline, self.loop.time() + SHUTDOWN_GRACE)
        # a request head still arriving is answered with Connection: close

    def abort(self) -> None:
        if self._state != CLOSED:
            self._state = CLOSED
            self.transport.abort()

    # --- called by the parser ---------------------------------------------------------
    def _on_head(self, method: bytes, target: bytes, http_version: bytes, headers: Headers) -> None:
        """A complete request head; header names are lowercase."""
        if self._state >= LINGER:
            return  # answered and closing: whatever else was pipelined is dropped
        context = self.context
        if len(headers) > self._max_headers:
            self._send_error(431, "Too many request headers")
            return
        if method not in _COMMON_METHODS and _HEADER_NAME.fullmatch(method) is None:
            self._send_error(400, "Invalid request method")
            return
        if _BAD_TARGET.search(target) is not None:
            self._send_error(400, "Invalid request target")
            return
        if http_version == b"1.1":
            version = "1.1"
        elif http_version == b"1.0":
            version = "1.0"
        elif http_version[:1] in (b"2", b"3"):
            self._send_error(505, "HTTP/2 and HTTP/3 are not served on an HTTP/1.1 connection")
            return
        else:  # HTTP/0.9 (no version) and unknown minor versions
            self._send_error(400, "Unsupported HTTP version")
            return
        problem, content_length, connection, expect, upgrade = _inspect(http_version, headers)
        if problem is not None:
            self._send_error(400, problem)
            return
        # bytes.find rather than `in`, which first tries the operand as an integer
        # (a failed conversion per test: it costs more than the search)
        if version == "1.1":
            keep_alive = connection.find(b"close") == -1
        else:
            keep_alive = connection.find(b"keep-alive") != -1 and connection.find(b"close") == -1
        if context.shutting_down:
            keep_alive = False
        raw_path, query = split_target(target)
        upgrade = (
            upgrade
            and method == b"GET"
            and b"upgrade" in connection
            and context.ws_upgrade is not None
        )
        scope: Any
        if upgrade:
            scope = websocket_scope(
                version, raw_path, query, headers, self.scheme, self.server, self.client,
                self._root_path, context.lifespan_state,
            )  # fmt: skip
        else:
            scope = http_scope(
                method.decode("ascii"), version, raw_path, query, headers, self.scheme,
                self.server, self.client, self._root_path, context.lifespan_state,
            )  # fmt: skip
        cycle = RequestCycle(self, scope, keep_alive)
        self._incoming = cycle
        self._state = BUSY
        self.deadline = 0.0
        if upgrade:
            cycle.upgrade_target = target
            return  # handed over once the head is complete (_on_message_complete)

        limit = self._body_limit
        if limit is not None and content_length is not None and content_length > limit:
            self._send_error(413, "Request body too large")
            return
        cycle.content_length = content_length
        cycle.expect_continue = expect and version == "1.1"
        if self._cycle is None:
            self._start(cycle)
        else:
            self._pipeline.append(cycle)
            if not self._paused_for_pipeline:
                self._paused_for_pipeline = True
                self.transport.pause_reading()

    def _on_body(self, data: bytes) -> None:
        cycle = self._incoming
        if cycle is None:
            return
        cycle.received += len(data)
        if cycle.discarding or cycle.disconnected:
            if cycle.received - (cycle.content_length or 0) > DRAIN_LIMIT:
                self._close()  # not worth reading on to keep the connection
            return
        limit = self._body_limit
        if limit is not None and cycle.received > limit:
            self._body_too_large(cycle)
            return
        cycle.body.append(data)
        cycle.buffered += len(data)
        cycle.wake()
        if cycle.buffered > READ_HIGH_WATER and not self._paused_for_body:
            self._paused_for_body = True
            self.transport.pause_reading()

    def _on_message_complete(self) -> None:
        cycle = self._incoming
        if cycle is None:
            return
        self._incoming = None
        cycle.more_body = False
        if cycle.upgrade_target is not None:
            # the parser hands over once it knows where the request ends
            self._upgrade = cycle
            return
        cycle.wake()
        if cycle.discarding and cycle.response == COMPLETE:
            self._after_response(cycle)

    def _on_bad_request(self, status: int, reason: str) -> None:
        """The parser rejected the input: answer it (if nothing else was started)
        and close."""
        cycle = self._incoming or self._cycle
        if cycle is not None and cycle.response != START:
            self._close()
            return
        if cycle is not None:
            cycle.on_disconnect()
        self._send_error(status, reason)

    def _first_bytes(self) -> None:
        """The first bytes of a request head arrived: start its deadline."""
        self._state = HEAD
        self.deadline = self.context.now + self._header_timeout

    def _parse_next(self) -> None:
        """Continue parsing after a response, with the bytes already buffered."""
        raise NotImplementedError

    # --- request life cycle -----------------------------------------------------------
    def _start(self, cycle: RequestCycle) -> None:
        self._cycle = cycle
        context = self.context
        context.count_request()
        limit = self._concurrency_limit
        if limit is not None and (len(context.connections) > limit or len(context.tasks) >= limit):
            cycle.respond_error(503, "Service Unavailable")
            return
        # A Task per request, started by the loop once this callback returns.
        # Not eagerly (Python 3.12's eager_start): measured under load, that costs
        # more (15.2 against 14.6 µs of CPU per hello request), since a loop turn
        # that parses every ready connection first and then runs their apps keeps
        # the caches warmer than alternating the two.
        coro = cycle.run_asgi(self._app)
        loop = self.loop
        if self._fresh_context:  # --reset-contextvars: the Task copies an empty context
            task = contextvars.Context().run(loop.create_task, coro)
        elif loop.get_task_factory() is None:
            # named here, as create_task() names it only after the Task made
            # itself a "Task-<n>" name (2 % of a small request's cost)
            task = asyncio.Task(coro, loop=loop, name="ketch-request")
        else:
            task = loop.create_task(coro)  # the app's own task factory
        cycle.task = task
        context.tasks.add(task)

    def _after_response(self, cycle: RequestCycle) -> None:
        """The response is complete: keep the connection for the next request or close."""
        if cycle is not self._cycle or self._state == CLOSED:
            return
        if cycle.more_body:
            # part of the request body is still unread
            if (
                cycle.keep_alive
                and cycle.upgrade_target is None
                and (cycle.content_length or 0) - cycle.received <= DRAIN_LIMIT
            ):
                cycle.discarding = True
                cycle.body.clear()
                cycle.buffered = 0
                if self._paused_for_body:
                    self._paused_for_body = False
                    self.transport.resume_reading()
                self.deadline = self.context.now + LINGER_SECONDS
                return  # _on_message_complete() comes back here
            self._linger()
            return
        self._cycle = None
        if not cycle.keep_alive:
            self._linger()
            return
        if self._pipeline:
            self._start(self._pipeline.popleft())
            return
        self._state = IDLE
        self._served = True
        self.deadline = self.context.now + self._keep_alive_timeout
        if self._paused_for_pipeline:
            self._paused_for_pipeline = False
            self.transport.resume_reading()
        self._parse_next()

    def _body_too_large(self, cycle: RequestCycle) -> None:
        cycle.on_disconnect()  # the app must not get more; it sees http.disconnect
        if cycle.response == START:
            cycle.keep_alive = False
            self._send_error(413, "Request body too large")
        else:
            self._close()

    def _hand_over(self, buffered: bytes) -> None:
        """Give the connection to the WebSocket plugin, with the bytes read after
        the upgrade request."""
        cycle = self._upgrade
        handler = self.context.ws_upgrade
        assert cycle is not None and handler is not None and cycle.upgrade_target is not None
        self._upgrade = None
        self._state = CLOSED
        self.deadline = 0.0
        self.context.connections.discard(self)
        if self._paused_for_pipeline or self._paused_for_body:
            self.transport.resume_reading()
        handler(self.transport, cycle.scope, cycle.upgrade_target, buffered)

    # --- writing ----------------------------------------------------------------------
    def _send_error(self, status: int, reason: str) -> None:
        """Answer a request the app never saw (400, 408, 413, 431, 503) and close."""
        if self._state == CLOSED:
            return
        if status != 408:
            self.context.error_logger.warning(
                "%d answered to %s: %s", status, _peer(self.client), reason
            )
        body = http.HTTPStatus(status).phrase.encode("ascii")
        self.transport.write(
            status_line(status)
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n%s" % (len(body), self.context.default_headers.block, body)
        )
        self._linger()

    def _linger(self) -> None:
        """Close without losing the response: a client still sending would get a
        reset that can destroy the response in its receive buffer, so half-close,
        read and drop what still comes for a moment, then close."""
        self._incoming = None
        self._pipeline.clear()
        if self._state == CLOSED:
            return
        transport = self.transport
        if not transport.can_write_eof():
            self._close()
            return
        self._flush()
        self._state = LINGER
        self.deadline = self.context.now + LINGER_SECONDS
        if self._paused_for_body or self._paused_for_pipeline:
            self._paused_for_body = self._paused_for_pipeline = False
            transport.resume_reading()
        try:
            transport.write_eof()
        except OSError:
            self._close()

    def _close(self) -> None:
        if self._state != CLOSED:
            self._flush()
            self._state = CLOSED
            self.deadline = 0.0
            self.transport.close()

    def _write_soon(self, data: bytes) -> None:
        """Part of a streamed response: written with whatever else the app sends
        before it next suspends (a burst of chunks costs one system call)."""
        self._unsent.append(data)
        self._unsent_size += len(data)
        if self._unsent_size >= UNSENT_LIMIT:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self, last: bytes = b"") -> None:
        """Write what `_write_soon()` gathered, and `last` after it."""
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
            if self._state != CLOSED:
                self.transport.writelines(unsent)


class RequestCycle:
    """One request: its ASGI `receive`/`send` and the response framing."""

    __slots__ = (
        "_headers",
        "body",
        "buffered",
        "conn",
        "content_length",
        "delivered",
        "discarding",
        "disconnected",
        "expect_continue",
        "framing",
        "head_only",
        "keep_alive",
        "more_body",
        "received",
        "remaining",
        "response",
        "scope",
        "status",
        "task",
        "upgrade_target",
        "waiter",
    )

    def __init__(self, conn: HTTPProtocol, scope: Any, keep_alive: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        # request body chunks not yet received by the app (kept as they came:
        # one chunk reaches the app without a copy)
        self.body: list[bytes] = []
        self.buffered = 0  # their total size
        self.more_body = True  # the request body is not complete yet
        self.received = 0
        self.delivered = False  # the app has received the last body message
        self.content_length: int | None = None
        self.discarding = False  # the response is done: drop the rest of the body
        self.disconnected = False
        self.expect_continue = False
        self.response: int = START
        self.status = 0
        self.framing = LENGTH
        self.remaining = 0  # bytes still due under Content-Length
        self.head_only = scope.get("method") == "HEAD"
        self.upgrade_target: bytes | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self._headers: Any = ()

    # --- events from the connection ---------------------------------------------------
    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    # --- running the app --------------------------------------------------------------
    async def run_asgi(self, app: ASGI3Application) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._app_failed(exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return
        finally:
            # graceful shutdown waits for the tasks in this set (cheaper than a
            # done callback, which would cost the loop one more turn per request)
            task = self.task
            if task is not None:
                self.conn.context.tasks.discard(task)
        if self.response != COMPLETE and not self.disconnected:
            if self.response == START:
                logger.error("ASGI callable returned without starting response.")
                self.respond_error(500, "Internal Server Error")
            else:
                logger.error("ASGI callable returned without completing response.")
                self.conn._close()

    def _app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or self.disconnected:
            if self.disconnected:
                logger.debug("Exception in ASGI application after the client left", exc_info=exc)
            if self.response != COMPLETE:
                self.conn._close()
            return
        logger.error("Exception in ASGI application\n", exc_info=exc)
        if self.response <= STARTED:  # nothing written yet (the head waits for the body)
            self.respond_error(500, "Internal Server Error")
        elif self.response != COMPLETE:
            self.conn._close()

    def respond_error(self, status: int, text: str) -> None:
        """A plain-text response in place of the app's (500, 503)."""
        conn = self.conn
        body = text.encode("utf-8")
        self.keep_alive = False
        self.status = status
        self.response = COMPLETE
        self.wake()
        conn.context.log_access(
            conn.client,
            self.scope["method"],
            path_with_query(self.scope),
            self.scope["http_version"],
            status,
        )
        conn.transport.write(
            status_line(status)
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n%s" % (len(body), conn.context.default_headers.block, body)
        )
        conn._after_response(self)

    # --- ASGI receive -----------------------------------------------------------------
    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if self.response == START and not self.disconnected:
                self.conn.transport.write(CONTINUE_RESPONSE)
        if self.disconnected or self.response == COMPLETE:
            return {"type": "http.disconnect"}
        if self.delivered:
            # the whole body went to the app: what is left to report is the end
            await self._wait(body_deadline=False)
            return {"type": "http.disconnect"}
        if not self.body and self.more_body:
            await self._wait(body_deadline=True)
            if self.disconnected or self.response == COMPLETE:
                return {"type": "http.disconnect"}
        body = b"".join(self.body)  # a single bytes chunk is returned as is
        self.body.clear()
        self.buffered = 0
        more_body = self.more_body
        self.delivered = not more_body
        conn = self.conn
        if conn._paused_for_body:
            conn._paused_for_body = False
            conn.transport.resume_reading()
        return {"type": "http.request", "body": body, "more_body": more_body}

    async def _wait(self, body_deadline: bool) -> None:
        conn = self.conn
        if conn._paused_for_body:
            conn._paused_for_body = False
            conn.transport.resume_reading()
        waiter = self.waiter = conn.loop.create_future()
        if body_deadline:
            conn.deadline = conn.context.now + conn.context.config.timeout_request_body
        try:
            await waiter
        finally:
            if body_deadline and conn._state == BUSY:
                conn.deadline = 0.0

    # --- ASGI send ----------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.flow.paused and not self.disconnected:
            await conn.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        response = self.response
        if response == START:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got {kind!r}."
                )
            self.status = message["status"]
            self._headers = message.get("headers", ())
            self.response = STARTED
            self.expect_continue = False
            if conn.context.access_logger is not None:
                conn.context.log_access(
                    conn.client,
                    self.scope["method"],
                    path_with_query(self.scope),
                    self.scope["http_version"],
                    self.status,
                )
            return
        if response == COMPLETE:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r} sent, after response already completed."
            )
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {kind!r}.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if response == STARTED:
            head = self._head(None if more_body else len(body))
            self.response = STREAMING
            data = self._frame(body, more_body)
            if more_body:
                conn._write_soon(head)
                if data:
                    conn._write_soon(data)
            elif len(data) <= SMALL_BODY:
                conn.transport.write(head + data)  # one write: one syscall, one packet
            else:
                conn.transport.writelines((head, data))  # one syscall (writev), no copy
        else:
            data = self._frame(body, more_body)
            if more_body:
                if data:
                    conn._write_soon(data)
            else:
                conn._flush(data)
        if not more_body:
            self.response = COMPLETE
            self.wake()
            if self.framing == LENGTH and self.remaining:
                logger.error("Response content shorter than Content-Length")
                self.keep_alive = False
            conn._after_response(self)

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        framing = self.framing
        if framing == LENGTH:
            size = len(body)
            if size > self.remaining:
                self.conn._close()
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= size
            return bytes(body)
        if framing == CHUNKED:
            if body:
                chunk = b"%x\r\n%s\r\n" % (len(body), body)
                return chunk if more_body else chunk + b"0\r\n\r\n"
            return b"" if more_body else b"0\r\n\r\n"
        if framing == UNTIL_CLOSE:
            return bytes(body)
        return b""

    def _head(self, final_size: int | None) -> bytes:
        """The response head. `final_size` is the body size when the first body
        message is also the last, so a Content-Length can be added."""
        status = self.status
        defaults = self.conn.context.default_headers
        content_length: int | None = None
        app_chunked = False
        overridden: set[bytes] | None = None
        default_names = defaults.names
        app_lines = []
        for name, value in self._headers:
            lower = _CHECKED_NAMES.get(name)
            if lower is None:
                lower = _check_header_name(name)
            if lower in _FRAMING_HEADERS:
                if lower == b"content-length":
                    if _CONTENT_LENGTH.fullmatch(value) is None:
                        raise RuntimeError(f"Invalid Content-Length header: {value!r}")
                    content_length = int(value)
                elif lower == b"transfer-encoding":
                    app_chunked = True
                    continue  # written below, from the framing chosen
                else:  # connection
                    if value.lower().find(b"close") != -1:
                        self.keep_alive = False
                    continue  # written below, from the keep-alive decision
            elif lower in default_names:
                if overridden is None:
                    overridden = set()
                overridden.add(lower)
            app_lines.append(b"%s: %s\r\n" % (name, value))
        # One scan for CR, LF or NUL smuggled into a value: each line ends with
        # exactly one CRLF, so the counts must match the number of lines.
        block = b"".join(app_lines)
        count = len(app_lines)
        if block.count(b"\n") != count or block.count(b"\r") != count or block.count(b"\0"):
            raise RuntimeError("Invalid HTTP header value: line breaks or NUL are not allowed")
        lines = [
            STATUS_LINES.get(status) or status_line(status),
            block,
            defaults.block_without(overridden) if overridden else defaults.block,
        ]

        if status < 200 or status in (204, 304):
            self.framing = NO_BODY
        elif content_length is not None and not app_chunked:
            self.framing = NO_BODY if self.head_only else LENGTH
            self.remaining = content_length
        elif final_size is not None and not app_chunked:
            # the whole body is known: its length (for HEAD, the length a GET would get)
            self.framing = NO_BODY if self.head_only else LENGTH
            self.remaining = final_size
            lines.append(b"content-length: %d\r\n" % final_size)
        elif self.head_only:
            self.framing = NO_BODY
        elif self.scope["http_version"] == "1.1":
            self.framing = CHUNKED
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            # HTTP/1.0 knows no chunking: the end of the body is the end of the connection
            self.framing = UNTIL_CLOSE
            self.keep_alive = False

        if not self.keep_alive:
            lines.append(b"connection: close\r\n\r\n")
        elif self.scope["http_version"] == "1.0":
            lines.append(b"connection: keep-alive\r\n\r\n")
        else:
            lines.append(b"\r\n")
        return b"".join(lines)


def _check_header_name(name: bytes) -> bytes:
    """The lowercase form of a response header name; raise if it is not a token.
    Good names are remembered."""
    if _HEADER_NAME.fullmatch(name) is None:
        raise RuntimeError(f"Invalid HTTP header name {name!r}")
    lower = name.lower()
    if len(_CHECKED_NAMES) < 1024:  # bounded: names are few, but apps could make them up
        _CHECKED_NAMES[name] = lower
    return lower


# --- request validation (RFC 9112), the same for every parser ------------------------------
def _inspect(
    http_version: bytes, headers: Headers
) -> tuple[str | None, int | None, bytes, bool, bool]:
    """One pass over the request headers: (why the request is unacceptable or
    None, its Content-Length, the Connection tokens lowercased, whether it
    expects 100-continue, whether it asks for a WebSocket upgrade)."""
    hosts = 0
    length: bytes | None = None
    transfer_encoding: bytes | None = None
    connection = b""
    expect = upgrade = False
    for name, value in headers:
        if _BAD_VALUE.search(value) is not None:
            return "Invalid character in header value", None, b"", False, False
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            for item in value.split(b","):
                item = item.strip()
                if length is not None and item != length:
                    return "Conflicting Content-Length headers", None, b"", False, False
                length = item
        elif name == b"transfer-encoding":
            transfer_encoding = (
                value if transfer_encoding is None else transfer_encoding + b"," + value
            )
        elif name == b"connection":
            connection = connection + b"," + value.lower() if connection else value.lower()
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
        elif name == b"upgrade":
            upgrade = b"websocket" in value.lower()
    if hosts != 1 and (hosts > 1 or http_version == b"1.1"):
        problem = "Missing Host header" if hosts == 0 else "More than one Host header"
        return problem, None, b"", False, False
    if length is not None and _CONTENT_LENGTH.fullmatch(length) is None:
        return "Invalid Content-Length header", None, b"", False, False
    if transfer_encoding is not None:
        if length is not None:
            return "Both Content-Length and Transfer-Encoding", None, b"", False, False
        if transfer_encoding.strip().lower() != b"chunked":
            return "Unsupported Transfer-Encoding", None, b"", False, False
        if http_version != b"1.1":
            return "Transfer-Encoding in an HTTP/1.0 request", None, b"", False, False
    return None, int(length) if length is not None else None, connection, expect, upgrade


def _peer(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else "a UNIX socket peer"
