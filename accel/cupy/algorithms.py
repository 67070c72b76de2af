"""rtn_quantize / gptq_quantize / awq_quantize: launch code for ``src/algorithms.cu``.

The arguments arrive prepared by ``refquant.prepare.algorithms`` (finite 2-D ``W``,
``bits`` in {2, 3, 4, 8}, ``group_size`` -1 or >= 1, ``H`` (in, in) or ``X`` (tokens, in)).

GPTQ (Frantar et al. 2023, Algorithm 1): the host makes the decisions that are about
columns, not weights: the dead columns (``H[i, i] == 0``), the act-order permutation
(decreasing ``diag(H)``, stable) and the upper Cholesky factor ``U`` of ``H^-1``, computed
by the reference's own :func:`~refquant.algorithms.gptq.inverse_hessian_cholesky` in
float32 as ``fasterquant`` does. That factorization is O(in^3) on an (in, in) matrix
(about 1 s for in = 4096 with LAPACK, against O(out * in^2) for the sweep) and its
damping retries are a sequential decision on the whole matrix; computing it with the
reference's LAPACK keeps ``U`` identical, so the device sweep differs from the reference
only in the summation order of the lazy trailing update. The sweep is one ``gptq_block``
launch per block of B = 128 columns followed by the trailing ``gemm_sub_f32``.

AWQ (Lin et al. 2024, sec. 3.3): the 20 candidate scales ``s = s_X^alpha`` (normalized,
rounded to float32) are vectors of ``in`` values made on the host from ``s_X =
mean |X|`` (the reference's :func:`~refquant.algorithms.awq.activation_scale`); per
candidate the device forms ``D = W - Q(W s) / s`` (``awq_qdq``), ``D G`` with the Gram
matrix ``G = X^T X`` (``gemm_f64``, computed once by the same kernel) and each row's
``sum (D G) * D`` (``row_dot_f64``); the host picks the first strictly smallest loss,
as ``_search_scale``, from ``n_grid * out`` numbers read back once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accel.cupy._launch import i32, i64, stride_grid
from refquant.algorithms.awq import activation_scale
from refquant.algorithms.gptq import inverse_hessian_cholesky

__all__ = ["rtn_quantize", "gptq_quantize", "awq_quantize", "BLOCK_SIZE", "TILE"]

BLOCK_SIZE = 128   # GPTQ's B (columns per lazy-update block), fasterquant's default
TILE = 64          # src/algorithms.cu TILE: tile_gemm's output tile edge
_GEMM_THREADS = 128   # src/algorithms.cu GEMM_THREADS: 16 x 8 threads, 4 x 8 outputs each
_CANDIDATE_BYTES = 1 << 30   # AWQ: candidates evaluated per launch, their D and D G within this
_DAMP = 0.01       # fasterquant's percdamp, as the op's reference
_N_GRID = 20       # AWQ's ratios alpha = k / 20


def _group(group_size: int, cols: int) -> int:
    """Columns per group: the row for -1 or a size >= the row (check_group_size's clamp)."""
    return cols if group_size == -1 else min(group_size, cols)


def _gemm(dev: Any, kernel: str, m: int, n: int, k: int, A: Any, a_strides: tuple[int, int], B: Any,
          b_strides: tuple[int, int], C: Any, ldc: int) -> None:
    """``C (-)= A @ B`` through ``tile_gemm`` (element strides, offsets already applied by views)."""
    tiles = -(-m // TILE) * -(-n // TILE)
    if tiles == 0 or k == 0:
        return
    grid = (max(1, min(tiles, dev.max_blocks)),)
    dev.launch("algorithms", kernel, grid, (_GEMM_THREADS,),
               [i64(m), i64(n), i64(k), A, i64(a_strides[0]), i64(a_strides[1]), B, i64(b_strides[0]),
                i64(b_strides[1]), C, i64(ldc)])


def rtn_quantize(dev: Any, W: Any, bits: int = 4, group_size: int = 128, sym: bool = True) -> Any:
    """Backend op: same contract as :func:`refquant.algorithms.ops.rtn_quantize` (exact:
    float32 arithmetic for a float32 ``W``, float64 for a float64 one, as the reference)."""
    rows, cols = W.shape
    double = np.dtype(W.dtype) == np.float64
    w = dev.contiguous(W, np.float64 if double else np.float32)
    gs = _group(group_size, cols)
    out = dev.empty((rows, cols), np.float32)
    g, b = stride_grid(dev, rows * -(-cols // gs))
    dev.launch("algorithms", "rtn_groups_f64" if double else "rtn_groups_f32", g, b,
               [w, i64(rows), i64(cols), i64(gs), i32(bits), i32(sym), out])
    return out


def gptq_quantize(dev: Any, W: Any, H: Any, bits: int = 4, group_size: int = 128, act_order: bool = False,
                  sym: bool = True) -> Any:
    """Backend op: same contract as :func:`refquant.algorithms.ops.gptq_quantize` (held to
    NoWorseThanRef: the trailing update sums in another order than the reference's BLAS)."""
    rows, cols = W.shape
    H32 = np.array(dev.to_numpy(H), dtype=np.float32)   # to the host for LAPACK
    dead = np.diag(H32) == 0
    H32[dead, dead] = 1
    perm = np.argsort(-np.diag(H32), kind="stable") if act_order else np.arange(cols)
    if act_order:
        H32 = H32[perm][:, perm]
    U, _ = inverse_hessian_cholesky(H32, _DAMP)
    W32 = dev.contiguous(W, np.float32)
    Wd = W32.copy()   # the weight the sweep updates: dead columns zeroed, in quantization order
    Wd[:, dev.asarray(dead)] = 0
    if act_order:
        Wd = dev.contiguous(Wd[:, dev.asarray(perm)], np.float32)
    # per-channel grids are fitted on W before the dead columns are zeroed (fasterquant)
    W_fit = dev.contiguous(W32[:, dev.asarray(perm)], np.float32) if group_size == -1 else Wd
    Ud = dev.contiguous(U, np.float32)
    gs = _group(group_size, cols)
    B = min(BLOCK_SIZE, cols)
    W1, E = dev.empty((B, rows), np.float32), dev.empty((B, rows), np.float32)
    scale, zero = dev.zeros(rows, np.float32), dev.zeros(rows, np.float32)
    Q = dev.empty((rows, cols), np.float32)
    g, b = stride_grid(dev, rows)
    for i1 in range(0, cols, B):
        i2 = min(i1 + B, cols)
        dev.launch("algorithms", "gptq_block", g, b,
                   [Wd, W_fit, Ud, i64(rows), i64(cols), i64(i1), i64(i2 - i1), i64(gs), i32(bits), i32(sym),
                    W1, E, scale, zero, Q])
        if i2 < cols:   # W[:, i2:] -= E @ U[i1:i2, i2:], E stored transposed (count, rows)
            _gemm(dev, "gemm_sub_f32", rows, cols - i2, i2 - i1, E, (1, rows), Ud.reshape(-1)[i1 * cols + i2:], (cols, 1),
                  Wd.reshape(-1)[i2:], cols)
    if act_order:
        Q = dev.contiguous(Q[:, dev.asarray(np.argsort(perm))], np.float32)
    return Q


def awq_quantize(dev: Any, W: Any, X: Any, bits: int = 4, group_size: int = 128) -> Any:
    """Backend op: same contract as :func:`refquant.algorithms.ops.awq_quantize` (held to
    NoWorseThanRef: the loss sums in another order than the reference's)."""
    rows, cols = W.shape
    Wd, Xd = dev.contiguous(W, np.float64), dev.contiguous(X, np.float64).reshape(-1, cols)
    tokens = Xd.shape[0]
    x_mean = np.asarray(dev.to_numpy(activation_scale(Xd)), dtype=np.float64)   # reduced on the device
    gs = _group(group_size, cols)
    G = dev.empty((cols, cols), np.float64)
    _gemm(dev, "gemm_f64", cols, cols, tokens, Xd, (1, cols), Xd, (cols, 1), G, cols)   # G = X^T X
    candidates = []
    for k in range(_N_GRID):   # _search_scale's s for alpha = k / n_grid, float32 values
        s = np.maximum(x_mean ** (k / _N_GRID), 1e-4)
        candidates.append((s / np.sqrt(s.max() * s.min())).astype(np.float32).astype(np.float64))
    batch = max(1, min(_N_GRID, _CANDIDATE_BYTES // (16 * rows * cols)))
    D, P = dev.empty((batch * rows, cols), np.float64), dev.empty((batch * rows, cols), np.float64)
    losses = dev.empty((_N_GRID, rows), np.float64)
    unused = dev.zeros(1, np.float32)
    for k0 in range(0, _N_GRID, batch):
        n = min(batch, _N_GRID - k0)
        g, b = stride_grid(dev, n * rows * -(-cols // gs))
        dev.launch("algorithms", "awq_qdq", g, b, [Wd, dev.contiguous(np.stack(candidates[k0:k0 + n]), np.float64),
                                                   i64(n), i64(rows), i64(cols), i64(gs), i32(bits), i32(0), i32(0),
                                                   D, unused])
        _gemm(dev, "gemm_f64", n * rows, cols, cols, D, (cols, 1), G, (cols, 1), P, cols)   # D G
        g, b = stride_grid(dev, n * rows)
        dev.launch("algorithms", "row_dot_f64", g, b, [P, D, i64(n * rows), i64(cols), losses.reshape(-1)[k0 * rows:]])
    totals = dev.to_numpy(losses).sum(axis=1)
    best, best_loss = 0, np.inf
    for k, loss in enumerate(totals):
        if loss < best_loss:   # first strictly smaller loss; NaN never wins
            best, best_loss = k, loss
    out = dev.empty((rows, cols), np.float32)
    g, b = stride_grid(dev, rows * -(-cols // gs))
    dev.launch("algorithms", "awq_qdq", g, b, [Wd, dev.contiguous(candidates[best], np.float64), i64(1), i64(rows),
                                               i64(cols), i64(gs), i32(bits), i32(0), i32(1),
                                               dev.zeros(1, np.float64), out])
    return out
