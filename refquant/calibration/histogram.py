"""A streaming histogram whose counts do not depend on how the data was split into batches.

Calibration histograms in the tools this library follows are *not* batch-order independent:
NVIDIA pytorch-quantization's ``HistogramCalibrator.collect`` fixes the bin width from the first
batch (later batches only append bins of that width), and torch.ao's ``HistogramObserver``
re-bins its histogram by spreading each old bin's mass over the new bins
(``_combine_histograms`` / ``_upscale_histogram``), which is approximate. Feeding the same data in
a different order or split gives a different histogram, hence a different range.

This histogram is exact instead. Its bin edges are integer multiples ``k·w`` of a bin width
``w`` that is a **power of two**: the smallest one for which the observed range [lo, hi] fits in
``num_bins`` bins, i.e. ``floor(hi/w) − floor(lo/w) + 1 <= num_bins``. The window starts at bin
``k0 = floor(lo/w)`` (or at 0 with ``anchor_zero``, as for the |x| histograms of NVIDIA's
calibrator, whose first edge is 0). When a batch widens the range, ``w`` grows by a power of
two ``f`` and every old bin ``k`` moves to ``floor(k/f)``; since ``floor(floor(x/w)/f) ==
floor(x/(f·w))`` this is exactly the histogram one pass over all the data would have built.
Dividing by a power of two is exact in binary floating point, so the bin of every value is exact
too. The price: the occupied bins are between ``num_bins/2`` and ``num_bins`` (not exactly
``num_bins``), which halves the resolution in the worst case.

Data that is a single repeated value (lo == hi) has no natural width; it is kept as a spike
(value, count) until a second value arrives.

Counts are float64 (exact integers below 2**53).
"""

from __future__ import annotations

import numpy as np

__all__ = ["StreamingHistogram"]


def _pow2_width(lo: np.ndarray, hi: np.ndarray, num_bins: int) -> np.ndarray:
    """Smallest power of two ``w`` with ``floor(hi/w) − floor(lo/w) + 1 <= num_bins`` (lo < hi).

    Any valid w satisfies w > (hi − lo)/num_bins, so the search starts two octaves below
    that bound (float rounding of the bound cannot skip the answer) and doubles.
    """
    _, exp = np.frexp((hi - lo) / num_bins)  # (hi-lo)/n = m·2**exp, 0.5 <= m < 1
    e = exp.astype(np.int64) - 2
    while True:
        w = np.ldexp(1.0, e)
        too_small = np.floor(hi / w) - np.floor(lo / w) + 1 > num_bins
        if not too_small.any():
            return w
        e = e + too_small


class StreamingHistogram:
    """Per-channel histograms with exact, batch-split-independent counts (see the module docstring).

    Parameters
    ----------
    num_bins : int
        Bins of the window; the occupied part is between ``num_bins/2`` and ``num_bins`` bins.
    channels : int
        Independent histograms kept side by side (1 for a per-tensor histogram).
    anchor_zero : bool
        Make 0 the first edge (histograms of |x|, NVIDIA style).
    """

    def __init__(self, num_bins: int, channels: int, anchor_zero: bool) -> None:
        self.num_bins = int(num_bins)
        self.channels = int(channels)
        self.anchor_zero = bool(anchor_zero)
        self.lo = np.full(channels, np.inf)
        self.hi = np.full(channels, -np.inf)
        self.width = np.zeros(channels)  # 0: empty or a spike (lo == hi)
        self.k0 = np.zeros(channels)  # absolute index of the window's first bin (an integer in float64)
        self.counts = np.zeros((channels, self.num_bins))
        self.total = np.zeros(channels)

    def add(self, values: np.ndarray) -> None:
        """Add ``values`` of shape (channels, m), finite float64; m may be 0."""
        if values.shape[1] == 0:
            return
        lo_new = np.minimum(self.lo, values.min(axis=1))
        hi_new = np.maximum(self.hi, values.max(axis=1))
        if self.anchor_zero:
            lo_new = np.minimum(lo_new, 0.0)
        spread = lo_new < hi_new
        w_new = np.zeros(self.channels)
        if spread.any():
            w_new[spread] = _pow2_width(lo_new[spread], hi_new[spread], self.num_bins)
        k0_new = np.where(spread, np.floor(lo_new / np.where(spread, w_new, 1.0)), 0.0)
        self._rebin(w_new, k0_new, spread)
        # the new values, in the new bins
        ch = np.broadcast_to(np.arange(self.channels)[:, None], values.shape)
        safe_w = np.where(spread, w_new, 1.0)[:, None]
        idx = np.where(spread[:, None], np.floor(values / safe_w) - k0_new[:, None], 0.0)
        flat = (ch * self.num_bins + idx.astype(np.int64))[spread].ravel()  # spikes keep only their total
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        self.total += values.shape[1]
        self.lo, self.hi, self.width, self.k0 = lo_new, hi_new, w_new, k0_new

    def _rebin(self, w_new: np.ndarray, k0_new: np.ndarray, spread: np.ndarray) -> None:
        """Move the counts collected so far into the bins of width ``w_new`` starting at ``k0_new``."""
        had_bins = self.width > 0
        changed = spread & ((w_new != self.width) | (k0_new != self.k0))
        if not changed.any():
            return
        n = self.num_bins
        new = np.where(changed[:, None], 0.0, self.counts)
        rows = np.nonzero(changed & had_bins)[0]
        if rows.size:  # bin k (absolute) -> floor(k / f), f = w_new / w_old a power of two
            f = (w_new[rows] / self.width[rows])[:, None]
            k_abs = self.k0[rows][:, None] + np.arange(n)
            idx = (np.floor(k_abs / f) - k0_new[rows][:, None]).astype(np.int64)
            flat = (rows[:, None] * n + idx).ravel()
            weights = self.counts[rows].ravel()
            full = weights > 0  # empty old bins past the data may fall outside the new window
            new += np.bincount(flat[full], weights=weights[full], minlength=new.size).reshape(new.shape)
        rows = np.nonzero(changed & ~had_bins & (self.total > 0))[0]
        for r in rows:  # a spike of total[r] copies of lo[r]
            new[r, int(np.floor(self.lo[r] / w_new[r]) - k0_new[r])] += self.total[r]
        self.counts = new

    def occupied(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and edges of one channel from the window start to its last non-empty bin.

        Returns
        -------
        counts : ndarray of float64, shape (m,)
        edges : ndarray of float64, shape (m + 1,)
            ``edges[j] = (k0 + j)·w``. For a spike (one repeated value v, or no spread)
            there are no bins: counts ``[total]`` and edges ``[v, v]``.
        """
        w = self.width[channel]
        if w == 0:
            return np.array([self.total[channel]]), np.array([self.lo[channel], self.hi[channel]])
        last = int(np.nonzero(self.counts[channel])[0][-1])
        counts = self.counts[channel, : last + 1].copy()
        edges = (self.k0[channel] + np.arange(last + 2)) * w
        return counts, edges
