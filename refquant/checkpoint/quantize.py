"""Quantize a whole checkpoint: streaming, bounded memory, resumable, on any Executor.

``quantize(src, dst, recipe)`` reads a Hugging Face LLaMA-architecture checkpoint tensor by
tensor (:class:`~refquant.checkpoint.source.Checkpoint`), cuts the job into
units (one tensor each for the data-free recipes), runs them serially or on a
``concurrent.futures.Executor`` (a Dask cluster gives one: ``Client.get_executor()``),
stores each finished unit in the journal beside ``dst``
(:class:`~refquant.checkpoint.journal.Journal`), and when all are done writes the real
output format from the journal's parts into a temporary file or folder that is renamed
onto ``dst``:

=====================  ================================================================
recipe                 output
=====================  ================================================================
GGUF recipes           one ``.gguf`` with llama.cpp's tensor names, Q/K rows in llama.cpp's
(``q4_k_m``, ``q8_0``,   rotary order and the converter's metadata; types per tensor from
``q4_k``, ``f16`` ...)   :func:`refquant.formats.gguf_recipes.tensor_type`
``nf4``, ``nf4-dq``    a Hugging Face folder with bitsandbytes 4-bit Linear weights
                       (``weight``, ``weight.absmax``, ``weight.quant_map``, ``...quant_state``)
                       and ``quantization_config`` (``quant_method: bitsandbytes``)
``gptq-4bit-g128``     a Hugging Face folder in the AutoGPTQ v1 layout (``qweight``, ``qzeros``,
                       ``scales``, ``g_idx``) and ``quantization_config`` (``quant_method: gptq``);
                       layer-sequential with calibration data (:mod:`refquant.checkpoint.layerwise`)
``awq-4bit-g128``      a Hugging Face folder in AutoAWQ's GEMM layout (``qweight``, ``qzeros``,
                       ``scales``; norms with the input scales folded in) and
                       ``quantization_config`` (``quant_method: awq``); layer-sequential with
                       calibration data (:mod:`refquant.checkpoint.layerwise_awq`)
=====================  ================================================================

Memory: a GGUF unit reads its tensor in row blocks (:func:`_gguf_task`) and holds one
block in float32 plus the tensor's output; an ``nf4`` or GPTQ unit holds one tensor in
float32 plus its output. The peak is that times the units in flight, whatever the model size.
Units in flight are bounded by ``max_in_flight`` (default: the executor's worker count
+ 1). Results are journaled in completion order but assembled in plan order, so the
bytes do not depend on the executor, the number of workers, or interruptions.

Values: every tensor is widened exactly to float32 before quantizing, as llama-quantize
does with an F16/BF16/F32 GGUF made by ``convert_hf_to_gguf.py --outtype`` of the source's
own dtype (``f32``, ``f16``, ``bf16`` recipes are that converter output).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refquant.checkpoint import llama
from refquant.checkpoint.gguf_model import tensor_types
from refquant.checkpoint.journal import Journal, Progress, atomic_path
from refquant.checkpoint.safetensors_io import dtype_name, write_safetensors
from refquant.checkpoint.source import Checkpoint
from refquant.formats import gguf_recipes

__all__ = ["quantize", "RECIPES", "HF_RECIPES", "plan_units", "Unit"]

#: recipes whose output is a Hugging Face folder
HF_RECIPES = ("nf4", "nf4-dq", "gptq-4bit-g128", "awq-4bit-g128")
#: recipes that need calibration token ids (layer-sequential: refquant.checkpoint.layerwise, layerwise_awq)
CALIBRATED_RECIPES = ("gptq-4bit-g128", "awq-4bit-g128")
RECIPES = gguf_recipes.GGUF_RECIPES + HF_RECIPES
DEFAULT_SHARD_BYTES = 5 * 10**9  # transformers' save_pretrained max_shard_size="5GB"
_COPIED_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken", ".md", ".py")


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``task(checkpoint, *args)`` returns [(name, kind, shape, uint8 bytes)]."""

    key: str
    task: Callable[..., list[tuple[str, str, tuple[int, ...], np.ndarray]]]
    args: tuple[Any, ...]
    weight: int  # source bytes it reads (progress)
    outputs: tuple[str, ...] = field(default=())


# --- tasks (module level: they travel to executor workers by reference) -------------------

_CHUNK_ELEMENTS = 1 << 24  # elements per row block read and quantized at once (64 MB of float32)


def _gguf_task(ck: Checkpoint, hf_name: str, gname: str, qtype: str, rope_heads: int,
               quantizer: Callable[..., np.ndarray] | None = None, importance: np.ndarray | None = None
               ) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    """One tensor to GGUF bytes, read and quantized in blocks of rows.

    GGUF rows are independent, so reading rows ``[a, b)``, permuting them (Q/K: blocks hold
    whole heads, and the permutation stays inside a head) and quantizing gives rows
    ``[a, b)`` of the result: the memory is one block plus the output, whatever the tensor.
    """
    from refquant import gguf

    shape = ck.tensors[hf_name].shape
    rows = shape[0] if len(shape) > 1 else 1
    row_elems = math.prod(shape[1:]) if len(shape) > 1 else math.prod(shape)
    step = max(1, _CHUNK_ELEMENTS // max(row_elems, 1))
    if rope_heads:
        head_rows = rows // rope_heads
        step = max(head_rows, step // head_rows * head_rows)
    from refquant.io.ggml_types import ggml_type, tensor_nbytes

    data = np.empty(tensor_nbytes(ggml_type(qtype, "qtype"), tuple(shape)), dtype=np.uint8)
    row_bytes = data.size // rows
    for start in range(0, rows, step) if len(shape) > 1 else [0]:
        stop = min(rows, start + step)
        x = ck.float32(hf_name, (start, stop)) if len(shape) > 1 else ck.float32(hf_name)
        if rope_heads:
            x = llama.permute_rope_rows(x, x.shape[0] // head_rows)
        if qtype == "f32":
            block = np.ascontiguousarray(x, dtype="<f4").reshape(-1).view(np.uint8)
        else:
            try:
                block = np.asarray((quantizer or gguf.quantize)(x, qtype, importance), dtype=np.uint8).reshape(-1)
            except ValueError as exc:
                raise ValueError(f"tensor {hf_name!r} ({gname}, shape {shape}) cannot be quantized to {qtype}: "
                                 f"{exc}") from None
        data[start * row_bytes:stop * row_bytes] = block
    return [(gname, qtype, tuple(shape), data)]


def _copy_task(ck: Checkpoint, hf_name: str) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    x = ck.raw(hf_name)
    return [(hf_name, dtype_name(x.dtype), tuple(x.shape), np.ascontiguousarray(x).reshape(-1).view(np.uint8))]


def _bnb_task(ck: Checkpoint, hf_name: str, double_quant: bool) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    from refquant import bnb
    from refquant.layouts import bnb_state

    x = np.asarray(ck.raw(hf_name))
    if x.dtype not in (np.float32, np.float16) and x.dtype.name != "bfloat16":
        x = ck.float32(hf_name)
    if not np.isfinite(x.astype(np.float32)).all():
        raise ValueError(f"tensor {hf_name!r} holds NaN/inf values, which nf4 cannot encode")
    q = bnb.quantize_4bit(x, "nf4", blocksize=64, double_quant=double_quant)
    out = bnb_state.to_state_dict(q, hf_name)
    return [(k, dtype_name(v.dtype), tuple(v.shape), np.ascontiguousarray(v).reshape(-1).view(np.uint8))
            for k, v in out.items()]


# --- planning ---------------------------------------------------------------------------

def plan_units(ck: Checkpoint, recipe: str, quantizer: Callable[..., np.ndarray] | None = None,
               imatrix: Any = None) -> tuple[list[Unit], dict[str, Any]]:
    """The work units of a job, in output order, and what the assembly needs (metadata).

    ``imatrix`` (:class:`refquant.io.Imatrix`, keyed by llama.cpp tensor names) gives each
    quantized tensor its importance vector, as llama-quantize ``--imatrix`` does: a tensor
    without an entry is quantized without one; an entry of the wrong length is an error.

    Parameters
    ----------
    ck : refquant.checkpoint.source.Checkpoint
        The source (a LLaMA-layout checkpoint for the GGUF recipes).
    recipe : str
        One of :data:`RECIPES` (lowercase).
    quantizer : callable or None
        ``quantizer(x, qtype, imatrix)`` replacing :func:`refquant.gguf.quantize` (a backend's op);
        None: the reference.
    imatrix : refquant.io.Imatrix or None
        Importance vectors by llama.cpp tensor name; each of the tensor's row length.
    """
    if recipe in HF_RECIPES:
        return _plan_hf(ck, recipe), {}
    hp = llama.hparams(ck.config)
    plan = tensor_types(recipe, {name: info.shape for name, info in ck.tensors.items()}, n_layer=hp["n_layer"],
                        n_gqa=hp["n_head"] // hp["n_head_kv"], has_output="lm_head.weight" in ck.tensors,
                        has_imatrix=imatrix is not None)
    units = []
    for name, (gname, qtype) in plan.items():
        info = ck.tensors[name]
        importance = None
        if imatrix is not None and gname in imatrix.entries and gguf_recipes.is_quantized(gname, info.shape):
            importance = imatrix.importance(gname)
            if importance.shape != (info.shape[-1],):
                raise ValueError(f"imatrix entry {gname!r} has shape {importance.shape}; tensor {name!r} has rows "
                                 f"of {info.shape[-1]}")
        if importance is None and gguf_recipes.requires_imatrix(gname, qtype):
            raise ValueError(f"recipe={recipe!r} writes tensor {gname!r} as {qtype}, which llama-quantize refuses "
                             "without an importance matrix; pass an imatrix with an entry for it")
        rope = hp["n_head"] if gname.endswith("attn_q.weight") else hp["n_head_kv"] if gname.endswith("attn_k.weight") \
            else 0
        units.append(Unit(gname, _gguf_task, (name, gname, qtype, rope, quantizer, importance), info.nbytes, (gname,)))
    return units, hp


def _plan_hf(ck: Checkpoint, recipe: str) -> list[Unit]:
    """Units of a Hugging Face output: the block linears quantized, the rest copied (AWQ: the block
    norms get the input scales folded in, and a linear's bias travels with it)."""
    from refquant.checkpoint.layerwise import gptq_module_task
    from refquant.checkpoint.layerwise_awq import awq_module_task, awq_norm_task

    from refquant.model.llama import ARCHITECTURES, LlamaConfig

    if recipe in CALIBRATED_RECIPES:
        LlamaConfig.from_dict(ck.config)  # the forward pass must be the source's (architecture named otherwise)
    elif any(a not in ARCHITECTURES for a in ck.config.get("architectures") or []):
        # the linears are found by their LLaMA names; another layout would be quantized in part, silently
        raise ValueError(f"config.json architectures={ck.config['architectures']!r} is not supported by {recipe!r}; "
                         f"allowed: {', '.join(ARCHITECTURES)}")
    units = []
    for name, info in ck.tensors.items():
        in_block = llama.layer_of(name) is not None
        linear = in_block and name.endswith("_proj.weight") and len(info.shape) == 2
        if linear:
            task, args = {"gptq-4bit-g128": (gptq_module_task, (name,)), "awq-4bit-g128": (awq_module_task, (name,))
                          }.get(recipe, (_bnb_task, (name, recipe == "nf4-dq")))
            units.append(Unit(name, task, args, info.nbytes))
        elif recipe == "awq-4bit-g128" and in_block and name.endswith("_proj.bias"):
            continue  # written by its linear's unit (divided by the next group's scale)
        elif recipe == "awq-4bit-g128" and in_block and name.endswith("layernorm.weight"):
            units.append(Unit(name, awq_norm_task, (name,), info.nbytes))
        else:
            units.append(Unit(name, _copy_task, (name,), info.nbytes))
    return units


# --- running ----------------------------------------------------------------------------

def quantize(src: str | os.PathLike[str] | list[str], dst: str | os.PathLike[str], recipe: str, *,
             executor: cf.Executor | None = None, max_in_flight: int | None = None, restart: bool = False,
             progress: bool | None = None, name: str | None = None, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
             calibration: Any = None, calib_shards: int = 2,
             gguf_quantizer: Callable[..., np.ndarray] | None = None, imatrix: Any = None) -> Path:
    """Quantize checkpoint ``src`` with ``recipe`` into ``dst``; resumes an interrupted run.

    Parameters
    ----------
    src : path or list of paths
        A Hugging Face model folder (``config.json`` + ``model.safetensors`` or sharded
        safetensors with ``model.safetensors.index.json``), or safetensors files.
    dst : path
        The ``.gguf`` file (GGUF recipes) or folder (``nf4``, ``nf4-dq``, ``gptq-4bit-g128``,
        ``awq-4bit-g128``) to create.
    recipe : str
        One of :data:`RECIPES` (case-insensitive): llama.cpp mixtures (``q4_k_m`` ...), single
        ggml types, ``f32``/``f16``/``bf16``, ``nf4``, ``nf4-dq``, ``gptq-4bit-g128``, ``awq-4bit-g128``.
    executor : concurrent.futures.Executor, optional
        Where units run (``ProcessPoolExecutor``, ``ThreadPoolExecutor``, Dask's
        ``Client.get_executor()``); serial in this process when None. Workers must be able to
        read ``src`` at the same path.
    max_in_flight : int, optional
        Units submitted at once (bounds memory); default: the executor's workers + 1.
    restart : bool
        Discard an unfinished job's journal instead of resuming it.
    progress : bool, optional
        Show a progress bar with ETA on stderr (default: when stderr is a terminal).
    name : str, optional
        ``general.name`` of a GGUF (default: the source folder's name).
    max_shard_bytes : int
        Largest safetensors shard of a Hugging Face output.
    calibration : array_like of int, shape (samples, seq_len)
        Token ids for the calibrated recipes (``gptq-4bit-g128``, ``awq-4bit-g128``); ignored by the others.
    calib_shards : int
        Pieces the calibration set is cut into; each is processed by one task (statistics
        are summed over them). Part of the job: changing it changes the result slightly.
    imatrix : refquant.io.Imatrix or path, optional
        Importance matrix for the GGUF recipes (llama-quantize ``--imatrix``; a ``.gguf`` or
        legacy ``.dat`` file is read with :func:`refquant.io.read_imatrix`).
    gguf_quantizer : callable, optional
        ``f(x, qtype, imatrix) -> bytes`` used instead of :func:`refquant.gguf.quantize` for GGUF block
        types: a fast backend's ``gguf_quantize`` (bit-exact with the reference, as the
        conformance suite checks). Module-level (picklable) for process executors.

    Returns
    -------
    pathlib.Path
        ``dst``.

    Raises
    ------
    ValueError
        Unknown recipe; a source the recipe cannot take (the tensor is named); a truncated
        shard. Nothing is written to ``dst``; finished units stay in ``dst.partial``.
    OSError
        Writing failed (e.g. a full disk): finished units stay in ``dst.partial``; rerun to resume.
    """
    r = str(recipe).lower()
    if r not in RECIPES:
        raise ValueError(f"recipe={recipe!r} is not supported; allowed: {', '.join(RECIPES)}")
    if not isinstance(max_shard_bytes, int) or max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be a positive int, got {max_shard_bytes!r}")
    ck = Checkpoint(src)
    if isinstance(imatrix, (str, os.PathLike)):
        from refquant.io import read_imatrix

        imatrix = read_imatrix(imatrix)
    if imatrix is not None and r in HF_RECIPES:
        raise ValueError(f"imatrix applies to the GGUF recipes, not to {r!r}")
    units, hp = plan_units(ck, r, gguf_quantizer, imatrix)
    dst = Path(dst)
    plan = {"source": ck.fingerprint(), "recipe": r, "units": [u.key for u in units],
            "name": name, "max_shard_bytes": max_shard_bytes}
    if imatrix is not None:
        digest = hashlib.sha256()
        for u in units:
            if u.task is _gguf_task and u.args[5] is not None:
                digest.update(u.key.encode() + np.ascontiguousarray(u.args[5], dtype="<f4").tobytes())
        plan["imatrix"] = digest.hexdigest()
    if r in CALIBRATED_RECIPES:
        calibration = _check_calibration(calibration, ck.config.get("vocab_size"))
        if not isinstance(calib_shards, int) or not 1 <= calib_shards <= len(calibration):
            raise ValueError(f"calib_shards must be an int in [1, {len(calibration)}] (the number of samples), "
                             f"got {calib_shards!r}")
        plan.update(calibration=hashlib.sha256(calibration.tobytes()).hexdigest() + str(calibration.shape),
                    calib_shards=calib_shards)
    journal = Journal(dst, plan, restart=restart)
    try:
        bar = Progress(sum(u.weight for u in units), enabled=progress)
        for i in journal.done:
            bar.skip(units[i].weight)
        def run_units(indices: list[int], extra: dict[int, tuple[Any, ...]] | None = None) -> None:
            _run(ck, units, indices, journal, executor, max_in_flight, bar, extra or {})

        if r in CALIBRATED_RECIPES:
            from refquant.checkpoint.layerwise import gptq_module_task, run_gptq
            from refquant.checkpoint.layerwise_awq import awq_module_task, awq_norm_task, run_awq

            layerwise = (gptq_module_task, awq_module_task, awq_norm_task)
            run_units([i for i, u in enumerate(units) if u.task not in layerwise and i not in journal.done])
            (run_gptq if r == "gptq-4bit-g128" else run_awq)(ck, units, journal, executor, calibration, calib_shards,
                                                             run_units)
        else:
            run_units([i for i in range(len(units)) if i not in journal.done])
        bar.close()
        if r in HF_RECIPES:
            _write_hf(ck, units, journal, dst, r, max_shard_bytes)
        else:
            _write_gguf(ck, units, journal, dst, r, name)
    except BaseException:
        journal.close()
        raise
    journal.finish()
    return dst


def _check_calibration(calibration: Any, vocab: Any) -> np.ndarray:
    if calibration is None:
        raise ValueError("calibration is required for the calibrated recipes: token ids, shape (samples, seq_len)")
    ids = np.asarray(calibration)
    if ids.ndim != 2 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise ValueError(f"calibration must be a non-empty 2-D integer array (samples, seq_len), "
                         f"got {ids.dtype} {ids.shape}")
    if ids.min() < 0 or (vocab is not None and ids.max() >= int(vocab)):
        raise ValueError(f"calibration token ids must lie in [0, {vocab}), got [{ids.min()}, {ids.max()}]")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _run(ck: Checkpoint, units: list[Unit], todo: list[int], journal: Journal, executor: cf.Executor | None,
         max_in_flight: int | None, bar: Progress, extra: dict[int, tuple[Any, ...]]) -> None:
    if executor is None:
        for i in todo:
            journal.record(i, _call(units[i], ck, *extra.get(i, ())))
            bar.advance(units[i].weight, units[i].key)
        return
    limit = max_in_flight or (getattr(executor, "_max_workers", None) or 3) + 1
    pending: dict[cf.Future, int] = {}
    queue = iter(todo)
    try:
        while True:
            while len(pending) < limit:
                i = next(queue, None)
                if i is None:
                    break
                pending[executor.submit(_call, units[i], ck, *extra.get(i, ()))] = i
            if not pending:
                return
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                journal.record(i, fut.result())
                bar.advance(units[i].weight, units[i].key)
    finally:
        for fut in pending:
            fut.cancel()


def _call(unit: Unit, ck: Checkpoint, *extra: Any) -> list[tuple[str, str, tuple[int, ...], np.ndarray]]:
    return unit.task(ck, *unit.args, *extra)


def _chunks_of(journal: Journal, units: list[Unit]) -> Callable[[int, str], Any]:
    """payload(i, name) for the writers: the bytes of the next output tensor from the parts, which must be ``name``."""
    streams = ((t, chunks) for u in range(len(units)) for t, chunks in journal.read_part(u))

    def payload(i: int, name: str) -> Any:
        tensor, chunks = next(streams)
        if tensor.name != name:  # pragma: no cover - the writers ask in the order they were given
            raise AssertionError(f"part order: expected {name!r}, the journal has {tensor.name!r}")
        return chunks

    return payload


def _write_gguf(ck: Checkpoint, units: list[Unit], journal: Journal, dst: Path, recipe: str, name: str | None) -> None:
    from refquant.io.gguf_file import write_streaming

    infos = [(t.name, t.kind, t.shape) for u in range(len(units)) for t in journal.done[u][0]]
    label = name or (Path(ck.folder).name if ck.folder else Path(ck.files[0]).stem)
    meta = llama.gguf_metadata(ck.config, label, gguf_recipes.file_type(recipe), folder=ck.folder)
    with atomic_path(dst) as tmp, open(tmp, "wb") as f:
        write_streaming(f, infos, meta, _chunks_of(journal, units))
        f.flush()
        os.fsync(f.fileno())


def _write_hf(ck: Checkpoint, units: list[Unit], journal: Journal, dst: Path, recipe: str, max_shard_bytes: int
              ) -> None:
    tensors = [t for u in range(len(units)) for t in journal.done[u][0]]
    shards: list[list[int]] = [[]]
    size = 0
    for i, t in enumerate(tensors):
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += t.nbytes
    payload = _chunks_of(journal, units)
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        n = len(shards)
        names = ["model.safetensors"] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
        for fname, members in zip(names, shards):
            specs = [(tensors[i].name, tensors[i].kind, tensors[i].shape) for i in members]
            with open(tmp / fname, "wb") as f:
                write_safetensors(f, specs, payload, {"format": "pt"})
                f.flush()
                os.fsync(f.fileno())
        if n > 1:
            index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)},
                     "weight_map": {tensors[i].name: fname for fname, members in zip(names, shards) for i in members}}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        config = dict(ck.config)
        if recipe == "awq-4bit-g128":
            config["quantization_config"] = _awq_config()
            config["torch_dtype"] = "float16"  # AutoAWQ exports float16 (the norms folded here are)
        else:
            config["quantization_config"] = _gptq_config() if recipe in CALIBRATED_RECIPES else _bnb_config(config,
                                                                                                            recipe)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if ck.folder:  # tokenizer, generation config, chat template...: small files, never other weights
            for extra in sorted(Path(ck.folder).iterdir()):
                if extra.is_file() and extra.suffix in _COPIED_SUFFIXES and extra.name not in (
                        "config.json", "model.safetensors.index.json"):
                    shutil.copyfile(extra, tmp / extra.name)


def _gptq_config() -> dict[str, Any]:
    """transformers ``GPTQConfig.to_dict()`` conventions (``utils/quantization_config.py``) for the AutoGPTQ
    v1 layout; ``true_sequential`` is False: the modules of a block share one statistics pass."""
    from refquant.checkpoint.layerwise import GPTQ_PARAMS

    return {"quant_method": "gptq", "bits": GPTQ_PARAMS["bits"], "group_size": GPTQ_PARAMS["group_size"],
            "damp_percent": GPTQ_PARAMS["damp_percent"], "desc_act": GPTQ_PARAMS["desc_act"],
            "sym": GPTQ_PARAMS["sym"], "true_sequential": False, "checkpoint_format": "gptq", "format": "gptq",
            "model_seqlen": None, "block_name_to_quantize": "model.layers", "modules_in_block_to_quantize": None}


def _awq_config() -> dict[str, Any]:
    """What AutoAWQ's ``save_quantized`` writes and transformers ``AwqConfig`` reads (``utils/quantization_config.py``)."""
    from refquant.checkpoint.layerwise_awq import AWQ_PARAMS

    return {"quant_method": "awq", "bits": AWQ_PARAMS["bits"], "group_size": AWQ_PARAMS["group_size"],
            "zero_point": AWQ_PARAMS["zero_point"], "version": AWQ_PARAMS["version"], "modules_to_not_convert": None}


def _bnb_config(config: dict[str, Any], recipe: str) -> dict[str, Any]:
    """transformers ``BitsAndBytesConfig.to_dict()`` for 4-bit NF4 (``utils/quantization_config.py``)."""
    compute = config.get("torch_dtype") or config.get("dtype") or "float32"
    return {"_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": compute,
            "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": recipe == "nf4-dq", "llm_int8_enable_fp32_cpu_offload": False,
            "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None, "llm_int8_threshold": 6.0,
            "load_in_4bit": True, "load_in_8bit": False, "quant_method": "bitsandbytes"}
