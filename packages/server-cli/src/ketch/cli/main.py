"""The `ketch` command: every `uvicorn --help` option under the same name.

The options are generated from `ketch.core.config.options()`, so the command
line, `run()` and `Config` share one definition. `--http`, `--ws` and `--loop`
list what the plugin registry has installed, third-party plugins included.
Every option can also be set as `KETCH_<OPTION>` in the environment. Only the
values given on the command line or in the environment are passed to `run()`,
which puts the settings of a `--config` file beneath them.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import MISSING
from typing import Any

import click
from click.shell_completion import CompletionItem

from ketch.core import __version__, run
from ketch.core.config import cli_flag, options
from ketch.core.errors import KetchError
from ketch.core.plugins import GROUPS, names

ENV_PREFIX = "KETCH_"


def version_text() -> str:
    return (
        f"Running ketch {__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}"
    )


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


CERT_REQS = {"none": 0, "optional": 1, "required": 2}


class CertReqs(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.5 on
    """--ssl-cert-reqs: ssl.VerifyMode by its name (none, optional, required) or number."""

    name = "cert_reqs"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[none|optional|required|0|1|2]"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(name) for name in CERT_REQS if name.startswith(incomplete)]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip().lower()
        number = int(text) if text.isdigit() else CERT_REQS.get(text, -1)
        if number not in CERT_REQS.values():
            self.fail(f"{value!r} is not one of none, optional, required (or 0, 1, 2)", param, ctx)
        return number


def _types() -> dict[str, Any]:
    return {
        "str": click.STRING,
        "int": click.INT,
        "float": click.FLOAT,
        "path": click.Path(exists=True),
        "file": click.Path(),
        "boolean": click.BOOL,
        "cert_reqs": CertReqs(),
    }


class PluginChoice(click.Choice):  # type: ignore[type-arg]
    """Shows the installed plugins in the help, but takes any name: one that is
    not installed gets the registry's one-line error, which says what to install."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


def build_params() -> list[click.Parameter]:
    """The command's parameters, one per `Config` option marked for the CLI."""
    types = _types()
    # optional: a --config file may name the app instead
    params: list[click.Parameter] = [
        click.Argument(["app"], envvar=f"{ENV_PREFIX}APP", required=False)
    ]
    for field, option in options():
        if not option.cli:
            continue
        flag = cli_flag(field, option)
        envvars = [ENV_PREFIX + flag[2:].replace("-", "_").upper(), *option.envvars]
        default = None if field.default is MISSING else field.default
        common: dict[str, Any] = {
            "help": option.help,
            "envvar": envvars,
            "show_envvar": True,
            "show_default": option.show_default and default not in (None, "", False),
        }
        if option.kind == "bool":
            decls = [field.name, flag if default is False else f"{flag}/--no-{flag[2:]}"]
            params.append(click.Option(decls, is_flag=True, default=default, **common))
            continue
        if option.registry:
            installed = names(GROUPS[option.registry])
            kind: Any = PluginChoice(["auto", *installed, *option.extra_choices])
        elif option.choices:
            kind = click.Choice(list(option.choices))
        else:
            kind = types[option.kind]
        params.append(
            click.Option(
                [field.name, flag, *option.aliases],
                type=kind,
                default=() if option.multiple else default,
                multiple=option.multiple,
                **common,
            )
        )
    params.append(
        click.Option(
            ["--version"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_print_version,
            help="Display the ketch version and exit.",
        )
    )
    return params


def _serve(**values: Any) -> None:
    ctx = click.get_current_context()
    app = values.pop("app")
    chosen: dict[str, Any] = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if source in (click.core.ParameterSource.DEFAULT, None):
            continue  # let Config decide, exactly as for run()
        chosen[name] = list(value) if isinstance(value, tuple) else value
    if app is None and "config" not in chosen:
        raise click.UsageError("Missing argument 'APP' (or a --config file that names it).", ctx)
    try:
        run(app, **chosen)
    except KetchError as exc:
        raise click.ClickException(str(exc)) from None


def build_command() -> click.Command:
    return click.Command(
        "ketch",
        callback=_serve,
        params=build_params(),
        help="Serve the ASGI (or WSGI) application APP, given as module:attribute "
        "(or as app in the --config file).",
        context_settings={"max_content_width": 100, "show_default": False},
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The `ketch` console script."""
    command = build_command()
    command.main(args=list(argv) if argv is not None else None, prog_name="ketch")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
