"""The release as `.github/workflows/release.yml` makes it, and fresh virtual
environments to install it into as a user would.

The workflow cannot run here (it needs GitHub and PyPI), so the tests run its
`run` steps, word for word, in a copy of the repository: what they build is
what a tag would publish.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomllib
import yaml

from support import REPO_DIR

WORKFLOW = REPO_DIR / ".github" / "workflows" / "release.yml"
# What the build needs from a checkout (a copy, so that uncommitted work is tested too).
CHECKOUT = ["packages", "tools", "LICENSE"]
IGNORE = shutil.ignore_patterns("__pycache__", "dist", "build", "*.egg-info", ".mypy_cache")


def version() -> str:
    """The one version of every distribution (released in lockstep)."""
    versions = {
        tomllib.loads(path.read_text())["project"]["version"]
        for path in REPO_DIR.glob("packages/*/pyproject.toml")
    }
    (only,) = versions
    return only


def distributions() -> dict[str, Path]:
    """Each distribution's name and folder, as tools/dist.py discovers them."""
    return {
        tomllib.loads(path.read_text())["project"]["name"]: path.parent
        for path in sorted(REPO_DIR.glob("packages/*/pyproject.toml"))
    }


def steps(job: str) -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    result: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return result


def run_commands(job: str) -> list[str]:
    """The shell commands of a job, in order, except installing the tools
    (the test environment has them: see test_packaging)."""
    return [s["run"] for s in steps(job) if "run" in s and "pip install" not in s["run"]]


def run_job(job: str, cwd: Path) -> None:
    """Run the `run` steps of a workflow job in `cwd` as GitHub would, for the
    tag of the current version, with this environment's `python`."""
    env = dict(os.environ)
    env["GITHUB_REF_NAME"] = f"v{version()}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for command in run_commands(job):
        result = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"


def checkout(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT:
        source = REPO_DIR / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=IGNORE)
        else:
            shutil.copy(source, destination / name)
    return destination


class Venv:
    """A fresh virtual environment (uv's when uv is there: much faster, the
    same installation) and the commands of its `bin`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"
        self.uv = shutil.which("uv")
        if self.uv:
            command = [self.uv, "venv", "-q", "--python", sys.executable, str(path)]
        else:
            command = [sys.executable, "-m", "venv", str(path)]
        subprocess.run(command, check=True, timeout=120)

    def pip(self, *args: str, cwd: Path | None = None) -> None:
        """`pip ARGS` as a user types it in this environment."""
        if self.uv:
            command = [self.uv, "pip", *args[:1], "--python", str(self.bin / "python"), *args[1:]]
        else:
            command = [str(self.bin / "python"), "-m", "pip", *args]
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"pip {' '.join(args)}:\n{result.stdout}{result.stderr}"

    def distributions(self) -> set[str]:
        script = (
            "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'])"
        )
        result = subprocess.run(
            [str(self.bin / "python"), "-c", script], capture_output=True, text=True, check=True
        )
        return {line.strip().lower() for line in result.stdout.splitlines() if line.strip()}

    def env(self) -> dict[str, str]:
        """The environment of a shell where this virtual environment is active."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.path)
        return env
