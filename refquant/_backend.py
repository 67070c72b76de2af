"""The ``backend=`` argument of public functions: the same call on another backend.

``None`` or ``"reference"`` calls the reference function directly; anything else (a
registered name such as ``"numba"`` or ``"cupy"``, ``"package.module:factory"``, or a
Backend object) is resolved by ``accel.registry`` and called through the dispatcher
(``accel.dispatch``), so the op's reference preparation runs first. Results come back as
NumPy arrays, the same types whatever the backend. accel is imported here only when a
backend other than the reference is asked for: the reference never depends on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refquant._validate import normalize_name
from refquant.errors import UnsupportedError

__all__: list[str] = []  # internal module


def is_reference(backend: Any) -> bool:
    """Whether ``backend`` selects the reference itself (None or ``"reference"``)."""
    return backend is None or (isinstance(backend, str) and normalize_name(backend) == "reference")


def call_op(backend: Any, op: str, reference: Callable[..., Any], *args: Any, fmt: str | None = None,
            **kwargs: Any) -> Any:
    """``reference(*args, **kwargs)``, or op ``op`` of ``backend`` with the same arguments.

    Raises
    ------
    UnsupportedError
        The backend does not implement ``op`` (for format ``fmt``).
    accel.registry.BackendLoadError, ValueError
        The backend cannot be loaded, or its name is unknown.
    """
    if is_reference(backend):
        return reference(*args, **kwargs)
    from accel.dispatch import dispatched  # lazy: see the module docstring
    from accel.registry import get_backend, registered_backends

    if isinstance(backend, str):
        if ":" not in backend:  # a registered name, case-insensitive like every name
            spelled = {normalize_name(k): k for k in registered_backends()}
            backend = spelled.get(normalize_name(backend), backend)
        b = get_backend(backend)
    else:
        b = dispatched(backend)
    cap = b.capabilities().get(op)
    if cap is None or (fmt is not None and cap.formats is not None and fmt not in cap.formats):
        what = op if fmt is None else f"{op} for {fmt!r}"
        raise UnsupportedError(f"backend {b.name!r} does not implement {what}; use backend=None (the reference) "
                               f"or another backend (python -m conformance --backend {b.name} shows its matrix)")
    return _numpy(b.to_numpy(b.call(op, *args, **kwargs)))


def _numpy(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return type(x)(_numpy(v) for v in x)
    return np.asarray(x) if hasattr(x, "__array__") and not isinstance(x, np.generic) else x
