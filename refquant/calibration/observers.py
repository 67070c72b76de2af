"""Calibration observers: stream batches of activations (or weights), then give a range and
quantization parameters.

Every observer has the same three methods::

    obs = PercentileObserver(99.99)          # or axis=... for one range per channel
    for x in batches: obs.observe(x)         # streaming; returns the observer
    lo, hi = obs.range()                     # floats (per tensor) or (channels,) arrays
    params = obs.qparams(bits=8, symmetric=True)   # a refquant.mapping.QuantParams

================================  ==========================================================  ======
observer                          range rule                                                  source
================================  ==========================================================  ======
``MinMaxObserver``                running min and max                                         [TAO]_
``MovingAverageMinMaxObserver``   first batch's min/max, then ``m ← m + c·(batch − m)``,      [TAO]_
                                  c = 0.01, in float32
``PercentileObserver``            |x| histogram; left edge of the bin where the CDF reaches   [NV]_
                                  p % (99.99 by default)
``MSEObserver``                   |x| histogram; the bin centre minimizing the fake-quant MSE  [NV]_
``EntropyObserver``               |x| histogram; TensorRT's KL-divergence threshold            [NV]_, [MIG]_
``HistogramObserver``             signed histogram; torch.ao's approximate-L2 search          [TAO]_
================================  ==========================================================  ======

The clipping observers (percentile, MSE, entropy) find a threshold ``amax`` for |x| and return
the observed range clipped to it, ``(clip(min, −amax, amax), clip(max, −amax, amax))``;
symmetric parameters from it have scale ``amax / 127`` exactly as NVIDIA's calibrator. Their
search uses ``unsigned`` levels (256 for 8 bits, NVIDIA's ``unsigned=True``) when every observed
value is >= 0. The searches depend on ``bits``; :meth:`range` uses the observer's ``bits``
and :meth:`qparams` the ``bits`` it is given.

Streaming. ``observe`` on batches gives exactly what one ``observe`` on their concatenation
gives, for every observer but the moving average (whose rule depends on the batches by
definition). The histograms are exact and split-independent (:mod:`refquant.calibration.histogram`
explains the power-of-two bin widths that make them so; NVIDIA's and torch.ao's histograms are
not, so ranges may differ from those tools by a bin width).

Per channel. With ``axis=a`` every index along axis ``a`` gets its own statistics (torch.ao's
``PerChannelMinMaxObserver(ch_axis)``; NVIDIA's ``calibrate_weights(perchannel=True)``).

Batches. Empty batches are ignored (as torch.ao does). All batches must have the same number of
dimensions and agree on every axis except the *streaming axis*: axis 0, or axis 1 when the channel
axis is 0 (so a (out, in) weight can be streamed by columns). NaN or ±inf raise ValueError
(torch.ao's ``HistogramObserver`` silently drops infinities; here they are an error, since an
infinite activation means the model already overflowed).

References
----------
.. [TAO] PyTorch ``torch/ao/quantization/observer.py``: ``MinMaxObserver``,
   ``MovingAverageMinMaxObserver`` (``averaging_constant=0.01``), ``PerChannelMinMaxObserver``,
   ``HistogramObserver`` (``_non_linear_param_search``).
.. [NV] NVIDIA TensorRT ``tools/pytorch-quantization/pytorch_quantization/calib/histogram.py``:
   ``HistogramCalibrator``, ``_compute_amax_entropy``, ``_compute_amax_mse``,
   ``_compute_amax_percentile``.
.. [MIG] S. Migacz, "8-bit Inference with TensorRT", GTC 2017.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_float, check_int
from refquant.calibration.histogram import StreamingHistogram
from refquant.calibration.search import amax_entropy, amax_mse, amax_percentile, l2_param_search

__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver", "MSEObserver",
           "EntropyObserver", "HistogramObserver", "OBSERVERS", "make_observer"]


class Observer:
    """Base class: input checks, per-channel layout, range/qparams plumbing.

    Parameters
    ----------
    axis : int or None
        None: one range for the whole tensor. An int: one range per index along that axis.
    bits : int
        Target code width used by :meth:`range` for observers whose search depends on it.
    """

    name = "observer"

    def __init__(self, axis: int | None = None, *, bits: int = 8) -> None:
        self.axis = None if axis is None else check_int("axis", axis)
        self.bits = check_int("bits", bits, min=2, max=16)
        self._shape: tuple[int, ...] | None = None  # first non-empty batch's shape
        self._channels = 1
        self.batches = 0  # non-empty batches seen
        self.count = 0  # values seen (per channel when per-channel)

    # -- input handling -----------------------------------------------------------------------

    def observe(self, x: Any) -> "Observer":
        """Add one batch. Returns the observer.

        Parameters
        ----------
        x : ndarray of float16, float32 or float64
            Any shape with at least one dimension (at least ``axis + 1`` when per channel).

        Raises
        ------
        TypeError
            ``x`` not floating point.
        ValueError
            NaN or inf in ``x``; a shape that disagrees with earlier batches; ``axis`` out of range.
        """
        arr = as_float_array("x", x, dtypes=(np.float16, np.float32, np.float64), min_ndim=1)
        if arr.size and not np.isfinite(arr).all():
            raise ValueError(f"x contains NaN or inf ({int(np.isnan(arr).sum())} NaN, {int(np.isinf(arr).sum())} inf); "
                             f"{type(self).__name__} needs finite activations")
        self._check_shape(arr.shape)
        if arr.size == 0:
            return self
        if self._shape is None:
            self._shape = arr.shape
            self._channels = 1 if self.axis is None else arr.shape[self.axis]
            self._start()
        values = self._per_channel(arr)
        self._update(values)
        self.batches += 1
        self.count += values.shape[1]
        return self

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.axis is not None and not -len(shape) <= self.axis < len(shape):
            raise ValueError(f"axis={self.axis} is out of range for x with shape {shape}; "
                             f"allowed: {-len(shape)} <= axis < {len(shape)}")
        if self._shape is None:
            return
        first = self._shape
        stream = self._stream_axis(len(first))
        if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != stream):
            raise ValueError(f"x has shape {shape}, but earlier batches had shape {first}; batches may differ only "
                             f"along axis {stream} (the streaming axis)")

    def _stream_axis(self, ndim: int) -> int:
        if self.axis is not None and self.axis % ndim == 0 and ndim > 1:
            return 1
        return 0

    def _per_channel(self, arr: np.ndarray) -> np.ndarray:
        """(channels, values) view in float64 (exact for float16/32 input)."""
        a = arr.astype(np.float64, copy=False)
        if self.axis is None:
            return a.reshape(1, -1)
        return np.moveaxis(a, self.axis, 0).reshape(a.shape[self.axis], -1)

    # -- results ------------------------------------------------------------------------------

    def range(self) -> tuple[Any, Any]:
        """The calibrated ``(lo, hi)``: Python floats per tensor, float64 (channels,) arrays per channel.

        Raises
        ------
        ValueError
            No data observed yet.
        """
        lo, hi = self._checked_range(self.bits)
        if self.axis is None:
            return float(lo[0]), float(hi[0])
        return lo, hi

    def qparams(self, bits: int = 8, symmetric: bool = True, *, signed: bool = True,
                restricted_range: bool | None = None):
        """Quantization parameters for the calibrated range (:func:`refquant.mapping.qparams_from_range`).

        Parameters
        ----------
        bits, symmetric, signed, restricted_range
            As in :func:`refquant.choose_qparams` (symmetric int8 uses the restricted range
            [−127, 127] by default; pass ``restricted_range=False`` for torch.ao's 127.5 divisor).

        Returns
        -------
        QuantParams
            Scale shape ``(1,)*ndim`` per tensor, or ``ndim`` axes with the channel count along
            ``axis`` per channel: it applies to any batch shaped like the observed ones.
        """
        from refquant.granularity import PerChannel, PerTensor
        from refquant.mapping import qparams_from_range

        bits = check_int("bits", bits, min=2, max=16)
        lo, hi = self._checked_range(bits)
        ndim = len(self._shape)  # type: ignore[arg-type]
        grid = [1] * ndim
        if self.axis is not None:
            grid[self.axis] = self._channels
        gran = PerTensor() if self.axis is None else PerChannel(self.axis)
        return qparams_from_range(lo.reshape(grid), hi.reshape(grid), bits, symmetric, signed=signed,
                                  restricted_range=restricted_range, granularity=gran)

    def _checked_range(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        if self._shape is None:
            raise ValueError(f"{type(self).__name__} has observed no data; call observe(x) with at least one "
                             "non-empty batch before range() or qparams()")
        return self._range(bits)

    # -- per-rule hooks -----------------------------------------------------------------------

    def _start(self) -> None:
        """Allocate state once the channel count is known."""

    def _update(self, values: np.ndarray) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _range(self, bits: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        where = "per tensor" if self.axis is None else f"axis={self.axis}"
        return f"{type(self).__name__}({where}, batches={self.batches})"


class MinMaxObserver(Observer):
    """Running minimum and maximum (torch.ao ``MinMaxObserver`` / ``PerChannelMinMaxObserver``)."""

    name = "minmax"

    def _start(self) -> None:
        self._lo = np.full(self._channels, np.inf)
        self._hi = np.full(self._channels, -np.inf)

    def _update(self, values: np.ndarray) -> None:
        self._lo = np.minimum(self._lo, values.min(axis=1))
        self._hi = np.maximum(self._hi, values.max(axis=1))

    def _range(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        return self._lo.copy(), self._hi.copy()


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of batch min/max (torch.ao ``MovingAverageMinMaxObserver``).

    The first batch sets ``min``/``max``; each later batch moves them by
    ``min ← min + c·(min(batch) − min)`` (likewise max), in float32 arithmetic as torch's
    float32 buffers do. After ``N`` batches with the same min ``b`` starting from ``a``:
    ``b + (a − b)·(1 − c)**(N−1)``.

    Parameters
    ----------
    averaging_constant : float in (0, 1]
        ``c``; torch.ao's default 0.01. ``c = 1`` keeps only the last batch.
    axis : int or None
    """

    name = "moving_average"

    def __init__(self, averaging_constant: float = 0.01, axis: int | None = None, *, bits: int = 8) -> None:
        super().__init__(axis, bits=bits)
        self.averaging_constant = check_float("averaging_constant", averaging_constant, min=0.0, max=1.0,
                                              min_inclusive=False)

    def _start(self) -> None:
        self._lo: np.ndarray | None = None
        self._hi: np.ndarray | None = None

    def _update(self, values: np.ndarray) -> None:
        lo = values.min(axis=1).astype(np.float32)
        hi = values.max(axis=1).astype(np.float32)
        if self._lo is None:
            self._lo, self._hi = lo, hi
            return
        c = np.float32(self.averaging_constant)
        self._lo = (self._lo + c * (lo - self._lo)).astype(np.float32)
        self._hi = (self._hi + c * (hi - self._hi)).astype(np.float32)

    def _range(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        return self._lo.astype(np.float64), self._hi.astype(np.float64)  # type: ignore[union-attr]


class _AbsHistogramObserver(Observer):
    """Shared part of the NVIDIA-style observers: a streaming histogram of |x| whose first edge is 0,
    the signed min/max, and clipping of that range to the searched ``amax``."""

    def __init__(self, axis: int | None = None, *, num_bins: int = 2048, bits: int = 8) -> None:
        super().__init__(axis, bits=bits)
        self.num_bins = check_int("num_bins", num_bins, min=4, max=1 << 20)

    def _start(self) -> None:
        self._hist = StreamingHistogram(self.num_bins, self._channels, anchor_zero=True)
        self._lo = np.full(self._channels, np.inf)
        self._hi = np.full(self._channels, -np.inf)

    def _update(self, values: np.ndarray) -> None:
        self._lo = np.minimum(self._lo, values.min(axis=1))
        self._hi = np.maximum(self._hi, values.max(axis=1))
        self._hist.add(np.abs(values))

    def _amax(self, counts: np.ndarray, edges: np.ndarray, bits: int, unsigned: bool) -> float:  # pragma: no cover
        raise NotImplementedError

    def amax(self, bits: int | None = None) -> Any:
        """The searched |x| threshold: a float per tensor, a (channels,) array per channel."""
        bits = self.bits if bits is None else check_int("bits", bits, min=2, max=16)
        if self._shape is None:
            raise ValueError(f"{type(self).__name__} has observed no data; call observe(x) first")
        out = self._amaxes(bits)
        return float(out[0]) if self.axis is None else out

    def _amaxes(self, bits: int) -> np.ndarray:
        out = np.zeros(self._channels)
        for c in range(self._channels):
            if self._hist.width[c] == 0:  # all zeros
                continue
            counts, edges = self._hist.occupied(c)
            out[c] = self._amax(counts, edges, bits, bool(self._lo[c] >= 0))
        return out

    def _range(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        amax = self._amaxes(bits)
        return np.clip(self._lo, -amax, amax), np.clip(self._hi, -amax, amax)


class PercentileObserver(_AbsHistogramObserver):
    """Clip |x| at a percentile of its histogram (NVIDIA ``_compute_amax_percentile``).

    The threshold is the left edge of the histogram bin in which the CDF of |x| reaches
    ``percentile`` %, so it lies within one bin width below the exact quantile.

    Parameters
    ----------
    percentile : float in (0, 100]
        99.99 is NVIDIA's default (``calibrate_weights``); 99.9 and 99.99 are common for activations.
    axis : int or None
    num_bins : int
        Histogram bins (2048, NVIDIA's default).
    """

    name = "percentile"

    def __init__(self, percentile: float = 99.99, axis: int | None = None, *, num_bins: int = 2048,
                 bits: int = 8) -> None:
        super().__init__(axis, num_bins=num_bins, bits=bits)
        self.percentile = check_float("percentile", percentile, min=0.0, max=100.0, min_inclusive=False)

    def _amax(self, counts, edges, bits, unsigned):
        return amax_percentile(counts, edges, self.percentile)


class MSEObserver(_AbsHistogramObserver):
    """Clip |x| at the threshold minimizing quantization MSE (NVIDIA ``_compute_amax_mse``).

    Candidates are the centres of histogram bins ``start_bin, start_bin + stride, ...``; the
    error of a candidate is the count-weighted squared error of fake-quantizing every bin centre
    with ``bits`` (narrow range, round half to even); the first minimum wins.

    Parameters
    ----------
    axis : int or None
    num_bins, start_bin, stride : int
        NVIDIA's defaults 2048, 128, 1. ``start_bin`` must be at most ``num_bins // 2`` (the
        histogram always has more than ``num_bins / 2`` occupied bins). Per channel, each search
        costs about 25 ms (NVIDIA's ``calibrate_weights(method="mse")`` does the same per channel).
    """

    name = "mse"

    def __init__(self, axis: int | None = None, *, num_bins: int = 2048, start_bin: int = 128, stride: int = 1,
                 bits: int = 8) -> None:
        super().__init__(axis, num_bins=num_bins, bits=bits)
        self.start_bin = check_int("start_bin", start_bin, min=0, max=self.num_bins // 2)
        self.stride = check_int("stride", stride, min=1)

    def _amax(self, counts, edges, bits, unsigned):
        return amax_mse(counts, edges, bits, unsigned, self.stride, self.start_bin)


class EntropyObserver(_AbsHistogramObserver):
    """Clip |x| at the KL-divergence threshold, TensorRT's entropy calibration as NVIDIA
    pytorch-quantization's ``_compute_amax_entropy`` computes it (2048 bins, 128 levels for
    signed 8-bit, ``bins[0] = bins[1]``, candidates from bin 128, last minimum wins; see
    :func:`refquant.calibration.search.amax_entropy`).

    Parameters
    ----------
    axis : int or None
        Per channel runs one search per channel (the NVIDIA calibrator is per tensor only); each
        search tries ~2000 thresholds (about 0.1 s), so thousands of channels take minutes.
    num_bins, start_bin, stride : int
        2048, 128, 1 by default; ``start_bin <= num_bins // 2``. A larger ``stride`` searches
        fewer thresholds.
    """

    name = "entropy"

    def __init__(self, axis: int | None = None, *, num_bins: int = 2048, start_bin: int = 128, stride: int = 1,
                 bits: int = 8) -> None:
        super().__init__(axis, num_bins=num_bins, bits=bits)
        self.start_bin = check_int("start_bin", start_bin, min=1, max=self.num_bins // 2)
        self.stride = check_int("stride", stride, min=1)

    def _amax(self, counts, edges, bits, unsigned):
        if len(counts) < 2:  # a single occupied bin: nothing to search
            return float(edges[-1])
        return amax_entropy(counts, edges, bits, unsigned, self.stride, self.start_bin)


class HistogramObserver(Observer):
    """torch.ao's ``HistogramObserver``: a histogram of signed x, clipped by an approximate-L2 search.

    Not KL: ``_non_linear_param_search`` walks the CDF inwards from both ends and stops at the
    first increase of the L2 quantization error with ``2**bits`` levels
    (:func:`refquant.calibration.search.l2_param_search`). The histogram is this library's exact
    streaming one (torch re-bins approximately), so ranges can differ from torch's by a bin.

    Parameters
    ----------
    axis : int or None
        Per channel runs one search per channel (torch supports per tensor only).
    bins : int
        Histogram bins (torch's default 2048).
    """

    name = "histogram"

    def __init__(self, axis: int | None = None, *, bins: int = 2048, bits: int = 8) -> None:
        super().__init__(axis, bits=bits)
        self.num_bins = check_int("bins", bins, min=4, max=1 << 20)

    def _start(self) -> None:
        self._hist = StreamingHistogram(self.num_bins, self._channels, anchor_zero=False)

    def _update(self, values: np.ndarray) -> None:
        self._hist.add(values)

    def _range(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._hist.lo.copy(), self._hist.hi.copy()
        for c in range(self._channels):
            if self._hist.width[c] == 0:  # one repeated value
                continue
            counts, edges = self._hist.occupied(c)
            lo[c], hi[c] = l2_param_search(counts, edges, 1 << bits)
        return lo, hi


OBSERVERS: dict[str, type[Observer]] = {
    cls.name: cls for cls in (MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, MSEObserver,
                              EntropyObserver, HistogramObserver)
}


def make_observer(name: str, **kwargs: Any) -> Observer:
    """An observer by name: ``"minmax"``, ``"moving_average"``, ``"percentile"``, ``"mse"``,
    ``"entropy"``, ``"histogram"``; keyword arguments go to its constructor.

    Parameters
    ----------
    name : {"minmax", "moving_average", "percentile", "mse", "entropy", "histogram"}
    **kwargs : int, float, str or bool
        The observer's constructor arguments (see each class for their ranges).
    """
    if name not in OBSERVERS:
        raise ValueError(f"observer={name!r} is not supported; allowed: {', '.join(map(repr, OBSERVERS))}")
    return OBSERVERS[name](**kwargs)
