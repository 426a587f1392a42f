"""Errors a user can fix: shown as one line, never as a traceback."""

from __future__ import annotations


class KetchError(Exception):
    """A problem the user can fix; the message says how, in one line."""


class ConfigError(KetchError, ValueError):
    """An option has a value ketch cannot use."""


class PluginError(KetchError):
    """A plugin was asked for that is not installed or cannot run here."""


class AppLoadError(KetchError):
    """The application could not be imported or built."""


# Exit status of a server whose startup failed (lifespan startup failure,
# sockets that cannot be bound). Supervisors stop instead of restarting on it.
STARTUP_FAILURE = 3
