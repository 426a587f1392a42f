"""Running a WSGI (PEP 3333) application as an ASGI one.

The WSGI app runs in a thread pool. The request body is streamed to it
(`wsgi.input` pulls chunks from the event loop as the app reads) and its
response iterable is streamed back chunk by chunk, with the server's write
back-pressure reaching the worker thread.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Iterable
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


async def _await(awaitable: Awaitable[T]) -> T:
    """run_coroutine_threadsafe() takes coroutines; ASGI callables return awaitables."""
    return await awaitable


class WSGIMiddleware:
    def __init__(self, app: WSGIApplication, workers: int = 10) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ketch-wsgi")

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
        responder = _Responder(self.app, build_environ(scope, body), send, loop)
        await loop.run_in_executor(self.executor, responder.run)


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
        self._receive = receive
        self._loop = loop
        self._buffer = bytearray()
        self._more = True

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Pull the next body chunk (from the worker thread); False at the end."""
        if not self._more:
            return False
        pending = asyncio.run_coroutine_threadsafe(_await(self._receive()), self._loop)
        message: Message = pending.result()
        if message["type"] != "http.request":
            self._more = False
            return False
        self._buffer += message.get("body", b"")
        self._more = message.get("more_body", False)
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
        """In a worker thread: call the app and stream its response.

        One chunk is held back so that the last one goes out as the final body
        message: a one-chunk response then gets a Content-Length, not chunking."""
        result: Iterable[bytes] = self.app(self.environ, self.start_response)
        pending = b""
        try:
            for chunk in result:
                if not chunk:
                    continue
                if pending:
                    self.write(pending)
                pending = chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not self.headers_sent:
            self._send_head()
        self._send({"type": "http.response.body", "body": pending, "more_body": False})
