"""ketch-core: the programmatic API of the ketch ASGI server.

from ketch.core import run
run("main:app", port=5000)
"""

from __future__ import annotations

from ketch.core.config import Config
from ketch.core.context import ServerContext
from ketch.core.errors import KetchError
from ketch.core.main import run
from ketch.core.server import Server

__version__ = "0.1.0"
__all__ = ["Config", "KetchError", "Server", "ServerContext", "__version__", "run"]
