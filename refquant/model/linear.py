"""Linear layers whose weight (and input activations) may be quantized.

Each class computes ``y = x Wᵀ + b`` for ``x`` of shape (tokens, in_features) and returns float32
(tokens, out_features); only how W and x are represented differs. :mod:`refquant.ptq` builds
them from a float :class:`Linear`; :class:`refquant.model.Encoder` accepts any of them.

=====================  ==========================================================================
class                  what is quantized
=====================  ==========================================================================
``Linear``             nothing: float32 weight and activations
``CastLinear``         weight and activations rounded to fp16 / bf16, float32 accumulation
``IntLinear``          integer weight codes (symmetric, per output channel) and integer activation
                       codes; activation scales per token / per batch at run time (*dynamic*) or
                       fixed from calibration (*static*); exact integer accumulation (W8A8)
``WeightOnlyLinear``   any weight-only format given as its dequantized weight and its storage
                       size (group-wise RTN int4, NF4 ...), activations in fp16 / bf16 (W4A16)
``LLMInt8Linear``      LLM.int8(): vector-wise int8 weight and activations, outlier input
                       features (|x| ≥ threshold) multiplied in fp16 (mixed-precision decomposition)
``BitLinear``          BitNet b1.58: ternary absmean weight, per-token absmax int8 activations,
                       add/subtract-only accumulation (``ternary_matmul``), output rescale
=====================  ==========================================================================

Every layer exposes the same read-only facts, so a report can compare them:

- ``weight``: the float32 weight the layer actually multiplies by (dequantized), (out, in);
- ``weight_bytes``: bytes needed to store the weight with its scales / zero points;
- ``bits_per_weight``: ``8 · weight_bytes / weight.size``;
- ``scheme``: a short name (``"fp32"``, ``"w8a8-dynamic"``, ...).

Inputs of any shape (..., in_features) are accepted; quantized layers see them as
(tokens, in_features), so "per token" means per row of that view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Linear", "CastLinear", "IntLinear", "WeightOnlyLinear", "LLMInt8Linear", "BitLinear", "ACT_DTYPES"]

#: Activation float formats of weight-only layers (refquant.encode_float names).
ACT_DTYPES = ("float32", "float16", "bfloat16")


def _working_dtype(a: np.ndarray, keep_float64: bool) -> type:
    # A layer that rounds its operands to a narrower float rounds float64 once, from the
    # exact value (refquant.encode_float), instead of through float32 first.
    return np.float64 if keep_float64 and a.dtype == np.float64 else np.float32


def _as_weight(weight: Any, *, keep_float64: bool = False) -> np.ndarray:
    w = np.asarray(weight)
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"weight must be a 2-D float array (out_features, in_features), got shape {w.shape} "
                         f"dtype {w.dtype}")
    return np.array(w, dtype=_working_dtype(w, keep_float64), order="C")  # a private copy: made read-only below


def _as_bias(bias: Any, out_features: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.array(bias, dtype=np.float32)
    if b.shape != (out_features,):
        raise ValueError(f"bias must have shape ({out_features},) to match the weight, got {b.shape}")
    return b


def _check_replacements(replacements: Any, linears: dict, owner: str) -> None:
    """ValueError unless every name in ``replacements`` is one of the model's ``linears``."""
    unknown = sorted(set(replacements) - set(linears))
    if unknown:
        raise ValueError(f"replacements names {unknown[:3]!r} are not linear layers of this model; "
                         f"allowed: names from {owner}.linears(), e.g. {next(iter(linears))!r}")


def _check_input(x: Any, in_features: int, *, keep_float64: bool = False) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != in_features or x.dtype.kind != "f":
        raise ValueError(f"x must be a float array (..., {in_features}), got shape {x.shape} dtype {x.dtype}")
    return x.astype(_working_dtype(x, keep_float64), copy=False)


class Linear:
    """A float32 dense layer, ``y = x Wᵀ + b`` (``torch.nn.Linear``'s layout).

    Parameters
    ----------
    weight : ndarray of float, shape (out_features, in_features)
    bias : ndarray of float, shape (out_features,), optional
    """

    scheme = "fp32"

    def __init__(self, weight: Any, bias: Any = None) -> None:
        self.weight = _as_weight(weight)
        self.bias = _as_bias(bias, self.weight.shape[0])
        self.weight.flags.writeable = False

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def weight_bytes(self) -> int:
        return self.weight.size * 4

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.weight_bytes / self.weight.size

    def _affine(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        y = x @ w.T
        if self.bias is not None:
            y = y + self.bias
        return y.astype(np.float32, copy=False)

    def __call__(self, x: Any) -> np.ndarray:
        """Apply the layer to ``x`` of shape (..., in_features); returns float32 (..., out_features)."""
        return self._affine(_check_input(x, self.in_features), self.weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scheme={self.scheme!r}, out={self.out_features}, in={self.in_features})"


def _round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 or float64 ``x`` rounded once to nearest-even in ``dtype`` (refquant's float codecs), as float32."""
    if dtype == "float32":
        return x.astype(np.float32, copy=False)
    from refquant.dtypes.floatspec import decode_float, encode_float

    return decode_float(encode_float(x, dtype), dtype)


class CastLinear(Linear):
    """Weight and input activations rounded to a 16-bit float, products summed in float32.

    Parameters
    ----------
    weight, bias
        As :class:`Linear` (the bias stays float32).
    dtype : {"float16", "bfloat16"}
        Round-to-nearest-even (``refquant.encode_float``); fp16 overflow becomes inf, as a
        real fp16 cast does. float64 weights and inputs are rounded once, from their exact
        values, not through float32.
    """

    def __init__(self, weight: Any, bias: Any = None, *, dtype: str = "float16") -> None:
        from refquant._validate import check_name

        self.dtype = check_name("dtype", dtype, ("float16", "bfloat16"))
        self.scheme = {"float16": "fp16", "bfloat16": "bf16"}[self.dtype]
        super().__init__(_round_to(_as_weight(weight, keep_float64=True), self.dtype), bias)

    @property
    def weight_bytes(self) -> int:
        return self.weight.size * 2

    def __call__(self, x: Any) -> np.ndarray:
        return self._affine(_round_to(_check_input(x, self.in_features, keep_float64=True), self.dtype), self.weight)


class IntLinear(Linear):
    """Integer weights and integer activations: W8A8 (or any WbAb up to 8 bits), dynamic or static.

    The weight is quantized once, symmetric per output channel (``choose_qparams(W, bits,
    symmetric=True, axis=0)``, codes in [−(2^(b−1)−1), 2^(b−1)−1]). At run time the input is
    quantized with ``act_params`` when given (**static**: one scale and zero point fixed by
    calibration, see :func:`refquant.ptq.quantize_static`) or with parameters computed from the
    batch itself (**dynamic**: per token or per tensor). Then, with :mod:`refquant.matmul`::

        acc = Σ_k (q_x[t, k] − z_x[t]) · q_w[o, k]      int32 (int8_matmul_zp, exact)
        y   = float32(acc · s_x[t] · s_w[o]) + b         (dequantize_int32: float64, rounded once)

    Parameters
    ----------
    weight, bias
        As :class:`Linear`.
    weight_bits, act_bits : int
        Code widths, 2..8 (8 and 8 for W8A8).
    act_params : QuantParams, optional
        Fixed per-tensor activation parameters (static): scale grid (1, 1), codes of at most
        8 bits (int8 symmetric, or uint8 with a zero point).
    act_granularity : {"per_token", "per_tensor"}
        Dynamic mode only: one activation scale per token (row), or one per call.
    act_symmetric : bool
        Dynamic mode only: symmetric signed codes (default) or asymmetric unsigned codes with a
        zero point.
    """

    def __init__(self, weight: Any, bias: Any = None, *, weight_bits: int = 8, act_bits: int = 8,
                 act_params: Any = None, act_granularity: str = "per_token", act_symmetric: bool = True) -> None:
        from refquant._validate import check_choice, check_int
        from refquant.mapping import QuantParams, choose_qparams, dequantize, quantize

        w = _as_weight(weight)
        self.weight_bits = check_int("weight_bits", weight_bits, min=2, max=8)
        self.act_bits = check_int("act_bits", act_bits, min=2, max=8)
        self.act_granularity = check_choice("act_granularity", act_granularity, ("per_token", "per_tensor"))
        self.act_symmetric = bool(act_symmetric)
        if act_params is not None:
            if not isinstance(act_params, QuantParams):
                raise TypeError(f"act_params must be a refquant.mapping.QuantParams, got {type(act_params).__name__}")
            if np.shape(act_params.scale) != (1, 1) or act_params.bits > 8:
                raise ValueError(f"act_params has scale shape {np.shape(act_params.scale)} and {act_params.bits} bits; "
                                 "static activations of an integer GEMM need one per-tensor scale, shape (1, 1), "
                                 "and at most 8 bits")
            self.act_bits = act_params.bits
        self.act_params = act_params
        self.weight_params = choose_qparams(w, self.weight_bits, symmetric=True, axis=0)
        self.weight_codes = quantize(w, self.weight_params)  # (out, in) int8
        self.weight_codes.flags.writeable = False
        super().__init__(dequantize(self.weight_codes, self.weight_params), bias)
        mode = "dynamic" if act_params is None else "static"
        self.scheme = f"w{self.weight_bits}a{self.act_bits}-{mode}"

    @property
    def weight_bytes(self) -> int:
        # packed codes plus one float32 scale per output channel
        return (self.weight.size * self.weight_bits + 7) // 8 + self.out_features * 4

    def activation_params(self, x: np.ndarray):
        """The QuantParams used for input ``x`` (tokens, in): the fixed ones, or the batch's own."""
        from refquant.granularity import PerTensor, PerToken
        from refquant.mapping import choose_qparams

        if self.act_params is not None:
            return self.act_params
        gran = PerToken() if self.act_granularity == "per_token" else PerTensor()
        return choose_qparams(x, self.act_bits, symmetric=self.act_symmetric, signed=self.act_symmetric,
                              granularity=gran)

    def __call__(self, x: Any) -> np.ndarray:
        from refquant.mapping import quantize
        from refquant.matmul import dequantize_int32, int8_matmul_zp

        x = _check_input(x, self.in_features)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (tokens, in)
        params = self.activation_params(x2)
        codes = quantize(x2, params)
        per_token = params.scale.size > 1
        zero = 0 if params.zero_point is None else (
            params.zero_point.reshape(-1) if per_token else int(params.zero_point.item()))
        acc = int8_matmul_zp(codes, self.weight_codes.T, zero, 0)  # (tokens, out) int32
        x_scale = params.scale.reshape(-1) if per_token else params.scale.item()
        y = dequantize_int32(acc, x_scale, self.weight_params.scale.reshape(-1))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


class WeightOnlyLinear(Linear):
    """A weight stored in some compressed format, used dequantized; activations in a 16-bit float.

    This is how W4A16 kernels (GPTQ/AWQ int4, bitsandbytes NF4) compute: the weight is
    dequantized, the input stays in fp16/bf16, products are summed in float32.

    Parameters
    ----------
    dequantized_weight : ndarray of float, shape (out, in)
        The weight after the format's round trip.
    bias : ndarray, optional
    weight_bytes : int
        Storage of the weight in its format, scales and zero points included.
    scheme : str
        A name for reports (``"int4-g128"``, ``"nf4"`` ...).
    act_dtype : {"float32", "float16", "bfloat16"}
    """

    def __init__(self, dequantized_weight: Any, bias: Any = None, *, weight_bytes: int, scheme: str,
                 act_dtype: str = "float16") -> None:
        from refquant._validate import check_int, check_name

        super().__init__(dequantized_weight, bias)
        self._weight_bytes = check_int("weight_bytes", weight_bytes, min=0)
        self.scheme = str(scheme)
        self.act_dtype = check_name("act_dtype", act_dtype, ACT_DTYPES)

    @property
    def weight_bytes(self) -> int:
        return self._weight_bytes

    def __call__(self, x: Any) -> np.ndarray:
        return self._affine(_round_to(_check_input(x, self.in_features, keep_float64=True), self.act_dtype),
                            self.weight)


class LLMInt8Linear(Linear):
    """LLM.int8() (Dettmers et al. 2022, sec. 3.2): :func:`refquant.matmul.llm_int8_matmul` per call.

    The weight is stored as int8 codes with one absmax per output row (bitsandbytes' ``CB`` and
    ``SCB``); input features holding any ``|x| ≥ threshold`` in the call's tokens are multiplied
    in floating point with the fp16-rounded weight, the rest in exact int8 arithmetic.

    Parameters
    ----------
    weight, bias
        As :class:`Linear`.
    threshold : float
        Outlier threshold (6.0, the paper's and ``transformers``' default; 0 disables the
        decomposition).
    """

    scheme = "llm.int8"

    def __init__(self, weight: Any, bias: Any = None, *, threshold: float = 6.0) -> None:
        from refquant._validate import check_float
        from refquant.bnb import int8_vectorwise_dequant, int8_vectorwise_quant

        self.threshold = check_float("threshold", threshold, min=0.0)
        w16 = _round_to(_as_weight(weight), "float16")
        codes, row_stats, _ = int8_vectorwise_quant(w16, 0.0)
        self._w16 = w16
        super().__init__(int8_vectorwise_dequant(codes, row_stats), bias)

    @property
    def weight_bytes(self) -> int:
        # int8 codes plus one float32 absmax per output row (bitsandbytes' SCB)
        return self.weight.size + self.out_features * 4

    def __call__(self, x: Any) -> np.ndarray:
        from refquant.matmul import llm_int8_matmul

        x = _round_to(_check_input(x, self.in_features), "float16")
        y, _ = llm_int8_matmul(x, self._w16, self.threshold)
        return y if self.bias is None else (y + self.bias).astype(np.float32)


class BitLinear(Linear):
    """BitNet b1.58's BitLinear at inference, applied to a float weight (post-training).

    Ma et al. 2024 and Microsoft's "Training Tips, Code and FAQ" for b1.58
    (:mod:`refquant.algorithms.bitnet`): the weight becomes ternary codes ``W_q`` with one
    per-tensor scale ``s_w = 1 / mean|W|`` (absmean); each input token ``x`` becomes int8 codes
    ``x_q`` with ``s_x = 127 / max|x|`` (absmax); then::

        acc = ternary_matmul(x_q, W_qᵀ)      int32, additions and subtractions only
        y   = acc / (s_x · s_w) + b          float64, rounded once to float32 (the output rescale)

    which equals the reference code's ``F.linear(x_deq, W_deq)`` up to float rounding. The
    RMSNorm that BitNet places inside BitLinear belongs to models trained with it; applied
    post-training to a float model it is left out.

    Parameters
    ----------
    weight, bias
        As :class:`Linear`.

    Notes
    -----
    ``weight_bytes`` counts the ternary codes packed five per byte (base 3, 1.6 bits; ggml's
    TQ1_0 spends 1.6875) plus the float32 scale.
    """

    scheme = "bitnet-b1.58"

    def __init__(self, weight: Any, bias: Any = None) -> None:
        from refquant.algorithms.bitnet import bitnet_b158

        q = bitnet_b158(_as_weight(weight))
        self.weight_codes = q.codes
        self.weight_codes.flags.writeable = False
        self.weight_scale = np.float32(q.scale)
        super().__init__(q.dequantized, bias)

    @property
    def weight_bytes(self) -> int:
        return (self.weight.size + 4) // 5 + 4

    def __call__(self, x: Any) -> np.ndarray:
        from refquant.algorithms.bitnet import activation_quant_b158
        from refquant.matmul import ternary_matmul

        x = _check_input(x, self.in_features)
        lead = x.shape[:-1]
        a = activation_quant_b158(x.reshape(-1, self.in_features))
        acc = ternary_matmul(a.codes, self.weight_codes.T)
        y = acc / (a.scale.astype(np.float64) * np.float64(self.weight_scale))
        if self.bias is not None:
            y = y + self.bias
        return y.astype(np.float32).reshape(*lead, self.out_features)
