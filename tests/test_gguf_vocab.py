"""A Hugging Face byte-level BPE tokenizer as llama.cpp metadata (refquant.checkpoint.gguf_vocab), checked
against gguf-py's own reading of the folder (``SpecialVocab``) and the ``tokenizers`` package; the
LLaMA .gguf read back (refquant.checkpoint.gguf_model) equals the in-memory mixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refquant.checkpoint import llama
from refquant.checkpoint.gguf_vocab import TOKEN_TYPE, tokenizer_metadata

TINY_LLAMA = Path(__file__).resolve().parents[1] / "models" / "refquant-tiny-llama"
needs_model = pytest.mark.skipif(not (TINY_LLAMA / "tokenizer.json").is_file(),
                                 reason="needs models/refquant-tiny-llama")


def _values(meta: dict) -> dict:
    out = {k: (v.to_python() if hasattr(v, "to_python") else v) for k, v in meta.items()}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


@needs_model
def test_tiny_llama_vocabulary_matches_gguf_py_and_tokenizers(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    tokenizers = pytest.importorskip("tokenizers")
    meta = tokenizer_metadata(TINY_LLAMA, 2048)
    v = _values(meta)
    assert v["tokenizer.ggml.model"] == "gpt2" and v["tokenizer.ggml.pre"] == "gpt-2"
    tok = tokenizers.Tokenizer.from_file(str(TINY_LLAMA / "tokenizer.json"))
    assert v["tokenizer.ggml.tokens"] == [tok.id_to_token(i) for i in range(2048)]
    assert v["tokenizer.ggml.token_type"][:3] == [TOKEN_TYPE["control"], TOKEN_TYPE["control"], TOKEN_TYPE["normal"]]
    assert set(v["tokenizer.ggml.token_type"][2:]) == {TOKEN_TYPE["normal"]}
    special = gguf.SpecialVocab(TINY_LLAMA, load_merges=True, n_vocab=2048)  # the converter's reading
    assert v["tokenizer.ggml.merges"] == special.merges and len(special.merges) == 1790
    assert {k: v[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos")} == special.special_token_ids
    assert v["tokenizer.ggml.add_bos_token"] is False and v["tokenizer.ggml.add_eos_token"] is False
    # the value types llama.cpp's loader insists on, read back by gguf-py
    from refquant.io.gguf_file import write

    path = tmp_path / "vocab.gguf"
    write(path, {}, {"general.architecture": "llama", **meta})
    fields = gguf.GGUFReader(path).fields
    T = gguf.GGUFValueType
    assert fields["tokenizer.ggml.token_type"].types == [T.ARRAY, T.INT32]
    assert fields["tokenizer.ggml.merges"].types == [T.ARRAY, T.STRING]
    assert fields["tokenizer.ggml.bos_token_id"].types == [T.UINT32]
    assert fields["tokenizer.ggml.tokens"].contents()[:2] == ["<s>", "</s>"]


def _folder(tmp_path: Path, tokenizer: dict, **files: dict) -> Path:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    for name, content in files.items():
        (folder / f"{name}.json").write_text(json.dumps(content))
    return folder


def _bpe(**changes: object) -> dict:
    tok = {"normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "post_processor": None, "added_tokens": [{"id": 3, "content": "<|end|>", "special": False},
                                                    {"id": 4, "content": "<pad>", "special": True}],
           "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"], ["a b", "c"]]}}
    tok.update(changes)
    return tok


def test_token_types_holes_merges_and_special_ids(tmp_path: Path) -> None:
    template = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<pad>"}}, {"Sequence": {"id": "A"}}]}
    folder = _folder(tmp_path, _bpe(post_processor=template), tokenizer_config={"pad_token": "<pad>"},
                     config={"bos_token_id": 4, "eos_token_id": 3, "pad_token_id": 0})
    v = _values(tokenizer_metadata(folder, 6))
    # an id the tokenizer lacks is [PAD5] UNUSED; '<|end|>' looks special although not marked so
    assert v["tokenizer.ggml.tokens"] == ["a", "b", "ab", "<|end|>", "<pad>", "[PAD5]"]
    assert v["tokenizer.ggml.token_type"] == [1, 1, 1, 3, 3, 5]
    # pair merges: a space inside a part is written as U+0120 (ord(" ") + 256)
    assert v["tokenizer.ggml.merges"] == ["a b", "a\u0120b c"]
    # tokenizer_config (by content) wins over config.json; config.json fills the rest
    assert (v["tokenizer.ggml.padding_token_id"], v["tokenizer.ggml.bos_token_id"],
            v["tokenizer.ggml.eos_token_id"]) == (4, 4, 3)
    assert v["tokenizer.ggml.add_bos_token"] is True and v["tokenizer.ggml.add_eos_token"] is False
    with pytest.raises(ValueError, match="vocab_size=4"):
        tokenizer_metadata(folder, 4)


@pytest.mark.parametrize("changes, match", [
    ({"model": {"type": "WordPiece", "vocab": {}}}, "model.type='WordPiece'"),
    ({"normalizer": {"type": "NFC"}}, "normalizer='NFC'"),
    ({"pre_tokenizer": {"type": "Metaspace"}}, "pre_tokenizer"),
    ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}}, "pre_tokenizer"),
])
def test_other_tokenizers_are_refused_and_get_no_vocab(tmp_path: Path, changes: dict, match: str) -> None:
    folder = _folder(tmp_path, _bpe(**changes))
    with pytest.raises(ValueError, match=match):
        tokenizer_metadata(folder, 5)
    config = {"architectures": ["LlamaForCausalLM"], "num_attention_heads": 2, "hidden_size": 8,
              "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 5}
    with pytest.warns(UserWarning, match="no vocabulary"):
        meta = llama.gguf_metadata(config, "m", 0, folder=folder)
    assert meta["tokenizer.ggml.model"] == "no_vocab"
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        tokenizer_metadata(tmp_path, 5)


def test_llama_names_and_rope_rows_invert() -> None:
    w = np.arange(64 * 3).reshape(64, 3)
    for heads in (1, 2, 4):
        assert np.array_equal(llama.unpermute_rope_rows(llama.permute_rope_rows(w, heads), heads), w)
    for hf in ("model.layers.7.self_attn.k_proj.weight", "model.norm.weight", "lm_head.weight",
               "model.embed_tokens.weight", "model.layers.0.post_attention_layernorm.weight"):
        assert llama.hf_name(llama.gguf_name(hf)) == hf
    with pytest.raises(ValueError, match="blk.0.ssm_a"):
        llama.hf_name("blk.0.ssm_a")


def test_written_gguf_reads_back_as_the_in_memory_mixture(tmp_path: Path) -> None:
    """load_gguf(quantize(folder, q4_k_m)) has the tensors and the forward of quantize_mixture(model, q4_k_m)."""
    pytest.importorskip("safetensors")
    from refquant.checkpoint import quantize, synthetic
    from refquant.checkpoint.gguf_model import load_gguf, quantize_mixture
    from refquant.model import CausalLM

    cfg = synthetic.llama_config(hidden=256, n_layers=2, n_heads=4, n_kv_heads=2, vocab=256, dtype="float32")
    src = synthetic.write_llama(tmp_path / "src", cfg)
    model = CausalLM.from_pretrained(src)
    read = load_gguf(quantize(src, tmp_path / "m.gguf", "q4_k_m", progress=False))
    mixed = quantize_mixture(model, "q4_k_m")
    a, b = read.tensors(), mixed.tensors()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert read.other_parameter_bytes() == mixed.other_parameter_bytes()
    assert [lay.scheme for lay in read.linears().values()] == [lay.scheme for lay in mixed.linears().values()]
    assert read.linears()["model.layers.1.self_attn.v_proj"].scheme == "q6_k"
    ids = np.arange(12)[None] * 7 % 256
    np.testing.assert_allclose(read.forward(ids), mixed.forward(ids), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="not a GGUF recipe"):
        quantize_mixture(model, "q4_k_x")


def test_load_gguf_refuses_other_files(tmp_path: Path) -> None:
    from refquant.checkpoint.gguf_model import load_gguf
    from refquant.io.gguf_file import write

    write(tmp_path / "gpt2.gguf", {}, {"general.architecture": "gpt2"})
    with pytest.raises(ValueError, match="general.architecture='gpt2'"):
        load_gguf(tmp_path / "gpt2.gguf")
    write(tmp_path / "bare.gguf", {"token_embd.weight": np.zeros((4, 8), np.float32)},
          {"general.architecture": "llama"})
    with pytest.raises(ValueError, match="llama.embedding_length"):
        load_gguf(tmp_path / "bare.gguf")
