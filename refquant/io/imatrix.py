"""Importance matrices: compute them from activations, read and write llama.cpp's files.

An importance matrix ("imatrix") holds, for each weight matrix W (out, in) of a model,
the mean over calibration tokens of the squared input activation of each input column:
``importance[j] = (1/T) * sum_t x[t, j]**2``. The weighted quantizers of
``refquant.gguf`` take it as ``imatrix`` (float32, length in_features).

How llama.cpp accumulates it (``IMatrixCollector::collect_imatrix`` in
``tools/imatrix/imatrix.cpp``): for every matrix multiplication with W, for every token
row x (float32) in order, ``values[j] += x[j] * x[j]`` in float32, and ``counts`` grows by
the number of token rows. A tensor of several matrices (MoE experts, a 3-D weight) keeps
one row of sums and one count per matrix. The importance handed to the quantizer is
``values / count`` in float32 (``load_imatrix`` in ``tools/quantize/quantize.cpp``).
refquant reproduces this exactly: the running sum is a sequential float32 sum of float32
squares (``np.cumsum`` along tokens, not NumPy's pairwise ``sum``), so the sums equal a
C build that does not contract ``x*x + s`` into an FMA.

Unobserved data never gives NaN: a column whose activations are all zero has importance
0, and a matrix that saw no tokens (count 0) gets ``unobserved`` (default 0.0) in every
column. llama-quantize uses 1.0 there (uniform importance); pass ``unobserved=1.0`` to
match it.

File formats (both written by ``llama-imatrix``; ``--output-format gguf|dat``):

GGUF (current default; ``IMatrixCollector::save_imatrix``)
    metadata ``general.type`` = "imatrix" (string), ``imatrix.datasets`` (array of
    string), ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (uint32); for each entry,
    in sorted name order, F32 tensors ``<name>.in_sum2`` (the sums; ggml shape
    ``(n, n_mat)``) and ``<name>.counts`` (shape ``(1, n_mat)``), and in newer versions
    ``<name>.in_sum`` (plain sums of x, same shape as ``in_sum2``; read and written back
    when present). Trailing dimensions of 1 are dropped, as ``ggml_n_dims`` does.
legacy ``.dat`` (``save_imatrix_legacy`` / ``load_imatrix_legacy``), little-endian::

    int32 n_entries
    n_entries times:  int32 len, len bytes name, int32 ncall, int32 nval,
                      float32[nval] values   where values = (sum / count) * ncall
                      and ncall = ceil(max(counts) / chunk_size)
    int32 chunk_count                        (optional)
    int32 len, len bytes dataset file name   (optional)

    A matrix with count 0 is stored as 1 * ncall (importance 1). Entries whose counts are
    all 0 are skipped. The chunk size is not stored: reading rebuilds sums = values *
    chunk_size and counts = ncall * chunk_size, as llama-imatrix does; with a power-of-two
    chunk size (512, the default) the importance is exactly values / ncall, what
    llama-quantize uses.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refquant._validate import check_int, flatten_leading
from refquant.errors import GGUFError
from refquant.io._reader import Cursor
from refquant.io.gguf_file import GGUF_MAGIC, read, replace_file, write
from refquant.io.gguf_metadata import GGUFValue, GGUFValueType

__all__ = ["ImatrixEntry", "Imatrix", "ImatrixCollector", "compute_imatrix", "read_imatrix", "write_imatrix"]

DEFAULT_CHUNK_SIZE = 512  # llama-imatrix: n_ctx / n_parallel with the default context of 512
_SUM2, _COUNTS, _SUM = ".in_sum2", ".counts", ".in_sum"


@dataclass(eq=False)
class ImatrixEntry:
    """Accumulated statistics of one weight tensor.

    Attributes
    ----------
    sums : ndarray of float32, shape (n_mat, in_features)
        Sum over tokens of the squared activations, per matrix (expert) and column.
    counts : ndarray of int64, shape (n_mat,)
        Tokens seen by each matrix.
    in_sums : ndarray of float32, shape (n_mat, in_features), or None
        Sum of the activations themselves (``<name>.in_sum`` in newer GGUF files).
    """

    sums: np.ndarray
    counts: np.ndarray
    in_sums: np.ndarray | None = None

    def importance(self, unobserved: float = 0.0) -> np.ndarray:
        """Mean squared activation per column: float32 ``sums / counts``.

        Returns shape ``(in_features,)`` for a single matrix, else ``(n_mat, in_features)``.
        Matrices with count 0 get ``unobserved`` in every column (never NaN).
        """
        counts = self.counts.astype(np.float32)[:, None]
        seen = counts > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(seen, self.sums / np.where(seen, counts, np.float32(1)), np.float32(unobserved))
        out = out.astype(np.float32, copy=False)
        return out[0] if out.shape[0] == 1 else out


@dataclass(eq=False)
class Imatrix:
    """An importance matrix file's contents.

    Attributes
    ----------
    entries : dict of str to ImatrixEntry
        Keyed by weight tensor name (e.g. ``"blk.0.attn_q.weight"``).
    datasets : list of str
        Calibration data files (``imatrix.datasets``).
    chunk_count : int
        Chunks of ``chunk_size`` tokens processed (``imatrix.chunk_count``).
    chunk_size : int
        Tokens per chunk (``imatrix.chunk_size``; the legacy format does not store it).
    """

    entries: dict[str, ImatrixEntry] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def importance(self, name: str, unobserved: float = 0.0) -> np.ndarray:
        """The float32 importance vector of tensor ``name`` (see :meth:`ImatrixEntry.importance`)."""
        if name not in self.entries:
            raise KeyError(f"no imatrix entry for tensor {name!r}")
        return self.entries[name].importance(unobserved)


# --- computing ---------------------------------------------------------------------------

def _as_tokens(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array of activations, got dtype {arr.dtype}")
    if arr.ndim < 1:
        raise ValueError(f"{name} must have shape (tokens, in_features), got a scalar")
    arr = flatten_leading(arr.astype(np.float32, copy=False))  # (tokens, in_features)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; llama-imatrix stops on non-finite activations")
    return arr


def _accumulate(sums: np.ndarray, x: np.ndarray, name: str) -> np.ndarray:
    """``sums + x[0]**2 + x[1]**2 + ...`` in float32, left to right (the C loop's order)."""
    if x.shape[0] == 0:
        return sums
    with np.errstate(over="ignore"):
        stacked = np.concatenate([sums[None, :], x * x])  # (1 + tokens, in_features)
        out = np.cumsum(stacked, axis=0, dtype=np.float32)[-1]
    if not np.isfinite(out).all():
        raise ValueError(f"{name}: a sum of squared activations overflowed float32")
    return out


class ImatrixCollector:
    """Streaming importance-matrix accumulation, one entry per weight tensor.

    Examples
    --------
    >>> c = ImatrixCollector()
    >>> c.observe("blk.0.ffn_up.weight", np.ones((4, 8), np.float32))
    >>> c.result()["blk.0.ffn_up.weight"][:3]
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self) -> None:
        self._entries: dict[str, ImatrixEntry] = {}

    def observe(self, name: str, x: Any, *, expert: int | None = None, n_experts: int | None = None) -> None:
        """Add the activations ``x`` (tokens, in_features) that multiply weight ``name``.

        For a tensor of ``n_experts`` matrices (MoE), pass the index of the ``expert``
        these tokens were routed to; ``n_experts`` is fixed by the first call.

        Raises
        ------
        ValueError
            in_features differs from earlier calls; NaN/inf activations; an expert index
            out of range.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        x = _as_tokens("x", x)
        n_mat = 1 if expert is None else check_int("n_experts", n_experts, min=1)
        row = 0 if expert is None else check_int("expert", expert, min=0, max=n_mat - 1)
        entry = self._entries.get(name)
        if entry is None:
            entry = ImatrixEntry(np.zeros((n_mat, x.shape[1]), np.float32), np.zeros(n_mat, np.int64))
            self._entries[name] = entry
        if entry.sums.shape != (n_mat, x.shape[1]):
            raise ValueError(f"x for {name!r} has {x.shape[1]} columns and {n_mat} matrices, but earlier calls "
                             f"had {entry.sums.shape[1]} columns and {entry.sums.shape[0]} matrices")
        entry.sums[row] = _accumulate(entry.sums[row], x, f"x for {name!r}")
        entry.counts[row] += x.shape[0]

    def result(self, unobserved: float = 0.0) -> dict[str, np.ndarray]:
        """Importance per tensor: float32 ``(in_features,)`` (``(n_experts, in_features)`` for MoE)."""
        return {name: e.importance(unobserved) for name, e in self._entries.items()}

    def to_imatrix(self, datasets: Iterable[str] = (), chunk_size: int = DEFAULT_CHUNK_SIZE) -> Imatrix:
        """An :class:`Imatrix` (copies of the sums) ready for :func:`write_imatrix`.

        ``chunk_count`` is ``max(counts) // chunk_size``, as llama-imatrix computes it.
        """
        chunk_size = check_int("chunk_size", chunk_size, min=1)
        entries = {n: ImatrixEntry(e.sums.copy(), e.counts.copy()) for n, e in self._entries.items()}
        most = max((int(e.counts.max()) for e in entries.values()), default=0)
        return Imatrix(entries, [str(d) for d in datasets], most // chunk_size, chunk_size)


def compute_imatrix(activations: Iterable[Any]) -> np.ndarray:
    """Importance of each input column from a stream of activation chunks.

    Parameters
    ----------
    activations : iterable of ndarray, each (tokens, in_features)
        Float activations (converted to float32) in the order llama.cpp would see them.

    Returns
    -------
    ndarray of float32, shape (in_features,)
        Mean of x**2 over all tokens (float32 sequential sums divided by the token count).
        Zeros if the chunks hold no tokens.

    Raises
    ------
    ValueError
        No chunks at all, chunks with different in_features, NaN/inf activations.
    """
    c = ImatrixCollector()
    for i, x in enumerate(activations):
        try:
            c.observe("w", x)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"activations[{i}]: {exc}") from None
    if not c._entries:
        raise ValueError("activations is empty; at least one (tokens, in_features) array is needed")
    return c.result()["w"]


# --- files -------------------------------------------------------------------------------

def read_imatrix(path: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> Imatrix:
    """Read a llama.cpp imatrix file, GGUF or legacy ``.dat`` (told apart by the GGUF magic).

    ``chunk_size`` is used only for ``.dat`` files, which do not store it.

    Parameters
    ----------
    path : str or os.PathLike
        A GGUF or legacy ``.dat`` imatrix file (any content: malformed ones raise GGUFError).
    chunk_size : int >= 1
        Tokens per chunk of a ``.dat`` file (which does not store it); ignored for GGUF.

    Raises
    ------
    GGUFError
        A malformed file, naming the field and offset: truncated data, negative or huge
        counts, NaN/inf or negative sums, missing ``.counts`` for an ``.in_sum2``, ...
    """
    chunk_size = check_int("chunk_size", chunk_size, min=1)
    path = os.fspath(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == GGUF_MAGIC:
        return _read_gguf(path)
    with open(path, "rb") as f:
        data = f.read()
    return _read_dat(data, chunk_size)


def write_imatrix(path: str | os.PathLike[str], imatrix: Imatrix, format: str = "gguf") -> None:  # noqa: A002
    """Write ``imatrix`` as llama-imatrix does: ``format="gguf"`` or ``"dat"`` (legacy).

    The GGUF file is byte-identical to llama-imatrix's for the same sums, counts and
    metadata. The ``.dat`` file stores ``(sums / count) * ncall`` (float32 arithmetic,
    as ``save_imatrix_legacy``) and skips entries whose counts are all zero.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced).
    imatrix : Imatrix
        Its entries ImatrixEntry objects with ``sums`` (n_mat >= 1, n), ``counts`` (n_mat,)
        and ``in_sums`` None or of ``sums``' shape (ValueError/TypeError otherwise).
    format : {"gguf", "dat"}
    """
    if not isinstance(imatrix, Imatrix):
        raise TypeError(f"imatrix must be an Imatrix, got {type(imatrix).__name__}")
    if format not in ("gguf", "dat"):
        raise ValueError(f"format={format!r} is not supported; allowed: 'gguf', 'dat'")
    for name, e in imatrix.entries.items():
        _check_entry(name, e)
    if format == "gguf":
        _write_gguf(path, imatrix)
    else:
        _write_dat(path, imatrix)


def _check_entry(name: str, e: ImatrixEntry) -> None:
    if not isinstance(e, ImatrixEntry):
        raise TypeError(f"imatrix.entries[{name!r}] must be an ImatrixEntry, got {type(e).__name__}")
    if e.sums.ndim != 2 or e.counts.shape != (e.sums.shape[0],) or e.sums.shape[0] < 1:
        raise ValueError(f"imatrix.entries[{name!r}]: sums must be (n_mat, n) and counts (n_mat,), "
                         f"got {e.sums.shape} and {e.counts.shape}")
    if e.in_sums is not None and e.in_sums.shape != e.sums.shape:
        raise ValueError(f"imatrix.entries[{name!r}]: in_sums shape {e.in_sums.shape} differs from sums {e.sums.shape}")


def _write_gguf(path: Any, im: Imatrix) -> None:
    meta = {
        "general.type": GGUFValue("imatrix", "string"),
        "imatrix.datasets": GGUFValue(list(im.datasets), "array", item_type="string"),
        "imatrix.chunk_count": GGUFValue(im.chunk_count, "uint32"),
        "imatrix.chunk_size": GGUFValue(im.chunk_size, "uint32"),
    }
    tensors: dict[str, Any] = {}
    for name in sorted(im.entries):
        e = im.entries[name]
        n_mat, n = e.sums.shape
        # ggml_n_dims drops trailing dimensions of 1: a dense entry is 1-D
        tensors[name + _SUM2] = np.ascontiguousarray(e.sums, np.float32).reshape((n_mat, n) if n_mat > 1 else (n,))
        tensors[name + _COUNTS] = e.counts.astype(np.float32).reshape((n_mat, 1) if n_mat > 1 else (1,))
        if e.in_sums is not None:
            tensors[name + _SUM] = np.ascontiguousarray(e.in_sums, np.float32).reshape(tensors[name + _SUM2].shape)
    write(path, tensors, meta)


def _read_gguf(path: str) -> Imatrix:
    f = read(path)
    gtype = f.metadata.get("general.type")
    if gtype is not None and (gtype.type is not GGUFValueType.STRING or gtype.value != "imatrix"):
        raise GGUFError(f"metadata 'general.type': {gtype.value!r} is not 'imatrix' (not an imatrix file)")
    datasets = f.metadata.get("imatrix.datasets")
    ds: list[str] = []
    if datasets is not None:
        if datasets.type is not GGUFValueType.ARRAY or datasets.item_type is not GGUFValueType.STRING:
            raise GGUFError("metadata 'imatrix.datasets': must be an array of strings")
        ds = list(datasets.value)
    chunk_count = _meta_uint(f, "imatrix.chunk_count", 0)
    chunk_size = _meta_uint(f, "imatrix.chunk_size", DEFAULT_CHUNK_SIZE)

    parts: dict[str, dict[str, Any]] = {}
    for tname, t in f.tensors.items():
        for suffix in (_SUM2, _COUNTS, _SUM):  # in_sum2 first: ".in_sum" is its prefix
            if tname.endswith(suffix) and len(tname) > len(suffix):
                parts.setdefault(tname[:-len(suffix)], {})[suffix] = t
                break
    entries = {}
    for name in sorted(parts):
        p = parts[name]
        if _SUM2 not in p or _COUNTS not in p:
            missing = _SUM2 if _SUM2 not in p else _COUNTS
            raise GGUFError(f"tensor {name + missing!r}: missing (imatrix entry {name!r} needs "
                            f"both {_SUM2} and {_COUNTS})")
        counts_f = _f32(p[_COUNTS])
        sums = _f32(p[_SUM2])
        n_mat = counts_f.size
        if n_mat == 0 or sums.size == 0 or sums.size % n_mat:
            raise GGUFError(f"tensor {name + _SUM2!r}: {sums.size} sums do not split into {n_mat} matrices")
        if not (np.isfinite(counts_f).all() and (counts_f >= 0).all() and (counts_f < 2.0**62).all()):
            raise GGUFError(f"tensor {name + _COUNTS!r}: counts must be finite, >= 0 and < 2**62")
        if not (np.isfinite(sums).all() and (sums >= 0).all()):
            raise GGUFError(f"tensor {name + _SUM2!r}: sums of squares must be finite and >= 0")
        counts = np.floor(counts_f.astype(np.float64) + 0.5).astype(np.int64)  # lround of a value >= 0
        in_sums = None
        if _SUM in p:
            in_sums = _f32(p[_SUM])
            if in_sums.size != sums.size or not np.isfinite(in_sums).all():
                raise GGUFError(f"tensor {name + _SUM!r}: must be finite with as many values as {name + _SUM2!r}")
            in_sums = in_sums.reshape(n_mat, -1)
        entries[name] = ImatrixEntry(sums.reshape(n_mat, -1), counts, in_sums)
    if not entries:
        raise GGUFError("tensors: no '<name>.in_sum2' / '<name>.counts' pairs (no imatrix data in the file)")
    return Imatrix(entries, ds, chunk_count, chunk_size)


def _meta_uint(f: Any, key: str, default: int) -> int:
    v = f.metadata.get(key)
    if v is None:
        return default
    if v.type not in (GGUFValueType.UINT8, GGUFValueType.UINT16, GGUFValueType.UINT32, GGUFValueType.UINT64,
                      GGUFValueType.INT8, GGUFValueType.INT16, GGUFValueType.INT32, GGUFValueType.INT64) or v.value < 0:
        raise GGUFError(f"metadata {key!r}: must be a non-negative integer, got {v.value!r} ({v.type})")
    return int(v.value)


def _f32(t: Any) -> np.ndarray:
    if str(t.qtype) != "f32":
        raise GGUFError(f"tensor {t.name!r} at offset {t.offset}: type {t.qtype}, imatrix tensors are f32")
    return t.array().astype(np.float32).reshape(-1)  # a copy, detached from the file's memory map


def _write_dat(path: Any, im: Imatrix) -> None:
    chunk_size = check_int("imatrix.chunk_size", im.chunk_size, min=1)
    out = [b""]
    n_entries = 0
    for name in sorted(im.entries):
        e = im.entries[name]
        if not (e.counts > 0).any():
            continue  # "entry has no data - skipping"
        ncall = -(-int(e.counts.max()) // chunk_size)  # ceiling division
        count = e.counts.astype(np.float32)[:, None]
        value = np.where(count == 0, np.float32(1), e.sums.astype(np.float32))
        count = np.where(count == 0, np.float32(1), count)
        with np.errstate(over="ignore"):
            values = ((value / count) * np.float32(ncall)).astype("<f4").reshape(-1)
        encoded = name.encode("utf-8")
        out += [struct.pack("<i", len(encoded)), encoded, struct.pack("<ii", _i32(ncall, "ncall"),
                                                                      _i32(values.size, "nval")), values.tobytes()]
        n_entries += 1
    out[0] = struct.pack("<i", n_entries)
    dataset = (im.datasets[-1] if im.datasets else "").encode("utf-8")
    out += [struct.pack("<ii", _i32(im.chunk_count, "chunk_count"), len(dataset)), dataset]
    with replace_file(path) as f:
        f.write(b"".join(out))


def _i32(v: int, name: str) -> int:
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"{name}={v} does not fit the legacy format's int32")
    return v


def _read_dat(data: bytes, chunk_size: int) -> Imatrix:
    cur = Cursor(data)
    n_entries = cur.i32("n_entries")
    min_entry = 4 + 4 + 4 + 4  # name length, ncall, nval, one value
    if n_entries < 0 or n_entries * min_entry > cur.remaining:
        raise cur.fail("n_entries", f"{n_entries} entries cannot fit in the {cur.remaining} bytes that follow", 0)
    entries: dict[str, ImatrixEntry] = {}
    for i in range(n_entries):
        at = cur.pos
        n = cur.i32(f"entry #{i} name length")
        if n < 0 or n > cur.remaining:
            raise cur.fail(f"entry #{i} name length", f"{n} is negative or longer than the {cur.remaining} "
                                                      "bytes that remain", at)
        name = cur.text(n, f"entry #{i} name", strict=True)
        if name in entries:
            raise cur.fail(f"entry #{i} name", f"duplicate entry {name!r}", at + 4)
        ncall_at = cur.pos
        ncall = cur.i32(f"entry {name!r} ncall")
        if ncall < 0:
            raise cur.fail(f"entry {name!r} ncall", f"{ncall} is negative", ncall_at)
        nval_at = cur.pos
        nval = cur.i32(f"entry {name!r} nval")
        if nval < 1:
            raise cur.fail(f"entry {name!r} nval", f"{nval}; at least one value is needed", nval_at)
        values_at = cur.pos
        values = cur.array(np.dtype("<f4"), nval, f"entry {name!r} values").astype(np.float32)
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise cur.fail(f"entry {name!r} values", "must be finite and >= 0", values_at)
        with np.errstate(over="ignore"):
            sums = values * np.float32(chunk_size)  # load_imatrix_legacy: tmp[i] * chunk_size
        if not np.isfinite(sums).all():
            raise cur.fail(f"entry {name!r} values", f"overflow float32 when scaled by chunk_size={chunk_size}",
                           values_at)
        entries[name] = ImatrixEntry(sums.reshape(1, -1), np.array([ncall * chunk_size], np.int64))
    chunk_count = 0
    datasets: list[str] = []
    if cur.remaining:
        at = cur.pos
        chunk_count = cur.i32("chunk_count")
        if chunk_count < 0:
            raise cur.fail("chunk_count", f"{chunk_count} is negative", at)
    if cur.remaining:
        at = cur.pos
        n = cur.i32("dataset name length")
        if n < 0 or n > cur.remaining:
            raise cur.fail("dataset name length", f"{n} is negative or longer than the {cur.remaining} "
                                                  "bytes that remain", at)
        name = cur.text(n, "dataset name", strict=False)
        if name:
            datasets.append(name)
    if cur.remaining:
        raise cur.fail("end of file", f"{cur.remaining} unexpected trailing bytes")
    return Imatrix(entries, datasets, chunk_count, chunk_size)
