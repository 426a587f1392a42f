"""ketch-core: the programmatic API of the ketch ASGI server.

from ketch.core import run
run("main:app", port=5000)
"""

from __future__ import annotations

import importlib.metadata

from ketch.core.config import Config
from ketch.core.context import ServerContext
from ketch.core.errors import KetchError
from ketch.core.main import run
from ketch.core.server import Server

# one version, kept in pyproject.toml: read from the installed distribution
__version__ = importlib.metadata.version("ketch-core")
__all__ = ["Config", "KetchError", "Server", "ServerContext", "__version__", "run"]
