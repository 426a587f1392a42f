"""`run()`: the programmatic entry point, and what the `ketch` command calls."""

from __future__ import annotations

import os
import sys
from typing import Any

from ketch.core.config import Config
from ketch.core.config_file import build
from ketch.core.errors import ConfigError, KetchError
from ketch.core.logging import setup_logging
from ketch.core.plugins import SUPERVISOR, load
from ketch.core.server import Server


def run(app: Any = None, **options: Any) -> None:
    """Serve `app` (an ASGI/WSGI application or an import string such as
    "main:app") with the given options, until stopped.

    Takes every keyword of `Config`. With `config="ketch.toml"`, the file's
    settings (its `app` too) apply under the keywords (`ketch.core.config_file`).
    Problems the user can fix raise `ketch.core.errors.KetchError` subclasses
    with a one-line message; a failed application startup exits the process
    with status 3.
    """
    if sys.platform == "win32":
        # UNIX sockets, signals and the supervisors are POSIX here, and nothing
        # is tested on Windows: say so at once rather than fail somewhere later.
        raise KetchError(
            "ketch runs on Linux and macOS, not on Windows yet: run it under WSL 2 or in a "
            "Linux container (docs/docker.md)"
        )
    config = build(app, options)
    load_env_file(config.env_file)
    if config.use_subprocess:
        setup_logging(config)  # the supervisor's; each server process sets up its own
        status = run_supervised(config)
    else:
        server = Server(config)
        server.run()
        status = server.exit_code
    if status:
        sys.exit(status)


def run_supervised(config: Config) -> int:
    """Hand the server to the `reload` or `workers` supervisor plugin."""
    if config.reload:
        option, name = "--reload", "reload"
    elif (config.workers or 1) > 1:
        option, name = f"--workers {config.workers}", "workers"
    else:
        option = (
            "--limit-worker-memory" if config.limit_worker_memory else "--limit-worker-lifetime"
        )
        name = "workers"
    if not isinstance(config.app, str):
        raise ConfigError(
            f"{option} starts new processes, which import the application themselves: pass it "
            'as an import string such as "main:app" instead of the application object'
        )
    return load(SUPERVISOR, name, option).run(config)


def load_env_file(path: str | os.PathLike[str] | None) -> None:
    if path is None:
        return
    try:
        from dotenv import load_dotenv
    except ImportError:
        raise ConfigError(
            "--env-file needs python-dotenv: pip install 'ketch-core[dotenv]'"
        ) from None
    if not os.path.isfile(path):
        raise ConfigError(f"--env-file {os.fspath(path)}: no such file")
    load_dotenv(dotenv_path=path)
