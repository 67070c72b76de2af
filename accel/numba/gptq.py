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
(eq. 3 inside the block: :func:`_sweep`; every output row is independent, so tasks of
:data:`LANES` rows run in parallel, their block in cache and the rows in SIMD lanes);
then ``W[:, i+B:] -= E [H^-1]_{i:i+B, i+B:}`` (the lazy batch update, one float32 GEMM:
NumPy's matmul, as the reference's).

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
#: Output rows per task of the sweep kernel: its SIMD lanes (two AVX2 float32 registers).
LANES = 16
#: Relative damping ``lambda = DAMP * mean(diag(H))`` (``gptq``'s ``damp`` default, ``percdamp``).
DAMP = 0.01


@kernel(iterations=lambda W, *a: -(-W.shape[0] // a[-1]))
def _sweep(W, W1, U1, i, groupsize, per_channel, maxq, sym, scale, zero, Q, E, lanes):  # type: ignore[no-untyped-def]
    """Algorithm 1's inner loop over the block's columns ``j = i .. i + b - 1``.

    W float32 (d_row, d_col): the global weight (read only: group grids); W1 float32
    (d_row, b): the block; U1 float32 (b, b): ``[H^-1]`` of the block; scale, zero
    float32 (d_row,): each row's current grid (carried across blocks); Q float32
    (d_row, d_col) and E float32 (d_row, b): written. Rows are independent: a task takes
    ``lanes`` of them, with its block transposed (``Wt[k]`` = column k of those rows), so
    each step runs across the rows in SIMD lanes; padding lanes (past d_row) compute on
    zeros. ``lanes`` is an argument, not a constant: LLVM then vectorizes the lane loops
    (unsigned bounds: no index can wrap) instead of unrolling them into scalar code.
    """
    n_lanes = np.uint64(lanes)
    d_row, d_col = W.shape
    b = W1.shape[1]
    zero_f = np.float32(0.0)
    for task in prange((d_row + lanes - 1) // lanes):
        r0 = np.int64(task) * lanes
        n = min(lanes, d_row - r0)
        Wt = np.zeros((b, lanes), np.float32)                # this task's block, (b, lanes)
        s = np.ones(lanes, np.float32)
        z = np.zeros(lanes, np.float32)
        err = np.empty(lanes, np.float32)
        for t in range(n):
            s[t] = scale[r0 + t]
            z[t] = zero[r0 + t]
            for k in range(b):
                Wt[k, t] = W1[r0 + t, k]
        for jj in range(b):
            j = i + jj
            if not per_channel and j % groupsize == 0:  # fit the group on the global W
                for t in range(n):
                    group = W[r0 + t, j:min(j + groupsize, d_col)]
                    sv, zv = minmax_grid(np.float64(group.min()), np.float64(group.max()), np.float64(maxq), sym,
                                         GPTQ, True)
                    s[t] = sv
                    z[t] = zv
            w = Wt[jj]
            d = U1[jj, jj]
            for t in range(np.uint64(0), n_lanes):
                q = min(max(np.rint(w[t] / s[t]) + z[t], zero_f), maxq)
                q_hat = s[t] * (q - z[t])
                err[t] = (w[t] - q_hat) / d
                w[t] = q_hat                                 # column jj is done: keep Q there
            for t in range(n):
                Q[r0 + t, j] = w[t]
                E[r0 + t, jj] = err[t]
            for k in range(jj + 1, b):                       # eq. (3) inside the block
                u = U1[jj, k]
                wk = Wt[k]
                for t in range(np.uint64(0), n_lanes):
                    wk[t] -= err[t] * u
        for t in range(n):
            scale[r0 + t] = s[t]
            zero[r0 + t] = z[t]


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
        _sweep(W, W1, np.ascontiguousarray(U[i:i2, i:i2]), i, groupsize, per_channel, maxq, sym, scale, zero, Q, E,
               LANES)
        W[:, i2:] -= E @ U[i:i2, i2:]  # lazy batch update (Algorithm 1, last line)

    return Q[:, np.argsort(perm)] if act_order else Q
