"""The documentation site builds strictly, and its settings reference, generated
from the option table, lists every option."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO_DIR

from ketch.core.config import cli_flag, options

MISSING = re.compile(
    r"contains a link '([^'#]+)[^']*', but the target is not found"
    r"|A reference to '([^']+)' is included in the 'nav' configuration, which is not found"
)


@dataclass
class Site:
    directory: Path
    log: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    directory = tmp_path_factory.mktemp("site")
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(directory)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        mkdocs, cwd=REPO_DIR, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Site(directory, result.stdout + result.stderr)


def test_no_page_or_link_is_missing(site: Site) -> None:
    missing = {link or nav for link, nav in MISSING.findall(site.log)}
    assert not missing, f"broken links or nav entries: {missing}"


def _page(site: Site, name: str, text_only: bool = False) -> str:
    page = (site.directory / name / "index.html").read_text()
    if text_only:  # code is highlighted token by token
        page = re.sub(r"<[^>]+>", "", page)
    return html.unescape(page)


def test_every_option_is_on_the_settings_page(site: Site) -> None:
    page = _page(site, "settings")
    for field, option in options():
        if option.cli:
            flag = cli_flag(field, option)
            assert f'id="{flag[2:]}"' in page, flag
            assert f"KETCH_{flag[2:].replace('-', '_').upper()}" in page, flag
            for alias in option.aliases:
                assert alias in page
            for envvar in option.envvars:
                assert envvar in page
        else:
            assert f'id="{field.name.replace("_", "-")}"' in page, field.name
        assert f"{field.name}=" in page or not option.cli, field.name
        assert option.help.removeprefix("(ketch) ").split(".")[0] in page, field.name


def test_the_options_ketch_adds_are_in_the_migration_guide(site: Site) -> None:
    page = _page(site, "migration")
    added = [cli_flag(f, o) for f, o in options() if o.help.startswith("(ketch)")]
    assert added
    for flag in added:
        assert f'href="../settings/#{flag[2:]}"' in page, flag


def test_every_deployment_file_is_shown(site: Site) -> None:
    """Each file of docs/deploy/ appears in a page, written there by docs-sync
    (which keeps the copy identical: see the freshness test below)."""
    pages = "\n".join(path.read_text() for path in (REPO_DIR / "docs").glob("*.md"))
    for path in sorted((REPO_DIR / "docs" / "deploy").iterdir()):
        marker = f"<!-- generated: file docs/deploy/{path.name}"
        assert marker in pages, f"{path.name} is shown nowhere"
    nginx = _page(site, "nginx", text_only=True)
    assert (REPO_DIR / "docs" / "deploy" / "nginx-uds.conf").read_text().splitlines()[-1] in nginx
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in nginx
    for name in ("nginx", "cdn", "process-managers", "plugins", "benchmarks"):
        assert "--8<--" not in _page(site, name, text_only=True), name


def _docs_sync(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, REPO_DIR / "tools" / "docs_sync.py", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_generated_docs_are_fresh() -> None:
    """The settings reference, the included files and the release notes are
    written into the Markdown files, so the repository's web page shows them."""
    result = _docs_sync("--check")
    assert result.returncode == 0, result.stderr


def test_a_stale_page_is_named_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    (tmp_path / "docs" / "deploy").mkdir(parents=True)
    (tmp_path / "docs" / "deploy" / "app.conf").write_text("listen 80;\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text('Intro.\n\n```nginx\n--8<-- "docs/deploy/app.conf"\n```\n\nEnd.\n')
    stale = _docs_sync("--check", "--root", tmp_path)
    assert stale.returncode == 1
    assert "docs/page.md: run `hatch run docs-sync`" in stale.stderr
    assert _docs_sync("--root", tmp_path).returncode == 0
    assert "```nginx\nlisten 80;\n```\n<!-- end generated -->" in page.read_text()
    assert _docs_sync("--check", "--root", tmp_path).returncode == 0
    (tmp_path / "docs" / "deploy" / "app.conf").write_text("listen 8080;\n")  # the file changes
    assert "docs/page.md" in _docs_sync("--check", "--root", tmp_path).stderr


def test_every_test_the_docs_name_exists() -> None:
    """Claims name the test that proves them (`tests/path.py::test_name`):
    renaming or deleting that test must not leave a claim without proof."""
    pages = [*(REPO_DIR / "docs").glob("*.md"), REPO_DIR / "README.md"]
    pages += [*(REPO_DIR / "examples").glob("*/README.md")]
    named = set()
    for page in pages:
        for path, name in re.findall(r"(tests/[\w/]+\.py)::(\w+)", page.read_text()):
            named.add((path, name))
            source = REPO_DIR / path
            assert source.is_file(), f"{page.name} names {path}, which does not exist"
            assert re.search(rf"^def {name}\(", source.read_text(), re.MULTILINE), (
                f"{page.name} names {path}::{name}, which does not exist"
            )
    assert len(named) >= 20  # migration.md alone names more
