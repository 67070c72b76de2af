"""llama.cpp's quantization mixtures applied to a :class:`~refquant.model.CausalLM`, and a LLaMA ``.gguf`` read back.

:func:`quantize_mixture` gives every tensor of the model the ggml type that
:func:`refquant.formats.gguf_recipes.tensor_type` (llama-quantize's per-tensor rule) assigns it,
quantizes it with :func:`refquant.gguf.quantize` and keeps the dequantized values: the model
that a ``refquant quantize --to q4_k_m`` file computes, without writing the file. The
embedding and the LM head are quantized too (llama.cpp quantizes ``token_embd`` to the
mixture's default type and ``output`` to Q6_K), the norms stay float32.

:func:`load_gguf` reads a LLaMA-architecture ``.gguf`` (llama.cpp names, Q/K rows in its rotary
order) back into a CausalLM with the dequantized weights, the hyperparameters coming from the
file's ``llama.*`` metadata: the inverse of the writer, used to run refquant's forward on exactly
the weights llama.cpp runs.

Activations stay float32 in both: llama.cpp's CPU kernels also round each activation row to
Q8_K (K-quants) or Q8_0 before the dot products; that is not modelled here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from refquant.checkpoint import llama
from refquant.formats import gguf_recipes

__all__ = ["tensor_types", "quantize_mixture", "load_gguf"]


def tensor_types(recipe: str, shapes: Mapping[str, tuple[int, ...]], *, n_layer: int, n_gqa: int,
                 has_output: bool, has_imatrix: bool = False) -> dict[str, tuple[str, str]]:
    """Hugging Face tensor name -> (llama.cpp name, ggml type) under ``recipe``, in the order
    llama-quantize writes (and checks) them: the plan of both the checkpoint pipeline
    (:func:`refquant.checkpoint.quantize.plan_units`) and :func:`quantize_mixture`.

    Parameters
    ----------
    recipe : str
        A GGUF recipe (:data:`refquant.formats.gguf_recipes.GGUF_RECIPES`, lowercase).
    shapes : mapping of str -> tuple of int
        Hugging Face tensor name -> shape (NumPy order). Tensors the converter drops
        (:func:`refquant.checkpoint.llama.gguf_name` gives None) are left out of the result.
    n_layer : int
        Number of blocks, >= 1.
    n_gqa : int
        ``n_head / n_head_kv``, >= 1.
    has_output : bool
        False for tied embeddings (no ``lm_head.weight``).
    has_imatrix : bool
        An importance matrix will be given (llama-quantize's choices depend on it).

    Raises
    ------
    ValueError
        As :func:`refquant.formats.gguf_recipes.tensor_type` (unknown recipe, a row length
        the type cannot take).
    """
    named = [(gname, name) for name in shapes if (gname := llama.gguf_name(name)) is not None]
    out = {}
    for gname, name in sorted(named, key=lambda e: _llama_order(e[0])):
        out[name] = (gname, gguf_recipes.tensor_type(gname, tuple(shapes[name]), recipe, n_layer, n_gqa=n_gqa,
                                                     has_output=has_output, has_imatrix=has_imatrix))
    return out


def _llama_order(name: str) -> tuple[int, str]:
    """llama-model-loader's ``weight_name_comparer``: block number (-1 for none), then name."""
    layer = llama.layer_of(name)
    return (-1 if layer is None else layer, name)


def _round_trip(w: np.ndarray, qtype: str) -> tuple[np.ndarray, int]:
    """``w`` after storage in ``qtype`` and the bytes it takes."""
    from refquant import gguf

    if qtype == "f32":
        return w, w.size * 4
    if qtype == "f16":
        return w.astype(np.float16).astype(np.float32), w.size * 2
    if qtype == "bf16":
        import ml_dtypes

        return w.astype(ml_dtypes.bfloat16).astype(np.float32), w.size * 2
    data = gguf.quantize(w, qtype)
    return np.asarray(gguf.dequantize(data, qtype, w.shape), dtype=np.float32), int(data.nbytes)


def quantize_mixture(model: Any, recipe: str) -> Any:
    """The model with every tensor stored as llama-quantize's ``recipe`` stores it (see the module).

    Parameters
    ----------
    model : refquant.model.CausalLM
    recipe : str
        A GGUF recipe (:data:`refquant.formats.gguf_recipes.GGUF_RECIPES`): a mixture such as
        ``"q4_k_m"`` or a single ggml type.

    Returns
    -------
    CausalLM
        Block projections are :class:`~refquant.model.linear.WeightOnlyLinear` (float32
        activations) whose ``weight_bytes`` are the stored bytes; ``other_parameter_bytes()``
        counts the embedding and head in their ggml types.
    """
    recipe = gguf_recipes.check_recipe(recipe)
    cfg = model.config
    weights = model.tensors()
    plan = tensor_types(recipe, {n: w.shape for n, w in weights.items()}, n_layer=cfg.num_hidden_layers,
                        n_gqa=cfg.num_attention_heads // cfg.num_key_value_heads,
                        has_output="lm_head.weight" in weights)
    stored, nbytes, qtypes = {}, {}, {}
    for name, w in weights.items():
        qtypes[name] = plan[name][1]
        stored[name], nbytes[name] = _round_trip(np.asarray(w, dtype=np.float32), qtypes[name])
    return _stored_model(cfg, stored, nbytes, qtypes, model.tokenizer)


def _stored_model(cfg: Any, stored: dict[str, np.ndarray], nbytes: dict[str, int], qtypes: dict[str, str],
                  tokenizer: Any) -> Any:
    """A CausalLM of dequantized tensors that reports their stored bytes."""
    from refquant.model import CausalLM
    from refquant.model.linear import WeightOnlyLinear

    new = CausalLM(cfg, stored, tokenizer, storage_bytes=nbytes)
    return new.with_linears({name: WeightOnlyLinear(stored[name + ".weight"], None,
                                                    weight_bytes=nbytes[name + ".weight"],
                                                    scheme=qtypes[name + ".weight"], act_dtype="float32")
                             for name in new.linears()})


def load_gguf(path: str | os.PathLike[str], tokenizer: Any = None) -> Any:
    """A LLaMA-architecture ``.gguf`` as a :class:`~refquant.model.CausalLM` with dequantized weights.

    Parameters
    ----------
    path : path
        A file with ``general.architecture = "llama"`` and llama.cpp's tensor names (what
        ``refquant quantize --to RECIPE`` and ``convert_hf_to_gguf.py`` write).
    tokenizer : tokenizers.Tokenizer, optional
        For :meth:`CausalLM.encode` (the file's own vocabulary is not turned back into one).

    Raises
    ------
    ValueError
        Another architecture, or a tensor that is not a LLaMA tensor (named).
    """
    from refquant.io.gguf_file import read
    from refquant.model import LlamaConfig

    f = read(path)
    arch = f.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{os.fspath(path)!r} has general.architecture={arch!r}; load_gguf reads 'llama' files")

    def key(name: str, default: Any = None) -> Any:
        value = f.get(f"llama.{name}", default)
        if value is None:
            raise ValueError(f"{os.fspath(path)!r} lacks the metadata key 'llama.{name}'")
        return value

    n_embd, n_head = int(key("embedding_length")), int(key("attention.head_count"))
    n_head_kv = int(key("attention.head_count_kv", n_head))
    has_output = "output.weight" in f.tensors
    cfg = LlamaConfig(vocab_size=int(f.tensors["token_embd.weight"].shape[0]), hidden_size=n_embd,
                      intermediate_size=int(key("feed_forward_length")), num_hidden_layers=int(key("block_count")),
                      num_attention_heads=n_head, num_key_value_heads=n_head_kv,
                      head_dim=int(key("attention.key_length", n_embd // n_head)),
                      rms_norm_eps=float(key("attention.layer_norm_rms_epsilon")),
                      rope_theta=float(key("rope.freq_base", 10000.0)),
                      max_position_embeddings=int(key("context_length")), tie_word_embeddings=not has_output)
    weights, nbytes, qtypes = {}, {}, {}
    for gname, t in f.tensors.items():
        name = llama.hf_name(gname)
        w = t.to_float()
        if gname.endswith("attn_q.weight"):
            w = llama.unpermute_rope_rows(w, n_head)
        elif gname.endswith("attn_k.weight"):
            w = llama.unpermute_rope_rows(w, n_head_kv)
        weights[name], nbytes[name], qtypes[name] = w, t.nbytes, str(t.qtype)
    return _stored_model(cfg, weights, nbytes, qtypes, tokenizer)
