"""The event-loop plugins ketch-core registers: `asyncio` and `uvloop`."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AsyncioLoop:
    name: str = "asyncio"
    priority: int = 0
    requirement: str = "ketch-core"

    def available(self) -> bool:
        return True

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        return asyncio.new_event_loop


@dataclass(frozen=True)
class UvloopLoop:
    name: str = "uvloop"
    priority: int = 10
    requirement: str = "ketch-core[uvloop]"

    def available(self) -> bool:
        return importlib.util.find_spec("uvloop") is not None

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory


ASYNCIO = AsyncioLoop()
UVLOOP = UvloopLoop()
