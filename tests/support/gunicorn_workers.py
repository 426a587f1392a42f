"""A user's own gunicorn worker class: ketch's, with CONFIG_KWARGS set."""

from __future__ import annotations

from typing import Any, ClassVar

from ketch.supervisor.gunicorn import KetchWorker


class MountedH11Worker(KetchWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "asyncio",
        "http": "h11",
        "root_path": "/mounted",
    }
