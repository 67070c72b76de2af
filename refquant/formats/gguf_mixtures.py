"""llama.cpp's file types (``Q4_K_M``, ``Q3_K_S``, ``IQ3_M`` ...) as data: mixtures, not block types.

``llama-quantize model.gguf out.gguf Q4_K_M`` does not write one block type: it picks a
block type *per tensor* from the tensor's role and layer. ``Q4_K_M`` is Q4_K for most
tensors and Q6_K for ``output.weight`` and for ``attn_v`` / ``ffn_down`` in a subset of
layers. refquant's codec (:func:`refquant.gguf.quantize`) works on one tensor and one
block type; this table lets it answer a mixture name with what the name means and the
block type to use instead.

``base`` is the block type of the tensors no rule changes (``llama_ftype_get_default_type``);
``rules`` summarizes ``llama_tensor_get_type_impl``. Common to every k-quant and i-quant
mixture: ``output.weight`` (and a tied ``token_embd``) becomes Q6_K (Q5_K for the IQ1 / IQ2
mixtures, Q8_0 when its rows are not a multiple of 256), and a tensor whose rows are not a
multiple of the block size falls back to a 32-block type (Q4_K -> Q5_0, Q6_K -> Q8_0, ...).
"In use_more_bits layers" means the first and last eighth of the layers and every third
layer in between. Rules for 70B, Falcon and 8-expert models are left out. A name that is also
a block type (``Q2_K``, and the file types that are one type throughout: ``Q4_0``, ``Q8_0``,
``Q6_K``, ``IQ4_XS`` ...) means the block type to :func:`refquant.gguf.quantize`.

References
----------
ggml-org/llama.cpp ``src/llama-quant.cpp`` at 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714:
``llama_ftype_get_default_type``, ``llama_tensor_get_type_impl``, ``tensor_type_fallback``.
"""

from __future__ import annotations

from dataclasses import dataclass

from refquant._validate import normalize_name

__all__ = ["Mixture", "MIXTURES", "mixture_hint"]


@dataclass(frozen=True)
class Mixture:
    """One llama-quantize file type: the block type of most tensors and the exceptions."""

    name: str             #: llama-quantize's spelling, "Q4_K_M"
    base: str             #: block type of the tensors no rule changes (lowercase GGUF name)
    rules: str            #: the other tensors that get another type
    output: str = "q6_k"  #: block type of output.weight


MIXTURES: dict[str, Mixture] = {normalize_name(m.name): m for m in (
    Mixture("Q2_K", "q2_k", "attn_v q3_k (q4_k with GQA >= 4), ffn_down and attn_output q3_k"),
    Mixture("Q2_K_S", "q2_k", "attn_v q4_k with GQA >= 4, ffn_down q4_k in the first eighth of the layers; "
                              "needs an importance matrix"),
    Mixture("Q3_K_S", "q3_k", "no other exceptions"),
    Mixture("Q3_K_M", "q3_k", "attn_v q5_k in the first two layers and q4_k after, ffn_down q5_k in the first "
                              "16th of the layers and q4_k after, attn_output and attn_qkv q4_k"),
    Mixture("Q3_K_L", "q3_k", "attn_v, ffn_down and attn_output q5_k, attn_qkv q4_k"),
    Mixture("Q4_K_S", "q4_k", "attn_v q5_k in the first four layers, ffn_down q5_k in the first eighth"),
    Mixture("Q4_K_M", "q4_k", "attn_v and ffn_down q6_k in use_more_bits layers, attn_qkv q5_k"),
    Mixture("Q5_K_S", "q5_k", "no other exceptions"),
    Mixture("Q5_K_M", "q5_k", "attn_v and ffn_down q6_k in use_more_bits layers, attn_qkv q6_k"),
    Mixture("IQ2_M", "iq2_s", "attn_v and attn_output iq3_s (attn_v q4_k with GQA >= 4), ffn_down iq3_s in the "
                              "first eighth of the layers, token_embd iq3_s; needs an importance matrix", "q5_k"),
    Mixture("IQ3_XS", "iq3_s", "attn_q, attn_k iq3_xxs, ffn_gate / ffn_up iq3_xxs in the middle layers, attn_v "
                               "q4_k with GQA >= 4"),
    Mixture("IQ3_M", "iq3_s", "attn_v q4_k, attn_output q4_k, ffn_down q4_k in the first eighth, attn_qkv q4_k"),
    Mixture("MXFP4_MOE", "mxfp4", "expert (3-D) tensors mxfp4, every other tensor q8_0", "q8_0"),
)}


def mixture_hint(name: str) -> str | None:
    """What the llama.cpp file type ``name`` means and the block type to use, or None.

    >>> mixture_hint("q4_k_m").startswith("'q4_k_m' is llama.cpp's Q4_K_M file type")
    True
    """
    m = MIXTURES.get(normalize_name(name))
    if m is None:
        return None
    return (f"{name!r} is llama.cpp's {m.name} file type, a per-tensor mixture chosen by llama-quantize, not a "
            f"block type: {m.base} for most tensors; {m.rules}; output.weight {m.output}. Use a block type instead, "
            f"e.g. {m.base!r} (refquant.gguf quantizes one tensor with one block type)")
