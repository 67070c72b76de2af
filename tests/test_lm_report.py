"""Layer-by-layer calibration (refquant.sequential), the LLM.int8 and BitLinear layers, and the
perplexity table of ``refquant report --perplexity`` on the shipped tiny LLaMA (short texts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refquant.model import CausalLM, LlamaConfig, Linear
from refquant.model.linear import BitLinear, LLMInt8Linear
from refquant.sequential import TRUE_SEQUENTIAL, quantize_sequential

TINY_LLAMA = Path(__file__).resolve().parents[1] / "models" / "refquant-tiny-llama"
def _has_tokenizers() -> bool:
    import importlib.util

    return importlib.util.find_spec("tokenizers") is not None


needs_model = pytest.mark.skipif(not TINY_LLAMA.is_dir() or not _has_tokenizers(),
                                 reason="needs models/refquant-tiny-llama and the model extra (tokenizers)")


@pytest.fixture
def tiny(tmp_path, rng):
    from test_llama import tiny_config, tiny_weights

    (tmp_path / "config.json").write_text(json.dumps(tiny_config()))
    return CausalLM(LlamaConfig.from_folder(tmp_path), tiny_weights(rng, tiny_config()))


class Halve:
    """A stand-in 'quantizer' whose effect on later layers' inputs is easy to predict."""

    def __init__(self, lin: Linear) -> None:
        self.lin = Linear(lin.weight * np.float32(0.5))

    def __call__(self, x):
        return self.lin(x)


def test_each_layer_is_calibrated_on_the_quantized_layers_before_it(tiny, rng):
    ids = rng.integers(0, 97, size=(2, 10))
    seen: dict[str, np.ndarray] = {}

    def make(name, lin, X):
        seen[name] = X
        return Halve(lin)

    order = []
    out = quantize_sequential(tiny, ids, make, progress=lambda d, t: order.append((d, t)))
    assert order[-1] == (14, 14) and list(seen)[:3] == [f"model.layers.0.{n}" for n in TRUE_SEQUENTIAL[0]]
    # the inputs each layer saw are exactly what it receives inside the fully quantized model
    recorded = {}

    class Spy:
        def __init__(self, name, layer):
            self.name, self.layer = name, layer

        def __call__(self, x):
            recorded[self.name] = x
            return self.layer(x)

    out.with_linears({n: Spy(n, layer) for n, layer in out.linears().items()}).forward(ids)
    for name, X in seen.items():
        np.testing.assert_allclose(X, recorded[name], rtol=1e-5, atol=1e-6)
    # and differ from the float model's for every layer after the first group
    float_inputs = {}
    tiny.with_linears({n: Spy(n, layer) for n, layer in tiny.linears().items()}).forward(ids)
    float_inputs.update(recorded)
    np.testing.assert_array_equal(seen["model.layers.0.self_attn.q_proj"], float_inputs["model.layers.0.self_attn.q_proj"])
    assert not np.allclose(seen["model.layers.1.self_attn.q_proj"], float_inputs["model.layers.1.self_attn.q_proj"])


def test_sequential_bad_arguments(tiny):
    with pytest.raises(ValueError, match="calibration_ids"):
        quantize_sequential(tiny, np.zeros((0, 4), np.int64), lambda n, lin, X: lin)
    with pytest.raises(ValueError, match="groups"):
        quantize_sequential(tiny, np.zeros((1, 4), np.int64), lambda n, lin, X: lin, groups=TRUE_SEQUENTIAL[:2])


def test_bitlinear_is_the_dequantized_product_with_exact_integer_accumulation(rng):
    from refquant.algorithms.bitnet import activation_quant_b158, bitnet_b158

    w = rng.normal(size=(24, 40)).astype(np.float32)
    x = rng.normal(size=(5, 40)).astype(np.float32)
    layer = BitLinear(w)
    q, a = bitnet_b158(w), activation_quant_b158(x)
    expect = a.dequantized.astype(np.float64) @ q.dequantized.astype(np.float64).T
    np.testing.assert_allclose(layer(x), expect, rtol=1e-5, atol=1e-6)
    assert set(np.unique(layer.weight_codes)) <= {-1, 0, 1}
    assert layer.bits_per_weight == pytest.approx(8 * ((w.size + 4) // 5 + 4) / w.size)
    assert layer(x[None]).shape == (1, 5, 24)


def test_llm_int8_linear_keeps_outlier_features_in_float(rng):
    w = rng.normal(size=(16, 32)).astype(np.float32)
    x = rng.normal(size=(6, 32)).astype(np.float32)
    x[:, 3] *= 40  # an outlier feature (|x| >= 6)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    with_outliers = LLMInt8Linear(w)(x)
    without = LLMInt8Linear(w, threshold=0.0)(x)
    err = lambda y: np.abs(y - exact).max()  # noqa: E731
    assert err(with_outliers) < err(without) / 4
    assert LLMInt8Linear(w).weight_bytes == w.size + 16 * 4


def test_ternary_matmul_reference():
    from refquant.matmul import ternary_matmul

    a = np.array([[1, -2, 3], [127, -128, 5]], np.int8)
    t = np.array([[1, 0], [-1, 1], [0, -1]], np.int8)
    np.testing.assert_array_equal(ternary_matmul(a, t), [[1 + 2, -2 - 3], [127 + 128, -128 - 5]])
    assert ternary_matmul(a, t).dtype == np.int32
    with pytest.raises(ValueError, match="ternary"):
        ternary_matmul(a, np.full((3, 2), 2, np.int8))
    with pytest.raises(TypeError, match="int8"):
        ternary_matmul(a.astype(np.uint8), t)
    with pytest.raises(ValueError, match="inner"):
        ternary_matmul(a, t[:2])


@needs_model
def test_perplexity_table_on_the_tiny_llama():
    from refquant.apps.lm_report import METHODS, format_perplexity_table, run_perplexity_report

    methods = ["fp16", "rtn-int4-g128", "gptq-int4-g128", "llama.cpp-Q4_K_M", "bitnet-b1.58"]
    records = run_perplexity_report(TINY_LLAMA, methods, context=64, max_tokens=192, n_calibration=2,
                                    progress=False)
    by = {r["method"]: r for r in records}
    assert list(by) == ["fp32", *methods]
    fp32 = by["fp32"]
    assert fp32["delta_ppl"] == 0 and fp32["bits_per_weight"] == 32 and fp32["tokens"] == 192 - 3
    assert 1 < fp32["perplexity"] < 2048
    assert abs(by["fp16"]["delta_ppl"]) < 1e-2 * fp32["perplexity"]
    assert by["rtn-int4-g128"]["bits_per_weight"] == pytest.approx(4 + (16 + 4) / 128)
    assert by["bitnet-b1.58"]["perplexity"] > by["rtn-int4-g128"]["perplexity"]
    assert by["fp32"]["model_bytes"] > by["rtn-int4-g128"]["model_bytes"] > by["bitnet-b1.58"]["model_bytes"]
    # llama-quantize Q4_K_M on 4 layers: attn_v and ffn_down Q6_K in layers 2 and 3 (use_more_bits:
    # i >= 7n/8 or (i - n/8) % 3 == 2), Q4_K elsewhere; token_embd Q4_K, output Q6_K, norms F32
    from refquant.gguf import row_bytes

    mix = by["llama.cpp-Q4_K_M"]
    shapes = {"q": (256, 256), "k": (128, 256), "v": (128, 256), "o": (256, 256), "gate": (768, 256),
              "up": (768, 256), "down": (256, 768)}
    linear = sum(rows * row_bytes("q6_k" if name in ("v", "down") and layer >= 2 else "q4_k", n)
                 for layer in range(4) for name, (rows, n) in shapes.items())
    assert mix["linear_bytes"] == linear and mix["bits_per_weight"] == pytest.approx(8 * linear / 3145728)
    norms = (2 * 4 + 1) * 256 * 4
    assert mix["model_bytes"] == linear + 2048 * (row_bytes("q4_k", 256) + row_bytes("q6_k", 256)) + norms
    assert abs(mix["delta_ppl"]) < 0.05 * fp32["perplexity"]
    table = format_perplexity_table(records)
    assert table.splitlines()[0].split()[:3] == ["method", "bits/w", "model"] and "gptq-int4-g128" in table
    assert {"gptq-int4-g128", "awq-int4-g128", "spqr", "nf4-dq", "gguf-q4_k", "llm.int8"} <= set(METHODS)
    with pytest.raises(ValueError, match="not known"):
        run_perplexity_report(TINY_LLAMA, ["q4_k_m_typo"], progress=False)


@needs_model
def test_report_command_writes_json(tmp_path, capsys):
    from refquant.apps.cli import main

    out = tmp_path / "ppl.json"
    rc = main(["report", "--model", str(TINY_LLAMA), "--perplexity", "--schemes", "rtn-int8-channel",
               "--max-tokens", "130", "--context", "64", "--no-progress", "--json", str(out)])
    assert rc == 0
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == ["fp32", "rtn-int8-channel"]
    assert abs(records[1]["delta_ppl"]) < 0.01 * records[0]["perplexity"]
    assert "rtn-int8-channel" in capsys.readouterr().out
    assert main(["report", "--perplexity", "--no-progress"]) == 2
