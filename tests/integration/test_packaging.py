"""Each distribution builds on its own into a wheel that installs and works alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from support import REPO_DIR, KetchProcess

pytestmark = pytest.mark.slow

PACKAGES = {
    "server-core": "ketch_core",
    "server-http": "ketch_http",
    "server-ws": "ketch_ws",
    "server-proxy": "ketch_proxy",
    "server-supervisor": "ketch_supervisor",
    "server-cli": "ketch_cli",
    "ketch": "ketch",
}
PORTION = {
    "ketch_core": "core",
    "ketch_http": "http",
    "ketch_ws": "ws",
    "ketch_proxy": "proxy",
    "ketch_supervisor": "supervisor",
    "ketch_cli": "cli",
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for folder in PACKAGES:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--no-isolation",
                "--outdir",
                str(out),
                str(REPO_DIR / "packages" / folder),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return out


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"
        uv = shutil.which("uv")
        if uv:
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(path)], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        self.uv = uv

    def install(self, *requirements: str, find_links: Path, no_deps: bool = False) -> None:
        extra = ["--no-deps"] if no_deps else []
        if self.uv:
            command = [self.uv, "pip", "install", "-q", "--python", str(self.bin / "python")]
        else:
            command = [str(self.bin / "python"), "-m", "pip", "install", "-q"]
        subprocess.run(
            [*command, "--find-links", str(find_links), *extra, *requirements],
            check=True,
            timeout=300,
        )

    def distributions(self) -> set[str]:
        script = (
            "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'])"
        )
        result = subprocess.run(
            [str(self.bin / "python"), "-c", script], capture_output=True, text=True, check=True
        )
        return {line.strip().lower() for line in result.stdout.splitlines() if line.strip()}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(REPO_DIR / "tests")  # for support.apps
        return env


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    return Venv(tmp_path / "venv")


def test_wheels_are_namespace_portions_with_type_information(wheels: Path) -> None:
    built = sorted(wheels.glob("*.whl"))
    assert len(built) == 7
    for wheel in built:
        project = wheel.name.split("-")[0]
        names = zipfile.ZipFile(wheel).namelist()
        assert "ketch/__init__.py" not in names, wheel.name
        if project in PORTION:
            assert f"ketch/{PORTION[project]}/py.typed" in names, wheel.name
            assert f"ketch/{PORTION[project]}/__init__.py" in names, wheel.name
        else:
            assert not [n for n in names if n.startswith("ketch/")], "the meta-package has no code"


def test_ketch_proxy_alone_installs_nothing_else(wheels: Path, venv: Venv) -> None:
    venv.install("ketch-proxy", find_links=wheels)
    assert {d for d in venv.distributions() if d not in ("pip", "setuptools")} == {"ketch-proxy"}
    result = subprocess.run(
        [str(venv.bin / "python"), "-c", "from ketch.proxy import ProxyHeadersMiddleware"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_pip_install_ketch_gives_the_command(wheels: Path, venv: Venv) -> None:
    venv.install("ketch", find_links=wheels)
    installed = venv.distributions()
    for name in (
        "ketch-core",
        "ketch-http",
        "ketch-ws",
        "ketch-proxy",
        "ketch-supervisor",
        "ketch-cli",
        "httptools",
        "uvloop",
        "websockets",
        "wsproto",
        "watchfiles",
    ):
        assert name in installed, name
    version = subprocess.run(
        [str(venv.bin / "ketch"), "--version"], capture_output=True, text=True, env=venv.env()
    )
    assert version.stdout.startswith("Running ketch 0.1.0 with CPython")
    args = ["support.apps:hello", "--port", "0", "--http", "httptools", "--loop", "uvloop"]
    with KetchProcess(args, command=[str(venv.bin / "ketch")], env=venv.env()) as ketch:
        assert httpx.get(f"http://127.0.0.1:{ketch.port()}/").text == "Hello, world!"


def test_partial_install_names_what_is_missing(wheels: Path, venv: Venv) -> None:
    venv.install("ketch-cli", "ketch-http", find_links=wheels)
    installed = venv.distributions()
    assert "ketch-supervisor" not in installed
    assert "ketch-ws" not in installed
    ketch = [str(venv.bin / "ketch")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ketch, "support.apps:hello", *args],
            capture_output=True,
            text=True,
            env=venv.env(),
            timeout=30,
        )

    workers = run("--workers", "2")
    assert workers.returncode != 0
    assert "pip install ketch-supervisor" in workers.stderr
    assert "Traceback" not in workers.stderr
    reload = run("--reload")
    assert "pip install ketch-supervisor" in reload.stderr
    ws = run("--ws", "websockets")
    assert ws.returncode != 0
    assert "pip install ketch-ws" in ws.stderr
    assert "Traceback" not in ws.stderr
    args = ["support.apps:hello", "--port", "0"]
    with KetchProcess(args, command=ketch, env=venv.env()) as server:
        assert httpx.get(f"http://127.0.0.1:{server.port()}/").text == "Hello, world!"
