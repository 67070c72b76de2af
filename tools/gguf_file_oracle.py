"""Write the small ``.gguf`` files of ``tests/golden/gguf_files/`` with ggml's own C writer.

The files are the *oracle* side of ``tests/test_gguf_file.py`` and ``tests/test_imatrix.py``:
they were written by ``gguf_write_to_file`` of a local build of ggml (the ``ggml-base``
library, called through ctypes), so refquant's reader is checked against bytes that
refquant did not write, and refquant's writer is checked to reproduce them byte for byte.
ggml's code is not in this repository; only this script and its output are.

Usage::

    REFQUANT_GGML_LIB=/path/to/libggml-base.so python tools/gguf_file_oracle.py [--out DIR]

Files written:

``ggml_kv_tensors.gguf``
    One metadata key per GGUF value type, arrays of every numeric type and of strings,
    an empty array, and six tensors (F32, F16, BF16, I32, Q8_0, Q4_K; the quantized bytes
    come from ``ggml_quantize_chunk``). Values are given by :func:`expected_contents`, which
    the tests import.
``ggml_imatrix.gguf``
    An importance-matrix file laid out as ``IMatrixCollector::save_imatrix`` in
    llama.cpp's ``tools/imatrix/imatrix.cpp`` lays it out: ``general.type``,
    ``imatrix.datasets``, ``imatrix.chunk_count``, ``imatrix.chunk_size``, then per entry
    (sorted) ``<name>.in_sum2`` (F32, ne = (n, n_mat)) and ``<name>.counts`` (F32,
    ne = (1, n_mat)); one dense entry and one with 3 experts. Values: :func:`expected_imatrix`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "gguf_files"

# gguf_type ids
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# ggml_type ids
T_F32, T_F16, T_Q8_0, T_Q4_K, T_I32, T_BF16 = 0, 1, 8, 12, 26, 30


def expected_contents() -> tuple[list[tuple[str, int, object]], dict[str, tuple[int, np.ndarray]]]:
    """(metadata as (key, gguf type, value) in file order, tensors name -> (ggml type, float32 source))."""
    meta = [
        ("general.architecture", STR, "refquant-test"),
        ("test.u8", U8, 200), ("test.i8", I8, -100), ("test.u16", U16, 60000), ("test.i16", I16, -30000),
        ("test.u32", U32, 4000000000), ("test.i32", I32, -2000000000), ("test.f32", F32, 0.1),
        ("test.bool", BOOL, True), ("test.str", STR, "héllo, wörld"), ("test.u64", U64, 2**63 + 5),
        ("test.i64", I64, -(2**62)), ("test.f64", F64, 0.1),
        ("test.arr_u8", ARR, (U8, [1, 2, 255])), ("test.arr_i16", ARR, (I16, [-1, 0, 1])),
        ("test.arr_u32", ARR, (U32, [7, 8])), ("test.arr_i32", ARR, (I32, list(range(-3, 4)))),
        ("test.arr_f32", ARR, (F32, [0.5, -1.25, 3.0e38])), ("test.arr_f64", ARR, (F64, [1e-300, -2.5])),
        ("test.arr_i64", ARR, (I64, [-(2**40), 2**40])), ("test.arr_bool", ARR, (BOOL, [True, False, True])),
        ("test.arr_str", ARR, (STR, ["a", "", "tokens ▁the"])), ("test.arr_empty", ARR, (I32, [])),
    ]
    x = (np.sin(np.arange(2 * 256, dtype=np.float64)) * 3).astype(np.float32).reshape(2, 256)
    tensors = {
        "t.f32": (T_F32, np.arange(64, dtype=np.float32).reshape(2, 32) * 0.25 - 3),
        "t.f16": (T_F16, (np.arange(96, dtype=np.float32) / 16 - 3).reshape(3, 32)),  # exact in f16
        "t.bf16": (T_BF16, np.arange(32, dtype=np.float32) / 8 - 2),  # exact in bf16
        "t.i32": (T_I32, np.arange(-8, 8, dtype=np.float32).reshape(2, 2, 4)),
        "t.q8_0": (T_Q8_0, x[:, :64].copy()),
        "t.q4_k": (T_Q4_K, x),
    }
    return meta, tensors


def expected_imatrix() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], int, int]:
    """(entries name -> (sums float32 (n_mat, n), counts int (n_mat,)), datasets, chunk_count, chunk_size)."""
    rng = np.random.default_rng(5)
    entries = {
        "blk.0.attn_q.weight": ((rng.random((1, 64)) * 100).astype(np.float32), np.array([1024])),
        "blk.0.ffn_up_exps.weight": ((rng.random((3, 32)) * 10).astype(np.float32), np.array([512, 0, 1536])),
    }
    return entries, ["calibration.txt"], 3, 512


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    lib.ggml_init.restype, lib.ggml_init.argtypes = vp, [_InitParams]
    lib.ggml_free.argtypes = [vp]
    lib.ggml_new_tensor.restype = vp
    lib.ggml_new_tensor.argtypes = [vp, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    lib.ggml_set_name.restype, lib.ggml_set_name.argtypes = vp, [vp, cp]
    lib.ggml_get_data.restype, lib.ggml_get_data.argtypes = vp, [vp]
    lib.ggml_nbytes.restype, lib.ggml_nbytes.argtypes = ctypes.c_size_t, [vp]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, vp, vp, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, vp]
    lib.gguf_init_empty.restype = vp
    lib.gguf_free.argtypes = [vp]
    lib.gguf_add_tensor.argtypes = [vp, vp]
    lib.gguf_write_to_file.restype, lib.gguf_write_to_file.argtypes = ctypes.c_bool, [vp, cp, ctypes.c_bool]
    lib.gguf_set_arr_data.argtypes = [vp, cp, ctypes.c_int, vp, ctypes.c_size_t]
    lib.gguf_set_arr_str.argtypes = [vp, cp, ctypes.POINTER(cp), ctypes.c_size_t]
    lib.gguf_set_val_str.argtypes = [vp, cp, cp]
    for name, ctype in (("u8", ctypes.c_uint8), ("i8", ctypes.c_int8), ("u16", ctypes.c_uint16),
                        ("i16", ctypes.c_int16), ("u32", ctypes.c_uint32), ("i32", ctypes.c_int32),
                        ("f32", ctypes.c_float), ("bool", ctypes.c_bool), ("u64", ctypes.c_uint64),
                        ("i64", ctypes.c_int64), ("f64", ctypes.c_double)):
        getattr(lib, f"gguf_set_val_{name}").argtypes = [vp, cp, ctype]
    return lib


_SCALAR_SETTER = {U8: "u8", I8: "i8", U16: "u16", I16: "i16", U32: "u32", I32: "i32", F32: "f32",
                  BOOL: "bool", U64: "u64", I64: "i64", F64: "f64"}
_NP = {U8: np.uint8, I8: np.int8, U16: np.uint16, I16: np.int16, U32: np.uint32, I32: np.int32,
       F32: np.float32, BOOL: np.bool_, U64: np.uint64, I64: np.int64, F64: np.float64}


def _new_tensor(lib: ctypes.CDLL, ctx: int, ggml_type: int, ne: tuple[int, ...], name: str, data: bytes) -> int:
    ne_arr = (ctypes.c_int64 * len(ne))(*ne)
    t = lib.ggml_new_tensor(ctx, ggml_type, len(ne), ne_arr)
    lib.ggml_set_name(t, name.encode())
    assert lib.ggml_nbytes(t) == len(data), (name, lib.ggml_nbytes(t), len(data))
    ctypes.memmove(lib.ggml_get_data(t), data, len(data))
    return t


def _encode(lib: ctypes.CDLL, ggml_type: int, x: np.ndarray) -> bytes:
    if ggml_type == T_F32:
        return x.astype("<f4").tobytes()
    if ggml_type == T_F16:
        return x.astype("<f2").tobytes()
    if ggml_type == T_BF16:  # the values are exact in bf16, so truncation is the rounding
        return (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    if ggml_type == T_I32:
        return x.astype("<i4").tobytes()
    rows, n = x.reshape(-1, x.shape[-1]).shape
    src = np.ascontiguousarray(x, np.float32)
    dst = ctypes.create_string_buffer(rows * n * 4)
    size = lib.ggml_quantize_chunk(ggml_type, src.ctypes.data, dst, 0, rows, n, None)
    return dst.raw[:size]


def write_kv_tensors(lib: ctypes.CDLL, path: Path) -> None:
    meta, tensors = expected_contents()
    ctx = lib.ggml_init(_InitParams(1 << 20, None, False))
    g = lib.gguf_init_empty()
    keep = []
    for key, vtype, value in meta:
        k = key.encode()
        if vtype == STR:
            lib.gguf_set_val_str(g, k, value.encode())
        elif vtype == ARR:
            itype, items = value
            if itype == STR:
                arr = (ctypes.c_char_p * len(items))(*[s.encode() for s in items])
                keep.append(arr)
                lib.gguf_set_arr_str(g, k, arr, len(items))
            else:
                data = np.asarray(items, dtype=_NP[itype])
                keep.append(data)
                lib.gguf_set_arr_data(g, k, itype, data.ctypes.data if data.size else None, data.size)
        else:
            getattr(lib, f"gguf_set_val_{_SCALAR_SETTER[vtype]}")(g, k, value)
    for name, (ggml_type, x) in tensors.items():
        lib.gguf_add_tensor(g, _new_tensor(lib, ctx, ggml_type, tuple(reversed(x.shape)), name,
                                           _encode(lib, ggml_type, x)))
    assert lib.gguf_write_to_file(g, str(path).encode(), False)
    lib.gguf_free(g)
    lib.ggml_free(ctx)


def write_imatrix(lib: ctypes.CDLL, path: Path) -> None:
    entries, datasets, chunk_count, chunk_size = expected_imatrix()
    ctx = lib.ggml_init(_InitParams(1 << 20, None, False))
    g = lib.gguf_init_empty()
    lib.gguf_set_val_str(g, b"general.type", b"imatrix")
    arr = (ctypes.c_char_p * len(datasets))(*[d.encode() for d in datasets])
    lib.gguf_set_arr_str(g, b"imatrix.datasets", arr, len(datasets))
    lib.gguf_set_val_u32(g, b"imatrix.chunk_count", chunk_count)
    lib.gguf_set_val_u32(g, b"imatrix.chunk_size", chunk_size)
    for name in sorted(entries):
        sums, counts = entries[name]
        n_mat, n = sums.shape
        # ggml_new_tensor_2d(ctx, GGML_TYPE_F32, nval / nmat, nmat) and (1, nmat)
        lib.gguf_add_tensor(g, _new_tensor(lib, ctx, T_F32, (n, n_mat), name + ".in_sum2",
                                           sums.astype("<f4").tobytes()))
        lib.gguf_add_tensor(g, _new_tensor(lib, ctx, T_F32, (1, n_mat), name + ".counts",
                                           counts.astype("<f4").tobytes()))
    assert lib.gguf_write_to_file(g, str(path).encode(), False)
    lib.gguf_free(g)
    lib.ggml_free(ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    lib_path = os.environ.get("REFQUANT_GGML_LIB")
    if not lib_path:
        raise SystemExit("set REFQUANT_GGML_LIB to a ggml-base shared library")
    lib = _load(lib_path)
    args.out.mkdir(parents=True, exist_ok=True)
    write_kv_tensors(lib, args.out / "ggml_kv_tensors.gguf")
    write_imatrix(lib, args.out / "ggml_imatrix.gguf")
    for p in sorted(args.out.glob("*.gguf")):
        print(p, p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
