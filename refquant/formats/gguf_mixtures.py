"""llama.cpp's file types (``Q4_K_M``, ``Q3_K_S``, ``IQ3_M`` ...) named where a block type is expected.

``llama-quantize model.gguf out.gguf Q4_K_M`` does not write one block type: it picks a
block type *per tensor* from the tensor's role and layer. refquant's codec
(:func:`refquant.gguf.quantize`) works on one tensor and one block type, so when it is
given a file type's name it answers with what the name means and the block type to use
instead. The rules themselves live in one place, :mod:`refquant.formats.gguf_recipes`
(``llama_tensor_get_type`` of llama.cpp ``src/llama-quant.cpp``, cited there); this module
only describes what they give for a LLaMA-7B-shaped model (32 blocks, hidden 4096, FFN
11008, vocabulary 32000, no grouped-query attention).
"""

from __future__ import annotations

from dataclasses import dataclass

from refquant._validate import normalize_name
from refquant.formats import gguf_recipes

__all__ = ["Mixture", "MIXTURES", "mixture_hint"]

# the model the descriptions are computed for (llama.cpp's 7B class)
_N_LAYERS = 32
_SHAPES = {"token_embd": (32000, 4096), "attn_q": (4096, 4096), "attn_k": (4096, 4096), "attn_v": (4096, 4096),
           "attn_output": (4096, 4096), "ffn_gate": (11008, 4096), "ffn_up": (11008, 4096),
           "ffn_down": (4096, 11008), "output": (32000, 4096)}


@dataclass(frozen=True)
class Mixture:
    """One llama-quantize file type: the block type of most tensors and what the others get."""

    name: str             #: llama-quantize's spelling, "Q4_K_M"
    base: str             #: block type of the tensors no rule changes (lowercase GGUF name)
    rules: str            #: the other tensors' types for a 7B model (refquant.formats.gguf_recipes)
    implemented: bool = True  #: refquant.formats.gguf_recipes has its rules (``refquant quantize --to``)


def _layers(ids: list[int]) -> str:
    """``[0, 1, 2, 3, 6, 9]`` -> ``"0-3, 6, 9"``."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


def _rules(key: str, base: str) -> str:
    """What :func:`refquant.formats.gguf_recipes.tensor_type` gives the tensors that are not ``base``."""
    parts = []
    for role, shape in _SHAPES.items():
        if role in ("token_embd", "output"):
            kind = gguf_recipes.tensor_type(f"{role}.weight", shape, key, _N_LAYERS)
            if kind != base:
                parts.append(f"{role} {kind}")
            continue
        by_type: dict[str, list[int]] = {}
        for i in range(_N_LAYERS):
            by_type.setdefault(gguf_recipes.tensor_type(f"blk.{i}.{role}.weight", shape, key, _N_LAYERS), []).append(i)
        for kind, ids in by_type.items():
            if kind != base:
                where = "" if len(ids) == _N_LAYERS else f" in layers {_layers(ids)}"
                parts.append(f"{role} {kind}{where}")
    return "; ".join(parts) or "no other types"


def _table() -> dict[str, Mixture]:
    table = {}
    for key, m in gguf_recipes.MIXTURES.items():
        if key not in ("f32", "f16", "bf16"):
            table[key] = Mixture(key.upper(), m.default, _rules(key, m.default))
    for key, m in gguf_recipes.UNIMPLEMENTED_MIXTURES.items():
        table[key] = Mixture(key.upper(), m.default, "", implemented=False)
    return table


#: llama-quantize file types by lowercase name (the float ones are plain types, left out)
MIXTURES: dict[str, Mixture] = _table()


def mixture_hint(name: str) -> str | None:
    """What the llama.cpp file type ``name`` means and the block type to use, or None.

    Parameters
    ----------
    name : str
        Any string (case-insensitive); None when it is not a llama-quantize file type.

    >>> mixture_hint("q4_k_m").startswith("'q4_k_m' is llama.cpp's Q4_K_M file type")
    True
    """
    m = MIXTURES.get(normalize_name(name))
    if m is None:
        return None
    if m.implemented:
        rules = f"for a 32-layer 7B model {m.rules}"
        whole = f"; refquant quantize --to {m.name.lower()} writes the whole mixture"
    else:
        rules, whole = "its other per-tensor rules are not implemented in refquant", ""
    return (f"{name!r} is llama.cpp's {m.name} file type, a per-tensor mixture chosen by llama-quantize, not a "
            f"block type: {m.base} for most tensors; {rules}. Use a block type instead, e.g. {m.base!r} "
            f"(refquant.gguf quantizes one tensor with one block type{whole})")
