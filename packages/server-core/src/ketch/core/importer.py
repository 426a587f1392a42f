"""Importing the application from `module:attribute.path`."""

from __future__ import annotations

import importlib
from typing import Any

from ketch.core.errors import AppLoadError


def import_from_string(import_str: Any) -> Any:
    """Import `module.sub:attr.attr` and return the object; anything that is not
    a string is returned as is. A wrong string, a missing module or attribute is a
    one-line `AppLoadError`; an exception raised by the app's own module
    propagates with its traceback, which is what its author needs."""
    if not isinstance(import_str, str):
        return import_str

    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise AppLoadError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>", '
            'such as "main:app"'
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str and not module_str.startswith(f"{exc.name}."):
            # the module exists but imports something missing: that is the app's error
            raise AppLoadError(
                f'Could not import module "{module_str}": it needs "{exc.name}", which is '
                "not installed"
            ) from exc
        raise AppLoadError(
            f'Could not import module "{module_str}" (is it on the path? see --app-dir)'
        ) from exc

    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise AppLoadError(f'Attribute "{attrs_str}" not found in module "{module_str}"') from None
    return instance
