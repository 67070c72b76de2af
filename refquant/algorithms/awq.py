"""AWQ: activation-aware weight quantization of a linear layer.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han, "AWQ: Activation-aware
Weight Quantization for LLM Compression and Acceleration", MLSys 2024. The code it
mirrors is mit-han-lab/llm-awq: ``auto_scale._search_module_scale``,
``auto_clip.auto_clip_layer`` and ``quantizer.pseudo_quantize_tensor``.

Symbols (paper -> here):

=========  ==============================================================================
``W``      weight (out_features, in_features); ``X`` calibration inputs (tokens, in)
``s``      per-input-channel scale (eq. 4): ``Q(W diag(s)) diag(s)^{-1}`` replaces ``W``,
           and the previous operator divides its output by ``s`` (free at inference)
``s_X``    ``mean_tokens |X|`` per input channel (``get_act_scale``)
``alpha``  the exponent ``s = s_X^alpha`` found by grid search (eq. 5, sec. 3.3)
=========  ==============================================================================

1. Scale search: for ``alpha = k / n_grid``, ``k = 0 .. n_grid - 1`` (0 .. 0.95 for 20),
   ``s = max(s_X^alpha, 1e-4)``, normalized as ``s / sqrt(max(s) min(s))``; the loss is
   the mean squared layer output error ``mean((X W^T - X (Q(W s) / s)^T)^2)``; the first
   strictly smaller loss wins (``alpha = 0`` is plain RTN). It is evaluated through the
   Gram matrix ``X^T X`` (an identity, cheaper when there are more tokens than inputs).
2. Clip search on the scaled layer (``W s`` with inputs ``X / s``, as ``run_awq`` does
   after ``apply_scale``): for every output row and group, the maximum ``|w|`` shrinks
   by ``1 - i / n_grid``, ``i = 0 .. max_shrink * n_grid - 1`` (1.00, 0.95, ... 0.55),
   minimizing the squared error of the group's partial dot products averaged over
   (at most about) ``n_sample_tokens`` tokens (stride ``n_tokens // n_sample_tokens``).
3. The clipped ``W s`` is quantized by ``pseudo_quantize_tensor`` (asymmetric min-max
   per group; ``zero_point=False`` is its symmetric branch).

All search arithmetic is float64, so the float16 overflow of real implementations
(weights near 65504 after scaling, 0/0 on all-zero channels) cannot
happen here. Deliberate differences from llm-awq: the clip search starts from an
infinite best error (llm-awq's 1e9 ignores improvements on groups whose error exceeds
1e9) and uses a stride of at least 1 when there are fewer tokens than
``n_sample_tokens`` (llm-awq's stride would be 0). ``s`` is rounded to float32 before
use, so it can be stored and applied exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_int, check_float
from refquant.algorithms import _quantizer
from refquant.algorithms._quantizer import AWQ_RULE
from refquant.algorithms._result import QuantizedWeight

__all__ = ["awq", "AWQResult", "activation_scale", "clip_stride", "group_grams", "search_scale", "search_clip",
           "quantize_scaled"]


@dataclass(frozen=True, kw_only=True, eq=False)
class AWQResult(QuantizedWeight):
    """:class:`QuantizedWeight` of :func:`awq`. ``codes``, ``scales`` and ``zeros``
    quantize the *scaled* weight ``W diag(s)`` (what an AWQ checkpoint stores);
    ``dequantized`` is the effective weight ``Q(W diag(s)) diag(s)^{-1}``.

    Attributes
    ----------
    input_scale : ndarray of float32, shape (in_features,)
        ``s``: divide the layer's input (the previous operator's output) by it.
    ratio : float
        The chosen exponent ``alpha``.
    clip_max : ndarray of float32, shape (out_features, n_groups), or None
        The clip threshold of each row-group of ``W s`` (None when ``clip=False``).
    loss : float
        The scale search's best mean squared output error (before clipping).
    """

    input_scale: np.ndarray
    ratio: float
    clip_max: np.ndarray | None
    loss: float

    def dequantize(self) -> np.ndarray:
        """The effective weight rebuilt from the codes: ``Q(W s) / s`` (float32)."""
        stored = _quantizer.dequantize_groups(self.codes.astype(np.float64), self.scales.astype(np.float64),
                                              self.zeros.astype(np.float64), self.g_idx)
        return (stored / self.input_scale.astype(np.float64)).astype(np.float32)


def activation_scale(X: np.ndarray) -> np.ndarray:
    """``s_X``: mean absolute activation of each input channel (float64, shape (in,)).

    Parameters
    ----------
    X : ndarray of float, shape (n_tokens, in_features)
        Input activations (any real values; rows are tokens).
    """
    return np.mean(np.abs(X), axis=0, dtype=np.float64)


#: Largest ``n_grid``: each grid point is a full quantize-and-evaluate pass over the layer.
MAX_GRID = 1000


# --- the steps of awq() from statistics that are sums over tokens (shardable) ------------------

def clip_stride(n_tokens: int, n_sample_tokens: int = 512) -> int:
    """The clip search's token stride, ``max(1, n_tokens // n_sample_tokens)`` (``auto_clip_layer``).

    Parameters
    ----------
    n_tokens : int >= 1
        Tokens of the calibration set.
    n_sample_tokens : int >= 1
        Tokens the clip search samples (llm-awq's 512).
    """
    return max(1, check_int("n_tokens", n_tokens, min=1) // check_int("n_sample_tokens", n_sample_tokens, min=1))


def group_grams(X: Any, group_size: int, stride: int = 1, offset: int = 0) -> list[np.ndarray]:
    """``Σ x_gᵀ x_g`` over the clip search's sampled tokens, one float64 matrix per column group.

    Parameters
    ----------
    X : ndarray of float, shape (tokens, in) or (..., in)
        Layer inputs (for the clip search: already divided by the scale ``s``).
    group_size : int
        Columns per group (the last group may be shorter).
    stride, offset : int
        Token ``t`` of ``X`` is sampled when ``(offset + t) % stride == 0``: a shard starting
        at global token ``offset`` samples the same tokens as the whole set would.

    Returns
    -------
    list of ndarray of float64, shapes (gs_g, gs_g)
        Summing the lists of two shards elementwise gives the list of their union.
    """
    X = as_float_array("X", X, allow_nan=False, min_ndim=2)
    X = X.reshape(-1, X.shape[-1]).astype(np.float64)
    stride = check_int("stride", stride, min=1)
    offset = check_int("offset", offset, min=0)
    gs = check_int("group_size", group_size, min=1)
    sample = X[(-offset) % stride::stride]
    return [sample[:, c:c + gs].T @ sample[:, c:c + gs] for c in range(0, X.shape[1], gs)]


def search_scale(W: Any, x_mean: Any, G: Any, n_tokens: int, bits: int = 4, group_size: int = 128, *,
                 zero_point: bool = True, n_grid: int = 20) -> tuple[np.ndarray, float, float]:
    """AWQ's scale search (step 1 of :func:`awq`) from the statistics of the inputs.

    Parameters
    ----------
    W : ndarray of float, shape (out_features, in_features)
        The weights sharing one input, stacked along the output axis (AutoAWQ's
        ``torch.cat([m.weight for m in layers])`` for q/k/v or gate/up): the loss is then the
        mean squared error over all of their outputs.
    x_mean : ndarray of float, shape (in_features,)
        ``mean_tokens |X|`` (:func:`activation_scale`).
    G : ndarray of float, shape (in_features, in_features)
        ``XᵀX`` over the same tokens.
    n_tokens : int
        Tokens summed into ``G``.
    bits : {2, 3, 4, 8}
    group_size : int, -1 or >= 1
        Columns per group; -1 (or a size >= in_features): one group per row.
    zero_point : bool
        Asymmetric groups with a zero-point (AWQ's default); False: symmetric.
    n_grid : int in 1..1000
        Ratios tried, ``alpha = i / n_grid`` for ``i = 0 .. n_grid - 1``.

    Returns
    -------
    s : ndarray of float32, shape (in_features,)
    ratio : float
        The chosen exponent ``alpha``.
    loss : float
        Its mean squared output error.
    """
    W = _quantizer.check_weight(W).astype(np.float64)
    columns = W.shape[1]
    x_mean = as_float_array("x_mean", x_mean, allow_nan=False).astype(np.float64)
    G = as_float_array("G", G, allow_nan=False).astype(np.float64)
    if x_mean.shape != (columns,) or G.shape != (columns, columns):
        raise ValueError(f"x_mean and G must have shapes ({columns},) and ({columns}, {columns}) to match W, "
                         f"got {x_mean.shape} and {G.shape}")
    groupsize = _quantizer.check_group_size(group_size, columns)
    s, ratio, loss = _search_scale(W, x_mean, G, check_int("n_tokens", n_tokens, min=1), _quantizer.check_bits(bits),
                                   groupsize, not zero_point, check_int("n_grid", n_grid, min=1, max=MAX_GRID))
    return s.astype(np.float32), ratio, loss


def search_clip(W: Any, grams: list[Any], bits: int = 4, group_size: int = 128, *, zero_point: bool = True,
                n_grid: int = 20, max_shrink: float = 0.5) -> np.ndarray:
    """AWQ's clip search (step 2 of :func:`awq`) on a scaled weight, from :func:`group_grams`.

    Parameters
    ----------
    W : ndarray of float, shape (out_features, in_features)
        The weight as it will be quantized (``W diag(s)``, any row scaling folded in).
    grams : list of ndarray
        :func:`group_grams` of the inputs that multiply ``W`` (``X / s``).
    bits : {2, 3, 4, 8}
    group_size : int, -1 or >= 1
        Columns per group; -1 (or a size >= in_features): one group per row.
    zero_point : bool
        Asymmetric groups with a zero-point (AWQ's default); False: symmetric.
    n_grid : int in 1..1000
        Shrink step: thresholds ``(1 - i / n_grid) * absmax`` for ``i < max_shrink * n_grid``.
    max_shrink : float in [0, 1]
        Largest fraction of the group's absmax removed by clipping.

    Returns
    -------
    ndarray of float64, shape (out_features, n_groups)
        The clip threshold of each row-group.
    """
    W = _quantizer.check_weight(W).astype(np.float64)
    groupsize = _quantizer.check_group_size(group_size, W.shape[1])
    widths = [min(groupsize, W.shape[1] - c) for c in range(0, W.shape[1], groupsize)]
    grams = [as_float_array("grams", g, allow_nan=False).astype(np.float64) for g in grams]
    if [g.shape for g in grams] != [(w, w) for w in widths]:
        raise ValueError(f"grams must be {len(widths)} matrices of shapes {[(w, w) for w in widths][:2]}... to "
                         f"match W {W.shape} and group_size={group_size}, got {[g.shape for g in grams][:2]}...")
    return _search_clip(W, grams, _quantizer.check_bits(bits), groupsize, not zero_point,
                        check_int("n_grid", n_grid, min=1, max=MAX_GRID),
                        check_float("max_shrink", max_shrink, min=0.0, max=1.0))


def quantize_scaled(W: Any, clip_max: Any = None, bits: int = 4, group_size: int = 128, *, zero_point: bool = True
                    ) -> QuantizedWeight:
    """Step 3 of :func:`awq`: clamp each row-group of the scaled weight to ``clip_max`` and quantize.

    Returns a :class:`QuantizedWeight` of ``W`` itself (``dequantized`` is ``Q(clip(W))``,
    without dividing by any scale), which :func:`refquant.layouts.awq.encode` stores.

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features), finite, non-empty
    clip_max : ndarray of float, shape (out_features, n_groups), or None
        Clip threshold of each row-group (:func:`search_clip`); None clips nothing.
    bits : {2, 3, 4, 8}
    group_size : int, -1 or >= 1
        Columns per group; -1 (or a size >= in_features): one group per row.
    zero_point : bool
        Asymmetric groups with a zero-point (AWQ's default); False: symmetric.
    """
    W = _quantizer.check_weight(W).astype(np.float64)
    bits = _quantizer.check_bits(bits)
    groupsize = _quantizer.check_group_size(group_size, W.shape[1])
    if clip_max is not None:
        W = _clip_groups(W, np.asarray(clip_max, dtype=np.float64), groupsize)
    sym = not zero_point
    codes, scales, zeros = _quantizer.quantize_groups(W, bits, groupsize, sym, AWQ_RULE)
    g_idx = _quantizer.natural_g_idx(W.shape[1], groupsize)
    return QuantizedWeight(method="awq", dequantized=_quantizer.dequantize_groups(codes, scales, zeros, g_idx)
                           .astype(np.float32), codes=codes.astype(np.uint8), scales=scales.astype(np.float32),
                           zeros=zeros.astype(np.float32), g_idx=g_idx, bits=bits, group_size=int(group_size), sym=sym,
                           bits_per_weight=_quantizer.group_bits_per_weight(bits, groupsize, W.shape[1]))


def awq(W: Any, X: Any, bits: int = 4, group_size: int = 128, *, zero_point: bool = True, n_grid: int = 20,
        clip: bool = True, max_shrink: float = 0.5, n_sample_tokens: int = 512) -> AWQResult:
    """Quantize ``W`` after the activation-aware scale search and the clip search (AWQ).

    Parameters
    ----------
    W : ndarray of float32 or float64, shape (out_features, in_features)
        Weight of a linear layer (finite). Not modified.
    X : ndarray of float32 or float64, shape (tokens, in_features) or (..., in_features)
        Calibration inputs of the layer (finite, at least one token).
    bits : {2, 3, 4, 8}
        Code width.
    group_size : int
        Input columns per group (128 in the paper); -1 for per-channel.
    zero_point : bool
        Asymmetric min-max groups (AWQ's default) or its symmetric branch.
    n_grid : int
        Grid size of both searches (20), 1 .. MAX_GRID (1000).
    clip : bool
        Run the clip search (llm-awq skips it for query/key projections).
    max_shrink : float
        Largest relative shrink of the clip search (0.5: ``int(0.5 * 20) = 10`` steps).
    n_sample_tokens : int
        Tokens the clip search subsamples to (512).

    Returns
    -------
    AWQResult

    Raises
    ------
    ValueError, TypeError
        Bad shapes, non-finite inputs or unsupported parameters.
    """
    W_in = _quantizer.check_weight(W)
    rows, columns = W_in.shape
    X = _check_activations(X, columns)
    bits = _quantizer.check_bits(bits)
    groupsize = _quantizer.check_group_size(group_size, columns)
    n_grid = check_int("n_grid", n_grid, min=1, max=MAX_GRID)
    max_shrink = check_float("max_shrink", max_shrink, min=0.0, max=1.0)
    n_sample_tokens = check_int("n_sample_tokens", n_sample_tokens, min=1)
    sym = not zero_point

    W64 = W_in.astype(np.float64)
    X64 = X.astype(np.float64)

    s, ratio, loss = _search_scale(W64, activation_scale(X64), X64.T @ X64, X64.shape[0], bits, groupsize, sym, n_grid)
    W_scaled = W64 * s  # the checkpoint's weight; the previous op divides by s
    clip_max = None
    if clip:
        grams = group_grams(X64 / s, groupsize, clip_stride(X64.shape[0], n_sample_tokens))
        clip_max = _search_clip(W_scaled, grams, bits, groupsize, sym, n_grid, max_shrink)
        W_scaled = _clip_groups(W_scaled, clip_max, groupsize)

    codes, scales, zeros = _quantizer.quantize_groups(W_scaled, bits, groupsize, sym, AWQ_RULE)
    g_idx = _quantizer.natural_g_idx(columns, groupsize)
    effective = _quantizer.dequantize_groups(codes, scales, zeros, g_idx) / s
    return AWQResult(
        method="awq",
        dequantized=effective.astype(np.float32),
        codes=codes.astype(np.uint8),
        scales=scales.astype(np.float32),
        zeros=zeros.astype(np.float32),
        g_idx=g_idx,
        bits=bits,
        group_size=int(group_size),
        sym=sym,
        bits_per_weight=_quantizer.group_bits_per_weight(bits, groupsize, columns),
        input_scale=s.astype(np.float32),
        ratio=ratio,
        clip_max=None if clip_max is None else clip_max.astype(np.float32),
        loss=loss,
    )


def _pseudo_quantize(W: np.ndarray, bits: int, groupsize: int, sym: bool) -> np.ndarray:
    """``pseudo_quantize_tensor``: quantize-dequantize every row-group (float64)."""
    codes, scales, zeros = _quantizer.quantize_groups(W, bits, groupsize, sym, AWQ_RULE)
    return _quantizer.dequantize_groups(codes, scales, zeros, _quantizer.natural_g_idx(W.shape[1], groupsize))


def _search_scale(W: np.ndarray, x_mean: np.ndarray, G: np.ndarray, n_tokens: int, bits: int, groupsize: int,
                  sym: bool, n_grid: int) -> tuple[np.ndarray, float, float]:
    """``_search_module_scale`` for one linear layer: the best ``s`` (float32 values)."""
    # mean((X W^T - X Wq^T)^2) = sum((D G) * D) / (tokens * out) with D = W - Wq, G = X^T X:
    # the same loss in out*in^2 instead of tokens*in*out flops per ratio, and G is a sum over tokens
    denominator = n_tokens * W.shape[0]
    best = (np.ones(W.shape[1]), 0.0, np.inf)
    for k in range(n_grid):
        ratio = k / n_grid
        s = np.maximum(x_mean**ratio, 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        s = s.astype(np.float32).astype(np.float64)
        D = W - _pseudo_quantize(W * s, bits, groupsize, sym) / s
        loss = float(np.sum((D @ G) * D) / denominator)
        if loss < best[2]:  # first strictly smaller loss; NaN never wins
            best = (s, ratio, loss)
    if not np.isfinite(best[2]):  # pragma: no cover - float64 on finite input stays finite
        raise ValueError("AWQ scale search found no finite loss")
    return best


def _search_clip(W: np.ndarray, grams: list[np.ndarray], bits: int, groupsize: int, sym: bool, n_grid: int,
                 max_shrink: float) -> np.ndarray:
    """``auto_clip_layer``: the best clip threshold of every row-group, (rows, n_groups).

    The error of a row-group is the mean over the sampled tokens of its squared partial dot
    product error, ``mean_t (x_t,g · d_g)^2 = d_g G_g d_gᵀ / n`` with ``G_g`` the group's
    Gram matrix of the sampled tokens; ``n`` is common to all candidates and drops out.
    """
    rows, columns = W.shape
    n_groups = -(-columns // groupsize)
    best_max = np.empty((rows, n_groups))
    for g in range(n_groups):
        w = W[:, g * groupsize:min((g + 1) * groupsize, columns)]  # (rows, gs)
        org_max = np.max(np.abs(w), axis=1)
        best_err = np.full(rows, np.inf)
        best_max[:, g] = org_max
        for i_s in range(int(max_shrink * n_grid)):
            max_val = org_max * (1 - i_s / n_grid)
            w_clipped = np.clip(w, -max_val[:, None], max_val[:, None])
            d = _pseudo_quantize(w_clipped, bits, w.shape[1], sym) - w
            err = np.sum((d @ grams[g]) * d, axis=1)  # partial dot products' squared error, (rows,)
            better = err < best_err
            best_err[better] = err[better]
            best_max[better, g] = max_val[better]
    return best_max


def _clip_groups(W: np.ndarray, clip_max: np.ndarray, groupsize: int) -> np.ndarray:
    """Clamp each row-group to ``[-clip_max, clip_max]``."""
    limit = np.repeat(clip_max, groupsize, axis=1)[:, :W.shape[1]]
    return np.clip(W, -limit, limit)


def _check_activations(X: Any, columns: int) -> np.ndarray:
    X = as_float_array("X", X, allow_nan=False, min_ndim=2)
    if X.shape[-1] != columns:
        raise ValueError(f"X must have in_features = {columns} columns (the last axis) to match W, got shape {X.shape}")
    X = X.reshape(-1, columns)
    if X.shape[0] == 0:
        raise ValueError("X must contain at least one token")
    return X
