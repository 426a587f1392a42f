"""The plugin object ketch-h2 registers in the `ketch.http2` entry-point group.
Importing this module does not import h2."""

from __future__ import annotations

from ketch.core.api import LazyPlugin

H2 = LazyPlugin(
    name="h2",
    priority=10,
    requirement="ketch-h2",
    implementation="ketch.h2.connection",  # protocol_factory() is read from here
    needs=("h2",),
)
