"""The release: every distribution built and checked by the release workflow's
own commands, and installed from `dist/` the way docs/installation.md says."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import REPO_DIR, KetchProcess
from support.release import Venv, distributions, run_commands, run_job, steps, version

pytestmark = pytest.mark.slow

INSTALLATION = REPO_DIR / "docs" / "installation.md"


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    return Venv(tmp_path / "venv")


def test_every_distribution_is_built_with_its_sdist(release: Path) -> None:
    built = sorted(path.name for path in (release / "dist").iterdir())
    expected = []
    for name in distributions():
        stem = f"{name.replace('-', '_')}-{version()}"
        expected += [f"{stem}-py3-none-any.whl", f"{stem}.tar.gz"]
    assert built == sorted(expected)


def test_the_workflow_installs_the_tools_the_development_environment_has() -> None:
    """The build job's only untested step installs these; the tests use the
    same tools from hatch.toml, so the job builds what the tests built."""
    (install,) = [s["run"] for s in steps("build") if "pip install" in s.get("run", "")]
    hatch_toml = (REPO_DIR / "hatch.toml").read_text()
    for word in shlex.split(install)[4:]:
        requirement = Requirement(word)
        assert f'"{word}' in hatch_toml, f"{word} is not a development dependency"
        assert importlib.metadata.version(requirement.name)


def test_the_build_refuses_a_tag_that_is_not_the_version(tmp_path: Path) -> None:
    (command,) = [c for c in run_commands("build") if "tools/dist.py" in c]
    assert command == 'python tools/dist.py --tag "$GITHUB_REF_NAME"'
    result = subprocess.run(
        [sys.executable, REPO_DIR / "tools" / "dist.py", "--tag", "v99.0", "--outdir", tmp_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"tag v99.0 is not the version of every distribution (['{version()}'])" in result.stderr
    assert not list(tmp_path.iterdir())  # refused before building anything


def test_the_meta_package_is_published_last(release: Path, tmp_path: Path) -> None:
    shutil.copytree(release / "dist", tmp_path / "dist")
    run_job("publish", tmp_path)
    meta = sorted(path.name for path in (tmp_path / "meta").iterdir())
    assert meta == [f"ketch-{version()}-py3-none-any.whl", f"ketch-{version()}.tar.gz"]
    first = {path.name.split("-")[0] for path in (tmp_path / "dist").iterdir()}
    assert first == {name.replace("-", "_") for name in distributions() if name != "ketch"}
    publish = [s for s in steps("publish") if "uses" in s and "pypi-publish" in s["uses"]]
    assert [s["with"]["packages-dir"] for s in publish] == ["dist/", "meta/"]


def _metadata(release: Path) -> dict[str, list[Requirement]]:
    requires = {}
    for wheel in (release / "dist").glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            meta = Parser().parsestr(archive.read(name).decode())
        requires[meta["Name"]] = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return requires


def _installed_by_pip_install_ketch(release: Path, environment: dict[str, str]) -> set[str]:
    """What `pip install ketch` pulls from PyPI where `environment` holds,
    following ketch's own distributions and their extras, as pip does."""
    requires = _metadata(release)
    todo = [(Requirement("ketch"), "")]
    seen, third_party = set(), set()
    while todo:
        requirement, extra = todo.pop()
        marker = requirement.marker
        if marker is not None and not marker.evaluate({**environment, "extra": extra}):
            continue
        name = str(canonicalize_name(requirement.name))
        if name not in requires:
            third_party.add(name)
            continue
        for wanted in ["", *requirement.extras]:
            if (name, wanted) not in seen:
                seen.add((name, wanted))
                todo += [(r, wanted) for r in requires[name]]
    return third_party


def _platform(system: str, python: str = "CPython") -> dict[str, str]:
    return {"sys_platform": system, "platform_python_implementation": python}


@pytest.mark.parametrize(
    ("platform", "left_out"),
    [
        (_platform("darwin"), set()),
        (_platform("win32"), {"uvloop", "gunicorn"}),
        (_platform("linux", "PyPy"), {"uvloop", "httptools"}),
    ],
)
def test_native_dependencies_are_left_out_where_they_cannot_run(
    release: Path, platform: dict[str, str], left_out: set[str]
) -> None:
    everything = _installed_by_pip_install_ketch(release, _platform("linux"))
    assert {"uvloop", "httptools", "gunicorn", "watchfiles", "websockets"} <= everything
    assert _installed_by_pip_install_ketch(release, platform) == everything - left_out


def test_wheels_are_namespace_portions_with_type_information(release: Path) -> None:
    for name, folder in distributions().items():
        (wheel,) = (release / "dist").glob(f"{name.replace('-', '_')}-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        assert "ketch/__init__.py" not in names, wheel.name
        portions = [p.name for p in (folder / "src" / "ketch").glob("*") if p.is_dir()]
        if not portions:
            assert not [n for n in names if n.startswith("ketch/")], "the meta-package has no code"
        for portion in portions:
            assert f"ketch/{portion}/py.typed" in names, wheel.name
            assert f"ketch/{portion}/__init__.py" in names, wheel.name


def _page_command(prefix: str) -> list[str]:
    """The one line of docs/installation.md that starts with `prefix`."""
    lines = re.findall(rf"^{re.escape(prefix)}.*$", INSTALLATION.read_text(), re.MULTILINE)
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("  #")[0])


def test_install_into_another_project_as_the_installation_page_says(
    release: Path, venv: Venv, tmp_path: Path
) -> None:
    """In a project next to the clone: the page's `pip install --find-links`
    line, word for word but for the clone's path, then `ketch` serves."""
    pip, *args = _page_command("pip install --find-links /path/to/ketch/dist")
    assert pip == "pip"
    args = [arg.replace("/path/to/ketch", str(release)) for arg in args]
    project = tmp_path / "myproject"
    project.mkdir()
    (project / "main.py").write_text((REPO_DIR / "examples" / "hello" / "app.py").read_text())
    venv.pip(*args, cwd=project)
    installed = venv.distributions()
    wanted = [str(canonicalize_name(r.name)) for r in _metadata(release)["ketch"]]
    for name in [*wanted, "httptools", "uvloop", "websockets", "wsproto", "watchfiles"]:
        assert name in installed, name
    ketch = [str(venv.bin / "ketch")]
    result = subprocess.run([*ketch, "--version"], capture_output=True, text=True, env=venv.env())
    assert result.stdout.startswith(f"Running ketch {version()} with CPython")
    args = ["main:app", "--port", "0", "--http", "httptools", "--loop", "uvloop", "--workers", "2"]
    with KetchProcess(args, command=ketch, cwd=project, env=venv.env()) as server:
        assert "Hello from ketch" in httpx.get(f"http://127.0.0.1:{server.port()}/").text


def test_ketch_proxy_alone_installs_nothing_else(release: Path, venv: Venv) -> None:
    venv.pip("install", "--find-links", str(release / "dist"), "ketch-proxy")
    assert {d for d in venv.distributions() if d not in ("pip", "setuptools")} == {"ketch-proxy"}
    result = subprocess.run(
        [str(venv.bin / "python"), "-c", "from ketch.proxy import ProxyHeadersMiddleware"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_partial_install_names_what_is_missing(release: Path, venv: Venv) -> None:
    venv.pip("install", "--find-links", str(release / "dist"), "ketch-cli", "ketch-http")
    installed = venv.distributions()
    assert "ketch-supervisor" not in installed
    assert "ketch-ws" not in installed
    ketch = [str(venv.bin / "ketch")]
    env = {**venv.env(), "PYTHONPATH": str(REPO_DIR / "tests")}  # for support.apps

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ketch, "support.apps:hello", *args],
            capture_output=True,
            text=True,
            env=env,
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
    with KetchProcess(args, command=ketch, env=env) as server:
        assert httpx.get(f"http://127.0.0.1:{server.port()}/").text == "Hello, world!"
