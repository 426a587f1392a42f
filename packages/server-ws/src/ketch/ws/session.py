"""The ASGI side of one WebSocket: the app's `receive()` and `send()`, its message
queue, and the app's Task.

The session talks to its connection (`ketch.ws.protocol.WebSocketProtocol`)
through a few methods: `accept`, `write_message`, `close`, `refuse`,
`start_denial`, `send_denial_body`, `app_caught_up`, `app_done`, and reads
its `state`; the connection decides what the wire still allows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from ketch.core.api import ASGI3Application, ClientDisconnected, Message, Scope, wake
from ketch.ws.rfc6455 import ABNORMAL_CLOSURE, NORMAL_CLOSURE, short_reason, valid_close_code
from ketch.ws.states import CONNECTED, CONNECTING, RESPONDING

if TYPE_CHECKING:
    from ketch.ws.protocol import WebSocketProtocol

logger = logging.getLogger("ketch.error")


class WebSocketSession:
    __slots__ = ("_app_closed", "_disconnect", "_max_queue", "_queue", "_waiter", "conn")

    def __init__(self, conn: WebSocketProtocol, max_queue: int) -> None:
        self.conn = conn
        self._max_queue = max_queue
        self._queue: deque[Message] = deque([{"type": "websocket.connect"}])
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: Message | None = None  # once queued, what receive() returns at the end
        self._app_closed = False  # the app sent websocket.close

    # --- what the connection tells -------------------------------------------------------
    def on_message(self, data: bytes | str) -> None:
        """A complete data message from the peer."""
        conn = self.conn
        if conn.state is not CONNECTED:
            return  # after our close frame, data is discarded (RFC 6455 1.4)
        if conn.metrics is not None:
            conn.metrics.websocket_received()
        queue = self._queue
        if type(data) is str:
            queue.append({"type": "websocket.receive", "text": data})
        else:
            queue.append({"type": "websocket.receive", "bytes": data})
        waiter = self._waiter
        if waiter is not None:  # wake(), inlined: this runs for every message
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(queue) >= self._max_queue:
            conn.app_is_slow()

    def disconnected(self, code: int, reason: str) -> None:
        """The WebSocket is over: the app's next receive() says so (once queued,
        every later one too)."""
        if self._disconnect is None:
            message = self._disconnect = {
                "type": "websocket.disconnect",
                "code": code,
                "reason": reason,
            }
            self._queue.append(message)
            waiter, self._waiter = self._waiter, None
            wake(waiter)

    # --- ASGI receive ---------------------------------------------------------------------
    async def receive(self) -> Message:
        queue = self._queue
        while not queue:
            if self._disconnect is not None:
                return self._disconnect  # the end, as often as the app asks
            waiter = self._waiter = self.conn.loop.create_future()
            await waiter
        message = queue.popleft()
        self.conn.app_caught_up(len(queue))
        return message

    # --- ASGI send ------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        conn = self.conn
        kind = message["type"]
        if kind == "websocket.send" and conn.state is CONNECTED:
            flow = conn.write_flow
            if flow.paused:
                await flow.drain()  # the peer reads slowly: wait, do not buffer
                if not conn.connected():
                    self._check_after_close(kind)
                    return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise RuntimeError("websocket.send needs 'bytes' or 'text'")
            conn.write_message(data)
            return
        state = conn.state
        if state is CONNECTING:
            self._answer_handshake(message)
        elif state is CONNECTED:
            if kind != "websocket.close":
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got {kind!r}."
                )
            code = message.get("code") or NORMAL_CLOSURE
            if not valid_close_code(code):
                raise RuntimeError(f"Invalid WebSocket close code {code!r}")
            self._app_closed = True
            conn.close(code, short_reason(message.get("reason") or ""))
        elif state is RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got {kind!r}."
                )
            await conn.send_denial_body(message)
        else:
            self._check_after_close(kind)

    def _answer_handshake(self, message: Message) -> None:
        kind = message["type"]
        conn = self.conn
        if kind == "websocket.accept":
            subprotocol: str | None = message.get("subprotocol")
            if subprotocol is not None and subprotocol not in conn.scope["subprotocols"]:
                raise RuntimeError(f"The client did not offer the subprotocol {subprotocol!r}")
            conn.accept(subprotocol, list(message.get("headers") or ()))
        elif kind == "websocket.close":
            self._app_closed = True
            self.disconnected(ABNORMAL_CLOSURE, "")
            conn.refuse(403, b"")
        elif kind == "websocket.http.response.start":
            conn.start_denial(message)
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', but got {kind!r}."
            )

    def _check_after_close(self, kind: str) -> None:
        """A message after the connection closed: an error only if the app closed it."""
        if self._app_closed:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r}, after sending 'websocket.close'."
            )
        if kind == "websocket.close":
            return  # the peer or the server closed first: nothing left to do
        raise ClientDisconnected(f"{kind!r} sent after the WebSocket closed")

    # --- running the app ------------------------------------------------------------------
    async def run(self, app: ASGI3Application) -> None:
        conn = self.conn
        try:
            await app(cast(Scope, conn.scope), self.receive, self.send)
        except ClientDisconnected:
            conn.app_done(failed=False)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                logger.error("Exception in ASGI application\n", exc_info=exc)
            conn.app_done(failed=True)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            conn.app_done(failed=False)
