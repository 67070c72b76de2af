"""``refquant report --model DIR --perplexity``: every method through a whole causal LM, by perplexity.

The decoder blocks' projections of a LLaMA folder (:class:`refquant.model.CausalLM`) are
quantized with each method; the embedding, the final norm and the LM head stay float32, as in the
GPTQ and AWQ papers' evaluations. Each row reports:

==============  ================================================================================
column          meaning
==============  ================================================================================
bits/w          storage bits per block-projection weight, scales, zero points and outliers included
model MB        bytes of the whole model (quantized projections + float32 embedding, norms, head)
ppl             perplexity on the evaluation text (:func:`refquant.metrics.perplexity`)
Δ vs fp32       ppl − ppl(fp32)
seconds         wall time to quantize the model and evaluate it
==============  ================================================================================

Data. When the folder holds ``calibration.txt`` and ``heldout.txt`` (the project's
``models/refquant-tiny-llama`` does; ``tools/train_tiny_llama.py`` says how they were split from
the Python standard library), calibration uses the first ``n_calibration`` windows of
``context`` tokens of ``calibration.txt`` (GPTQ's rule, without its random offsets), and
perplexity is measured on the first ``max_tokens`` tokens of ``heldout.txt`` with disjoint
windows of ``context`` tokens by default (``stride = context``: how the GPTQ and AWQ papers
evaluate WikiText-2); ``stride < context`` gives the Hugging Face guide's sliding window.

Methods (:data:`METHODS`; another module adds rows with :func:`register_method`):

* ``fp32``, ``fp16``, ``bf16``: float weights and activations.
* ``int8-dynamic``: W8A8, per-token activation scales from each call.
* ``int8-static-minmax`` / ``int8-static-percentile``: W8A8, one activation scale per layer
  fixed from the calibration text (min-max; the 99.99th percentile of |x|).
* ``llm.int8``: vector-wise int8 with fp16 outlier features (threshold 6).
* ``rtn-*``: round-to-nearest, per output channel or in groups of 128 (3 and 4 bits, and 2 bits
  in groups of 64), fp16 scale and integer zero point; ``rtn-int8-channel`` is weight-only int8.
* ``gptq-*``, ``awq-*``, ``spqr``, ``mixed-*``: calibrated algorithms, run block by block on the
  outputs of the already quantized blocks (:func:`refquant.sequential.quantize_sequential`).
  AWQ's scale is searched per projection (the paper shares one between projections that read
  the same input and folds it into the norm before them; here it stays in the dequantized
  weight, which computes the same product).
* ``nf4``, ``nf4-dq``: bitsandbytes NF4, block 64, without and with double quantization.
* ``gguf-<type>``: one ggml block type for every projection (``refquant.gguf``), activations
  float32 (llama.cpp's CPU kernels also round activations to Q8; that is not modelled here).
* ``llama.cpp-<mixture>``: llama-quantize's file types (``Q4_K_M``, ``Q3_K_M``, ``Q2_K`` ...):
  every tensor, the embedding and the LM head included, gets the ggml type of
  :func:`refquant.formats.gguf_recipes.tensor_type` (``llama_tensor_get_type`` in llama.cpp's
  ``src/llama-quant.cpp``), through :func:`refquant.checkpoint.gguf_model.quantize_mixture`; the
  same weights as the ``.gguf`` that ``refquant quantize --to <mixture>`` writes. bits/w counts
  the block projections, model MB every tensor in its ggml type.
* ``bitnet-b1.58``: BitNet b1.58 applied post-training: :class:`refquant.model.linear.BitLinear`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Method", "METHODS", "PERPLEXITY_COLUMNS", "register_method", "run_perplexity_report", "format_perplexity_table",
           "load_texts"]


@dataclass(frozen=True)
class Method:
    """A named way to quantize a causal LM: ``build(model, context) -> model``.

    ``context`` holds ``calibration_ids`` (int64, (n, seq_len)) and ``progress`` (a callable
    receiving ``(done, total)`` for long builds, or None).
    """

    name: str
    description: str
    build: Callable[[Any, dict], Any]
    needs: str | None = None


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> None:
    """Add a row to the perplexity table (e.g. llama.cpp's mixture recipes); names must be new."""
    if not isinstance(method, Method):
        raise TypeError(f"method must be a refquant.apps.lm_report.Method, got {type(method).__name__}")
    if method.name in METHODS:
        raise ValueError(f"method name {method.name!r} is already registered")
    METHODS[method.name] = method


def _weight_only(result_of: Callable[[np.ndarray, np.ndarray | None], Any], scheme: str
                 ) -> Callable[[str, Any, np.ndarray | None], Any]:
    """A layer factory from an algorithm returning ``.dequantized`` and ``.bits_per_weight``."""
    from refquant.model.linear import WeightOnlyLinear

    def make(name: str, lin: Any, X: np.ndarray | None) -> Any:
        r = result_of(lin.weight, X)
        nbytes = int(np.ceil(r.bits_per_weight * lin.weight.size / 8))
        return WeightOnlyLinear(r.dequantized, lin.bias, weight_bytes=nbytes, scheme=scheme)
    return make


def _sequential(result_of: Callable[[np.ndarray, np.ndarray], Any], scheme: str) -> Callable[[Any, dict], Any]:
    def build(model: Any, ctx: dict) -> Any:
        from refquant.sequential import quantize_sequential

        return quantize_sequential(model, ctx["calibration_ids"], _weight_only(result_of, scheme),
                                   progress=ctx.get("progress"))
    return build


def _gptq(bits: int, group_size: int) -> Callable[[Any, dict], Any]:
    from refquant.algorithms.gptq import gptq
    from refquant.calibration.hessian import hessian_from_activations

    return _sequential(lambda W, X: gptq(W, hessian_from_activations(X), bits=bits, group_size=group_size,
                                         sym=False), f"gptq{bits}")


def _awq(bits: int, group_size: int) -> Callable[[Any, dict], Any]:
    from refquant.algorithms.awq import awq

    return _sequential(lambda W, X: awq(W, X, bits=bits, group_size=group_size), f"awq{bits}")


def _static(observer: str, **kwargs: Any) -> Callable[[Any, dict], Any]:
    def build(model: Any, ctx: dict) -> Any:
        from refquant import ptq

        ids = ctx["calibration_ids"]
        observers = ptq.calibrate(model, lambda m: [m.forward(ids[i:i + 1]) for i in range(len(ids))], observer,
                                  **kwargs)
        return ptq.quantize_static(model, observers)
    return build


def _gguf(qtype: str) -> Callable[[Any, dict], Any]:
    def build(model: Any, ctx: dict) -> Any:
        from refquant import gguf, ptq
        from refquant.model.linear import WeightOnlyLinear

        def make(name: str, lin: Any) -> Any:
            w = lin.weight
            data = gguf.quantize(w, qtype)
            return WeightOnlyLinear(gguf.dequantize(data, qtype, w.shape), lin.bias, weight_bytes=int(data.nbytes),
                                    scheme=qtype, act_dtype="float32")
        return ptq.replace_linears(model, make)
    return build


def _mixture(recipe: str) -> Callable[[Any, dict], Any]:
    def build(model: Any, ctx: dict) -> Any:
        from refquant.checkpoint.gguf_model import quantize_mixture

        return quantize_mixture(model, recipe)
    return build


def _mixture_methods() -> list[Method]:
    """One row per llama-quantize file type that mixes types or quantizes every tensor
    (:data:`refquant.formats.gguf_recipes.MIXTURES`, float outputs left out).

    The grid-codebook file types (IQ2_XXS ... IQ1_M) are left out: llama-quantize refuses them
    without an importance matrix (:func:`refquant.formats.gguf_recipes.requires_imatrix`), and
    these rows quantize data-free."""
    from refquant.formats.gguf_recipes import MIXTURES, requires_imatrix

    return [Method(f"llama.cpp-{name.upper()}", f"llama-quantize {name.upper()}: per-tensor types, embedding and head "
                   f"included", _mixture(name)) for name, m in MIXTURES.items()
            if name not in ("f32", "f16", "bf16") and not requires_imatrix("blk.0.ffn_up.weight", m.default)]


def _builtin_methods() -> list[Method]:
    from refquant import ptq
    from refquant.algorithms.mixed import mixed
    from refquant.algorithms.spqr import spqr
    from refquant.calibration.hessian import hessian_from_activations
    from refquant.model.linear import BitLinear, LLMInt8Linear

    rows = [
        Method("fp32", "float32 (reference)", lambda m, ctx: m),
        Method("fp16", "fp16 weights and activations", lambda m, ctx: ptq.cast(m, "float16")),
        Method("bf16", "bf16 weights and activations", lambda m, ctx: ptq.cast(m, "bfloat16")),
        Method("int8-dynamic", "W8A8, per-token dynamic activation scales", lambda m, ctx: ptq.quantize_dynamic(m)),
        Method("int8-static-minmax", "W8A8, static activation scale: min-max", _static("minmax")),
        Method("int8-static-percentile", "W8A8, static activation scale: 99.99th percentile",
               _static("percentile", percentile=99.99)),
        Method("llm.int8", "LLM.int8(): int8 vector-wise, fp16 outliers |x| >= 6",
               lambda m, ctx: ptq.replace_linears(m, lambda _, lin: LLMInt8Linear(lin.weight, lin.bias))),
        Method("rtn-int8-channel", "RTN int8, per output channel",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=8, group_size=None)),
        Method("rtn-int4-channel", "RTN int4, per output channel",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=4, group_size=None)),
        Method("rtn-int4-g128", "RTN int4, groups of 128",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=4, group_size=128)),
        Method("rtn-int3-channel", "RTN int3, per output channel",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=3, group_size=None)),
        Method("rtn-int3-g128", "RTN int3, groups of 128",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=3, group_size=128)),
        Method("rtn-int2-g64", "RTN int2, groups of 64",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=2, group_size=64)),
        Method("gptq-int4-channel", "GPTQ int4, per channel, layer by layer", _gptq(4, -1)),
        Method("gptq-int4-g128", "GPTQ int4, groups of 128, layer by layer", _gptq(4, 128)),
        Method("gptq-int3-channel", "GPTQ int3, per channel, layer by layer", _gptq(3, -1)),
        Method("gptq-int3-g128", "GPTQ int3, groups of 128, layer by layer", _gptq(3, 128)),
        Method("gptq-int2-g64", "GPTQ int2, groups of 64, layer by layer", _gptq(2, 64)),
        Method("awq-int4-g128", "AWQ int4, groups of 128, layer by layer", _awq(4, 128)),
        Method("awq-int3-g128", "AWQ int3, groups of 128, layer by layer", _awq(3, 128)),
        Method("spqr", "SpQR 3-bit, groups of 16, 3-bit statistics, outliers (threshold 0.2)",
               _sequential(lambda W, X: spqr(W, hessian_from_activations(X)), "spqr")),
        Method("mixed-int4-g128", "int4 g128 RTN + 1% most activated input channels in fp16",
               _sequential(lambda W, X: mixed(W, X, bits=4, group_size=128), "mixed4")),
        Method("nf4", "bitsandbytes NF4, block 64", lambda m, ctx: ptq.quantize_nf4(m), needs="refquant.bnb"),
        Method("nf4-dq", "bitsandbytes NF4 + double quantization",
               lambda m, ctx: ptq.quantize_nf4(m, double_quant=True), needs="refquant.bnb"),
    ]
    for qtype in ("q8_0", "q6_k", "q5_k", "q5_0", "q4_k", "q4_0", "iq4_nl", "q3_k", "q2_k", "tq2_0"):
        rows.append(Method(f"gguf-{qtype}", f"GGUF {qtype.upper()} for every projection", _gguf(qtype)))
    rows += _mixture_methods()
    rows.append(Method("bitnet-b1.58", "BitNet b1.58 PTQ: ternary absmean weights, int8 absmax activations",
                       lambda m, ctx: ptq.replace_linears(m, lambda _, lin: BitLinear(lin.weight, lin.bias))))
    return rows


for _method in _builtin_methods():
    register_method(_method)


def load_texts(model_dir: str | Path) -> tuple[str, str]:
    """``(calibration text, held-out text)`` from the folder's ``calibration.txt`` and ``heldout.txt``."""
    model_dir = Path(model_dir)
    texts = []
    for name in ("calibration.txt", "heldout.txt"):
        path = model_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no {name}; the perplexity report needs a "
                                    "calibration and a held-out text next to the model")
        texts.append(path.read_text(encoding="utf-8"))
    return texts[0], texts[1]


def run_perplexity_report(model_dir: str | Path, methods: Sequence[str] | None = None, *, context: int | None = None,
                          stride: int | None = None, max_tokens: int = 8192, n_calibration: int = 16,
                          progress: bool = True, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Quantize the model with each method and measure its perplexity on the held-out text.

    Parameters
    ----------
    model_dir : path
        A Hugging Face LLaMA folder with ``calibration.txt`` and ``heldout.txt``.
    methods : sequence of str, optional
        Names from :data:`METHODS` (default all). ``fp32`` is always measured first.
    context : int, optional
        Window length (default the model's ``max_position_embeddings``).
    stride : int, optional
        Window step (default ``context``: disjoint windows).
    max_tokens : int
        Evaluate on the first this many held-out tokens.
    n_calibration : int
        Calibration windows of ``context`` tokens.
    progress : bool
        Progress bars on stderr.
    notes : list, optional
        Receives one line per skipped method.

    Returns
    -------
    list of dict
        Per method: ``method``, ``description``, ``bits_per_weight``, ``model_bytes``,
        ``linear_bytes``, ``perplexity``, ``delta_ppl``, ``nll``, ``tokens``, ``seconds``.
    """
    from refquant._validate import check_int
    from refquant.metrics import perplexity
    from refquant.model import CausalLM
    from refquant._progress import ProgressBar
    from refquant.apps.report import _skipped

    chosen = list(METHODS) if methods is None else list(dict.fromkeys(["fp32", *methods]))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"methods {unknown!r} are not known; allowed: {', '.join(METHODS)}")
    max_tokens = check_int("max_tokens", max_tokens, min=2)
    n_calibration = check_int("n_calibration", n_calibration, min=1)
    model = CausalLM.from_pretrained(model_dir)
    if model.tokenizer is None:
        raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no tokenizer.json")
    context = model.config.max_position_embeddings if context is None else check_int(
        "context", context, min=2, max=model.config.max_position_embeddings)
    stride = context if stride is None else check_int("stride", stride, min=1, max=context)
    calibration_text, heldout_text = load_texts(model_dir)
    calib = model.encode(calibration_text)
    n_calibration = min(n_calibration, len(calib) // context)
    if n_calibration < 1:
        raise ValueError(f"calibration.txt has {len(calib)} tokens, fewer than one window of context={context}")
    calibration_ids = calib[:n_calibration * context].reshape(n_calibration, context)
    heldout = model.encode(heldout_text)[:max_tokens]

    float_layers = model.linears()
    n_weights = sum(lin.weight.size for lin in float_layers.values())
    records: list[dict[str, Any]] = []
    bar = ProgressBar(len(chosen), progress)
    try:
        for name in chosen:
            method = METHODS[name]
            bar.step(name)
            if _skipped(method, notes):
                bar.advance()
                continue
            t0 = time.perf_counter()
            qmodel = method.build(model, {"calibration_ids": calibration_ids, "progress": None})
            r = perplexity(qmodel, heldout, context=context, stride=stride)
            linear_bytes = int(sum(layer.weight_bytes for layer in qmodel.linears().values()))
            fixed_bytes = qmodel.other_parameter_bytes()  # float32, but a llama.cpp mixture quantizes them too
            base = records[0]["perplexity"] if records else r.perplexity
            records.append({
                "method": name, "description": method.description,
                "bits_per_weight": 8.0 * linear_bytes / n_weights, "model_bytes": linear_bytes + fixed_bytes,
                "linear_bytes": linear_bytes, "perplexity": r.perplexity, "delta_ppl": r.perplexity - base,
                "nll": r.nll, "tokens": r.tokens, "seconds": round(time.perf_counter() - t0, 2),
            })
            bar.advance()
    finally:
        bar.close()
    return records


#: The perplexity table's columns and what each means (printed under the table).
PERPLEXITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("method", "quantization method; fp32 is the float32 baseline"),
    ("bits/w", "storage bits per block-projection weight, scales, zero points and outliers included"),
    ("model MB", "whole model in 10^6 bytes: quantized projections + float32 embedding, norms, LM head"),
    ("ppl", "perplexity on the held-out text (exp of the mean next-token negative log-likelihood)"),
    ("Δ vs fp32", "ppl − ppl(fp32); lower is better"),
    ("seconds", "wall time to quantize the model and evaluate it"),
)


def format_perplexity_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as an aligned text table (one line per method)."""
    from refquant.apps.report import _aligned

    head = tuple(name for name, _ in PERPLEXITY_COLUMNS)
    rows = [head] + [(r["method"], f"{r['bits_per_weight']:.3f}", f"{r['model_bytes'] / 1e6:.2f}",
                      f"{r['perplexity']:.3f}", f"{r['delta_ppl']:+.3f}", f"{r['seconds']:.1f}") for r in records]
    return _aligned(rows)
