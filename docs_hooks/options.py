"""MkDocs hook: the settings reference, generated from ketch's option table.

Every option is declared once, in `ketch.core.config.Config`, and the `ketch`
command is built from that table. This hook renders the same table into the
pages at build time, so the documentation cannot drift from the code:

- `<!-- ketch:options -->` becomes one section per option: its command-line
  flag, environment variables, `run()` keyword, type, default and help.
- `<!-- ketch:options-added -->` becomes the list of options ketch adds to
  Uvicorn's (those whose help starts with "(ketch)").

The groups (Sockets, Logging, ...) are the `# --- name ---` comments of the
`Config` class.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import click
from mkdocs.exceptions import PluginError

from ketch.cli.main import build_command
from ketch.core.config import Config, Option, cli_flag, options
from ketch.core.plugins import GROUPS, own_names

OPTIONS_MARKER = "<!-- ketch:options -->"
ADDED_MARKER = "<!-- ketch:options-added -->"
KETCH_ONLY = "(ketch) "

KINDS = {
    "str": "text",
    "int": "integer",
    "float": "number",
    "path": "path to an existing file or directory",
    "file": "path",
    "bool": "flag",
    "boolean": "`true` or `false`",
}

# Defaults that are clearer by their name in the `ssl` module than by value.
NAMED_DEFAULTS = {
    "ssl_version": "`ssl.PROTOCOL_TLS_SERVER`",
    "ssl_cert_reqs": "`ssl.CERT_NONE` (0)",
    "log_config": "ketch's built-in configuration (Uvicorn's format, `ketch.*` loggers)",
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    if OPTIONS_MARKER in markdown:
        markdown = markdown.replace(OPTIONS_MARKER, render_options())
    if ADDED_MARKER in markdown:
        markdown = markdown.replace(ADDED_MARKER, render_added())
    return markdown


def render_options() -> str:
    unknown = set(NAMED_DEFAULTS) - {f.name for f, _ in options()}
    if unknown:
        raise PluginError(f"docs_hooks/options.py names options that do not exist: {unknown}")
    params = {param.name: param for param in build_command().params}
    groups = config_groups()
    out: list[str] = []
    current = None
    python_only: list[str] = []
    for f, option in options():
        if not option.cli:
            python_only.append(render_python_only(f, option))
            continue
        group = groups.get(f.name, "Other")
        if group != current:
            out.append(f"## {group}\n")
            current = group
        param = params.get(f.name)
        if not isinstance(param, click.Option):
            raise PluginError(f"option {f.name!r} is missing from the ketch command")
        out.append(render_option(f, option, param))
    out.append("## Only from Python\n")
    out.append(
        "These settings take Python callables, so they exist only as keywords of "
        "`ketch.core.run()` and `Config`.\n"
    )
    out.extend(python_only)
    return "\n".join(out)


def render_option(f: dataclasses.Field[Any], option: Option, param: click.Option) -> str:
    flags = " / ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
    envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
    rows = [
        ("Command line", flags),
        ("Environment", ", ".join(f"`{name}`" for name in envvars if name)),
        ("Python", f"`run({f.name}=...)`"),
        ("Type", type_text(option)),
        ("Default", default_text(f, option)),
    ]
    anchor = cli_flag(f, option)[2:]
    help_text = option.help.removeprefix(KETCH_ONLY)
    badge = " *(ketch)*" if option.help.startswith(KETCH_ONLY) else ""
    details = "\n".join(f"- {name}: {value}" for name, value in rows)
    return (
        f"### `{cli_flag(f, option)}`{badge} {{ #{anchor} }}\n\n"
        f"{sentence(help_text)}\n\n{details}\n"
    )


def render_python_only(f: dataclasses.Field[Any], option: Option) -> str:
    return (
        f"### `{f.name}` {{ #{f.name.replace('_', '-')} }}\n\n"
        f"{sentence(option.help)} Default: {default_text(f, option)}.\n"
    )


def render_added() -> str:
    lines = []
    for f, option in options():
        if option.help.startswith(KETCH_ONLY):
            flag = cli_flag(f, option)
            lines.append(
                f"- [`{flag}`](settings.md#{flag[2:]}): "
                f"{sentence(option.help.removeprefix(KETCH_ONLY))}"
            )
    return "\n".join(lines)


def type_text(option: Option) -> str:
    if option.registry:
        own = own_names(GROUPS[option.registry])
        choices = ", ".join(f"`{name}`" for name in ["auto", *own, *option.extra_choices])
        text = f"{choices}, or the name of an installed third-party plugin"
    elif option.choices:
        text = "one of " + ", ".join(f"`{choice}`" for choice in option.choices)
    else:
        text = KINDS[option.kind]
    if option.multiple:
        text += "; repeat the flag for several"
    return text


def default_text(f: dataclasses.Field[Any], option: Option) -> str:
    if f.name in NAMED_DEFAULTS:
        return NAMED_DEFAULTS[f.name]
    if not option.show_default:
        return "see the description"
    value = f.default if f.default is not dataclasses.MISSING else None
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    if value is None or value == []:
        return "none"
    if option.kind == "bool":
        return "on" if value else "off"
    return f"`{value}`"


def sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", ")")) else text + "."


def config_groups() -> dict[str, str]:
    """Each field's group, from the `# --- name ---` comments in `Config`."""
    groups: dict[str, str] = {}
    current = "Other"
    for line in inspect.getsource(Config).splitlines():
        heading = re.match(r"\s*# -+ (.+?) -+$", line)
        if heading:
            current = heading.group(1).strip()
            current = current[0].upper() + current[1:]
            continue
        declaration = re.match(r"    (\w+): ", line)
        if declaration:
            groups[declaration.group(1)] = current
    return groups
