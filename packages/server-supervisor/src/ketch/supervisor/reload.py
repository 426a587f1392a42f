"""`--reload`: restart the workers when watched files change.

The reload supervisor is the workers supervisor with a file watcher: the port
stays bound in the parent, and a reload is a rolling restart (the new code
serves before the old process stops), so a reload drops no request and a
change that breaks the app leaves the last working version serving. With
`--workers N` the whole pool is restarted.

Which files count (`--reload-include` / `--reload-exclude`, glob patterns):

- a pattern without `/` is matched against the file name and against the name
  of every directory on the way to it, so `--reload-exclude node_modules`
  ignores everything under any `node_modules` directory;
- a pattern with `/` is matched against the path relative to the watched
  directory (`--reload-include 'templates/*.html'`);
- a file counts when it matches an include and no exclude. Defaults: include
  `*.py`; exclude `.*`, `.py[cod]`, `.sw.*`, `~*`. Naming a default in the
  other option drops it (`--reload-exclude '*.py'` stops watching Python files).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable
from fnmatch import fnmatch
from pathlib import Path

from ketch.core import Config
from ketch.supervisor.workers import Supervisor

logger = logging.getLogger("ketch.error")

DEFAULT_INCLUDES = ["*.py"]
DEFAULT_EXCLUDES = [".*", ".py[cod]", ".sw.*", "~*"]


class FileFilter:
    def __init__(self, includes: Iterable[str], excludes: Iterable[str]) -> None:
        includes, excludes = list(includes), list(excludes)
        self.includes = [p for p in DEFAULT_INCLUDES if p not in excludes] + includes
        self.excludes = [p for p in DEFAULT_EXCLUDES if p not in includes] + excludes

    @staticmethod
    def _matches(patterns: list[str], name: str, relative: str) -> bool:
        return any(fnmatch(relative, p) if "/" in p else fnmatch(name, p) for p in patterns)

    def excludes_dir(self, name: str, relative: str) -> bool:
        return self._matches(self.excludes, name, relative)

    def __call__(self, path: Path, root: Path) -> bool:
        try:
            relative = path.relative_to(root)
        except ValueError:
            relative = Path(path.name)
        text = relative.as_posix()
        parents = relative.parts[:-1]
        for index, part in enumerate(parents):
            if self.excludes_dir(part, "/".join(parents[: index + 1])):
                return False
        if self._matches(self.excludes, path.name, text):
            return False
        return self._matches(self.includes, path.name, text)


class Watcher:
    """Collects relevant changed paths in a thread; `take()` hands them over."""

    def __init__(self, dirs: list[Path], file_filter: FileFilter, delay: float) -> None:
        self.dirs = dirs
        self.filter = file_filter
        self.delay = delay
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # set once changes from now on are seen
        self._changes: set[Path] = set()
        self._lock = threading.Lock()
        self.on_change: list[Callable[[], None]] = []  # called from the watcher's thread
        self._thread = threading.Thread(target=self._run, name="ketch-reload", daemon=True)

    name = "polling"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=5)

    def take(self) -> list[Path]:
        with self._lock:
            changes = sorted(self._changes)
            self._changes.clear()
        return changes

    def _report(self, paths: Iterable[Path]) -> None:
        with self._lock:
            self._changes.update(paths)
        for callback in self.on_change:
            callback()

    def _relevant(self, path: Path) -> bool:
        for root in self.dirs:
            if path.is_relative_to(root):
                return self.filter(path, root)
        return False

    def _run(self) -> None:
        """Polling: compare modification times every `delay` seconds."""
        known = self._scan()
        self.ready.set()
        while not self.stop_event.wait(self.delay):
            current = self._scan()
            changed = {p for p, mtime in current.items() if known.get(p) != mtime}
            changed |= set(known) - set(current)
            known = current
            if changed:
                self._report(changed)

    def _scan(self) -> dict[Path, float]:
        found: dict[Path, float] = {}
        for root in self.dirs:
            for folder, dirnames, filenames in os.walk(root):
                here = Path(folder)
                relative = here.relative_to(root).as_posix()
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not self.filter.excludes_dir(d, f"{relative}/{d}".lstrip("./"))
                ]
                for name in filenames:
                    path = here / name
                    if self.filter(path, root):
                        try:
                            found[path] = path.stat().st_mtime
                        except FileNotFoundError:
                            pass
        return found


class WatchfilesWatcher(Watcher):
    name = "WatchFiles"

    def _run(self) -> None:
        import watchfiles

        def keep(_change: object, path: str) -> bool:
            return self._relevant(Path(path))

        self.ready.set()
        for changes in watchfiles.watch(
            *self.dirs,
            watch_filter=keep,
            stop_event=self.stop_event,
            debounce=max(50, int(self.delay * 1000)),
            step=50,
            yield_on_timeout=False,
        ):
            self._report(Path(path) for _, path in changes)


def make_watcher(config: Config) -> Watcher:
    dirs = [Path(d).resolve() for d in (config.reload_dirs or [os.getcwd()])]
    file_filter = FileFilter(config.reload_includes or [], config.reload_excludes or [])
    kind = WatchfilesWatcher if importlib.util.find_spec("watchfiles") else Watcher
    return kind(dirs, file_filter, config.reload_delay)


class ReloadSupervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.supervisor = Supervisor(config)
        self.supervisor.stop_on_startup_failure = False
        self.watcher = make_watcher(config)

    def run(self) -> int:
        watcher = self.watcher
        logger.info(
            "Will watch for changes in these directories: %s", [str(d) for d in watcher.dirs]
        )
        logger.info("Started reloader process [%d] using %s", os.getpid(), watcher.name)
        watcher.on_change.append(self.supervisor.wakeup.set)
        self.supervisor.poll_hooks.append(self._reload_if_changed)
        watcher.start()
        try:
            return self.supervisor.run()
        finally:
            watcher.stop()

    def _reload_if_changed(self) -> None:
        changes = self.watcher.take()
        if not changes:
            return
        shown = ", ".join(_display(path) for path in changes[:5])
        more = f" and {len(changes) - 5} more" if len(changes) > 5 else ""
        logger.warning("%s detected changes in %s%s. Reloading...", self.watcher.name, shown, more)
        self.supervisor.reload()


def _display(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"


def run(config: Config) -> int:
    """The plugin's entry: serve `config` under this supervisor; the exit status."""
    return ReloadSupervisor(config).run()
