"""Backend registry: the one place where backends are selected.

Backends are found through the entry-point group ``refquant.backends`` (``reference``
and ``numba`` ship with this repo) or given directly as ``"module:factory"``, so
a third party can test a backend without installing anything into this repo. A
backend that cannot load (no numba, no CUDA device) raises :class:`BackendLoadError`
naming it and the reason; :func:`available_backends` reports every known backend with
either the loaded object or that reason.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from accel.dispatch import dispatched

__all__ = ["BackendLoadError", "BackendInfo", "get_backend", "available_backends", "registered_backends", "spec_of"]

GROUP = "refquant.backends"

# Built-in backends, so they resolve even from a source checkout that was never
# pip-installed (entry points only exist once installed).
_BUILTIN = {
    "reference": "accel.reference:backend",
    "numba": "accel.numba:backend",
    "cupy": "accel.cupy:backend",
    "cuda-sim": "accel.cupy:sim_backend",
}

_CACHE: dict[str, Any] = {}


class BackendLoadError(RuntimeError):
    """A backend that exists by name but could not be loaded (the message says why)."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"backend {name!r} could not be loaded: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`available_backends`."""

    name: str
    target: str  # "module:factory"
    backend: Any | None
    reason: str | None  # why it is unavailable, when backend is None

    @property
    def loaded(self) -> bool:
        return self.backend is not None


def registered_backends() -> dict[str, str]:
    """Map of backend name -> ``"module:factory"`` from entry points and built-ins."""
    found = dict(_BUILTIN)
    try:
        eps = metadata.entry_points(group=GROUP)
    except TypeError:  # pragma: no cover - Python < 3.10 API
        eps = metadata.entry_points().get(GROUP, [])
    for ep in eps:
        found[ep.name] = ep.value
    return found


def _resolve(target: str) -> Callable[[], Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backend target {target!r} must look like 'package.module:factory'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _check(name: str, obj: Any) -> Any:
    missing = [a for a in ("name", "device", "capabilities", "asarray", "to_numpy") if not hasattr(obj, a)]
    if missing:
        raise BackendLoadError(name, f"object {obj!r} lacks the Backend protocol attribute(s) {', '.join(missing)}")
    return obj


def get_backend(name: str) -> Any:
    """Return a backend by registered name or ``"module:factory"``, behind the dispatcher
    (:class:`accel.dispatch.Dispatched`: every op call is prepared by the reference first).

    Parameters
    ----------
    name : str
        ``"reference"``, ``"numba"``, any entry point of the group
        ``refquant.backends``, or ``"package.module:factory"`` where ``factory`` is a
        zero-argument callable returning the backend (or the backend object itself).

    Raises
    ------
    ValueError
        Unknown name.
    BackendLoadError
        The backend is known but failed to import or initialise.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if name in _CACHE:
        return _CACHE[name]
    registry = registered_backends()
    if ":" in name:
        target = name
    elif name in registry:
        target = registry[name]
    else:
        raise ValueError(f"unknown backend {name!r}; registered: {', '.join(sorted(registry))} (or give 'module:factory')")
    try:
        factory = _resolve(target)
        backend = factory() if callable(factory) and not hasattr(factory, "capabilities") else factory
    except BackendLoadError:
        raise
    except Exception as exc:  # the reason is the point: report it, naming the backend
        raise BackendLoadError(name, f"{type(exc).__name__}: {exc}") from exc
    _check(name, backend)
    backend = dispatched(backend)  # every op call runs the reference's argument preparation first
    _CACHE[name] = backend
    return backend


def spec_of(backend: Any) -> str | None:
    """The name or ``"module:factory"`` that :func:`get_backend` loaded ``backend`` from (the
    dispatched object or its raw backend), so that a message can name a spec that resolves;
    None for a backend made some other way."""
    for spec, loaded in _CACHE.items():
        if backend is loaded or backend is getattr(loaded, "raw", None):
            return spec
    return None


def available_backends() -> dict[str, BackendInfo]:
    """Try to load every registered backend; report each as loaded or with its reason."""
    out: dict[str, BackendInfo] = {}
    for name, target in sorted(registered_backends().items()):
        try:
            out[name] = BackendInfo(name, target, get_backend(name), None)
        except (BackendLoadError, ValueError) as exc:
            out[name] = BackendInfo(name, target, None, getattr(exc, "reason", str(exc)))
    return out
