"""One HTTP/1.1 request and its ASGI `receive`/`send`.

The cycle writes through its connection's `Output` (`write`, `write_soon`,
`write_pair`, `flush`: the write gate, closed once the connection stops
writing) and tells the connection what happens through a few methods
(`wait_for_body`, `body_waited`, `body_taken`, `response_complete`, `close`).
The response's progress is `Response`: START (waiting for
`http.response.start`), STARTED (start received; the head goes out with the
first body bytes, so a small response is one write), STREAMING (head written,
more to come), COMPLETE.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any, Final

from ketch.core.api import (
    CHUNKED,
    CONTINUE,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    ASGI3Application,
    ClientDisconnected,
    Exchange,
    Framing,
    Message,
    error_response,
    response_head,
)

if TYPE_CHECKING:
    from ketch.http.connection import HTTPConnection

logger = logging.getLogger("ketch.error")


class Response(enum.Enum):
    START = "start"
    STARTED = "started"
    STREAMING = "streaming"
    COMPLETE = "complete"


START: Final = Response.START
STARTED: Final = Response.STARTED
STREAMING: Final = Response.STREAMING
COMPLETE: Final = Response.COMPLETE

# Up to this size a response body is copied behind its head for a single
# write; a larger one is written beside the head (writev) rather than copied.
SMALL_BODY = 4096


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

    def head_written(self) -> bool:
        return self.response is STREAMING or self.response is COMPLETE

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
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got {kind!r}."
                )
            self.status = message["status"]
            self._headers = message.get("headers", ())
            self.response = STARTED
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
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {kind!r}.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        output = conn.output
        exchange = self.exchange
        if exchange is not None:
            exchange.bytes_sent += len(body)
        if response is STARTED:
            head = self._head(None if more_body else len(body))
            self.response = STREAMING
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
            data = self._frame(body, more_body)
            if more_body:
                if data:
                    output.write_soon(data)
            else:
                output.flush(data)
        if not more_body:
            self.response = COMPLETE
            self.wake()
            short = self.framing is LENGTH and self.remaining
            if short:
                logger.error("Response content shorter than Content-Length")
                self.keep_alive = False
            if exchange is not None:
                self.end_exchange(not short)
            conn.response_complete(self)

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
            if body:
                chunk = b"%x\r\n%s\r\n" % (len(body), body)
                return chunk if more_body else chunk + LAST_CHUNK
            return b"" if more_body else LAST_CHUNK
        if framing is UNTIL_CLOSE:
            return bytes(body)
        return b""

    def _head(self, final_size: int | None) -> bytes:
        """The response head. `final_size` is the body size when the first body
        message is also the last, so a Content-Length can be added."""
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
