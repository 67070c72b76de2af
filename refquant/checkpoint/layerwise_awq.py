"""Layer-sequential AWQ over a whole LLaMA checkpoint, with statistics computed in shards.

The flow of AutoAWQ (``AwqQuantizer.quantize`` in casper-hansen/AutoAWQ
``awq/quantize/quantizer.py`` at commit 0222940e18d207e3d7cc4cec70f36ff3fd13c326, and
``LlamaAWQForCausalLM.get_layers_for_scaling`` in ``awq/models/llama.py``), one decoder block
at a time, cut into executor tasks:

1. The calibration token ids are split into ``n_shards`` shards (as for GPTQ,
   :mod:`refquant.checkpoint.layerwise`); shard ``s``'s hidden states entering block ``l``
   live in ``DST.partial/calib/h{l}_s{s}.npy``.
2. Statistics and propagation, one task per shard: block ``l`` runs with its float weights
   (:func:`refquant.model.llama.decoder_block`, its ``on_input`` hook capturing the inputs
   ``X`` of the four linear groups) and returns, per group, ``Σ|X|``, ``XᵀX``, the token
   count and the clip search's per-column-group Gram matrices of every
   ``max(1, N // 512)``-th token (:func:`refquant.algorithms.awq.group_grams`); its output
   is the next block's input. As in AutoAWQ (``_get_input_feat`` sets ``self.inps`` to the
   block's output before the block is scaled and quantized), the next block therefore sees
   the float block's output. The main process sums the shards' statistics in shard order.
3. Scale search, one task per group (AutoAWQ's ``get_layers_for_scaling``; the search is
   :func:`refquant.algorithms.awq.search_scale`, llm-awq's grid ``s = s_X^α``):

   ==========================  =======================================  =========================
   previous operator           linears (stacked for the loss)           input
   ==========================  =======================================  =========================
   ``input_layernorm``         ``q_proj``, ``k_proj``, ``v_proj``       RMSNorm(h)
   ``v_proj`` (rows)           ``o_proj``; only when v and o have the   attention context
                               same shape (no grouped-query attention)
   ``post_attention_layernorm`` ``gate_proj``, ``up_proj``               RMSNorm(h')
   ``up_proj`` (rows)          ``down_proj``                            silu(gate) · up
   ==========================  =======================================  =========================

4. The seven linears run in parallel, one task each, and are journaled: the weight is
   ``W diag(s) / s_next`` (its group's ``s`` on the columns, the ``s`` of the group it
   precedes divided out of its rows), clipped by the clip search on the inputs ``X / s``
   (skipped for ``q_proj`` and ``k_proj``, AutoAWQ's ``avoid_clipping``), quantized
   (:func:`refquant.algorithms.awq.quantize_scaled`) and stored in the GEMM layout
   (:mod:`refquant.layouts.awq`). The two norms are journaled divided by their ``s``
   (float16, the dtype of AutoAWQ's export).

Deliberate difference from AutoAWQ: the scale-search loss of a group is the mean squared
error of the stacked linears' outputs (the loss of :func:`refquant.algorithms.awq.awq` for
one linear), not of the whole attention or MLP module's output (AutoAWQ's
``module2inspect``): it is a function of ``XᵀX`` and therefore of statistics that add up
over shards, where the module output needs every token of the calibration set at once.
AutoAWQ's default ``duo_scaling`` (``s = s_X^α / s_W^(1-α)``) is not used: the grid is
llm-awq's, as in :func:`refquant.algorithms.awq.awq`.

A kill at any point resumes at the first block with unjournaled units: its input states
are on disk (written by the previous block's statistics task and deleted only when the
block is done), and every step is deterministic, so the result is byte-identical.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refquant.checkpoint.journal import Journal, JournalError
from refquant.checkpoint.layerwise import _embed_task, _fold, _map, _save, capture_inputs, run_block
from refquant.checkpoint.source import Checkpoint

__all__ = ["run_awq", "awq_module_task", "awq_norm_task", "AWQ_PARAMS", "SCALING_GROUPS", "NO_CLIP"]

#: the ``awq-4bit-g128`` recipe: AutoAWQ's ``quant_config`` defaults and its search constants
AWQ_PARAMS = {"bits": 4, "group_size": 128, "zero_point": True, "version": "gemm", "n_grid": 20, "max_shrink": 0.5,
              "n_sample_tokens": 512}
#: (previous operator, the linears it feeds), AutoAWQ ``LlamaAWQForCausalLM.get_layers_for_scaling``
SCALING_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("self_attn.v_proj", ("self_attn.o_proj",)),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp.up_proj", ("mlp.down_proj",)),
)
#: linears the clip search skips (AutoAWQ ``_search_best_clip``'s ``avoid_clipping``: q·k products)
NO_CLIP = ("self_attn.q_proj", "self_attn.k_proj")

_Stats = dict[str, Any]  # {"abs_sum": (in,), "xtx": (in, in), "n": int, "grams": [(gs, gs)...]}


def _stats_task(ck: Checkpoint, layer: int, h_path: str, out_path: str, offset: int, stride: int
                ) -> dict[str, _Stats]:
    """Float block ``layer`` on one shard: the AWQ statistics of each group's input; writes the output."""
    from refquant.algorithms.awq import group_grams

    prefix = f"model.layers.{layer}."
    w = {n[len(prefix):]: ck.float32(n) for n in ck.tensors if n.startswith(prefix)}
    seen: dict[str, np.ndarray] = {}
    _save(out_path, run_block(ck.config, w, np.load(h_path), capture_inputs(seen)))
    stats = {}
    for _, linears in SCALING_GROUPS:
        X = seen[linears[0]].astype(np.float64)
        stats[linears[0]] = {"abs_sum": np.abs(X).sum(axis=0), "xtx": X.T @ X, "n": X.shape[0],
                             "grams": group_grams(X, AWQ_PARAMS["group_size"], stride, offset)}
    return stats


def _merge(a: _Stats, b: _Stats) -> _Stats:
    return {"abs_sum": a["abs_sum"] + b["abs_sum"], "xtx": a["xtx"] + b["xtx"], "n": a["n"] + b["n"],
            "grams": [x + y for x, y in zip(a["grams"], b["grams"])]}


def _scale_task(ck: Checkpoint, names: list[str], stats: _Stats) -> np.ndarray:
    """The input scale ``s`` (float32) of linears sharing one input, from the merged statistics."""
    from refquant.algorithms.awq import search_scale

    W = np.concatenate([ck.float32(n) for n in names], axis=0)
    p = AWQ_PARAMS
    s, _, _ = search_scale(W, stats["abs_sum"] / stats["n"], stats["xtx"], stats["n"], p["bits"], p["group_size"],
                           zero_point=p["zero_point"], n_grid=p["n_grid"])
    return s


def awq_module_task(ck: Checkpoint, hf_name: str, s_in: np.ndarray | None, s_rows: np.ndarray | None,
                    grams: list[np.ndarray] | None) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    """One linear as AWQ GEMM ``qweight/qzeros/scales`` (and its bias, divided by ``s_rows``, when it has one).

    ``s_in``: its group's scale (columns multiplied; None: not scaled); ``s_rows``: the scale of
    the group it precedes (rows divided; None: none); ``grams``: the clip search's Gram
    matrices of its unscaled input (None: no clip search).

    Parameters
    ----------
    ck : refquant.checkpoint.source.Checkpoint
        The source checkpoint (read lazily).
    hf_name : str
        A block linear's Hugging Face name in ``ck``.
    s_in : ndarray of float, shape (in_features,), or None
        Its group's scale (columns multiplied); None: not scaled.
    s_rows : ndarray of float, shape (out_features,), or None
        The scale of the group it precedes (rows divided); None: none.
    grams : list of ndarray or None
        The clip search's Gram matrices of its unscaled input; None: no clip search.
    """
    from refquant.algorithms.awq import quantize_scaled, search_clip
    from refquant.checkpoint.safetensors_io import dtype_name
    from refquant.layouts import awq as layout

    p = AWQ_PARAMS
    W = ck.float32(hf_name).astype(np.float64)
    if s_in is not None:
        W = W * s_in.astype(np.float64)
    if s_rows is not None:
        W = W / s_rows.astype(np.float64)[:, None]
    try:
        clip_max = None
        if grams is not None:
            if s_in is not None:
                gs = p["group_size"]
                s64 = s_in.astype(np.float64)
                grams = [g / np.outer(s64[c:c + gs], s64[c:c + gs]) for g, c in zip(grams, range(0, W.shape[1], gs))]
            clip_max = search_clip(W, grams, p["bits"], p["group_size"], zero_point=p["zero_point"],
                                   n_grid=p["n_grid"], max_shrink=p["max_shrink"])
        tensors = layout.encode(quantize_scaled(W, clip_max, p["bits"], p["group_size"], zero_point=p["zero_point"]))
    except ValueError as exc:
        raise ValueError(f"tensor {hf_name!r} (shape {W.shape}): AWQ failed: {exc}") from None
    prefix = hf_name[: -len(".weight")]
    out = [(f"{prefix}.{k}", dtype_name(v.dtype), tuple(v.shape), np.ascontiguousarray(v).reshape(-1).view(np.uint8))
           for k, v in tensors.items()]
    if prefix + ".bias" in ck.tensors:
        bias = ck.float32(prefix + ".bias").astype(np.float64)
        if s_rows is not None:
            bias = bias / s_rows.astype(np.float64)
        out.append(_float16(prefix + ".bias", bias))
    return out


def awq_norm_task(ck: Checkpoint, hf_name: str, s: np.ndarray) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    """An RMSNorm weight with the scale of the linears it feeds folded in: ``γ / s`` (float16).

    Parameters
    ----------
    ck : refquant.checkpoint.source.Checkpoint
        The source checkpoint (read lazily).
    hf_name : str
        An RMSNorm weight's Hugging Face name in ``ck``.
    s : ndarray of float, shape (hidden,)
        The (positive) scale of the linears it feeds.
    """
    return [_float16(hf_name, ck.float32(hf_name).astype(np.float64) / s.astype(np.float64))]


def _float16(name: str, x: np.ndarray) -> tuple[str, str, tuple[int, ...], np.ndarray]:
    if not np.all(np.abs(x) <= 65504):
        raise ValueError(f"tensor {name!r}: the AWQ-scaled values exceed the float16 range (max |x| = "
                         f"{float(np.max(np.abs(x))):.6g})")
    return name, "F16", tuple(x.shape), np.ascontiguousarray(x.astype(np.float16)).reshape(-1).view(np.uint8)


def _layer_tasks(ck: Checkpoint, layer: int, stats: dict[str, _Stats], executor: cf.Executor | None
                 ) -> dict[str, tuple[Any, ...]]:
    """Extra arguments of block ``layer``'s units (linear and norm names -> args) after the scale search."""
    prefix = f"model.layers.{layer}."
    groups = []
    for prev, linears in SCALING_GROUPS:
        names = [prefix + m + ".weight" for m in linears]
        if prev == "self_attn.v_proj" and ck.tensors[prefix + prev + ".weight"].shape != ck.tensors[names[0]].shape:
            continue  # grouped-query attention: v's rows do not map onto o's columns (AutoAWQ's shape test)
        groups.append((prev, linears, names))
    scales = _map(executor, _scale_task, [(ck, names, stats[linears[0]]) for _, linears, names in groups])
    s_in: dict[str, np.ndarray] = {}
    s_rows: dict[str, np.ndarray] = {}
    extra: dict[str, tuple[Any, ...]] = {}
    for (prev, linears, _), s in zip(groups, scales):
        for m in linears:
            s_in[m] = s
        if prev.endswith("norm"):
            extra[prefix + prev + ".weight"] = (s,)
        else:
            s_rows[prev] = s
    for _, linears in SCALING_GROUPS:
        grams = stats[linears[0]]["grams"]
        for m in linears:
            extra[prefix + m + ".weight"] = (s_in.get(m), s_rows.get(m), None if m in NO_CLIP else grams)
    return extra


def run_awq(ck: Checkpoint, units: list[Any], journal: Journal, executor: cf.Executor | None,
            calibration: np.ndarray, n_shards: int, run_units: Callable[..., None]) -> None:
    """Run the AWQ units (linears and the norms folded into, ``unit.args[0]`` the name), block by block.

    Parameters
    ----------
    ck, units, journal, executor, calibration, n_shards, run_units : as :func:`refquant.checkpoint.layerwise.run_gptq`
        (the same job, with the AWQ units).
    """
    from refquant.algorithms.awq import clip_stride
    from refquant.model.llama import LlamaConfig

    n_layers = LlamaConfig.from_dict(ck.config).num_hidden_layers
    by_layer: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        if u.task in (awq_module_task, awq_norm_task):
            by_layer.setdefault(int(u.args[0].split(".")[2]), []).append(i)
    calib = journal.folder / "calib"
    calib.mkdir(exist_ok=True)
    calibration = np.asarray(calibration)
    shards = np.array_split(calibration, n_shards)
    offsets = np.cumsum([0] + [s.size for s in shards])[:-1]  # first global token of each shard
    stride = clip_stride(calibration.size, AWQ_PARAMS["n_sample_tokens"])

    def h_paths(layer: int) -> list[str]:
        return [os.fspath(calib / f"awq_h{layer:04d}_s{s:03d}.npy") for s in range(n_shards)]

    for layer in range(n_layers):
        todo = [i for i in by_layer.get(layer, []) if i not in journal.done]
        if not todo:
            continue
        here = h_paths(layer)
        missing = [(s, p) for s, p in enumerate(here) if not os.path.exists(p)]
        if missing and layer > 0:
            raise JournalError(f"{calib} lacks the calibration states entering block {layer} needed to resume; "
                               f"restart the job")
        _map(executor, _embed_task, [(ck, shards[s], p) for s, p in missing])
        merged = _fold(executor, _stats_task, [(ck, layer, here[s], nxt, int(offsets[s]), stride)
                                               for s, nxt in enumerate(h_paths(layer + 1))],
                       lambda a, b: {k: _merge(a[k], b[k]) for k in a})
        extra = _layer_tasks(ck, layer, merged, executor)
        run_units(todo, {i: extra[units[i].args[0]] for i in todo})
        for p in here:
            Path(p).unlink(missing_ok=True)
    for p in h_paths(n_layers):
        Path(p).unlink(missing_ok=True)
