"""The plugin interfaces and the registry that finds plugins by entry point.

Four entry-point groups: `ketch.http`, `ketch.ws`, `ketch.loop` and
`ketch.supervisor`. Each entry point names a plugin object (see the Protocols
below). Only the plugin that is asked for is loaded; `auto` loads ketch's own
plugins of the group (small objects that import nothing heavy) and takes the
available one of highest priority. A plugin that is missing, broken or cannot
run here is a one-line `PluginError` that says what to install.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Protocol, TypeVar

from ketch.core.errors import PluginError

if TYPE_CHECKING:
    from ketch.core._types import WebSocketScope
    from ketch.core.config import Config
    from ketch.core.context import ServerContext

HTTP_GROUP = "ketch.http"
WS_GROUP = "ketch.ws"
LOOP_GROUP = "ketch.loop"
SUPERVISOR_GROUP = "ketch.supervisor"

# The distributions whose plugins `auto` chooses from.
OWN_DISTRIBUTIONS = frozenset({"ketch-core", "ketch-http", "ketch-ws", "ketch-supervisor"})

# What to install for each of ketch's own plugins, so that asking for one whose
# distribution is not installed at all still names the fix.
KNOWN_PLUGINS: dict[tuple[str, str], str] = {
    (HTTP_GROUP, "h11"): "ketch-http",
    (HTTP_GROUP, "httptools"): "ketch-http[httptools]",
    (WS_GROUP, "websockets"): "ketch-ws[websockets]",
    (WS_GROUP, "websockets-sansio"): "ketch-ws[websockets]",  # Uvicorn's name
    (WS_GROUP, "wsproto"): "ketch-ws[wsproto]",
    (LOOP_GROUP, "asyncio"): "ketch-core",
    (LOOP_GROUP, "uvloop"): "ketch-core[uvloop]",
    (SUPERVISOR_GROUP, "workers"): "ketch-supervisor",
    (SUPERVISOR_GROUP, "reload"): "ketch-supervisor",
}
_DEFAULT_DISTRIBUTION = {
    HTTP_GROUP: "ketch-http",
    WS_GROUP: "ketch-ws",
    LOOP_GROUP: "ketch-core",
    SUPERVISOR_GROUP: "ketch-supervisor",
}
_KIND = {
    HTTP_GROUP: "HTTP",
    WS_GROUP: "WebSocket",
    LOOP_GROUP: "event loop",
    SUPERVISOR_GROUP: "supervisor",
}


class Plugin(Protocol):
    """What every plugin says about itself."""

    @property
    def name(self) -> str:
        """The name users select it by (`--http NAME`)."""

    @property
    def priority(self) -> int:
        """Higher wins when `auto` chooses among available plugins."""

    @property
    def requirement(self) -> str:
        """What `pip install` makes it available, such as `ketch-http[httptools]`."""

    def available(self) -> bool:
        """True when the libraries it needs import here."""


class HTTPPlugin(Plugin, Protocol):
    def protocol_factory(self, context: ServerContext) -> Callable[[], asyncio.Protocol]:
        """A factory of one `asyncio.Protocol` per accepted connection."""


class WebSocketUpgrade(Protocol):
    def __call__(
        self,
        transport: asyncio.Transport,
        scope: WebSocketScope,
        target: bytes,
        buffered: bytes,
    ) -> None:
        """Take over `transport` after an HTTP/1.1 upgrade request.

        `scope` is the ready WebSocket scope, `target` the raw request target
        and `buffered` the bytes already read after the request head. The HTTP
        protocol has removed itself from `context.connections`; the WebSocket
        protocol calls `transport.set_protocol()` and adds itself.
        """


class WebSocketPlugin(Plugin, Protocol):
    def upgrade_handler(self, context: ServerContext) -> WebSocketUpgrade:
        """The callable the HTTP protocols hand upgrade requests to."""


class LoopPlugin(Plugin, Protocol):
    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        """A callable returning a new event loop."""


class SupervisorPlugin(Plugin, Protocol):
    def run(self, config: Config) -> int:
        """Run the server under supervision until it stops; the process exit status."""


P = TypeVar("P", bound=Plugin)


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=group):
        found.setdefault(entry_point.name, entry_point)
    return found


def names(group: str) -> list[str]:
    """The names registered in a group, without loading any plugin."""
    return sorted(_entry_points(group))


def choices(group: str) -> list[str]:
    """What a user may ask for: the installed plugins and ketch's own ones, so that
    asking for one that is not installed gets an error naming what to install."""
    known = {name for known_group, name in KNOWN_PLUGINS if known_group == group}
    return sorted(set(names(group)) | known)


def _distribution(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else "?"


def _install_hint(group: str, name: str) -> str:
    requirement = KNOWN_PLUGINS.get((group, name))
    if requirement is None:
        return ""
    quoted = f"'{requirement}'" if "[" in requirement else requirement
    return f": pip install {quoted}"


def load(group: str, name: str, option: str) -> Plugin:
    """Load the plugin `name` of `group`; `option` is how the user asked for it
    (such as `--http httptools`), for the error message."""
    entry_point = _entry_points(group).get(name)
    if entry_point is None:
        installed = ", ".join(names(group)) or "none"
        hint = _install_hint(group, name)
        if hint:
            raise PluginError(f"{option} needs a plugin that is not installed{hint}")
        raise PluginError(
            f"{option}: no {_KIND[group]} plugin named {name!r} is installed "
            f"(installed: {installed})"
        )
    try:
        plugin: Plugin = entry_point.load()
    except Exception as exc:
        raise PluginError(
            f"{option}: the plugin from {_distribution(entry_point)} failed to load "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not plugin.available():
        requirement = plugin.requirement
        quoted = f"'{requirement}'" if "[" in requirement else requirement
        raise PluginError(f"{option} cannot run here: pip install {quoted}")
    return plugin


def select(group: str, name: str, option: str) -> Plugin:
    """`load()`, where `auto` picks the available ketch plugin of highest priority."""
    if name != "auto":
        return load(group, name, option)
    candidates: list[Plugin] = []
    for entry_point in _entry_points(group).values():
        if _distribution(entry_point) not in OWN_DISTRIBUTIONS:
            continue
        try:
            plugin: Plugin = entry_point.load()
        except Exception:
            continue
        if plugin.available():
            candidates.append(plugin)
    if not candidates:
        dist = _DEFAULT_DISTRIBUTION[group]
        raise PluginError(f"{option}: no {_KIND[group]} plugin can run here: pip install {dist}")
    return max(candidates, key=lambda plugin: plugin.priority)


def select_http(name: str) -> HTTPPlugin:
    return select(HTTP_GROUP, name, f"--http {name}")  # type: ignore[return-value]


def select_ws(name: str) -> WebSocketPlugin | None:
    """The WebSocket plugin, or None for `--ws none` and for `auto` when none can run."""
    if name == "none":
        return None
    if name == "auto":
        try:
            return select(WS_GROUP, name, "--ws auto")  # type: ignore[return-value]
        except PluginError:
            return None
    return load(WS_GROUP, name, f"--ws {name}")  # type: ignore[return-value]


def select_loop(name: str) -> LoopPlugin:
    return select(LOOP_GROUP, name, f"--loop {name}")  # type: ignore[return-value]


def select_supervisor(name: str, option: str) -> SupervisorPlugin:
    return load(SUPERVISOR_GROUP, name, option)  # type: ignore[return-value]
