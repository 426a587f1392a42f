"""One WebSocket connection, written once for every library: the wire side.

The HTTP protocols hand an upgrade request over (`ketch.core.api.WebSocketUpgrade`);
from then on this protocol owns the transport. The library adapters
(`websockets_impl`, `wsproto_impl`) only check the handshake, build the 101
response, parse incoming frames and build control frames. Everything else lives
here, in its base class (`ketch.ws.liveness`: the deadline, keepalive pings,
flow control both ways, the end of the TCP connection) or in the session
(`ketch.ws.session`, the app's receive and send), so that both behave
identically: the connection's state, closing handshakes, denial responses,
draining shutdown and logging.

Data frames without an extension are framed here (RFC 6455 5.2: a server frame
is 2 to 10 header bytes and the unmasked payload) and written without copying
the payload; frames of a negotiated extension (per-message-deflate) come from
the library.
"""

from __future__ import annotations

import asyncio
import logging

from ketch.core.api import (
    ClientDisconnected,
    Exchange,
    Headers,
    Message,
    ServerContext,
    WebSocketScope,
    WebSocketSettings,
    WebSocketUpgrade,
    client_text,
    path_with_query,
)
from ketch.ws.liveness import Liveness
from ketch.ws.responses import DenialResponse, accept_headers, refusal
from ketch.ws.rfc6455 import (
    ABNORMAL_CLOSURE,
    GOING_AWAY,
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    OP_BINARY,
    OP_TEXT,
    SERVICE_RESTART,
    SHORT_HEADERS,
    check_request,
    frame_header,
)
from ketch.ws.session import WebSocketSession
from ketch.ws.states import (
    CLOSED,
    CLOSING,
    CONNECTED,
    CONNECTING,
    PENDING,
    PENDING_LIMIT,
    RESPONDING,
    WRITE_SEPARATELY,
)

logger = logging.getLogger("ketch.error")


_SHUTDOWN_REASONS = {GOING_AWAY: "Server shutting down", SERVICE_RESTART: "Server restarting"}


class WebSocketProtocol(Liveness):
    """One WebSocket connection. Subclasses adapt a library (see the hooks at the end)."""

    __slots__ = (
        "_closing_code",
        "_denial",
        "_exchange",
        "_pending",
        "loop",
        "metrics",
        "on_message",
        "raw_frames",
        "scope",
        "session",
        "target",
    )

    def __init__(
        self,
        context: ServerContext,
        settings: WebSocketSettings,
        transport: asyncio.Transport,
        scope: WebSocketScope,
        target: bytes,
    ) -> None:
        super().__init__(context, settings, transport)
        self.loop = context.loop
        self.scope = scope
        self.target = target
        self._pending: bytes | None = None  # bytes received before the app accepted
        self.raw_frames = True  # no extension: data frames are framed here
        self._closing_code = 0  # set when shutdown asks a connecting socket to close
        self._denial: DenialResponse | None = None
        self.metrics = context.metrics
        # the handshake's record for the access log and the metrics, until answered
        self._exchange: Exchange | None = None
        self.session = WebSocketSession(self, settings.max_queue)
        # a complete data message from the peer (the adapters call it): straight
        # to the session's queue, one Python call less per message
        self.on_message = self.session.on_message

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
        if self.metrics is not None:
            self.metrics.websocket_opened()
        observer = context.observer
        if observer is not None:
            self._exchange = observer.begin(self.scope)
        if buffered:
            self._hold(buffered)
        problem = check_request(self.scope)
        if problem is not None:
            self.refuse(*problem)
            return
        answer = self.handshake()
        if answer is not None:  # the library's refusal: b"HTTP/1.1 400 ..."
            status = answer[9:12].decode("latin-1")
            self._log(status)
            self.transport.write(answer)
            self._end_exchange(int(status) if status.isdigit() else 400)
            self.finish()
            return
        if context.shutting_down:  # handed over while the server stops: close once accepted
            self._closing_code = SERVICE_RESTART if context.restarting else GOING_AWAY
        task = context.create_task(self.session.run(context.app))
        task.add_done_callback(context.tasks.discard)

    # --- asyncio.Protocol ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is CONNECTED or state is CLOSING:
            self.receive_frames(data)
        elif state is CLOSED:
            pass  # finished: what still comes is dropped until the peer closes
        else:
            self._hold(data)

    def eof_received(self) -> bool | None:
        return None  # the peer is gone (or answered our EOF): close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # the deadline stops, drains wake up
        self.context.connections.discard(self)
        if self.metrics is not None:
            self.metrics.websocket_closed()
        if self._exchange is not None:  # the handshake was never answered whole
            self._end_exchange(0, complete=False)
        self.session.disconnected(ABNORMAL_CLOSURE, "")

    # --- what the server calls (ketch.core.api.Connection) -------------------------------
    def shutdown(self) -> None:
        code = SERVICE_RESTART if self.context.restarting else GOING_AWAY
        state = self.state
        if state is CONNECTED:
            self.close(code, _SHUTDOWN_REASONS[code])
        elif state is CONNECTING:
            self._closing_code = code  # closed right after the app accepts
        # a denial response being sent, or a closing handshake, finishes on its own

    # --- what the session calls ------------------------------------------------------------
    def connected(self) -> bool:
        """Data messages may be sent (the handshake is done, no close frame yet)."""
        return self.state is CONNECTED

    def write_message(self, data: bytes | str) -> None:
        """A data frame: framed here without an extension (one write for a small
        frame, no payload copy for a big one), by the library with one."""
        if self.metrics is not None:
            self.metrics.websocket_sent()
        if not self.raw_frames:
            self.transport.write(self.data_frame(data))
            return
        if type(data) is str:
            payload = data.encode("utf-8")
            opcode = OP_TEXT
        else:
            payload = data  # type: ignore[assignment]
            opcode = OP_BINARY
        size = len(payload)
        if size < 126:
            self.transport.write(SHORT_HEADERS[opcode][size] + payload)
        elif size < WRITE_SEPARATELY:
            self.transport.write(frame_header(opcode, size) + payload)
        else:
            self.transport.writelines((frame_header(opcode, size), payload))

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        headers = accept_headers(headers, self.context.default_headers)
        self.transport.write(self.accept_response(subprotocol, headers))
        self.state = CONNECTED
        self._log("[accepted]")
        if self._exchange is not None:
            self._exchange.response_headers = headers
            self._end_exchange(101)
        self.schedule_ping()
        pending = self._pending
        if pending is not None:
            self._pending = None
            self.reading.resume(PENDING)
            self.receive_frames(pending)
        if self._closing_code and self.state is CONNECTED:
            self.close(self._closing_code, _SHUTDOWN_REASONS[self._closing_code])

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake: our close frame, then wait (bounded) for the peer's."""
        self.transport.write(self.close_frame(code, reason))
        self.state = CLOSING
        self.session.disconnected(code, reason)
        self.await_close_reply()

    def refuse(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        """Answer the upgrade request with a plain HTTP response and close."""
        if self.state is CLOSED:
            return
        self._log(str(status))
        self.transport.write(refusal(status, body, headers or [], self.context.default_headers))
        if self._exchange is not None:
            self._exchange.bytes_sent = len(body)
            self._end_exchange(status)
        self.session.disconnected(ABNORMAL_CLOSURE, "")
        self.finish()

    def start_denial(self, message: Message) -> None:
        """websocket.http.response.start: the app answers with an HTTP response."""
        headers = list(message.get("headers") or ())
        self._denial = DenialResponse(message["status"], headers, self.context.default_headers)
        self.state = RESPONDING
        self._log(str(message["status"]))
        exchange = self._exchange
        if exchange is not None:
            exchange.status = message["status"]
            exchange.response_headers = headers

    async def send_denial_body(self, message: Message) -> None:
        if self.write_flow.paused:
            await self.write_flow.drain()
        denial = self._denial
        if self.state is not RESPONDING or denial is None:
            raise ClientDisconnected("the client left during the response")
        more_body: bool = message.get("more_body", False)
        body = message.get("body", b"")
        data = denial.body(body, more_body)
        if data:
            self.transport.write(data)
        exchange = self._exchange
        if exchange is not None:
            exchange.bytes_sent += len(body)
            if not more_body:
                self._end_exchange(exchange.status)
        if not more_body:
            self.session.disconnected(ABNORMAL_CLOSURE, "")
            self.finish()

    def app_done(self, failed: bool) -> None:
        """The app returned (or raised): end what it left unfinished."""
        state = self.state
        if state is CONNECTING:
            if not failed:
                logger.error("ASGI callable returned without completing handshake.")
            self.refuse(500, b"Internal Server Error")
        elif state is RESPONDING:
            if not failed:
                logger.error("ASGI callable returned without completing response.")
            self.finish()
        elif state is CONNECTED:
            # the app is done: close properly (1011 if it failed)
            self.close(INTERNAL_ERROR if failed else NORMAL_CLOSURE, "")

    # --- what the adapters call ------------------------------------------------------------
    def on_close(self, code: int, reason: str) -> None:
        """The peer's close frame arrived; the adapter has answered it if needed."""
        self.session.disconnected(code, reason)
        self.finish()

    def on_protocol_error(self, code: int, reason: str) -> None:
        """The peer broke the protocol; the adapter has sent our close frame."""
        self.report_closed(code, reason)
        self.finish()

    def report_closed(self, code: int, reason: str) -> None:
        self._log_closed(code, reason)
        self.session.disconnected(code, reason)

    # --- helpers --------------------------------------------------------------------------------
    def _hold(self, data: bytes) -> None:
        """Keep bytes that arrive before the app accepted, for after the handshake."""
        pending = self._pending = data if self._pending is None else self._pending + data
        if len(pending) > PENDING_LIMIT:
            self.reading.pause(PENDING)

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
        """The 101 response with `headers`; sets `raw_frames` False when an
        extension was negotiated."""
        raise NotImplementedError

    def receive_frames(self, data: bytes) -> None:
        """Parse `data`; answer pings and the peer's close frame; call `on_message`,
        `on_pong`, `on_close` or `on_protocol_error`."""
        raise NotImplementedError

    def data_frame(self, data: bytes | str) -> bytes:
        """A data frame (text for a str) through the negotiated extension."""
        raise NotImplementedError

    # and Liveness's close_frame(code, reason) and ping_frame(payload)
