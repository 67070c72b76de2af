"""Adversarial golden vectors for the K-quants, from a local build of ggml's C code.

``tools/gguf_oracle.py`` fixes every ggml type on a common set of rows. This script adds
one file, ``tests/golden/gguf/kquants_adversarial.npz``, aimed at the K-quants' scale
searches: rows built sub-block by sub-block (16 values) from many kinds (scales from
1e-12 to 6e4, magnitudes up to 1e37 whose float32 sums overflow, all-zero, constant,
sparse, ties, single outliers) and importance vectors with zero columns, all zeros and
vanishing (1e-30) weights. Some of these rows make the requantize step divide by a
scale far smaller than the values, where ggml's ``nearest_int`` gets an argument beyond
its asserted range: a debug build aborts there; a release build (``-DNDEBUG``, as
llama.cpp ships) returns the bit trick's value, which refquant reproduces. Build the
library as in ``tests/golden/gguf/README.md`` with ``-DNDEBUG`` added to FLAGS.

Usage::

    REFQUANT_GGML_LIB=/path/to/libggml-base.so REFQUANT_GGML_COMMIT=<sha> \\
        python tools/kquants_golden.py [--out tests/golden/gguf]

The npz holds ``ggml_commit``, ``seed``, ``x`` (float32, (rows, 1024)), ``kinds`` (str,
one per 16-value sub-block of ``x``), ``imatrix_names``, ``imatrix`` (float32, one row per
name; the ``none`` row is unused) and ``bytes_<qtype>_<imatrix name>`` (uint8, (rows,
row_bytes)) for q2_k ... q6_k with every importance vector and q8_k without one
(``quantize_row_q8_K_ref``; it takes none).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_oracle import TYPES, GGML  # noqa: E402

SEED = 20261127
ROWS, N_PER_ROW = 8, 1024
QTYPES = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k")
SUB_KINDS = ("normal", "student_t", "zero", "constant", "outlier", "integers", "half_integers",
             "positive", "negative", "near_fp16_max", "sparse", "signs", "huge", "laplace")


def _sub_block(kind: str, rng: np.random.Generator) -> np.ndarray:
    """16 float64 values of one kind, at a random scale 1e-12 ... 6e4."""
    s = 10.0 ** rng.uniform(-12, 4.8)
    if kind == "normal":
        return rng.standard_normal(16) * s
    if kind == "student_t":
        return rng.standard_t(1.5, 16) * s
    if kind == "zero":
        return np.zeros(16) * rng.choice([-1.0, 1.0])
    if kind == "constant":
        return np.full(16, rng.standard_normal() * s)
    if kind == "outlier":
        v = rng.standard_normal(16) * s * 1e-3
        v[rng.integers(16)] = s * rng.choice([-1.0, 1.0])
        return v
    if kind == "integers":
        return rng.integers(-8, 8, 16) * (s if rng.random() < 0.5 else 1.0)
    if kind == "half_integers":
        return rng.integers(-32, 32, 16) / 2.0
    if kind == "positive":
        return np.abs(rng.standard_normal(16)) * s
    if kind == "negative":
        return -np.abs(rng.standard_normal(16)) * s
    if kind == "near_fp16_max":
        return rng.uniform(-65504.0, 65504.0, 16)
    if kind == "sparse":
        return rng.standard_normal(16) * (rng.random(16) < 0.2) * s
    if kind == "signs":
        return rng.choice([-1.0, 1.0, 0.5, -0.5, 0.0], 16) * s
    if kind == "huge":  # float32 sums of x²·x overflow: NaN/inf scales inside the search
        return rng.standard_normal(16) * 10.0 ** rng.uniform(12, 37)
    if kind == "laplace":
        return rng.laplace(size=16) * s
    raise ValueError(kind)


def make_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``ROWS`` rows of ``N_PER_ROW``: row 0 is mostly zero (90 % zero sub-blocks), the
    others mix all kinds; returns (x float32, kinds per sub-block)."""
    n_sub = N_PER_ROW // 16
    kinds = rng.choice(SUB_KINDS, (ROWS, n_sub))
    kinds[0] = np.where(rng.random(n_sub) < 0.9, "zero", "sparse")
    x = np.stack([np.concatenate([_sub_block(k, rng) for k in row]) for row in kinds])
    return x.astype(np.float32), kinds


def make_imatrices(rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Importance vectors: random, zero columns (30 % and whole spans), all zero, and
    vanishing (0 or 1e-30 per column)."""
    n = N_PER_ROW
    random = (rng.random(n) * 3).astype(np.float32)
    zeros = (rng.random(n) ** 3).astype(np.float32)
    zeros[rng.random(n) < 0.3] = 0.0
    zeros[32:64] = 0.0
    zeros[256:512] = 0.0
    vanishing = np.where(rng.random(n) < 0.5, 0.0, 1e-30)
    names = ["none", "random", "zeros", "all_zero", "vanishing"]
    return names, np.stack([np.zeros(n), random, zeros, np.zeros(n), vanishing]).astype(np.float32)


def generate(ggml: GGML, out: Path, commit: str) -> None:
    rng = np.random.default_rng(SEED)
    x, kinds = make_rows(rng)
    im_names, imatrix = make_imatrices(rng)
    record: dict[str, np.ndarray] = {
        "ggml_commit": np.array(commit), "seed": np.array(SEED), "x": x, "kinds": kinds,
        "imatrix_names": np.array(im_names), "imatrix": imatrix,
    }
    table = {name: (type_id, blck, size) for name, type_id, blck, size in TYPES}
    for qtype in QTYPES:
        type_id, blck, size = table[qtype]
        for k, im_name in enumerate(im_names if qtype != "q8_k" else ["none"]):
            im = None if im_name == "none" else imatrix[k]
            data, _ = ggml.quantize(qtype, type_id, x, N_PER_ROW // blck * size, im)
            record[f"bytes_{qtype}_{im_name}"] = data
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "kquants_adversarial.npz", **record)
    print(f"wrote {out / 'kquants_adversarial.npz'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", default=os.environ.get("REFQUANT_GGML_LIB"),
                        help="ggml-base shared library built with -DNDEBUG (env REFQUANT_GGML_LIB)")
    parser.add_argument("--commit", default=os.environ.get("REFQUANT_GGML_COMMIT", "unknown"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "golden" / "gguf"))
    args = parser.parse_args(argv)
    if not args.lib:
        parser.error("give --lib or set REFQUANT_GGML_LIB")
    generate(GGML(args.lib), Path(args.out), args.commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
