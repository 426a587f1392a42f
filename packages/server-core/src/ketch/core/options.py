"""How each `Config` setting is described (`Option`) and checked.

A setting is a dataclass field whose metadata holds its `Option`: the command
line, the environment variables, the config file and the settings page are all
built from it. The checks raise `ConfigError` with a one-line message that
names the option as the user spelled it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ketch.core.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """How one `Config` field appears on the command line and in the docs."""

    help: str
    # "str", "int", "float", "path" (must exist), "file" (need not exist),
    # "bool" (a --x/--no-x or a lone --x flag), "boolean" (takes true/false),
    # "cert_reqs" (an ssl.VerifyMode: none, optional, required or 0, 1, 2).
    kind: str = "str"
    flag: str = ""  # the CLI spelling when it is not --<field-name>
    aliases: tuple[str, ...] = ()
    multiple: bool = False
    choices: tuple[str, ...] = ()
    # Choices read from a plugin registry group (ketch.http, ketch.ws, ketch.loop).
    registry: str = ""
    extra_choices: tuple[str, ...] = ()
    # Environment variables read besides KETCH_<OPTION>, in order of preference.
    envvars: tuple[str, ...] = ()
    cli: bool = True  # False: only for run() and Config (callables, dicts)
    show_default: bool = True
    # The range a number must be in (`above`: strictly greater than `low`);
    # checked with `choices` by `check_option()`, for every setting alike.
    low: float | None = None
    high: float | None = None
    above: bool = False


def option_field(default: Any, option: Option, repr: bool = True) -> Any:
    if isinstance(default, list | dict):
        value = default
        return field(
            default_factory=lambda: type(value)(value), metadata={"option": option}, repr=repr
        )
    return field(default=default, metadata={"option": option}, repr=repr)


def int_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name} must be a whole number, got {raw!r}") from None


def check_range(
    flag: str, value: float, low: float, high: float | None, exclusive: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{flag} must be a number, got {value!r}")
    if value < low or (exclusive and value == low):
        bound = f"greater than {low}" if exclusive else f"at least {low}"
        raise ConfigError(f"{flag} must be {bound}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{flag} must be at most {high}, got {value}")


def check_choice(flag: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")


def parse_header(header: tuple[str, str] | str) -> tuple[str, str]:
    if isinstance(header, str):
        name, sep, value = header.partition(":")
        if not sep:
            raise ConfigError(f"--header needs the form Name:Value, got {header!r}")
        header = (name, value)
    name, value = header[0].strip(), header[1].strip()
    if not name or any(c in name for c in " \t\r\n:"):
        raise ConfigError(f"--header has an invalid header name: {name!r}")
    if any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"--header {name}: the value may not contain line breaks")
    return name, value


def check_option(flag: str, option: Option, value: Any) -> None:
    """Check a setting's value against what its Option says (range, choices)."""
    if value is None:
        return
    if option.low is not None or option.high is not None:
        check_range(flag, value, option.low or 0, option.high, exclusive=option.above)
    if option.choices and isinstance(value, str):
        check_choice(flag, value, option.choices)
