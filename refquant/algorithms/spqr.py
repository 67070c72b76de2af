"""SpQR: sparse-quantized representation, GPTQ with tiny groups, bilevel statistics and
unstructured fp16 outliers.

Dettmers, Svirschevski, Egiazarian, Kuznedelev, Frantar, Ashkboos, Borzunov, Hoefler,
Alistarh, "SpQR: A Sparse-Quantized Representation for Near-Lossless LLM Weight
Compression", ICLR 2024, Algorithm 1. The code it mirrors is Vahe1994/SpQR
``spqr_engine.SPQRUtil.quantize``, ``get_leave_one_out_error`` and
``quant_groups.Quantizer``.

Symbols (paper -> here): ``W`` (out, in), ``H = 2 X^T X``, ``U`` = ``H_inv_cho`` the upper
Cholesky factor of the damped ``H^{-1}`` (as in GPTQ), ``beta_1 = group_size`` (16)
columns per group of first-level statistics, ``beta_2 = qq_groupsize`` (16) rows per
group of second-level statistics, ``tau`` the outlier threshold.

* First level: every row of a group of ``beta_1`` columns gets a min-max scale and an
  (unrounded) zero-point with SpQR's quantizer rule (:mod:`._quantizer`).
* Second level ("bilevel"): the ``out_features`` scales of a group are cut into chunks
  of ``beta_2`` consecutive rows, and each chunk is quantized to ``qq_scale_bits`` with
  its own min-max quantizer; likewise the zero-points. The second-level scale and zero
  cost 16 bits each (SpQR keeps them in float32 and counts 16; so do we).
* Outliers (sec. 4.1): ``tau = outlier_threshold * mean_c(var_rows(W[:, c]) / U[c, c]^2)``.
  Before a group is fitted, each weight's leave-one-out error reduction (the group's
  ``U``-weighted squared error minus the error when that weight is left out of both the
  fit and the error) is computed, and weights whose reduction exceeds ``tau`` are
  replaced by the row's mean of the others for the fit. During the GPTQ sweep, a weight
  whose scaled error ``((w - q(w)) / U[c, c])^2`` exceeds ``tau`` is an outlier: it is
  stored exactly (here: as float16, the storage type; its tiny rounding error is
  propagated like any other), excluded when its column is re-quantized, and its
  code is that of 0 and ignored.
* Columns are processed in act-order (decreasing ``diag(H)``) by default; the group
  parameters see the in-block updates (SpQR updates ``W`` in place, unlike GPTQ's ``W1``).
* Damping: ``H[i, i] += damp * mean(|diag(H)|)`` *before* dead columns get ``H[i, i] = 1``
  (the reverse of GPTQ's order); a failed Cholesky factorization is retried with more
  damping as in :func:`refquant.algorithms.gptq.inverse_hessian_cholesky`.

Average bits per weight (``get_average_number_of_bits``):
``bits + (qq_scale_bits + qq_zero_bits) / beta_1 + 2 (16 + 16) / (beta_1 beta_2) +
32 * outlier_fraction`` -- 3.625 + 32 x fraction for the 3-bit 16/16 configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from refquant._validate import check_choice, check_float, check_int
from refquant.algorithms import _quantizer
from refquant.formats.groupwise import spqr_average_bits as average_bits
from refquant.algorithms._quantizer import SPQR_RULE
from refquant.algorithms._result import QuantizedWeight
from refquant.algorithms.gptq import _check_hessian, inverse_hessian_cholesky, reconstruction_error

__all__ = ["spqr", "SpQRResult", "average_bits"]

_FP16_MAX = 65504.0


@dataclass(frozen=True, kw_only=True, eq=False)
class SpQRResult(QuantizedWeight):
    """:class:`QuantizedWeight` of :func:`spqr`. ``scales`` and ``zeros`` are the
    first-level statistics as the weights use them (after the second-level round trip).

    Attributes
    ----------
    scale_codes, zero_codes : ndarray of uint8, shape (out_features, n_groups)
        Second-level codes of the first-level scales and zero-points.
    scale_stats, zero_stats : ndarray of float32, shape (n_groups, out_features // qq_groupsize, 2)
        Second-level ``(scale, zero)`` of each chunk of ``qq_groupsize`` rows.
    outliers : scipy.sparse.csr_matrix of float32, shape (out_features, in_features)
        The weights kept unquantized, as float16 values (scipy.sparse has no float16
        dtype, so they are held in float32; every value converts to float16 exactly).
    outlier_threshold : float
        ``tau`` (absolute).
    error : float
        ``1/2 tr((W - W_hat) H (W - W_hat)^T)`` with the given ``H`` (as GPTQ's).
    damp : float
        Relative damping that succeeded.
    perm : ndarray of int64 or None
        Column order of the sweep (act-order), None for the natural order.
    qq_groupsize : int
        Rows per second-level group.
    """

    scale_codes: np.ndarray
    zero_codes: np.ndarray
    scale_stats: np.ndarray
    zero_stats: np.ndarray
    outliers: scipy.sparse.csr_matrix
    outlier_threshold: float
    error: float
    damp: float
    perm: np.ndarray | None
    qq_groupsize: int

    @property
    def outlier_fraction(self) -> float:
        """Share of weights stored as outliers."""
        return self.outliers.nnz / (self.shape[0] * self.shape[1])

    def dequantize(self) -> np.ndarray:
        """Quantized part (zero where an outlier sits) plus the sparse outliers (float32).

        Bit-identical to :attr:`dequantized` when computed with ``dtype=float32``.
        """
        out = self.scales[:, self.g_idx] * (self.codes.astype(np.float32) - self.zeros[:, self.g_idx])
        coo = self.outliers.tocoo()
        out[coo.row, coo.col] = coo.data.astype(np.float32)
        return out


def spqr(W: Any, H: Any, bits: int = 3, group_size: int = 16, *, qq_scale_bits: int = 3, qq_zero_bits: int = 3,
         qq_groupsize: int = 16, outlier_threshold: float = 0.2, act_order: bool = True, sym: bool = False,
         damp: float = 0.01, block_size: int = 128, simplified_outliers: bool = False,
         dtype: Any = np.float32) -> SpQRResult:
    """Quantize ``W`` with SpQR.

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features)
        Weight (finite); ``out_features`` must be a multiple of ``qq_groupsize``.
    H : ndarray, shape (in_features, in_features)
        Hessian ``2 X^T X`` (as for :func:`~refquant.algorithms.gptq`).
    bits : {2, 3, 4, 8}
        First-level code width (3 in the paper's ~3.6-bit configuration).
    group_size : int
        Columns per first-level group (``beta_1``, 16), >= 1; a size above ``in_features``
        is one group per row (clamped to ``in_features``, as RTN/GPTQ/AWQ do).
    qq_scale_bits, qq_zero_bits : int
        Second-level code widths of the scales and zero-points (3), 1..8.
    qq_groupsize : int
        Rows per second-level group (``beta_2``, 16).
    outlier_threshold : float
        Relative outlier threshold (0.2 in the README's configuration; ``inf``
        disables outliers).
    act_order : bool
        Sweep columns in order of decreasing ``diag(H)`` (SpQR's ``act_order``).
    sym : bool
        Symmetric first-level grid.
    damp : float
        Relative damping ``percdamp`` (0.01, ``main.py``'s default).
    block_size : int
        Columns per lazy-update block (128).
    simplified_outliers : bool
        Skip the leave-one-out pre-filter (faster, less accurate).
    dtype : {numpy.float32, numpy.float64}
        Working precision (float32, as the original).

    Returns
    -------
    SpQRResult
    """
    W_in = _quantizer.check_weight(W)
    rows, columns = W_in.shape
    H_in = _check_hessian(H, columns)
    bits = _quantizer.check_bits(bits)
    group_size = min(check_int("group_size", group_size, min=1), max(columns, 1))  # nothing sized by it
    qq_scale_bits = check_int("qq_scale_bits", qq_scale_bits, min=1, max=8)
    qq_zero_bits = check_int("qq_zero_bits", qq_zero_bits, min=1, max=8)
    qq_groupsize = check_int("qq_groupsize", qq_groupsize, min=1)
    if rows % qq_groupsize:
        raise ValueError(f"out_features={rows} must be a multiple of qq_groupsize={qq_groupsize}: the "
                         f"second-level statistics group {qq_groupsize} consecutive rows")
    if isinstance(outlier_threshold, (bool, np.bool_)) or not isinstance(outlier_threshold, (int, float, np.number)):
        raise TypeError(f"outlier_threshold must be a real number, got {outlier_threshold!r}")
    tau_rel = float(outlier_threshold)
    if not tau_rel >= 0:
        raise ValueError(f"outlier_threshold={outlier_threshold!r} must be >= 0 (inf disables outliers)")
    damp = check_float("damp", damp, min=0.0)
    block_size = check_int("block_size", block_size, min=1)
    dtype = np.dtype(check_choice("dtype", np.dtype(dtype), (np.dtype(np.float32), np.dtype(np.float64))))
    sym = bool(sym)
    second = (qq_scale_bits, qq_zero_bits, qq_groupsize)

    W = W_in.astype(dtype, copy=True)
    H = H_in.astype(dtype, copy=True)
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else None
    if perm is not None:
        W = W[:, perm]
        H = H[perm][:, perm]
    dead = np.diag(H) == 0
    diagonal = np.diag_indices_from(H)
    H[diagonal] += H.dtype.type(damp * float(np.mean(np.abs(np.diag(H)), dtype=np.float64)))
    H[dead, dead] = 1
    W[:, dead] = 0
    U, extra_damp = inverse_hessian_cholesky(H, 0.0)
    d_all = np.diag(U)

    # tau: relative threshold x mean over columns of var_rows(W[:, c]) / U[c, c]^2
    outlier_scale = float(np.mean(np.var(W, axis=0, ddof=1 if rows > 1 else 0) / d_all**2, dtype=np.float64))
    tau = tau_rel * outlier_scale if tau_rel != np.inf else np.inf

    Q = np.zeros_like(W)
    codes = np.zeros_like(W)
    is_outlier = np.zeros(W.shape, dtype=bool)
    Err = np.zeros_like(W)
    fits: list[dict[str, np.ndarray]] = []
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        for c in range(i1, i2):
            if c % group_size == 0:
                group = W[:, c:c + group_size]
                if not (simplified_outliers or tau == np.inf or group.shape[1] < 2):
                    group = _without_likely_outliers(group, d_all[c:c + group_size], bits, sym, tau)
                fits.append(_bilevel_params(group, bits, sym, second))
            scale, zero = fits[-1]["scale"], fits[-1]["zero"]
            w = W[:, c]
            q = _quantizer.dequantize(_quantizer.quantize(w, scale, zero, bits, SPQR_RULE), scale, zero)
            err = (w - q) / d_all[c]
            if tau != np.inf:
                outlier = err**2 > tau
                kept = np.where(outlier, 0, w)  # re-quantize the column without its outliers
                codes[:, c] = _quantizer.quantize(kept, scale, zero, bits, SPQR_RULE)
                if np.any(np.abs(w[outlier]) > _FP16_MAX):
                    raise ValueError(f"an outlier weight in column {c if perm is None else perm[c]} exceeds the "
                                     f"float16 range (|w| > 65504); SpQR stores outliers in float16")
                exact = np.where(outlier, w, 0).astype(np.float16).astype(dtype)
                q = np.where(outlier, exact, _quantizer.dequantize(codes[:, c], scale, zero))
                err = (w - q) / d_all[c]
                is_outlier[:, c] = outlier
            else:
                codes[:, c] = _quantizer.quantize(w, scale, zero, bits, SPQR_RULE)
            Q[:, c] = q
            Err[:, c] = err
            W[:, c + 1:i2] -= np.outer(err, U[c, c + 1:i2])  # eq. (3), in place
        W[:, i2:] -= Err[:, i1:i2] @ U[i1:i2, i2:]  # lazy batch update

    if perm is not None:
        invperm = np.argsort(perm)
        Q, codes, is_outlier = Q[:, invperm], codes[:, invperm], is_outlier[:, invperm]
        g_idx = (invperm // group_size).astype(np.int32)
    else:
        g_idx = _quantizer.natural_g_idx(columns, group_size)

    dequantized = Q.astype(np.float32)
    r, col = np.nonzero(is_outlier)
    outliers = scipy.sparse.csr_matrix((dequantized[r, col], (r, col)), shape=W.shape, dtype=np.float32)
    fraction = outliers.nnz / (rows * columns)
    return SpQRResult(
        method="spqr",
        dequantized=dequantized,
        codes=codes.astype(np.uint8),
        scales=np.stack([f["scale"] for f in fits], axis=1).astype(np.float32),
        zeros=np.stack([f["zero"] for f in fits], axis=1).astype(np.float32),
        g_idx=g_idx,
        bits=bits,
        group_size=group_size,
        sym=sym,
        bits_per_weight=average_bits(bits, group_size, qq_scale_bits, qq_zero_bits, qq_groupsize, fraction),
        scale_codes=np.stack([f["scale_codes"] for f in fits], axis=1).astype(np.uint8),
        zero_codes=np.stack([f["zero_codes"] for f in fits], axis=1).astype(np.uint8),
        scale_stats=np.stack([f["scale_stats"] for f in fits]).astype(np.float32),
        zero_stats=np.stack([f["zero_stats"] for f in fits]).astype(np.float32),
        outliers=outliers,
        outlier_threshold=float(tau),
        error=reconstruction_error(W_in, dequantized, H_in),
        damp=damp + extra_damp,
        perm=perm,
        qq_groupsize=qq_groupsize,
    )


def _bilevel_params(group: np.ndarray, bits: int, sym: bool, second: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """First-level per-row ``(scale, zero)`` of a group, each quantized per chunk of
    ``qq_groupsize`` rows by a second-level asymmetric min-max quantizer (unrounded zero)."""
    qq_scale_bits, qq_zero_bits, qq_groupsize = second
    scale, zero = _quantizer.find_params(group, bits, sym, SPQR_RULE)
    out: dict[str, np.ndarray] = {}
    for name, stat, qq_bits in (("scale", scale, qq_scale_bits), ("zero", zero, qq_zero_bits)):
        chunks = stat.reshape(-1, qq_groupsize)  # (rows // qq_groupsize, qq_groupsize)
        s2, z2 = _quantizer.find_params(chunks, qq_bits, False, SPQR_RULE)
        q2 = _quantizer.quantize(chunks, s2[:, None], z2[:, None], qq_bits, SPQR_RULE)
        out[name] = _quantizer.dequantize(q2, s2[:, None], z2[:, None]).reshape(-1)
        out[name + "_codes"] = q2.reshape(-1)
        out[name + "_stats"] = np.stack([s2, z2], axis=1)
    return out


def _without_likely_outliers(group: np.ndarray, d: np.ndarray, bits: int, sym: bool, tau: float) -> np.ndarray:
    """The group with each weight whose leave-one-out error reduction exceeds ``tau``
    replaced by its row's mean of the other weights (``get_leave_one_out_error``)."""
    rows, n = group.shape

    def reconstruction_sq_error(x: np.ndarray, d_x: np.ndarray) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1])
        scale, zero = _quantizer.find_params(flat, bits, sym, SPQR_RULE)
        q = _quantizer.quantize(flat, scale[:, None], zero[:, None], bits, SPQR_RULE)
        rec = _quantizer.dequantize(q, scale[:, None], zero[:, None]).reshape(x.shape)
        return np.sum(((rec - x) / d_x) ** 2, axis=-1)

    # loo[j] = the n - 1 column indices other than j
    loo = np.array([[k for k in range(n) if k != j] for j in range(n)])  # (n, n - 1)
    loo_error = reconstruction_sq_error(group[:, loo], d[loo])  # (rows, n)
    baseline = reconstruction_sq_error(group, d)  # (rows,)
    likely = (baseline[:, None] - loo_error) > tau
    keep = ~likely
    mean = np.sum(np.where(keep, group, 0), axis=1) / np.maximum(np.sum(keep, axis=1), 1)
    return np.where(likely, mean[:, None], group).astype(group.dtype, copy=False)
