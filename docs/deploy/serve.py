"""Start ketch from Python: `python serve.py` (PORT from the environment)."""

import os

from ketch.core import run

# With workers, the application is given as an import string, and the call is
# guarded: each worker is a new Python process that imports this file again.
if __name__ == "__main__":
    run(
        "main:app",
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        workers=2,
        timeout_graceful_shutdown=20,
    )
