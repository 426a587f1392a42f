"""The ketch-proxy wheel alone, in a fresh virtual environment, under another ASGI
server (Uvicorn from the registry, its own proxy handling turned off)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import REPO_DIR, wait_for

pytestmark = pytest.mark.slow

APP = """
import json
import os

from ketch.proxy import ProxyHeadersMiddleware


async def echo(scope, receive, send):
    headers = dict(scope["headers"])
    body = json.dumps(
        {
            "client": scope["client"],
            "scheme": scope["scheme"],
            "server": scope["server"],
            "host": headers.get(b"host", b"").decode("latin-1"),
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


app = ProxyHeadersMiddleware(echo, trusted_hosts=os.environ["TRUSTED_HOSTS"])
"""


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], check=True, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the ketch-proxy wheel and Uvicorn, nothing else of ketch."""
    root = tmp_path_factory.mktemp("proxy-wheel")
    wheels = root / "wheels"
    _run(
        sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", wheels,
        REPO_DIR / "packages" / "server-proxy",
    )  # fmt: skip
    (wheel,) = wheels.glob("ketch_proxy-*.whl")
    env = root / "venv"
    python = env / "bin" / "python"
    uvicorn = f"uvicorn=={importlib.metadata.version('uvicorn')}"  # the one we compare with
    uv = shutil.which("uv")
    if uv:  # much faster than pip; the same installation
        _run(uv, "venv", "-q", "--python", sys.executable, env)
        _run(uv, "pip", "install", "-q", "--python", python, wheel, uvicorn)
    else:
        _run(sys.executable, "-m", "venv", env)
        _run(python, "-m", "pip", "install", "-q", wheel, uvicorn)
    return env


def test_the_wheel_installs_nothing_else_of_ketch(venv: Path) -> None:
    listing = _run(
        venv / "bin" / "python",
        "-c",
        "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'])",
    )
    names = {line.strip().lower() for line in listing.stdout.splitlines()}
    assert {name for name in names if name.startswith("ketch")} == {"ketch-proxy"}
    assert "uvicorn" in names


@pytest.fixture(params=["tcp", "uds"])
def uvicorn(
    request: pytest.FixtureRequest, venv: Path, tmp_path: Path
) -> Iterator[tuple[str, httpx.Client]]:
    """The app wrapped in ProxyHeadersMiddleware, served by Uvicorn on a TCP
    socket we bound (trusting 127.0.0.1) or on a UNIX socket (trusting its
    path); yields the URL and a client that reaches it."""
    (tmp_path / "proxied.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    command = [str(venv / "bin" / "python"), "-m", "uvicorn", "proxied:app"]
    command += ["--no-proxy-headers", "--lifespan", "off", "--log-level", "warning"]
    listener = socket.socket()
    address: str | tuple[str, int]
    if request.param == "tcp":
        listener.bind(("127.0.0.1", 0))
        address = listener.getsockname()
        url = f"http://127.0.0.1:{address[1]}/"
        command += ["--fd", str(listener.fileno())]
        env["TRUSTED_HOSTS"] = "127.0.0.1"
        client = httpx.Client(timeout=5)
    else:
        address = str(tmp_path / "uvicorn.sock")
        url = "http://localhost/"
        command += ["--uds", address]
        env["TRUSTED_HOSTS"] = address
        client = httpx.Client(transport=httpx.HTTPTransport(uds=address), timeout=5)
    server = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    listener.close()

    def accepts() -> bool:
        if server.poll() is not None:
            output = server.stdout.read().decode() if server.stdout else ""
            raise RuntimeError(f"uvicorn exited with {server.returncode}: {output}")
        family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
        with socket.socket(family) as probe:
            return probe.connect_ex(address) == 0

    try:
        wait_for(accepts, timeout=20)
        yield url, client
    finally:
        client.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        if server.stdout:
            server.stdout.close()


def test_the_middleware_under_uvicorn_reads_a_trusted_proxys_headers(
    uvicorn: tuple[str, httpx.Client],
) -> None:
    url, client = uvicorn
    headers = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "example.com",
        "X-Forwarded-Port": "443",
    }
    seen = json.loads(client.get(url, headers=headers).text)
    assert seen["client"] == ["203.0.113.7", 0]
    assert seen["scheme"] == "https"
    assert seen["host"] == "example.com"
    if seen["server"][1] is not None:  # over TCP; a UNIX socket has no port to set
        assert seen["server"][1] == 443


def test_the_middleware_under_uvicorn_without_proxy_headers(
    uvicorn: tuple[str, httpx.Client],
) -> None:
    url, client = uvicorn
    seen = json.loads(client.get(url, headers={"Forwarded": "for=203.0.113.9"}).text)
    assert seen["client"] is None or seen["client"][0] == "127.0.0.1"  # the real peer
    assert seen["scheme"] == "http"
    assert seen["host"] in ("localhost", url.split("/")[2])
