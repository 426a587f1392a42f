"""The plugin objects ketch-http registers in the `ketch.http` entry-point group.
Importing this module imports neither h11 nor httptools."""

from __future__ import annotations

from ketch.core.api import LazyPlugin

H11 = LazyPlugin(
    name="h11",
    priority=10,
    requirement="ketch-http",
    implementation="ketch.http.h11_impl",
    needs=("h11",),
)
HTTPTOOLS = LazyPlugin(
    name="httptools",
    priority=20,
    requirement="ketch-http[httptools]",
    implementation="ketch.http.httptools_impl",
    needs=("httptools",),
)
