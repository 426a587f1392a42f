"""What one HTTP/2 connection writes: the streams' frames, out through h2.

h2 turns what the streams send into frames; the writer writes them all at the
end of the loop turn (one `transport.write()` for every stream's frames), or
at once past FLUSH_AT bytes of DATA so that the transport's back-pressure
(`pause_writing`) reaches an app that sends without pause.

DATA goes out only within the client's flow-control windows: what a window
does not take waits in `stream.unsent`, the stream in `blocked`, until a
WINDOW_UPDATE or SETTINGS frame opens the window (`unblock()`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from h2.connection import H2Connection
from ketch.core.api import ServerContext

if TYPE_CHECKING:
    from ketch.h2.stream import Stream

# DATA given to h2 is written at the end of the loop turn, or at once past this
# much (then the transport says when its buffer is full).
FLUSH_AT: Final = 64 * 1024


class Writer:
    """The output side of one connection (see the module)."""

    __slots__ = (
        "_flush_handle",
        "_unflushed",
        "blocked",
        "context",
        "h2",
        "loop",
        "transport",
        "writable",
    )

    transport: asyncio.Transport  # given by the connection's connection_made()

    def __init__(self, h2: H2Connection, context: ServerContext) -> None:
        self.h2 = h2
        self.context = context
        self.loop = context.loop
        self.blocked: dict[int, Stream] = {}  # streams whose data waits for the client's window
        # False once nothing more is written: the connection sets it as it leaves
        # OPEN and DRAINING (our side closed, aborted, or the connection lost)
        self.writable = True
        self._flush_handle: asyncio.Handle | None = None
        self._unflushed = 0  # DATA bytes given to h2 since the last flush

    # --- what the streams send --------------------------------------------------------
    def send_head(
        self, stream: Stream, status: bytes, headers: list[tuple[bytes, bytes]], end: bool
    ) -> None:
        """The response's HEADERS frame: `:status`, the app's (checked) headers,
        and ketch's default ones (Server, Date, --header) the app did not set."""
        defaults = self.context.default_headers
        names = defaults.names
        extra = defaults.pairs
        for name, _ in headers:
            if name in names:  # the app's own Server, Date, ... replaces ketch's
                given = {n for n, _ in headers}
                extra = [pair for pair in extra if pair[0] not in given]
                break
        self.h2.send_headers(stream.id, [(b":status", status), *headers, *extra], end_stream=end)
        self.flush_soon()

    def send_informational(
        self, stream: Stream, status: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """A 1xx response before the final one (100 Continue, 103 Early Hints)."""
        self.h2.send_headers(stream.id, [(b":status", status), *(headers or ())])
        self.flush_soon()

    def send_trailers(self, stream: Stream, headers: list[tuple[bytes, bytes]]) -> None:
        """The trailer fields, a HEADERS frame that ends the stream (after the body,
        which has all gone out: send_data() waits for the client's window)."""
        self.h2.send_headers(stream.id, headers, end_stream=True)
        self.flush_soon()

    def write_data(self, stream: Stream, data: bytes, end: bool) -> None:
        """Send what the client's window takes now; the rest waits in `stream.unsent`
        and goes out as the window opens."""
        h2 = self.h2
        stream_id = stream.id
        window = h2.local_flow_control_window(stream_id)
        frame_size = h2.max_outbound_frame_size
        size = len(data)
        if size <= window and size <= frame_size:  # the usual case: one DATA frame
            h2.send_data(stream_id, data, end_stream=end)
            self._written(size)
            return
        sent = 0
        while window > 0 and sent < size:
            piece = min(window, frame_size, size - sent)
            last = sent + piece == size
            h2.send_data(stream_id, data[sent : sent + piece], end_stream=end and last)
            sent += piece
            window -= piece
        if sent < size:
            stream.unsent = data[sent:]
            stream.unsent_end = end
            self.blocked[stream_id] = stream
        self._written(sent)

    def end(self, stream: Stream) -> None:
        """End the response (after body messages that all went out)."""
        if stream.unsent:
            stream.unsent_end = True
            return
        self.h2.end_stream(stream.id)
        self.flush_soon()

    def take_body(self, stream: Stream, size: int) -> None:
        """The app took `size` bytes of the body: the client may send as much more."""
        if not stream.disconnected:
            self.h2.acknowledge_received_data(size, stream.id)
            self.flush_soon()

    def unblock(self, stream_id: int) -> list[Stream]:
        """The client's window opened (for one stream, or all when `stream_id` is
        0): send what waited for it. The streams whose data all went out are
        returned, their apps' send() woken."""
        blocked = self.blocked
        if stream_id:
            stream = blocked.get(stream_id)
            candidates = [stream] if stream is not None else []
        else:
            candidates = list(blocked.values())
        sent = []
        for stream in candidates:
            del blocked[stream.id]
            data, stream.unsent = stream.unsent, b""
            self.write_data(stream, data, stream.unsent_end)
            if not stream.unsent:
                waiter = stream.window_waiter
                stream.window_waiter = None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                sent.append(stream)
        return sent

    # --- to the transport ---------------------------------------------------------------
    def _written(self, size: int) -> None:
        """`size` bytes of DATA went to h2: written with the rest of this loop
        turn's frames, or at once past FLUSH_AT."""
        unflushed = self._unflushed = self._unflushed + size
        if unflushed >= FLUSH_AT:
            self.flush()
        else:
            self.flush_soon()

    def flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what h2 has to send (every stream's frames of this loop turn at once)."""
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()
        self._unflushed = 0
        data = self.h2.data_to_send()
        if data:
            self.write(data)

    def write(self, data: bytes) -> None:
        if self.writable:
            self.transport.write(data)
