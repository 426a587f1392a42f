"""One HTTP/2 connection on h2: streams in, ASGI apps run, responses out.

h2 keeps the protocol's state (frames, HPACK, stream states, flow-control
windows); ketch-h2 decides what happens: which streams are served, what each
stream's app receives, when to refuse, reset or close. This module is the
asyncio protocol: it hands h2's events to the streams and keeps their
bookkeeping (open, reset, finished). The rest of the connection:

- `ketch.h2.incoming`: what the client sends (a request served or refused,
  body data, resets, the client's GOAWAY);
- `ketch.h2.writer`: `Writer`, what goes out (a loop turn's frames in one
  write, DATA within the client's flow-control windows);
- `ketch.h2.lifetime`: the connection's states (`OPEN`, `DRAINING`, `LINGER`,
  `CLOSED`), its deadline, the graceful stop and the errors that close it;
- `ketch.h2.h2_setup`: h2 as ketch configures it.

The hot path stays as direct as in one module: `data_received()` calls
`incoming`'s functions per event, and the streams call the writer's methods,
which the connection holds as its own attributes (`send_head`, `write_data`,
`end`, `take_body`, `flush`, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

from h2.events import (
    DataReceived,
    PingAckReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from ketch.core.api import (
    EARLY_HINT,
    PATHSEND,
    TRAILERS,
    ConnectionInfo,
    Extensions,
    ReadFlow,
    ServerContext,
    WriteFlow,
    scope_extensions,
)
from ketch.h2 import lifetime
from ketch.h2.guard import FrameGuard
from ketch.h2.h2_setup import ANY_STREAM, new_h2, start_h2
from ketch.h2.incoming import on_client_goaway, on_data, on_request, on_reset
from ketch.h2.lifetime import CLOSED, DRAINING, LINGER, OPEN
from ketch.h2.stream import NO_ERROR, PROTOCOL_ERROR, Stream
from ketch.h2.writer import Writer

# The ASGI extensions HTTP/2 implements (and `tls` on a TLS connection)
EXTENSIONS = (PATHSEND, TRAILERS, EARLY_HINT)
# reasons to pause reading (ReadFlow bits)
WRITE_BACKLOG: Final = 1  # the client does not read what we write


class HTTP2Connection(asyncio.Protocol):
    """One HTTP/2 connection (see the module)."""

    __slots__ = (
        "client_done",
        "context",
        "deadline",
        "end",
        "extensions",
        "flush",
        "goaway_since",
        "guard",
        "h2",
        "idle_since",
        "info",
        "last_stream_id",
        "loop",
        "max_streams",
        "orphans",
        "ping",
        "read_flow",
        "send_head",
        "send_informational",
        "send_trailers",
        "settings",
        "state",
        "streams",
        "take_body",
        "timed",
        "transport",
        "write_data",
        "write_due",
        "write_flow",
        "writer",
    )

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.loop = context.loop
        settings = self.settings = context.settings
        self.max_streams = settings.http2.max_concurrent_streams
        self.state = OPEN
        self.streams: dict[int, Stream] = {}
        self.timed: set[Stream] = set()  # streams with a deadline (body or window wait)
        self.orphans: set[Stream] = set()  # reset streams whose app still runs
        self.deadline = 0.0
        self.idle_since = 0.0  # when the last stream ended; 0.0 while streams are open
        self.goaway_since = 0.0  # when the first GOAWAY of a graceful stop went out
        self.last_stream_id = ANY_STREAM  # streams above this one are refused (after a GOAWAY)
        self.client_done = False  # the client sent GOAWAY: it opens no more streams
        self.ping = b""  # the PING of a graceful stop, until its answer
        self.write_flow = WriteFlow()
        self.write_due = 0.0  # the send buffer is full: the client must read by then
        # an encoded header block beyond twice the header-list limit ends the connection
        hard_limit = 2 * settings.limit_request_header_size
        self.guard = FrameGuard(hard_limit, context.now)
        h2 = self.h2 = new_h2(self.max_streams, settings.limit_request_header_size, hard_limit)
        writer = self.writer = Writer(h2, context)
        # What the streams send goes straight to the writer: its bound methods,
        # held here, cost one call on the hot path.
        self.send_head = writer.send_head
        self.send_informational = writer.send_informational
        self.send_trailers = writer.send_trailers
        self.write_data = writer.write_data
        self.end = writer.end
        self.take_body = writer.take_body
        self.flush = writer.flush

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.writer.transport = cast(asyncio.Transport, transport)
        self.read_flow = ReadFlow(self.transport)
        context = self.context
        self.info: ConnectionInfo = context.connection_info(transport)
        self.extensions: Extensions = scope_extensions(self.info, EXTENSIONS)
        context.connections.add(self)
        start_h2(self.h2, self.max_streams)
        self.idle_since = context.now
        lifetime.reschedule(self)
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.ended():
            return
        guard = self.guard
        now = self.context.now
        data = guard.feed(data, now)
        if guard.flood:
            lifetime.calm_down(self)
            return
        try:
            events = self.h2.receive_data(data) if data else []
        except ProtocolError as exc:
            lifetime.protocol_error(self, exc)
            return
        for event in events:
            if self.ended():  # (an earlier event ended the connection)
                return
            kind = event.__class__
            if kind is RequestReceived:
                on_request(self, cast(RequestReceived, event))
            elif kind is StreamEnded:
                stream = self.streams.get(cast(StreamEnded, event).stream_id)
                if stream is not None:
                    stream.more_body = False
                    stream.wake()
            elif kind is DataReceived:
                on_data(self, cast(DataReceived, event))
            elif kind is WindowUpdated:
                if self.writer.blocked:
                    self._window_opened(cast(WindowUpdated, event).stream_id)
            elif kind is StreamReset:
                on_reset(self, cast(StreamReset, event))
            elif kind is RemoteSettingsChanged:
                if self.writer.blocked:  # the initial window may have grown
                    self._window_opened(0)
            elif kind is PingAckReceived:
                if self.ping and cast(PingAckReceived, event).ping_data == self.ping:
                    lifetime.second_goaway(self)
            elif kind is TrailersReceived:
                # not part of ASGI's http.request (the body ends with StreamEnded)
                # but checked: pseudo-header fields make them malformed
                trailers = cast(TrailersReceived, event)
                if any(name[:1] == b":" for name, _ in trailers.headers):
                    stream = self.streams.get(trailers.stream_id)
                    if stream is not None:
                        self.reset(stream, PROTOCOL_ERROR)
        if guard.goaways:
            on_client_goaway(self)
        if self.guard.flood:  # refused streams spent the budget
            lifetime.calm_down(self)
            return
        if guard.block_since:
            lifetime.reschedule(self)
        self.flush()

    def eof_received(self) -> bool | None:
        # The client closed its side: like HTTP/1.1, the client is gone.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.writer.writable = False
        self.deadline = 0.0
        self.context.connections.discard(self)
        self.write_flow.connection_lost()
        self.disconnect_all()

    def pause_writing(self) -> None:
        self.write_flow.pause()
        # PING, SETTINGS and refusals are answered: a client that does not read
        # them is not read either
        self.read_flow.pause(WRITE_BACKLOG)
        self.write_due = self.context.now + self.settings.timeout_write
        if not self.deadline or self.write_due < self.deadline:
            self.deadline = self.write_due

    def resume_writing(self) -> None:
        self.write_flow.resume()
        self.read_flow.resume(WRITE_BACKLOG)
        self.write_due = 0.0

    # --- what the server calls (ketch.core.api.Connection) -----------------------------
    def on_deadline(self) -> None:
        lifetime.on_deadline(self)

    def shutdown(self) -> None:
        """The server stops: the graceful GOAWAYs (`lifetime.shutdown()`)."""
        lifetime.shutdown(self)

    def abort(self) -> None:
        if self.state is not CLOSED:
            self.state = CLOSED
            self.writer.writable = False
            self.deadline = 0.0
            self.transport.abort()

    # --- what the streams call (besides the writer's methods, see __init__) ---------------
    async def send_data(self, stream: Stream, data: bytes, end: bool) -> None:
        """`write_data()`, then wait until the client's window took it all."""
        self.write_data(stream, data, end)
        while stream.unsent and not stream.disconnected:
            stream.window_due = self.context.now + self.settings.timeout_write
            lifetime.timed(self, stream)
            waiter = stream.window_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                stream.window_due = 0.0
                lifetime.untimed(self, stream)

    def finished(self, stream: Stream) -> None:
        """The app's response is complete (or ketch answered in its place)."""
        stream.done = True
        if not stream.unsent:
            self.close_stream(stream)

    def waiting_for_body(self, stream: Stream) -> None:
        stream.body_due = self.context.now + self.settings.timeout_request_body
        lifetime.timed(self, stream)

    def body_waited(self, stream: Stream) -> None:
        stream.body_due = 0.0
        lifetime.untimed(self, stream)

    def reset(self, stream: Stream, error_code: int) -> None:
        """End one stream with RST_STREAM (the others go on)."""
        if self.streams.pop(stream.id, None) is None:
            stream.on_disconnect()
            return
        self.forget(stream)
        stream.on_disconnect()
        if not self.ended():
            try:
                self.h2.reset_stream(stream.id, error_code)
            except ProtocolError:
                pass  # already closed on h2's side
            self.writer.flush_soon()
        self.stream_gone()

    # --- streams ending -------------------------------------------------------------------
    def _window_opened(self, stream_id: int) -> None:
        """The client's window opened (for one stream, or all when `stream_id` is 0)."""
        for stream in self.writer.unblock(stream_id):
            if stream.done:
                self.close_stream(stream)

    def close_stream(self, stream: Stream) -> None:
        """The response went out whole. A client still sending the request body is
        told to stop (RST_STREAM NO_ERROR, RFC 9113 8.1)."""
        if self.streams.pop(stream.id, None) is None:
            return
        self.forget(stream)
        if stream.more_body:
            stream.on_disconnect()
            try:
                self.h2.reset_stream(stream.id, NO_ERROR)
            except ProtocolError:
                pass
            self.writer.flush_soon()
        self.stream_gone()

    def forget(self, stream: Stream) -> None:
        """Drop what the connection holds for a stream that is leaving."""
        self.writer.blocked.pop(stream.id, None)
        if stream.body_due or stream.window_due:
            self.timed.discard(stream)
        if stream.buffered:  # read, never taken: the connection's window gets it back
            try:
                self.h2.acknowledge_received_data(stream.buffered, stream.id)
            except ProtocolError:
                pass
            stream.buffered = 0
            stream.body.clear()

    def stream_gone(self) -> None:
        if self.streams:
            return
        if self.state is DRAINING and not self.ping:
            lifetime.finish(self)
        elif self.client_done:
            lifetime.close_with(self, NO_ERROR)
        else:
            self.idle_since = self.context.now
            lifetime.reschedule(self)

    def cancel_unstarted(self, stream: Stream) -> bool:
        """Cancel the app of a stream that is gone before it ran; True if it was."""
        task = stream.task
        if task is not None and not stream.started:
            task.cancel()
            self.context.tasks.discard(task)  # (its coroutine never runs to do it)
            return True
        return False

    def disconnect_all(self) -> None:
        """Every open stream is gone: its app hears http.disconnect (or never runs)."""
        streams = list(self.streams.values())
        self.streams.clear()
        self.writer.blocked.clear()
        self.timed.clear()
        for stream in streams:
            stream.on_disconnect()
            self.cancel_unstarted(stream)

    def ended(self) -> bool:
        """Nothing more is read or written (LINGER or CLOSED)."""
        state = self.state
        return state is LINGER or state is CLOSED


def protocol_factory(context: ServerContext) -> Callable[[], HTTP2Connection]:
    return lambda: HTTP2Connection(context)
