"""AWQ (op ``awq_quantize``): the reference's scale search with its loss evaluation compiled.

Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", MLSys 2024, sec. 3.3 (eq. 4 and 5); the reference is
:func:`refquant.algorithms.awq.awq` with ``clip=False`` (``_search_module_scale`` of
mit-han-lab/llm-awq ``auto_scale.py``), whose search this repeats in float64:

=========  ==============================================================================
``s_X``    ``mean_tokens |X|`` per input channel
``alpha``  ``k / N_GRID``, ``k = 0 .. N_GRID - 1``: ``s = max(s_X^alpha, 1e-4)``, normalized
           by ``sqrt(max(s) min(s))`` and rounded to float32
``Q``      the zero-point min-max grid of every group (``pseudo_quantize_tensor``):
           :func:`accel.numba.groupwise.minmax_grid`, rule AWQ (:func:`_scaled_fake_quantize`)
``loss``   ``mean((X W^T - X (Q(W s) / s)^T)^2)`` = ``sum((D G) * D) / (tokens out)`` with
           ``D = W - Q(W s) / s`` and ``G = X^T X`` (:func:`_output_loss`)
=========  ==============================================================================

The first strictly smaller loss wins (``alpha = 0`` is plain RTN); the op returns the
effective weight ``Q(W s) / s`` as float32. Sums run in another order than NumPy's
pairwise ``np.sum``, so two ratios whose losses tie to the last bits may be chosen
differently: the results are then equally good, which is the NoWorseThanRef contract.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from accel.numba._jit import kernel
from accel.numba.affine import _quantize_run
from accel.numba.groupwise import AWQ, effective_group_size, minmax_grid

__all__ = ["awq_quantize", "N_GRID"]

#: Ratios of the scale search (``awq``'s ``n_grid`` default, llm-awq's 20).
N_GRID = 20
#: Memory for the candidates' weight errors evaluated in one batch.
BATCH_BYTES = 64 << 20


@kernel(iterations=lambda W, S, *a: S.shape[0] * W.shape[0])
def _scaled_fake_quantize(W, S, groupsize, maxq, error, out):  # type: ignore[no-untyped-def]
    """For each candidate scale ``s = S[k]``: ``Q(W s) / s`` (``error`` False) or
    ``D = W - Q(W s) / s`` (True) into ``out[k]``; W float64 (out, in), S float64 (n, in),
    out float64 (n, out, in). ``Q`` is the AWQ grid of every row-group of ``W s``, its
    codes from the affine kernels' round-to-nearest (``accel.numba.affine._quantize_run``)."""
    rows, cols = W.shape
    for task in prange(S.shape[0] * rows):
        k = np.int64(task) // rows
        r = np.int64(task) % rows
        s = S[k]
        Ws = W[r] * s                                   # (in,) the scaled row
        codes = np.empty(cols, np.int32)
        for c0 in range(0, cols, groupsize):
            c1 = min(c0 + groupsize, cols)
            scale, zero = minmax_grid(Ws[c0:c1].min(), Ws[c0:c1].max(), np.float64(maxq), False, AWQ, False)
            z = np.int32(zero)
            _quantize_run(Ws, c0, c1, scale, z, np.float32(-z), np.float32(maxq - z), 0, codes)
            for c in range(c0, c1):
                w_hat = np.float32(codes[c] - z) * scale / s[c]
                out[k, r, c] = W[r, c] - w_hat if error else w_hat


@kernel(iterations=lambda DG, *a: DG.shape[0])
def _row_products(DG, D, out):  # type: ignore[no-untyped-def]
    """out[r] = sum_c DG[r, c] D[r, c]: row r's squared output error (float64)."""
    rows, cols = D.shape
    for pr in prange(rows):
        r = np.int64(pr)
        acc = 0.0
        for c in range(cols):
            acc += DG[r, c] * D[r, c]
        out[r] = acc


def _output_losses(W: np.ndarray, S: np.ndarray, G: np.ndarray, groupsize: int, maxq: int) -> np.ndarray:
    """``sum((D G) * D)`` for every candidate ``s = S[k]``, ``D = W - Q(W s) / s``:
    ``||X D^T||^2`` for ``G = X^T X`` (the tokens' sum done once in ``G``; ``D G`` is one
    BLAS GEMM for all candidates). Row sums are added in order (schedule-independent)."""
    D = np.empty((S.shape[0],) + W.shape)
    _scaled_fake_quantize(W, S, groupsize, maxq, True, D)
    D = D.reshape(-1, W.shape[1])                                       # (n * out, in)
    rows = np.empty(D.shape[0])
    _row_products(D @ G, D, rows)
    return rows.reshape(S.shape[0], W.shape[0]).sum(axis=1)


def _candidate_scales(s_X: np.ndarray) -> np.ndarray:
    """``s`` of every ratio ``k / N_GRID`` (float64 of float32 values, (N_GRID, in)), in
    the reference's NumPy operations."""
    S = np.empty((N_GRID, s_X.shape[0]))
    for k in range(N_GRID):
        s = np.maximum(s_X ** (k / N_GRID), 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        S[k] = s.astype(np.float32)
    return S


def awq_quantize(W: np.ndarray, X: np.ndarray, bits: int = 4, group_size: int = 128) -> np.ndarray:
    """Backend op :func:`refquant.algorithms.ops.awq_quantize` on prepared arguments
    (``refquant.prepare.algorithms``: finite float32/float64 ``W`` (out, in) and ``X``
    (tokens, in), C-contiguous; bits in {2, 3, 4, 8}; group_size -1 or >= 1) -> the
    effective weight ``Q(W s) / s``, float32 (out, in)."""
    g = effective_group_size(group_size, W.shape[1])
    maxq = 2**bits - 1
    W = W.astype(np.float64)
    X = X.astype(np.float64)
    S = _candidate_scales(np.mean(np.abs(X), axis=0, dtype=np.float64))
    G = X.T @ X
    # candidates per batch: their errors D take at most BATCH_BYTES (all 20 for small layers)
    per_batch = max(1, min(N_GRID, BATCH_BYTES // W.nbytes))
    losses = np.concatenate([_output_losses(W, S[k:k + per_batch], G, g, maxq)
                             for k in range(0, N_GRID, per_batch)]) / (X.shape[0] * W.shape[0])
    best, best_loss = 0, np.inf
    for k in range(N_GRID):  # the first strictly smaller loss; NaN never wins (float64: none on finite input)
        if losses[k] < best_loss:
            best, best_loss = k, losses[k]
    W_hat = np.empty((1,) + W.shape)
    _scaled_fake_quantize(W, S[best:best + 1], g, maxq, False, W_hat)
    return W_hat[0].astype(np.float32)
