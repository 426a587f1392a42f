"""The event-loop plugins ketch-core registers: `asyncio` and `uvloop`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ketch.core.plugins import LazyPlugin

ASYNCIO = LazyPlugin(
    name="asyncio",
    priority=0,
    requirement="ketch-core",
    implementation="ketch.core.loops:AsyncioImplementation",
)
UVLOOP = LazyPlugin(
    name="uvloop",
    priority=10,
    requirement="ketch-core[uvloop]",
    implementation="ketch.core.loops:UvloopImplementation",
    needs=("uvloop",),
)


class AsyncioImplementation:
    """What the `asyncio` plugin does, once it is used."""

    @staticmethod
    def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
        return asyncio.new_event_loop


class UvloopImplementation:
    """What the `uvloop` plugin does, once it is used (uvloop is imported then)."""

    @staticmethod
    def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
