"""`run()`: the programmatic entry point, and what the `ketch` command calls."""

from __future__ import annotations

import sys
from typing import Any

from ketch.core.config import Config
from ketch.core.errors import ConfigError
from ketch.core.logging import configure_logging
from ketch.core.plugins import select_supervisor
from ketch.core.server import Server, load_env_file


def run(app: Any, **options: Any) -> None:
    """Serve `app` (an ASGI/WSGI application or an import string such as
    "main:app") with the given options, until stopped.

    Takes every keyword of `Config`. Problems the user can fix raise
    `ketch.core.errors.KetchError` subclasses with a one-line message; a failed
    application startup exits the process with status 3.
    """
    config = Config(app, **options)
    configure_logging(
        config.log_config, config.log_level_number, config.access_log, config.use_colors
    )
    load_env_file(config.env_file)
    if config.use_subprocess:
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
    return select_supervisor(name, option).run(config)
