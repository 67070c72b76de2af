"""Whole-checkpoint quantization: ``refquant quantize SRC --to RECIPE --out DST``.

:func:`quantize` (streaming, bounded memory, resumable, any ``concurrent.futures.Executor``);
:func:`~refquant.formats.gguf_recipes.tensor_type` (llama.cpp's per-tensor mixture rules);
:class:`~refquant.checkpoint.source.Checkpoint` (lazy Hugging Face checkpoint reader).
"""

from __future__ import annotations

from refquant.checkpoint.quantize import RECIPES, quantize
from refquant.formats.gguf_recipes import tensor_type
from refquant.checkpoint.source import Checkpoint

__all__ = ["quantize", "tensor_type", "Checkpoint", "RECIPES"]
