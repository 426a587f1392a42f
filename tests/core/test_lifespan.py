"""Lifespan: startup before the port opens, state shared into requests, failures."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from support import KetchProcess, free_port, serve
from support.apps import lifespan_with_state, no_lifespan, scope_json


def test_state_from_startup_reaches_every_request() -> None:
    with serve(scope_json, lifespan="on") as running:
        first = httpx.get(running.url).json()
        second = httpx.get(running.url).json()
    assert first["state"] == {"greeting": "hello from lifespan"}
    assert second["state"] == first["state"]


def test_request_state_is_a_shallow_copy() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_with_state(scope, receive, send)
            return
        seen.append(dict(scope["state"]))
        scope["state"]["added_by_request"] = True  # must not leak into the next request
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, lifespan="on") as running:
        httpx.get(running.url)
        httpx.get(running.url)
    assert seen == [{"greeting": "hello from lifespan"}] * 2


def test_shutdown_runs_when_the_server_stops() -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    with serve(app, lifespan="on"):
        assert events == ["lifespan.startup"]
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_off_never_calls_the_app_with_lifespan() -> None:
    with serve(no_lifespan, lifespan="off") as running:
        assert httpx.get(running.url).text == "ok"


def test_auto_serves_an_app_without_lifespan_support(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ketch")
    with serve(no_lifespan, lifespan="auto") as running:
        assert httpx.get(running.url).text == "ok"
    assert "ASGI 'lifespan' protocol appears unsupported." in caplog.text


def test_on_fails_for_an_app_without_lifespan_support() -> None:
    port = free_port()
    args = ["support.apps:no_lifespan", "--lifespan", "on", "--port", str(port)]
    with KetchProcess(args) as ketch:
        assert ketch.wait(15) == 3
    assert "running on" not in ketch.output


@pytest.mark.parametrize(
    ("app", "lifespan", "message"),
    [
        ("support.apps:startup_fails", "auto", "database unreachable"),
        ("support.apps:startup_fails", "on", "database unreachable"),
        ("support.apps:startup_raises", "on", "startup exploded"),
        ("support.apps:startup_raises", "auto", "startup exploded"),
    ],
)
def test_startup_failure_exits_3_and_never_opens_the_port(
    app: str, lifespan: str, message: str
) -> None:
    port = free_port()
    with KetchProcess([app, "--lifespan", lifespan, "--port", str(port)]) as ketch:
        assert ketch.wait(15) == 3
        output = ketch.output
    assert message in output
    assert "Application startup failed. Exiting." in output
    assert "running on" not in output
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
