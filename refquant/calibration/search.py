"""Range searches on a calibration histogram: one function per published rule.

==========================  ===============================================================  ==========
function                    rule                                                             source
==========================  ===============================================================  ==========
``amax_percentile``         left edge of the bin where the CDF reaches p/100                 [NV]_ ``_compute_amax_percentile``
``amax_entropy``            threshold minimizing KL(P‖Q), TensorRT's 2048 → 128 bin method   [NV]_ ``_compute_amax_entropy``
``amax_mse``                bin centre minimizing the count-weighted MSE of fake-quantization  [NV]_ ``_compute_amax_mse``
``l2_param_search``         torch.ao's approximate-L2 walk over the CDF                      [TAO]_ ``_non_linear_param_search``
==========================  ===============================================================  ==========

The first three take a histogram of |x| whose first edge is 0 (NVIDIA's calibrator histograms
abs(x)); the last takes a histogram of signed x. Each takes ``counts`` (m,) and ``edges`` (m+1,)
with uniform bin width and returns the clipping threshold(s); nothing here collects data.

References
----------
.. [NV] NVIDIA TensorRT, ``tools/pytorch-quantization/pytorch_quantization/calib/histogram.py``
   (and ``tensor_quant.py``'s ``_tensor_quant`` for the fake-quantizer ``amax_mse`` uses).
  
.. [TAO] PyTorch, ``torch/ao/quantization/observer.py``, ``HistogramObserver``; a port of caffe2's
   ``NormMinimization::NonlinearQuantizationParamsSearch``.
.. [MIG] S. Migacz, "8-bit Inference with TensorRT", GTC 2017 (the KL calibration algorithm).
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from refquant._validate import check_int

__all__ = ["amax_percentile", "amax_entropy", "amax_mse", "l2_param_search"]


def amax_percentile(counts: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """The threshold that keeps ``percentile`` % of the mass (NVIDIA ``_compute_amax_percentile``).

    ``cdf = cumsum(counts / total)``; ``idx = searchsorted(cdf, percentile / 100)`` (left side);
    the result is ``edges[idx]``, the **left** edge of the bin in which the CDF reaches the
    percentile (so it can lie one bin below the exact quantile).

    Parameters
    ----------
    counts : ndarray, shape (m,)
    edges : ndarray, shape (m + 1,)
    percentile : float in [0, 100]
    """
    cdf = np.cumsum(counts / counts.sum())
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(edges[idx])


def amax_entropy(counts: np.ndarray, edges: np.ndarray, num_bits: int = 8, unsigned: bool = False,
                 stride: int = 1, start_bin: int = 128) -> float:
    """The threshold minimizing KL divergence, as NVIDIA's ``_compute_amax_entropy`` computes it.

    1. ``bins = counts`` with ``bins[0]`` replaced by ``bins[1]`` (damps the spike at zero).
    2. ``nbins = 2**(num_bits − 1 + unsigned)`` target levels (128 for signed int8).
    3. For each candidate ``i`` in ``start_bin, start_bin + stride, ..., len(bins)``:

       - P = ``bins[:i]`` with the clipped tail ``sum(bins[i:])`` added to its last bin;
       - source bin ``j < i`` goes to target ``digitize(j, linspace(0, i, nbins + 1)) − 1``;
         each target's total is spread evenly over its **non-empty** source bins only, and
         empty source bins get 0 (Q);
       - KL = ``scipy.stats.entropy(P, Q)`` (both normalized by scipy; no smoothing, so a
         clipped tail landing on an empty bin gives KL = inf).

    4. The **last** candidate among the minima wins; the threshold is ``edges[i]``.

    Parameters
    ----------
    counts : ndarray, shape (m,), m >= 2
        Histogram of |x| with ``edges[0] == 0``.
    edges : ndarray, shape (m + 1,)
    num_bits : int
    unsigned : bool
        Non-negative data: twice as many levels.
    stride, start_bin : int
        Candidates ``range(start_bin, m + 1, stride)``; must not be empty.

    Returns
    -------
    float
        ``edges[i*]``.
    """
    bins = np.array(counts, dtype=np.float64)
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    candidates = range(start_bin, len(bins) + 1, stride)
    if len(candidates) == 0:
        raise ValueError(f"start_bin={start_bin} leaves no candidate threshold for a histogram of {len(bins)} bins; "
                         f"it must be <= {len(bins)}")
    tail = np.concatenate([np.cumsum(bins[::-1])[::-1], [0.0]])  # tail[i] = sum(bins[i:])
    j = np.arange(len(bins))
    nonzero = bins != 0
    divergences = np.empty(len(candidates))
    for n, i in enumerate(candidates):
        # == digitize(j, linspace(0, i, nbins + 1)) - 1: nbins is a power of two, so the
        # linspace points k*i/nbins are exact binary fractions and the bin is floor(j*nbins/i)
        target = (j[:i] * nbins) // i
        nz = nonzero[:i]
        mass = np.bincount(target[nz], weights=bins[:i][nz], minlength=nbins)  # summed in index order
        members = np.bincount(target[nz], minlength=nbins)
        q = np.where(nz, mass[target] / np.maximum(members[target], 1), 0.0)
        p = bins[:i].copy()
        p[-1] += tail[i]
        # scipy.stats.entropy(p, q): normalize both, sum rel_entr (inf where p > 0 = q; NaN when
        # Q is all zero, which argmin below then treats as the minimum, as NumPy does for NVIDIA)
        with np.errstate(invalid="ignore", divide="ignore"):
            divergences[n] = np.sum(rel_entr(p / np.sum(p), q / np.sum(q)))
    best = len(divergences) - 1 - int(np.argmin(divergences[::-1]))  # last minimum
    return float(edges[candidates[best]])


def amax_mse(counts: np.ndarray, edges: np.ndarray, num_bits: int = 8, unsigned: bool = False,
             stride: int = 1, start_bin: int = 128) -> float:
    """The bin centre minimizing fake-quantization MSE (NVIDIA ``_compute_amax_mse``).

    Candidates are the centres ``c[i]``, ``i = start_bin, start_bin + stride, ...`` (below the
    number of bins). Each bin is represented by its centre; for amax = ``c[i]`` the centres are
    fake-quantized as NVIDIA's ``fake_tensor_quant`` does (narrow range): ``scale = maxb / amax``
    with ``maxb = 2**(num_bits − 1 + unsigned) − 1``, ``q = clamp(round_half_even(c·scale), −maxb,
    maxb) / scale``, and the error is ``mean(counts · (q − c)**2)``. The **first** minimum wins
    (``np.argmin``). Computed in float64 (NVIDIA computes in float32 on the GPU, so exact ties
    may resolve differently).

    Parameters
    ----------
    counts : ndarray, shape (m,)
        Histogram of |x| with ``edges[0] == 0``.
    edges : ndarray, shape (m + 1,)
    num_bits : int in 2..16
        Bits of the fake-quantized value.
    unsigned : bool
        One more bit of magnitude (all observed values >= 0).
    stride : int >= 1
        Step between candidate bins.
    start_bin : int >= 0
        First candidate bin; must be below the number of bins.

    Returns
    -------
    float
        The chosen centre.
    """
    num_bits, stride = check_int("num_bits", num_bits, min=2, max=16), check_int("stride", stride, min=1)
    centers = (edges[1:] + edges[:-1]) / 2
    cand = np.arange(check_int("start_bin", start_bin, min=0), len(centers), stride)
    if cand.size == 0:
        raise ValueError(f"start_bin={start_bin} leaves no candidate threshold for a histogram of "
                         f"{len(centers)} bins; it must be < {len(centers)}")
    maxb = 2.0 ** (num_bits - 1 + int(unsigned)) - 1.0
    errors = np.empty(cand.size)
    for lo in range(0, cand.size, 256):  # (candidates, bins) blocks keep memory bounded
        amax = centers[cand[lo:lo + 256]][:, None]
        scale = maxb / amax
        q = np.clip(np.rint(centers * scale), -maxb, maxb) / scale
        errors[lo:lo + 256] = np.mean((q - centers) ** 2 * counts, axis=1)
    return float(centers[cand[int(np.argmin(errors))]])


def _l2_error(counts: np.ndarray, bin_width: float, start_bin: int, end_bin: int, dst_nbins: int) -> float:
    """torch.ao ``HistogramObserver._compute_quantization_error``: approximate L2 error of quantizing
    the histogram with ``dst_nbins`` levels spread over source bins [start_bin, end_bin].

    Each source bin holds its count with uniform density; the error is the integral of
    (x − nearest destination-bin centre)² over it, split at the destination bins it spans.
    """
    dst_width = bin_width * (end_bin - start_bin + 1) / dst_nbins
    if dst_width == 0.0:
        return 0.0
    src = np.arange(len(counts))
    begin = (src - start_bin) * bin_width  # distance from the first destination bin's start
    end = begin + bin_width
    dst_of_begin = np.clip(np.floor(begin / dst_width), 0, dst_nbins - 1)
    dst_of_end = np.clip(np.floor(end / dst_width), 0, dst_nbins - 1)
    density = counts / bin_width

    def norm(a, b):  # density · ∫_a^b x² dx
        return density * (b * b * b - a * a * a) / 3

    half = dst_width / 2
    err = norm(begin - (dst_of_begin + 0.5) * dst_width, half)
    err = err + (dst_of_end - dst_of_begin - 1) * norm(-half, half)
    err = err + norm(-half, end - (dst_of_end * dst_width + half))
    return float(err.sum())


def l2_param_search(counts: np.ndarray, edges: np.ndarray, dst_nbins: int = 256) -> tuple[float, float]:
    """torch.ao ``HistogramObserver._non_linear_param_search``: clip [lo, hi] by approximate L2 error.

    Walk ``alpha`` up from 0 and ``beta`` down from 1 in steps of 1e-5 of the CDF; at each step
    move whichever end (start or end bin) would skip more bins; when a bin boundary moves,
    evaluate the L2 error (:func:`_l2_error`) and stop at the first increase. Returns
    ``(edges[0] + w·start_bin, edges[0] + w·(end_bin + 1))``.

    The bin scans of the original (``while cSum[l] < alpha·total: l += 1``) are done with
    ``searchsorted``, which finds the same bins. Computed in float64 (torch uses float32
    tensors).

    Parameters
    ----------
    counts : ndarray, shape (m,)
        Histogram of signed x.
    edges : ndarray, shape (m + 1,)
    dst_nbins : int
        Quantization levels, 2**bits.
    """
    m = len(counts)
    bin_width = (edges[-1] - edges[0]) / m
    total = float(counts.sum())
    csum = np.cumsum(counts)
    stepsize = 1e-5
    alpha, beta = 0.0, 1.0
    start_bin, end_bin = 0, m - 1
    norm_min = np.inf
    while alpha < beta:
        next_alpha, next_beta = alpha + stepsize, beta - stepsize
        # first l >= start_bin with csum[l] >= next_alpha·total (at most end_bin)
        l = min(max(int(np.searchsorted(csum, next_alpha * total, side="left")), start_bin), end_bin)
        # last r <= end_bin with csum[r] <= next_beta·total (at least start_bin)
        r = max(min(int(np.searchsorted(csum, next_beta * total, side="right")) - 1, end_bin), start_bin)
        next_start, next_end = start_bin, end_bin
        if (l - start_bin) > (end_bin - r):
            next_start = l
            alpha = next_alpha
        else:
            next_end = r
            beta = next_beta
        if next_start == start_bin and next_end == end_bin:
            continue
        norm = _l2_error(counts, bin_width, next_start, next_end, dst_nbins)
        if norm > norm_min:
            break
        norm_min = norm
        start_bin, end_bin = next_start, next_end
    return float(edges[0] + bin_width * start_bin), float(edges[0] + bin_width * (end_bin + 1))
