"""Every example under examples/, run the way its README says: in a fresh
virtual environment, its `pip install` line (with ketch from the release's
dist/, as the README says to do until the first release), then its `ketch`
command from the example's folder (on a free port)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import REPO_DIR, KetchProcess
from support.release import Venv
from websockets.sync.client import connect

pytestmark = pytest.mark.slow

EXAMPLES = REPO_DIR / "examples"


def _readme_commands(example: str) -> tuple[list[str], list[str]]:
    """The README's one `pip install` line and its one `ketch` line."""
    readme = (EXAMPLES / example / "README.md").read_text()
    (block,) = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    lines = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert [line[:2] for line in lines] == [["pip", "install"], ["ketch", "app:app"]], (
        f"{example}/README.md should give a `pip install` line, then a `ketch` line"
    )
    assert "--find-links /path/to/ketch/dist" in readme
    return lines[0], lines[1]


def test_every_example_is_tested() -> None:
    readmes = {path.parent.name for path in EXAMPLES.glob("*/README.md")}
    tested = {"hello", "starlette_app", "flask_app", "chat"}
    assert readmes - {"docker"} == tested  # examples/docker: tests/integration/test_docker.py


@pytest.fixture
def example(request: pytest.FixtureRequest, release: Path, tmp_path: Path) -> Iterator[str]:
    """The URL of the example named by the test, served as its README says."""
    pip, command = _readme_commands(request.param)
    venv = Venv(tmp_path / "venv")
    venv.pip(*pip[1:], "--find-links", str(release / "dist"))
    args = [*command[1:], "--port", "0"]
    ketch = [str(venv.bin / "ketch")]
    with KetchProcess(args, command=ketch, cwd=EXAMPLES / request.param, env=venv.env()) as server:
        yield f"http://127.0.0.1:{server.port()}"


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


def test_hatch_run_serve_hello_serves_the_hello_example() -> None:
    """The README's first command: the `serve` environment holds ketch alone
    and its `hello` script serves examples/hello (run here with the
    development environment's ketch, which is the same code)."""
    import tomllib

    hatch = tomllib.loads((REPO_DIR / "hatch.toml").read_text())
    serve = hatch["envs"]["serve"]
    assert serve["template"] == "serve" and "dependencies" not in serve  # nothing else
    assert all(m["path"].startswith("packages/server-") for m in serve["workspace"]["members"])
    command = shlex.split(serve["scripts"]["hello"].replace("{args}", ""))
    assert command[0] == "ketch"
    readme = (REPO_DIR / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)\n", readme)
    assert first is not None and "hatch run serve:hello" in first.group(1)
    with KetchProcess([*command[1:], "--port", "0"], cwd=REPO_DIR) as server:
        assert "Hello from ketch" in httpx.get(f"http://127.0.0.1:{server.port()}/").text
