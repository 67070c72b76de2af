"""List refquant's public functions whose docstring does not name every parameter (not run in CI).

The project's rule is that every public function states each parameter's type and range in
its docstring. This finds the functions that do not even name a parameter (a heuristic: a
named parameter may still lack its range), to plan the documentation work.

Usage::

    python tools/audit_param_docs.py            # every public module except refquant.apps
    python tools/audit_param_docs.py --prepare  # include refquant.prepare (documented by their op)
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys

import refquant


def undocumented(include_prepare: bool) -> dict[str, list[str]]:
    """``module.function -> [parameter names its docstring does not mention]``."""
    found = {}
    for info in pkgutil.walk_packages(refquant.__path__, "refquant."):
        parts = info.name.split(".")
        if "apps" in parts or parts[-1].startswith("_") or (not include_prepare and "prepare" in parts):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency is missing
            continue
        for name in getattr(module, "__all__", ()):
            f = getattr(module, name, None)
            if not inspect.isfunction(f) or f.__module__ != module.__name__:
                continue
            doc = inspect.getdoc(f) or ""
            missing = [p for p in inspect.signature(f).parameters
                       if not re.search(rf"(^|[\s,`(*]){re.escape(p)}([\s,`:)=]|$)", doc)]
            if missing:
                found[f"{module.__name__}.{name}"] = missing
    return found


def main(argv: list[str]) -> int:
    found = undocumented("--prepare" in argv)
    for qualname, missing in sorted(found.items()):
        print(f"{qualname}: {', '.join(missing)}")
    print(f"{len(found)} functions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
