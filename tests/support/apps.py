"""Small applications the tests serve (in a thread, or as `support.apps:NAME` in a
subprocess)."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import json
import os
import time
from collections.abc import Iterable
from typing import Any

Scope = dict[str, Any]


async def _respond(
    send: Any, status: int, body: bytes, content_type: bytes = b"text/plain", headers: Any = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await _respond(send, 200, b"Hello, world!")


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the request body."""
    assert scope["type"] == "http"
    body = await _read_body(receive)
    await _respond(send, 200, body, b"application/octet-stream")


async def scope_json(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the parts of the scope a test may check, as JSON."""
    if scope["type"] == "lifespan":
        await lifespan_with_state(scope, receive, send)
        return
    data = {
        "type": scope["type"],
        "http_version": scope["http_version"],
        "method": scope.get("method"),
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "state": {k: v for k, v in scope.get("state", {}).items() if isinstance(v, str | int)},
        "asgi": scope["asgi"],
        "pid": os.getpid(),
    }
    await _respond(send, 200, json.dumps(data).encode(), b"application/json")


async def scope_json_ws(scope: Scope, receive: Any, send: Any) -> None:
    """scope_json for HTTP; a WebSocket is accepted, sent its client, scheme and
    host headers as JSON, and closed."""
    if scope["type"] != "websocket":
        await scope_json(scope, receive, send)
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    host = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
    data = {"client": scope["client"], "scheme": scope["scheme"], "host": host}
    await send({"type": "websocket.send", "text": json.dumps(data)})
    await send({"type": "websocket.close", "code": 1000})


async def lifespan_with_state(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from lifespan"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def startup_fails(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await _respond(send, 200, b"should never be served")


async def startup_raises(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("startup exploded")
    await _respond(send, 200, b"should never be served")


async def no_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    """An app that does not know lifespan: it rejects every non-HTTP scope."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope {scope['type']}")
    await _respond(send, 200, b"ok")


async def slow(scope: Scope, receive: Any, send: Any) -> None:
    """Answers after `?seconds` (default 1) seconds: a request in flight."""
    if scope["type"] == "lifespan":
        await lifespan_with_state(scope, receive, send)
        return
    query = scope["query_string"].decode()
    seconds = float(query.split("=", 1)[1]) if "=" in query else 1.0
    print(f"slow request started ({seconds}s)", flush=True)  # tests wait for this line
    await asyncio.sleep(seconds)
    await _respond(send, 200, f"slept {seconds}".encode())


async def brief(scope: Scope, receive: Any, send: Any) -> None:
    """Answers after 20 ms: under load, some requests are always in flight."""
    if scope["type"] == "lifespan":
        await lifespan_with_state(scope, receive, send)
        return
    await asyncio.sleep(0.02)
    await _respond(send, 200, b"Hello, world!")


async def raises(scope: Scope, receive: Any, send: Any) -> None:
    raise RuntimeError("the app failed")


async def raises_after_start(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("the app failed half-way")


async def returns_early(scope: Scope, receive: Any, send: Any) -> None:
    return None


async def stream(scope: Scope, receive: Any, send: Any) -> None:
    """`?n=COUNT&size=BYTES` chunks, sent as a streamed (chunked) response."""
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    count, size = int(query.get("n", "4")), int(query.get("size", "10"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(count):
        chunk = bytes([ord("a") + index % 26]) * size
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def wait_for_disconnect(scope: Scope, receive: Any, send: Any) -> None:
    """Reads the body, then waits for http.disconnect and records that it came."""
    await _read_body(receive)
    message = await receive()
    DISCONNECTS.append(message["type"])


DISCONNECTS: list[str] = []


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A WSGI app that reports its environ and the body it read."""
    body = environ["wsgi.input"].read()
    keys = (
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_PROTOCOL",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "HTTP_X_CUSTOM",
        "REMOTE_ADDR",
        "wsgi.url_scheme",
    )
    data = {key: environ.get(key) for key in keys}
    data["body"] = body.decode("latin-1")
    payload = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload]


def wsgi_stream(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for index in range(3):
        yield f"part {index}\n".encode()


class ASGI2App:
    """An ASGI 2 application class: constructed with the scope, then called."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await _respond(send, 200, b"asgi2 class")


def asgi2_function(scope: Scope) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await _respond(send, 200, b"asgi2 function")

    return instance


class ASGI3Instance:
    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await _respond(send, 200, b"asgi3 instance")


asgi3_instance = ASGI3Instance()


def factory() -> Any:
    return hello


CONTEXT_PROBE: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="fresh")


async def context_probe(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the value of CONTEXT_PROBE that the request sees."""
    if scope["type"] == "http":
        await _respond(send, 200, CONTEXT_PROBE.get().encode())


def context_probe_factory() -> Any:
    """Sets CONTEXT_PROBE while the server starts (as an app's setup code might)."""
    CONTEXT_PROBE.set("set at startup")
    return context_probe


def blocking(scope: Scope, receive: Any, send: Any) -> Any:
    """Blocks the event loop for `?seconds` (a misbehaving endpoint)."""

    async def run() -> None:
        if scope["type"] == "lifespan":
            await lifespan_with_state(scope, receive, send)
            return
        query = scope["query_string"].decode()
        time.sleep(float(query.split("=", 1)[1]) if "=" in query else 1.0)
        await _respond(send, 200, b"done blocking")

    return run()


async def slow_start(scope: Scope, receive: Any, send: Any) -> None:
    """`scope_json`, with a lifespan startup that takes as many seconds as the file
    named by $KETCH_TEST_SLOW_START holds, while that file exists: workers started
    after a test writes it are slow to serve (a replacement during a restart)."""
    if scope["type"] == "lifespan":
        path = os.environ.get("KETCH_TEST_SLOW_START", "")
        if path and os.path.exists(path):
            with open(path) as file:
                seconds = float(file.read())
            print(f"slow startup ({seconds}s)", flush=True)  # tests wait for this line
            await asyncio.sleep(seconds)
    await scope_json(scope, receive, send)


LEAKED: list[bytes] = []


async def leaky(scope: Scope, receive: Any, send: Any) -> None:
    """`scope_json` that keeps 64 KiB more of memory (written, so resident) per
    request: a leak for --limit-worker-memory to bound."""
    if scope["type"] == "http":
        LEAKED.append(b"x" * (64 * 1024))
    await scope_json(scope, receive, send)


async def observed(scope: Scope, receive: Any, send: Any) -> None:
    """For the access-log and metrics tests, by path:

    - `/crash`: raises (a traceback in the error log);
    - `/stream?n=COUNT&pause=SECONDS`: COUNT chunks of 10 bytes, a pause before each;
    - WebSocket `/ws`: accepted, echoes every message; any other path: denied (403);
    - anything else: reads the body, sleeps `?sleep=SECONDS`, answers `?status=`
      (200) with the 10 bytes `0123456789`.

    Every HTTP response carries `x-app: observed` and `x-pid: <the worker's pid>`."""
    if scope["type"] == "lifespan":
        await lifespan_with_state(scope, receive, send)
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if scope["path"] != "/ws":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({**message, "type": "websocket.send"})
        return
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    if scope["path"] == "/crash":
        raise RuntimeError("the app failed on purpose")
    headers = [(b"x-app", b"observed"), (b"x-pid", str(os.getpid()).encode())]
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(int(query.get("n", "3"))):
            await asyncio.sleep(float(query.get("pause", "0")))
            await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await _read_body(receive)
    await asyncio.sleep(float(query.get("sleep", "0")))
    await _respond(send, int(query.get("status", "200")), b"0123456789", headers=headers)


class _MallInfo2(ctypes.Structure):
    # glibc's struct mallinfo2 (2.33+): the fields in order, all size_t
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


async def malloc_probe(scope: Scope, receive: Any, send: Any) -> None:
    """Where this process's malloc puts a 3 MiB block: "heap" or "mmap"
    (glibc's own accounting, mallinfo2)."""
    assert scope["type"] == "http"
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    before = mallinfo2().hblkhd
    block = ctypes.create_string_buffer(3 * 1024 * 1024)
    mapped = mallinfo2().hblkhd - before >= len(block)
    del block
    await _respond(send, 200, b"mmap" if mapped else b"heap")
