"""`--config FILE` in-process: reading and checking a TOML file, its place under
keywords and the environment, and `reread()` for a SIGHUP rolling restart.
The same through real `ketch` processes: tests/cli/test_config_file.py and
tests/supervisor/test_config_reread.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from support import REPO_DIR

from ketch.core import Config
from ketch.core.config import options
from ketch.core.config_file import PARENT_OWNED, build, read, reread
from ketch.core.errors import ConfigError


def toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _no_uvicorn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


def test_every_kind_of_value_reaches_config(tmp_path: Path) -> None:
    path = toml(
        tmp_path / "ketch.toml",
        'app = "main:app"\n'
        "port = 5000\n"  # int
        'root_path = "/api"\n'  # str
        "timeout_request_header = 2\n"  # float, written as a whole number
        "ws_ping_interval = 2.5\n"  # float
        "server_header = false\n"  # flag
        "ws_per_message_deflate = false\n"  # true/false option
        'forwarded_allow_ips = ["10.0.0.1", "10.0.0.2"]\n'  # a list for a comma-separated option
        'headers = ["X-A: 1", "X-B: 2"]\n'  # a repeatable option
        'reload_excludes = "*.tmp"\n'  # one value for a repeatable option
        'http = "h11"\n'  # a plugin name
        'lifespan = "off"\n',  # a choice
    )
    config = build(None, {"config": path})
    assert config.app == "main:app"
    assert config.port == 5000
    assert config.root_path == "/api"
    assert config.timeout_request_header == 2.0
    assert isinstance(config.timeout_request_header, float)
    assert config.ws_ping_interval == 2.5
    assert config.server_header is False
    assert config.ws_per_message_deflate is False
    assert config.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert config.headers == [("X-A", "1"), ("X-B", "2")]
    assert config.reload_excludes == ["*.tmp"]
    assert config.http == "h11"
    assert config.lifespan == "off"
    assert config.config == path


def _sample(name: str, kind: str, multiple: bool, allowed: tuple[str, ...]) -> str:
    """A TOML value of the right type for an option."""
    value = {
        "int": "1",
        "float": "1.5",
        "bool": "true",
        "boolean": "true",
        "path": '"."',
        "file": '"x.sock"',
    }.get(kind, f'"{allowed[0]}"' if allowed else '"x"')
    return f"[{value}]" if multiple else value


def test_every_command_line_option_is_a_file_key(tmp_path: Path) -> None:
    """The file's keys come from Config's fields: an option added to Config is
    accepted in a file with no other change."""
    lines = ['app = "main:app"']
    expected = {"app"}
    for f, option in options():
        if not option.cli or f.name == "config":
            continue
        allowed = option.choices or (("auto",) if option.registry else ())
        lines.append(f"{f.name} = {_sample(f.name, option.kind, option.multiple, allowed)}")
        expected.add(f.name)
    settings = read(toml(tmp_path / "all.toml", "\n".join(lines)))
    assert set(settings) == expected
    assert len(expected) > 50


def test_keywords_then_uvicorn_environment_then_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(
        tmp_path / "ketch.toml",
        'app = "file:app"\nport = 5000\nroot_path = "/file"\nworkers = 4\n'
        'forwarded_allow_ips = ["10.0.0.1"]\n',
    )
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    config = build("given:app", {"config": path, "root_path": "/given"})
    assert config.app == "given:app"  # the keyword
    assert config.root_path == "/given"  # the keyword
    assert config.workers == 3  # the environment
    assert config.port == 5000  # the file
    assert config.trusted_proxies == ["10.0.0.1"]  # the file
    assert config.timeout_keep_alive == 5  # the default
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.9.9.9")
    assert build(None, {"config": path}).trusted_proxies == ["10.9.9.9"]


def test_pyproject_is_read_from_its_tool_ketch_table(tmp_path: Path) -> None:
    path = toml(
        tmp_path / "pyproject.toml",
        '[project]\nname = "shop"\n\n[tool.other]\nport = 1\n\n'
        '[tool.ketch]\napp = "main:app"\nport = 5001\n',
    )
    assert build(None, {"config": path}).port == 5001
    (tmp_path / "other").mkdir()
    empty = toml(tmp_path / "other" / "pyproject.toml", '[project]\nname = "shop"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: no \[tool.ketch\] table"):
        read(empty)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 5000", 'bad.toml: unknown setting "prot"; did you mean "port"?'),
        ("root-path = '/a'", 'unknown setting "root-path"; did you mean "root_path"?'),
        ("header = ['X-A: 1']", 'unknown setting "header"; did you mean "headers"?'),
        ("flavour = 'mint'", 'unknown setting "flavour" (the settings page lists them)'),
        ("colour = true", 'unknown setting "colour"; did you mean "use_colors"?'),
        ('port = "5000"', "bad.toml: port must be a whole number, got '5000' (a string)"),
        ("port = 5000.0", "port must be a whole number, got 5000.0 (a number)"),
        ("access_log = 1", "access_log must be true or false, got 1 (a whole number)"),
        ("workers = true", "workers must be a whole number, got true (a boolean)"),
        ("headers = [1, 2]", "headers must be a list of strings, got a list"),
        ("log_config = { version = 1 }", "log_config must be a path (a string), got a table"),
        ("app = 3", 'app must be an import string such as "main:app"'),
        ('lifespan = "sometimes"', "lifespan must be one of auto, on, off; got 'sometimes'"),
        ('http = "nope"', "http must be one of auto, "),
        ('env_file = "no-such.env"', "env_file: 'no-such.env' does not exist"),
        ("port = 70000", "bad.toml: port must be at most 65535, got 70000"),
        ('root_path = "api"', "bad.toml: root_path must start with '/', got 'api'"),
        ('ssl_keyfile = "key.pem"', "TLS needs both a key and a certificate: add ssl_certfile"),
        ("timeout_notify = 5", "timeout_notify is set only from Python, as run(timeout_notify="),
        ("callback_notify = 'x'", "callback_notify is set only from Python"),
        ("ssl_context_factory = 'x'", "ssl_context_factory is set only from Python"),
        ('config = "other.toml"', "config: a config file cannot name another one"),
        ("port = ", "bad.toml: not valid TOML: Invalid value (at line 2, column 8)"),
        ("[port]\n[port]", "not valid TOML: Cannot declare ('port',) twice (at line 3, column"),
    ],
)
def test_one_line_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    app = "" if text.startswith("app =") else 'app = "main:app"\n'
    path = toml(tmp_path / "bad.toml", f"{app}{text}\n")
    with pytest.raises(ConfigError) as caught:
        build(None, {"config": path})
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the config file .*nope.toml: No such file"):
        build(None, {"config": tmp_path / "nope.toml"})
    with pytest.raises(ConfigError, match=r"cannot read the config file .*: Is a directory"):
        build(None, {"config": tmp_path})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'app = "\xff"\n')
    with pytest.raises(ConfigError, match=r"binary.toml: not valid TOML"):
        build(None, {"config": binary})


def test_no_app_anywhere(tmp_path: Path) -> None:
    path = toml(tmp_path / "ketch.toml", "port = 5000\n")
    with pytest.raises(ConfigError, match=r'ketch.toml: no application to serve: add app = "'):
        build(None, {"config": path})
    assert build("main:app", {"config": path}).port == 5000


def test_an_error_of_the_keywords_does_not_blame_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path / "ketch.toml", 'app = "main:app"\nport = 5000\n')
    with pytest.raises(ConfigError) as caught:
        build(None, {"config": path, "port": 70000})
    assert str(caught.value) == "--port must be at most 65535, got 70000"
    # a file value that a keyword replaces is not checked against Config's rules
    bad = toml(tmp_path / "bad.toml", 'app = "main:app"\nport = 70000\n')
    assert build(None, {"config": bad, "port": 5000}).port == 5000


def test_reread_applies_the_file_under_what_was_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = toml(
        tmp_path / "ketch.toml",
        'app = "one:app"\nport = 5000\nroot_path = "/a"\ntimeout_keep_alive = 7\n',
    )
    running = build(None, {"config": path, "timeout_keep_alive": 9})
    toml(
        path,
        'app = "two:app"\nport = 5001\nworkers = 3\nroot_path = "/b"\n'
        'timeout_keep_alive = 8\nheaders = ["X-New: 1"]\n',
    )
    with caplog.at_level(logging.INFO, logger="ketch.error"):
        new = reread(running)
    assert new.app == "two:app"
    assert new.root_path == "/b"
    assert new.headers == [("X-New", "1")]
    assert new.timeout_keep_alive == 9  # the command line still wins
    assert (new.port, new.workers) == (5000, 1)  # the parent's, kept
    assert new.given == running.given
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{path}: port changed, but only a restart of ketch")
    assert warnings[0].endswith("keeping 5000")
    assert "workers changed" in warnings[1]
    assert "SIGTTIN and SIGTTOU" in warnings[1]
    assert f"Reread {path}: app, root_path, headers changed" in caplog.messages
    # and once more: the next reread starts from the same command line
    assert reread(new).root_path == "/b"


def test_reread_keeps_an_app_given_by_keyword(tmp_path: Path) -> None:
    path = toml(tmp_path / "ketch.toml", 'app = "file:app"\nroot_path = "/a"\n')
    running = build("given:app", {"config": path})
    toml(path, 'app = "other:app"\nroot_path = "/b"\n')
    new = reread(running)
    assert (new.app, new.root_path) == ("given:app", "/b")


def test_reread_of_a_bad_file_raises_and_changes_nothing(tmp_path: Path) -> None:
    path = toml(tmp_path / "ketch.toml", 'app = "main:app"\nroot_path = "/a"\n')
    running = build(None, {"config": path})
    toml(path, 'app = "main:app"\nroot_pth = "/b"\n')
    with pytest.raises(ConfigError, match='did you mean "root_path"'):
        reread(running)
    assert running.root_path == "/a"


def test_reread_without_a_file_is_the_same_config() -> None:
    config = Config("main:app", port=5000)
    assert reread(config) is config


def test_the_parent_owned_settings_are_options() -> None:
    names = {f.name for f, _ in options()}
    assert set(PARENT_OWNED) <= names


def test_the_documentation_lists_what_a_sighup_cannot_change() -> None:
    page = (REPO_DIR / "docs" / "configuration.md").read_text()
    section = page.partition("**What it cannot apply**")[2].partition("```")[0]
    listed = set(re.findall(r"`(\w+)`", section))
    assert listed - {"SIGTTIN", "SIGTTOU"} == set(PARENT_OWNED)
