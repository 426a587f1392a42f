"""`--config FILE`: settings from a TOML file, under the command line and the environment.

The file's keys are `run()`'s keywords (`port = 5000`, `headers = ["X-A: 1"]`,
`app = "main:app"`); a `pyproject.toml` is read from its `[tool.ketch]` table.
The valid keys are `Config`'s command-line options, so every option accepts a
file value with no list to keep up to date. Keys that take Python objects
(`callback_notify`, `ssl_context_factory`) are refused, and `log_config` is a
path there, as on the command line.

Precedence, highest first: `run()`'s keywords (which the `ketch` command fills
from its command line and the `KETCH_*` environment), the Uvicorn-compatible
environment variables (`WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`), the file, the
defaults. Relative paths in the file are relative to the working directory, as
on the command line.

A mistake in the file is a `ConfigError` of one line naming the file and the
key (and, for a misspelt key, the closest valid one); nothing starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from ketch.core.config import Config, cli_flag, options
from ketch.core.errors import ConfigError
from ketch.core.options import Option
from ketch.core.plugins import GROUPS, names

logger = logging.getLogger("ketch.error")

# What the workers' parent owns: the sockets it bound, the size of the pool and
# the reload watcher, and the environment it loaded and its children inherit.
# A rolling restart cannot change them; stopping and starting ketch does.
PARENT_OWNED = (
    "host",
    "port",
    "uds",
    "fd",
    "backlog",
    "workers",
    "reload",
    "reload_dirs",
    "reload_includes",
    "reload_excludes",
    "reload_delay",
    "env_file",
)

_KIND_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "boolean": "true or false",
    "str": "a string",
    "path": "a path (a string)",
    "file": "a path (a string)",
}


def build(app: Any, given: Mapping[str, Any]) -> Config:
    """The Config that `run(app, **given)` serves: with `given["config"]`, the
    file's settings under `given`. An error caused by a value from the file names
    the file."""
    path = given.get("config")
    if path is None:
        if app is None:
            raise ConfigError("no application to serve: give it as module:attribute")
        return Config(app, **given)
    settings = read(path)
    # WEB_CONCURRENCY and FORWARDED_ALLOW_IPS win over the file, as over the defaults
    for name, option in _file_options().items():
        if any(os.environ.get(var, "").strip() for var in option.envvars):
            settings.pop(name, None)
    # what reread() must keep above the file: all that was given, the app included
    above = {name: value for name, value in given.items() if name != "config"}
    file_app = settings.pop("app", None)
    if app is not None:
        above["app"] = app
    elif file_app is not None:
        app = file_app
    else:
        raise ConfigError(
            f'{os.fspath(path)}: no application to serve: add app = "module:attribute" '
            "or give it on the command line"
        )
    try:
        return Config(app, **{**settings, **given}, given=above)
    except ConfigError as exc:
        try:  # is the error still there without the file's settings?
            Config(app, **given)
        except ConfigError:
            raise exc from None
        raise ConfigError(f"{os.fspath(path)}: {_in_file_terms(str(exc))}") from None


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a config file, each checked against its option: the
    right type, one of the choices, an existing path."""
    name = os.fspath(path)
    table: Any = _parse(name)
    if os.path.basename(name) == "pyproject.toml":
        table = table.get("tool", {}).get("ketch") if isinstance(table.get("tool"), dict) else None
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: no [tool.ketch] table to read ketch's settings from")
    known = _file_options()
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if key == "app":
            if not isinstance(value, str):
                raise ConfigError(f'{name}: app must be an import string such as "main:app"')
            settings[key] = value
            continue
        option = known.get(key)
        if option is None:
            raise ConfigError(f"{name}: {_unknown(key)}")
        settings[key] = _check(name, key, option, value)
    return settings


def reread(config: Config) -> Config:
    """The settings for the new workers of a rolling restart (SIGHUP): the config
    file read again, under the same command line and environment.

    Settings the parent owns (`PARENT_OWNED`) keep their running values, with
    a warning for each that the file changed. A bad file raises the one-line
    ConfigError; the caller keeps its workers. Without a file: `config` itself.
    """
    if config.config is None:
        return config
    path = os.fspath(config.config)
    given = dict(config.given)
    new = build(given.pop("app", None), {**given, "config": config.config})
    kept: dict[str, Any] = {}
    changed: list[str] = []
    for f, _ in options():
        old_value, new_value = getattr(config, f.name), getattr(new, f.name)
        if old_value == new_value:
            continue
        if f.name in PARENT_OWNED:
            logger.warning(
                "%s: %s changed, but only a restart of ketch can apply it (a SIGHUP "
                "restarts the workers, not their parent%s); keeping %r",
                path,
                f.name,
                "; SIGTTIN and SIGTTOU add and remove workers" if f.name == "workers" else "",
                old_value,
            )
            kept[f.name] = old_value
        else:
            changed.append(f.name)
    if new.app != config.app:
        changed.insert(0, "app")
    logger.info(
        "Reread %s: %s", path, f"{', '.join(changed)} changed" if changed else "nothing changed"
    )
    return new.replace(**kept) if kept else new


# --- reading and checking -------------------------------------------------------------
def _parse(name: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(name, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {name}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not valid TOML: the file is not UTF-8 text") from None


def _file_options() -> dict[str, Option]:
    """The settings a file may give: every command-line option but --config."""
    return {f.name: option for f, option in options() if option.cli and f.name != "config"}


def _unknown(key: str) -> str:
    every = {f.name: option for f, option in options()}
    if key == "config":
        return "config: a config file cannot name another one"
    if key in every:  # an option that is not on the command line: a Python object
        return f"{key} is set only from Python, as run({key}=...)"
    close = difflib.get_close_matches(key, ["app", *_file_options()], n=1)
    hint = f'; did you mean "{close[0]}"?' if close else " (the settings page lists them)"
    return f'unknown setting "{key}"{hint}'


def _check(name: str, key: str, option: Option, value: Any) -> Any:
    """`value` as Config takes it, or a ConfigError naming the file and the key."""
    if option.multiple or _takes_list(key):
        items = [value] if isinstance(value, str) else value
        if not (isinstance(items, list) and all(isinstance(item, str) for item in items)):
            raise ConfigError(f"{name}: {key} must be a list of strings, got {_describe(value)}")
        for item in items:
            _check_choice_and_path(name, key, option, item)
        return items if option.multiple else value
    kind = option.kind
    if kind in ("bool", "boolean"):
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{name}: {key} must be {_KIND_NAMES[kind]}, got {_describe(value)}")
    if isinstance(value, str):
        _check_choice_and_path(name, key, option, value)
    return float(value) if kind == "float" else value


def _check_choice_and_path(name: str, key: str, option: Option, value: str) -> None:
    allowed = list(option.choices)
    if option.registry:
        allowed = ["auto", *names(GROUPS[option.registry]), *option.extra_choices]
    if allowed and value not in allowed:
        raise ConfigError(f"{name}: {key} must be one of {', '.join(allowed)}; got {value!r}")
    if option.kind == "path" and not os.path.exists(value):
        raise ConfigError(f"{name}: {key}: {value!r} does not exist")


def _takes_list(key: str) -> bool:
    """True for a setting given as one string on the command line but typed to
    take a list too (`forwarded_allow_ips = ["10.0.0.1", "10.0.0.2"]`)."""
    field_type = {f.name: f.type for f in dataclasses.fields(Config)}[key]
    return isinstance(field_type, str) and "list[" in field_type


def _describe(value: Any) -> str:
    """A value as the file spells it, and its TOML type."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, int | float):
        return f"{value!r} ({'a whole number' if isinstance(value, int) else 'a number'})"
    if isinstance(value, list):
        return "a list"
    return "a table" if isinstance(value, dict) else f"a {type(value).__name__}"


def _in_file_terms(message: str) -> str:
    """Config's errors name command-line flags (--port); a file has keys (port)."""
    for f, option in options():
        for flag in (cli_flag(f, option), *option.aliases):
            message = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", f.name, message)
    return message
