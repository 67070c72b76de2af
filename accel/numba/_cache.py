"""Whether Numba's on-disk cache holds this backend's compiled kernels.

Kernels are compiled with ``cache=True``: the first process on a machine compiles
them (minutes), later ones load them (seconds). The conformance runner reports which
case it is in, so a long first run is announced instead of looking like a hang.
"""

from __future__ import annotations

import os
from pathlib import Path

# Measured: the first conformance run of this backend, 2-core machine, cache empty.
COLD_ESTIMATE = "3 to 5 minutes on 2 cores"


_NOT_KERNELS = {"__init__", "_cache", "_jit", "_threads", "backend"}


def _kernel_modules() -> list[str]:
    """Modules of this package that define compiled functions (they import numba)."""
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if p.stem not in _NOT_KERNELS
                  and any(s in p.read_text(encoding="utf-8") for s in ("import numba", "from numba", "._jit import")))


def _cache_dir() -> Path:
    """The directory Numba writes this package's cache files to (its locator's rule),
    read from the first compiled function found."""
    import importlib

    for module in _kernel_modules():
        for obj in vars(importlib.import_module(f"accel.numba.{module}")).values():
            dispatcher = getattr(obj, "dispatcher", obj)  # a Kernel wraps its dispatcher
            path = getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
            if path:
                return Path(path)
    raise LookupError("no cached Numba function found in accel.numba")


def cache_state() -> dict[str, str]:
    """``{"state": "warm" | "partial" | "cold" | "unknown", "detail": ..., "estimate": ...}``."""
    try:
        cache = _cache_dir()
        names = os.listdir(cache) if cache.is_dir() else []
    except Exception as exc:  # noqa: BLE001 - a diagnostic must never break the run
        return {"state": "unknown", "detail": f"cache not inspectable: {exc}", "estimate": COLD_ESTIMATE}
    modules = _kernel_modules()
    cached = [m for m in modules if any(n.startswith(m + ".") and n.endswith(".nbi") for n in names)]
    if len(cached) == len(modules):
        state = "warm"
    elif cached:
        state = "partial"
    else:
        state = "cold"
    return {"state": state, "detail": f"{len(cached)}/{len(modules)} kernel modules cached in {cache}",
            "estimate": COLD_ESTIMATE}
