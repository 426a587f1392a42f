"""ketch-cli: the `ketch` command, built from ketch-core's option table."""

from __future__ import annotations

from ketch.cli.main import build_command, main

__all__ = ["build_command", "main"]
