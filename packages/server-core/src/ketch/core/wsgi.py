"""Running a WSGI (PEP 3333) application as an ASGI one.

The WSGI app runs in a thread pool, and a thread is held by whoever makes it
wait, so slow clients must not get one:

- The request body is read in the event loop, up to `BODY_BUFFER` bytes, before
  the app takes a thread: most bodies are read whole there, and a client that
  sends its body slowly holds a connection, not a thread.
- A longer body is streamed to the app (`wsgi.input` pulls chunks from the event
  loop as the app reads), but only half the threads may do that at once: the
  other half stay for requests that do not wait for the network.
- The response iterable is sent chunk by chunk as the app yields it, with the
  server's write back-pressure reaching the thread; once the client has gone,
  the iterable is closed at its next chunk instead of running on.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Iterable, Sized
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from ketch.core._types import (
    ASGIReceiveCallable,
    ASGISendCallable,
    Environ,
    Message,
    Scope,
    WSGIApplication,
)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
T = TypeVar("T")

# Request bodies up to this size are read before the app takes a thread (the
# HTTP connection's own read buffer is as big).
BODY_BUFFER = 64 * 1024


async def _await(awaitable: Awaitable[T]) -> T:
    """run_coroutine_threadsafe() takes coroutines; ASGI callables return awaitables."""
    return await awaitable


class WSGIMiddleware:
    def __init__(self, app: WSGIApplication, workers: int = 10) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ketch-wsgi")
        # threads that may wait for the rest of a long request body
        self.streaming = asyncio.Semaphore(max(1, workers // 2))

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        kind = scope["type"]
        if kind == "lifespan":  # WSGI has no lifespan; agree to everything
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
            return
        loop = asyncio.get_running_loop()
        body = _Input(receive, loop)
        if not await body.prefill():
            return  # the client left before its body arrived: no one to answer
        responder = _Responder(self.app, build_environ(scope, body), send, loop)
        watcher = loop.create_task(_watch_disconnect(body, responder))
        try:
            if body.complete:
                await loop.run_in_executor(self.executor, responder.run)
            else:
                async with self.streaming:
                    await loop.run_in_executor(self.executor, responder.run)
        finally:
            watcher.cancel()


async def _watch_disconnect(body: _Input, responder: _Responder) -> None:
    """Once the body is read, receive() returns when the client leaves."""
    await body.finished.wait()
    message = await body.receive()
    if message["type"] == "http.disconnect":
        responder.disconnected = True


def build_environ(scope: Scope, body: io.RawIOBase) -> Environ:
    """The PEP 3333 environ of an HTTP scope."""
    root_path: str = scope.get("root_path", "")
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    root = root_path.encode("latin-1")
    if root and raw_path.startswith(root):
        raw_path = raw_path[len(root) :]
    server = scope.get("server") or ("localhost", None)
    scheme = scope.get("scheme", "http")
    port = server[1] if server[1] is not None else (443 if scheme == "https" else 80)
    environ: Environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path,
        # PEP 3333: the percent-decoded path, its bytes as latin-1
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0] if server[1] is not None else "localhost",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper()
        if "_" in key:
            # X_Forwarded_For would otherwise pass for X-Forwarded-For: drop it
            continue
        key = key.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


class _Input(io.RawIOBase):
    """`wsgi.input`: reads the request body from the event loop, on demand."""

    def __init__(self, receive: ASGIReceiveCallable, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.receive = receive
        self._loop = loop
        self._buffer = bytearray()
        self._more = True
        self.finished = asyncio.Event()  # the whole body was received (or the client left)

    @property
    def complete(self) -> bool:
        return not self._more

    def readable(self) -> bool:
        return True

    async def prefill(self) -> bool:
        """In the event loop: read the body up to BODY_BUFFER bytes. False if the
        client left first."""
        while self._more and len(self._buffer) < BODY_BUFFER:
            message = await self.receive()
            if message["type"] != "http.request":
                return False
            self._buffer += message.get("body", b"")
            self._more = message.get("more_body", False)
        if not self._more:
            self.finished.set()
        return True

    def _fill(self) -> bool:
        """Pull the next body chunk (from the worker thread); False at the end."""
        if not self._more:
            return False
        pending = asyncio.run_coroutine_threadsafe(_await(self.receive()), self._loop)
        message: Message = pending.result()
        more = message["type"] == "http.request" and message.get("more_body", False)
        if not more:
            self._loop.call_soon_threadsafe(self.finished.set)
        self._more = more
        if message["type"] != "http.request":
            return False
        self._buffer += message.get("body", b"")
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer and self._fill():
            pass
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        del self._buffer[:size]
        return size

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while b"\n" not in self._buffer and self._fill():
            pass
        end = self._buffer.find(b"\n")
        end = len(self._buffer) if end == -1 else end + 1
        if size is not None and size >= 0:
            end = min(end, size)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data


class _Responder:
    def __init__(
        self,
        app: WSGIApplication,
        environ: Environ,
        send: ASGISendCallable,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app = app
        self.environ = environ
        self.send = send
        self.loop = loop
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_sent = False
        self.started = False
        self.disconnected = False  # set from the event loop when the client leaves

    def start_response(
        self,
        status: str,
        response_headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Any:
        if exc_info is not None and self.headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        if self.started and exc_info is None:
            raise RuntimeError("start_response() was called twice without exc_info")
        self.started = True
        self.status = int(status.split(" ", 1)[0])
        self.headers = [
            (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
            for name, value in response_headers
        ]
        return self.write

    def _send(self, message: Message) -> None:
        asyncio.run_coroutine_threadsafe(_await(self.send(message)), self.loop).result()

    def _send_head(self) -> None:
        if not self.started:
            raise RuntimeError("the WSGI application did not call start_response()")
        self.headers_sent = True
        self._send({"type": "http.response.start", "status": self.status, "headers": self.headers})

    def write(self, data: bytes) -> None:
        """The legacy write() callable of start_response."""
        if not self.headers_sent:
            self._send_head()
        if data:
            self._send({"type": "http.response.body", "body": data, "more_body": True})

    def run(self) -> None:
        """In a worker thread: call the app and send each chunk as it comes.

        A sequence of one item (PEP 3333 lets a server trust its len()) is the
        whole body: it goes out as the final body message, with a Content-Length."""
        result: Iterable[bytes] = self.app(self.environ, self.start_response)
        last = b""
        try:
            if isinstance(result, Sized) and len(result) == 1:
                last = b"".join(result)
            else:
                for chunk in result:
                    if self.disconnected:
                        break  # the client left: close() below ends the app's iterable
                    if chunk:
                        self.write(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not self.headers_sent:
            self._send_head()
        self._send({"type": "http.response.body", "body": last, "more_body": False})
