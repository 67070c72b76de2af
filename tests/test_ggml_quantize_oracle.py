"""refquant's GGUF quantizers against the libggml-base installed with llama-cpp-python.

The golden vectors (``tests/golden/gguf``) pin one ggml revision; this compares every type
``ggml_quantize_chunk`` writes, with and without an importance matrix, against whatever
ggml the peers extra installed, so that a change upstream shows up as a failure here
instead of as silently different files. llama-cpp-python 0.3.36 (llama.cpp 0c1e57098, ggml
0.25.3) is where IQ1_M's split search changed (llama.cpp PR #28706: per-half prefix sums,
other float32 roundings, so near-ties resolve differently); the rest of ``ggml-quants.c``
equals d99724f2's.

Rows are small and adversarial: heavy tails, integer and half-integer ties, a constant and
a zero row, an outlier, scales 1e-6..1e4 per 32-block; importance vectors: random, with
zero columns, and chi-square (many tiny weights, which make near-ties: the IQ1_M change
shows on them first).
"""

from __future__ import annotations

import numpy as np
import pytest

import refquant.gguf as G
from refquant.formats import FORMATS
from tests.bench import _ggml

pytestmark = pytest.mark.oracle

GGML = _ggml.load()
if GGML is None:
    pytest.skip(_ggml.REASON, allow_module_level=True)

N = 512   # two super-blocks per row
# ggml_quantize_chunk does not write q8_1 / q8_k (the dot products' activation types)
QTYPES = tuple(t for t in FORMATS if t not in ("q8_1", "q8_k"))


def _rows(rng: np.random.Generator) -> np.ndarray:
    """Adversarial rows, float32 (8, N)."""
    scales = np.repeat(10.0 ** rng.uniform(-6, 4, N // 32), 32)
    outlier = rng.standard_normal(N) * 0.01
    outlier[[7, 300]] = (50.0, -80.0)
    rows = [rng.standard_t(2.0, N), rng.standard_cauchy(N), rng.integers(-8, 8, N),
            rng.integers(-4, 4, N) + 0.5, np.full(N, 0.7), np.zeros(N), outlier, rng.standard_normal(N) * scales]
    return np.stack(rows).astype(np.float32)


def _imatrices(rng: np.random.Generator) -> dict[str, np.ndarray | None]:
    zeros = rng.gamma(1.0, 1.0, N)
    zeros[rng.random(N) < 0.2] = 0.0
    zeros[64:96] = 0.0
    return {"none": None, "random": rng.gamma(1.0, 1.0, N) + 1e-3, "zeros": zeros,
            "chi2": rng.standard_normal(N) ** 2}


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, dict[str, np.ndarray | None]]:
    rng = np.random.default_rng(20261204)
    x = _rows(rng)
    return x, {k: None if v is None else v.astype(np.float32) for k, v in _imatrices(rng).items()}


@pytest.mark.parametrize("qtype", QTYPES)
def test_bytes_equal_installed_ggml(qtype: str, case: tuple[np.ndarray, dict[str, np.ndarray | None]]) -> None:
    x, imatrices = case
    fmt = FORMATS[qtype]
    differ = {}
    for name, im in imatrices.items():
        if im is None and fmt.requires_imatrix:
            continue
        ours = G.quantize(x, qtype, im)
        theirs = GGML.quantize(x, fmt.type_id, np.zeros_like(ours), im)
        bad = np.flatnonzero((ours.reshape(-1, fmt.type_size) != theirs.reshape(-1, fmt.type_size)).any(axis=1))
        if bad.size:
            differ[name] = bad.tolist()
    assert not differ, f"{qtype}: blocks whose bytes differ from the installed ggml, per imatrix: {differ}"
