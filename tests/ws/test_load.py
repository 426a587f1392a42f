"""Many connections at once: 500 clients each echo 100 messages, without an error."""

from __future__ import annotations

import asyncio
import time

from support import KetchProcess
from websockets.asyncio.client import connect

CLIENTS = 500
MESSAGES = 100


async def _client(port: int, index: int) -> int:
    async with connect(f"ws://127.0.0.1:{port}/", compression=None, open_timeout=30) as ws:
        for number in range(MESSAGES):
            text = f"{index}:{number}"
            await ws.send(text)
            assert await ws.recv() == text
    return MESSAGES


def test_500_connections_echo_100_messages_each(ws_impl: str) -> None:
    args = ["support.websocket:app", "--port", "0", "--ws", ws_impl, "--http", "httptools"]
    args += ["--loop", "uvloop", "--backlog", "1024"]
    with KetchProcess(args) as ketch:
        port = ketch.port()

        async def main() -> list[int | BaseException]:
            clients = (_client(port, index) for index in range(CLIENTS))
            return await asyncio.gather(*clients, return_exceptions=True)

        started = time.monotonic()
        results = asyncio.run(asyncio.wait_for(main(), 60))
        elapsed = time.monotonic() - started
    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == [], f"{len(errors)} clients failed, first: {errors[0]!r}"
    assert sum(results) == CLIENTS * MESSAGES  # type: ignore[arg-type]
    assert elapsed < 30, f"took {elapsed:.1f}s"
