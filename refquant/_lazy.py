"""Lazy re-exports: a package's module ``__getattr__`` (PEP 562) that imports the module
defining a name on first use, so importing the package stays cheap and an optional
dependency is needed only by the names that use it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_getattr(namespace: dict[str, Any], exports: Mapping[str, str],
                 submodules: Collection[str] = ()) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the module whose ``globals()`` is ``namespace``.

    ``exports`` maps a public name to the module that defines it (``getattr(module, name)``);
    ``submodules`` names submodules of the package reachable as attributes. A resolved value
    is stored in ``namespace``, so each is imported once.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    return __getattr__
