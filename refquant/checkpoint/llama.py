"""LLaMA-architecture checkpoints in llama.cpp's terms: tensor names, metadata, Q/K row order.

Sources: gguf-py ``gguf/constants.py`` (``MODEL_TENSORS[MODEL_ARCH.LLAMA]``, ``TENSOR_NAMES``,
``Keys``; gguf 0.19.0) and ``convert_hf_to_gguf.py`` ``LlamaModel`` (``set_gguf_parameters``,
``permute``, ``modify_tensors``) in ggml-org/llama.cpp at commit
a458664fc83b6513baea7adafcb0ef0626b006f8.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from refquant._validate import check_int

__all__ = ["gguf_name", "hf_name", "gguf_metadata", "permute_rope_rows", "unpermute_rope_rows", "layer_of",
           "LLAMA_ARCHITECTURES", "hparams"]

LLAMA_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")

# Hugging Face name (per layer, after "model.layers.{i}.") -> llama.cpp name (after "blk.{i}.")
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")
# rotary inverse frequencies are recomputed by llama.cpp; the converter drops them
_SKIPPED = re.compile(r".*\.rotary_emb\.inv_freq")


def gguf_name(hf_name: str) -> str | None:
    """The llama.cpp name of a Hugging Face LLaMA tensor, or None for tensors the converter drops.

    Parameters
    ----------
    hf_name : str
        A Hugging Face LLaMA tensor name (``"model.layers.3.self_attn.q_proj.weight"``).

    Raises
    ------
    ValueError
        A tensor the LLaMA converter does not know (named).
    """
    if _SKIPPED.fullmatch(hf_name):
        return None
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    m = _LAYER.fullmatch(hf_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{int(m.group(1))}.{_LAYER_NAMES[m.group(2)]}"
    raise ValueError(f"tensor {hf_name!r} has no llama.cpp name for the LLaMA architecture")


def hf_name(name: str) -> str:
    """The Hugging Face name of a llama.cpp LLaMA tensor (the inverse of :func:`gguf_name`).

    Parameters
    ----------
    name : str
        A llama.cpp LLaMA tensor name (``"blk.3.attn_q.weight"``).

    Raises
    ------
    ValueError
        A name :func:`gguf_name` never produces (named).
    """
    for hf, gg in _GLOBAL_NAMES.items():
        if gg == name:
            return hf
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    inverse = {gg: hf for hf, gg in _LAYER_NAMES.items()}
    if m and m.group(2) in inverse:
        return f"model.layers.{int(m.group(1))}.{inverse[m.group(2)]}"
    raise ValueError(f"tensor {name!r} is not a llama.cpp LLaMA tensor name")


def layer_of(name: str) -> int | None:
    """The block index of a llama.cpp (``blk.N.``) or Hugging Face (``model.layers.N.``) tensor name.

    Parameters
    ----------
    name : str
        Any tensor name; None when it has no ``blk.N.`` / ``model.layers.N.`` prefix.
    """
    m = re.match(r"(?:blk|model\.layers)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def hparams(config: dict[str, Any]) -> dict[str, int]:
    """n_layer, n_head, n_head_kv, n_embd, head_dim of a LLaMA ``config.json``.

    Parameters
    ----------
    config : dict or None
        A LLaMA ``config.json`` (``architectures[0]`` one of LLaMA's, ``num_hidden_layers``,
        ``num_attention_heads``, ``hidden_size``; ``num_key_value_heads`` and ``head_dim`` optional).

    Raises
    ------
    ValueError
        A missing key (named) or an architecture other than LLaMA's.
    """
    if not config:
        raise ValueError("the source has no config.json: the LLaMA hyperparameters (layers, heads) come from it; "
                         "pass the model folder rather than bare .safetensors files")
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in LLAMA_ARCHITECTURES:
        raise ValueError(f"config.json architectures[0]={arch!r}; GGUF output supports {', '.join(LLAMA_ARCHITECTURES)}")
    try:
        n_head = int(config["num_attention_heads"])
        n_embd = int(config["hidden_size"])
        return {"n_layer": int(config["num_hidden_layers"]), "n_head": n_head,
                "n_head_kv": int(config.get("num_key_value_heads") or n_head), "n_embd": n_embd,
                "head_dim": int(config.get("head_dim") or n_embd // n_head)}
    except KeyError as exc:
        raise ValueError(f"config.json lacks {exc.args[0]!r}, needed for the LLaMA hyperparameters") from None


def permute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a Q or K projection from Hugging Face's rotary layout to llama.cpp's.

    Hugging Face rotates the two halves of each head (``rotate_half``); llama.cpp rotates
    adjacent pairs. The converter (``LlamaModel.permute``) maps head ``h``'s rows
    ``[x_0 .. x_{d/2-1}, y_0 .. y_{d/2-1}]`` to ``[x_0, y_0, x_1, y_1, ...]``:
    ``w.reshape(n_head, 2, d/2, in).swapaxes(1, 2).reshape(w.shape)``; for K pass
    ``n_head = num_key_value_heads``.

    Parameters
    ----------
    w : ndarray, shape (rows, ...)
        A Q or K projection (rows = n_head * head_dim); any dtype.
    n_head : int >= 1
        Heads of ``w``; ``rows / n_head`` must be even (ValueError otherwise).
    """
    rows, n_head = w.shape[0], check_int("n_head", n_head, min=1)
    if rows % (2 * n_head):
        raise ValueError(f"a projection of {rows} rows cannot be split into {n_head} heads of even size")
    return np.ascontiguousarray(w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute_rope_rows`: llama.cpp's Q/K row order back to Hugging Face's.

    Head ``h``'s rows ``[x_0, y_0, x_1, y_1, ...]`` become ``[x_0 .. x_{d/2-1}, y_0 .. y_{d/2-1}]``.

    Parameters
    ----------
    w : ndarray, shape (rows, ...)
        A Q or K projection in llama.cpp's row order; any dtype.
    n_head : int >= 1
        Heads of ``w``; ``rows / n_head`` must be even (ValueError otherwise).
    """
    rows, n_head = w.shape[0], check_int("n_head", n_head, min=1)
    if rows % (2 * n_head):
        raise ValueError(f"a projection of {rows} rows cannot be split into {n_head} heads of even size")
    return np.ascontiguousarray(w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def gguf_metadata(config: dict[str, Any], name: str, file_type: int, folder: str | Path | None = None
                  ) -> dict[str, Any]:
    """The ``general.*``, ``llama.*`` and ``tokenizer.*`` metadata the converter writes for a LLaMA folder.

    Keys and order of ``TextModel.set_gguf_parameters`` + ``LlamaModel.set_gguf_parameters``
    (``llama.attention.key_length`` / ``value_length`` only when ``config.json`` has
    ``head_dim``); integer values are UINT32 and floats FLOAT32 (gguf-py ``GGUFWriter.add_*``).
    The vocabulary comes from ``folder``'s ``tokenizer.json`` through
    :func:`refquant.checkpoint.gguf_vocab.tokenizer_metadata` (GPT-2-style byte-level BPE).
    Without a ``tokenizer.json``, or with one of another kind (a warning says why), it writes
    ``tokenizer.ggml.model = "no_vocab"``, which llama.cpp loads as a model without a
    vocabulary (``llama_vocab::impl::load``, ``LLAMA_VOCAB_TYPE_NONE``): it evaluates token
    ids but cannot tokenize text.

    Parameters
    ----------
    config : dict
        The folder's ``config.json`` (a LLaMA architecture, :func:`hparams`).
    name : str
        ``general.name``; any string.
    file_type : int >= 0
        ``general.file_type`` (a llama_ftype, :func:`refquant.formats.gguf_recipes.file_type`), stored as UINT32.
    folder : str, Path or None
        The folder whose ``tokenizer.json`` gives the vocabulary; None writes ``no_vocab``.
    """
    from refquant.checkpoint.gguf_vocab import tokenizer_metadata
    from refquant.io.gguf_metadata import GGUFValue, GGUFValueType

    hp = hparams(config)

    def u32(v: Any) -> GGUFValue:
        return GGUFValue(int(v), GGUFValueType.UINT32)

    def f32(v: Any) -> GGUFValue:
        return GGUFValue(float(v), GGUFValueType.FLOAT32)

    meta: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": name,
        "llama.block_count": u32(hp["n_layer"]),
        "llama.context_length": u32(config.get("max_position_embeddings", 2048)),
        "llama.embedding_length": u32(hp["n_embd"]),
        "llama.feed_forward_length": u32(config["intermediate_size"]),
        "llama.attention.head_count": u32(hp["n_head"]),
        "llama.attention.head_count_kv": u32(hp["n_head_kv"]),
        "llama.rope.freq_base": f32(config.get("rope_theta", 10000.0)),
        "llama.attention.layer_norm_rms_epsilon": f32(config.get("rms_norm_eps", 1e-6)),
    }
    if config.get("head_dim"):
        meta["llama.attention.key_length"] = u32(hp["head_dim"])
        meta["llama.attention.value_length"] = u32(hp["head_dim"])
    meta.update({
        "general.file_type": u32(file_type),
        "llama.vocab_size": u32(config["vocab_size"]),
        "llama.rope.dimension_count": u32(hp["head_dim"]),
        "general.quantization_version": u32(2),  # GGML_QNT_VERSION
    })
    vocab: dict[str, Any] = {"tokenizer.ggml.model": "no_vocab"}
    if folder is not None and (Path(folder) / "tokenizer.json").is_file():
        try:
            vocab = tokenizer_metadata(folder, int(config["vocab_size"]))
        except ValueError as exc:
            warnings.warn(f"the .gguf gets no vocabulary (llama.cpp can evaluate it but not tokenize text): {exc}",
                          stacklevel=2)
    meta.update(vocab)
    return meta
