"""The plugin objects ketch-supervisor registers in the `ketch.supervisor` group.
Importing this module imports neither watchfiles nor gunicorn."""

from __future__ import annotations

from ketch.core.api import LazyPlugin

# `--workers N`: a parent that keeps N healthy worker processes
WORKERS = LazyPlugin(
    name="workers",
    priority=0,
    requirement="ketch-supervisor",
    implementation="ketch.supervisor.workers",
)
# `--reload`: watchfiles when installed, polling otherwise
RELOAD = LazyPlugin(
    name="reload",
    priority=0,
    requirement="ketch-supervisor",
    implementation="ketch.supervisor.reload",
)
