"""Which protocol implementations the tests run against: ketch's own plugins,
read from the entry points (a new parser joins every test without edits)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ketch.core.plugins import HTTP, WS, Group


def own_implementations(group: Group[Any]) -> list[str]:
    """The plugins ketch's own distribution registers in `group`, read from the
    entry points, one per implementation (an alias such as `websockets-sansio`
    shares `websockets`'; the higher priority one stands for both)."""
    best: dict[str, Any] = {}
    for entry_point in entry_points(group=group.name):
        if entry_point.dist is None or entry_point.dist.metadata["Name"] != group.distribution:
            continue
        plugin = entry_point.load()
        key = getattr(plugin, "implementation", plugin.name)
        if key not in best or plugin.priority > best[key].priority:
            best[key] = plugin
    return sorted(plugin.name for plugin in best.values())


HTTP_IMPLEMENTATIONS = own_implementations(HTTP)
WS_IMPLEMENTATIONS = own_implementations(WS)
