"""Error metrics and storage cost: mse, sqnr, cosine, max_abs_error, kl_divergence,
bits_per_weight, model_memory; and a causal LM's perplexity (:mod:`refquant.perplexity`).

Error metrics compare a reference ``x`` with a reconstruction ``y`` of the same shape and
are computed in float64 (never fp16). Degenerate inputs have defined answers, listed per
function, so no metric returns NaN or warns for all-zero or empty inputs. NaN or ±inf in
``x`` or ``y`` propagate as IEEE arithmetic gives them (``inf - inf`` is NaN), without
warnings; no metric turns a NaN input into a finite number.

Storage cost is derived, not typed in: a GGUF type's bits per weight is its block's byte
count times 8 over its element count, where the byte count is the sum of the fields of
the block struct in ggml's ``ggml-common.h`` (``tests/test_metrics.py`` checks the sums
against gguf-py's ``GGML_QUANT_SIZES``); bitsandbytes and GPTQ/AWQ/SpQR costs are the
formulas of their scale storage.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from refquant._validate import check_choice, check_float, check_int, normalize_name
from refquant.perplexity import PerplexityResult, perplexity

__all__ = ["mse", "sqnr", "cosine_similarity", "max_abs_error", "kl_divergence", "bits_per_weight",
           "model_memory", "known_formats", "GGUF_BLOCKS", "gguf_block_bytes", "UNITS", "perplexity",
           "PerplexityResult"]


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x), np.asarray(y)
    for name, arr in (("x", a), ("y", b)):
        if arr.dtype.kind not in "fiu" and arr.dtype.name != "bfloat16":
            raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {a.shape} and {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def mse(x: Any, y: Any) -> float:
    """Mean squared error ``mean((x - y)**2)`` in float64 (0.0 for empty arrays).

    Parameters
    ----------
    x : array_like of float, int or bfloat16, any shape
    y : array_like of float, int or bfloat16, x's shape
    """
    a, b = _pair(x, y)
    with np.errstate(invalid="ignore"):
        return float(np.mean((a - b) ** 2)) if a.size else 0.0


def max_abs_error(x: Any, y: Any) -> float:
    """``max(|x - y|)`` in float64 (0.0 for empty arrays).

    Parameters
    ----------
    x : array_like of float, int or bfloat16, any shape
    y : array_like of float, int or bfloat16, x's shape
    """
    a, b = _pair(x, y)
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(a - b))) if a.size else 0.0


def sqnr(x: Any, y: Any) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x**2 / sum (x - y)**2)`` in dB.

    ``x`` is the reference signal, ``y`` its reconstruction. A perfect reconstruction
    (zero noise, including empty or all-zero ``x == y``) gives ``inf``; noise with a
    zero signal gives ``-inf``.

    Parameters
    ----------
    x : array_like of float, int or bfloat16, any shape
    y : array_like of float, int or bfloat16, x's shape
    """
    a, b = _pair(x, y)
    with np.errstate(invalid="ignore"):
        signal, noise = float(np.sum(a * a)), float(np.sum((a - b) ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine_similarity(x: Any, y: Any, axis: int | None = None) -> float | np.ndarray:
    """Cosine similarity ``<x, y> / (|x| |y|)`` of the flattened arrays (``axis=None``) or
    along ``axis`` (one value per remaining index).

    Two zero vectors are identical (1.0); a zero vector against a non-zero one gives 0.0.
    NaN or inf in a vector gives NaN for it.

    Parameters
    ----------
    x : array_like of float, int or bfloat16, any shape
    y : array_like of float, int or bfloat16, x's shape
    axis : int or None
        An axis of x (negative counts from the end); None: the flattened arrays.
    """
    a, b = _pair(x, y)
    with np.errstate(invalid="ignore"):
        dot = np.sum(a * b, axis=axis)
        na, nb = np.sqrt(np.sum(a * a, axis=axis)), np.sqrt(np.sum(b * b, axis=axis))
        denom = na * nb
        both_zero = (na == 0) & (nb == 0)
        # denom != 0 (not > 0) so that a NaN norm gives NaN, never the 0.0 of a zero vector
        out = np.where(both_zero, 1.0, np.divide(dot, denom, out=np.zeros_like(dot), where=denom != 0))
    out = np.clip(out, -1.0, 1.0)                      # rounding can exceed 1 by an ulp (NaN stays NaN)
    return float(out) if axis is None else out


def kl_divergence(p: Any, q: Any, axis: int | None = None) -> float | np.ndarray:
    """Kullback-Leibler divergence ``KL(p || q) = sum p log(p / q)`` in nats.

    ``p`` and ``q`` are non-negative weights (histograms or probabilities), each
    normalized to sum 1 over ``axis`` (all elements when None), as ``scipy.stats.entropy``
    does. Terms with ``p == 0`` contribute 0; ``p > 0`` where ``q == 0`` gives ``inf``.

    Parameters
    ----------
    p : array_like of float
        Finite, non-negative weights with positive mass along ``axis``.
    q : array_like of float
        Same, p's shape.
    axis : int or None
        An axis of p; None: all elements.

    Raises
    ------
    ValueError
        Negative or non-finite entries, different shapes, or a distribution that sums to 0.
    """
    a, b = _pair(p, q)
    for name, arr in (("p", a), ("q", b)):
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name} must contain finite, non-negative weights")
        if (np.sum(arr, axis=axis) == 0).any():
            raise ValueError(f"{name} sums to 0 (along axis={axis}); a distribution needs positive mass")
    a = a / np.sum(a, axis=axis, keepdims=True)
    b = b / np.sum(b, axis=axis, keepdims=True)
    pos = a > 0
    ratio = np.divide(a, b, out=np.full_like(a, np.inf), where=pos & (b > 0))
    terms = np.where(pos, a * np.log(np.where(pos, ratio, 1.0)), 0.0)
    out = np.sum(terms, axis=axis)
    return float(out) if axis is None else out


# --- storage cost ----------------------------------------------------------------------

def _gguf_blocks() -> dict[str, tuple[int, int]]:
    """ggml block-quantized and float types -> (elements per block, bytes per block).

    Derived from the one ggml type table, :mod:`refquant.io.ggml_types` (whose sizes spell
    out the ggml-common.h block structs, and which a test checks against gguf-py and
    against the byte layouts declared in :mod:`refquant.formats`); integer element types
    (i8 ... i64) are not weight formats and are left out.
    """
    from refquant.io.ggml_types import GGMLType, block_size, type_size

    return {str(t): (block_size(t), type_size(t)) for t in GGMLType
            if not str(t).startswith("i") or str(t).startswith("iq")}


#: GGUF type name -> (elements per block, bytes per block), e.g. ``"q4_0": (32, 18)``.
GGUF_BLOCKS: dict[str, tuple[int, int]] = _gguf_blocks()


def gguf_block_bytes(qtype: str) -> tuple[int, int]:
    """``(elements per block, bytes per block)`` of a GGUF type (:data:`GGUF_BLOCKS`).

    Parameters
    ----------
    qtype : str
        A key of :data:`GGUF_BLOCKS` (any case).
    """
    key = check_choice("qtype", normalize_name(str(qtype)), GGUF_BLOCKS)
    return GGUF_BLOCKS[key]


# short spellings of plain element types -> their ml_dtypes / NumPy names
_PLAIN_ALIASES = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp8": "float8_e4m3fn",
                  "fp4_e2m1": "float4_e2m1fn"}


def _plain_bits() -> dict[str, int]:
    """Element bits of the plain (unscaled) float types: NumPy's float64/float32 and every
    :data:`refquant.dtypes.floatspec.FLOAT_SPECS` type, under their names and aliases."""
    from refquant.dtypes.floatspec import FLOAT_SPECS

    bits = {"float64": 64, "float32": 32} | {name: spec.bits for name, spec in FLOAT_SPECS.items()}
    return bits | {alias: bits[name] for alias, name in _PLAIN_ALIASES.items()}


_PLAIN_BITS = _plain_bits()
_INT_RE = re.compile(r"u?int(\d+)$")


def bits_per_weight(fmt: str, **params: Any) -> float:
    """Storage bits per weight of a format, including its per-block scales.

    Parameters
    ----------
    fmt : str (case-insensitive)
        * plain element types (no scales): ``fp32``/``float32``, ``fp16``, ``bf16``,
          ``float8_e4m3fn``, ``float8_e5m2``, ``float4_e2m1fn``, ``int8``, ``int4``, any
          ``int<b>``/``uint<b>``;
        * GGUF types (:data:`GGUF_BLOCKS`): ``q4_0`` (4.5), ``q4_k`` (4.5), ``q6_k``
          (6.5625), ``tq1_0`` (1.6875), ..., ``mxfp4`` (4.25), ``nvfp4`` (4.5; NVIDIA's
          two-level NVFP4 costs the same plus one fp32 per tensor);
        * OCP Microscaling formats (:data:`refquant.formats.mx.MX_FORMATS`): element bits
          plus one E8M0 byte per 32, ``mxfp8_e4m3`` / ``mxfp8_e5m2`` / ``mxint8`` (8.25),
          ``mxfp6_e3m2`` / ``mxfp6_e2m3`` (6.25);
        * ``nf4`` / ``fp4`` (bitsandbytes): params ``blocksize=64``, ``double_quant=False``,
          ``double_quant_blocksize=256``. Cost ``4 + 32 / blocksize`` (fp32 absmax), or
          with double quantization ``4 + 8 / blocksize + 32 / (blocksize * 256)``
          (8-bit absmax codes plus one fp32 absmax2 per 256 blocks; the one fp32 offset
          per tensor is not counted).
        * ``gptq`` / ``awq``: params ``bits=4``, ``group_size=128``. Cost ``bits + (16 +
          bits) / group_size`` (fp16 scale and a ``bits``-bit packed zero per group;
          ``g_idx`` not counted).
        * ``spqr``: params ``wbits=3``, ``groupsize=16``, ``qq_scale_bits=3``,
          ``qq_zero_bits=3``, ``qq_groupsize=16``, ``outlier_fraction=0.0``,
          ``round_zero=False``. SpQR's ``get_average_number_of_bits``: ``wbits +
          (qq_scale_bits + qq_zero_bits) / groupsize + 2 * (16 + 16) / (groupsize *
          qq_groupsize) + 32 * outlier_fraction``; with ``round_zero`` the zero costs
          ``wbits`` bits instead of ``qq_zero_bits``.
    **params : int, float or bool
        The format's parameters listed above, in their ranges (``blocksize >= 1``; gptq/awq
        ``bits`` 1..8, ``group_size >= 1``; spqr ``wbits`` 1..16, ``outlier_fraction`` in [0, 1],
        the others >= 1); other names raise TypeError.

    Returns
    -------
    float

    Examples
    --------
    >>> bits_per_weight("q4_0"), bits_per_weight("q6_k"), bits_per_weight("nf4", double_quant=True)
    (4.5, 6.5625, 4.126953125)
    """
    name = normalize_name(str(fmt))

    def take(defaults: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(f"bits_per_weight({fmt!r}) got unexpected parameter(s) {sorted(unknown)}; "
                            f"allowed: {sorted(defaults)}")
        return {**defaults, **params}

    # each family's own cost function; this function only finds the family and checks params
    if name in GGUF_BLOCKS:
        take({})
        from refquant.io.ggml_types import bits_per_weight as ggml_bits_per_weight

        return ggml_bits_per_weight(name)
    if name in _PLAIN_BITS:
        take({})
        return float(_PLAIN_BITS[name])
    from refquant.formats.mx import MX_FORMATS

    if name in MX_FORMATS:
        take({})
        return MX_FORMATS[name].bits_per_weight()
    if (m := _INT_RE.match(name)) is not None:
        take({})
        return float(check_int("bits of " + name, int(m.group(1)), min=1, max=64))
    if name in ("nf4", "fp4"):
        from refquant.formats.bnb import bits_per_weight_4bit

        p = take({"blocksize": 64, "double_quant": False, "double_quant_blocksize": 256})
        return bits_per_weight_4bit(check_int("blocksize", p["blocksize"], min=1), bool(p["double_quant"]),
                                    check_int("double_quant_blocksize", p["double_quant_blocksize"], min=1))
    if name in ("gptq", "awq"):
        from refquant.formats.groupwise import group_bits_per_weight

        p = take({"bits": 4, "group_size": 128})
        return group_bits_per_weight(check_int("bits", p["bits"], min=1, max=8),
                                     check_int("group_size", p["group_size"], min=1))
    if name == "spqr":
        from refquant.formats.groupwise import spqr_average_bits as average_bits

        p = take({"wbits": 3, "groupsize": 16, "qq_scale_bits": 3, "qq_zero_bits": 3, "qq_groupsize": 16,
                  "outlier_fraction": 0.0, "round_zero": False})
        return average_bits(check_int("wbits", p["wbits"], min=1, max=16), check_int("groupsize", p["groupsize"], min=1),
                            check_int("qq_scale_bits", p["qq_scale_bits"], min=1),
                            check_int("qq_zero_bits", p["qq_zero_bits"], min=1),
                            check_int("qq_groupsize", p["qq_groupsize"], min=1),
                            check_float("outlier_fraction", p["outlier_fraction"], min=0.0, max=1.0),
                            bool(p["round_zero"]))
    from refquant.formats.gguf_mixtures import mixture_hint

    hint = mixture_hint(fmt) if isinstance(fmt, str) else None
    if hint is not None:  # its bits per weight depend on the model's tensors
        raise ValueError(f"fmt={hint}")
    known = sorted(set(GGUF_BLOCKS) | set(_PLAIN_BITS) | set(MX_FORMATS) | {"int<b>", "nf4", "fp4", "gptq", "awq", "spqr"})
    raise ValueError(f"fmt={fmt!r} is not a known format; allowed: {', '.join(known)}")


def known_formats() -> tuple[str, ...]:
    """The format names :func:`bits_per_weight` accepts, one per format (``refquant formats``).

    Plain element types (ml_dtypes spellings; aliases such as ``fp16`` left out) and the
    common integer widths, then the GGUF types of :data:`GGUF_BLOCKS` in ggml type-id order
    (``f32``, ``f16``, ``q4_0``, ...), then the OCP Microscaling formats not already among
    them (``mxfp8_e4m3`` ...), then ``nf4``, ``fp4``, ``gptq``, ``awq``, ``spqr`` (whose costs
    here use their default parameters).
    """
    from refquant.formats.mx import MX_FORMATS

    plain = tuple(n for n in _PLAIN_BITS if n not in _PLAIN_ALIASES) + ("int8", "int4", "int3", "int2")
    mx = tuple(name for name in MX_FORMATS if name not in GGUF_BLOCKS)
    return plain + tuple(GGUF_BLOCKS) + mx + ("nf4", "fp4", "gptq", "awq", "spqr")


UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def model_memory(n_params: float, fmt: str, unit: str = "GB", **params: Any) -> float:
    """Weight storage of ``n_params`` weights in ``fmt``: ``n_params * bpw / 8`` bytes in ``unit``.

    ``unit`` is decimal (``"GB"`` = 1e9 bytes) or binary (``"GiB"`` = 2**30 bytes); see
    :data:`UNITS`. Metadata and alignment padding of real files are not counted.

    Parameters
    ----------
    n_params : float >= 0
        Number of weights.
    fmt : str
        A format :func:`bits_per_weight` knows.
    unit : str
        A key of :data:`UNITS`: ``"B"``, ``"KB"`` ... ``"TB"`` (powers of 1000), ``"KiB"`` ... ``"TiB"`` (of 1024).
    **params : int, float or bool
        The format's parameters (as :func:`bits_per_weight`).

    Examples
    --------
    >>> model_memory(70e9, "fp32"), model_memory(70e9, "q4_0")
    (280.0, 39.375)
    """
    n = check_float("n_params", n_params, min=0.0)
    divisor = UNITS[check_choice("unit", unit, UNITS)]
    return n * bits_per_weight(fmt, **params) / 8 / divisor
