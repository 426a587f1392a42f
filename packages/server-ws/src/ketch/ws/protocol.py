"""One WebSocket connection and its ASGI cycle, written once for every library.

The HTTP protocols hand an upgrade request over (`ketch.core.plugins.WebSocketUpgrade`);
from then on this protocol owns the transport. The library adapters
(`websockets_impl`, `wsproto_impl`) only check the handshake, build the 101
response, parse incoming frames and build control frames. Everything else lives
here, so that both behave identically: the ASGI state machine, the message
queue and flow control both ways, keepalive pings, closing handshakes, denial
responses, draining shutdown and logging.

Data frames without an extension are framed here (RFC 6455 5.2: a server frame
is 2 to 10 header bytes and the unmasked payload) and written without copying
the payload; frames of a negotiated extension (per-message-deflate) come from
the library.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import os
import struct
from collections import deque
from typing import Any, Final, cast

from ketch.core.api import (
    CHUNKED,
    LAST_CHUNK,
    ASGI3Application,
    ClientDisconnected,
    Exchange,
    Framing,
    Headers,
    Message,
    ReadFlow,
    ResponseHead,
    Scope,
    ServerContext,
    WebSocketScope,
    WebSocketSettings,
    WebSocketUpgrade,
    WriteFlow,
    checked_headers,
    chunk,
    client_text,
    half_close,
    path_with_query,
    response_head,
    wake,
)

logger = logging.getLogger("ketch.error")


class State(enum.Enum):
    """Where a connection is in the ASGI WebSocket spec."""

    CONNECTING = 0  # handshake request received; the app has not answered yet
    RESPONDING = 1  # the app sends a denial response (websocket.http.response.*)
    CONNECTED = 2  # accepted: messages flow both ways
    CLOSING = 3  # our close frame is sent; waiting for the peer's
    CLOSED = 4  # done; the TCP connection is closing (bounded by a deadline)


CONNECTING: Final = State.CONNECTING
RESPONDING: Final = State.RESPONDING
CONNECTED: Final = State.CONNECTED
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED

# what the connection's deadline means
NOTHING, PING, PONG, CLOSE_REPLY, LINGER, UNREAD = 0, 1, 2, 3, 4, 5

# How long the peer has to answer our close frame, and how long a finished
# connection may take to end its TCP connection, before we cut it.
CLOSE_TIMEOUT = 5.0
LINGER_SECONDS = 2.0
# Reasons to pause reading (ReadFlow bits)
QUEUE_FULL = 1  # --ws-max-queue messages wait for the app
PENDING = 2  # bytes that came before the app accepted wait for it
WRITE_BACKLOG = 4  # the peer does not read what we write (pongs would pile up)
# Unread bytes that arrive before the app accepts are held (the client may
# not send frames yet); past this much, reading pauses until the app answers.
PENDING_LIMIT = 64 * 1024
# Data frames at least this big go out as two buffers (header, payload), not
# concatenated: no copy of the payload.
WRITE_SEPARATELY = 16 * 1024

# Close codes (RFC 6455 7.4.1)
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
ABNORMAL_CLOSURE = 1006
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
_SHUTDOWN_REASONS = {GOING_AWAY: "Server shutting down", SERVICE_RESTART: "Server restarting"}
_HANDSHAKE_OWNED = frozenset({b"connection"})

# Server-to-client frame headers with FIN set and no mask (RFC 6455 5.2)
OP_TEXT, OP_BINARY = 0x1, 0x2
_SHORT_HEADERS = {
    opcode: [bytes((0x80 | opcode, length)) for length in range(126)]
    for opcode in (OP_TEXT, OP_BINARY)
}
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final data frame of `length` payload bytes."""
    if length < 126:
        return _SHORT_HEADERS[opcode][length]
    if length < 65536:
        return _HEADER_16.pack(0x80 | opcode, 126, length)
    return _HEADER_64.pack(0x80 | opcode, 127, length)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection. Subclasses adapt a library (see the hooks at the end)."""

    __slots__ = (
        "_app_closed",
        "_backlog",
        "_closing_code",
        "_disconnect",
        "_due",
        "_exchange",
        "_flow",
        "_loop",
        "_metrics",
        "_pending",
        "_pending_head",
        "_queue",
        "_raw_frames",
        "_reading",
        "_response_framing",
        "_state",
        "_waiter",
        "context",
        "deadline",
        "scope",
        "settings",
        "target",
        "transport",
    )

    def __init__(
        self,
        context: ServerContext,
        settings: WebSocketSettings,
        transport: asyncio.Transport,
        scope: WebSocketScope,
        target: bytes,
    ) -> None:
        self.context = context
        self._loop = context.loop
        self.settings = settings
        self.transport = transport
        self.scope = scope
        self.target = target
        self.deadline = 0.0
        self._due = NOTHING
        self._state = CONNECTING
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: Message | None = None  # once queued, what receive() returns at the end
        self._flow = WriteFlow()
        self._reading = ReadFlow(transport)
        self._backlog = 0  # bytes waiting in the transport when it last paused writing
        self._pending: bytes | None = None  # bytes received before the app accepted
        self._raw_frames = True  # no extension: data frames are framed here
        self._app_closed = False  # the app sent websocket.close
        self._closing_code = 0  # set when shutdown asks a connecting socket to close
        self._response_framing: Framing = CHUNKED
        self._pending_head: tuple[int, Headers] | None = None  # a denial response's
        self._metrics = context.metrics
        # the handshake's record for the access log and the metrics, until answered
        self._exchange: Exchange | None = None

    @classmethod
    def upgrade_handler(cls, context: ServerContext) -> WebSocketUpgrade:
        settings = context.settings.websocket

        def upgrade(
            transport: asyncio.Transport, scope: WebSocketScope, target: bytes, buffered: bytes
        ) -> None:
            cls(context, settings, transport, scope, target).start(buffered)

        return upgrade

    # --- taking over the connection ----------------------------------------------------
    def start(self, buffered: bytes) -> None:
        context = self.context
        self.transport.set_protocol(self)
        context.connections.add(self)
        if self._metrics is not None:
            self._metrics.websocket_opened()
        observer = context.observer
        if observer is not None:
            self._exchange = observer.begin(self.scope)
        if buffered:
            self._hold(buffered)
        problem = _check_request(self.scope)
        if problem is not None:
            self._refuse(*problem)
            return
        refusal = self.handshake()
        if refusal is not None:  # the library's answer: b"HTTP/1.1 400 ..."
            status = refusal[9:12].decode("latin-1")
            self._log(status)
            self.transport.write(refusal)
            self._end_exchange(int(status) if status.isdigit() else 400)
            self._finish()
            return
        if context.shutting_down:  # handed over while the server stops: close once accepted
            self._closing_code = SERVICE_RESTART if context.restarting else GOING_AWAY
        self._queue.append({"type": "websocket.connect"})
        task = context.create_task(self._run_app(context.app))
        task.add_done_callback(context.tasks.discard)

    # --- asyncio.Protocol ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        state = self._state
        if state is CONNECTED or state is CLOSING:
            self.receive_frames(data)
        elif state is CLOSED:
            pass  # finished: what still comes is dropped until the peer closes
        else:
            self._hold(data)

    def eof_received(self) -> bool | None:
        return None  # the peer is gone (or answered our EOF): close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = CLOSED
        self.deadline = 0.0
        self._due = NOTHING
        self.context.connections.discard(self)
        if self._metrics is not None:
            self._metrics.websocket_closed()
        if self._exchange is not None:  # the handshake was never answered whole
            self._end_exchange(0, complete=False)
        self._flow.connection_lost()
        self._queue_disconnect(ABNORMAL_CLOSURE, "")

    def pause_writing(self) -> None:
        """Our writes pile up unread: stop reading, so that a peer that sends pings
        (or anything we answer) and reads nothing cannot make us buffer without
        bound; and give it --ws-ping-timeout to read some before we cut it off."""
        self._flow.pause()
        state = self._state
        if state is CLOSED:
            return
        self._reading.pause(WRITE_BACKLOG)
        timeout = self.settings.ping_timeout
        if state is CONNECTED and timeout is not None:
            self._due = UNREAD
            self.deadline = self.context.now + timeout
            self._backlog = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        self._flow.resume()
        self._reading.resume(WRITE_BACKLOG)
        if self._due == UNREAD:
            self._keepalive()

    # --- what the server calls (ketch.core.context.Connection) ---------------------------
    def on_deadline(self) -> None:
        due = self._due
        if due == PING:
            self._ping()
        elif due == PONG:
            self._fail_locally(INTERNAL_ERROR, "keepalive ping timeout")
        elif due == CLOSE_REPLY:
            self._finish(linger=False)  # the peer does not answer: no reason to wait more
        elif due == LINGER:
            self.abort()
        elif due == UNREAD:
            if self.transport.get_write_buffer_size() < self._backlog:
                self._keepalive()  # it reads, slowly: keepalive pings judge it as usual
            else:
                self._abort_unread()

    def shutdown(self) -> None:
        code = SERVICE_RESTART if self.context.restarting else GOING_AWAY
        state = self._state
        if state is CONNECTED:
            self._close(code, _SHUTDOWN_REASONS[code])
        elif state is CONNECTING:
            self._closing_code = code  # closed right after the app accepts
        # a denial response being sent, or a closing handshake, finishes on its own

    def abort(self) -> None:
        self._state = CLOSED
        self.deadline = 0.0
        self.transport.abort()

    # --- ASGI receive ---------------------------------------------------------------------
    async def receive(self) -> Message:
        queue = self._queue
        while not queue:
            if self._disconnect is not None:
                return self._disconnect  # the end, as often as the app asks
            waiter = self._waiter = self._loop.create_future()
            await waiter
        message = queue.popleft()
        if self._reading.reasons and len(queue) <= self.settings.resume_at:
            self._reading.resume(QUEUE_FULL)  # the app caught up (if that was the reason)
        return message

    def _wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        wake(waiter)

    def on_message(self, data: bytes | str) -> None:
        """A complete data message from the peer (adapters call this)."""
        if self._state is not CONNECTED:
            return  # after our close frame, data is discarded (RFC 6455 1.4)
        queue = self._queue
        if self._metrics is not None:
            self._metrics.websocket_received()
        if type(data) is str:
            queue.append({"type": "websocket.receive", "text": data})
        else:
            queue.append({"type": "websocket.receive", "bytes": data})
        waiter = self._waiter
        if waiter is not None:  # _wake(), inlined: this runs for every message
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(queue) >= self.settings.max_queue:
            self._reading.pause(QUEUE_FULL)  # the app is slow: stop reading until it catches up

    def _queue_disconnect(self, code: int, reason: str) -> None:
        if self._disconnect is None:
            message = self._disconnect = {
                "type": "websocket.disconnect",
                "code": code,
                "reason": reason,
            }
            self._queue.append(message)
            self._wake()

    # --- ASGI send -----------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send" and self._state is CONNECTED:
            flow = self._flow
            if flow.paused:
                await flow.drain()  # the peer reads slowly: wait, do not buffer
                if not self._connected():
                    self._check_after_close(kind)
                    return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise RuntimeError("websocket.send needs 'bytes' or 'text'")
            if self._raw_frames:
                self._write_raw(data)
            else:
                self.transport.write(self.data_frame(data))
            if self._metrics is not None:
                self._metrics.websocket_sent()
            return
        state = self._state
        if state is CONNECTING:
            self._send_handshake(message)
        elif state is CONNECTED:
            if kind != "websocket.close":
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got {kind!r}."
                )
            code = message.get("code") or NORMAL_CLOSURE
            if not _valid_close_code(code):
                raise RuntimeError(f"Invalid WebSocket close code {code!r}")
            self._app_closed = True
            self._close(code, _short_reason(message.get("reason") or ""))
        elif state is RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got {kind!r}."
                )
            await self._send_response_body(message)
        else:
            self._check_after_close(kind)

    def _connected(self) -> bool:
        return self._state is CONNECTED

    def _check_after_close(self, kind: str) -> None:
        """A message after the connection closed: an error only if the app closed it."""
        if self._app_closed:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r}, after sending 'websocket.close'."
            )
        if kind == "websocket.close":
            return  # the peer or the server closed first: nothing left to do
        raise ClientDisconnected(f"{kind!r} sent after the WebSocket closed")

    def _write_raw(self, data: bytes | str) -> None:
        """A data frame framed here: one write for a small one, no payload copy for a big one."""
        if type(data) is str:
            payload = data.encode("utf-8")
            opcode = OP_TEXT
        else:
            payload = data  # type: ignore[assignment]
            opcode = OP_BINARY
        size = len(payload)
        if size < 126:
            self.transport.write(_SHORT_HEADERS[opcode][size] + payload)
        elif size < WRITE_SEPARATELY:
            self.transport.write(frame_header(opcode, size) + payload)
        else:
            self.transport.writelines((frame_header(opcode, size), payload))

    def _send_handshake(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._app_closed = True
            self._queue_disconnect(ABNORMAL_CLOSURE, "")
            self._refuse(403, b"")
        elif kind == "websocket.http.response.start":
            self._start_response(message)
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', but got {kind!r}."
            )

    def _accept(self, message: Message) -> None:
        subprotocol: str | None = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(f"The client did not offer the subprotocol {subprotocol!r}")
        headers = self._response_headers(message.get("headers") or ())
        self.transport.write(self.accept_response(subprotocol, headers))
        self._state = CONNECTED
        self._log("[accepted]")
        if self._exchange is not None:
            self._exchange.response_headers = headers
            self._end_exchange(101)
        self._keepalive()
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._reading.resume(PENDING)
            self.receive_frames(pending)
        if self._closing_code and self._state is CONNECTED:
            self._close(self._closing_code, _SHUTDOWN_REASONS[self._closing_code])

    # --- denial responses (HTTP, before the handshake completes) --------------------------
    def _start_response(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response")
        self._state = RESPONDING
        self._log(str(status))
        # the head waits for the first body message: a small response is one write
        self._pending_head = (status, list(message.get("headers") or ()))
        exchange = self._exchange
        if exchange is not None:
            exchange.status = status
            exchange.response_headers = self._pending_head[1]

    async def _send_response_body(self, message: Message) -> None:
        if self._flow.paused:
            await self._flow.drain()
        if self._state is not RESPONDING:
            raise ClientDisconnected("the client left during the response")
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        data = b""
        pending = self._pending_head
        if pending is not None:
            self._pending_head = None
            data, self._response_framing, _, _ = self._http_head(
                *pending, final_size=None if more_body else len(body)
            )
        if self._response_framing is CHUNKED:
            data += chunk(body) if more_body else chunk(body) + LAST_CHUNK
        else:
            data += body
        if data:
            self.transport.write(data)
        exchange = self._exchange
        if exchange is not None:
            exchange.bytes_sent += len(body)
            if not more_body:
                self._end_exchange(exchange.status)
        if not more_body:
            self._queue_disconnect(ABNORMAL_CLOSURE, "")
            self._finish()

    def _refuse(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        """Answer the upgrade request with a plain HTTP response and close."""
        if self._state is CLOSED:
            return
        self._log(str(status))
        headers = [*(headers or ()), (b"content-type", b"text/plain; charset=utf-8")]
        self.transport.write(self._http_head(status, headers, len(body))[0] + body)
        if self._exchange is not None:
            self._exchange.bytes_sent = len(body)
            self._end_exchange(status)
        self._queue_disconnect(ABNORMAL_CLOSURE, "")
        self._finish()

    def _http_head(self, status: int, headers: Headers, final_size: int | None) -> ResponseHead:
        """The head of a response that ends the connection (ketch.core.api.response_head)."""
        defaults = self.context.default_headers
        return response_head(status, headers, defaults, False, False, False, final_size)

    def _response_headers(self, headers: Any) -> Headers:
        """For the 101: the app's headers (checked, lowercased, without Connection,
        which the handshake sets), then ketch's defaults it did not override."""
        checked = checked_headers(headers, drop=_HANDSHAKE_OWNED)
        names = {name for name, _ in checked}
        defaults = self.context.default_headers
        checked.extend(pair for pair in defaults.pairs if pair[0] not in names)
        return checked

    # --- running the app -----------------------------------------------------------------
    async def _run_app(self, app: ASGI3Application) -> None:
        try:
            await app(cast(Scope, self.scope), self.receive, self.send)
        except ClientDisconnected:
            self._app_ended()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                logger.error("Exception in ASGI application\n", exc_info=exc)
            self._app_failed()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            self._app_ended()

    def _app_ended(self) -> None:
        state = self._state
        if state is CONNECTING:
            logger.error("ASGI callable returned without completing handshake.")
            self._refuse(500, b"Internal Server Error")
        elif state is RESPONDING:
            logger.error("ASGI callable returned without completing response.")
            self._finish()
        elif state is CONNECTED:
            self._close(NORMAL_CLOSURE, "")  # the app is done: close properly

    def _app_failed(self) -> None:
        state = self._state
        if state is CONNECTING:
            self._refuse(500, b"Internal Server Error")
        elif state is RESPONDING:
            self._finish()
        elif state is CONNECTED:
            self._close(INTERNAL_ERROR, "")

    # --- closing ------------------------------------------------------------------------------
    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake: our close frame, then wait (bounded) for the peer's."""
        self.transport.write(self.close_frame(code, reason))
        self._state = CLOSING
        self._queue_disconnect(code, reason)
        self._due = CLOSE_REPLY
        self.deadline = self.context.now + CLOSE_TIMEOUT
        self._reading.resume(QUEUE_FULL)  # the peer's close frame must get through

    def on_close(self, code: int, reason: str) -> None:
        """The peer's close frame arrived; the adapter has answered it if needed."""
        self._queue_disconnect(code, reason)
        self._finish()

    def on_protocol_error(self, code: int, reason: str) -> None:
        """The peer broke the protocol; the adapter has sent our close frame."""
        self._log_closed(code, reason)
        self._queue_disconnect(code, reason)
        self._finish()

    def _abort_unread(self) -> None:
        """The peer read none of our backlog in --ws-ping-timeout: cut the TCP
        connection. A close frame would wait behind the bytes it does not read,
        and a graceful close would hold them until then."""
        reason = "the client stopped reading"
        self._log_closed(ABNORMAL_CLOSURE, reason)
        self._queue_disconnect(ABNORMAL_CLOSURE, reason)
        self.abort()

    def _fail_locally(self, code: int, reason: str) -> None:
        """Give up on the peer (it stopped answering pings)."""
        if self._state is CONNECTED:
            self.transport.write(self.close_frame(code, reason))
        self._log_closed(code, reason)
        self._queue_disconnect(code, reason)
        self._finish(linger=False)

    def on_pong(self) -> None:
        if self._due == PONG:
            self._keepalive()

    def _keepalive(self) -> None:
        """Schedule the next keepalive ping (if pings are on)."""
        interval = self.settings.ping_interval
        if interval is None:
            self._due = NOTHING
            self.deadline = 0.0
        else:
            self._due = PING
            self.deadline = self.context.now + interval

    def _ping(self) -> None:
        if self._state is not CONNECTED:
            return
        self.transport.write(self.ping_frame(os.urandom(4)))
        settings = self.settings
        if settings.ping_timeout is not None:
            self._due = PONG
            self.deadline = self.context.now + settings.ping_timeout
        else:
            assert settings.ping_interval is not None
            self.deadline = self.context.now + settings.ping_interval

    def _finish(self, linger: bool = True) -> None:
        """The WebSocket is over: end the TCP connection without losing what we sent.

        The server closes first (RFC 6455 7.1.1). Half-closing, then reading
        until the peer closes, avoids a reset that could destroy our last
        frames in the peer's receive buffer; the deadline bounds the wait."""
        if self._state is CLOSED:
            return
        self._state = CLOSED
        self._due = LINGER
        self.deadline = self.context.now + LINGER_SECONDS
        transport = self.transport
        self._reading.resume_all()  # read (and drop) until the peer closes
        if linger:
            half_close(transport)
        elif not transport.is_closing():
            transport.close()

    # --- helpers --------------------------------------------------------------------------------
    def _hold(self, data: bytes) -> None:
        """Keep bytes that arrive before the app accepted, for after the handshake."""
        pending = self._pending = data if self._pending is None else self._pending + data
        if len(pending) > PENDING_LIMIT:
            self._reading.pause(PENDING)

    def _end_exchange(self, status: int, complete: bool = True) -> None:
        """The handshake is answered (101, or a denial): report it, once."""
        exchange = self._exchange
        if exchange is not None:
            self._exchange = None
            if status:
                exchange.status = status
            exchange.end(complete)

    def _log(self, outcome: str) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                '%s - "WebSocket %s" %s',
                client_text(self.scope["client"]),
                path_with_query(self.scope),
                outcome,
            )

    def _log_closed(self, code: int, reason: str) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                '%s - "WebSocket %s" closed with %d: %s',
                client_text(self.scope["client"]),
                path_with_query(self.scope),
                code,
                reason,
            )

    # --- the library adapter ----------------------------------------------------------------------
    def handshake(self) -> bytes | None:
        """Check the upgrade request (`self.scope`, `self.target`) and negotiate
        extensions; None if it is valid, else the HTTP error response to send."""
        raise NotImplementedError

    def accept_response(self, subprotocol: str | None, headers: Headers) -> bytes:
        """The 101 response with `headers`; sets `_raw_frames` False when an
        extension was negotiated."""
        raise NotImplementedError

    def receive_frames(self, data: bytes) -> None:
        """Parse `data`; answer pings and the peer's close frame; call `on_message`,
        `on_pong`, `on_close` or `on_protocol_error`."""
        raise NotImplementedError

    def data_frame(self, data: bytes | str) -> bytes:
        """A data frame (text for a str) through the negotiated extension."""
        raise NotImplementedError

    def close_frame(self, code: int, reason: str) -> bytes:
        raise NotImplementedError

    def ping_frame(self, payload: bytes) -> bytes:
        raise NotImplementedError


def _check_request(scope: WebSocketScope) -> tuple[int, bytes, Headers] | None:
    """What both libraries must refuse alike (RFC 6455 4.2.1): the HTTP
    version, the key and the protocol version. The adapters check the rest."""
    if scope["http_version"] != "1.1":
        return 505, b"WebSocket needs HTTP/1.1", []
    keys = [value for name, value in scope["headers"] if name == b"sec-websocket-key"]
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        return 400, b"Invalid Sec-WebSocket-Key header", []
    versions = [value for name, value in scope["headers"] if name == b"sec-websocket-version"]
    if versions != [b"13"]:
        return 426, b"Unsupported WebSocket version", [(b"sec-websocket-version", b"13")]
    return None


def _valid_close_code(code: object) -> bool:
    """Codes an endpoint may send (RFC 6455 7.4)."""
    return isinstance(code, int) and (
        code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


def _short_reason(reason: str) -> str:
    """A close reason that fits a control frame (125 bytes, 2 for the code)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    return encoded[:123].decode("utf-8", "ignore")
