"""One request's ASGI `receive`/`send`, whatever the protocol: `ASGICycle`.

The ASGI message rules live here once: which message may come when, the
error texts, the extensions' messages (`http.response.pathsend`,
`http.response.trailers`, `http.response.early_hint`), 100 Continue, the
request body handed to the app, and the `Exchange` recorded for the access
log and the metrics. A protocol (ketch-http's `RequestCycle`, ketch-h2's
`Stream`) subclasses it and writes the bytes: the hooks below, each a plain
method (docs/plugins.md, "One request's ASGI cycle").

The response's progress is `Response`: START (waiting for
`http.response.start`), STARTED (start received; the head goes out with the
first body message, so that a small response is one write), STREAMING (head
written, more to come), TRAILERS (the body is written; the app said it sends
trailers, and they are due), COMPLETE. On the request path read the members
through the module constants (`COMPLETE`, ...): a global costs a tenth of
`Response.COMPLETE`.

The extensions cost the common response nothing: their messages are looked
at only where any other message would be an error, and `trailers` is looked
up in `http.response.start` with one `in`.
"""

from __future__ import annotations

import asyncio
import enum
import io
import logging
from collections.abc import Awaitable
from typing import Any, ClassVar, Final, Protocol

from ketch.core._types import ASGI3Application, Headers, Message
from ketch.core.context import ClientDisconnected, ServerContext
from ketch.core.exchange import Exchange
from ketch.core.files import open_path
from ketch.core.http1 import accepts_trailers, checked_headers
from ketch.core.scope import EARLY_HINT, PATHSEND, TRAILERS
from ketch.core.transport import WriteFlow

logger = logging.getLogger("ketch.error")


class Response(enum.Enum):
    START = "start"
    STARTED = "started"
    STREAMING = "streaming"
    TRAILERS = "trailers"
    COMPLETE = "complete"


START: Final = Response.START
STARTED: Final = Response.STARTED
STREAMING: Final = Response.STREAMING
TRAILERS_DUE: Final = Response.TRAILERS
COMPLETE: Final = Response.COMPLETE


class CycleConnection(Protocol):
    """What `ASGICycle` uses of its protocol's connection."""

    context: ServerContext
    loop: asyncio.AbstractEventLoop
    write_flow: WriteFlow  # the app's `send` waits while it is paused


class ASGICycle:
    """One request: its ASGI `receive`/`send`; a protocol subclasses it with
    the hooks that write (see the methods under "hooks")."""

    __slots__ = (
        "_headers",
        "body",
        "buffered",
        "conn",
        "delivered",
        "disconnected",
        "exchange",
        "expect_continue",
        "head_only",
        "more_body",
        "received",
        "remaining",
        "response",
        "scope",
        "status",
        "task",
        "trailer_fields",
        "trailers",
        "waiter",
    )

    # header names left out of the app's trailers (the protocol's own)
    trailer_drop: ClassVar[frozenset[bytes]] = frozenset()
    # what abort() does, for the log ("closing the connection")
    abort_action: ClassVar[str] = "ending the response"

    def __init__(self, conn: CycleConnection, scope: Any, more_body: bool) -> None:
        self.conn = conn
        self.scope = scope
        # request body chunks not yet received by the app (kept as they came:
        # one chunk reaches the app without a copy), and their size
        self.body: list[bytes] = []
        self.buffered = 0
        self.more_body = more_body  # the request body is not complete yet
        self.received = 0  # request body bytes so far
        self.delivered = False  # the app has received the last body message
        self.disconnected = False  # the client is gone (or the stream reset)
        self.expect_continue = False  # the client waits for 100 Continue
        self.response = START
        self.status = 0
        # body bytes still due under the response's Content-Length (> 0: some)
        self.remaining = 0
        self.head_only = scope.get("method") == "HEAD"
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self._headers: Any = ()
        # the access log's and the metrics' record, when either is on
        self.exchange: Exchange | None = None
        # the app sends trailers (http.response.start's "trailers"): None if not,
        # True when they go on the wire, False when they are dropped
        self.trailers: bool | None = None

    # --- hooks: what a protocol implements ---------------------------------------------
    def write_body(self, body: bytes, more_body: bool) -> Awaitable[None] | None:
        """Write one body message: first the head (`self.status`,
        `self._headers`) when `self.response is STARTED`, then set STREAMING.
        Keep `self.remaining` (bytes due under a Content-Length) and raise
        `self.too_long()` past it. Return an awaitable when the write must
        wait (flow control), else None. Called only while the body may come."""
        raise NotImplementedError

    def file_head(self, size: int) -> int:
        """`http.response.pathsend` of a `size`-byte file: decide the head (its
        Content-Length is `size` unless the app gave one) and return the body
        bytes due (0 when no body goes out, HEAD, 204, 304)."""
        raise NotImplementedError

    async def write_file(self, file: io.FileIO, count: int) -> int:
        """The head and `count` bytes of `file` (from 0), after `file_head()`;
        return the bytes sent (fewer: the file shrank). Set STREAMING."""
        raise NotImplementedError

    def write_trailers(self, fields: Headers) -> None:
        """The trailer fields after the body (when they go on the wire)."""
        raise NotImplementedError

    def write_early_hints(self, links: list[bytes]) -> None:
        """A 103 Early Hints response, one Link field per link (never called
        for HTTP/1.0)."""
        raise NotImplementedError

    def write_continue(self) -> None:
        """A 100 Continue response: the client may send the body."""
        raise NotImplementedError

    def continue_skipped(self) -> None:
        """The response started while the client still waits for 100 Continue
        and may not send the body (RFC 9110 10.1.1)."""

    def finish(self, short: bool) -> None:
        """The response is complete (`short`: its body fell short of the
        Content-Length, already logged): let the next one go, or end."""
        raise NotImplementedError

    def abort(self, cancel: bool = False) -> None:
        """The response cannot complete: end it on the wire (`cancel`: the app
        was cancelled or the client left, rather than an error)."""
        raise NotImplementedError

    def respond_error(self, status: int, text: str) -> None:
        """A plain-text response in place of the app's (`respond_instead()`)."""
        raise NotImplementedError

    def body_dropped(self) -> bool:
        """No body went out although the app sent one (HEAD, 204, 304)."""
        raise NotImplementedError

    def waiting_for_body(self) -> None:
        """The app waits for request body bytes (read on, arm a deadline)."""

    def body_waited(self) -> None:
        """The wait of `waiting_for_body()` is over."""

    def body_taken(self, size: int) -> None:
        """The app took `size` bytes of the request body (read more)."""

    # --- events from the connection ---------------------------------------------------
    def head_written(self) -> bool:
        return self.response is not START and self.response is not STARTED

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_disconnect(self) -> None:
        self.disconnected = True
        self.wake()
        if self.exchange is not None:
            self.end_exchange(False)

    def end_exchange(self, complete: bool, status: int = 0) -> None:
        """Report the exchange (once): its response went out whole, or not.
        `status`: ketch's answer in place of the app's."""
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            if status:
                exchange.status = status
            elif self.body_dropped():
                exchange.bytes_sent = 0
            exchange.bytes_received = self.received
            exchange.end(complete)

    def respond_instead(self, status: int, size: int) -> None:
        """A response of ketch's (`size` body bytes) replaces the app's: record
        it; the protocol writes it (`respond_error()`)."""
        self.status = status
        self.response = COMPLETE
        self.wake()
        if self.exchange is not None:
            self.exchange.bytes_sent = size
            self.end_exchange(True, status)

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
        if self.response is not COMPLETE and not self.disconnected:
            if self.response is START:
                logger.error("ASGI callable returned without starting response.")
                self.respond_error(500, "Internal Server Error")
            else:
                logger.error("ASGI callable returned without completing response.")
                self.abort()

    def _app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or self.disconnected:
            if self.disconnected:
                logger.debug("Exception in ASGI application after the client left", exc_info=exc)
            if self.response is not COMPLETE:
                self.abort(True)
            return
        logger.error("Exception in ASGI application\n", exc_info=exc)
        if not self.head_written():
            self.respond_error(500, "Internal Server Error")
        elif self.response is not COMPLETE:
            self.abort()

    # --- ASGI receive -----------------------------------------------------------------
    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if self.response is START and not self.disconnected:
                self.write_continue()
        if self.disconnected or self.response is COMPLETE:
            return {"type": "http.disconnect"}
        if self.delivered:
            # the whole body went to the app: what is left to report is the end
            await self._wait()
            return {"type": "http.disconnect"}
        if not self.body and self.more_body:
            self.waiting_for_body()
            try:
                await self._wait()
            finally:
                self.body_waited()
            if self._over():
                return {"type": "http.disconnect"}
        body = b"".join(self.body)  # a single bytes chunk is returned as is
        self.body.clear()
        taken = self.buffered
        self.buffered = 0
        more_body = self.more_body
        self.delivered = not more_body
        self.body_taken(taken)
        return {"type": "http.request", "body": body, "more_body": more_body}

    def _over(self) -> bool:
        """Nothing more to receive: the client left, or the response is complete
        (a method: mypy would take the state for the one before the wait)."""
        return self.disconnected or self.response is COMPLETE

    async def _wait(self) -> None:
        waiter = self.waiter = self.conn.loop.create_future()
        await waiter

    # --- ASGI send ----------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        write_flow = self.conn.write_flow
        if write_flow.paused and not self.disconnected:
            await write_flow.drain()
        if self.disconnected:
            raise ClientDisconnected("the client is gone")
        kind = message["type"]
        response = self.response
        if response is START:
            if kind != "http.response.start":
                if kind == EARLY_HINT:
                    self._early_hint(message)
                    return
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got {kind!r}."
                )
            self.status = message["status"]
            self._headers = message.get("headers", ())
            self.response = STARTED
            if "trailers" in message:  # (`in`: cheaper than a get() on every response)
                self._expect_trailers(message["trailers"])
            if self.expect_continue:
                self.expect_continue = False
                if self.more_body:
                    self.continue_skipped()
            exchange = self.exchange
            if exchange is not None:
                exchange.status = self.status
                exchange.response_headers = self._headers
            return
        if response is COMPLETE:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r} sent, after response already completed."
            )
        if kind != "http.response.body":
            await self._extension(kind, message)
            return
        if response is TRAILERS_DUE:
            raise RuntimeError(
                "Expected ASGI message 'http.response.trailers', but got 'http.response.body'."
            )
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        exchange = self.exchange
        if exchange is not None:
            exchange.bytes_sent += len(body)
        waiting = self.write_body(body, more_body)
        if waiting is not None:
            await waiting
            if self.disconnected:  # while the write waited
                raise ClientDisconnected("the client is gone")
        if not more_body:
            if self.trailers is not None:
                self.response = TRAILERS_DUE
                return
            # (self.complete(), inlined: this runs for every response)
            self.response = COMPLETE
            self.wake()
            short = self.remaining > 0
            if short:
                logger.error("Response content shorter than Content-Length")
            if exchange is not None:
                self.end_exchange(not short)
            self.finish(short)

    def complete(self) -> None:
        """The response is written whole (body, and trailers if any)."""
        self.response = COMPLETE
        self.wake()
        short = self.remaining > 0
        if short:
            logger.error("Response content shorter than Content-Length")
        if self.exchange is not None:
            self.end_exchange(not short)
        self.finish(short)

    def too_long(self) -> RuntimeError:
        """The body goes past its Content-Length: abort, and the error to raise."""
        self.abort()
        return RuntimeError("Response content longer than Content-Length")

    # --- ASGI extensions (messages other than start and body) ---------------------------
    async def _extension(self, kind: str, message: Message) -> None:
        response = self.response
        if kind == PATHSEND and response is STARTED:
            await self._pathsend(message)
        elif kind == TRAILERS and response is TRAILERS_DUE:
            self._send_trailers(message)
        elif kind == EARLY_HINT and response is STARTED:
            self._early_hint(message)
        elif kind == EARLY_HINT and response is STREAMING:
            pass  # the final head is out: too late for hints (the spec lets us ignore it)
        else:
            expected = TRAILERS if response is TRAILERS_DUE else "http.response.body"
            raise RuntimeError(f"Expected ASGI message {expected!r}, but got {kind!r}.")

    def _early_hint(self, message: Message) -> None:
        """103 Early Hints before the final head; never to HTTP/1.0 (RFC 9110 15.2)."""
        links = []
        for link in message.get("links", ()):
            if not isinstance(link, bytes | bytearray | memoryview):
                raise RuntimeError(f"Early hint links must be byte strings, got {link!r}")
            links.append(bytes(link).strip())
        if links and self.scope["http_version"] != "1.0":
            self.write_early_hints(links)

    def _expect_trailers(self, wanted: object) -> None:
        """The app sends trailers after its body (`wanted`): on the wire when the
        client said `TE: trailers` (and the protocol can carry them); dropped
        otherwise."""
        if not wanted:
            return
        self.trailers = (
            not self.head_only
            and self.scope["http_version"] != "1.0"
            and accepts_trailers(self.scope["headers"])
        )
        self.trailer_fields: Headers = []

    def _send_trailers(self, message: Message) -> None:
        self.trailer_fields += checked_headers(message.get("headers", ()), self.trailer_drop)
        if message.get("more_trailers", False):
            return
        if self.trailers:
            self.write_trailers(self.trailer_fields)
        self.complete()

    async def _pathsend(self, message: Message) -> None:
        """The response body is a file the app names."""
        path = message.get("path")
        file, size = open_path(path)
        try:
            count = self.file_head(size)
            if count > size:
                raise RuntimeError(
                    f"http.response.pathsend: {path} has {size} bytes, "
                    f"fewer than the response's Content-Length ({count})"
                )
            sent = await self.write_file(file, count)
        finally:
            file.close()
        if self.exchange is not None:
            self.exchange.bytes_sent += sent
        if sent < count:
            logger.error(
                "File %s shrank while it was sent (%d of %d bytes): %s",
                path,
                sent,
                count,
                self.abort_action,
            )
            self.response = COMPLETE
            self.wake()
            if self.exchange is not None:
                self.end_exchange(False)
            self.abort()
        elif self.trailers is not None:
            self.response = TRAILERS_DUE
        else:
            self.complete()
