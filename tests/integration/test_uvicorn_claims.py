"""What the documentation says Uvicorn does or lacks, checked against the
Uvicorn of the development environment (0.54). ketch's side of each claim is
proven by the test named beside it in docs/migration.md; these tests fail
when an upgraded Uvicorn makes a sentence of the docs untrue."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import ssl
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import trustme
import uvicorn
from support import REPO_DIR, free_port, wait_for
from support.apps import wsgi_app
from uvicorn.main import main as uvicorn_command
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ketch.core.config import cli_flag, options

WAITING_APP = """
async def app(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
"""


def test_the_version_the_docs_speak_of() -> None:
    assert uvicorn.__version__ == "0.54.0"


def test_the_options_ketch_adds_are_not_uvicorns() -> None:
    theirs = {
        flag
        for param in uvicorn_command.params
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
    }
    for field, option in options():
        if not option.cli:
            continue
        flag = cli_flag(field, option)
        assert (flag in theirs) is not option.help.startswith("(ketch) "), flag
    assert "--forwarded-trust-ips" not in theirs


def test_uvicorn_takes_a_wsgi_app_for_asgi2() -> None:
    config = uvicorn.Config(wsgi_app)
    config.load()
    assert config.interface == "asgi2"  # ketch: wsgi (tests/core/test_interfaces.py)


def test_uvicorn_ignores_workers_with_reload(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        uvicorn.Config("main:app", reload=True, workers=2, log_config=None)
    assert '"workers" flag is ignored when reloading is enabled.' in caplog.text


def test_uvicorn_answers_worker_health_checks_from_a_thread() -> None:
    """So a worker whose event loop is blocked still looks healthy to it."""
    from uvicorn.supervisors.multiprocess import Process

    assert "threading.Thread(target=self.always_pong" in inspect.getsource(Process.target)


def test_uvicorn_http2_without_zttp_is_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "support.apps:hello", "--http2"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR / "tests")},
    )
    assert result.returncode != 0
    # ketch serves HTTP/2 (tests/h2/), or says in one line what to install
    # (tests/h2/test_protocol.py::test_http2_without_ketch_h2_is_one_line_naming_the_package)
    assert "Traceback" in result.stderr


def test_uvicorns_gunicorn_worker_maps_fewer_settings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from uvicorn.workers import UvicornWorker
    source = inspect.getsource(UvicornWorker)
    for setting in ("graceful_timeout", "max_requests_jitter", "worker_connections"):
        assert setting not in source, setting
    for setting in ("limit_request_line", "limit_request_fields", "SCRIPT_NAME"):
        assert setting not in source, setting


def _through_uvicorns_middleware(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {
        "type": "http",
        "scheme": "http",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": headers,
    }
    middleware = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
    asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
    return seen


def test_uvicorns_proxy_middleware_reads_neither_forwarded_nor_host_and_port() -> None:
    seen = _through_uvicorns_middleware(
        [
            (b"forwarded", b"for=203.0.113.7;proto=https;host=example.com"),
            (b"x-forwarded-host", b"example.com"),
            (b"x-forwarded-port", b"443"),
        ]
    )
    assert seen["client"] == ("127.0.0.1", 5000)
    assert seen["scheme"] == "http"
    assert seen["server"] == ("127.0.0.1", 8000)
    assert seen["headers"][1] == (b"x-forwarded-host", b"example.com")  # no host header made


ECHO_CLIENT_APP = """
import json

async def app(scope, receive, send):
    body = json.dumps(scope.get("client")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""

Start = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def start_uvicorn(tmp_path: Path) -> Iterator[Start]:
    """Starts `uvicorn app:app ARGS` for the app's source; stops them all at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(source: str, *args: str) -> subprocess.Popen[bytes]:
        (tmp_path / "app.py").write_text(source)
        command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(tmp_path), *args]
        quiet = subprocess.DEVNULL
        started.append(subprocess.Popen(command, stdout=quiet, stderr=quiet))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_uvicorn_closes_websockets_with_1012_on_every_shutdown(start_uvicorn: Start) -> None:
    """ketch says 1001 (going away) on a shutdown, 1012 only on a restart."""
    port = free_port()
    server = start_uvicorn(WAITING_APP, "--port", str(port), "--lifespan", "off")

    def connected() -> Any:
        assert server.poll() is None
        try:
            return connect(f"ws://127.0.0.1:{port}/", open_timeout=2)
        except OSError:
            return None

    with wait_for(connected, timeout=20, interval=0.05) as ws:
        server.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012


def test_uvicorn_gives_no_client_address_on_a_unix_socket(
    start_uvicorn: Start, tmp_path: Path
) -> None:
    """So its proxy headers cannot trust nginx by the socket's path, only with `*`."""
    path = str(tmp_path / "uvicorn.sock")
    server = start_uvicorn(
        ECHO_CLIENT_APP, "--uds", path, "--forwarded-allow-ips", path, "--lifespan", "off"
    )
    wait_for(lambda: os.path.exists(path) or server.poll() is not None, timeout=20)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=5) as client:
        answer = client.get("http://localhost/", headers={"X-Forwarded-For": "203.0.113.7"})
    assert answer.json() is None  # ketch gives the proxy's client: test_proxy_headers.py


EXTENSIONS_APP = """
import json

async def app(scope, receive, send):
    body = json.dumps(scope.get("extensions")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def test_uvicorn_announces_no_http_extension(start_uvicorn: Start, tmp_path: Path) -> None:
    """No `extensions` in its HTTP scopes, even over TLS with a client certificate:
    no tls, and Starlette's FileResponse streams files instead of pathsend.
    ketch's side: tests/core/test_tls_extension.py, tests/http/test_pathsend.py."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = free_port()
    start_uvicorn(
        EXTENSIONS_APP,
        *("--port", str(port), "--lifespan", "off"),
        *("--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")),
        *(
            "--ssl-cert-reqs",
            str(int(ssl.CERT_REQUIRED)),
            "--ssl-ca-certs",
            str(tmp_path / "ca.pem"),
        ),
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    ca.issue_cert("client@example.com").configure_cert(context)

    def answer() -> Any:
        try:
            return httpx.get(f"https://127.0.0.1:{port}/", verify=context, timeout=2)
        except httpx.TransportError:
            return None

    response = wait_for(answer, timeout=20, interval=0.1)
    assert response.json() is None
