"""GPTQ (op ``gptq_quantize``): the column sweep as a Numba kernel, the lazy batch
updates as BLAS matrix products.

Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", ICLR 2023, Algorithm 1; the reference is
:func:`refquant.algorithms.gptq.gptq` (``fasterquant`` of IST-DASLab/gptq), whose float32
operations are repeated here in the same order.

Symbols (Algorithm 1 -> here):

=========  ==============================================================================
``W``      weight (d_row = out_features, d_col = in_features), float32 working copy
``H^-1``   ``U``: upper Cholesky factor of ``(H + lambda I)^{-1}``, ``U^T U = H^{-1}``
           (sec. 3.3, "Cholesky reformulation"), from the reference's
           :func:`~refquant.algorithms.gptq.inverse_hessian_cholesky` (LAPACK)
``B``      block of :data:`B` = 128 columns ``[i, i + B)``
``Q``      quantized (dequantized) weight
``E``      the block's scaled errors ``(W[:, j] - Q[:, j]) / [H^-1]_jj`` (d_row, B)
=========  ==============================================================================

Algorithm 1, per block: for each column ``j`` of the block, ``Q[:, j] = quant(W[:, j])``,
``E[:, j - i] = (W[:, j] - Q[:, j]) / [H^-1]_jj`` and ``W[:, j:i+B] -= E[:, j-i] [H^-1]_{j, j:i+B}``
(eq. 3 inside the block: :func:`_sweep`, every output row independent, so rows run in
parallel and each row's block stays in cache); then ``W[:, i+B:] -= E [H^-1]_{i:i+B, i+B:}``
(the lazy batch update, one float32 GEMM: NumPy's matmul, as the reference's).

As in the reference: per-channel grids (``group_size=-1``) are fitted on ``W`` before dead
input columns (``H_jj == 0``) get ``H_jj = 1`` and ``W[:, j] = 0``; a group's grid is fitted
when the sweep reaches its first column, on the global ``W`` (the lazy updates of earlier
blocks, not the current block's in-block updates); act-order sorts columns by decreasing
``diag(H)`` (stable).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from accel.numba._jit import kernel
from accel.numba.groupwise import GPTQ, effective_group_size, group_grid, minmax_grid
from refquant.algorithms.gptq import inverse_hessian_cholesky

__all__ = ["gptq_quantize", "B", "DAMP"]

#: Columns per lazy-update block (``B`` of Algorithm 1; ``gptq``'s ``block_size`` default).
B = 128
#: Relative damping ``lambda = DAMP * mean(diag(H))`` (``gptq``'s ``damp`` default, ``percdamp``).
DAMP = 0.01


@kernel(iterations=lambda W, *a: W.shape[0])
def _sweep(W, W1, U1, i, groupsize, per_channel, maxq, sym, scale, zero, Q, E):  # type: ignore[no-untyped-def]
    """Algorithm 1's inner loop over the block's columns ``j = i .. i + b - 1``, row by row.

    W float32 (d_row, d_col): the global weight (read only: group grids); W1 float32
    (d_row, b): the block, updated in place (eq. 3); U1 float32 (b, b): ``[H^-1]`` of the
    block; scale, zero float32 (d_row,): each row's current grid (carried across blocks);
    Q float32 (d_row, d_col) and E float32 (d_row, b): written.
    """
    d_row, d_col = W.shape
    b = W1.shape[1]
    zero_f = np.float32(0.0)
    for pr in prange(d_row):
        r = np.int64(pr)
        w = W1[r]
        s = scale[r]
        z = zero[r]
        for jj in range(b):
            j = i + jj
            if not per_channel and j % groupsize == 0:  # fit the group on the global W
                group = W[r, j:min(j + groupsize, d_col)]
                sv, zv = minmax_grid(np.float64(group.min()), np.float64(group.max()), np.float64(maxq), sym,
                                     GPTQ, True)
                s = np.float32(sv)
                z = np.float32(zv)
            q = min(max(np.rint(w[jj] / s) + z, zero_f), maxq)
            q_hat = s * (q - z)
            Q[r, j] = q_hat
            err = (w[jj] - q_hat) / U1[jj, jj]
            E[r, jj] = err
            u = U1[jj]
            # eq. (3) inside the block; unsigned bounds tell LLVM no index wraps (it vectorizes)
            for k in range(np.uint64(jj), np.uint64(b)):
                w[k] -= err * u[k]
        scale[r] = s
        zero[r] = z


def gptq_quantize(W: np.ndarray, H: np.ndarray, bits: int = 4, group_size: int = 128, act_order: bool = False,
                  sym: bool = True) -> np.ndarray:
    """Backend op :func:`refquant.algorithms.ops.gptq_quantize` on prepared arguments
    (``refquant.prepare.algorithms``: finite float32/float64 ``W`` (out, in) and symmetric
    ``H`` (in, in), C-contiguous; bits in {2, 3, 4, 8}; group_size -1 or >= 1) -> ``Q``,
    float32 (out, in). Runs in float32, as the reference."""
    d_row, d_col = W.shape
    groupsize = effective_group_size(group_size, d_col)
    per_channel = group_size == -1
    maxq = np.float32(2**bits - 1)
    W = W.astype(np.float32)  # a copy: the working weight
    H = H.astype(np.float32)

    scale = np.zeros(d_row, np.float32)
    zero = np.zeros(d_row, np.float32)
    if per_channel:  # fitted before the dead columns are zeroed (fasterquant)
        s, z = group_grid(W, d_col, bits, sym, GPTQ)
        scale[:], zero[:] = s[:, 0], z[:, 0]

    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = None
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]

    U, _ = inverse_hessian_cholesky(H, DAMP)  # [H^-1] of Algorithm 1
    Q = np.empty_like(W)
    for i in range(0, d_col, B):
        i2 = min(i + B, d_col)
        W1 = W[:, i:i2].copy()
        E = np.empty_like(W1)
        _sweep(W, W1, np.ascontiguousarray(U[i:i2, i:i2]), i, groupsize, per_channel, maxq, sym, scale, zero, Q, E)
        W[:, i2:] -= E @ U[i:i2, i2:]  # lazy batch update (Algorithm 1, last line)

    return Q[:, np.argsort(perm)] if act_order else Q
