"""A Hugging Face checkpoint read lazily: ``config.json`` plus one or more safetensors shards.

Accepted sources: a folder with ``model.safetensors``, or with sharded
``model-0000i-of-0000n.safetensors`` files and their ``model.safetensors.index.json``
(transformers ``modeling_utils`` ``SAFE_WEIGHTS_INDEX_NAME``: ``{"metadata": {...},
"weight_map": {tensor: file}}``), or a list of ``.safetensors`` files. Tensors are read one
at a time (:mod:`refquant.checkpoint.safetensors_io`); nothing else is
held in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refquant.checkpoint.safetensors_io import SafetensorsError, SafetensorsFile, TensorInfo

__all__ = ["Checkpoint", "INDEX_NAME"]

INDEX_NAME = "model.safetensors.index.json"


class Checkpoint:
    """The tensors and config of a checkpoint.

    Attributes
    ----------
    files : list of str
        The safetensors shards, in order.
    config : dict
        ``config.json`` (empty when there is none, e.g. for bare files).
    tensors : dict of str to TensorInfo
        Every tensor, in shard order then file order.
    folder : str or None
    """

    def __init__(self, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> None:
        self.folder, paths = _resolve(source)
        self.config: dict[str, Any] = {}
        if self.folder is not None and (Path(self.folder) / "config.json").is_file():
            self.config = json.loads((Path(self.folder) / "config.json").read_text())
        self.files = [os.fspath(p) for p in paths]
        self._shards = [SafetensorsFile(p) for p in self.files]
        self._where: dict[str, int] = {}
        self.tensors: dict[str, TensorInfo] = {}
        for i, shard in enumerate(self._shards):
            for name, info in shard.tensors.items():
                if name in self._where:
                    raise SafetensorsError(f"tensor {name!r} is in both {self.files[self._where[name]]} and "
                                           f"{self.files[i]}")
                self._where[name] = i
                self.tensors[name] = info

    def __reduce__(self) -> tuple[Any, ...]:
        return (Checkpoint, (self.files if self.folder is None else self.folder,))

    def raw(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """Tensor ``name`` as stored (dtype and shape of the file), read now; ``rows=(start, stop)``
        reads only that range of the first axis."""
        if name not in self._where:
            raise KeyError(f"the checkpoint has no tensor {name!r}")
        return self._shards[self._where[name]].raw(name, rows)

    def float32(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """Tensor ``name`` (or rows ``start:stop`` of it) as a new float32 array (bf16 and f16 widen exactly).

        Raises
        ------
        ValueError
            The values hold NaN or inf (the tensor is named, with the count): quantizers cannot encode them.
        """
        x = np.asarray(self.raw(name, rows), dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"tensor {name!r} holds {int(np.size(x) - np.isfinite(x).sum())} NaN/inf values")
        return x

    def fingerprint(self) -> str:
        """A digest of the shards' names, sizes, modification times and headers and of the config.

        It identifies the job's input without reading 140 GB: a shard rewritten since an
        interrupted run (even with the same header) makes the journal refuse to resume.
        """
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        for path, shard in zip(self.files, self._shards):
            h.update(f"{os.path.basename(path)}:{shard.size}:{os.stat(path).st_mtime_ns}".encode())
            for info in shard.tensors.values():
                h.update(f"{info.name}:{info.dtype}:{info.shape}:{info.begin}".encode())
        return h.hexdigest()



def _resolve(source: Any) -> tuple[str | None, list[Path]]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            index = p / INDEX_NAME
            if index.is_file():
                weight_map = json.loads(index.read_text()).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise ValueError(f"{index} has no 'weight_map'")
                names = list(dict.fromkeys(weight_map.values()))
                missing = [n for n in names if not (p / n).is_file()]
                if missing:
                    raise FileNotFoundError(f"{index} lists shards that are missing: {', '.join(missing)}")
                return os.fspath(p), [p / n for n in sorted(names)]
            if (p / "model.safetensors").is_file():
                return os.fspath(p), [p / "model.safetensors"]
            found = sorted(p.glob("*.safetensors"))
            if not found:
                raise FileNotFoundError(f"source={os.fspath(p)!r}: no model.safetensors, {INDEX_NAME} or "
                                        f"*.safetensors in this folder")
            return os.fspath(p), found
        if p.is_file():
            return (os.fspath(p.parent) if (p.parent / "config.json").is_file() else None), [p]
        raise FileNotFoundError(f"source={os.fspath(p)!r} does not exist")
    paths = [Path(s) for s in source]
    if not paths:
        raise ValueError("source is an empty list of files")
    for s in paths:
        if not s.is_file():
            raise FileNotFoundError(f"source file {os.fspath(s)!r} does not exist")
    return None, paths
