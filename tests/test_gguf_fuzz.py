"""Fuzzing the .gguf and imatrix readers: malformed input only ever raises GGUFError.

Seeds: the two files written by ggml (tests/golden/gguf_files) and one written here by
refquant (nested arrays, alignment 64). Three kinds of mutation:

- every truncation of every seed (so every field boundary),
- every integer field of every seed (found by recording the reader's uint32/uint64
  reads) set to extreme values: 0, 1, type ids just past the table, 2**31, 2**32 - 1,
  2**63, 2**64 - 1, the file size...; this covers huge counts and lengths, bad value and
  ggml types, n_dims > 4, dims whose product overflows, misaligned and out-of-file offsets,
- Hypothesis: random byte flips, overwrites, insertions, deletions and splices.

Each parse either succeeds or raises GGUFError; peak Python memory stays small (no
allocation proportional to a count the file cannot back). A file that parses is
written back and must parse to the same contents.
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refquant.io.gguf_file as gguf_file
from refquant.errors import GGUFError
from refquant.io import GGUFValue, parse, read_imatrix, write
from refquant.io._reader import Cursor
from refquant.io.imatrix import _read_dat

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "gguf_files"


def _refquant_seed() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.gguf"
        raw = np.arange(144, dtype=np.uint8)
        write(path, {"q": (raw, "q4_k", (256,)), "b": np.ones((2, 3), np.float16)},
              {"general.alignment": 64, "nested": [["ab", "c"], ["d"]], "deep": [[[1, 2]], [[3]]],
               "f64": GGUFValue(2.5, "float64"), "e": GGUFValue([], "array", item_type="string"), "flag": True})
        return path.read_bytes()


SEEDS = {
    "ggml_kv_tensors": (GOLDEN / "ggml_kv_tensors.gguf").read_bytes(),
    "ggml_imatrix": (GOLDEN / "ggml_imatrix.gguf").read_bytes(),
    "refquant": _refquant_seed(),
}
MAX_PEAK_BYTES = 4 << 20  # the seeds are a few KB; any count-sized allocation would exceed this


def _check(blob: bytes) -> None:
    """Parse ``blob``: success or GGUFError only; on success, writing it back round-trips."""
    try:
        f = parse(blob)
    except GGUFError:
        return
    for t in f.tensors.values():
        assert 0 <= t.offset and t.offset + t.nbytes <= len(blob)
        assert t.data.tobytes() == blob[t.offset:t.offset + t.nbytes]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "back.gguf"
        try:
            write(path, f.tensors, f.metadata)
        except ValueError:
            return  # the reader accepts a few things the writer refuses (empty/long names, 0-d tensors)
        g = parse(path.read_bytes())
    assert g.metadata == f.metadata
    assert list(g.tensors) == list(f.tensors)
    for name, t in f.tensors.items():
        assert (g.tensors[name].qtype, g.tensors[name].shape) == (t.qtype, t.shape)
        assert g.tensors[name].data.tobytes() == t.data.tobytes()


def _last_data_end(blob: bytes) -> int:
    f = parse(blob)
    return max((t.offset + t.nbytes for t in f.tensors.values()), default=f.data_offset if f.tensors else 0)


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_every_truncation(seed):
    blob = SEEDS[seed]
    needed = _last_data_end(blob)
    for n in range(len(blob)):
        try:
            parse(blob[:n])
        except GGUFError:
            continue
        # only the padding after the last tensor may be missing
        assert n >= needed, f"a {n}-byte prefix of {seed} parsed"


class _RecordingCursor(Cursor):
    """A Cursor that records where each uint32 / uint64 field starts."""

    fields: list[tuple[int, int, str]] = []

    def u32(self, field: str) -> int:
        _RecordingCursor.fields.append((self.pos, 4, field))
        return super().u32(field)

    def u64(self, field: str) -> int:
        _RecordingCursor.fields.append((self.pos, 8, field))
        return super().u64(field)


def _integer_fields(blob: bytes, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, str]]:
    _RecordingCursor.fields = []
    with monkeypatch.context() as m:
        m.setattr(gguf_file, "Cursor", _RecordingCursor)
        parse(blob)
    return list(_RecordingCursor.fields)


EXTREMES_U32 = (0, 1, 2, 4, 9, 12, 13, 31, 43, 99, 2**31 - 1, 2**31, 2**32 - 1)
EXTREMES_U64 = (0, 1, 3, 5, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1)


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_integer_fields_at_extremes(seed, monkeypatch):
    blob = SEEDS[seed]
    fields = _integer_fields(blob, monkeypatch)
    assert len(fields) > 20
    tracemalloc.start()
    try:
        for pos, size, _name in fields:
            values = EXTREMES_U32 if size == 4 else EXTREMES_U64 + (len(blob), len(blob) + 1)
            for v in values:
                mutated = blob[:pos] + struct.pack("<I" if size == 4 else "<Q", v) + blob[pos + size:]
                _check(mutated)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak {peak} bytes while parsing mutated {seed}"


@st.composite
def mutated(draw) -> bytes:
    blob = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "byte", "int", "insert", "delete", "truncate", "splice"]))
        pos = draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and blob:
            blob[pos] = draw(st.integers(0, 255))
        elif kind == "int":
            size = draw(st.sampled_from([4, 8]))
            v = draw(st.one_of(st.sampled_from(EXTREMES_U64 if size == 8 else EXTREMES_U32),
                               st.integers(0, 2 ** (8 * size) - 1)))
            blob[pos:pos + size] = v.to_bytes(size, "little")
        elif kind == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del blob[pos:pos + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del blob[pos:]
        elif kind == "splice":
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            start = draw(st.integers(0, len(other) - 1))
            blob[pos:pos + 32] = other[start:start + 32]
    return bytes(blob)


@given(mutated())
def test_mutated_files_raise_only_gguf_error(blob):
    _check(blob)


def _check_imatrix(blob: bytes, filename: str) -> None:
    """read_imatrix either raises GGUFError or returns finite importances."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / filename
        path.write_bytes(blob)
        try:
            im = read_imatrix(path)
        except GGUFError:
            return
    for e in im.entries.values():
        assert np.isfinite(e.importance()).all()


@given(mutated())
def test_mutated_imatrix_files_raise_only_gguf_error(blob):
    _check_imatrix(blob, "im.gguf")


def _dat_seed() -> bytes:
    out = struct.pack("<i", 2)
    for name, ncall, vals in (("blk.0.attn_q.weight", 4, [1.0, 2.5, 0.0, 3.0]), ("output.weight", 1, [0.5] * 8)):
        out += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", ncall, len(vals))
        out += np.asarray(vals, "<f4").tobytes()
    return out + struct.pack("<i", 4) + struct.pack("<i", 8) + b"wiki.txt"


@given(st.data())
def test_mutated_dat_files_raise_only_gguf_error(data):
    blob = bytearray(_dat_seed())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1)) if blob else 0
        kind = data.draw(st.sampled_from(["byte", "int", "truncate", "insert"]))
        if kind == "byte" and blob:
            blob[pos] = data.draw(st.integers(0, 255))
        elif kind == "int":
            v = data.draw(st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**28, 7]))
            blob[pos:pos + 4] = struct.pack("<i", v)
        elif kind == "truncate":
            del blob[pos:]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    _check_imatrix(bytes(blob), "im.dat")


def test_dat_integer_fields_at_extremes():
    blob = _dat_seed()
    tracemalloc.start()
    try:
        for pos in range(0, len(blob) - 3):
            for v in (0, 1, -1, 2**31 - 1, -(2**31), 2**24):
                try:
                    _read_dat(blob[:pos] + struct.pack("<i", v) + blob[pos + 4:], 512)  # read_imatrix's parser
                except GGUFError:
                    pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES
