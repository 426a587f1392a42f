"""One HTTP/2 stream: a request and its ASGI `receive`/`send`.

The stream talks to its connection through a few methods (`send_head`,
`send_data`, `end`, `take_body`, `wait`, `finished`, `reset`); the connection
owns h2 and decides what may still be written. The response's progress is
`Response`: START (waiting for `http.response.start`), STARTED (start
received; the HEADERS frame goes out with the first body message, so that a
whole small response is one HEADERS and one DATA frame), STREAMING (HEADERS
sent, more to come), TRAILERS (the body is sent; the app said it sends
trailers, and they are due), COMPLETE.

The ASGI extensions (docs/asgi-extensions.md): a file of
`http.response.pathsend` goes as DATA frames read block by block, each when
the client's window takes it; trailers as a last HEADERS frame when the
request said `te: trailers`; early hints as 103 HEADERS frames before the
response's.

Flow control both ways: the request body is acknowledged to the client
(WINDOW_UPDATE) only as the app takes it, so a slow app holds the client to
the stream's window; the response body waits for the client's window, so a
slow client pauses the app's `send`.
"""

from __future__ import annotations

import asyncio
import enum
import http
import logging
import os
import re
from typing import TYPE_CHECKING, Any, Final

from ketch.core.api import (
    EARLY_HINT,
    PATHSEND,
    TRAILERS,
    ASGI3Application,
    ClientDisconnected,
    Exchange,
    Headers,
    Message,
    accepts_trailers,
    checked_headers,
    open_path,
)
from ketch.h2.request import CONNECTION_SPECIFIC

if TYPE_CHECKING:
    from ketch.h2.connection import HTTP2Connection

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
# A file of http.response.pathsend is read and sent this much at a time.
FILE_BLOCK: Final = 256 * 1024

STATUS: Final[dict[int, bytes]] = {status.value: b"%d" % status.value for status in http.HTTPStatus}
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")


class Stream:
    """One request on an HTTP/2 connection."""

    __slots__ = (
        "_headers",
        "body",
        "body_due",
        "buffered",
        "conn",
        "delivered",
        "disconnected",
        "done",
        "ended",
        "exchange",
        "expect_continue",
        "head_only",
        "id",
        "more_body",
        "received",
        "remaining",
        "response",
        "scope",
        "started",
        "status",
        "task",
        "trailer_fields",
        "trailers",
        "unsent",
        "unsent_end",
        "waiter",
        "window_due",
        "window_waiter",
    )

    def __init__(self, conn: HTTP2Connection, stream_id: int, scope: Any, ended: bool) -> None:
        self.conn = conn
        self.id = stream_id
        self.scope = scope
        self.body: list[bytes] = []  # request body chunks not yet received by the app
        self.buffered = 0  # their size, not yet acknowledged to the client
        self.more_body = not ended  # the request body is not complete yet
        self.received = 0  # request body bytes, for --limit-request-body
        self.delivered = False  # the app has received the last body message
        self.disconnected = False  # reset (by either side) or the connection is gone
        self.started = False  # the app's Task has begun running
        self.ended = False  # END_STREAM has gone out with the response's HEADERS
        self.done = False  # the response is complete on our side (some may wait in `unsent`)
        self.expect_continue = False  # the client waits for 100 Continue before the body
        # response bytes the client's window has not taken yet (the app waits)
        self.unsent = b""
        self.unsent_end = False  # END_STREAM goes with the last of them
        self.window_waiter: asyncio.Future[None] | None = None
        # loop times of the deadlines: the app waits for body bytes, for the window
        self.body_due = 0.0
        self.window_due = 0.0
        self.response = START
        self.status = 0
        self.remaining = -1  # bytes still due under the app's Content-Length; -1: none given
        self.head_only = scope["method"] == "HEAD"
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
        waiter = self.window_waiter
        if waiter is not None:
            self.window_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def end_exchange(self, complete: bool, status: int = 0) -> None:
        """Report the exchange (once): its response went out whole, or not.
        `status`: ketch's answer in place of the app's."""
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            if status:
                exchange.status = status
            exchange.bytes_received = self.received
            exchange.end(complete)

    # --- running the app --------------------------------------------------------------
    async def run_asgi(self, app: ASGI3Application) -> None:
        self.started = True
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._app_failed(exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return
        finally:
            task = self.task
            if task is not None:
                self.conn.context.tasks.discard(task)
            if self.disconnected:
                self.conn.orphans.discard(self)
        if self.response is not COMPLETE and not self.disconnected:
            if self.response is START:
                logger.error("ASGI callable returned without starting response.")
                self.respond_error(500)
            else:
                logger.error("ASGI callable returned without completing response.")
                self.conn.reset(self, INTERNAL_ERROR)

    def _app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or self.disconnected:
            if self.disconnected:
                logger.debug("Exception in ASGI application after the client left", exc_info=exc)
            if self.response is not COMPLETE:
                self.conn.reset(self, CANCEL)
            return
        logger.error("Exception in ASGI application\n", exc_info=exc)
        if not self.head_written():
            self.respond_error(500)
        elif self.response is not COMPLETE:
            self.conn.reset(self, INTERNAL_ERROR)

    def respond_error(self, status: int) -> None:
        """A plain-text response in place of the app's (413, 431, 500, 503)."""
        if self.disconnected or self.head_written():
            return
        body = http.HTTPStatus(status).phrase.encode("ascii")
        self.status = status
        self.response = COMPLETE
        self.wake()
        if self.exchange is not None:
            self.exchange.bytes_sent = 0 if self.head_only else len(body)
            self.end_exchange(True, status)
        conn = self.conn
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        if self.head_only:
            conn.send_head(self, STATUS[status], headers, True)
        else:
            conn.send_head(self, STATUS[status], headers, False)
            conn.write_data(self, body, True)
        conn.finished(self)

    # --- ASGI receive -----------------------------------------------------------------
    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if self.response is START and not self.disconnected:
                self.conn.send_informational(self, b"100")
        if self._over():
            return {"type": "http.disconnect"}
        if self.delivered:
            # the whole body went to the app: what is left to report is the end
            await self._wait()
            return {"type": "http.disconnect"}
        if not self.body and self.more_body:
            conn = self.conn
            conn.waiting_for_body(self)
            try:
                await self._wait()
            finally:
                conn.body_waited(self)
            if self._over():
                return {"type": "http.disconnect"}
        body = b"".join(self.body)  # a single bytes chunk is returned as is
        self.body.clear()
        more_body = self.more_body
        self.delivered = not more_body
        if self.buffered:
            self.conn.take_body(self, self.buffered)
            self.buffered = 0
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
        await self._body(message.get("body", b""), message.get("more_body", False))

    async def _body(self, body: bytes, more_body: bool) -> None:
        conn = self.conn
        # trailers on the wire end the stream themselves
        end = not more_body and not self.trailers
        if self.response is STARTED:
            self._send_head(body, more_body, end)
            self.response = STREAMING
        if self.ended:
            pass  # no body goes out (HEAD, 204, 304): the app's is dropped
        elif self.remaining >= 0 and len(body) > self.remaining:
            conn.reset(self, INTERNAL_ERROR)
            raise RuntimeError("Response content longer than Content-Length")
        elif body:
            if self.remaining > 0:
                self.remaining -= len(body)
            if self.exchange is not None:
                self.exchange.bytes_sent += len(body)
            await conn.send_data(self, body, end)
        elif end:
            conn.end(self)
        if self.disconnected:  # reset while send_data() waited for the client's window
            raise ClientDisconnected("the client is gone")
        if not more_body:
            if self.remaining > 0:
                logger.error("Response content shorter than Content-Length")
                conn.reset(self, INTERNAL_ERROR)
                return
            if self.trailers is not None:
                self.response = TRAILERS_DUE
                return
            self._complete()

    def _complete(self) -> None:
        self.response = COMPLETE
        self.wake()
        if self.exchange is not None:
            self.end_exchange(True)
        self.conn.finished(self)

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
            pass  # the final HEADERS are out: too late for hints (the spec lets us ignore it)
        else:
            expected = TRAILERS if response is TRAILERS_DUE else "http.response.body"
            raise RuntimeError(f"Expected ASGI message {expected!r}, but got {kind!r}.")

    def _early_hint(self, message: Message) -> None:
        links = []
        for link in message.get("links", ()):
            if not isinstance(link, bytes | bytearray | memoryview):
                raise RuntimeError(f"Early hint links must be byte strings, got {link!r}")
            links.append((b"link", bytes(link).strip()))
        if links:
            self.conn.send_informational(self, b"103", checked_headers(links))

    def _expect_trailers(self, wanted: object) -> None:
        """The app sends trailers after its body (`wanted`): on the wire when the
        request said `te: trailers`; dropped otherwise."""
        if not wanted:
            return
        self.trailers = not self.head_only and accepts_trailers(self.scope["headers"])
        self.trailer_fields: Headers = []

    def _send_trailers(self, message: Message) -> None:
        self.trailer_fields += checked_headers(message.get("headers", ()), CONNECTION_SPECIFIC)
        if message.get("more_trailers", False):
            return
        if self.trailers and not self.ended:
            self.conn.send_trailers(self, self.trailer_fields)
        self._complete()

    async def _pathsend(self, message: Message) -> None:
        """The response body is a file the app names, read and sent block by
        block, each when the client's window takes it."""
        path = message.get("path")
        file, size = open_path(path)
        try:
            length = size
            for name, value in self._headers:
                if name.lower() == b"content-length" and _CONTENT_LENGTH.fullmatch(value):
                    length = int(value)
            if length > size:
                raise RuntimeError(
                    f"http.response.pathsend: {path} has {size} bytes, "
                    f"fewer than the response's Content-Length ({length})"
                )
            if length == size and not any(
                name.lower() == b"content-length" for name, _ in self._headers
            ):
                self._headers = [*self._headers, (b"content-length", b"%d" % size)]
            status = self.status
            if self.head_only or status < 200 or status == 204 or status == 304:
                await self._body(b"", False)  # the head only
                return
            fd = file.fileno()
            position = 0
            while True:
                want = min(FILE_BLOCK, length - position)
                block = os.pread(fd, want, position) if want else b""
                position += len(block)
                if len(block) < want:
                    logger.error(
                        "File %s shrank while it was sent (%d of %d bytes): resetting the stream",
                        path,
                        position,
                        length,
                    )
                    self.conn.reset(self, INTERNAL_ERROR)
                    return
                last = position >= length
                await self._body(block, not last)
                if last:
                    return
        finally:
            file.close()

    def _send_head(self, body: bytes, more_body: bool, end: bool) -> None:
        """The response's HEADERS frame, with END_STREAM when no body (and no
        trailers) follows."""
        status = self.status
        value = STATUS.get(status)
        if value is None:
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise RuntimeError(f"Invalid HTTP status code {status!r} in response")
            value = b"%d" % status
        headers = checked_headers(self._headers, CONNECTION_SPECIFIC)
        no_body = status < 200 or status == 204 or status == 304
        length = -1
        for name, header_value in headers:
            if name == b"content-length":
                if _CONTENT_LENGTH.fullmatch(header_value) is None:
                    raise RuntimeError(f"Invalid Content-Length header: {header_value!r}")
                if length >= 0 and int(header_value) != length:
                    raise RuntimeError("Conflicting Content-Length headers")
                length = int(header_value)
        if length < 0 and not more_body and not no_body:
            # the whole body is known: its length (for HEAD, the length a GET would get)
            headers.append((b"content-length", b"%d" % len(body)))
        elif length >= 0 and not no_body and not self.head_only:
            self.remaining = length
        ended = self.ended = no_body or self.head_only or (not body and end)
        self.conn.send_head(self, value, headers, ended)


# RST_STREAM error codes (RFC 9113 7)
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
ENHANCE_YOUR_CALM: Final = 0xB
