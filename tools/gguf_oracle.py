"""Generate GGUF golden vectors from a local build of ggml's C code.

This script is the *oracle* side of ``tests/test_gguf_codecs.py``: it loads a shared
library built from ggml's CPU-independent sources (``ggml.c``, ``ggml-quants.c``: the
``ggml-base`` target), calls ``ggml_quantize_chunk`` (the function llama.cpp's quantize
tool calls) and the type traits' ``to_float`` through ctypes, and writes one small
``tests/golden/gguf/<type>.npz`` per type. ggml's code is never copied into the repo;
only these vectors and this script are committed, so the tests need no C build.

Usage::

    REFQUANT_GGML_LIB=/path/to/libggml-base.so REFQUANT_GGML_COMMIT=<sha> \\
        python tools/gguf_oracle.py [--out tests/golden/gguf] [--types q4_0,q4_k]
    python tools/gguf_oracle.py --llama-cpp-python --commit <llama.cpp sha> --types iq1_m

``--llama-cpp-python`` takes the ``libggml-base`` that the installed llama-cpp-python bundles
(llama.cpp's release build of ggml, whose version and build commit it reports).

Each ``<type>.npz`` holds:

``qtype`` (str), ``type_id`` (int), ``ggml_commit`` (str), ``seed`` (int),
``kinds`` (str, one per row of ``x``), ``x`` (float32, (rows, n_per_row)),
``imatrix_names`` (str, e.g. ``["none", "random", "zeros"]``),
``imatrix`` (float32, (len(imatrix_names), n_per_row); the "none" row is unused),
``bytes_<name>`` (uint8, (rows, row_bytes)) and ``y_<name>`` (float32, ggml's
dequantization of those bytes; absent where ggml has no ``to_float`` for the type),
``quantizer`` (str: the C function that produced the bytes), ``ggml_build`` (str: what
the library says it is, ``ggml_version()`` and ``ggml_commit()``, and where it came from).

IQ2_XXS, IQ2_XS and IQ1_S cannot be quantized without an importance matrix
(``ggml_quantize_requires_imatrix``): their files have no ``bytes_none`` / ``y_none``.

Q8_1 and Q8_K are not handled by ``ggml_quantize_chunk`` (they are intermediate types
of the dot-product kernels); their bytes come from the exported ``quantize_row_q8_1_ref``
and ``quantize_row_q8_K_ref``, which take no importance matrix, so only the "none"
variant exists for them. Q8_1 has no dequantizer in ggml; Q8_K's comes from the
exported ``dequantize_row_q8_K``. ``quantize_row_q8_K_ref`` leaves the ``bsums`` of an
all-zero block unwritten, so every output buffer is zero-filled before the call.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

import numpy as np

# (name, ggml type id, block elements, block bytes). Used only to size buffers and
# checked against ggml's own type traits at load time.
TYPES: tuple[tuple[str, int, int, int], ...] = (
    ("f16", 1, 1, 2), ("bf16", 30, 1, 2),
    ("q4_0", 2, 32, 18), ("q4_1", 3, 32, 20), ("q5_0", 6, 32, 22), ("q5_1", 7, 32, 24),
    ("q8_0", 8, 32, 34), ("q8_1", 9, 32, 36),
    ("q2_k", 10, 256, 84), ("q3_k", 11, 256, 110), ("q4_k", 12, 256, 144),
    ("q5_k", 13, 256, 176), ("q6_k", 14, 256, 210), ("q8_k", 15, 256, 292),
    ("tq1_0", 34, 256, 54), ("tq2_0", 35, 256, 66),
    ("iq4_nl", 20, 32, 18), ("iq4_xs", 23, 256, 136), ("mxfp4", 39, 32, 17), ("nvfp4", 40, 64, 36),
    ("iq2_xxs", 16, 256, 66), ("iq2_xs", 17, 256, 74), ("iq2_s", 22, 256, 82), ("iq3_xxs", 18, 256, 98),
    ("iq3_s", 21, 256, 110), ("iq1_s", 19, 256, 50), ("iq1_m", 29, 256, 56),
)

N_PER_ROW = 512
SEED = 20260821


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits in include/ggml.h
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_ROW_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class GGML:
    """ctypes view of the few ggml entry points the golden vectors need."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        lib = self.lib
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                            ctypes.c_void_p]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        for name in ("quantize_row_q8_1_ref", "quantize_row_q8_K_ref", "dequantize_row_q8_K"):
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    def traits(self, type_id: int) -> _TypeTraits:
        return self.lib.ggml_get_type_traits(type_id).contents

    def build(self, origin: str) -> str:
        """``ggml <version> (<build commit>)`` from the library itself, and ``origin``."""
        said = []
        for name in ("ggml_version", "ggml_commit"):
            fn = getattr(self.lib, name, None)
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_char_p, []
                said.append(fn().decode())
        return f"ggml {' '.join(said[:1])} ({', '.join(said[1:]) or 'no commit'}), {origin}" if said else origin

    def quantize(self, name: str, type_id: int, x: np.ndarray, row_bytes: int,
                 imatrix: np.ndarray | None) -> tuple[np.ndarray, str]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, n = x.shape
        out = np.zeros((rows, row_bytes), np.uint8)  # zero-filled: see Q8_K bsums
        if name in ("q8_1", "q8_k"):
            if imatrix is not None:
                raise ValueError(f"{name} has no imatrix path")
            fn_name = "quantize_row_q8_1_ref" if name == "q8_1" else "quantize_row_q8_K_ref"
            getattr(self.lib, fn_name)(x.ctypes.data, out.ctypes.data, x.size)
            return out, fn_name
        imp = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
            imp = imatrix.ctypes.data
        written = self.lib.ggml_quantize_chunk(type_id, x.ctypes.data, out.ctypes.data, 0, rows, n, imp)
        if written != out.size:
            raise RuntimeError(f"{name}: ggml_quantize_chunk wrote {written} bytes, expected {out.size}")
        return out, "ggml_quantize_chunk"

    def dequantize(self, name: str, type_id: int, data: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
        y = np.zeros(shape, np.float32)
        data = np.ascontiguousarray(data)
        if name == "q8_k":
            self.lib.dequantize_row_q8_K(data.ctypes.data, y.ctypes.data, y.size)
            return y
        ptr = self.traits(type_id).to_float
        if not ptr:
            return None
        _ROW_FN(ptr)(data.ctypes.data, y.ctypes.data, y.size)
        return y


def _row(kind: str, rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """Row number ``k`` (0 or 1) of one adversarial kind, float64 before the cast."""
    if kind == "normal":
        return rng.standard_normal(n) * (1.0 if k == 0 else 0.02)
    if kind == "student_t":                                     # heavy tails
        return rng.standard_t(2.0 if k == 0 else 1.0, n)
    if kind == "zero":
        return np.zeros(n) if k == 0 else np.full(n, -0.0)      # +0 and -0
    if kind == "constant":
        return np.full(n, 0.7 if k == 0 else -1.3e-3)
    if kind == "outlier":
        row = rng.standard_normal(n) * 0.01
        row[rng.integers(0, n // 2)] = 50.0 if k == 0 else -50.0
        row[n // 2 + rng.integers(0, n // 2)] = -80.0 if k == 0 else 1e4
        return row
    if kind == "tiny":
        return rng.standard_normal(n) * (1e-11 if k == 0 else 3e-8)
    if kind == "near_fp16_max":
        row = rng.uniform(60000.0, 65504.0, n) * rng.choice([-1.0, 1.0], n)
        row[:4] = [65504.0, -65504.0, 65519.0, -65519.0] if k == 0 else [-65504.0, 65504.0, 65500.0, 1.0]
        return row
    if kind == "mixed":
        # Blocks of special content: ties for every rounding rule, all-positive and
        # all-negative blocks, zero and constant 32-blocks, +-max ties, scales 1e-6..1e4.
        row = np.empty(n)
        row[0:32] = rng.integers(-8, 8, 32)                     # integers
        row[32:64] = rng.integers(-16, 16, 32) + 0.5            # half-integers
        row[64:96] = 0.0
        row[96:128] = -3.25
        row[128:160] = np.abs(rng.standard_normal(32))          # all positive
        row[160:192] = -np.abs(rng.standard_normal(32))         # all negative
        row[192:224] = rng.standard_normal(32)
        row[192], row[200] = (2.0, -2.0) if k == 0 else (-2.0, 2.0)  # first of +-max wins
        row[224:256] = rng.standard_normal(32)
        row[224], row[230] = -24.0, -13.5                       # FMA-sensitive
        row[256:n] = rng.standard_normal(n - 256) * np.repeat(10.0 ** rng.uniform(-6, 4, (n - 256) // 32), 32)
        if k == 1:
            row[256:n] *= -1.0
        return row
    raise ValueError(kind)


KINDS = ("normal", "student_t", "zero", "constant", "outlier", "tiny", "near_fp16_max", "mixed")


def make_rows(rng: np.random.Generator, n: int = N_PER_ROW) -> tuple[list[str], np.ndarray]:
    """Two rows of ``n`` float32 values for each adversarial kind."""
    kinds = [kind for kind in KINDS for _ in range(2)]
    x = np.stack([_row(kind, rng, k, n) for kind in KINDS for k in range(2)])
    return kinds, x.astype(np.float32)


def make_imatrices(rng: np.random.Generator, n: int = N_PER_ROW) -> tuple[list[str], np.ndarray]:
    """Importance vectors: random positive, and one with zero columns."""
    random = rng.gamma(1.0, 1.0, n) + 1e-3
    zeros = rng.gamma(1.0, 1.0, n)
    zeros[rng.random(n) < 0.2] = 0.0
    zeros[64:96] = 0.0          # a whole 32-block without importance
    zeros[384:512] = 0.0        # half a super-block without importance
    names = ["none", "random", "zeros"]
    return names, np.stack([np.zeros(n), random, zeros]).astype(np.float32)


def llama_cpp_python_lib() -> tuple[str, str]:
    """(path of the libggml-base bundled with the installed llama-cpp-python, its origin)."""
    import glob

    import llama_cpp

    found = sorted(glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.*")))
    if not found:
        raise SystemExit(f"llama-cpp-python {llama_cpp.__version__} has no lib/libggml-base.*")
    return found[0], f"libggml-base of llama-cpp-python {llama_cpp.__version__}"


def generate(ggml: GGML, out_dir: Path, commit: str, only: set[str] | None = None, origin: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    kinds, x = make_rows(rng)
    im_names, imatrix = make_imatrices(rng)
    for name, type_id, blck, size in TYPES:
        if only and name not in only:
            continue
        tr = ggml.traits(type_id)
        if (tr.blck_size, tr.type_size) != (blck, size):
            raise RuntimeError(f"{name}: ggml says block ({tr.blck_size}, {tr.type_size}), table says ({blck}, {size})")
        requires_imatrix = bool(ggml.lib.ggml_quantize_requires_imatrix(type_id))
        row_bytes = x.shape[1] // blck * size
        record: dict[str, object] = {
            "qtype": np.array(name), "type_id": np.array(type_id), "ggml_commit": np.array(commit),
            "seed": np.array(SEED), "kinds": np.array(kinds), "x": x,
            "ggml_build": np.array(ggml.build(origin or "local build")),
        }
        keep = [k for k, im_name in enumerate(im_names)
                if not (requires_imatrix and im_name == "none") and (name not in ("q8_1", "q8_k") or k == 0)]
        names = [im_names[k] for k in keep]
        record["imatrix_names"] = np.array(names)
        record["imatrix"] = imatrix[keep]
        for k, im_name in enumerate(names):
            data, quantizer = ggml.quantize(name, type_id, x, row_bytes, None if im_name == "none" else imatrix[keep[k]])
            record[f"bytes_{im_name}"] = data
            record["quantizer"] = np.array(quantizer)
            y = ggml.dequantize(name, type_id, data, x.shape)
            if y is not None:
                record[f"y_{im_name}"] = y
        np.savez_compressed(out_dir / f"{name}.npz", **record)
        print(f"{name:7s} {quantizer:22s} to_float={any(k.startswith('y_') for k in record)} -> {out_dir / (name + '.npz')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", default=os.environ.get("REFQUANT_GGML_LIB"),
                        help="path of the ggml-base shared library (env REFQUANT_GGML_LIB)")
    parser.add_argument("--commit", default=os.environ.get("REFQUANT_GGML_COMMIT", "unknown"),
                        help="ggml commit the library was built from (env REFQUANT_GGML_COMMIT)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "golden" / "gguf"))
    parser.add_argument("--types", default="", help="comma-separated subset, e.g. q4_0,q4_k")
    parser.add_argument("--llama-cpp-python", action="store_true",
                        help="use the libggml-base bundled with the installed llama-cpp-python")
    args = parser.parse_args(argv)
    origin = "local build"
    if args.llama_cpp_python:
        args.lib, origin = llama_cpp_python_lib()
    if not args.lib:
        parser.error("give --lib, set REFQUANT_GGML_LIB or pass --llama-cpp-python")
    only = {t.strip().lower() for t in args.types.split(",") if t.strip()} or None
    generate(GGML(args.lib), Path(args.out), args.commit, only, origin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
