"""The plugin objects ketch-supervisor registers in the `ketch.supervisor` group.
Importing this module imports neither watchfiles nor gunicorn."""

from __future__ import annotations

from ketch.core import Config


class Workers:
    name = "workers"
    priority = 0
    requirement = "ketch-supervisor"

    def available(self) -> bool:
        return True

    def run(self, config: Config) -> int:
        from ketch.supervisor.workers import Supervisor

        return Supervisor(config).run()


class Reload:
    name = "reload"
    priority = 0
    requirement = "ketch-supervisor"

    def available(self) -> bool:
        return True  # watchfiles when installed, polling otherwise

    def run(self, config: Config) -> int:
        from ketch.supervisor.reload import ReloadSupervisor

        return ReloadSupervisor(config).run()


WORKERS = Workers()
RELOAD = Reload()
