"""Numba CPU backend (entry point ``refquant.backends: numba``).

Importing this package needs numba (``pip install refquant[numba]``); without it,
``accel.get_backend("numba")`` raises BackendLoadError and
``accel.available_backends()`` reports numba as unavailable with the reason.
"""

from __future__ import annotations

__all__ = ["backend"]


def backend():  # type: ignore[no-untyped-def]
    """Entry-point factory: the NumbaBackend (imports numba on first use)."""
    from accel.numba.backend import NumbaBackend

    return NumbaBackend()
