"""The `ketch` command: Uvicorn's options under the same names and defaults,
environment variables, and one-line errors."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest
import uvicorn
from support import KetchProcess, run_ketch
from uvicorn.main import main as uvicorn_command
from uvicorn.main import run as uvicorn_run

from ketch.cli import build_command
from ketch.core import Config, __version__
from ketch.core.config import options

# Options ketch spells like Uvicorn but whose choices come from ketch's registry,
# so the lists differ by design (uvicorn's zttp and zuvloop are not ketch's).
REGISTRY_CHOICES = {"http", "ws", "loop"}


def _uvicorn_options() -> dict[str, click.Option]:
    return {
        opt: param
        for param in uvicorn_command.params
        if isinstance(param, click.Option)
        for opt in param.opts
    }


def _ketch_options() -> dict[str, click.Option]:
    return {
        opt: param
        for param in build_command().params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }


def _default(param: click.Option) -> object:
    """The default as a user sees it: no default and an empty list are both None."""
    default = param.default
    if type(default).__name__ == "Sentinel" or default == ():
        return None
    return default


def test_every_uvicorn_option_exists_with_the_same_default() -> None:
    ours = _ketch_options()
    for flag, theirs in _uvicorn_options().items():
        assert flag in ours, f"{flag} is missing"
        mine = ours[flag]
        if flag in ("--help", "--version"):
            continue
        if theirs.name in ("log_config",):
            continue  # uvicorn shows None and means its dict; so do we
        ours_default, their_default = _default(mine), _default(theirs)
        assert ours_default == their_default, f"{flag}: {ours_default!r} != {their_default!r}"
        assert mine.is_flag == theirs.is_flag, flag
        if isinstance(theirs.type, click.Choice) and theirs.name not in REGISTRY_CHOICES:
            assert isinstance(mine.type, click.Choice), flag
            assert list(mine.type.choices) == list(theirs.type.choices), flag


def test_uvicorn_run_keywords_are_config_fields() -> None:
    import inspect

    fields = {f.name for f, _ in options()}
    for name in inspect.signature(uvicorn_run).parameters:
        if name == "app":
            continue
        assert name in fields, f"run({name}=...) is not a ketch option"


def test_config_defaults_match_uvicorn() -> None:
    theirs = uvicorn.Config("x:y")
    ours = Config("x:y")
    for name in (
        "host",
        "port",
        "uds",
        "fd",
        "loop",
        "http",
        "ws",
        "ws_max_size",
        "ws_max_queue",
        "ws_ping_interval",
        "ws_ping_timeout",
        "ws_per_message_deflate",
        "lifespan",
        "interface",
        "access_log",
        "proxy_headers",
        "server_header",
        "date_header",
        "root_path",
        "limit_concurrency",
        "limit_max_requests",
        "limit_max_requests_jitter",
        "backlog",
        "timeout_keep_alive",
        "timeout_notify",
        "timeout_graceful_shutdown",
        "timeout_worker_healthcheck",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_keyfile_password",
        "ssl_version",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "factory",
        "h11_max_incomplete_event_size",
        "reset_contextvars",
        "workers",
        "reload_delay",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_version() -> None:
    result = run_ketch(["--version"])
    assert result.returncode == 0
    expected = (
        f"Running ketch {__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}"
    )
    assert result.stdout.strip() == expected


def test_help_lists_registry_choices_and_environment_variables() -> None:
    result = run_ketch(["--help"])
    text = " ".join(result.stdout.split())
    assert "Usage: ketch [OPTIONS] [APP]" in text  # [APP]: a --config file may name it
    assert "--http [auto|example|h11|httptools]" in text
    assert "--loop [auto|asyncio|uvloop]" in text
    assert "KETCH_PORT" in text
    assert "WEB_CONCURRENCY" in text
    assert "FORWARDED_ALLOW_IPS" in text


def test_console_script_and_python_m_agree() -> None:
    script = Path(sys.executable).with_name("ketch")
    by_script = run_ketch(["--version"], command=[str(script)])
    by_module = run_ketch(["--version"])
    assert by_script.stdout == by_module.stdout


def test_options_from_environment_variables() -> None:
    env = {"KETCH_APP": "support.apps:scope_json", "KETCH_PORT": "0", "KETCH_ROOT_PATH": "/env"}
    with KetchProcess([], env=env) as ketch:
        port = ketch.port()
        data = httpx.get(f"http://127.0.0.1:{port}/x").json()
    assert data["root_path"] == "/env"


def test_command_line_beats_environment() -> None:
    env = {"KETCH_ROOT_PATH": "/env"}
    args = ["support.apps:scope_json", "--port", "0", "--root-path", "/cli"]
    with KetchProcess(args, env=env) as ketch:
        port = ketch.port()
        assert httpx.get(f"http://127.0.0.1:{port}/").json()["root_path"] == "/cli"


def test_multiple_headers_option() -> None:
    args = ["support.apps:hello", "--port", "0", "--header", "X-One: 1", "--header", "X-Two:2"]
    with KetchProcess(args) as ketch:
        response = httpx.get(f"http://127.0.0.1:{ketch.port()}/")
    assert response.headers["x-one"] == "1"
    assert response.headers["x-two"] == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nocolon"], 'must be in format "<module>:<attribute>"'),
        (["no_such_module_xyz:app"], 'Could not import module "no_such_module_xyz"'),
        (["support.apps:nope"], 'Attribute "nope" not found in module "support.apps"'),
        (["support.apps:hello.deeper"], 'Attribute "hello.deeper" not found'),
        (
            ["support.apps:hello", "--http", "nope"],
            "--http nope: no HTTP plugin named 'nope' is installed (installed: example, h11, "
            "httptools; ketch's own come with pip install ketch-http)",
        ),
        (["support.apps:hello", "--port", "70000"], "--port must be at most 65535"),
        (["support.apps:hello", "--workers", "0"], "--workers must be at least 1"),
        (
            ["support.apps:hello", "--limit-worker-memory", "0"],
            "--limit-worker-memory must be at least 1",
        ),
        (
            ["support.apps:hello", "--limit-worker-lifetime", "0"],
            "--limit-worker-lifetime must be greater than 0",
        ),
        (["support.apps:hello", "--header", "novalue"], "--header needs the form Name:Value"),
        (["support.apps:hello", "--root-path", "api"], "--root-path must start with '/'"),
        (
            ["support.apps:hello", "--http2", "--http2-max-concurrent-streams", "0"],
            "--http2-max-concurrent-streams must be at least 1",
        ),
        (["support.apps:hello", "--uds", "/tmp/x.sock", "--fd", "3"], "--uds and --fd"),
        (["support.apps:hello", "--env-file", "/nonexistent.env"], "does not exist"),
        (["support.apps:hello", "--lifespan", "sometimes"], "Invalid value for '--lifespan'"),
    ],
)
def test_one_line_errors(args: list[str], message: str) -> None:
    result = run_ketch(args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_module_that_imports_a_missing_package(tmp_path: Path) -> None:
    (tmp_path / "brokenapp.py").write_text("import not_installed_pkg_xyz\napp = None\n")
    result = run_ketch(["brokenapp:app", "--app-dir", str(tmp_path)])
    assert result.returncode != 0
    assert 'it needs "not_installed_pkg_xyz"' in result.stderr
    assert "Traceback" not in result.stderr


def test_error_inside_the_app_module_shows_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "raisingapp.py").write_text("raise ValueError('bad settings')\n")
    result = run_ketch(["raisingapp:app", "--app-dir", str(tmp_path)])
    assert result.returncode != 0
    assert "ValueError: bad settings" in result.stderr
    assert "Traceback" in result.stderr


def test_app_dir_and_factory(tmp_path: Path) -> None:
    (tmp_path / "myfactory.py").write_text(
        "from support.apps import hello\n\ndef create():\n    return hello\n"
    )
    args = ["myfactory:create", "--factory", "--app-dir", str(tmp_path), "--port", "0"]
    with KetchProcess(args) as ketch:
        assert httpx.get(f"http://127.0.0.1:{ketch.port()}/").text == "Hello, world!"


def test_factory_without_flag_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "forgotflag.py").write_text(
        "from support.apps import hello\n\ndef create():\n    return hello\n"
    )
    args = ["forgotflag:create", "--app-dir", str(tmp_path), "--port", "0"]
    with KetchProcess(args) as ketch:
        ketch.wait_started()
    assert "looks like an application factory; add --factory" in ketch.output


def test_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("GREETING=from-env-file\n")
    (tmp_path / "envapp.py").write_text(
        "import os\n"
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': os.environ['GREETING'].encode()})\n"
    )
    args = ["envapp:app", "--app-dir", str(tmp_path), "--env-file", str(env_file), "--port", "0"]
    with KetchProcess(args) as ketch:
        assert httpx.get(f"http://127.0.0.1:{ketch.port()}/").text == "from-env-file"


def test_web_concurrency_is_read() -> None:
    assert Config("x:y").workers == 1
    import os

    os.environ["WEB_CONCURRENCY"] = "3"
    try:
        assert Config("x:y").workers == 3
        assert Config("x:y", workers=2).workers == 2
    finally:
        del os.environ["WEB_CONCURRENCY"]


def test_forwarded_allow_ips_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config("x:y").trusted_proxies == ["127.0.0.1", "::1"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.2")
    assert Config("x:y").trusted_proxies == ["10.0.0.1", "10.0.0.2"]


def test_workers_with_an_app_object_is_a_clear_error() -> None:
    from support.apps import hello

    from ketch.core import run
    from ketch.core.errors import ConfigError

    with pytest.raises(ConfigError, match="import string"):
        run(hello, workers=2)
    with pytest.raises(ConfigError, match="import string"):
        run(hello, reload=True)
    with pytest.raises(ConfigError, match="--limit-worker-memory starts new processes"):
        run(hello, limit_worker_memory=500)


def test_windows_is_refused_in_one_line_at_start() -> None:
    """Nothing is tested on Windows, so ketch says so before it starts. (Windows
    itself cannot be had here: the platform is set after the imports, as it
    would read there, and the command must stop before touching a socket.)"""
    script = (
        "import sys\n"
        "from ketch.cli.main import main\n"
        "sys.platform = 'win32'\n"
        "main(['support.apps:hello', '--port', '0'])\n"
    )
    result = run_ketch(["-c", script], command=[sys.executable])
    assert result.returncode == 1
    assert result.stderr == (
        "Error: ketch runs on Linux and macOS, not on Windows yet: run it under WSL 2 or in a "
        "Linux container (docs/docker.md)\n"
    )
    assert "running on" not in result.stdout


def test_shell_completion() -> None:
    """The bash line of docs/installation.md, in a real bash: options and choices complete."""
    ketch_bin = str(Path(sys.executable).parent)

    def complete(*words: str) -> list[str]:
        script = (
            'eval "$(_KETCH_COMPLETE=bash_source ketch)"\n'
            f"COMP_WORDS=(ketch {' '.join(words)}); COMP_CWORD={len(words)}\n"
            '_ketch_completion ketch; printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        env = {**os.environ, "PATH": f"{ketch_bin}{os.pathsep}{os.environ['PATH']}"}
        result = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("--timeout-k") == ["--timeout-keep-alive"]
    assert {"auto", "h11", "httptools"} <= set(complete("main:app", "--http", "''"))
    assert complete("main:app", "--ssl-cert-reqs", "req") == ["required"]
