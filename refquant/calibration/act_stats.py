"""Per-channel activation statistics, streamed and summable across shards.

The statistics that activation-aware methods read from calibration data, each over the tokens
seen so far, one value per channel (by default the last axis: a linear layer's input features):

===============  ====================================  ============================================
attribute        definition                            used by
===============  ====================================  ============================================
``absmax``       max |x|                               SmoothQuant ``get_act_scales`` (smoothing
                                                       factor ``max|X_j|^α / max|W_j|^(1−α)``)
``mean_abs``     Σ|x| / n                              AWQ ``get_act_scale`` (``x.abs().mean(0)``)
``mean_sq``      Σx² / n                               llama.cpp imatrix (per-column Σx² / count)
``min``/``max``  running extremes                      range observers
``mean``         Σx / n
===============  ====================================  ============================================

Sums are float64 and counts integers, so ``a.merge(b)`` is exact and the result does not depend
on how the tokens were split into batches.

References
----------
G. Xiao et al., "SmoothQuant", ICML 2023 (mit-han-lab/smoothquant ``calibration.py``).
J. Lin et al., "AWQ", MLSys 2024 (mit-han-lab/llm-awq ``auto_scale.py``, ``get_act_scale``).
llama.cpp ``tools/imatrix/imatrix.cpp`` (``IMatrixCollector::collect_imatrix``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_int, flatten_leading

__all__ = ["ActStats"]


class ActStats:
    """Streaming per-channel statistics of activations.

    Parameters
    ----------
    axis : int
        The channel axis (default -1: features of (tokens, in) activations). Every other axis
        counts as tokens.
    """

    def __init__(self, axis: int = -1) -> None:
        self.axis = check_int("axis", axis)
        self.channels: int | None = None
        self.n = 0
        self._sum = self._sum_abs = self._sum_sq = None
        self.min = self.max = None

    def observe(self, x: Any) -> "ActStats":
        """Add a batch. Returns self.

        Raises
        ------
        ValueError
            NaN/inf; a channel count different from earlier batches; ``axis`` out of range.
        """
        arr = as_float_array("x", x, dtypes=(np.float16, np.float32, np.float64), allow_nan=False, min_ndim=1)
        if not -arr.ndim <= self.axis < arr.ndim:
            raise ValueError(f"axis={self.axis} is out of range for x with shape {arr.shape}")
        rows = np.moveaxis(arr, self.axis, -1)
        rows = flatten_leading(rows).astype(np.float64)  # (tokens, channels)
        if self.channels is None:
            self.channels = rows.shape[1]
            z = np.zeros(self.channels)
            self._sum, self._sum_abs, self._sum_sq = z.copy(), z.copy(), z.copy()
            self.min, self.max = np.full(self.channels, np.inf), np.full(self.channels, -np.inf)
        elif rows.shape[1] != self.channels:
            raise ValueError(f"x has {rows.shape[1]} channels along axis {self.axis}, but earlier batches had "
                             f"{self.channels}")
        if rows.shape[0] == 0:
            return self
        self._sum += rows.sum(axis=0)
        self._sum_abs += np.abs(rows).sum(axis=0)
        self._sum_sq += (rows * rows).sum(axis=0)
        self.min = np.minimum(self.min, rows.min(axis=0))
        self.max = np.maximum(self.max, rows.max(axis=0))
        self.n += rows.shape[0]
        return self

    def _need_data(self) -> None:
        if self.n == 0:
            raise ValueError("ActStats has observed no tokens; call observe(x) first")

    @property
    def absmax(self) -> np.ndarray:
        """max |x| per channel, float64 (channels,)."""
        self._need_data()
        return np.maximum(np.abs(self.min), np.abs(self.max))

    @property
    def mean_abs(self) -> np.ndarray:
        """Σ|x| / n per channel."""
        self._need_data()
        return self._sum_abs / self.n

    @property
    def mean_sq(self) -> np.ndarray:
        """Σx² / n per channel (the imatrix importance)."""
        self._need_data()
        return self._sum_sq / self.n

    @property
    def mean(self) -> np.ndarray:
        """Σx / n per channel."""
        self._need_data()
        return self._sum / self.n

    def merge(self, other: "ActStats") -> "ActStats":
        """A new ActStats holding both shards (neither input changes)."""
        if not isinstance(other, ActStats):
            raise TypeError(f"other must be an ActStats, got {type(other).__name__}")
        if self.channels is not None and other.channels is not None and self.channels != other.channels:
            raise ValueError(f"cannot merge statistics of {self.channels} and {other.channels} channels")
        out = ActStats(self.axis)
        parts = [p for p in (self, other) if p.channels is not None]
        if not parts:
            return out
        out.channels = parts[0].channels
        out._sum = sum(p._sum for p in parts)
        out._sum_abs = sum(p._sum_abs for p in parts)
        out._sum_sq = sum(p._sum_sq for p in parts)
        out.min = np.minimum.reduce([p.min for p in parts])
        out.max = np.maximum.reduce([p.max for p in parts])
        out.n = sum(p.n for p in parts)
        return out
