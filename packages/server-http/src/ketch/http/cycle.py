"""One HTTP/1.1 request and its ASGI `receive`/`send`.

The cycle writes through its connection's `Output` (`write`, `write_soon`,
`write_pair`, `flush`: the write gate, closed once the connection stops
writing; a file of `http.response.pathsend` goes by the connection's
`send_file`) and tells the connection what happens through a few methods
(`wait_for_body`, `body_waited`, `body_taken`, `response_complete`, `close`).
The response's progress is `Response`: START (waiting for
`http.response.start`), STARTED (start received; the head goes out with the
first body bytes, so a small response is one write), STREAMING (head written,
more to come), TRAILERS (the body is written; the app said it sends
trailers, and they are due), COMPLETE.

The ASGI extensions (docs/asgi-extensions.md) cost the common response
nothing: their messages are looked at only where any other message would be
an error, and `trailers` is looked up in `http.response.start` with one `in`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from typing import TYPE_CHECKING, Any, Final

from ketch.core.api import (
    CHUNKED,
    CONTINUE,
    EARLY_HINT,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    PATHSEND,
    TRAILERS,
    UNTIL_CLOSE,
    ASGI3Application,
    ClientDisconnected,
    Exchange,
    Framing,
    Headers,
    Message,
    accepts_trailers,
    checked_headers,
    early_hints,
    error_response,
    last_chunk,
    open_path,
    response_head,
)

if TYPE_CHECKING:
    from ketch.http.connection import HTTPConnection

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

# Up to this size a response body is copied behind its head for a single
# write; a larger one is written beside the head (writev) rather than copied.
SMALL_BODY = 4096
# Up to this size a file of http.response.pathsend is read and written with
# its head (one system call); a larger one goes by the kernel's sendfile.
SMALL_FILE = 64 * 1024


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
        "exchange",
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
        "trailer_fields",
        "trailers",
        "upgrade_target",
        "waiter",
    )

    def __init__(self, conn: HTTPConnection, scope: Any, keep_alive: bool) -> None:
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
        self.expect_continue = False  # the client waits for 100 Continue
        self.response = START
        self.status = 0
        self.framing: Framing = LENGTH
        self.remaining = 0  # bytes still due under Content-Length
        self.head_only = scope.get("method") == "HEAD"
        self.upgrade_target: bytes | None = None  # a WebSocket request's raw target
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self._headers: Any = ()
        # the access log's and the metrics' record, when either is on
        self.exchange: Exchange | None = None
        # the app sends trailers (http.response.start's "trailers"): None if not,
        # True when they go on the wire, False when they are dropped
        self.trailers: bool | None = None

    def head_written(self) -> bool:
        return self.response is not START and self.response is not STARTED

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
            elif self.framing is NO_BODY:  # HEAD, 204, 304: the body was not sent
                exchange.bytes_sent = 0
            exchange.bytes_received = self.received
            exchange.end(complete)

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
                self.conn.close()

    def _app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or self.disconnected:
            if self.disconnected:
                logger.debug("Exception in ASGI application after the client left", exc_info=exc)
            if self.response is not COMPLETE:
                self.conn.close()
            return
        logger.error("Exception in ASGI application\n", exc_info=exc)
        if not self.head_written():
            self.respond_error(500, "Internal Server Error")
        elif self.response is not COMPLETE:
            self.conn.close()

    def respond_error(self, status: int, text: str) -> None:
        """A plain-text response in place of the app's (500, 503)."""
        conn = self.conn
        self.keep_alive = False
        self.status = status
        self.response = COMPLETE
        self.wake()
        conn.output.write(error_response(status, conn.context.default_headers, text))
        if self.exchange is not None:
            self.exchange.bytes_sent = len(text)
            self.end_exchange(True, status)
        conn.response_complete(self)

    # --- ASGI receive -----------------------------------------------------------------
    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if self.response is START and not self.disconnected:
                self.conn.output.write(CONTINUE)
        if self._over():
            return {"type": "http.disconnect"}
        if self.delivered:
            # the whole body went to the app: what is left to report is the end
            await self._wait()
            return {"type": "http.disconnect"}
        if not self.body and self.more_body:
            conn = self.conn
            conn.wait_for_body()
            try:
                await self._wait()
            finally:
                conn.body_waited()
            if self._over():
                return {"type": "http.disconnect"}
        body = b"".join(self.body)  # a single bytes chunk is returned as is
        self.body.clear()
        self.buffered = 0
        more_body = self.more_body
        self.delivered = not more_body
        self.conn.body_taken()
        return {"type": "http.request", "body": body, "more_body": more_body}

    def _over(self) -> bool:
        """Nothing more to receive: the client left, or the response is complete."""
        return self.disconnected or self.response is COMPLETE

    async def _wait(self) -> None:
        waiter = self.waiter = self.conn.loop.create_future()
        await waiter

    # --- ASGI send ----------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_flow.paused and not self.disconnected:
            await conn.write_flow.drain()
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
            if self.expect_continue and self.more_body:
                # the client still waits for 100 Continue: it may send the body
                # or not, so this must be the connection's last response
                # (RFC 9110 10.1.1)
                self.keep_alive = False
            self.expect_continue = False
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
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        output = conn.output
        exchange = self.exchange
        if exchange is not None:
            exchange.bytes_sent += len(body)
        if response is STARTED:
            # the head, with the framing decided (ketch-core's HTTP/1 writer)
            size = len(body)
            head, framing, remaining, self.keep_alive = response_head(
                self.status,
                self._headers,
                conn.context.default_headers,
                self.scope["http_version"] == "1.0",  # http_10
                self.head_only,
                self.keep_alive,
                # the whole body: its length is known (unless trailers need chunks)
                None if more_body or self.trailers else size,
            )
            self.framing = framing
            self.response = STREAMING
            if framing is LENGTH and remaining == size and not more_body:
                self.remaining = 0  # (_frame(), inlined for the usual one-message body)
                data = body if type(body) is bytes else bytes(body)
            else:
                self.remaining = remaining
                data = self._frame(body, more_body)
            if more_body:
                output.write_soon(head)
                if data:
                    output.write_soon(data)
            elif len(data) <= SMALL_BODY:
                output.write(head + data)  # one write: one syscall, one packet
            else:
                output.write_pair(head, data)  # one syscall (writev), no copy
        else:
            if response is TRAILERS_DUE:
                raise RuntimeError(
                    "Expected ASGI message 'http.response.trailers', but got 'http.response.body'."
                )
            data = self._frame(body, more_body)
            if more_body:
                if data:
                    output.write_soon(data)
            else:
                output.flush(data)
        if not more_body:
            if self.trailers is not None:
                self.response = TRAILERS_DUE
                return
            # (self._complete(), inlined: this runs for every response)
            self.response = COMPLETE
            self.wake()
            short = self.framing is LENGTH and self.remaining
            if short:
                logger.error("Response content shorter than Content-Length")
                self.keep_alive = False
            if exchange is not None:
                self.end_exchange(not short)
            conn.response_complete(self)

    def _complete(self) -> None:
        self.response = COMPLETE
        self.wake()
        short = self.framing is LENGTH and self.remaining
        if short:
            logger.error("Response content shorter than Content-Length")
            self.keep_alive = False
        if self.exchange is not None:
            self.end_exchange(not short)
        self.conn.response_complete(self)

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
            pass  # the final head is on the wire: too late for hints (the spec lets us ignore it)
        else:
            expected = TRAILERS if response is TRAILERS_DUE else "http.response.body"
            raise RuntimeError(f"Expected ASGI message {expected!r}, but got {kind!r}.")

    def _early_hint(self, message: Message) -> None:
        """103 Early Hints before the final head; never to HTTP/1.0 (RFC 9110 15.2)."""
        data = early_hints(message.get("links", ()))
        if data and self.scope["http_version"] != "1.0":
            self.conn.output.write(data)

    def _expect_trailers(self, wanted: object) -> None:
        """The app sends trailers after its body (`wanted`): on the wire when the
        response is chunked and the client said `TE: trailers`; dropped otherwise."""
        if not wanted:
            return
        self.trailers = (
            not self.head_only
            and self.scope["http_version"] != "1.0"
            and accepts_trailers(self.scope["headers"])
        )
        self.trailer_fields: Headers = []

    def _send_trailers(self, message: Message) -> None:
        self.trailer_fields += checked_headers(message.get("headers", ()))
        if message.get("more_trailers", False):
            return
        if self.trailers and self.framing is CHUNKED:
            self.conn.output.flush(last_chunk(self.trailer_fields))
        self._complete()

    async def _pathsend(self, message: Message) -> None:
        """The response body is a file the app names; written after the head
        (a small file in the same write, a larger one by `send_file()`)."""
        conn = self.conn
        path = message.get("path")
        file, size = open_path(path)
        try:
            head = self._head(size)
            count = self.remaining if self.framing is LENGTH else 0
            if count > size:
                raise RuntimeError(
                    f"http.response.pathsend: {path} has {size} bytes, "
                    f"fewer than the response's Content-Length ({count})"
                )
            self.response = STREAMING
            if count <= SMALL_FILE:
                data = os.pread(file.fileno(), count, 0) if count else b""
                if data:
                    conn.output.write_pair(head, data)
                else:
                    conn.output.write(head)
                sent = len(data)
            else:
                conn.output.write(head)
                try:
                    sent = await conn.send_file(file, 0, count)
                except ConnectionError:
                    self.on_disconnect()
                    raise ClientDisconnected("the client is gone") from None
        finally:
            file.close()
        self.remaining -= sent
        if self.exchange is not None:
            self.exchange.bytes_sent += sent
        if sent < count:
            logger.error(
                "File %s shrank while it was sent (%d of %d bytes): closing the connection",
                path,
                sent,
                count,
            )
            self.keep_alive = False
            self.response = COMPLETE
            self.wake()
            if self.exchange is not None:
                self.end_exchange(False)
            conn.close()
        elif self.trailers is not None:
            self.response = TRAILERS_DUE
        else:
            self._complete()

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        framing = self.framing
        if framing is LENGTH:
            size = len(body)
            if size > self.remaining:
                self.conn.close()
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= size
            return body if type(body) is bytes else bytes(body)
        if framing is CHUNKED:
            last = not more_body and not self.trailers  # trailers end the body themselves
            if body:
                chunk = b"%x\r\n%s\r\n" % (len(body), body)
                return chunk + LAST_CHUNK if last else chunk
            return LAST_CHUNK if last else b""
        if framing is UNTIL_CLOSE:
            return bytes(body)
        return b""

    def _head(self, final_size: int | None) -> bytes:
        """The response head of a file (`final_size`: its size, the Content-Length
        unless the app gave one); a body's head is built inline in send()."""
        data, self.framing, self.remaining, self.keep_alive = response_head(
            self.status,
            self._headers,
            self.conn.context.default_headers,
            self.scope["http_version"] == "1.0",  # http_10
            self.head_only,
            self.keep_alive,
            final_size,
        )
        return data
