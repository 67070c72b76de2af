"""The one place that selects the Numba thread count.

``REFQUANT_NUMBA_THREADS`` (an integer >= 1) overrides Numba's default (all cores,
or ``NUMBA_NUM_THREADS``). Kernels never call ``set_num_threads`` themselves.
"""

from __future__ import annotations

import os

import numba

_ENV = "REFQUANT_NUMBA_THREADS"


def configure_threads() -> int:
    """Apply ``REFQUANT_NUMBA_THREADS`` if set; return the thread count in effect."""
    raw = os.environ.get(_ENV)
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"{_ENV}={raw!r} must be an integer >= 1") from None
        if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"{_ENV}={n} must be between 1 and {numba.config.NUMBA_NUM_THREADS}")
        numba.set_num_threads(n)
    return numba.get_num_threads()
