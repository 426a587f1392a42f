"""Every example under examples/, started with the one command of its README."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import httpx
import pytest
from support import REPO_DIR, KetchProcess
from support.deploy import KETCH
from websockets.sync.client import connect

EXAMPLES = REPO_DIR / "examples"


def _readme_command(example: str) -> list[str]:
    """The README's `hatch run ketch ...` command, as ketch arguments."""
    readme = (EXAMPLES / example / "README.md").read_text()
    commands = re.findall(r"^hatch run ketch (.+)$", readme, flags=re.MULTILINE)
    assert len(commands) == 1, f"{example}/README.md should give one command"
    return shlex.split(commands[0])


@pytest.fixture
def example(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of the example named by the test, served as its README says (on a free port)."""
    args = [*_readme_command(request.param), "--port", "0"]
    with KetchProcess(args, command=[KETCH], cwd=REPO_DIR) as ketch:
        yield f"http://127.0.0.1:{ketch.port()}"


@pytest.mark.parametrize("example", ["hello"], indirect=True)
def test_hello(example: str) -> None:
    assert "Hello from ketch" in httpx.get(example).text
    assert httpx.get(example + "/json").json()["client"].startswith("127.0.0.1:")
    assert httpx.post(example + "/echo", content=b"ping").content == b"ping"
    assert httpx.get(example + "/nowhere").status_code == 404


@pytest.mark.parametrize("example", ["starlette_app"], indirect=True)
def test_starlette(example: str) -> None:
    home = httpx.get(example + "/").json()
    assert home["hello"] == "starlette"
    assert home["started"] > 0  # set by the lifespan, shared into requests
    created = httpx.post(example + "/items", json={"name": "kettle"})
    assert created.status_code == 201
    item = created.json()
    assert httpx.get(f"{example}/items/{item['id']}").json() == item
    assert httpx.get(example + "/items/999").status_code == 404


@pytest.mark.parametrize("example", ["flask_app"], indirect=True)
def test_flask(example: str) -> None:
    data = httpx.get(example + "/").json()
    assert data == {"hello": "flask", "client": "127.0.0.1", "scheme": "http"}
    assert httpx.get(example + "/hello/ketch").text == "Hello, ketch!\n"
    body = b"x" * (3 * 1024 * 1024 + 5)
    assert httpx.post(example + "/upload", content=body).json() == {"size": len(body)}


@pytest.mark.parametrize("example", ["chat"], indirect=True)
def test_chat(example: str) -> None:
    assert "WebSocket" in httpx.get(example + "/").text
    ws = example.replace("http://", "ws://") + "/ws?name="
    with connect(ws + "alice", open_timeout=10) as alice:
        assert alice.recv(timeout=10) == "* alice joined"
        with connect(ws + "bob", open_timeout=10) as bob:
            assert bob.recv(timeout=10) == "* bob joined"
            assert alice.recv(timeout=10) == "* bob joined"
            alice.send("hi bob")
            assert alice.recv(timeout=10) == "alice: hi bob"
            assert bob.recv(timeout=10) == "alice: hi bob"
        assert alice.recv(timeout=10) == "* bob left"
