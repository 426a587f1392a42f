"""`--reload`: a changed file restarts the server; include/exclude/dir/delay rules."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from support import KetchProcess, free_port, wait_for, wait_workers, worker_pids

from ketch.supervisor.reload import FileFilter, Watcher

APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{VERSION} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

VERSION = "%s"
"""


def _write_app(folder: Path, version: str) -> None:
    (folder / "reloadapp.py").write_text(APP % version)


def _answer(port: int) -> tuple[str, int]:
    version, pid = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.split()
    return version, int(pid)


def _reloads(ketch: KetchProcess) -> int:
    return ketch.output.count("Reloading...")


def _start(folder: Path, *args: str) -> tuple[KetchProcess, int]:
    port = free_port()
    ketch = KetchProcess(
        [
            "reloadapp:app",
            "--reload",
            "--app-dir",
            str(folder),
            "--reload-dir",
            str(folder),
            "--reload-delay",
            "0.1",
            "--port",
            str(port),
            *args,
        ]
    )
    ketch.wait_for_output("Application startup|ASGI 'lifespan' protocol appears unsupported")
    wait_for(lambda: _try(port), timeout=20)
    return ketch, port


def _try(port: int) -> bool:
    try:
        return bool(_answer(port))
    except httpx.HTTPError:
        return False


def test_edit_reloads_the_app(tmp_path: Path) -> None:
    _write_app(tmp_path, "one")
    ketch, port = _start(tmp_path)
    with ketch:
        assert "using WatchFiles" in ketch.output
        version, pid = _answer(port)
        assert version == "one"
        _write_app(tmp_path, "two")
        wait_for(lambda: _answer(port)[0] == "two", timeout=20)
        assert _answer(port)[1] != pid
        assert "detected changes in" in ketch.output
        assert "reloadapp.py" in ketch.output


def test_broken_code_keeps_the_last_good_version_serving(tmp_path: Path) -> None:
    _write_app(tmp_path, "good")
    ketch, port = _start(tmp_path)
    with ketch:
        (tmp_path / "reloadapp.py").write_text("this is not python(\n")
        ketch.wait_for_output("SyntaxError", timeout=20)
        ketch.wait_for_output("keeping the running workers", timeout=20)
        assert _answer(port)[0] == "good"
        _write_app(tmp_path, "fixed")
        wait_for(lambda: _answer(port)[0] == "fixed", timeout=20)


def test_excluded_files_and_directories_do_not_reload(tmp_path: Path) -> None:
    _write_app(tmp_path, "one")
    (tmp_path / "node_modules").mkdir()
    ketch, port = _start(
        tmp_path, "--reload-exclude", "skipme.py", "--reload-exclude", "node_modules"
    )
    with ketch:
        (tmp_path / "skipme.py").write_text("x = 1\n")
        (tmp_path / "node_modules" / "lib.py").write_text("y = 2\n")
        (tmp_path / "notes.txt").write_text("not a python file\n")
        _write_app(tmp_path, "two")  # the one change that counts
        wait_for(lambda: _answer(port)[0] == "two", timeout=20)
        assert _reloads(ketch) == 1
        assert "skipme.py" not in ketch.output
        assert "lib.py" not in ketch.output
        assert "notes.txt" not in ketch.output


def test_include_pattern_adds_files(tmp_path: Path) -> None:
    _write_app(tmp_path, "one")
    templates = tmp_path / "templates"
    templates.mkdir()
    ketch, port = _start(tmp_path, "--reload-include", "*.html")
    with ketch:
        pid = _answer(port)[1]
        (templates / "page.html").write_text("<p>new</p>")
        wait_for(lambda: _answer(port)[1] != pid, timeout=20)
        assert "page.html" in ketch.output


def test_reload_with_workers_restarts_the_pool(tmp_path: Path) -> None:
    _write_app(tmp_path, "one")
    ketch, port = _start(tmp_path, "--workers", "2")
    with ketch:
        wait_workers(ketch.proc.pid, 2)
        before = worker_pids(ketch.proc.pid)
        _write_app(tmp_path, "two")
        wait_for(lambda: not (worker_pids(ketch.proc.pid) & before), timeout=30)
        wait_workers(ketch.proc.pid, 2)
        assert _answer(port)[0] == "two"


def test_file_filter_rules(tmp_path: Path) -> None:
    default = FileFilter([], [])
    root = tmp_path
    assert default(root / "app.py", root)
    assert default(root / "pkg" / "mod.py", root)
    assert not default(root / "app.pyc", root)
    assert not default(root / ".hidden.py", root)
    assert not default(root / ".git" / "hook.py", root)  # a hidden directory
    assert not default(root / "readme.md", root)
    custom = FileFilter(["*.html", "conf/*.toml"], ["*.py", "build"])
    assert not custom(root / "app.py", root)  # excluding the default include
    assert custom(root / "t" / "page.html", root)
    assert custom(root / "conf" / "app.toml", root)
    assert not custom(root / "other" / "app.toml", root)
    assert not custom(root / "build" / "page.html", root)


def test_polling_watcher_sees_changes(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("a = 1\n")
    watcher = Watcher([tmp_path], FileFilter([], []), delay=0.05)
    changed = threading.Event()
    watcher.on_change.append(changed.set)
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        (tmp_path / "ignored.txt").write_text("x")
        (tmp_path / "mod.py").write_text("a = 22\n")
        assert changed.wait(10)
        wait_for(lambda: watcher._changes, timeout=5)
        assert watcher.take() == [tmp_path / "mod.py"]
    finally:
        watcher.stop()
