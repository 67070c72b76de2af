"""Synthetic LLaMA-shaped Hugging Face checkpoints, written lazily (for tests and scale measurements).

The folder looks like a transformers ``LlamaForCausalLM`` save: ``config.json`` and
``model.safetensors`` (or shards with ``model.safetensors.index.json``), tensor names and
shapes of ``modeling_llama.py``. Values are Gaussian with standard deviation
``1/sqrt(in_features)`` (norm weights are 1 + small noise), drawn row block by row block
from a seeded ``numpy.random.Generator``, so a checkpoint of any size is written with a few
megabytes of memory and the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import ml_dtypes
import numpy as np

from refquant.checkpoint.safetensors_io import write_safetensors

__all__ = ["llama_config", "llama_tensor_shapes", "write_llama"]

_ROWS_PER_CHUNK_ELEMS = 1 << 22


def llama_config(hidden: int = 64, n_layers: int = 2, n_heads: int = 4, n_kv_heads: int = 2,
                 intermediate: int | None = None, vocab: int = 256, dtype: str = "bfloat16",
                 tie_embeddings: bool = False) -> dict:
    """A ``LlamaForCausalLM`` ``config.json``.

    Parameters
    ----------
    hidden : int >= 1
        ``hidden_size``, a multiple of ``n_heads`` (not checked: a test-model builder).
    n_layers : int >= 1
    n_heads : int >= 1
    n_kv_heads : int >= 1
        Divides ``n_heads``.
    intermediate : int >= 1 or None
        ``intermediate_size``; None: ``4 * hidden``.
    vocab : int >= 1
    dtype : {"bfloat16", "float16", "float32"}
        ``torch_dtype``, the dtype :func:`write_llama` stores.
    tie_embeddings : bool
        ``tie_word_embeddings`` (no ``lm_head.weight``).
    """
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": intermediate or 4 * hidden, "num_hidden_layers": n_layers,
            "num_attention_heads": n_heads, "num_key_value_heads": n_kv_heads, "vocab_size": vocab,
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "hidden_act": "silu", "tie_word_embeddings": tie_embeddings, "torch_dtype": dtype}


def llama_tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of ``LlamaForCausalLM`` for ``config`` (transformers ``modeling_llama.py``).

    Parameters
    ----------
    config : dict
        A LLaMA ``config.json`` with ``hidden_size``, ``intermediate_size``, ``vocab_size``,
        ``num_attention_heads``, ``num_key_value_heads``, ``num_hidden_layers``.
    """
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd = h // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                       p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    shapes["model.norm.weight"] = (h,)
    if not config.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (v, h)
    return shapes


def _values(name: str, shape: tuple[int, ...], seed: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    rng = np.random.default_rng([seed, sum(name.encode()) * 1_000_003 + len(name)])
    if len(shape) == 1:
        yield (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
        return
    rows, cols = shape
    step = max(1, _ROWS_PER_CHUNK_ELEMS // cols)
    std = np.float32(1.0 / np.sqrt(cols))
    for start in range(0, rows, step):
        n = min(step, rows - start)
        yield (rng.standard_normal((n, cols), dtype=np.float32) * std).astype(dtype)


def write_llama(folder: str | os.PathLike[str], config: dict, *, seed: int = 0, n_shards: int = 1) -> Path:
    """Write a synthetic checkpoint for ``config`` into ``folder`` (created); returns the folder.

    Parameters
    ----------
    folder : str or os.PathLike
        Created if missing; existing files of the same names are replaced.
    config : dict
        As :func:`llama_config` returns (``torch_dtype`` bfloat16, float16 or float32).
    seed : int >= 0
        Seeds every tensor's values (with its name).
    n_shards : int >= 1
        Safetensors files the tensors are split over (an index file when that gives more than one).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16),
             "float32": np.dtype(np.float32)}[config.get("torch_dtype", "float32")]
    st = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[config.get("torch_dtype", "float32")]
    shapes = list(llama_tensor_shapes(config).items())
    per = -(-len(shapes) // n_shards)
    groups = [shapes[k:k + per] for k in range(0, len(shapes), per)]
    weight_map = {}
    for k, group in enumerate(groups):
        fname = "model.safetensors" if len(groups) == 1 else f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        specs = [(n, st, s) for n, s in group]
        with open(folder / fname, "wb") as f:
            write_safetensors(f, specs, lambda i, n: _values(n, dict(group)[n], seed, dtype), {"format": "pt"})
        weight_map.update({n: fname for n, _ in group})
    if len(groups) > 1:
        total = sum(math.prod(s) * dtype.itemsize for _, s in shapes)
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
