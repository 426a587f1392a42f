"""ketch inside a program that runs its own asyncio event loop: `python embed.py`."""

import asyncio
import os

from main import app

from ketch.core import Config, Server


async def main() -> None:
    config = Config(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
    server = Server(config)
    # serve() returns once the server has stopped: on SIGINT or SIGTERM, or
    # after server.request_exit() from the program itself.
    await server.serve()


if __name__ == "__main__":
    asyncio.run(main())
