"""The WebSocket connection and its ASGI cycle, library-independent.

The `websockets` and `wsproto` plugins differ only in their `Codec`: it checks
the handshake, turns bytes into whole messages and control events, and
messages into bytes (answering pings and close frames itself). Everything else
lives here, once: the ASGI state machine (spec 2.5 with the Denial Response
extension), queues and flow control both ways, keep-alive pings, the closing
handshake, and the draining shutdown (close 1012 on restart, 1001 otherwise).
"""

from __future__ import annotations

import asyncio
import enum
import http
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

from ketch.core import ServerContext
from ketch.core._types import Headers, Message, WebSocketScope
from ketch.core.scope import path_with_query
from ketch.core.transport import WriteFlow

logger = logging.getLogger("ketch.error")

# How long the closing handshake may take before the socket is closed anyway.
CLOSE_TIMEOUT = 5.0
GOING_AWAY, SERVICE_RESTART, ABNORMAL = 1001, 1012, 1006
INTERNAL_ERROR, TOO_BIG = 1011, 1009


class ClientDisconnected(OSError):
    """`send()` on a WebSocket whose connection is closed (ASGI spec 2.4)."""


# --- what a codec reports ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Received:
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Pong:
    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer sent a close frame, or the codec failed the connection (bad
    frame, bad UTF-8, too big): a close frame is on its way, the socket goes."""

    code: int
    reason: str = ""


Event = Received | Pong | Closed


class Codec(Protocol):
    """The library-specific part: the handshake and the frames."""

    def handshake(self, scope: WebSocketScope, target: bytes) -> str | None:
        """Check the upgrade request; the reason it is invalid, or None."""

    def accept(self, subprotocol: str | None, headers: Headers) -> bytes:
        """The 101 response (with negotiated extensions)."""

    def receive(self, data: bytes) -> list[Event]:
        """Frames in; whole messages and events out (pings are answered)."""

    def send(self, data: str | bytes) -> bytes:
        """One message as frames."""

    def ping(self, payload: bytes) -> bytes: ...

    def close(self, code: int, reason: str) -> bytes:
        """A close frame (empty bytes when one was already sent)."""

    def pending(self) -> bytes:
        """Bytes the codec produced on its own (pongs, close replies)."""


class State(enum.Enum):
    """ASGI WebSocket spec: the server side of the connection."""

    HANDSHAKE = 0  # the app has not accepted or refused yet
    DENYING = 1  # the app is sending a denial response (websocket.http.response.*)
    OPEN = 2  # accepted
    CLOSING = 3  # a close frame has been sent, waiting for the peer's
    CLOSED = 4


class WebSocketProtocol(asyncio.Protocol):
    __slots__ = (
        "_app_done",
        "_close_code",
        "_close_reason",
        "_codec",
        "_denial",
        "_disconnected",
        "_inbox",
        "_paused",
        "_pending_data",
        "_ping_payload",
        "_ping_timer",
        "_pong_timer",
        "_waiter",
        "context",
        "deadline",
        "flow",
        "scope",
        "state",
        "transport",
    )

    def __init__(self, context: ServerContext, codec: Codec, scope: WebSocketScope) -> None:
        self.context = context
        self._codec = codec
        self.scope = scope
        self.state = State.HANDSHAKE
        self.flow = WriteFlow()
        self.deadline = 0.0
        self._inbox: deque[Message] = deque([{"type": "websocket.connect"}])
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._disconnected = False
        self._close_code = ABNORMAL
        self._close_reason = ""
        self._denial: tuple[int, Headers, list[bytes]] | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload = b""
        self._app_done = False
        self._pending_data = b""

    # --- taking over the connection from the HTTP protocol -------------------------------
    def take_over(self, transport: asyncio.Transport, target: bytes, buffered: bytes) -> None:
        self.transport = transport
        transport.set_protocol(self)
        context = self.context
        problem = self._codec.handshake(self.scope, target)
        if problem is not None:
            text = [(b"content-type", b"text/plain; charset=utf-8")]
            transport.write(http_response(context, 400, text, problem.encode()))
            transport.close()
            return
        context.connections.add(self)
        self._pending_data = buffered  # a client must wait for the 101; keep it anyway
        task = context.loop.create_task(self._run_asgi())
        context.tasks.add(task)
        task.add_done_callback(context.tasks.discard)

    # --- asyncio.Protocol -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state in (State.HANDSHAKE, State.DENYING, State.CLOSED):
            return  # nothing may come before the 101; nothing counts after the close
        try:
            events = self._codec.receive(data)
        finally:
            self._flush()
        for event in events:
            if type(event) is Received:
                self._deliver(
                    {"type": "websocket.receive", "text": event.data}
                    if isinstance(event.data, str)
                    else {"type": "websocket.receive", "bytes": event.data}
                )
            elif type(event) is Pong:
                if event.data == self._ping_payload and self._pong_timer is not None:
                    self._pong_timer.cancel()
                    self._pong_timer = None
            else:
                closed = cast(Closed, event)
                self._peer_closed(closed.code, closed.reason)
                return
        if len(self._inbox) >= self.context.config.ws_max_queue and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        self.flow.connection_lost()
        self._stop_pings()
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
        self._disconnect(self._close_code, self._close_reason)

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # --- the server's calls (ketch.core.context.Connection) ---------------------------------
    def on_deadline(self) -> None:
        """The closing handshake took too long."""
        self.deadline = 0.0
        self.transport.close()

    def shutdown(self) -> None:
        code = SERVICE_RESTART if self.context.restarting else GOING_AWAY
        if self.state is State.OPEN:
            reason = "Server restarting" if code == SERVICE_RESTART else "Server shutting down"
            self._close(code, reason)
            self._disconnect(code, "")
        elif self.state in (State.HANDSHAKE, State.DENYING):
            self.state = State.CLOSED
            self.transport.close()

    def abort(self) -> None:
        self.state = State.CLOSED
        self.transport.abort()

    # --- events -------------------------------------------------------------------------
    def _deliver(self, message: Message) -> None:
        self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _disconnect(self, code: int, reason: str) -> None:
        if not self._disconnected:
            self._disconnected = True
            self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})

    def _peer_closed(self, code: int, reason: str) -> None:
        """A close frame came (the codec replied), or the codec failed the connection."""
        self._close_code, self._close_reason = code, reason
        self.state = State.CLOSED
        self._stop_pings()
        self._disconnect(code, reason)
        self.transport.close()  # the server closes the TCP connection first (RFC 6455 7.1.1)

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake from our side."""
        if self.state is not State.OPEN:
            return
        self._close_code, self._close_reason = code, reason
        self.state = State.CLOSING
        self._stop_pings()
        self._write(self._codec.close(code, reason))
        self.deadline = self.context.now + CLOSE_TIMEOUT

    def _write(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _flush(self) -> None:
        self._write(self._codec.pending())

    # --- pings ----------------------------------------------------------------------------
    def _schedule_ping(self) -> None:
        interval = self.context.config.ws_ping_interval
        if interval:
            self._ping_timer = self.context.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        if self.state is not State.OPEN:
            return
        self._ping_payload = os.urandom(4)
        self._write(self._codec.ping(self._ping_payload))
        timeout = self.context.config.ws_ping_timeout
        if timeout:
            self._pong_timer = self.context.loop.call_later(timeout, self._no_pong)
        self._schedule_ping()

    def _no_pong(self) -> None:
        """The peer stopped answering: drop it."""
        self._pong_timer = None
        if self.state is State.OPEN:
            self._close(INTERNAL_ERROR, "keepalive ping timeout")
            self._disconnect(INTERNAL_ERROR, "keepalive ping timeout")
        self.transport.close()

    def _stop_pings(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None

    # --- the application --------------------------------------------------------------------
    async def _run_asgi(self) -> None:
        try:
            await self.context.app(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        except BaseException as exc:
            self._app_failed(exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return
        finally:
            self._app_done = True
        if self.state is State.HANDSHAKE:
            logger.error("ASGI callable returned without sending handshake.")
            self._respond(500, [], b"Internal Server Error")
        elif self.state is State.DENYING:
            logger.error("ASGI callable returned without completing the denial response.")
            self.transport.close()
        elif self.state is State.OPEN:
            self._close(1000, "")

    def _app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or self._disconnected:
            if self.state is not State.CLOSED:
                self.transport.close()
            return
        logger.error("Exception in ASGI application\n", exc_info=exc)
        if self.state is State.HANDSHAKE:
            self._respond(500, [], b"Internal Server Error")
        elif self.state is State.OPEN:
            self._close(INTERNAL_ERROR, "")
        else:
            self.transport.close()

    def _respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Refuse the upgrade with an HTTP response, and close."""
        self._log(status)
        self.state = State.CLOSED
        self._write(http_response(self.context, status, headers, body))
        self.transport.close()

    def _log(self, status: int) -> None:
        context = self.context
        if context.access_logger is not None:
            scope = self.scope
            context.log_access(
                scope["client"], "WebSocket", path_with_query(scope), scope["http_version"], status
            )

    async def receive(self) -> Message:
        while not self._inbox:
            waiter = self._waiter = self.context.loop.create_future()
            await waiter
        message = self._inbox.popleft()
        if message["type"] == "websocket.disconnect":
            self._inbox.appendleft(message)  # every later receive() gets it too
        elif self._paused and len(self._inbox) < self.context.config.ws_max_queue:
            self._paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        if self.flow.paused:
            await self.flow.drain()
        kind = message["type"]
        state = self.state
        if state is State.HANDSHAKE:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._respond(403, [], b"")
            elif kind == "websocket.http.response.start":
                self.state = State.DENYING
                self._denial = (int(message["status"]), list(message.get("headers", [])), [])
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got {kind!r}."
                )
        elif state is State.DENYING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got {kind!r}."
                )
            assert self._denial is not None
            status, headers, chunks = self._denial
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._respond(status, headers, b"".join(chunks))
        elif state is State.OPEN:
            if kind == "websocket.send":
                text, data = message.get("text"), message.get("bytes")
                if text is not None:
                    self._write(self._codec.send(str(text)))
                elif data is not None:
                    self._write(self._codec.send(bytes(data)))
                else:
                    raise RuntimeError("websocket.send needs 'text' or 'bytes'")
            elif kind == "websocket.close":
                code = int(message.get("code") or 1000)
                self._close(code, str(message.get("reason") or ""))
                self._disconnect(code, "")
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got {kind!r}."
                )
        else:
            raise ClientDisconnected(f"Cannot send {kind!r}: the WebSocket is closed.")

    def _accept(self, message: Message) -> None:
        subprotocol = message.get("subprotocol")
        headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
        self._write(self._codec.accept(subprotocol, headers))
        self.state = State.OPEN
        self._log(101)
        self._schedule_ping()
        pending = self._pending_data
        if pending:
            self._pending_data = b""
            self.data_received(pending)


def default_headers(context: ServerContext, headers: Headers) -> Headers:
    """Ketch's Server/Date/--header defaults, unless the app set them itself."""
    own = {name for name, _ in headers}
    return [pair for pair in context.default_headers.pairs if pair[0] not in own] + list(headers)


def http_response(context: ServerContext, status: int, headers: Headers, body: bytes) -> bytes:
    """A complete HTTP/1.1 response refusing the upgrade (the socket closes after)."""
    try:
        reason = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        reason = b""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in default_headers(context, [(k.lower(), v) for k, v in headers]):
        if name not in (b"content-length", b"connection", b"transfer-encoding"):
            lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join(lines) + body
