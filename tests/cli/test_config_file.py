"""`ketch --config FILE` through real processes: the documented files serve, the
command line and the environment win over the file, and a bad file is one line
naming the file and the key, with nothing started."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from support import (
    KetchProcess,
    RawConnection,
    free_port,
    run_ketch,
    wait_workers,
)
from support.deploy import app_dir, write
from uvicorn.main import main as uvicorn_command

FORWARDED = {"X-Forwarded-For": "203.0.113.7"}


def _head_timeout(port: int) -> float:
    """Seconds until a request head that never ends is answered 408."""
    with RawConnection(port, timeout=10) as conn:
        started = time.monotonic()
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert conn.read_response().status == 408
        return time.monotonic() - started


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_the_documented_file_serves_alone(tmp_path: Path) -> None:
    """docs/deploy/ketch.toml: the app, an int, a str, a list, a repeatable
    option and a flag, all from the file."""
    directory = app_dir(tmp_path)
    port = free_port()
    write("ketch.toml", directory, port=port)
    with KetchProcess(["--config", "ketch.toml"], cwd=directory) as ketch:
        assert ketch.port() == port
        wait_workers(ketch.proc.pid, 2)
        response = httpx.get(f"http://127.0.0.1:{port}/x", headers=FORWARDED, timeout=10)
    data = response.json()
    assert data["root_path"] == "/api"
    assert data["client"][0] == "203.0.113.7"  # 127.0.0.1 is in forwarded_allow_ips
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "server" not in response.headers


def test_the_command_line_wins_over_the_file(tmp_path: Path) -> None:
    directory = app_dir(tmp_path)
    file_port, port = free_port(), free_port()
    write("ketch.toml", directory, port=file_port)
    args = [
        *("--config", "ketch.toml", "support.apps:scope_json"),
        *("--port", str(port), "--workers", "1", "--root-path", "/cli"),
        *("--header", "X-From: cli", "--server-header", "--forwarded-allow-ips", "10.1.1.1"),
        *("--timeout-request-header", "0.3"),
    ]
    with KetchProcess(args, cwd=directory) as ketch:
        assert ketch.port() == port
        response = httpx.get(f"http://127.0.0.1:{port}/", headers=FORWARDED, timeout=10)
        assert _head_timeout(port) < 3  # the file's 5.0 seconds would be longer
        assert _refused(file_port)
    assert "Started parent process" not in ketch.output  # one process, not the file's 2
    data = response.json()
    assert data["http_version"] == "1.1"  # the command line's app (scope_json)
    assert data["root_path"] == "/cli"
    assert data["client"][0] == "127.0.0.1"  # 127.0.0.1 is no longer trusted
    assert response.headers["x-from"] == "cli"
    assert "x-frame-options" not in response.headers  # a list is replaced, not merged
    assert response.headers["server"] == "ketch"


def test_the_environment_wins_over_the_file_and_the_command_line_over_both(
    tmp_path: Path,
) -> None:
    directory = app_dir(tmp_path)
    port = free_port()
    write("ketch.toml", directory, port=free_port())
    env = {
        "KETCH_APP": "support.apps:scope_json",
        "KETCH_PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "KETCH_ROOT_PATH": "/env",
        "KETCH_HEADER": "X-From:env",
        "KETCH_SERVER_HEADER": "true",
        "FORWARDED_ALLOW_IPS": "10.1.1.1",
        "KETCH_TIMEOUT_REQUEST_HEADER": "0.3",
    }
    args = ["--config", "ketch.toml", "--root-path", "/cli"]
    with KetchProcess(args, cwd=directory, env=env) as ketch:
        assert ketch.port() == port
        response = httpx.get(f"http://127.0.0.1:{port}/", headers=FORWARDED, timeout=10)
        assert _head_timeout(port) < 3
    assert "Started parent process" not in ketch.output
    data = response.json()
    assert data["http_version"] == "1.1"  # $KETCH_APP (scope_json)
    assert data["root_path"] == "/cli"
    assert data["client"][0] == "127.0.0.1"
    assert response.headers["x-from"] == "env"
    assert "x-frame-options" not in response.headers
    assert response.headers["server"] == "ketch"


def test_a_pyproject_named_by_ketch_config(tmp_path: Path) -> None:
    """docs/deploy/pyproject-ketch.toml as a project's pyproject.toml: its
    [tool.ketch] table, found through $KETCH_CONFIG, with no other argument."""
    directory = app_dir(tmp_path)
    port = free_port()
    write("pyproject-ketch.toml", directory, port=port).rename(directory / "pyproject.toml")
    with KetchProcess([], cwd=directory, env={"KETCH_CONFIG": "pyproject.toml"}) as ketch:
        assert ketch.port() == port
        ketch.wait_for_output(rf"Will watch for changes in these directories: \['{directory}'\]")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).text == "ok"


def test_a_float_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ketch.toml"
    config.write_text('app = "support.apps:hello"\nport = 0\ntimeout_request_header = 0.3\n')
    with KetchProcess(["--config", str(config)]) as ketch:
        assert _head_timeout(ketch.port()) < 3


def test_run_reads_the_file_from_python(tmp_path: Path) -> None:
    config = tmp_path / "ketch.toml"
    config.write_text('app = "support.apps:scope_json"\nport = 0\nroot_path = "/file"\n')
    code = f"from ketch.core import run; run(config={str(config)!r}, root_path='/keyword')"
    with KetchProcess([], command=[sys.executable, "-c", code]) as ketch:
        response = httpx.get(f"http://127.0.0.1:{ketch.port()}/", timeout=10)
    assert response.json()["root_path"] == "/keyword"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 8000", 'unknown setting "prot"; did you mean "port"?'),
        ('workers = "4"', "workers must be a whole number, got '4' (a string)"),
        ("workers = 0", "workers must be at least 1, got 0"),
        ('forwarded_allow_ips = "*"\nheaders = "X-A"', "headers needs the form Name:Value"),
        ("port = 8000\nport = 8001", "not valid TOML: Cannot overwrite a value (at line 3, column"),
        ("callback_notify = 'main:notify'", "callback_notify is set only from Python"),
    ],
)
def test_a_bad_file_is_one_line_and_starts_nothing(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "ketch.toml"
    config.write_text(f'app = "support.apps:hello"\n{text}\n')
    result = run_ketch(["--config", str(config), "--port", str(free_port())])
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {config}: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""  # no log line: nothing started


def test_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_ketch([], env={"KETCH_CONFIG": str(missing)})
    assert result.returncode == 1
    reason = "No such file or directory"
    assert result.stderr == f"Error: cannot read the config file {missing}: {reason}\n"


def test_no_app_and_no_file_is_the_usual_usage_error() -> None:
    result = run_ketch([])
    assert result.returncode == 2
    assert "Error: Missing argument 'APP' (or a --config file that names it)." in result.stderr


def test_uvicorn_has_no_config_file_option() -> None:
    """docs/configuration.md says so (Uvicorn 0.54 reads only a logging file)."""
    flags = {flag for param in uvicorn_command.params for flag in param.opts}
    assert "--config" not in flags
    assert not any("toml" in (getattr(p, "help", "") or "").lower() for p in uvicorn_command.params)
