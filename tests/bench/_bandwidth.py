"""Copy bandwidth of this machine, measured in the same run as the benchmarks.

Every benchmark reports achieved GB/s (bytes read + bytes written) and that figure as a
fraction of :func:`copy_bandwidth_gbs`, so numbers from different machines compare.
"""

from __future__ import annotations

import functools
import time

import numpy as np


@functools.lru_cache(maxsize=None)
def copy_bandwidth_gbs(nbytes: int = 64 * 2**20, repeats: int = 7) -> float:
    """Best-of-``repeats`` ``np.copyto`` bandwidth in GB/s (read + write bytes)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def record(benchmark, bytes_moved: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Attach GB/s and the fraction of copy bandwidth to a finished pytest-benchmark run."""
    seconds = benchmark.stats.stats.min
    gbs = bytes_moved / seconds / 1e9
    copy = copy_bandwidth_gbs()
    info = {"GB/s": round(gbs, 3), "copy_GB/s": round(copy, 3), "fraction_of_copy": round(gbs / copy, 4)}
    benchmark.extra_info.update(info)
    return info
