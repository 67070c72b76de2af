"""Copy bandwidth of this machine, measured in the same run as the benchmarks.

Every benchmark reports achieved GB/s (bytes read + bytes written) and that figure as a
fraction of :func:`copy_bandwidth_gbs`, so numbers from different machines compare.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

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


def summary_lines(benchmarks: Iterable[Any]) -> list[str]:
    """The end-of-run table: one line per benchmark that recorded its bandwidth (:func:`record`
    or the GPU benchmarks' same keys), with its best time, GB/s and fraction of copy bandwidth.

    ``benchmarks`` are pytest-benchmark's finished runs (``.fullname``, ``.extra_info``,
    ``.stats.min``); the others are left out. Empty when none recorded a bandwidth.
    """
    rows = []
    copies = set()
    for bench in benchmarks:
        info = getattr(bench, "extra_info", {}) or {}
        if "GB/s" not in info or "fraction_of_copy" not in info:
            continue
        name = getattr(bench, "fullname", None) or getattr(bench, "name", "?")
        name = name.split("tests/bench/", 1)[-1]
        seconds = info.get("seconds_cuda_events", getattr(getattr(bench, "stats", None), "min", float("nan")))
        rows.append((name, f"{seconds * 1e3:.3f}", f"{info['GB/s']:.2f}", f"{100 * info['fraction_of_copy']:.1f}%"))
        if "copy_GB/s" in info:
            copies.add(f"{info['copy_GB/s']:.2f}")
    if not rows:
        return []
    head = ("benchmark", "best ms", "GB/s", "of copy")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = [f"bandwidth (bytes read + written per call / best time; copy bandwidth measured in this run: "
             f"{', '.join(sorted(copies)) or '?'} GB/s)"]
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return lines
