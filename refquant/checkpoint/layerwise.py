"""Layer-sequential GPTQ over a whole LLaMA checkpoint, with statistics computed in shards.

The flow of AutoGPTQ / GPTQModel (``quantize`` of ``BaseGPTQForCausalLM``: one decoder
block at a time, its inputs being the previous block's outputs *with that block already
quantized*), cut into executor tasks:

1. The calibration token ids are split into ``n_shards`` fixed shards; shard ``s``'s
   hidden states entering block ``l`` live in ``DST.partial/calib/h{l}_s{s}.npy``
   (the embedding rows for ``l = 0``).
2. Statistics: one task per shard runs block ``l`` (float weights,
   :func:`refquant.model.llama.decoder_block`, the forward pass of
   :class:`~refquant.model.CausalLM`, its ``on_input`` hook capturing the linears' inputs) and returns the :class:`HessianAccumulator` of each
   linear input (``ΣXᵀX``); the main process merges them in shard order (so the sums,
   and the bytes, do not depend on which worker finished first).
3. The seven linear layers of block ``l`` are quantized in parallel, one task each
   (:func:`refquant.algorithms.gptq` with the merged Hessian of its input), and journaled
   in the GPTQ layout (:mod:`refquant.layouts.gptq`).
4. Propagation: one task per shard runs block ``l`` again with the weights decoded from
   the journaled layout (exactly what a loader will use) and writes ``h{l+1}_s{s}``; the
   files of block ``l`` are deleted when every shard has its next ones.

Within a block the modules share one pass of statistics (q/k/v, o, gate/up and down are
not re-measured after their predecessors in the block are quantized: AutoGPTQ's
``true_sequential=False``). Executor workers read the checkpoint and ``DST.partial`` by
path: on a cluster both must be on a shared filesystem.

A kill at any point resumes at the first block with unjournaled modules: its hidden
states are on disk (or are rebuilt from the previous block's, which are kept until
then), and everything is deterministic, so the result is byte-identical.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refquant.checkpoint.journal import Journal, JournalError
from refquant.checkpoint.source import Checkpoint

__all__ = ["run_gptq", "gptq_module_task", "run_block", "GPTQ_PARAMS"]

#: the ``gptq-4bit-g128`` recipe: AutoGPTQ's defaults besides bits and group size
GPTQ_PARAMS = {"bits": 4, "group_size": 128, "desc_act": False, "sym": True, "damp_percent": 0.01}


def gptq_module_task(ck: Checkpoint, hf_name: str, H: np.ndarray
                     ) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    """GPTQ of one linear layer with Hessian ``H``, as its ``qweight/qzeros/scales/g_idx`` tensors.

    Parameters
    ----------
    ck : refquant.checkpoint.source.Checkpoint
        The source checkpoint (read lazily).
    hf_name : str
        A block linear's Hugging Face name in ``ck``.
    H : ndarray of float, shape (in_features, in_features)
        Its Hessian ``2 XᵀX / N`` (symmetric positive semi-definite).
    """
    from refquant.algorithms import gptq
    from refquant.checkpoint.safetensors_io import dtype_name
    from refquant.layouts import gptq as layout

    W = ck.float32(hf_name)
    p = GPTQ_PARAMS
    try:
        r = gptq(W, H, bits=p["bits"], group_size=p["group_size"], act_order=p["desc_act"], sym=p["sym"],
                 damp=p["damp_percent"])
    except ValueError as exc:
        raise ValueError(f"tensor {hf_name!r} (shape {W.shape}): GPTQ failed: {exc}") from None
    prefix = hf_name[: -len(".weight")]
    return [(f"{prefix}.{k}", dtype_name(v.dtype), tuple(v.shape), np.ascontiguousarray(v).reshape(-1).view(np.uint8))
            for k, v in layout.encode(r, version=1).items()]


def run_block(config: dict[str, Any], w: dict[str, np.ndarray], h: np.ndarray,
              on_input: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
    """Block ``h -> h'`` with one layer's weights ``w`` (float32, by their names after ``model.layers.{i}.``),
    through :func:`refquant.model.llama.decoder_block`; biases (Qwen2's q/k/v) are used when present.

    Parameters
    ----------
    config : dict
        The LLaMA ``config.json`` (:func:`refquant.checkpoint.llama.hparams`).
    w : dict of str -> ndarray of float32
        One block's weights by their names after ``model.layers.{i}.``.
    h : ndarray of float32, shape (samples, seq_len, hidden)
        The hidden states entering the block.
    on_input : callable or None
        ``on_input(name, x)`` sees the input ``x`` of each linear ``name``; None: nothing.
    """
    from refquant.model.linear import Linear
    from refquant.model.llama import BLOCK_LINEARS, LlamaConfig, decoder_block

    norms = {n: w[n + ".weight"] for n in ("input_layernorm", "post_attention_layernorm")}
    linears = {n: Linear(w[n + ".weight"], w.get(n + ".bias")) for n in BLOCK_LINEARS}
    return decoder_block(LlamaConfig.from_dict(config), h, norms, linears, "", on_input)


def capture_inputs(captured: dict[str, np.ndarray]) -> Callable[[str, np.ndarray], None]:
    """An ``on_input`` hook storing each shared input once, under the first projection of its
    :data:`~refquant.model.llama.BLOCK_INPUTS` group (``self_attn.q_proj``, ``self_attn.o_proj``, ...)."""
    from refquant.model.llama import BLOCK_INPUTS

    first = {name: group[0] for group in BLOCK_INPUTS for name in group}

    def hook(name: str, x: np.ndarray) -> None:
        captured.setdefault(first[name], x)

    return hook


def _layer_weights(ck: Checkpoint, layer: int, quantized: dict[str, list[tuple[str, str, tuple[int, ...], int, str]]]
                   ) -> dict[str, np.ndarray]:
    """Block ``layer``'s weights (float32) by local name; linears decoded from their journaled GPTQ parts."""
    from refquant.checkpoint.safetensors_io import DTYPES
    from refquant.layouts import gptq as layout

    prefix = f"model.layers.{layer}."
    w = {n[len(prefix):]: ck.float32(n) for n in ck.tensors
         if n.startswith(prefix) and n.endswith(("norm.weight", ".bias"))}
    for module, parts in quantized.items():
        tensors = {}
        for name, kind, shape, offset, path in parts:
            dt = DTYPES[kind]
            count = math.prod(shape)
            tensors[name.rsplit(".", 1)[1]] = np.fromfile(path, dtype=dt, count=count, offset=offset).reshape(shape)
        w[module[len(prefix):]] = layout.decode(tensors, GPTQ_PARAMS["bits"], GPTQ_PARAMS["group_size"], version=1)
    if quantized:
        return w
    return {**w, **{n[len(prefix):]: ck.float32(n) for n in ck.tensors if n.startswith(prefix)}}


def _stats_task(ck: Checkpoint, layer: int, h_path: str) -> dict[str, Any]:
    from refquant.calibration.hessian import HessianAccumulator

    seen: dict[str, np.ndarray] = {}
    run_block(ck.config, _layer_weights(ck, layer, {}), np.load(h_path), capture_inputs(seen))
    return {first: HessianAccumulator().add(x) for first, x in seen.items()}


def _propagate_task(ck: Checkpoint, layer: int, h_path: str, out_path: str,
                    quantized: dict[str, list[tuple[str, str, tuple[int, ...], int, str]]]) -> None:
    _save(out_path, run_block(ck.config, _layer_weights(ck, layer, quantized), np.load(h_path)))


_EMBED_BLOCK_ELEMENTS = 1 << 24  # embedding rows read at once (64 MB of float32), not the whole table


def _embed_task(ck: Checkpoint, ids: np.ndarray, out_path: str) -> None:
    """The embedding rows of ``ids``, reading the table in row blocks (a 128k x 16k table is 8 GB of float32)."""
    name = "model.embed_tokens.weight"
    vocab, hidden = ck.tensors[name].shape
    out = np.empty(ids.shape + (hidden,), dtype=np.float32)
    step = max(1, _EMBED_BLOCK_ELEMENTS // hidden)
    for start in range(0, vocab, step):
        here = (ids >= start) & (ids < start + step)
        if here.any():
            out[here] = ck.float32(name, (start, min(vocab, start + step)))[ids[here] - start]
    _save(out_path, out)


def _save(path: str, a: np.ndarray) -> None:
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy"
    np.save(tmp, np.ascontiguousarray(a, dtype=np.float32))
    os.replace(tmp, path)


def _map(executor: cf.Executor | None, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``[fn(*c) for c in calls]`` on the executor; results in call order."""
    if executor is None:
        return [fn(*c) for c in calls]
    futures = [executor.submit(fn, *c) for c in calls]
    return [f.result() for f in futures]


def _fold(executor: cf.Executor | None, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
          merge: Callable[[Any, Any], Any]) -> Any:
    """``merge(...merge(fn(*calls[0]), fn(*calls[1]))..., fn(*calls[-1]))``: the shards' statistics summed
    in call order (so the bytes do not depend on which worker finishes first), each result dropped
    once added, so that at most two sets of statistics are held besides those still in flight."""
    if executor is None:
        results = (fn(*c) for c in calls)
    else:
        futures = [executor.submit(fn, *c) for c in calls]
        futures.reverse()
        results = (futures.pop().result() for _ in range(len(futures)))
    total = next(results)
    for part in results:
        total = merge(total, part)
    return total


def run_gptq(ck: Checkpoint, units: list[Any], journal: Journal, executor: cf.Executor | None,
             calibration: np.ndarray, n_shards: int, run_units: Callable[..., None]) -> None:
    """Run the GPTQ units (``unit.args[0]`` the weight's name, block by block); see the module.

    ``run_units(indices, extra_args)`` runs and journals units (the same runner as the
    data-free recipes); ``extra_args[i]`` is appended to unit ``i``'s arguments.

    Parameters
    ----------
    ck : refquant.checkpoint.source.Checkpoint
        The source checkpoint.
    units : list of Unit
        The job's units (:func:`refquant.checkpoint.quantize.plan_units`).
    journal : Journal
        The job's journal (``DST.partial``); units it records as done are skipped.
    executor : concurrent.futures.Executor or None
        Where the units of a block run; None runs them in this process.
    calibration : ndarray of int, shape (samples, seq_len)
        Token ids, each in 0 .. vocab_size - 1.
    n_shards : int >= 1
        Fixed shards the calibration samples are split into (the unit of work and of resuming).
    run_units : callable
        ``run_units(indices, extra_args)``: runs and journals units.
    """
    from refquant.checkpoint import llama
    from refquant.model.llama import LlamaConfig

    n_layers = LlamaConfig.from_dict(ck.config).num_hidden_layers
    by_layer: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        if u.task is gptq_module_task:
            by_layer.setdefault(llama.layer_of(u.args[0]), []).append(i)
    calib = journal.folder / "calib"
    calib.mkdir(exist_ok=True)
    shards = np.array_split(np.asarray(calibration), n_shards)

    def h_paths(layer: int) -> list[str]:
        return [os.fspath(calib / f"h{layer:04d}_s{s:03d}.npy") for s in range(n_shards)]

    def parts_of(layer: int) -> dict[str, list[tuple[str, str, tuple[int, ...], int, str]]]:
        out: dict[str, list] = {}
        for i in by_layer.get(layer, []):
            offset = 0
            for t in journal.done[i][0]:
                out.setdefault(units[i].args[0][: -len(".weight")], []).append(
                    (t.name, t.kind, t.shape, offset, os.fspath(journal.part_path(i))))
                offset += t.nbytes
        return {k + ".weight": v for k, v in out.items()}

    def ensure_inputs(layer: int) -> None:
        missing = [(s, p) for s, p in enumerate(h_paths(layer)) if not os.path.exists(p)]
        if not missing:
            return
        if layer == 0:
            _map(executor, _embed_task, [(ck, shards[s], p) for s, p in missing])
            return
        prev = h_paths(layer - 1)
        if not all(os.path.exists(prev[s]) for s, _ in missing):
            raise JournalError(f"{calib} lacks the calibration states of block {layer - 1} needed to resume; "
                               f"restart the job")
        q = parts_of(layer - 1)
        _map(executor, _propagate_task, [(ck, layer - 1, prev[s], p, q) for s, p in missing])

    for layer in range(n_layers):
        todo = [i for i in by_layer.get(layer, []) if i not in journal.done]
        if not todo:
            continue
        ensure_inputs(layer)
        merged = _fold(executor, _stats_task, [(ck, layer, p) for p in h_paths(layer)],
                       lambda a, b: {k: a[k].merge(b[k]) for k in a})
        from refquant.model.llama import BLOCK_INPUTS

        first = {m: group[0] for group in BLOCK_INPUTS for m in group}
        extra = {i: (merged[first[units[i].args[0].split(".", 3)[3][: -len(".weight")]]].H,) for i in todo}
        run_units(todo, extra)
        if layer + 1 < n_layers and any(i not in journal.done for i in by_layer.get(layer + 1, [])):
            ensure_inputs(layer + 1)
        for p in h_paths(layer):
            Path(p).unlink(missing_ok=True)

