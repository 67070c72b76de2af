"""Integer matrix multiplication: exact int8 GEMM with int32 results, the zero-point
expansion, dequantization of int32 results, LLM.int8()'s mixed-precision decomposition,
the W4A16 bitsandbytes dequant-matmul, and BitNet's ternary GEMM.

Exactness. An int8 GEMM accumulates in int32; its result is the exact integer sum as
long as that fits int32 (a wrapping int32 accumulator still ends on the exact value
then, because two's-complement addition is associative). The reference computes the
products and sums in float64: every product of 8-bit codes is below 2**16 and every
partial sum an integer below ``k * 2**16``, so for ``k < 2**37`` every float64 operation
is exact whatever order BLAS adds in, and the result is then checked to fit int32.

Zero points (LLM.int8() paper, Dettmers et al. 2022, section 3.1, eq. 5-6). With codes
``A`` (m, k), ``B`` (k, n) and zero points ``za``, ``zb`` (``x ~ (q - z) * s``)::

    (A - za)(B - zb) = A @ B - zb * rowsum(A) - za * colsum(B) + k * za * zb

so an int8 GEMM unit that knows nothing of zero points computes an asymmetric product
from one plain GEMM and rank-1 corrections (the paper writes ``(A + zp_a)(B + zp_b)``,
i.e. ``zp = -z``). ``za`` may be per tensor or per row of ``A``, ``zb`` per tensor or per
column of ``B``.

LLM.int8() (section 3.2 "Mixed-precision decomposition"): input feature columns of
``x`` holding a value with ``abs(x) >= threshold`` (6.0 in the paper and in
transformers) are multiplied in floating point, the other columns by vector-wise int8
(row-wise absmax of ``x``, per-output-channel absmax of ``w``), and the two are added.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from refquant._backend import call_op
from refquant._validate import as_float_array, as_int_array, check_float, flatten_leading
from refquant.bnb import _packed_4bit, bnb_dequantize_4bit, int8_vectorwise_quant
from refquant.prepare import into

__all__ = ["int8_matmul", "int8_matmul_zp", "dequantize_int32", "llm_int8_matmul", "int8_linear",
           "bnb_dequant_matmul_4bit", "ternary_matmul"]

_INT32 = np.iinfo(np.int32)
_CODE_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8))
_FLOAT_INPUTS = (np.float32, np.float16, ml_dtypes.bfloat16)


def _codes(name: str, a: Any) -> np.ndarray:
    arr = as_int_array(name, a)
    if arr.dtype not in _CODE_DTYPES:
        raise TypeError(f"{name} must be int8 or uint8 codes, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    return arr


def _gemm_operands(a_name: str, a: Any, b_name: str, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two 2-D code matrices whose inner dimensions agree (for ``a @ b``)."""
    a_arr, b_arr = _codes(a_name, a), _codes(b_name, b)
    if a_arr.shape[1] != b_arr.shape[0]:
        raise ValueError(f"inner dimensions differ: {a_name} has shape {a_arr.shape}, {b_name} has shape "
                         f"{b_arr.shape}")
    return a_arr, b_arr


def _code_pair(a_q: Any, b_q: Any) -> tuple[np.ndarray, np.ndarray]:
    """2-D int8/uint8 ``a_q`` (m, k) and ``b_q`` (k, n) with equal inner dimensions."""
    return _gemm_operands("a_q", a_q, "b_q", b_q)


def _exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as exact int64 for integer matrices with ``|a| * |b| * k < 2**53``."""
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def to_int32(acc: np.ndarray, what: str) -> np.ndarray:
    """An exact integer result ``acc`` as int32, or ValueError naming ``what`` when it does not fit."""
    if acc.size and (acc.min() < _INT32.min or acc.max() > _INT32.max):
        raise ValueError(f"{what} does not fit int32 (range {int(acc.min())}..{int(acc.max())}); "
                         "split the reduction dimension k")
    return acc.astype(np.int32)


def int8_matmul(a_q: Any, b_q: Any) -> np.ndarray:
    """Exact integer GEMM ``a_q @ b_q`` with int32 results.

    Parameters
    ----------
    a_q : ndarray of int8 or uint8, shape (m, k)
    b_q : ndarray of int8 or uint8, shape (k, n)
        (For a Linear layer's ``w_q`` of shape (out, in), pass ``w_q.T``.)

    Returns
    -------
    ndarray of int32, shape (m, n)

    Raises
    ------
    TypeError
        Codes that are not int8/uint8.
    ValueError
        Not 2-D, inner dimensions that differ, or a result outside int32.
    """
    a, b = _code_pair(a_q, b_q)
    return to_int32(_exact_product(a, b), "int8_matmul result")


def _zero_point(name: str, z: Any, length: int, codes: np.ndarray, axis_name: str) -> np.ndarray:
    arr = as_int_array(name, z)
    if arr.ndim == 0:
        arr = np.full(length, int(arr), dtype=np.int64)
    elif arr.shape != (length,):
        raise ValueError(f"{name} must be a scalar or have shape ({length},) (one per {axis_name}), got {arr.shape}")
    info = np.iinfo(codes.dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(f"{name} must lie in the code range [{info.min}, {info.max}] of {codes.dtype}, "
                         f"got values in [{int(arr.min())}, {int(arr.max())}]")
    return arr.astype(np.int64)


def int8_matmul_zp(a_q: Any, b_q: Any, a_zero: Any, b_zero: Any) -> np.ndarray:
    """``(a_q - a_zero) @ (b_q - b_zero)`` through the zero-point expansion, int32 results.

    Computed as one plain integer GEMM ``a_q @ b_q`` plus the correction terms
    ``- b_zero * rowsum(a_q) - a_zero * colsum(b_q) + k * a_zero * b_zero`` (module
    docstring), which equals the direct product exactly.

    Parameters
    ----------
    a_q : ndarray of int8 or uint8, shape (m, k)
    b_q : ndarray of int8 or uint8, shape (k, n)
    a_zero : int or ndarray of int, shape (m,)
        Per-tensor or per-row zero point of ``a_q``, within its code range.
    b_zero : int or ndarray of int, shape (n,)
        Per-tensor or per-column zero point of ``b_q``.

    Returns
    -------
    ndarray of int32, shape (m, n)
    """
    a, b = _code_pair(a_q, b_q)
    za = _zero_point("a_zero", a_zero, a.shape[0], a, "row of a_q")
    zb = _zero_point("b_zero", b_zero, b.shape[1], b, "column of b_q")
    k = a.shape[1]
    acc = _exact_product(a, b)                                      # (m, n), the plain int8 GEMM
    row_sums = a.sum(axis=1, dtype=np.int64)                        # (m,)
    col_sums = b.sum(axis=0, dtype=np.int64)                        # (n,)
    acc -= row_sums[:, None] * zb[None, :]
    acc -= za[:, None] * col_sums[None, :]
    acc += k * za[:, None] * zb[None, :]
    return to_int32(acc, "int8_matmul_zp result")


def _scale(name: str, s: Any, length: int, axis_name: str) -> np.ndarray:
    arr = as_float_array(name, s, dtypes=(np.float32, np.float64), allow_nan=False)
    if arr.ndim == 0:
        return np.full(length, arr, dtype=np.float64)
    if arr.shape != (length,):
        raise ValueError(f"{name} must be a scalar or have shape ({length},) (one per {axis_name}), got {arr.shape}")
    return arr.astype(np.float64)


def _acc_scales(acc: Any, a_scale: Any, b_scale: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D int32 ``acc`` (m, n) and its scales as float64 vectors (m,) and (n,)."""
    acc_arr = as_int_array("acc", acc)
    if acc_arr.dtype != np.int32 or acc_arr.ndim != 2:
        raise TypeError(f"acc must be a 2-D int32 array, got {acc_arr.dtype} of shape {acc_arr.shape}")
    return (acc_arr, _scale("a_scale", a_scale, acc_arr.shape[0], "row"),
            _scale("b_scale", b_scale, acc_arr.shape[1], "column"))


def dequantize_int32(acc: Any, a_scale: Any, b_scale: Any, *, out: Any = None) -> np.ndarray:
    """``acc * a_scale[:, None] * b_scale[None, :]``: the float result of an integer GEMM.

    Per-tensor scales are scalars; vector-wise ones give one scale per row of ``A`` and
    one per column of ``B`` (LLM.int8() eq. 3 with ``s = absmax / 127``; bitsandbytes'
    ``int8_mm_dequant`` is this with ``row_stats / 127`` and ``col_stats / 127``). The
    product is formed in float64 and rounded once to float32.

    Parameters
    ----------
    acc : ndarray of int32, shape (m, n)
    a_scale : float or ndarray of float32/float64, shape (m,)
    b_scale : float or ndarray of float32/float64, shape (n,)
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape (m, n)
    """
    acc_arr, sa, sb = _acc_scales(acc, a_scale, b_scale)
    with np.errstate(over="ignore"):  # beyond float32's range the result is +-inf
        result = (acc_arr.astype(np.float64) * sa[:, None] * sb[None, :]).astype(np.float32)
    return into(out, result, (acc, a_scale, b_scale))


def _llm_int8_args(x: Any, w: Any, threshold: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Finite float16/bfloat16/float32 ``x`` (..., in) and ``w`` (out, in); threshold >= 0."""
    xa = as_float_array("x", x, dtypes=_FLOAT_INPUTS, allow_nan=False, min_ndim=1)
    wa = as_float_array("w", w, dtypes=_FLOAT_INPUTS, allow_nan=False)
    if wa.ndim != 2:
        raise ValueError(f"w must be 2-D (out_features, in_features), got shape {wa.shape}")
    if xa.shape[-1] != wa.shape[1]:
        raise ValueError(f"x has {xa.shape[-1]} input features (shape {xa.shape}) but w has {wa.shape[1]} (shape {wa.shape})")
    return xa, wa, check_float("threshold", threshold, min=0.0)


def llm_int8_matmul(x: Any, w: Any, threshold: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """LLM.int8(): ``x @ w.T`` with outlier feature columns in float and the rest in int8.

    1. Outlier columns: input features ``j`` where any ``abs(x[:, j]) >= threshold``.
    2. ``x`` without them is quantized row-wise and ``w`` per output row, both with the
       absmax/127 rule (:func:`refquant.bnb.int8_vectorwise_quant`, bit-exact with
       bitsandbytes); their exact int32 product is dequantized with
       ``row_stat * col_stat / 127**2`` (:func:`dequantize_int32`).
    3. The outlier columns are multiplied in floating point, ``x[:, cols] @ w[:, cols].T``
       with the weights as given (the paper keeps these weight columns in fp16;
       bitsandbytes' CPU path with int8-only weights uses their int8 dequantization).
    4. The sum is rounded once to float32.

    Parameters
    ----------
    x : ndarray of float16, bfloat16 or float32, shape (..., in_features)
        Activations; leading dimensions are flattened into rows.
    w : ndarray of float16, bfloat16 or float32, shape (out_features, in_features)
    threshold : float
        >= 0. 0 turns the decomposition off: plain vector-wise int8.

    Returns
    -------
    out : ndarray of float32, shape (..., out_features)
    outlier_cols : ndarray of int64, shape (n_outliers,)
        The input features computed in floating point, ascending.

    Raises
    ------
    TypeError, ValueError
        Wrong dtypes, non-finite values, mismatched shapes, negative threshold.
    """
    xa, wa, threshold = _llm_int8_args(x, w, threshold)
    x2 = flatten_leading(xa)                                        # (rows, in)
    xq, x_stats, cols = int8_vectorwise_quant(x2, threshold)
    wq, w_stats, _ = int8_vectorwise_quant(wa, 0.0)
    acc = int8_matmul(xq, wq.T)                                     # (rows, out)
    out = acc.astype(np.float64) * (x_stats.astype(np.float64)[:, None] * w_stats.astype(np.float64)[None, :]) / 127.0**2
    if cols.size:
        out += x2[:, cols].astype(np.float64) @ wa[:, cols].astype(np.float64).T
    with np.errstate(over="ignore"):  # beyond float32's range the result is +-inf
        return out.astype(np.float32).reshape(*xa.shape[:-1], wa.shape[0]), cols


def int8_linear(x: Any, w: Any, threshold: float = 6.0, *, bias: Any = None, backend: Any = None) -> np.ndarray:
    """An int8 linear layer in one call: ``x @ w.T (+ bias)`` by LLM.int8() (:func:`llm_int8_matmul`).

    The pieces, for a caller who wants them (threshold 0, no outliers)::

        xq, x_stats, _ = refquant.bnb.int8_vectorwise_quant(x, 0.0)   # rows of x
        wq, w_stats, _ = refquant.bnb.int8_vectorwise_quant(w, 0.0)   # rows of w (output channels)
        acc = refquant.int8_matmul(xq, wq.T)                           # exact int32
        y = refquant.dequantize_int32(acc, x_stats / 127, w_stats / 127)

    With ``threshold > 0`` the input columns holding ``abs(x) >= threshold`` are left out of
    the int8 product and multiplied in floating point (``llm_int8_matmul`` returns them).

    Parameters
    ----------
    x : ndarray of float16, bfloat16 or float32, shape (..., in_features)
    w : ndarray of float16, bfloat16 or float32, shape (out_features, in_features)
    threshold : float
        Outlier threshold, >= 0 (6.0 as in the paper and transformers); 0: plain
        vector-wise int8.
    bias : ndarray of float32, shape (out_features,), optional
        Added to the float32 result.
    backend : str or Backend, optional
        Run op ``llm_int8_matmul`` of this backend (``"numba"``, ``"cupy"``, ...) through
        the dispatcher; None or ``"reference"``: the reference.

    Returns
    -------
    ndarray of float32, shape (..., out_features)
    """
    out, _ = call_op(backend, "llm_int8_matmul", llm_int8_matmul, x, w, threshold)
    if bias is None:
        return out
    b = as_float_array("bias", bias, dtypes=(np.float32,), allow_nan=False)
    if b.shape != (out.shape[-1],):
        raise ValueError(f"bias must have shape ({out.shape[-1]},) (one per output feature), got {b.shape}")
    return out + b


def _w4a16_args(x: Any, packed: Any, absmax: Any, quant_type: Any, blocksize: Any, shape: Any) -> tuple:
    """``(x, packed, absmax, quant_type, blocksize, shape)`` of :func:`bnb_dequant_matmul_4bit`
    checked: a 4-bit weight of 2-D ``shape`` (out, in), finite ``x`` (..., in)."""
    packed, absmax, quant_type, blocksize, shape = _packed_4bit(packed, absmax, quant_type, blocksize, shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (out_features, in_features), got {tuple(shape)}")
    xa = as_float_array("x", x, dtypes=_FLOAT_INPUTS, allow_nan=False, min_ndim=1)
    if xa.shape[-1] != shape[1]:
        raise ValueError(f"x has {xa.shape[-1]} input features (shape {xa.shape}) but the weight has {shape[1]}")
    return xa, packed, absmax, quant_type, blocksize, shape


def bnb_dequant_matmul_4bit(x: Any, packed: Any, absmax: Any, quant_type: str, blocksize: int,
                            shape: Any) -> np.ndarray:
    """W4A16 linear: ``x @ W.T`` with ``W`` the NF4/FP4 weight of ``shape`` (out, in).

    The reference is the emulated composition: dequantize ``W``
    (:func:`refquant.bnb.bnb_dequantize_4bit`), then multiply in float64 and round once
    to float32 (bitsandbytes ``gemv_4bit`` / ``gemm_4bit`` default kernels dequantize and
    call ``torch.nn.functional.linear``).

    Parameters
    ----------
    x : ndarray of float16, bfloat16 or float32, shape (..., in)
    packed : ndarray of uint8, ceil(out * in / 2) bytes
        NF4/FP4 codes, two per byte (any shape; read in C order).
    absmax : ndarray of float32, ceil(out * in / blocksize) values
    quant_type : {"nf4", "fp4"}
    blocksize : {32, 64, 128, 256, 512, 1024, 2048, 4096}
    shape : tuple (out, in)

    Returns
    -------
    ndarray of float32, shape (..., out)
    """
    xa, packed, absmax, quant_type, blocksize, shape = _w4a16_args(x, packed, absmax, quant_type, blocksize, shape)
    w = bnb_dequantize_4bit(packed, absmax, quant_type, blocksize, shape)
    out = flatten_leading(xa).astype(np.float64) @ w.astype(np.float64).T
    with np.errstate(over="ignore"):  # beyond float32's range the result is +-inf
        return out.astype(np.float32).reshape(*xa.shape[:-1], w.shape[0])


def ternary_matmul(a_q: Any, t: Any) -> np.ndarray:
    """Exact ``a_q @ t`` for ternary ``t``: adds and subtracts only (BitNet b1.58's GEMM).

    Ma et al., "The Era of 1-bit LLMs" (2024), sec. 2: with weights in {-1, 0, +1} "the
    matrix multiplication ... involves only integer addition". Entry ``(i, j)`` is the sum
    of the inputs ``a_q[i, k]`` whose weight ``t[k, j]`` is +1 minus the sum of those whose
    weight is -1; zero weights drop their input. Here the two selections are written as
    products with 0/1 matrices (exact in float64, see the module notes); a backend adds and
    subtracts.

    Parameters
    ----------
    a_q : ndarray of int8, shape (m, k)
        Activation codes (BitNet's per-token absmax int8).
    t : ndarray of int8, shape (k, n)
        Ternary weight codes (for a layer's ``W_q`` of shape (out, in), pass ``W_q.T``).

    Returns
    -------
    ndarray of int32, shape (m, n)

    Raises
    ------
    TypeError
        Codes that are not int8.
    ValueError
        Not 2-D, inner dimensions that differ, a weight outside {-1, 0, 1}, or a result
        outside int32.
    """
    a, w = _ternary_operands(a_q, t)
    plus = _exact_product(a, (w == 1).astype(np.int8))
    minus = _exact_product(a, (w == -1).astype(np.int8))
    return to_int32(plus - minus, "ternary_matmul result")


def _ternary_operands(a_q: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(a_q, t)`` checked for :func:`ternary_matmul` (shared with backends)."""
    a, w = _gemm_operands("a_q", a_q, "t", t)
    if a.dtype != np.int8 or w.dtype != np.int8:
        raise TypeError(f"a_q and t must be int8 codes, got {a.dtype} and {w.dtype}")
    if w.size and (w.min() < -1 or w.max() > 1):
        raise ValueError(f"t must hold ternary codes in {{-1, 0, 1}}, got values in [{w.min()}, {w.max()}]")
    return a, w
