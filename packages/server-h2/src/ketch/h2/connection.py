"""One HTTP/2 connection on h2: streams in, ASGI apps run, responses out.

h2 keeps the protocol's state (frames, HPACK, stream states, flow-control
windows); this module decides what happens: which streams are served, what
each stream's app receives, when to refuse, reset or close. `state` says what
the connection may still do:

- OPEN: serving.
- DRAINING: a GOAWAY went out (the server stops, or the client sent its own):
  the streams already opened are finished, new ones refused; the connection
  closes when the last one is done.
- LINGER: everything is written and our side is closed; what still arrives is
  dropped until the client closes, or the deadline.
- CLOSED.

A graceful stop sends two GOAWAY frames (RFC 9113 6.8): the first announces
the stop without naming a last stream, with a PING; once the PING's answer
shows that the client has seen it (or after GOAWAY_GRACE seconds), the
second names the last stream served. Streams opened in between are served,
so no request is lost to the race. h2 would close its state at the first
GOAWAY either way, so ketch writes its GOAWAY frames itself, and the guard
(`ketch.h2.guard`) takes the client's out of what h2 parses.

One deadline at a time for the whole connection (`deadline`, the earliest
of): idle with no stream (`--timeout-keep-alive`: GOAWAY and close), a header
block arriving (`--timeout-request-header`), a stream's app waiting for body
bytes (`--timeout-request-body`) or for the client's flow-control window
(`--timeout-write`): that stream is reset; a send buffer the client does not
read (`--timeout-write`: the connection is aborted), the two GOAWAYs of a
graceful stop, the lingering close.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import struct
from collections.abc import Callable
from typing import Final, cast

from hpack import HPACKError

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
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
from h2.exceptions import DenialOfServiceError, ProtocolError
from h2.settings import SettingCodes, Settings
from ketch.core.api import (
    EARLY_HINT,
    PATHSEND,
    TRAILERS,
    ConnectionInfo,
    Extensions,
    ReadFlow,
    ServerContext,
    WriteFlow,
    half_close,
    http_scope,
    scope_extensions,
)
from ketch.h2.encoder import HeaderEncoder
from ketch.h2.guard import FrameGuard
from ketch.h2.request import read_request
from ketch.h2.stream import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    Stream,
)

logger = logging.getLogger("ketch.error")


class State(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"
    LINGER = "linger"
    CLOSED = "closed"


OPEN: Final = State.OPEN
DRAINING: Final = State.DRAINING
LINGER: Final = State.LINGER
CLOSED: Final = State.CLOSED

# The ASGI extensions HTTP/2 implements (and `tls` on a TLS connection)
EXTENSIONS = (PATHSEND, TRAILERS, EARLY_HINT)
# A stream's flow-control window for request bodies (the protocol's default):
# at most this much of each stream's body waits in memory for its app.
STREAM_WINDOW: Final = 65535
# After the first GOAWAY of a graceful stop, the second follows once the
# client answered our PING, or after this many seconds.
GOAWAY_GRACE: Final = 1.0
LINGER_SECONDS: Final = 2.0
# DATA given to h2 is written at the end of the loop turn, or at once past this
# much (then the transport says when its buffer is full).
FLUSH_AT: Final = 64 * 1024
# the highest stream identifier: the first GOAWAY of a graceful stop names it
ANY_STREAM: Final = 2**31 - 1
# reasons to pause reading (ReadFlow bits)
WRITE_BACKLOG: Final = 1  # the client does not read what we write

_GOAWAY = struct.Struct("!I")


def goaway_frame(last_stream_id: int, error_code: int) -> bytes:
    """A GOAWAY frame without debug data (RFC 9113 6.8)."""
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + struct.pack(
        "!II", last_stream_id & ANY_STREAM, error_code
    )


class _LocalSettings(Settings):
    """Our settings, as h2 sends them, except that h2 lets every stream open:
    ketch refuses the streams beyond MAX_CONCURRENT_STREAMS itself, with
    REFUSED_STREAM for the client to retry (RFC 9113 5.1.2), where h2 would
    end the whole connection."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2**32

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _H2Connection(H2Connection):
    """h2's connection state, remembering fewer closed streams: h2 keeps how each
    stream ended (to answer a late frame on a reset one with RST_STREAM rather
    than end the connection) for the last 65,536 streams, about 9 MB on a
    long-lived connection; frames come late by a round trip at most."""

    def __init__(self, config: H2Configuration, remembered: int) -> None:
        self.MAX_CLOSED_STREAMS = remembered
        super().__init__(config)


def _h2_config() -> H2Configuration:
    return H2Configuration(
        client_side=False,
        header_encoding=None,
        # requests are checked by ketch.h2.request, a malformed one as a stream
        # error (h2 would end the connection); responses by ketch.core's checked_headers()
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


class HTTP2Connection(asyncio.Protocol):
    """One HTTP/2 connection (see the module)."""

    __slots__ = (
        "_flush_handle",
        "_ping",
        "_unflushed",
        "blocked",
        "client_done",
        "context",
        "deadline",
        "extensions",
        "goaway_since",
        "guard",
        "h2",
        "idle_since",
        "info",
        "last_stream_id",
        "loop",
        "max_streams",
        "orphans",
        "read_flow",
        "settings",
        "state",
        "streams",
        "timed",
        "transport",
        "write_due",
        "write_flow",
    )

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.loop = context.loop
        settings = self.settings = context.settings
        self.max_streams = settings.http2.max_concurrent_streams
        self.state = OPEN
        self.streams: dict[int, Stream] = {}
        self.blocked: dict[int, Stream] = {}  # streams whose data waits for the client's window
        self.timed: set[Stream] = set()  # streams with a deadline (body or window wait)
        self.orphans: set[Stream] = set()  # reset streams whose app still runs
        self.deadline = 0.0
        self.idle_since = 0.0  # when the last stream ended; 0.0 while streams are open
        self.goaway_since = 0.0  # when the first GOAWAY of a graceful stop went out
        self.last_stream_id = ANY_STREAM  # streams above this one are refused (after a GOAWAY)
        self.client_done = False  # the client sent GOAWAY: it opens no more streams
        self._ping = b""  # the PING of a graceful stop, until its answer
        self._flush_handle: asyncio.Handle | None = None
        self._unflushed = 0  # DATA bytes given to h2 since the last flush
        self.write_flow = WriteFlow()
        self.write_due = 0.0  # the send buffer is full: the client must read by then
        # an encoded header block beyond twice the header-list limit ends the connection
        hard_limit = 2 * settings.limit_request_header_size
        self.guard = FrameGuard(hard_limit, context.now)
        h2 = self.h2 = _H2Connection(_h2_config(), max(1024, 4 * self.max_streams))
        h2.local_settings = _LocalSettings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.limit_request_header_size,
            },
        )
        h2.encoder = HeaderEncoder()  # type: ignore[assignment]
        # A header list up to the limit gets the stream a 431; a bigger one
        # (an HPACK bomb) is not even decoded: GOAWAY ENHANCE_YOUR_CALM.
        h2.decoder.max_header_list_size = hard_limit

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.read_flow = ReadFlow(self.transport)
        context = self.context
        self.info: ConnectionInfo = context.connection_info(transport)
        self.extensions: Extensions = scope_extensions(self.info, EXTENSIONS)
        context.connections.add(self)
        h2 = self.h2
        h2.initiate_connection()
        # Every stream may fill its window without stalling the others: the
        # connection's window is the sum of theirs.
        increment = min(self.max_streams * STREAM_WINDOW, ANY_STREAM) - STREAM_WINDOW
        if increment > 0:
            h2.increment_flow_control_window(increment)
        self.idle_since = context.now
        self._reschedule()
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self._ended():
            return
        guard = self.guard
        now = self.context.now
        data = guard.feed(data, now)
        if guard.flood:
            self._calm_down()
            return
        try:
            events = self.h2.receive_data(data) if data else []
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        for event in events:
            if self._ended():  # (an earlier event ended the connection)
                return
            kind = event.__class__
            if kind is RequestReceived:
                self._on_request(cast(RequestReceived, event))
            elif kind is StreamEnded:
                stream = self.streams.get(cast(StreamEnded, event).stream_id)
                if stream is not None:
                    stream.more_body = False
                    stream.wake()
            elif kind is DataReceived:
                self._on_data(cast(DataReceived, event))
            elif kind is WindowUpdated:
                if self.blocked:
                    self._push_blocked(cast(WindowUpdated, event).stream_id)
            elif kind is StreamReset:
                self._on_reset(cast(StreamReset, event))
            elif kind is RemoteSettingsChanged:
                if self.blocked:  # the initial window may have grown
                    self._push_blocked(0)
            elif kind is PingAckReceived:
                if self._ping and cast(PingAckReceived, event).ping_data == self._ping:
                    self._second_goaway()
            elif kind is TrailersReceived:
                # not part of ASGI's http.request (the body ends with StreamEnded)
                # but checked: pseudo-header fields make them malformed
                trailers = cast(TrailersReceived, event)
                if any(name[:1] == b":" for name, _ in trailers.headers):
                    stream = self.streams.get(trailers.stream_id)
                    if stream is not None:
                        self.reset(stream, PROTOCOL_ERROR)
        if guard.goaways:
            self._on_client_goaway()
        if self.guard.flood:  # refused streams spent the budget
            self._calm_down()
            return
        if guard.block_since:
            self._reschedule()
        self.flush()

    def eof_received(self) -> bool | None:
        # The client closed its side: like HTTP/1.1, the client is gone.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.deadline = 0.0
        self.context.connections.discard(self)
        self.write_flow.connection_lost()
        self._disconnect_all()

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
        now = self.context.now
        state = self.state
        self.deadline = 0.0
        if state is LINGER:
            self.abort()
            return
        if self.write_due and now >= self.write_due:
            # the client reads none of a full send buffer: a close would wait for it forever
            self.context.error_logger.info(
                "Closing HTTP/2 connection from %s: write timeout", _peer(self.info)
            )
            self.abort()
            return
        if (
            self.guard.block_since
            and now >= self.guard.block_since + self.settings.timeout_request_header
        ):
            self.context.error_logger.info(
                "Closing HTTP/2 connection from %s: request header timeout", _peer(self.info)
            )
            self._close_with(ENHANCE_YOUR_CALM)
            return
        if self._ping and now >= self.goaway_since + GOAWAY_GRACE:
            self._second_goaway()
        for stream in list(self.timed):
            if stream.body_due and now >= stream.body_due:
                self.context.error_logger.info(
                    "Resetting HTTP/2 stream from %s: request body timeout", _peer(self.info)
                )
                self.reset(stream, CANCEL)
            elif stream.window_due and now >= stream.window_due:
                self.context.error_logger.info(
                    "Resetting HTTP/2 stream from %s: the client opens no window for the response",
                    _peer(self.info),
                )
                self.reset(stream, CANCEL)
        if not self.streams and not self._ended():
            if self.state is DRAINING and not self._ping:
                self._finish()
            elif self.idle_since and now >= self.idle_since + self.settings.timeout_keep_alive:
                self._close_with(NO_ERROR)
        self.flush()
        self._reschedule()

    def shutdown(self) -> None:
        """The server stops: announce it (the first GOAWAY, with a PING to know
        when the client has seen it), finish the streams, then close."""
        if self.state is not OPEN:
            return
        self.state = DRAINING
        self._ping = os.urandom(8)
        self.goaway_since = self.context.now
        self.flush()
        self._write(goaway_frame(ANY_STREAM, NO_ERROR))
        self.h2.ping(self._ping)
        self.flush()
        self._reschedule()

    def abort(self) -> None:
        if self.state is not CLOSED:
            self.state = CLOSED
            self.deadline = 0.0
            self.transport.abort()

    # --- incoming streams -------------------------------------------------------------
    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        h2 = self.h2
        if stream_id > self.last_stream_id or self.client_done:
            h2.reset_stream(stream_id, REFUSED_STREAM)  # after our GOAWAY: not served
            return
        if len(self.streams) >= self.max_streams:
            h2.reset_stream(stream_id, REFUSED_STREAM)  # beyond MAX_CONCURRENT_STREAMS
            self.guard.charge(self.context.now)
            return
        head = read_request(event.headers)
        context = self.context
        if head.malformed:
            context.error_logger.info(
                "Resetting HTTP/2 stream from %s: malformed request (%s)",
                _peer(self.info),
                head.malformed,
            )
            h2.reset_stream(stream_id, PROTOCOL_ERROR)
            self.guard.charge(context.now)
            return
        settings = self.settings
        headers = head.headers
        status = 0
        if head.bad:
            status = 400
        elif (
            head.size > settings.limit_request_header_size
            or len(headers) > settings.limit_request_headers
        ):
            status = 431
        scope = http_scope(
            context, self.info, head.method, "2", head.target, headers, self.extensions
        )
        stream = Stream(self, stream_id, scope, event.stream_ended is not None)
        streams = self.streams
        if not streams:
            self.idle_since = 0.0
            if self.deadline:
                self._reschedule()
        streams[stream_id] = stream
        observer = context.observer
        if observer is not None:  # the access log or metrics: the exchange starts
            stream.exchange = observer.begin(scope)
        if status:
            context.error_logger.warning(
                "%d answered to HTTP/2 stream from %s", status, _peer(self.info)
            )
            self._refuse(stream, status)
            return
        limit = settings.limit_request_body
        if limit is not None and head.content_length is not None and head.content_length > limit:
            self._refuse(stream, 413)
            return
        stream.expect_continue = head.expect_continue
        if settings.limit_concurrency is not None and context.over_concurrency_limit():
            self._refuse(stream, 503)
            return
        stream.task = context.create_task(stream.run_asgi(context.app))

    def _refuse(self, stream: Stream, status: int) -> None:
        """ketch answers the stream's request itself (400, 413, 431, 503)."""
        metrics = self.context.metrics
        if metrics is not None:
            metrics.rejected(status)
        stream.respond_error(status)

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        data = event.data
        size = len(data)
        if stream is None or stream.disconnected or stream.done:
            # nobody reads it: give the window back at once
            self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
            return
        padding = event.flow_controlled_length - size
        if padding:
            self.h2.acknowledge_received_data(padding, stream_id)
        received = stream.received = stream.received + size
        limit = self.settings.limit_request_body
        if limit is not None and received > limit:
            self.h2.acknowledge_received_data(size, stream_id)
            self.context.error_logger.warning(
                "413 answered to HTTP/2 stream from %s: request body too large",
                _peer(self.info),
            )
            if stream.head_written():
                stream.on_disconnect()
                self.reset(stream, CANCEL)
            else:
                self._refuse(stream, 413)  # and the client is told to stop sending
                stream.on_disconnect()
            return
        if size:
            stream.body.append(data)
            stream.buffered += size
            stream.wake()

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is None:
            return
        self._forget(stream)
        stream.on_disconnect()
        if not self._cancel_unstarted(stream) and stream.task is not None:
            self.orphans.add(stream)  # until its app returns (cancelled on a flood)
        self._stream_gone()

    def _on_client_goaway(self) -> None:
        payloads = self.guard.goaways
        error_code = NO_ERROR
        for payload in payloads:
            if len(payload) >= 8:
                error_code = _GOAWAY.unpack_from(payload, 4)[0]
        payloads.clear()
        self.client_done = True
        if error_code != NO_ERROR:
            logger.debug("HTTP/2 client sent GOAWAY with error %d", error_code)
            self._close_with(NO_ERROR)
        elif not self.streams:
            self._close_with(NO_ERROR)

    # --- what the streams call ------------------------------------------------------------
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
        self._flush_soon()

    def send_informational(
        self, stream: Stream, status: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """A 1xx response before the final one (100 Continue, 103 Early Hints)."""
        self.h2.send_headers(stream.id, [(b":status", status), *(headers or ())])
        self._flush_soon()

    def send_trailers(self, stream: Stream, headers: list[tuple[bytes, bytes]]) -> None:
        """The trailer fields, a HEADERS frame that ends the stream (after the body,
        which has all gone out: send_data() waits for the client's window)."""
        self.h2.send_headers(stream.id, headers, end_stream=True)
        self._flush_soon()

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

    async def send_data(self, stream: Stream, data: bytes, end: bool) -> None:
        """`write_data()`, then wait until the client's window took it all."""
        self.write_data(stream, data, end)
        while stream.unsent and not stream.disconnected:
            stream.window_due = self.context.now + self.settings.timeout_write
            self._timed(stream)
            waiter = stream.window_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                stream.window_due = 0.0
                self._untimed(stream)

    def _push_blocked(self, stream_id: int) -> None:
        """The window opened (for one stream, or all when `stream_id` is 0)."""
        if stream_id:
            stream = self.blocked.get(stream_id)
            candidates = [stream] if stream is not None else []
        else:
            candidates = list(self.blocked.values())
        for stream in candidates:
            del self.blocked[stream.id]
            data, stream.unsent = stream.unsent, b""
            self.write_data(stream, data, stream.unsent_end)
            if not stream.unsent:
                waiter = stream.window_waiter
                stream.window_waiter = None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                if stream.done:
                    self._close_stream(stream)

    def end(self, stream: Stream) -> None:
        """End the response (after body messages that all went out)."""
        if stream.unsent:
            stream.unsent_end = True
            return
        self.h2.end_stream(stream.id)
        self._flush_soon()

    def finished(self, stream: Stream) -> None:
        """The app's response is complete (or ketch answered in its place)."""
        stream.done = True
        if not stream.unsent:
            self._close_stream(stream)

    def take_body(self, stream: Stream, size: int) -> None:
        """The app took `size` bytes of the body: the client may send as much more."""
        if not stream.disconnected:
            self.h2.acknowledge_received_data(size, stream.id)
            self._flush_soon()

    def waiting_for_body(self, stream: Stream) -> None:
        stream.body_due = self.context.now + self.settings.timeout_request_body
        self._timed(stream)

    def body_waited(self, stream: Stream) -> None:
        stream.body_due = 0.0
        self._untimed(stream)

    def reset(self, stream: Stream, error_code: int) -> None:
        """End one stream with RST_STREAM (the others go on)."""
        if self.streams.pop(stream.id, None) is None:
            stream.on_disconnect()
            return
        self._forget(stream)
        stream.on_disconnect()
        if not self._ended():
            try:
                self.h2.reset_stream(stream.id, error_code)
            except ProtocolError:
                pass  # already closed on h2's side
            self._flush_soon()
        self._stream_gone()

    # --- streams ending -------------------------------------------------------------------
    def _close_stream(self, stream: Stream) -> None:
        """The response went out whole. A client still sending the request body is
        told to stop (RST_STREAM NO_ERROR, RFC 9113 8.1)."""
        if self.streams.pop(stream.id, None) is None:
            return
        self._forget(stream)
        if stream.more_body:
            stream.on_disconnect()
            try:
                self.h2.reset_stream(stream.id, NO_ERROR)
            except ProtocolError:
                pass
            self._flush_soon()
        self._stream_gone()

    def _forget(self, stream: Stream) -> None:
        """Drop what the connection holds for a stream that is leaving."""
        self.blocked.pop(stream.id, None)
        if stream.body_due or stream.window_due:
            self.timed.discard(stream)
        if stream.buffered:  # read, never taken: the connection's window gets it back
            try:
                self.h2.acknowledge_received_data(stream.buffered, stream.id)
            except ProtocolError:
                pass
            stream.buffered = 0
            stream.body.clear()

    def _stream_gone(self) -> None:
        if self.streams:
            return
        if self.state is DRAINING and not self._ping:
            self._finish()
        elif self.client_done:
            self._close_with(NO_ERROR)
        else:
            self.idle_since = self.context.now
            self._reschedule()

    def _cancel_unstarted(self, stream: Stream) -> bool:
        """Cancel the app of a stream that is gone before it ran; True if it was."""
        task = stream.task
        if task is not None and not stream.started:
            task.cancel()
            self.context.tasks.discard(task)  # (its coroutine never runs to do it)
            return True
        return False

    # --- closing ------------------------------------------------------------------------
    def _second_goaway(self) -> None:
        """The client has seen the first GOAWAY (or had time to): name the last
        stream that will be served."""
        self._ping = b""
        self.last_stream_id = self.h2.highest_inbound_stream_id
        self.flush()
        self._write(goaway_frame(self.last_stream_id, NO_ERROR))
        if not self.streams:
            self._finish()
        else:
            self._reschedule()

    def _close_with(self, error_code: int) -> None:
        """GOAWAY now, naming the last stream served, and close once written."""
        if self._ended():
            return
        self.flush()
        self._write(goaway_frame(self.h2.highest_inbound_stream_id, error_code))
        self._disconnect_all()
        self._finish()

    def _calm_down(self) -> None:
        """The client floods: GOAWAY ENHANCE_YOUR_CALM, and every app it started
        here is cancelled."""
        if self._ended():
            return
        self.context.error_logger.warning(
            "Closing HTTP/2 connection from %s: too many frames that do no work "
            "(a flood or a rapid reset)",
            _peer(self.info),
        )
        for stream in [*self.streams.values(), *self.orphans]:
            if stream.task is not None:
                if not stream.started:
                    self.context.tasks.discard(stream.task)
                stream.task.cancel()
        self.orphans.clear()
        self._close_with(ENHANCE_YOUR_CALM)

    def _protocol_error(self, exc: ProtocolError) -> None:
        """h2 found a protocol error: send its GOAWAY and close.

        h2 queues a GOAWAY with the error's code, except for a bad preface
        (over TLS: cleartext connections reach HTTP/2 with a good one), which
        gets ketch's; and it answers a header block it cannot decode with
        PROTOCOL_ERROR, where RFC 9113 4.3 says COMPRESSION_ERROR."""
        code = int(exc.error_code)
        last_stream_id = self.h2.highest_inbound_stream_id
        data = self.h2.data_to_send()
        queued = goaway_frame(last_stream_id, code)
        if data.endswith(queued):
            data = data[: -len(queued)]
        if isinstance(exc.__cause__, HPACKError) and not isinstance(exc, DenialOfServiceError):
            code = ErrorCodes.COMPRESSION_ERROR
        logger.info(
            "Closing HTTP/2 connection from %s: %s (GOAWAY %s)",
            _peer(self.info),
            exc,
            ErrorCodes(code).name if code in ErrorCodes._value2member_map_ else code,
        )
        self._write(data + goaway_frame(last_stream_id, code))
        self._disconnect_all()
        self._finish()

    def _disconnect_all(self) -> None:
        """Every open stream is gone: its app hears http.disconnect (or never runs)."""
        streams = list(self.streams.values())
        self.streams.clear()
        self.blocked.clear()
        self.timed.clear()
        for stream in streams:
            stream.on_disconnect()
            self._cancel_unstarted(stream)

    def _finish(self) -> None:
        """Everything is written: close our side, read and drop what still comes
        for a moment (a reset could destroy the GOAWAY in the client's buffer)."""
        if self._ended():
            return
        self.flush()
        self.state = LINGER
        self.read_flow.resume_all()
        if half_close(self.transport):
            self.deadline = self.context.now + LINGER_SECONDS
        else:
            self.state = CLOSED
            self.deadline = 0.0

    # --- writing and deadlines --------------------------------------------------------------
    def _ended(self) -> bool:
        """Nothing more is read or written (LINGER or CLOSED)."""
        state = self.state
        return state is LINGER or state is CLOSED

    def _written(self, size: int) -> None:
        """`size` bytes of DATA went to h2: written with the rest of this loop
        turn's frames, or at once past FLUSH_AT, so that the transport's
        back-pressure (pause_writing) reaches an app that sends without pause."""
        unflushed = self._unflushed = self._unflushed + size
        if unflushed >= FLUSH_AT:
            self.flush()
        else:
            self._flush_soon()

    def _flush_soon(self) -> None:
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
            self._write(data)

    def _write(self, data: bytes) -> None:
        state = self.state
        if state is OPEN or state is DRAINING:
            self.transport.write(data)

    def _timed(self, stream: Stream) -> None:
        self.timed.add(stream)
        due = stream.body_due or stream.window_due
        if not self.deadline or due < self.deadline:
            self.deadline = due

    def _untimed(self, stream: Stream) -> None:
        if not stream.body_due and not stream.window_due:
            self.timed.discard(stream)

    def _reschedule(self) -> None:
        """The connection's deadline: the earliest thing it waits for."""
        if self._ended():
            return
        state = self.state
        candidates: list[float] = []
        if self.guard.block_since:
            candidates.append(self.guard.block_since + self.settings.timeout_request_header)
        if self._ping:
            candidates.append(self.goaway_since + GOAWAY_GRACE)
        if self.write_due:
            candidates.append(self.write_due)
        if not self.streams and self.idle_since and state is OPEN:
            candidates.append(self.idle_since + self.settings.timeout_keep_alive)
        for stream in self.timed:
            if stream.body_due:
                candidates.append(stream.body_due)
            if stream.window_due:
                candidates.append(stream.window_due)
        self.deadline = min(candidates) if candidates else 0.0


def _peer(info: ConnectionInfo) -> str:
    return "%s:%d" % info.client if info.client else "a UNIX socket peer"


def protocol_factory(context: ServerContext) -> Callable[[], HTTP2Connection]:
    return lambda: HTTP2Connection(context)
