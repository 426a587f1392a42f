"""One HTTP/2 stream: a request and its ASGI `receive`/`send`.

`Stream` is ketch-core's `ASGICycle` (the ASGI message rules, the response's
progress START, STARTED, STREAMING, TRAILERS, COMPLETE) with the HTTP/2
wire. It talks to its connection through a few methods (`send_head`,
`send_data`, `end`, `take_body`, `wait`, `finished`, `reset`); the connection
owns h2 and decides what may still be written. The HEADERS frame goes out
with the first body message, so that a whole small response is one HEADERS
and one DATA frame.

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
import http
import io
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

from ketch.core.api import (
    CONTENT_LENGTH,
    STARTED,
    STREAMING,
    ASGI3Application,
    ASGICycle,
    ClientDisconnected,
    Headers,
    app_content_length,
    checked_headers,
)
from ketch.h2.request import CONNECTION_SPECIFIC

if TYPE_CHECKING:
    from ketch.h2.connection import HTTP2Connection

# A file of http.response.pathsend is read and sent this much at a time.
FILE_BLOCK: Final = 256 * 1024

STATUS: Final[dict[int, bytes]] = {status.value: b"%d" % status.value for status in http.HTTPStatus}


class Stream(ASGICycle):
    """One request on an HTTP/2 connection."""

    __slots__ = (
        "body_due",
        "done",
        "ended",
        "id",
        "started",
        "unsent",
        "unsent_end",
        "window_due",
        "window_waiter",
    )

    conn: HTTP2Connection
    trailer_drop = CONNECTION_SPECIFIC
    abort_action = "resetting the stream"

    def __init__(self, conn: HTTP2Connection, stream_id: int, scope: Any, ended: bool) -> None:
        ASGICycle.__init__(self, conn, scope, not ended)
        self.id = stream_id
        self.started = False  # the app's Task has begun running
        self.ended = False  # END_STREAM has gone out with the response's HEADERS
        self.done = False  # the response is complete on our side (some may wait in `unsent`)
        # response bytes the client's window has not taken yet (the app waits)
        self.unsent = b""
        self.unsent_end = False  # END_STREAM goes with the last of them
        self.window_waiter: asyncio.Future[None] | None = None
        # loop times of the deadlines: the app waits for body bytes, for the window
        self.body_due = 0.0
        self.window_due = 0.0
        self.remaining = -1  # bytes still due under the app's Content-Length; -1: none given

    def on_disconnect(self) -> None:
        ASGICycle.on_disconnect(self)
        waiter = self.window_waiter
        if waiter is not None:
            self.window_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def run_asgi(self, app: ASGI3Application) -> None:
        self.started = True
        try:
            await ASGICycle.run_asgi(self, app)
        finally:
            if self.disconnected:
                self.conn.orphans.discard(self)

    def respond_error(self, status: int, text: str = "") -> None:
        """A plain-text response in place of the app's (413, 431, 500, 503)."""
        if self.disconnected or self.head_written():
            return
        body = (text or http.HTTPStatus(status).phrase).encode()
        self.respond_instead(status, 0 if self.head_only else len(body))
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

    # --- ASGICycle's hooks --------------------------------------------------------------
    def write_continue(self) -> None:
        self.conn.send_informational(self, b"100")

    def waiting_for_body(self) -> None:
        self.conn.waiting_for_body(self)

    def body_waited(self) -> None:
        self.conn.body_waited(self)

    def body_taken(self, size: int) -> None:
        if size:
            self.conn.take_body(self, size)

    def body_dropped(self) -> bool:
        return self.ended

    def abort(self, cancel: bool = False) -> None:
        self.conn.reset(self, CANCEL if cancel else INTERNAL_ERROR)

    def finish(self, short: bool) -> None:
        if short:
            self.conn.reset(self, INTERNAL_ERROR)
        else:
            self.conn.finished(self)

    def write_early_hints(self, links: list[bytes]) -> None:
        self.conn.send_informational(
            self, b"103", checked_headers([(b"link", link) for link in links])
        )

    def write_trailers(self, fields: Headers) -> None:
        if not self.ended:
            self.conn.send_trailers(self, fields)

    def write_body(self, body: bytes, more_body: bool) -> Awaitable[None] | None:
        # trailers on the wire end the stream themselves
        end = not more_body and not self.trailers
        if self.response is STARTED:
            self._send_head(body, more_body, end)
            self.response = STREAMING
        if self.ended:
            return None  # no body goes out (HEAD, 204, 304): the app's is dropped
        if self.remaining >= 0 and len(body) > self.remaining:
            raise self.too_long()
        if body:
            if self.remaining > 0:
                self.remaining -= len(body)
            return self.conn.send_data(self, body, end)
        if end:
            self.conn.end(self)
        return None

    def file_head(self, size: int) -> int:
        length = size
        for name, value in self._headers:
            if name.lower() == b"content-length" and CONTENT_LENGTH.fullmatch(value):
                length = int(value)
        if length == size and not any(
            name.lower() == b"content-length" for name, _ in self._headers
        ):
            self._headers = [*self._headers, (b"content-length", b"%d" % size)]
        status = self.status
        if self.head_only or status < 200 or status == 204 or status == 304:
            return 0
        return length

    async def write_file(self, file: io.FileIO, count: int) -> int:
        """Read and sent block by block, each when the client's window takes it."""
        fd = file.fileno()
        position = 0
        while True:
            want = min(FILE_BLOCK, count - position)
            block = os.pread(fd, want, position) if want else b""
            if len(block) < want:
                return position + len(block)
            position += want
            last = position >= count
            waiting = self.write_body(block, not last)
            if waiting is not None:
                await waiting
                if self.disconnected:  # reset while the write waited
                    raise ClientDisconnected("the client is gone")
            if last:
                return position

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
                length = app_content_length(header_value, length if length >= 0 else None)
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
