"""Write the generated parts of the documentation into its Markdown files.

The docs are read in two places: the MkDocs site, and the repository's web
page, which shows the Markdown files as they are. So nothing is generated at
build time: what comes from elsewhere is written into the pages, between
markers, and committed:

    <!-- generated: options (hatch run docs-sync) -->
    ...
    <!-- end generated -->

- `options`: the settings reference, one section per option of
  `ketch.core.config.Config` (flag, environment variables, `run()` keyword,
  type, default, help), grouped by the `# --- name ---` comments of `Config` (and its base).
- `options-added`: the options ketch adds to Uvicorn's (help starting with
  "(ketch)"), each linked to its section of the settings page.
- `file PATH` or `file PATH:SECTION`: a file of the repository, such as a
  configuration file of `docs/deploy/` that the integration tests run. If the
  generated text is a fenced code block, its opening line (the language) is
  kept. A section is the lines between `--8<-- [start:SECTION]` and
  `--8<-- [end:SECTION]` in the file; those marker lines are never shown.
- `changelogs`: the release notes, every `packages/*/CHANGELOG.md`.

A line `--8<-- "PATH"` (alone, or the only line of a fenced code block)
becomes a generated `file` part on the next run, so a new page can be
written that way.

    hatch run docs-sync            # rewrite every generated part
    hatch run docs-sync --check    # list the stale pages and exit 1 (the tests run this)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import click

from ketch.cli.main import build_command
from ketch.core.config import Config, cli_flag, options
from ketch.core.options import Option
from ketch.core.plugins import GROUPS, own_names

REPO = Path(__file__).resolve().parent.parent
COMMAND = "hatch run docs-sync"

PART = re.compile(
    r"<!-- generated: (?P<spec>[^()>]+?)(?: \([^)]*\))? -->\n(?P<body>.*?)<!-- end generated -->\n",
    re.DOTALL,
)
INCLUDE = re.compile(
    r"^(?:(?P<fence>(?P<ticks>`{3,}|~{3,})[^\n]*)\n)?"  # an optional opening fence,
    r'--8<-- "(?P<path>[^"]+)"\n'  # the include line,
    r"(?(fence)(?P=ticks)\n)",  # and the closing fence if it was opened
    re.MULTILINE,
)
FENCE = re.compile(r"(`{3,}|~{3,})[^\n]*\n")
SECTION_MARKER = re.compile(r"--8<-- \[(start|end):[\w-]+\]")


class GenerationError(Exception):
    """A generated part names something that does not exist."""


# --- the parts ----------------------------------------------------------------------------
def generate(spec: str, old_body: str, root: Path) -> str:
    kind, _, argument = spec.partition(" ")
    if kind == "options":
        return render_options() + "\n"
    if kind == "options-added":
        return render_added() + "\n"
    if kind == "changelogs":
        return render_changelogs(root)
    if kind == "file":
        return render_file(argument, old_body, root)
    raise GenerationError(f"unknown generated part {spec!r}")


def render_file(argument: str, old_body: str, root: Path) -> str:
    path, _, section = argument.partition(":")
    source = root / path
    if not source.is_file():
        raise GenerationError(f"no such file: {path}")
    lines = source.read_text().splitlines(keepends=True)
    if section:
        start = [i for i, line in enumerate(lines) if f"--8<-- [start:{section}]" in line]
        end = [i for i, line in enumerate(lines) if f"--8<-- [end:{section}]" in line]
        if len(start) != 1 or len(end) != 1 or start[0] > end[0]:
            raise GenerationError(f"{path} has no section {section!r}")
        lines = lines[start[0] + 1 : end[0]]
    text = "".join(line for line in lines if not SECTION_MARKER.search(line))
    if text and not text.endswith("\n"):
        text += "\n"
    fence = FENCE.match(old_body)
    if fence is None:
        return text
    if fence.group(1) in text:
        raise GenerationError(f"{path} contains {fence.group(1)}: use a longer fence")
    return fence.group(0) + text + fence.group(1) + "\n"


def render_changelogs(root: Path) -> str:
    """Each distribution's changelog under its name, its headings one level down."""
    out = []
    for changelog in sorted(root.glob("packages/*/CHANGELOG.md")):
        text = changelog.read_text().strip() + "\n"
        text = re.sub(r"^# Changelog: ", "# ", text, count=1)
        text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)
        out.append(text)
    return "\n".join(out)


# --- the settings reference ------------------------------------------------------------------
KETCH_ONLY = "(ketch) "

KINDS = {
    "str": "text",
    "int": "integer",
    "float": "number",
    "path": "path to an existing file or directory",
    "file": "path",
    "bool": "flag",
    "boolean": "`true` or `false`",
    "cert_reqs": "`none`, `optional` or `required` (or `0`, `1`, `2`: `ssl.CERT_NONE`, ...)",
}

# Defaults that are clearer by their name in the `ssl` module than by value.
NAMED_DEFAULTS = {
    "ssl_version": "`ssl.PROTOCOL_TLS_SERVER`",
    "ssl_cert_reqs": "`none` (0, `ssl.CERT_NONE`)",
    "log_config": "ketch's built-in configuration (Uvicorn's format, `ketch.*` loggers)",
}


def render_options() -> str:
    unknown = set(NAMED_DEFAULTS) - {f.name for f, _ in options()}
    if unknown:
        raise GenerationError(f"tools/docs_sync.py names options that do not exist: {unknown}")
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
            raise GenerationError(f"option {f.name!r} is missing from the ketch command")
        out.append(render_option(f, option, param))
    out.append("## Only from Python\n")
    out.append(
        "These settings take Python callables, so they exist only as keywords of "
        "`ketch.core.run()` and `Config`.\n"
    )
    out.extend(python_only)
    return "\n".join(out)


def render_option(f: dataclasses.Field[Any], option: Option, param: click.Option) -> str:
    """One option's section. Its anchor (the flag without dashes, which other
    pages link to) is an HTML anchor: both the site and the repository's web
    page honour it, where a heading attribute `{ #id }` would show as text."""
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
        f'<a id="{anchor}"></a>\n\n### `{cli_flag(f, option)}`{badge}\n\n'
        f"{sentence(help_text)}\n\n{details}\n"
    )


def render_python_only(f: dataclasses.Field[Any], option: Option) -> str:
    return (
        f'<a id="{f.name.replace("_", "-")}"></a>\n\n### `{f.name}`\n\n'
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
    """Each field's group, from the `# --- name ---` comments in `Config` and
    the dataclasses it inherits fields from (base first, as the fields are)."""
    groups: dict[str, str] = {}
    current = "Other"
    classes = [c for c in reversed(Config.__mro__) if dataclasses.is_dataclass(c)]
    for line in "\n".join(inspect.getsource(c) for c in classes).splitlines():
        heading = re.match(r"\s*# -+ (.+?) -+$", line)
        if heading:
            current = heading.group(1).strip()
            current = current[0].upper() + current[1:]
            continue
        declaration = re.match(r"    (\w+): ", line)
        if declaration:
            groups[declaration.group(1)] = current
    return groups


# --- the pages ------------------------------------------------------------------------------
def part(spec: str, body: str) -> str:
    return f"<!-- generated: {spec} ({COMMAND}) -->\n{body}<!-- end generated -->\n"


def synced(text: str, root: Path) -> str:
    """The page with every generated part rewritten, `--8<--` lines converted."""

    def include(match: re.Match[str]) -> str:
        fence = match.group("fence")
        body = f"{fence}\n{match.group('ticks')}\n" if fence else ""
        return part(f"file {match.group('path')}", body)

    text = INCLUDE.sub(include, text)
    return PART.sub(
        lambda m: part(m.group("spec"), generate(m.group("spec"), m.group("body"), root)), text
    )


def pages(root: Path) -> list[Path]:
    return sorted((root / "docs").rglob("*.md"))


def sync(root: Path, check: bool) -> list[Path]:
    """The pages whose generated parts were stale (rewritten unless `check`)."""
    stale = []
    for page in pages(root):
        text = page.read_text()
        try:
            new = synced(text, root)
        except GenerationError as exc:
            raise GenerationError(f"{page.relative_to(root)}: {exc}") from None
        if new != text:
            stale.append(page)
            if not check:
                page.write_text(new)
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        stale = sync(args.root, args.check)
    except GenerationError as exc:
        sys.exit(f"error: {exc}")
    names = ", ".join(str(page.relative_to(args.root)) for page in stale)
    if args.check and stale:
        sys.exit(f"stale generated documentation in {names}: run `{COMMAND}` and commit")
    if stale:
        print(f"rewrote {names}")


if __name__ == "__main__":
    main()
