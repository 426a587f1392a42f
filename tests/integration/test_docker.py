"""examples/docker, checked without a container engine (none runs here): the
Dockerfile's shape (stages, user, exec form), and its commands run in the test
environment: the dependency install, the CMD serving, the HEALTHCHECK passing
while it serves and failing once it stopped, SIGTERM draining ketch."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, free_port
from support.release import Venv

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "docker"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    text = re.sub(r"\\\n\s*", " ", (EXAMPLE / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(arguments: str) -> list[str]:
    argv = json.loads(arguments)  # the exec form is a JSON array: no shell in between
    assert isinstance(argv, list) and all(isinstance(word, str) for word in argv)
    return argv


def _cmd() -> list[str]:
    (cmd,) = [args for keyword, args in _final_stage() if keyword == "CMD"]
    return _exec_form(cmd)


def _healthcheck() -> list[str]:
    (check,) = [args for keyword, args in _final_stage() if keyword == "HEALTHCHECK"]
    options, _, command = check.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    return _exec_form(command)


def test_the_image_is_multi_stage_and_runs_ketch_unprivileged() -> None:
    instructions = _instructions()
    assert [args for keyword, args in instructions if keyword == "FROM"] == [
        "python:3.12-slim AS build",
        "python:3.12-slim",  # the same base: the copied venv's interpreter is there
    ]
    final = _final_stage()
    assert ("COPY", "--from=build /venv /venv") in final
    (user,) = [args for keyword, args in final if keyword == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert [k for k, _ in final].index("USER") < [k for k, _ in final].index("CMD")
    cmd = _cmd()
    assert cmd[:2] == ["ketch", "main:app"]
    assert "--workers" in cmd and "--proxy-headers" in cmd
    ignored = (EXAMPLE / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :] == [
        "*",
        "!Dockerfile",
        "!main.py",
        "!requirements.txt",
        "!wheels",
    ]


def test_the_cmd_serves_and_the_health_check_follows_it(release: Path, tmp_path: Path) -> None:
    # The build stage's install, with ketch's wheels from the release.
    (install,) = [args for keyword, args in _instructions() if "pip install" in args]
    words = shlex.split(install)
    assert words[0] == "/venv/bin/pip"
    venv = Venv(tmp_path / "venv")
    paths = {
        "/tmp/wheels": str(release / "dist"),
        "/tmp/requirements.txt": str(EXAMPLE / "requirements.txt"),
    }
    venv.pip(*[paths.get(word, word) for word in words[1:]])
    app = tmp_path / "app"  # WORKDIR /app, COPY main.py ./
    app.mkdir()
    shutil.copy(EXAMPLE / "main.py", app)

    # The CMD and the health check, on loopback and a free port instead of 0.0.0.0:8000.
    port = str(free_port())
    cmd = [{"0.0.0.0": "127.0.0.1", "8000": port}.get(word, word) for word in _cmd()]
    check = [word.replace(":8000/", f":{port}/") for word in _healthcheck()]
    assert check != _healthcheck()

    def healthy() -> bool:
        command = [str(venv.bin / check[0]), *check[1:]]
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0

    server = KetchProcess(cmd[1:], command=[str(venv.bin / cmd[0])], cwd=app, env=venv.env())
    with server:
        server.wait_for_output(r"Started parent process")
        assert int(server.wait_started().rsplit(":", 1)[1]) == int(port)
        answer = httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-Proto": "https"})
        assert answer.json() == {"hello": "docker", "client": "127.0.0.1", "scheme": "https"}
        assert healthy()
        server.signal(signal.SIGTERM)  # `docker stop`: the exec form makes ketch receive it
        assert server.wait(timeout=15) == 0
    assert "Stopping parent process" in server.output
    assert not healthy()
