"""GPTQ: post-training quantization of a linear layer with second-order error correction.

Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", ICLR 2023, Algorithm 1; the code it mirrors is
``GPTQ.fasterquant`` in IST-DASLab/gptq ``gptq.py`` and the
``Quantizer`` of ``quant.py`` (section 5.3).

Symbols (paper -> here):

=========  ==============================================================================
``W``      weight (out_features = d_row, in_features = d_col), quantized column by column
``H``      Hessian of the layer's squared error, ``H = 2 X^T X`` (in, in) (eq. 1 and 2)
``Hinv``   upper Cholesky factor ``U`` of ``(H + lambda I)^{-1}``, ``U^T U = H^{-1}`` (sec. 3.3,
           "Cholesky reformulation"): row ``q`` of ``U`` holds ``[H_F^{-1}]_{q,:} /
           sqrt([H_F^{-1}]_{qq})`` for the not-yet-quantized set ``F``
``Q``      quantized (dequantized) weight
``Err``    scaled errors ``(w_q - quant(w_q)) / [U]_{qq}`` of one block (Algorithm 1, ``E``)
``W1``     the current block of ``B = block_size`` columns, updated eagerly (eq. 3)
``d``      ``[U]_{qq}``
=========  ==============================================================================

The OBS update after quantizing column ``q`` (eq. 3): ``W[:, F] -= err_q * U[q, F]``.
"Lazy batch updates" (sec. 3.2) apply it inside the block at once, and to the columns
after the block with one matrix product ``W[:, i2:] -= Err @ U[i1:i2, i2:]``.

Details that follow ``fasterquant`` exactly:

* dead input columns (``H[i, i] == 0``: the input is always 0) get ``H[i, i] = 1`` and
  ``W[:, i] = 0`` before anything else uses them;
* per-channel parameters (``group_size=-1``) are fitted on the whole ``W`` *before*
  the dead columns are zeroed; static groups after;
* dynamic groups fit a group when its first column is reached, on the *global* ``W``
  which carries the lazy updates of previous blocks but not the in-block updates of
  the current one (these live only in ``W1``; this matters when group < block);
* act-order (``desc_act``) sorts columns by decreasing ``diag(H)``; ties keep the lower
  index first (``argsort`` is stable here; torch's is not specified);
* damping ``H[i, i] += damp * mean(diag(H))`` (1 % by default) after the dead-column
  fix; if the Cholesky factorization still fails (too little
  calibration data, a non-PSD matrix in float32) the damping is raised tenfold and
  retried, up to :data:`MAX_DAMP_RETRIES` times. The damping used is reported.

The arithmetic runs in ``dtype`` (float32, as the original; float64 on request), never
in float16.

Reconstruction error. With ``H = 2 X^T X`` for inputs ``X`` (tokens, in), the layer's
squared output error is ``||X W^T - X Q^T||_F^2 = 1/2 tr((W - Q) H (W - Q)^T)``, which
is what ``.error`` reports (with the ``H`` given, undamped). With GPTQ's own
normalisation ``H = (2/N) X^T X`` (:mod:`refquant.calibration`), the same number is the
error *per sample*, ``||X (W - Q)^T||_F^2 / N``. ``.obs_loss`` is GPTQ's ``Losses.sum()``:
``1/2 ||Err||^2``, which equals ``1/2 tr((W - Q) H_damped (W - Q)^T)`` (because
``W - Q = Err U`` and ``U H_damped U^T = I``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import get_blas_funcs, get_lapack_funcs

from refquant._validate import as_float_array, check_choice, check_float, check_int
from refquant.algorithms import _quantizer
from refquant.algorithms._quantizer import GPTQ_RULE
from refquant.algorithms._result import QuantizedWeight

__all__ = ["gptq", "GPTQResult", "inverse_hessian_cholesky", "reconstruction_error"]

#: How many times the damping is multiplied by 10 after a failed Cholesky factorization.
MAX_DAMP_RETRIES = 5


@dataclass(frozen=True, kw_only=True, eq=False)
class GPTQResult(QuantizedWeight):
    """:class:`QuantizedWeight` of :func:`gptq`, plus

    Attributes
    ----------
    error : float
        ``1/2 tr((W - Q) H (W - Q)^T)`` with the given (undamped) ``H``: the layer's
        squared output error (see the module docstring for the normalisation).
    obs_loss : float
        GPTQ's own loss ``sum((w - q)^2 / d^2) / 2`` (``Losses.sum()``).
    damp : float
        The relative damping actually used (``damp`` unless a retry raised it).
    perm : ndarray of int64, shape (in_features,), or None
        Act-order column permutation (``W[:, perm]`` was quantized); None without.
    dead : ndarray of bool, shape (in_features,)
        Input columns whose ``H[i, i]`` was 0 (their weights became 0).
    """

    error: float
    obs_loss: float
    damp: float
    perm: np.ndarray | None
    dead: np.ndarray


def gptq(W: Any, H: Any, bits: int = 4, group_size: int = 128, act_order: bool = False, sym: bool = True,
         damp: float = 0.01, block_size: int = 128, static_groups: bool = False, *,
         dtype: Any = np.float32) -> GPTQResult:
    """Quantize ``W`` column by column, correcting later columns for each error (GPTQ).

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features)
        Weight of a linear layer (finite). Not modified.
    H : ndarray of float32 or float64, shape (in_features, in_features)
        Symmetric positive semi-definite Hessian ``2 X^T X`` (any positive scaling, e.g.
        GPTQ's ``(2/N) X^T X``; the result does not depend on it except ``.error``).
    bits : {2, 3, 4, 8}
        Code width.
    group_size : int
        Input columns per group of quantization parameters; -1 for per-channel.
    act_order : bool
        Quantize columns in order of decreasing ``diag(H)`` (``desc_act``); ``g_idx``
        then records each column's group.
    sym : bool
        GPTQ's symmetric grid (zero-point ``(maxq + 1) / 2``) or a min-max zero-point.
    damp : float
        Relative damping ``percdamp`` (>= 0): ``lambda = damp * mean(diag(H))``.
    block_size : int
        Columns per lazy-update block (``B`` of the paper, 128). Changes only rounding.
    static_groups : bool
        Fit every group's parameters up front on the (dead-column-zeroed) ``W`` in the
        natural column order, instead of when the sweep reaches the group.
    dtype : {numpy.float32, numpy.float64}
        Working precision.

    Returns
    -------
    GPTQResult

    Raises
    ------
    ValueError, TypeError
        Bad shapes, non-finite inputs, an asymmetric ``H``, unsupported parameters, or
        an ``H`` that stays indefinite after every damping retry.
    """
    W_in = _quantizer.check_weight(W)
    rows, columns = W_in.shape
    H_in = _check_hessian(H, columns)
    bits = _quantizer.check_bits(bits)
    groupsize = _quantizer.check_group_size(group_size, columns)
    per_channel = group_size == -1
    damp = check_float("damp", damp, min=0.0)
    block_size = check_int("block_size", block_size, min=1)
    dtype = np.dtype(check_choice("dtype", np.dtype(dtype), (np.dtype(np.float32), np.dtype(np.float64))))
    act_order, sym, static_groups = bool(act_order), bool(sym), bool(static_groups)

    W = W_in.astype(dtype, copy=True)
    H = H_in.astype(dtype, copy=True)

    group_params: list[tuple[np.ndarray, np.ndarray]] = []  # (scale, zero) per group
    if per_channel:  # fasterquant step 2: fitted before the dead columns are zeroed
        scale, zero = _quantizer.find_params(W, bits, sym, GPTQ_RULE)
        group_params.append((scale, zero))

    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    if static_groups and not per_channel:
        group_params = [_quantizer.find_params(W[:, j:j + groupsize], bits, sym, GPTQ_RULE)
                        for j in range(0, columns, groupsize)]

    perm = None
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]

    Hinv, used_damp = inverse_hessian_cholesky(H, damp)

    Q = np.zeros_like(W)
    codes = np.zeros_like(W)
    obs_loss = 0.0
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        C1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]

        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if not per_channel:
                if static_groups:
                    column = perm[i1 + i] if act_order else i1 + i
                    scale, zero = group_params[column // groupsize]
                elif (i1 + i) % groupsize == 0:
                    # the global W: lazy updates of earlier blocks, not this block's
                    scale, zero = _quantizer.find_params(W[:, i1 + i:i1 + i + groupsize], bits, sym, GPTQ_RULE)
                    group_params.append((scale, zero))
            C1[:, i] = _quantizer.quantize(w, scale, zero, bits, GPTQ_RULE)
            Q1[:, i] = _quantizer.dequantize(C1[:, i], scale, zero)
            err1 = (w - Q1[:, i]) / d
            obs_loss += 0.5 * float(np.dot(err1.astype(np.float64), err1))
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])  # eq. (3) inside the block
            Err1[:, i] = err1

        Q[:, i1:i2] = Q1
        codes[:, i1:i2] = C1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # lazy batch update of the later columns

    if act_order:
        invperm = np.argsort(perm)
        Q = Q[:, invperm]
        codes = codes[:, invperm]

    if per_channel:
        g_idx = np.zeros(columns, dtype=np.int32)
    elif act_order and not static_groups:
        g_idx = (np.argsort(perm) // groupsize).astype(np.int32)  # group of each column's position
    else:
        g_idx = _quantizer.natural_g_idx(columns, groupsize)
    scales = np.stack([s for s, _ in group_params], axis=1)
    zeros = np.stack([z for _, z in group_params], axis=1)
    dequantized = Q.astype(np.float32)

    return GPTQResult(
        method="gptq",
        dequantized=dequantized,
        codes=codes.astype(np.uint8),
        scales=scales.astype(np.float32),
        zeros=zeros.astype(np.float32),
        g_idx=g_idx,
        bits=bits,
        group_size=int(group_size),
        sym=sym,
        bits_per_weight=_quantizer.group_bits_per_weight(bits, groupsize, columns),
        error=reconstruction_error(W_in, dequantized, H_in),
        obs_loss=obs_loss,
        damp=used_damp,
        perm=perm,
        dead=dead,
    )


def inverse_hessian_cholesky(H: np.ndarray, damp: float) -> tuple[np.ndarray, float]:
    """Upper Cholesky factor ``U`` of ``(H + damp * mean(diag H) * I)^{-1}``.

    ``fasterquant`` computes it as ``cholesky(cholesky_inverse(cholesky(H)), upper=True)``
    (three O(n^3) LAPACK calls, ~4/3 n^3 flops). The factor is unique, so this takes a
    shorter route to the same matrix (2/3 n^3 flops): with ``J`` the reversal
    permutation and ``J H J = L L^T`` (lower Cholesky), ``H = (J L J)(J L J)^T`` and
    ``H^{-1} = U^T U`` with ``U = J L^{-1} J``, which is upper triangular with a positive
    diagonal. If a factorization fails, the damping is multiplied by 10 (starting from
    1e-4 when ``damp`` is 0) and retried, at most :data:`MAX_DAMP_RETRIES` times.

    Parameters
    ----------
    H : ndarray of float32 or float64, shape (n, n)
        Symmetric; only one triangle is read.
    damp : float
        Relative damping (>= 0).

    Returns
    -------
    U : ndarray, H's dtype, shape (n, n)
        Upper triangular with positive diagonal, ``U^T U = (H + lambda I)^{-1}``.
    damp : float
        The relative damping that succeeded.

    Raises
    ------
    ValueError
        When every retry fails (``H`` is not positive semi-definite).
    """
    potrf, trtri = get_lapack_funcs(("potrf", "trtri"), (H,))
    mean_diag = float(np.mean(np.diag(H), dtype=np.float64))
    diagonal = np.diag_indices_from(H)
    rel = damp
    for _ in range(MAX_DAMP_RETRIES + 1):
        Hd = H[::-1, ::-1].copy()  # J H J
        Hd[diagonal] += H.dtype.type(rel * mean_diag)
        L, info = potrf(Hd, lower=True, clean=True)
        if info == 0:
            Linv, info = trtri(L, lower=True)
            if info == 0 and np.isfinite(Linv).all():
                return np.ascontiguousarray(Linv[::-1, ::-1]), rel  # U = J L^{-1} J
        rel = max(rel * 10, 1e-4)
    raise ValueError(
        f"H is not positive definite even with damping {rel / 10:g} x mean(diag(H)) after "
        f"{MAX_DAMP_RETRIES} retries; a Hessian 2 X^T X is positive semi-definite: check H")


def reconstruction_error(W: np.ndarray, Q: np.ndarray, H: np.ndarray) -> float:
    """``1/2 tr((W - Q) H (W - Q)^T)``: ``||X (W - Q)^T||_F^2`` when ``H = 2 X^T X``.

    Evaluated as ``1/2 sum(H * G)`` with ``G = (W - Q)^T (W - Q)``, whose symmetry halves
    the work (BLAS ``syrk`` gives one triangle).

    Parameters
    ----------
    W, Q : ndarray, shape (out_features, in_features)
        Original and quantized weight.
    H : ndarray, shape (in_features, in_features)
        Symmetric.

    Returns
    -------
    float
        Products in ``H``'s dtype, sums in float64.
    """
    delta = np.asfortranarray(W.astype(H.dtype) - Q.astype(H.dtype))
    (syrk,) = get_blas_funcs(("syrk",), (delta,))
    G = syrk(1.0, delta, trans=1, lower=0)  # upper triangle of delta^T delta; zeros below
    # sum over all (i, j) = 2 x sum over i <= j - the diagonal
    triangle = float(np.sum(H * G, dtype=np.float64))
    diagonal = float(np.sum(np.diag(H) * np.diag(G), dtype=np.float64))
    return 0.5 * (2.0 * triangle - diagonal)


def _check_hessian(H: Any, columns: int) -> np.ndarray:
    H = as_float_array("H", H, allow_nan=False, min_ndim=2)
    if H.shape != (columns, columns):
        raise ValueError(f"H must have shape (in_features, in_features) = ({columns}, {columns}) to match W, "
                         f"got {H.shape}")
    # symmetry, spot-checked on a sub-grid of at most 256 x 256 entries (a full H - H^T
    # costs as much as a pass over a 4096^2 H in transposed order)
    idx = np.unique(np.linspace(0, columns - 1, min(columns, 256)).astype(np.intp))
    sub = H[np.ix_(idx, idx)]
    scale = float(np.max(np.abs(sub))) if sub.size else 0.0
    if scale and float(np.max(np.abs(sub - sub.T))) > 1e-4 * scale:
        raise ValueError("H must be symmetric (a Hessian 2 X^T X); H - H^T is larger than 1e-4 x max|H|")
    return H
