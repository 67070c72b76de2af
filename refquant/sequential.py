"""Layer-by-layer calibration of a causal LM, as the GPTQ and AWQ papers quantize whole models.

A calibration algorithm that needs a layer's inputs (GPTQ's Hessian ``2 XᵀX``, AWQ's activation
statistics, SpQR, the mixed-precision saliency) must see the inputs the layer will receive in
the *quantized* model, not the float model's: the error of the blocks before it is part of what
it corrects. GPTQ's ``llama.py`` (``llama_sequential`` in IST-DASLab/gptq) and AutoGPTQ /
llm-awq therefore walk the decoder one block at a time:

1. ``h`` = embeddings of the calibration sequences;
2. for block ``i``, for each group of projections in the order the block uses them —
   ``[q, k, v]``, ``[o]``, ``[gate, up]``, ``[down]`` (GPTQ's ``--true-sequential`` groups) — run
   the block on ``h`` with every projection quantized so far, record the inputs of the group's
   projections, and quantize each of them from its recorded inputs;
3. ``h`` = the output of block ``i`` with all its projections quantized; go to block ``i + 1``.

Every projection is therefore calibrated on the outputs of the already quantized layers before
it. The model must provide ``embed(ids)``, ``block(i, h)``, ``linears()`` and ``with_linears(...)``
(:class:`refquant.model.CausalLM`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refquant.model.llama import BLOCK_INPUTS

__all__ = ["TRUE_SEQUENTIAL", "quantize_sequential"]

#: The projection groups of one LLaMA block, in the order the block computes them.
TRUE_SEQUENTIAL = BLOCK_INPUTS


def quantize_sequential(model: Any, calibration_ids: Any, make_layer: Callable[[str, Any, np.ndarray], Any], *,
                        groups: tuple[tuple[str, ...], ...] = TRUE_SEQUENTIAL,
                        progress: Callable[[int, int], None] | None = None) -> Any:
    """Quantize every block projection from its inputs in the partly quantized model.

    Parameters
    ----------
    model : CausalLM
        The float model (not modified).
    calibration_ids : ndarray of int, shape (n_sequences, seq_len)
        Calibration token sequences (all blocks see them together).
    make_layer : callable
        ``make_layer(name, float_layer, X)`` with ``X`` float32 (tokens, in_features), the layer's
        inputs, returns the quantized replacement (any :mod:`refquant.model.linear` class).
    groups : tuple of tuple of str
        Projection names (relative to the block) quantized together, in order; every
        projection of a block must appear once.
    progress : callable, optional
        Receives ``(projections_done, projections_total)``.

    Returns
    -------
    A new model with every block projection replaced.
    """
    ids = np.asarray(calibration_ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.size == 0:
        raise ValueError(f"calibration_ids must be a non-empty 2-D integer array (n_sequences, seq_len), got shape "
                         f"{ids.shape} dtype {ids.dtype}")
    layers = model.linears()
    n_blocks = model.config.num_hidden_layers
    per_block = sorted(n for g in groups for n in g)
    expected = sorted(name.split(".", 3)[3] for name in layers if name.startswith("model.layers.0."))
    if per_block != expected:
        raise ValueError(f"groups must list each block projection once; got {per_block}, the model has {expected}")
    done, replaced = 0, {}
    h = model.embed(ids)
    for i in range(n_blocks):
        prefix = f"model.layers.{i}."
        for group in groups:
            inputs: dict[str, np.ndarray] = {}

            def record(name: str, x: np.ndarray, group: tuple[str, ...] = group) -> None:
                if name in group:
                    inputs[prefix + name] = np.asarray(x, np.float32).reshape(-1, x.shape[-1])

            model.with_linears(replaced).block(i, h, on_input=record)
            for name in (prefix + n for n in group):
                replaced[name] = make_layer(name, layers[name], inputs[name])
                done += 1
                if progress is not None:
                    progress(done, len(layers))
        h = model.with_linears(replaced).block(i, h)
    return model.with_linears(replaced)
