"""Post-training quantization of a model's linear layers: dynamic, static and weight-only.

A *model* here is anything with two methods (``refquant.model.Encoder`` has them)::

    model.linears() -> dict[str, Linear]             # the replaceable dense layers, by name
    model.with_linears(dict[str, layer]) -> model    # a new model with some layers replaced

Nothing is modified in place: every function returns a new model that shares the untouched
tensors with the old one.

==========================  ===============================================================
function                    what it does
==========================  ===============================================================
``quantize_dynamic``        W8A8 dynamic: weights quantized ahead of time (int8, per output
                            channel); activation scales computed per token (or per batch)
                            at run time (torch.ao ``quantize_dynamic``; LLM.int8 without
                            outliers; SmoothQuant's per-token dynamic activations)
``calibrate``               run calibration data through the float model with an observer
                            on each layer's input (``refquant.calibration``)
``quantize_static``         W8A8 static: activation scales fixed from calibration
                            (torch.ao ``prepare`` / ``convert``; TensorRT INT8 calibration)
``quantize_weight_only``    W4A16: group-wise round-to-nearest int4 (GPTQ/AWQ storage without
                            their error correction), any bits and group size
``quantize_nf4``            W4A16 with bitsandbytes NF4 (``refquant.bnb``)
``cast``                    fp16 / bf16 weights and activations
==========================  ===============================================================

References
----------
PyTorch ``torch/ao/quantization/quantize.py`` (``quantize_dynamic``, ``prepare``, ``convert``).
H. Wu et al., "Integer Quantization for Deep Learning Inference: Principles and Empirical
Evaluation", NVIDIA 2020 (calibration methods for static activation ranges).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from refquant._validate import check_choice, check_int, check_name, normalize_name
from refquant.model.linear import CastLinear, IntLinear, Linear, WeightOnlyLinear

__all__ = ["quantize_dynamic", "calibrate", "quantize_static", "quantize_weight_only", "quantize_nf4", "cast",
           "ObservedLinear", "replace_linears"]

Layers = Iterable[str] | Callable[[str], bool] | None


def _select(model: Any, layers: Layers) -> dict[str, Linear]:
    """The float linear layers of ``model`` chosen by ``layers`` (None: all; a name or names; or a predicate)."""
    if not (hasattr(model, "linears") and hasattr(model, "with_linears")):
        raise TypeError(f"model must have linears() and with_linears(...) (like refquant.model.Encoder), "
                        f"got {type(model).__name__}")
    all_layers = model.linears()
    if layers is None:
        chosen = all_layers
    elif callable(layers):
        chosen = {k: v for k, v in all_layers.items() if layers(k)}
    else:
        names = [layers] if isinstance(layers, str) else list(layers)  # one name, not its characters
        unknown = [n for n in names if n not in all_layers]
        if unknown:
            raise ValueError(f"layers {unknown[:3]!r} are not linear layers of the model; allowed: names from "
                             f"model.linears(), e.g. {next(iter(all_layers), '')!r}")
        chosen = {n: all_layers[n] for n in names}
    not_float = [n for n, lin in chosen.items() if type(lin) is not Linear]
    if not_float:
        raise ValueError(f"layers {not_float[:3]!r} are already replaced ({type(chosen[not_float[0]]).__name__}); "
                         "quantize the float model")
    return chosen


def replace_linears(model: Any, make: Callable[[str, Linear], Any], layers: Layers = None) -> Any:
    """A new model whose chosen float layers are replaced by ``make(name, layer)``.

    Parameters
    ----------
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).
    make : callable
        ``make(name, layer)`` returns the replacement of float layer ``layer``.
    layers : None, str, collection of str, or callable
        Which linears (by name) are replaced; None: all (see the module docstring).
    """
    chosen = _select(model, layers)
    return model.with_linears({name: make(name, lin) for name, lin in chosen.items()})


def quantize_dynamic(model: Any, *, weight_bits: int = 8, act_bits: int = 8, act_granularity: str = "per_token",
                     act_symmetric: bool = True, layers: Layers = None) -> Any:
    """Dynamic quantization: int weights now, activation scales from each batch at run time.

    Parameters
    ----------
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).
    weight_bits, act_bits : int in 2..8
        8 and 8 for W8A8.
    act_granularity : {"per_token", "per_tensor"}
        One activation scale per token (row), or one per call (torch.ao's dynamic quantization).
    act_symmetric : bool
        Symmetric signed activation codes, or asymmetric unsigned ones with a zero point.
    layers : None, iterable of str, or callable
        Which layers (default all).

    Returns
    -------
    A new model whose chosen layers are :class:`refquant.model.linear.IntLinear` (dynamic).
    """
    check_choice("act_granularity", act_granularity, ("per_token", "per_tensor"))
    return replace_linears(model, lambda _, lin: IntLinear(lin.weight, lin.bias, weight_bits=weight_bits,
                                                           act_bits=act_bits, act_granularity=act_granularity,
                                                           act_symmetric=act_symmetric), layers)


class ObservedLinear:
    """A float layer that shows every input it receives to an observer (calibration).

    Parameters
    ----------
    linear : Linear
    observer : refquant.calibration.Observer (or anything with ``observe(x)``)
    """

    def __init__(self, linear: Linear, observer: Any) -> None:
        self.linear = linear
        self.observer = observer
        self.weight, self.bias = linear.weight, linear.bias

    def __call__(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        self.observer.observe(arr.reshape(-1, arr.shape[-1]))
        return self.linear(arr)


def calibrate(model: Any, run: Callable[[Any], Any], observer: str | Callable[[], Any] = "minmax", *,
              layers: Layers = None, **observer_kwargs: Any) -> dict[str, Any]:
    """Observe the input of each chosen layer while ``run(model)`` feeds calibration data.

    Parameters
    ----------
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).
    run : callable
        Called once with a copy of ``model`` whose layers observe their inputs; it should run
        the calibration data, e.g. ``lambda m: m.encode(calibration_sentences)``.
    observer : str or callable
        A name from ``refquant.calibration.OBSERVERS`` (with ``observer_kwargs``), or a
        factory returning a fresh observer for each layer.
    layers : None, iterable of str, or callable
        Which linears observe: None all, a name or names, or a predicate on the name.
    **observer_kwargs : int, float, str or bool
        Constructor arguments of the observer named by ``observer`` (TypeError with a factory).

    Returns
    -------
    dict of str to Observer
        One observer per chosen layer, fed with that layer's inputs as (tokens, in) batches.

    Raises
    ------
    ValueError
        Some layer saw no data (``run`` did not run the model, or a layer is never used).
    """
    from refquant.calibration import make_observer

    if isinstance(observer, str):
        factory: Callable[[], Any] = lambda: make_observer(observer, **observer_kwargs)  # noqa: E731
    elif callable(observer):
        if observer_kwargs:
            raise TypeError("observer_kwargs are only for an observer given by name")
        factory = observer
    else:
        raise TypeError(f"observer must be a name from refquant.calibration.OBSERVERS or a factory, got {observer!r}")
    observers = {name: factory() for name in _select(model, layers)}
    wrapped = replace_linears(model, lambda name, lin: ObservedLinear(lin, observers[name]), layers)
    run(wrapped)
    silent = [n for n, obs in observers.items() if getattr(obs, "batches", 1) == 0]
    if silent:
        raise ValueError(f"layers {silent[:3]!r} saw no calibration data; run(model) must run the model on "
                         "calibration inputs")
    return observers


def quantize_static(model: Any, observers: dict[str, Any], *, weight_bits: int = 8, act_bits: int = 8,
                    act_symmetric: bool = False) -> Any:
    """Static quantization: activation parameters fixed from calibration observers.

    Parameters
    ----------
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).
    observers : dict of str to Observer or QuantParams
        From :func:`calibrate` (``observer.qparams(act_bits, act_symmetric)`` is used), or
        ready activation parameters per layer. Only these layers are quantized.
    weight_bits, act_bits : int in 2..8
    act_symmetric : bool
        False (default, torch.ao's activation default): unsigned codes with a zero point, which
        suits one-sided activations (GELU outputs). True: signed symmetric codes.

    Returns
    -------
    A new model whose layers in ``observers`` are static :class:`IntLinear`.

    Raises
    ------
    ValueError
        ``observers`` is empty (nothing calibrated: returning the float model silently
        would hide a calibration step that never ran).
    """
    from refquant.mapping import QuantParams

    act_bits = check_int("act_bits", act_bits, min=2, max=16)
    if not isinstance(observers, dict) or not observers:
        raise ValueError(f"observers must be a non-empty dict of layer name -> observer or QuantParams "
                         f"(from calibrate()), got {observers!r}: static quantization needs calibrated layers")
    params = {}
    for name, obs in observers.items():
        if isinstance(obs, QuantParams):
            params[name] = obs
        elif hasattr(obs, "qparams"):
            params[name] = obs.qparams(act_bits, symmetric=act_symmetric, signed=act_symmetric)
        else:
            raise TypeError(f"observers[{name!r}] must be an observer or QuantParams, got {type(obs).__name__}")
    return replace_linears(model, lambda name, lin: IntLinear(lin.weight, lin.bias, weight_bits=weight_bits,
                                                              act_bits=act_bits, act_params=params[name]),
                           list(params))


def quantize_weight_only(model: Any, *, bits: int = 4, group_size: int | None = 128, symmetric: bool = False,
                         act_dtype: str = "float16", scale_dtype: str = "float16", layers: Layers = None) -> Any:
    """Weight-only round-to-nearest (W4A16 by default), group-wise along the input features.

    Each group of ``group_size`` consecutive weights of a row gets a scale (and with
    ``symmetric=False`` an integer zero point) from :func:`refquant.choose_qparams` (range
    extended to contain 0, half-to-even rounding); the scale is rounded to ``scale_dtype``
    as GPTQ/AWQ checkpoints store it (AutoGPTQ quantizes with the fp16 scale).

    Parameters
    ----------
    bits : int
    group_size : int or None
        None: one scale per output row.
    symmetric : bool
        False: unsigned codes with a zero point (GPTQ/AWQ default). True: signed, no zero point.
    act_dtype : {"float32", "float16", "bfloat16"}
    scale_dtype : {"float32", "float16", "bfloat16"}
    layers : None, iterable of str, or callable
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).

    Returns
    -------
    A new model with :class:`WeightOnlyLinear` layers. Storage counted: packed codes,
    one ``scale_dtype`` scale per group, one ``bits``-bit zero point per group when asymmetric.
    """
    from refquant.dtypes.floatspec import decode_float, encode_float
    from refquant.granularity import PerChannel, PerGroup
    from refquant.mapping import dequantize, qparams_from_range, quantize

    bits = check_int("bits", bits, min=2, max=8)
    scale_dtype = check_name("scale_dtype", scale_dtype, ("float32", "float16", "bfloat16"))
    scale_bits = 32 if scale_dtype == "float32" else 16

    def make(name: str, lin: Linear) -> WeightOnlyLinear:
        w = lin.weight
        gran = PerChannel(0) if group_size is None else PerGroup(check_int("group_size", group_size, min=1), -1)
        lo = gran.reduce(w, np.minimum, initial=0.0)
        hi = gran.reduce(w, np.maximum, initial=0.0)
        params = qparams_from_range(lo, hi, bits, symmetric, signed=symmetric, granularity=gran)
        if scale_dtype != "float32":
            rounded = decode_float(encode_float(params.scale, scale_dtype), scale_dtype)
            tiny = np.float32(2.0 ** -24 if scale_dtype == "float16" else 2.0 ** -133)
            params = type(params)(**{**params.__dict__, "scale": np.maximum(rounded, tiny).astype(np.float32)})
        deq = dequantize(quantize(w, params), params)
        groups = params.scale.size
        nbytes = (w.size * bits + 7) // 8 + (groups * (scale_bits + (0 if symmetric else bits)) + 7) // 8
        tag = "" if group_size is None else f"-g{group_size}"
        return WeightOnlyLinear(deq, lin.bias, weight_bytes=nbytes, scheme=f"int{bits}{tag}", act_dtype=act_dtype)

    return replace_linears(model, make, layers)


def quantize_nf4(model: Any, *, blocksize: int = 64, double_quant: bool = False, quant_type: str = "nf4",
                 act_dtype: str = "float16", layers: Layers = None) -> Any:
    """Weight-only bitsandbytes 4-bit (NF4 or FP4, optionally with double-quantized absmax).

    Uses :func:`refquant.bnb.quantize_4bit` / :func:`refquant.bnb.dequantize_4bit` (bit-exact
    with bitsandbytes); storage is the container's ``bits_per_weight`` times the weight count.

    Parameters
    ----------
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).
    blocksize : {32, 64, 128, 256, 512, 1024, 2048, 4096}
    double_quant : bool
        Double-quantize the absmax (QLoRA).
    quant_type : {"nf4", "fp4"}
    act_dtype : {"float16", "bfloat16", "float32"}
        The activation dtype the layer computes in.
    layers : None, str, collection of str, or callable
        Which linears (by name) are replaced; None: all (see the module docstring).
    """
    from refquant import bnb

    def make(name: str, lin: Linear) -> WeightOnlyLinear:
        q = bnb.quantize_4bit(lin.weight, quant_type, blocksize=blocksize, double_quant=double_quant)
        deq = bnb.dequantize_4bit(q).reshape(lin.weight.shape)
        nbytes = int(round(q.bits_per_weight * lin.weight.size / 8))
        tag = f"{quant_type}-b{blocksize}" + ("-dq" if double_quant else "")
        return WeightOnlyLinear(deq, lin.bias, weight_bytes=nbytes, scheme=tag, act_dtype=act_dtype)

    return replace_linears(model, make, layers)


def quantize_microscaling(model: Any, fmt: str = "mxfp4", *, act_dtype: str = "float16",
                          layers: Layers = None) -> Any:
    """Weight-only microscaling: an OCP MX format or NVIDIA's NVFP4, blocks along the input axis.

    ``fmt`` is a key of :data:`refquant.formats.mx.MX_FORMATS` (``"mxfp4"``, ``"mxfp8_e4m3"``
    ...; :func:`refquant.formats.mx.mx_quantize`, one E8M0 scale per 32 inputs) or ``"nvfp4"``
    (:func:`refquant.formats.nvfp4.nvfp4_quantize`, one E4M3 scale per 16 inputs and one float32
    scale per layer). Storage counts the element bits, the scale bytes and, for NVFP4, the
    per-layer float32. ``in_features`` must be a multiple of the block size.
    """
    from refquant.formats import mx, nvfp4

    fmt = normalize_name(str(fmt))
    if fmt != "nvfp4":
        spec = mx.get_mx_format(fmt)

    def make(name: str, lin: Linear) -> WeightOnlyLinear:
        if fmt == "nvfp4":
            packed, scales, g = nvfp4.nvfp4_quantize(lin.weight)
            deq = nvfp4.nvfp4_dequantize(packed, scales, g)
            nbytes = packed.nbytes + scales.nbytes + 4
        else:
            scales, codes = mx.mx_quantize(lin.weight, spec)
            deq = mx.mx_dequantize(scales, codes, spec)
            nbytes = scales.nbytes + codes.size * spec.bits // 8
        return WeightOnlyLinear(deq, lin.bias, weight_bytes=nbytes, scheme=fmt, act_dtype=act_dtype)

    return replace_linears(model, make, layers)


def cast(model: Any, dtype: str = "float16", *, layers: Layers = None) -> Any:
    """fp16 / bf16 weights and activations (:class:`CastLinear`) in the chosen layers.

    Parameters
    ----------
    model : model with ``linears()`` and ``with_linears()``
        The float model (see the module docstring; ``refquant.model.Encoder`` / ``CausalLM``).
    dtype : {"float16", "bfloat16"}
    layers : None, str, collection of str, or callable
        Which linears (by name) are replaced; None: all (see the module docstring).
    """
    dtype = check_name("dtype", dtype, ("float16", "bfloat16"))
    return replace_linears(model, lambda _, lin: CastLinear(lin.weight, lin.bias, dtype=dtype), layers)
