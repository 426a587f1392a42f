"""One HTTP/1.1 request and its ASGI `receive`/`send`.

`RequestCycle` is ketch-core's `ASGICycle` (the ASGI message rules, the
response's progress START, STARTED, STREAMING, TRAILERS, COMPLETE) with the
HTTP/1 wire: it writes through its connection's `Output` (`write`,
`write_soon`, `write_pair`, `flush`: the write gate, closed once the
connection stops writing; a file of `http.response.pathsend` goes by the
connection's `send_file`) and tells the connection what happens through a
few methods (`wait_for_body`, `body_waited`, `body_taken`,
`response_complete`, `close`). The head goes out with the first body bytes,
so a small response is one write.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Final

from ketch.core.api import (
    CHUNKED,
    CONTINUE,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    STARTED,
    STREAMING,
    UNTIL_CLOSE,
    ASGICycle,
    ClientDisconnected,
    Framing,
    Headers,
    chunk,
    early_hints,
    error_response,
    last_chunk,
    response_head,
)
from ketch.core.api import (
    COMPLETE as COMPLETE,  # (the connection reads it from here)
)

if TYPE_CHECKING:
    from ketch.http.connection import HTTPConnection

# Up to this size a response body is copied behind its head for a single
# write; a larger one is written beside the head (writev) rather than copied.
SMALL_BODY: Final = 4096
# Up to this size a file of http.response.pathsend is read and written with
# its head (one system call); a larger one goes by the kernel's sendfile.
SMALL_FILE: Final = 64 * 1024


class RequestCycle(ASGICycle):
    """One request: its ASGI `receive`/`send` and the response framing."""

    __slots__ = (
        "content_length",
        "discarding",
        "file_head_data",
        "framing",
        "keep_alive",
        "upgrade_target",
    )

    conn: HTTPConnection
    abort_action = "closing the connection"

    def __init__(self, conn: HTTPConnection, scope: Any, keep_alive: bool) -> None:
        ASGICycle.__init__(self, conn, scope, True)
        self.keep_alive = keep_alive
        self.content_length: int | None = None
        self.discarding = False  # the response is done: drop the rest of the body
        self.framing: Framing = LENGTH
        self.upgrade_target: bytes | None = None  # a WebSocket request's raw target

    def respond_error(self, status: int, text: str) -> None:
        """A plain-text response in place of the app's (500, 503)."""
        conn = self.conn
        self.keep_alive = False
        self.respond_instead(status, len(text))
        conn.output.write(error_response(status, conn.context.default_headers, text))
        conn.response_complete(self)

    # --- ASGICycle's hooks --------------------------------------------------------------
    def write_continue(self) -> None:
        self.conn.output.write(CONTINUE)

    def continue_skipped(self) -> None:
        # the client may send the body or not: this must be the connection's
        # last response (RFC 9110 10.1.1)
        self.keep_alive = False

    def waiting_for_body(self) -> None:
        self.conn.wait_for_body()

    def body_waited(self) -> None:
        self.conn.body_waited()

    def body_taken(self, size: int) -> None:
        self.conn.body_taken()

    def body_dropped(self) -> bool:
        return self.framing is NO_BODY

    def abort(self, cancel: bool = False) -> None:
        self.keep_alive = False
        self.conn.close()

    def finish(self, short: bool) -> None:
        if short:
            self.keep_alive = False
        self.conn.response_complete(self)

    def write_early_hints(self, links: list[bytes]) -> None:
        self.conn.output.write(early_hints(links))

    def write_trailers(self, fields: Headers) -> None:
        if self.framing is CHUNKED:
            self.conn.output.flush(last_chunk(fields))

    def write_body(self, body: bytes, more_body: bool) -> None:
        conn = self.conn
        output = conn.output
        if self.response is STARTED:
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
                # (_frame(), inlined for the usual one-message body)
                data = body if type(body) is bytes else bytes(body)
            else:
                self.remaining = remaining if framing is LENGTH else 0
                data = self._frame(body, more_body)
            if more_body:
                output.write_soon(head)
                if data:
                    output.write_soon(data)
            elif len(data) <= SMALL_BODY:
                output.write(head + data)  # one write: one syscall, one packet
            else:
                output.write_pair(head, data)  # one syscall (writev), no copy
            return
        if more_body and self.framing is CHUNKED:
            # (_frame(), inlined for a streamed body: a call per message costs)
            if body:
                output.write_soon(b"%x\r\n%s\r\n" % (len(body), body))
            return
        data = self._frame(body, more_body)
        if more_body:
            if data:
                output.write_soon(data)
        else:
            output.flush(data)

    def file_head(self, size: int) -> int:
        data, self.framing, remaining, self.keep_alive = response_head(
            self.status,
            self._headers,
            self.conn.context.default_headers,
            self.scope["http_version"] == "1.0",  # http_10
            self.head_only,
            self.keep_alive,
            size,
        )
        self.file_head_data = data
        count = self.remaining = remaining if self.framing is LENGTH else 0
        return count

    async def write_file(self, file: io.FileIO, count: int) -> int:
        """A small file in the same write as its head, a larger one by `send_file()`."""
        conn = self.conn
        head = self.file_head_data
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
        self.remaining -= sent
        return sent

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        framing = self.framing
        if framing is LENGTH:
            size = len(body)
            if size > self.remaining:
                raise self.too_long()
            self.remaining -= size
            return body if type(body) is bytes else bytes(body)
        if framing is CHUNKED:
            data = chunk(body)  # (empty for an empty body)
            if not more_body and not self.trailers:  # trailers end the body themselves
                return data + LAST_CHUNK
            return data
        if framing is UNTIL_CLOSE:
            return bytes(body)
        return b""
