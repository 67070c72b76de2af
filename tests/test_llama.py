"""refquant.model.CausalLM: the NumPy LLaMA forward against transformers' LlamaForCausalLM (oracle),
on a tiny random GQA model written to a temporary HF folder and on the shipped refquant-tiny-llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refquant.model import CausalLM, LlamaConfig, Linear
from refquant.model.llama import BLOCK_LINEARS, apply_rotary, rms_norm, rotary_cos_sin, silu

TINY_LLAMA = Path(__file__).resolve().parents[1] / "models" / "refquant-tiny-llama"
ORACLE_RTOL = 1e-5  # |Δlogit| ≤ 1e-5 · max|logit|: float32 forward, different summation order only


def tiny_config() -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 97, "hidden_size": 32,
            "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 8, "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32"}


def tiny_weights(rng: np.random.Generator, cfg: dict) -> dict[str, np.ndarray]:
    """Random LLaMA tensors named as in transformers' LlamaForCausalLM state dict."""
    h, f, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    w = {"model.embed_tokens.weight": rng.normal(size=(cfg["vocab_size"], h)),
         "model.norm.weight": 1 + 0.1 * rng.normal(size=h),
         "lm_head.weight": rng.normal(size=(cfg["vocab_size"], h)) / np.sqrt(h)}
    shapes = {"self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
              "self_attn.o_proj": (h, q), "mlp.gate_proj": (f, h), "mlp.up_proj": (f, h), "mlp.down_proj": (h, f)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, shape in shapes.items():
            w[p + name + ".weight"] = rng.normal(size=shape) / np.sqrt(shape[1])
        for name in ("input_layernorm", "post_attention_layernorm"):
            w[p + name + ".weight"] = 1 + 0.1 * rng.normal(size=h)
    return {k: v.astype(np.float32) for k, v in w.items()}


@pytest.fixture
def tiny_folder(tmp_path, rng):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    cfg = tiny_config()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    safetensors_numpy.save_file(tiny_weights(rng, cfg), str(tmp_path / "model.safetensors"))
    return tmp_path


def hf_logits(folder: Path, ids: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers", reason="the transformers oracle is not installed "
                                       "(pip install transformers: the test extra)")
    model = transformers.LlamaForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


def assert_close_to_oracle(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    tol = ORACLE_RTOL * float(np.abs(ref).max())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol)


@pytest.mark.oracle
def test_tiny_gqa_model_matches_transformers(tiny_folder, rng):
    ids = rng.integers(0, 97, size=(2, 23))
    model = CausalLM.from_pretrained(tiny_folder)
    assert model.config.num_key_value_heads == 2 and model.tokenizer is None
    assert_close_to_oracle(model.forward(ids), hf_logits(tiny_folder, ids))


@pytest.mark.oracle
@pytest.mark.skipif(not TINY_LLAMA.is_dir(), reason="models/refquant-tiny-llama is not in this checkout")
def test_shipped_model_matches_transformers_on_heldout_text():
    pytest.importorskip("tokenizers", reason="the model extra (tokenizers) is not installed")
    model = CausalLM.from_pretrained(TINY_LLAMA)
    ids = model.encode((TINY_LLAMA / "heldout.txt").read_text(encoding="utf-8")[:2000])[None, :96]
    assert ids.shape == (1, 96)
    assert_close_to_oracle(model.forward(ids), hf_logits(TINY_LLAMA, ids))


@pytest.mark.skipif(not TINY_LLAMA.is_dir(), reason="models/refquant-tiny-llama is not in this checkout")
def test_shipped_model_layout():
    cfg = json.loads((TINY_LLAMA / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["num_key_value_heads"] < cfg["num_attention_heads"]
    size = sum(p.stat().st_size for p in TINY_LLAMA.iterdir())
    assert size <= 20e6
    pytest.importorskip("tokenizers", reason="the model extra (tokenizers) is not installed")
    model = CausalLM.from_pretrained(TINY_LLAMA)
    assert len(model.linears()) == 7 * cfg["num_hidden_layers"]
    text = "def f(x):\n    return x + 1\n"
    assert model.tokenizer.decode(model.encode(text).tolist()) == text  # byte-level BPE round trip


def test_pieces_follow_their_formulas(rng):
    x = rng.normal(size=(3, 8)).astype(np.float32)
    g = rng.normal(size=8).astype(np.float32)
    expect = g * x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(rms_norm(x, g, 1e-5), expect, rtol=1e-6)
    np.testing.assert_allclose(silu(x), x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    assert silu(np.array([-1e4], np.float32))[0] == 0  # no overflow warning, no NaN
    cos, sin = rotary_cos_sin(np.arange(5), 4, 10000.0)
    assert cos.shape == (5, 4) and np.all(cos[0] == 1) and np.all(sin[0] == 0)
    np.testing.assert_allclose(cos[3, [0, 2]], np.cos(3.0), rtol=1e-6)  # inv_freq_0 = 1, repeated halves
    np.testing.assert_allclose(sin[3, [1, 3]], np.sin(3 / 100.0), rtol=1e-6)  # inv_freq_1 = 10000^(-1/2)
    v = rng.normal(size=(2, 5, 4)).astype(np.float32)
    r = apply_rotary(v, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(r, axis=-1), np.linalg.norm(v, axis=-1), rtol=1e-5)  # a rotation


def test_causal_logits_do_not_see_the_future(tiny_folder, rng):
    model = CausalLM.from_pretrained(tiny_folder)
    ids = rng.integers(0, 97, size=(1, 12))
    changed = ids.copy()
    changed[0, 7:] = (changed[0, 7:] + 1) % 97
    a, b = model.forward(ids), model.forward(changed)
    np.testing.assert_array_equal(a[0, :7], b[0, :7])
    assert not np.allclose(a[0, 7:], b[0, 7:])


def test_with_linears_swaps_layers_and_leaves_the_original(tiny_folder, rng):
    model = CausalLM.from_pretrained(tiny_folder)
    names = list(model.linears())
    assert names[:7] == [f"model.layers.0.{n}" for n in BLOCK_LINEARS]
    ids = rng.integers(0, 97, size=(1, 9))
    before = model.forward(ids)
    zero = Linear(np.zeros_like(model.linears()[names[-1]].weight))
    changed = model.with_linears({names[-1]: zero})
    assert not np.allclose(changed.forward(ids), before)
    np.testing.assert_array_equal(model.forward(ids), before)
    with pytest.raises(ValueError, match="replacements"):
        model.with_linears({"model.layers.9.mlp.up_proj": zero})


def test_bad_inputs_and_configs(tiny_folder, tmp_path_factory):
    model = CausalLM.from_pretrained(tiny_folder)
    for bad, match in ((np.zeros((1, 65), np.int64), "max_position_embeddings"),
                       (np.full((1, 3), 97), r"\[0, 97\)"), (np.zeros(3, np.int64), "2-D"),
                       (np.zeros((1, 3)), "integer")):
        with pytest.raises(ValueError, match=match):
            model.forward(bad)
    for key, value in (("model_type", "mistral"), ("hidden_act", "gelu"), ("rope_scaling", {"type": "linear"})):
        folder = tmp_path_factory.mktemp("bad")
        (folder / "config.json").write_text(json.dumps({**tiny_config(), key: value}))
        (folder / "model.safetensors").write_bytes((tiny_folder / "model.safetensors").read_bytes())
        with pytest.raises(ValueError, match=key):
            CausalLM.from_pretrained(folder)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                    num_key_value_heads=3, head_dim=2)
    with pytest.raises(FileNotFoundError, match="config.json"):
        CausalLM.from_pretrained(tmp_path_factory.mktemp("empty"))
    with pytest.raises(ValueError, match="tokenizer"):
        model.encode("x")


@pytest.mark.oracle
@pytest.mark.skipif(not TINY_LLAMA.is_dir(), reason="models/refquant-tiny-llama is not in this checkout")
def test_perplexity_of_the_numpy_model_equals_the_hf_guide_with_transformers():
    """The whole chain (tokenizer, NumPy forward, sliding window) against the Hugging Face guide's
    loop run on transformers' LlamaForCausalLM with its own loss."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from refquant.metrics import perplexity

    model = CausalLM.from_pretrained(TINY_LLAMA)
    ids = model.encode((TINY_LLAMA / "heldout.txt").read_text(encoding="utf-8")[:3000])[:150]
    ours = perplexity(model, ids, context=64, stride=32)
    hf = transformers.LlamaForCausalLM.from_pretrained(str(TINY_LLAMA), torch_dtype=torch.float32).eval()
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), 32):
        end = min(begin + 64, len(ids))
        trg_len = end - prev_end
        input_ids = torch.from_numpy(ids[begin:end][None])
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = hf(input_ids, labels=target_ids).loss  # mean over the scored (shifted) labels
        scored = int((target_ids[:, 1:] != -100).sum())
        nll_sum += float(loss) * scored
        n_tokens += scored
        prev_end = end
        if end == len(ids):
            break
    assert ours.tokens == n_tokens == len(ids) - 1
    assert ours.perplexity == pytest.approx(np.exp(nll_sum / n_tokens), rel=1e-5)
