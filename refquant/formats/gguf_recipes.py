"""llama.cpp quantization mixtures ("Q4_K_M" ...): which ggml type each tensor gets.

One table (:data:`MIXTURES`: llama.cpp ``llama_ftype`` -> its id and default type, from
``llama_model_quantize_impl``) and one rule function (:func:`tensor_type`, the rules of
``llama_tensor_get_type`` and the "should this tensor be quantized" test of
``llama_model_quantize_impl``), both from ``src/llama-quant.cpp`` in ggml-org/llama.cpp at
commit 8784689fee07c6daabf3487d24e1535534ef6e6b. Only the branches reachable for the
mixtures listed here and for a dense (``n_expert <= 1``, non-Falcon) model or an 8-expert
one are written out. The IQ1/IQ2/IQ3 mixtures (``IQ2_XXS`` ... ``IQ1_M``, ``IQ3_XS``) are the
low-bit branch of ``llama_tensor_get_type`` and its IQ3 cases; llama-quantize refuses them
without an importance matrix for the tensors :func:`requires_imatrix` names. Note that the
mixture ``iq2_s`` stores most tensors as IQ2_XS and ``iq2_m`` as IQ2_S (llama.cpp's naming);
a single ``iq2_s`` type is therefore not available as a ``--pure`` recipe.

Layer counters. llama-quantize counts ``attn_v`` / ``ffn_down`` tensors in the order of its
weight map, which sorts names by block number then by name (``weight_name_comparer`` in
``llama-model-loader.h``); for a dense model the counter of a ``blk.N.`` tensor is therefore
N, which is what :func:`tensor_type` uses.

Besides the mixtures, a recipe may be any single ggml type name (``"q4_k"``, ``"iq4_nl"``):
llama-quantize's ``--pure``, every quantizable tensor gets that type and a row length that the
type cannot take is an error instead of a fallback. ``"f32"``, ``"f16"`` and ``"bf16"`` are the
converter's output types (``convert_hf_to_gguf.py --outtype``): 2-D weights in that type, 1-D
tensors in F32.
"""

from __future__ import annotations

from dataclasses import dataclass

from refquant.io.ggml_types import block_size

__all__ = ["Mixture", "MIXTURES", "UNIMPLEMENTED_MIXTURES", "GGUF_RECIPES", "tensor_type", "is_quantized", "file_type",
           "check_recipe", "requires_imatrix"]


@dataclass(frozen=True)
class Mixture:
    """A llama.cpp ``llama_ftype``: its enum value (``general.file_type``) and default ggml type."""

    ftype: int
    default: str


#: llama_ftype name (lowercase, without ``MOSTLY_``) -> Mixture (llama.h enum values)
MIXTURES: dict[str, Mixture] = {
    "f32": Mixture(0, "f32"), "f16": Mixture(1, "f16"), "bf16": Mixture(32, "bf16"),
    "q4_0": Mixture(2, "q4_0"), "q4_1": Mixture(3, "q4_1"), "q8_0": Mixture(7, "q8_0"),
    "q5_0": Mixture(8, "q5_0"), "q5_1": Mixture(9, "q5_1"),
    "q2_k": Mixture(10, "q2_k"),
    "q3_k_s": Mixture(11, "q3_k"), "q3_k_m": Mixture(12, "q3_k"), "q3_k_l": Mixture(13, "q3_k"),
    "q4_k_s": Mixture(14, "q4_k"), "q4_k_m": Mixture(15, "q4_k"),
    "q5_k_s": Mixture(16, "q5_k"), "q5_k_m": Mixture(17, "q5_k"),
    "q6_k": Mixture(18, "q6_k"),
    "iq4_nl": Mixture(25, "iq4_nl"), "iq4_xs": Mixture(30, "iq4_xs"),
    "tq1_0": Mixture(36, "tq1_0"), "tq2_0": Mixture(37, "tq2_0"),
    # the grid-codebook mixtures
    "iq2_xxs": Mixture(19, "iq2_xxs"), "iq2_xs": Mixture(20, "iq2_xs"), "iq3_xs": Mixture(22, "iq3_s"),
    "iq3_xxs": Mixture(23, "iq3_xxs"), "iq1_s": Mixture(24, "iq1_s"), "iq3_s": Mixture(26, "iq3_s"),
    "iq3_m": Mixture(27, "iq3_s"), "iq2_s": Mixture(28, "iq2_xs"), "iq2_m": Mixture(29, "iq2_s"),
    "iq1_m": Mixture(31, "iq1_m"),
}
#: llama_ftype values whose per-tensor rules are not written out here (they need an importance
#: matrix, types refquant lacks, or are for mixture-of-experts models): named, not recipes
UNIMPLEMENTED_MIXTURES: dict[str, Mixture] = {
    "q2_k_s": Mixture(21, "q2_k"), "mxfp4_moe": Mixture(38, "mxfp4"),
}
_FLOAT_TYPES = ("f32", "f16", "bf16")
# the single ggml types a recipe may name, with their block sizes (from refquant.io.ggml_types)
_BLOCK = {t: block_size(t) for t in ("f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                                     "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "tq1_0", "tq2_0", "mxfp4",
                                     "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m")}
# llama_tensor_get_type's fallback when the row length is not a multiple of the block size
_FALLBACK = {"tq1_0": "q4_0", "tq2_0": "q4_0", "q2_k": "iq4_nl", "q3_k": "iq4_nl", "iq4_xs": "iq4_nl",
             "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0",
             **{t: "iq4_nl" for t in ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m")}}
# the mixtures that take llama_tensor_get_type's low-bit branch, and those whose output gets Q5_K
_IQ_LOW = ("iq2_xxs", "iq2_xs", "iq1_s", "iq2_s", "iq2_m", "iq1_m")
_IQ_OUTPUT_Q5K = _IQ_LOW + ("iq3_xxs",)
# ggml types llama-quantize refuses to write without an importance matrix (IQ1_M and the
# Q2_K of Q2_K_S not for token_embd / output)
_NEEDS_IMATRIX = ("iq2_xxs", "iq2_xs", "iq2_s", "iq1_s")
#: every GGUF recipe name: the mixtures and single ggml types (``--pure``)
GGUF_RECIPES: tuple[str, ...] = tuple(MIXTURES) + tuple(t for t in _BLOCK if t not in MIXTURES)
# substrings of names llama-quantize never quantizes (besides 1-D tensors and norms)
_NOT_QUANTIZED = ("ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj", "ssm_conv1d.weight",
                  "shortconv.conv.weight", "conv1d", "attn_rel_b.weight", ".position_embd.")


def check_recipe(recipe: str) -> str:
    """``recipe`` lowercased, or ValueError listing the GGUF recipes.

    Parameters
    ----------
    recipe : str
        One of :data:`GGUF_RECIPES` (any case).
    """
    r = str(recipe).lower()
    if r not in GGUF_RECIPES:
        raise ValueError(f"recipe={recipe!r} is not a GGUF recipe; allowed: {', '.join(GGUF_RECIPES)}")
    return r


def file_type(recipe: str) -> int:
    """``general.file_type`` of a recipe (a single type uses the mixture of that type, as llama-quantize).

    Parameters
    ----------
    recipe : str
        One of :data:`GGUF_RECIPES` (any case; ValueError otherwise).
    """
    r = check_recipe(recipe)
    if r in MIXTURES:
        return MIXTURES[r].ftype
    same = [m.ftype for m in MIXTURES.values() if m.default == r]
    return same[0] if same else 1024  # LLAMA_FTYPE_GUESSED


def is_quantized(name: str, shape: tuple[int, ...]) -> bool:
    """Whether llama-quantize quantizes a tensor (``llama_model_quantize_impl``'s ``quantize &= ...`` tests).

    ``name`` is the llama.cpp name, ``shape`` in NumPy order.

    Parameters
    ----------
    name : str
        llama.cpp tensor name (``"blk.0.attn_q.weight"``).
    shape : tuple of int
        NumPy order; 0-D and 1-D tensors are never quantized.
    """
    return (name.endswith("weight") and len(shape) >= 2 and "_norm.weight" not in name
            and name not in ("position_embd.weight", "token_types.weight")
            and not any(s in name for s in _NOT_QUANTIZED))


def requires_imatrix(name: str, qtype: str) -> bool:
    """Whether llama-quantize refuses to write tensor ``name`` as ggml type ``qtype`` without
    an importance matrix ("Missing importance matrix for tensor ... in a very low-bit
    quantization", ``llama_model_quantize_impl``): IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S always,
    IQ1_M except for ``token_embd.weight`` and ``output.weight``.

    Parameters
    ----------
    name : str
        llama.cpp tensor name.
    qtype : str
        A ggml type name (any case); types other than the IQ1/IQ2 ones give False.
    """
    q = str(qtype).lower()
    return q in _NEEDS_IMATRIX or (q == "iq1_m" and name not in ("token_embd.weight", "output.weight"))


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def tensor_type(name: str, shape: tuple[int, ...], recipe: str, n_layers: int, *, n_gqa: int = 1,
                n_expert: int = 1, has_imatrix: bool = False, has_output: bool = True, is_70b: bool = False) -> str:
    """The ggml type (lowercase name) of one tensor under ``recipe``.

    Parameters
    ----------
    name : str
        llama.cpp tensor name (``"blk.3.attn_v.weight"``).
    shape : tuple of int
        NumPy order: ``shape[-1]`` is the row length (ggml ``ne[0]``).
    recipe : str
        A mixture (``"q4_k_m"``), a single ggml type (``"q4_k"``), or ``"f32"``/``"f16"``/``"bf16"``.
    n_layers : int
        Number of blocks (``n_layer``).
    n_gqa : int
        ``n_head / n_head_kv``.
    n_expert : int
        Experts per MoE layer (1 for a dense model).
    has_imatrix : bool
        An importance matrix is given (changes Q4_0/Q5_0/IQ4 choices for ``ffn_down``).
    has_output : bool
        The model has its own ``output.weight``; without it ``token_embd`` takes the output's type.
    is_70b : bool
        llama.cpp's model size class is 70B (``attn_v`` gets Q5_K instead of Q3_K/Q4_K).

    Raises
    ------
    ValueError
        Unknown recipe; a single-type recipe whose block size does not divide the row length
        (the tensor is named); a fallback that still fails.
    """
    r = check_recipe(recipe)
    if not is_quantized(name, shape):
        return "f32" if len(shape) <= 1 or r == "f32" else ("bf16" if r == "bf16" else "f16")
    if r in _FLOAT_TYPES:
        return r
    if r not in MIXTURES:  # --pure: one type, no fallback
        if shape[-1] % _BLOCK[r]:
            raise ValueError(f"tensor {name!r} of shape {tuple(shape)}: row length {shape[-1]} is not a multiple "
                             f"of the {r} block size {_BLOCK[r]}; use a mixture recipe (it falls back) or another type")
        return r
    new = _mixture_rule(name, shape, r, MIXTURES[r].default, n_layers, n_gqa, n_expert, has_imatrix, has_output,
                        is_70b)
    if shape[-1] % _BLOCK[new]:
        if new not in _FALLBACK:
            raise ValueError(f"tensor {name!r} of shape {tuple(shape)}: row length {shape[-1]} is not a multiple "
                             f"of the {new} block size {_BLOCK[new]} and {new} has no fallback type")
        new = _FALLBACK[new]
        if shape[-1] % _BLOCK[new]:
            new = "f16"
    return new


def _mixture_rule(name: str, shape: tuple[int, ...], ftype: str, new: str, n_layers: int, n_gqa: int,
                  n_expert: int, has_imatrix: bool, has_output: bool, is_70b: bool) -> str:
    """``llama_tensor_get_type`` before its fallback step (see the module for the source)."""
    m = name.split(".")
    i_layer = int(m[1]) if m[0] == "blk" and len(m) > 2 and m[1].isdigit() else 0
    if name == "output.weight" or (not has_output and name == "token_embd.weight"):
        if shape[-1] % _BLOCK[new]:
            return "q8_0"
        if ftype in _IQ_OUTPUT_Q5K:
            return "q5_k"
        return new if new == "q8_0" else "q6_k"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        if ftype in ("iq2_xxs", "iq2_xs", "iq1_s", "iq1_m"):
            return "q2_k"
        if ftype in ("iq2_s", "iq2_m", "iq3_xxs"):
            return "iq3_s"
        return "q4_k" if ftype in ("tq1_0", "tq2_0") else new
    if ftype in _IQ_LOW:
        return _iq_low_rule(name, ftype, new, i_layer, n_layers, n_gqa, n_expert)
    if "attn_v.weight" in name:
        if ftype == "iq3_xxs":
            new = "q4_k" if n_gqa >= 4 else ("iq3_xxs" if has_imatrix else "iq3_s")
        elif (ftype in ("iq3_xs", "iq3_s") and n_gqa >= 4) or ftype == "iq3_m":
            new = "q4_k"
        elif ftype == "q2_k":
            new = "q4_k" if n_gqa >= 4 else "q3_k"
        elif ftype == "q3_k_m":
            new = "q5_k" if i_layer < 2 else "q4_k"
        elif ftype == "q3_k_l":
            new = "q5_k"
        elif ftype in ("iq4_nl", "iq4_xs") and n_gqa >= 4:
            new = "q5_k"
        elif ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i_layer, n_layers):
            new = "q6_k"
        elif ftype == "q4_k_s" and i_layer < 4:
            new = "q5_k"
        if is_70b and new in ("q3_k", "q4_k"):
            new = "q5_k"
        return "q8_0" if n_expert == 8 else new
    if "attn_k.weight" in name:
        if n_expert == 8:
            return "q8_0"
        return {"iq3_xs": "iq3_xxs", "iq3_xxs": "iq2_s"}.get(ftype, new)
    if "attn_q.weight" in name:
        return {"iq3_xs": "iq3_xxs", "iq3_xxs": "iq2_s"}.get(ftype, new)
    if "ffn_down" in name:
        n = n_layers
        if ftype == "q2_k":
            return "q3_k"
        if ftype == "iq3_xxs" and not has_imatrix:
            return "q4_k" if i_layer < n // 8 else "q3_k"
        if ftype == "iq3_m" and (i_layer < n // 8 or (n_expert == 8 and _use_more_bits(i_layer, n))):
            return "q4_k"
        if ftype == "q3_k_m":
            return "q5_k" if i_layer < n // 16 else "q4_k"
        if ftype == "q3_k_l":
            return "q5_k"
        if ftype == "q4_k_m":
            return "q6_k" if _use_more_bits(i_layer, n) else new
        if i_layer < n // 8 and ftype in ("iq4_nl", "iq4_xs") and not has_imatrix:
            return "q5_k"
        if ftype == "q5_k_m" and _use_more_bits(i_layer, n):
            return "q6_k"
        if ftype == "q4_k_s" and i_layer < n // 8:
            return "q5_k"
        if ftype in ("q4_0", "q5_0") and has_imatrix and i_layer < n // 8:
            return "q4_1" if ftype == "q4_0" else "q5_1"
        return new
    if "attn_output.weight" in name:
        if n_expert == 8:
            return "q5_k" if ftype in ("q2_k", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m", "iq4_xs", "iq3_xs",
                                       "iq3_xxs", "iq3_s", "iq3_m") else new
        return {"q2_k": "q3_k", "q3_k_m": "q4_k", "q3_k_l": "q5_k", "iq3_xxs": "iq3_s", "iq3_m": "q4_k"}.get(ftype, new)
    if "attn_qkv.weight" in name:
        return {"q3_k_m": "q4_k", "q3_k_l": "q4_k", "iq3_m": "q4_k", "q4_k_m": "q5_k", "q5_k_m": "q6_k"}.get(ftype, new)
    if "ffn_gate" in name or "ffn_up" in name:
        return "iq3_xxs" if ftype == "iq3_xs" and n_layers // 8 <= i_layer < 7 * n_layers // 8 else new
    return new


def _iq_low_rule(name: str, ftype: str, new: str, i_layer: int, n_layers: int, n_gqa: int, n_expert: int) -> str:
    """``llama_tensor_get_type``'s branch for the IQ1/IQ2 mixtures (attention V and output,
    the first eighth of ``ffn_down``); its ``ffn_down`` counter is the layer of a dense model."""
    two_bit_s = ftype in ("iq2_s", "iq2_m")
    if "attn_v.weight" in name:
        if n_gqa >= 4 or n_expert >= 4:
            return "q4_k"
        return "iq3_s" if two_bit_s else "q2_k"
    if n_expert == 8 and "attn_k.weight" in name:
        return "q4_k"
    if "ffn_down" in name:
        if i_layer < n_layers // 8:
            return "iq3_s" if two_bit_s else "q2_k"
        return new
    if "attn_output.weight" in name:
        if n_expert == 8:
            return "q5_k"
        if ftype in ("iq1_s", "iq1_m"):
            return "iq2_xxs"
        return "iq3_s" if two_bit_s else new
    return new
