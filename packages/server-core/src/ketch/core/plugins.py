"""The plugin interfaces and the registry that finds plugins by entry point.

Five entry-point groups: `ketch.http`, `ketch.http2`, `ketch.ws`, `ketch.loop`
and `ketch.supervisor`. Each entry point names a plugin object (see the Protocols
below). Only the plugin that is asked for is loaded; `auto` loads ketch's own
plugins of the group (small objects that import nothing heavy, see
`LazyPlugin`) and takes the available one of highest priority. A plugin that
is missing, broken or cannot run here is a one-line `PluginError` that says
what to install.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from ketch.core.errors import PluginError

if TYPE_CHECKING:
    from ketch.core._types import WebSocketScope
    from ketch.core.config import Config
    from ketch.core.context import ServerContext


class Plugin(Protocol):
    """What every plugin says about itself."""

    @property
    def name(self) -> str:
        """The name users select it by (`--http NAME`)."""

    @property
    def priority(self) -> int:
        """Higher wins when `auto` chooses among ketch's own available plugins."""

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
        and `buffered` the bytes already read after the request. The HTTP
        protocol has removed itself from `context.connections`, and left the
        transport reading; the WebSocket protocol calls
        `transport.set_protocol()` and adds itself.
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


@dataclass(frozen=True)
class Group(Generic[P]):
    """An entry-point group and what its plugins are called in messages."""

    name: str  # the entry-point group
    kind: str  # "HTTP", for "no HTTP plugin named ..."
    distribution: str  # where ketch's own plugins of the group come from


HTTP: Group[HTTPPlugin] = Group("ketch.http", "HTTP", "ketch-http")
# the protocol of the connections that choose HTTP/2 when --http2 is on
HTTP2: Group[HTTPPlugin] = Group("ketch.http2", "HTTP/2", "ketch-h2")
WS: Group[WebSocketPlugin] = Group("ketch.ws", "WebSocket", "ketch-ws")
LOOP: Group[LoopPlugin] = Group("ketch.loop", "event loop", "ketch-core")
SUPERVISOR: Group[SupervisorPlugin] = Group("ketch.supervisor", "supervisor", "ketch-supervisor")
GROUPS: dict[str, Group[Any]] = {group.name: group for group in (HTTP, HTTP2, WS, LOOP, SUPERVISOR)}


@dataclass(frozen=True)
class LazyPlugin:
    """A plugin described by data, whose implementation is imported on first use.

    `auto` loads every plugin object of ketch's own distributions to compare
    them, so those objects must import nothing heavy: `available()` only looks
    for the `needs` modules, and every other attribute (`protocol_factory`,
    `upgrade_handler`, `loop_factory`, `run`) is read from `implementation`
    ("module" or "module:attribute"), imported when first asked for.
    """

    name: str
    priority: int
    requirement: str
    implementation: str
    needs: tuple[str, ...] = ()

    def available(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.needs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(_implementation(self.implementation), attribute)


@functools.cache
def _implementation(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module_name)
    return getattr(target, attribute) if attribute else target


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=group):
        found.setdefault(entry_point.name, entry_point)
    return found


def names(group: Group[Any]) -> list[str]:
    """The names registered in a group, without loading any plugin."""
    return sorted(_entry_points(group.name))


def _distribution(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else "?"


def own_names(group: Group[Any]) -> list[str]:
    """The names ketch's own distribution registers in `group` (for the docs)."""
    return sorted(
        name
        for name, entry_point in _entry_points(group.name).items()
        if _distribution(entry_point) == group.distribution
    )


def _pip(requirement: str) -> str:
    return f"pip install '{requirement}'" if "[" in requirement else f"pip install {requirement}"


def load(group: Group[P], name: str, option: str) -> P:
    """Load the plugin `name` of `group`; `option` is how the user asked for it
    (such as `--http httptools`), for the error message."""
    entry_point = _entry_points(group.name).get(name)
    if entry_point is None:
        installed = ", ".join(names(group)) or "none"
        raise PluginError(
            f"{option}: no {group.kind} plugin named {name!r} is installed "
            f"(installed: {installed}; ketch's own come with {_pip(group.distribution)})"
        )
    try:
        plugin = cast(P, entry_point.load())
    except Exception as exc:
        raise PluginError(
            f"{option}: the plugin from {_distribution(entry_point)} failed to load "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not plugin.available():
        raise PluginError(f"{option} cannot run here: {_pip(plugin.requirement)}")
    return plugin


def select(group: Group[P], name: str, option: str) -> P:
    """`load()`, where `auto` picks the available plugin of highest priority among
    those of ketch's own distribution for the group."""
    if name != "auto":
        return load(group, name, option)
    candidates: list[P] = []
    for entry_point in _entry_points(group.name).values():
        if _distribution(entry_point) != group.distribution:
            continue  # a third-party plugin runs only when named
        try:
            plugin = cast(P, entry_point.load())
        except Exception:
            continue
        if plugin.available():
            candidates.append(plugin)
    if not candidates:
        raise PluginError(
            f"{option}: no {group.kind} plugin can run here: {_pip(group.distribution)}"
        )
    return max(candidates, key=lambda plugin: plugin.priority)


def select_ws(name: str) -> WebSocketPlugin | None:
    """The WebSocket plugin, or None for `--ws none` and for `auto` when none can run."""
    if name == "none":
        return None
    if name == "auto":
        try:
            return select(WS, name, "--ws auto")
        except PluginError:
            return None
    return load(WS, name, f"--ws {name}")
