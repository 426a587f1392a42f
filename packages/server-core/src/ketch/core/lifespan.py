"""The ASGI lifespan protocol: startup before the port opens, shutdown after the
last request. `scope["state"]` filled at startup is shared (shallow-copied) into
every request scope."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ketch.core._types import ASGI3Application, Message, Scope
from ketch.core.scope import ASGI_VERSIONS

logger = logging.getLogger("ketch.error")

_STARTUP, _SHUTDOWN = "lifespan.startup", "lifespan.shutdown"


class Lifespan:
    def __init__(self, app: ASGI3Application, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode  # "on" or "auto"
        self.state = state
        self.unsupported = False
        self.failed = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._received_any = False
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> bool:
        """Run the application's startup; False when it failed (the server must not start)."""
        logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._inbox.put({"type": _STARTUP})
        await self._startup_done.wait()
        if self.failed:
            return False
        if not self.unsupported:
            logger.info("Application startup complete.")
        return True

    async def shutdown(self) -> None:
        if self.unsupported or self._task is None or self._task.done():
            return
        logger.info("Waiting for application shutdown.")
        await self._inbox.put({"type": _SHUTDOWN})
        await self._shutdown_done.wait()
        if not self.failed:
            logger.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": ASGI_VERSIONS, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if self.mode == "auto" and not self._received_any:
                # it raised before even looking at the lifespan messages
                self.unsupported = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self.failed = True
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            if not self._startup_done.is_set():
                if self.mode == "auto":
                    self.unsupported = True
                    logger.info("ASGI 'lifespan' protocol appears unsupported.")
                else:
                    self.failed = True
                    logger.error("The application returned before completing lifespan startup.")
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        self._received_any = True
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete" and not self._startup_done.is_set():
            self._startup_done.set()
        elif kind == "lifespan.startup.failed" and not self._startup_done.is_set():
            self.failed = True
            logger.error("Application startup failed. %s", message.get("message", ""))
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete" and self._startup_done.is_set():
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed" and self._startup_done.is_set():
            self.failed = True
            logger.error("Application shutdown failed. %s", message.get("message", ""))
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message {kind!r}")
