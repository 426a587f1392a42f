"""Build every distribution of the repository into dist/ and check what PyPI will show.

    hatch run dist                     # wheels and sdists of packages/*/ into dist/
    python tools/dist.py --tag v0.1.0  # the release workflow: the tag must be the version

The distributions are the folders `packages/*/` that have a `pyproject.toml`,
so a new one is built and released with the others without a change here.
Each is built from its sdist (so the sdist is complete), without build
isolation (hatchling comes from this environment: `build`, `hatchling`,
`twine`, `trove-classifiers` and `readme-renderer[md]`, all in hatch.toml and
in the release workflow).

Then the metadata is checked, and any problem stops with exit status 1:

- one version for all (they are released in lockstep), the tag's if given,
  and `ketch-*` requirements pinned to it exactly; `__version__` agrees;
- the long description renders on PyPI (`twine check --strict`) and has no
  relative links, which PyPI cannot follow;
- Requires-Python, the license (an SPDX expression, and the license text in
  every wheel and sdist), project URLs, and classifiers that PyPI knows;
- platform markers on every native or POSIX-only dependency (NATIVE below), so
  `pip install ketch` installs wherever Python does and leaves out what cannot
  run there;
- each wheel is a portion of the `ketch` namespace (no `ketch/__init__.py`).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from email.message import Message
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

REPO = Path(__file__).resolve().parent.parent
REQUIRES_PYTHON = ">=3.10"
LICENSE = "BSD-3-Clause"
PROJECT_URLS = {"Homepage", "Documentation", "Changelog", "Issues"}
CLASSIFIERS = {
    "Programming Language :: Python :: 3 :: Only",
    "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
}
# Dependencies that only install or run on some platforms, and where they must
# not be required. ketch runs without each of them: asyncio's loop instead of
# uvloop, h11 instead of httptools; gunicorn is POSIX-only. (watchfiles, PyYAML
# and websockets have wheels or pure-Python fallbacks everywhere.)
NATIVE = {
    "uvloop": [
        {"sys_platform": "win32"},
        {"sys_platform": "cygwin"},
        {"platform_python_implementation": "PyPy"},
    ],
    "httptools": [{"platform_python_implementation": "PyPy"}],
    "gunicorn": [{"sys_platform": "win32"}],
}
FIELDS = ("name", "version")
RELATIVE_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)]+)\)")


@dataclass
class Distribution:
    folder: Path
    name: str
    version: str
    files: list[Path] = field(default_factory=list)


def discover(root: Path) -> list[Distribution]:
    found = []
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        text = pyproject.read_text()  # (tomllib is Python 3.11+; these two lines suffice)
        name, version = (re.search(rf'^{key} = "(.+)"', text, re.MULTILINE) for key in FIELDS)
        if name is None or version is None:
            sys.exit(f"{pyproject}: no name or version in [project]")
        found.append(Distribution(pyproject.parent, name.group(1), version.group(1)))
    if not found:
        sys.exit(f"no packages/*/pyproject.toml under {root}")
    return found


def build(dist: Distribution, outdir: Path) -> None:
    before = set(outdir.iterdir())
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir)]
    result = subprocess.run(
        [*command, str(dist.folder)], capture_output=True, text=True, timeout=300
    )
    if result.returncode:
        sys.exit(f"building {dist.name} failed:\n{result.stdout}{result.stderr}")
    dist.files = sorted(set(outdir.iterdir()) - before)


def wheel_metadata(wheel: Path) -> tuple[Message, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(metadata).decode()), names


def sdist_names(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        return archive.getnames()


def check_versions(dists: list[Distribution], tag: str | None) -> list[str]:
    problems = []
    versions = {d.version for d in dists}
    if len(versions) != 1:
        problems.append(f"one version for all, in lockstep: found {sorted(versions)}")
    if tag is not None and versions != {tag.removeprefix("v")}:
        problems.append(f"tag {tag} is not the version of every distribution ({sorted(versions)})")
    return problems


def check(dists: list[Distribution], root: Path) -> list[str]:
    problems: list[str] = []
    ours = {str(canonicalize_name(d.name)) for d in dists}
    for dist in dists:
        wheels = [f for f in dist.files if f.suffix == ".whl"]
        sdists = [f for f in dist.files if f.name.endswith(".tar.gz")]
        if len(wheels) != 1 or len(sdists) != 1:
            problems.append(f"{dist.name}: expected one wheel and one sdist, got {dist.files}")
            continue
        meta, names = wheel_metadata(wheels[0])
        problems += [f"{dist.name}: {p}" for p in check_metadata(meta, names, ours, dist.version)]
        if not any(n.endswith("/LICENSE") for n in sdist_names(sdists[0])):
            problems.append(f"{dist.name}: the sdist has no LICENSE")
        for source in dist.folder.glob("src/**/__init__.py"):
            declared = re.search(r'^__version__ = "(.+)"', source.read_text(), re.MULTILINE)
            if declared and declared.group(1) != dist.version:
                problems.append(f"{source.relative_to(root)}: __version__ {declared.group(1)}")
    return problems


def check_metadata(meta: Message, names: list[str], ours: set[str], version: str) -> list[str]:
    problems = []
    if meta["Requires-Python"] != REQUIRES_PYTHON:
        problems.append(f"Requires-Python is {meta['Requires-Python']!r}, not {REQUIRES_PYTHON}")
    if meta["License-Expression"] != LICENSE:
        problems.append(f"License-Expression is {meta['License-Expression']!r}, not {LICENSE}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("the wheel has no LICENSE")
    if "ketch/__init__.py" in names:
        problems.append("ships ketch/__init__.py: ketch is a namespace package")
    urls = {value.split(",")[0].strip() for value in meta.get_all("Project-URL") or []}
    if missing := PROJECT_URLS - urls:
        problems.append(f"no project URL for {sorted(missing)}")
    classifiers = set(meta.get_all("Classifier") or [])
    if unknown := classifiers - KNOWN_CLASSIFIERS:
        problems.append(f"classifiers PyPI does not know: {sorted(unknown)}")
    if missing := CLASSIFIERS - classifiers:
        problems.append(f"missing classifiers {sorted(missing)}")
    if meta["Description-Content-Type"] != "text/markdown":
        problems.append("the long description is not Markdown")
    for link in RELATIVE_LINK.findall(str(meta.get_payload())):
        problems.append(f"README links to {link!r}, which PyPI cannot follow")
    for line in meta.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name in ours and str(requirement.specifier) != f"=={version}":
            problems.append(f"{requirement}: ketch distributions pin each other's version")
        extras = ["", *(meta.get_all("Provides-Extra") or [])]
        for platform in NATIVE.get(name, []):
            if requirement.marker is None or any(
                requirement.marker.evaluate({**platform, "extra": extra}) for extra in extras
            ):
                problems.append(f"{requirement} is required where it cannot run: {platform}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=REPO / "dist")
    parser.add_argument("--tag", help="the release tag (vX.Y.Z): every version must be X.Y.Z")
    args = parser.parse_args()
    dists = discover(REPO)
    if problems := check_versions(dists, args.tag):
        sys.exit("\n".join(["problems:", *(f"- {p}" for p in problems)]))  # before building
    args.outdir.mkdir(parents=True, exist_ok=True)
    for old in [*args.outdir.glob("*.whl"), *args.outdir.glob("*.tar.gz")]:
        old.unlink()  # the last build's, perhaps of other versions
    for dist in dists:
        build(dist, args.outdir)
    problems = check(dists, REPO)
    built = [str(f) for d in dists for f in d.files]
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *built],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if twine.returncode:
        problems.append(f"twine check --strict:\n{twine.stdout}{twine.stderr}")
    for dist in dists:
        print(f"{dist.name:18} {dist.version:8} {'  '.join(f.name for f in dist.files)}")
    if problems:
        sys.exit("\n".join(["problems:", *(f"- {p}" for p in problems)]))
    print(f"{len(dists)} distributions in {args.outdir}: metadata checked")


if __name__ == "__main__":
    main()
