"""NoWorseThanRef as the suite applies it to search-based quantizers.

The mutants that must *fail* it (a K-quant without its search, GPTQ without error
propagation, AWQ without the scale search) are in ``conformance/mutants_*.py`` and
``tests/meta/test_mutants.py``. Here: backends that are not bit-exact but as good as the
reference must *pass* the same conformance tests (run in-process under the active
Hypothesis profile), they must really differ from the reference (or the pass proves
nothing), and the error measures themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import test_algorithms, test_gguf
from conformance.contracts import Exact, NoWorseThanRef, contract_for
from conformance.mutants_algorithms import EQUIVALENTS as ALGORITHM_EQUIVALENTS
from conformance.mutants_gguf import EQUIVALENTS as GGUF_EQUIVALENTS
from conformance.mutants_gguf import NotBitExactBackend

import refquant.gguf
from accel.reference import ReferenceBackend
from refquant.algorithms import gptq

# the formats each equivalent changes (elsewhere it is the reference itself)
GGUF_CELLS = [("gguf_least_squares_rescale", fmt) for fmt in ("q4_0", "q5_0", "q8_0", "iq4_nl")] + [
    ("gguf_kquant_finer_search", fmt) for fmt in ("q4_1", "q5_1", "q2_k", "q4_k", "q5_k")]
ALGORITHM_CELLS = [(name, fmt) for name in ALGORITHM_EQUIVALENTS for fmt in test_algorithms.ALGORITHM_FORMATS]


def _layer(rng, out=8, in_=192, tokens=64):
    """A layer with correlated inputs and three outlier channels (two GPTQ blocks of 128)."""
    X = (rng.standard_normal((tokens, 4)) @ rng.standard_normal((4, in_)) + 0.1 * rng.standard_normal((tokens, in_)))
    X[:, :3] *= 30.0
    return (rng.standard_normal((out, in_)) * 0.05).astype(np.float32), X.astype(np.float32)


@pytest.mark.parametrize("name, fmt", GGUF_CELLS)
def test_gguf_equivalent_passes(name, fmt):
    backend = GGUF_EQUIVALENTS[name]()
    assert isinstance(contract_for("gguf_quantize", fmt, backend), NoWorseThanRef)
    test_gguf.test_gguf_quantize(refquant_backend=backend, fmt=fmt)


@pytest.mark.parametrize("name, fmt", ALGORITHM_CELLS)
def test_algorithm_equivalent_passes(name, fmt):
    backend = ALGORITHM_EQUIVALENTS[name]()
    (op,) = backend._overrides
    assert isinstance(contract_for(op, fmt, backend), NoWorseThanRef)
    getattr(test_algorithms, f"test_{op}")(refquant_backend=backend, fmt=fmt)


@pytest.mark.parametrize("name", sorted(GGUF_EQUIVALENTS))
def test_gguf_equivalents_differ_from_the_reference(name, rng):
    backend = GGUF_EQUIVALENTS[name]()
    x = rng.standard_t(3, (8, 256)).astype(np.float32)
    formats = {fmt for n, fmt in GGUF_CELLS if n == name}
    assert any(not np.array_equal(backend.gguf_quantize(x, fmt), refquant.gguf.quantize(x, fmt)) for fmt in formats)


@pytest.mark.parametrize("name", sorted(ALGORITHM_EQUIVALENTS))
def test_algorithm_equivalents_differ_from_the_reference(name, rng):
    backend = ALGORITHM_EQUIVALENTS[name]()
    W, X = _layer(rng)
    if name.startswith("gptq"):
        H = 2 * X.astype(np.float64).T @ X.astype(np.float64)
        got, expected = backend.gptq_quantize(W, H, 3, 128), ReferenceBackend().gptq_quantize(W, H, 3, 128)
    else:
        got, expected = backend.awq_quantize(W, X, 3, 128), ReferenceBackend().awq_quantize(W, X, 3, 128)
    assert not np.array_equal(got, expected)


def test_claimed_bit_exactness_is_held_to_exact():
    reference = ReferenceBackend()
    approximate = GGUF_EQUIVALENTS["gguf_least_squares_rescale"]()
    assert isinstance(contract_for("gguf_quantize", "q4_k", reference), Exact)
    assert contract_for("gguf_quantize", "q4_k", approximate) == NoWorseThanRef(1.25)
    assert isinstance(contract_for("gguf_quantize", "f16", approximate), Exact)  # casts: no search
    assert isinstance(contract_for("rtn_quantize", "4bit_g128", NotBitExactBackend("x", {"rtn_quantize": None})),
                      Exact)
    for op in ("gptq_quantize", "awq_quantize"):
        assert isinstance(contract_for(op, "4bit_g128", reference), Exact)
        assert isinstance(contract_for(op, "4bit_g128", NotBitExactBackend("x", {op: None})), NoWorseThanRef)


def test_error_floor_widens_the_bound():
    c = NoWorseThanRef(1.25)
    assert c.check(None, None, got_error=1e-6, ref_error=0.0) is not None
    assert c.check(None, None, got_error=1e-6, ref_error=0.0, error_floor=2e-6) is None
    problem = c.check(None, None, got_error=3.0, ref_error=2.0, error_floor=0.1)
    assert problem is not None and "floor" in problem


# --- the GGUF error measure -----------------------------------------------------------


def test_gguf_errors_weight_by_the_imatrix_and_skip_zero_importance(rng):
    x = rng.standard_normal((2, 32)).astype(np.float32)
    ref_bytes = refquant.gguf.quantize(x, "q8_0")
    spoiled = ref_bytes.reshape(2, 34).copy()
    spoiled[:, 2 + 5] = 127  # element 5's code of both rows: a large error there
    imatrix = np.ones(32, np.float32)
    errors = test_gguf.reconstruction_errors(spoiled, ref_bytes, x, "q8_0", imatrix)
    assert errors["got_error"] > errors["ref_error"]
    imatrix[5] = 0.0  # column 5 never sees an activation: its error does not count
    errors = test_gguf.reconstruction_errors(spoiled, ref_bytes, x, "q8_0", imatrix)
    assert errors["got_error"] == pytest.approx(errors["ref_error"])
    x_hat = refquant.gguf.dequantize(ref_bytes, "q8_0", x.shape).astype(np.float64)
    assert errors["ref_error"] == pytest.approx(float(np.sum(imatrix * (x - x_hat) ** 2)))
    assert errors["error_floor"] == pytest.approx(2.0**-22 * float(np.sum(imatrix * x.astype(np.float64) ** 2)))


def test_gguf_errors_reject_non_finite_decodes_and_wrong_shapes(rng):
    x = rng.standard_normal((1, 32)).astype(np.float32)
    ref_bytes = refquant.gguf.quantize(x, "q4_0")
    nan_scale = ref_bytes.copy()
    nan_scale[0, :2] = np.array([0x7E00], np.uint16).view(np.uint8)  # d = NaN
    with pytest.raises(AssertionError, match="inf/NaN at 32 elements"):
        test_gguf.reconstruction_errors(nan_scale, ref_bytes, x, "q4_0", None)
    with pytest.raises(AssertionError, match="layout is uint8"):
        test_gguf.reconstruction_errors(ref_bytes[:, :-1], ref_bytes, x, "q4_0", None)


def test_gguf_errors_ignore_what_the_reference_cannot_decode():
    """ggml's Q5_1 with an imatrix can overflow its float16 min near 65504 (-inf): those
    elements are not compared, the rest of the row is."""
    rng = np.random.default_rng(8)  # a draw whose first block overflows
    block = (rng.uniform(60000, 65504, (1, 32)) * rng.choice([-1.0, 1.0], (1, 32))).astype(np.float32)
    imatrix = (rng.gamma(1.0, 1.0, 32) + 1e-3).astype(np.float32)
    x = np.concatenate([block, np.linspace(-1, 1, 32, dtype=np.float32)[None]], axis=1)
    imatrix = np.concatenate([imatrix, np.ones(32, np.float32)])
    ref_bytes = refquant.gguf.quantize(x, "q5_1", imatrix)
    decoded = refquant.gguf.dequantize(ref_bytes, "q5_1", x.shape)
    assert not np.isfinite(decoded[:, :32]).any() and np.isfinite(decoded[:, 32:]).all()
    errors = test_gguf.reconstruction_errors(ref_bytes, ref_bytes, x, "q5_1", imatrix)
    tail = float(np.sum((x[:, 32:].astype(np.float64) - decoded[:, 32:]) ** 2))
    assert errors["ref_error"] == errors["got_error"] == pytest.approx(tail)


# --- the layer error measures ---------------------------------------------------------


def test_gptq_layer_error_is_gptqs_own(rng):
    W, X = _layer(rng)
    H = (2 * X.astype(np.float64).T @ X.astype(np.float64))
    result = gptq(W, H, 3, 128)
    errors = test_algorithms.layer_errors("gptq_quantize", result.dequantized, result.dequantized, W,
                                          test_algorithms._gptq_error(H))
    assert errors["ref_error"] == pytest.approx(result.error, rel=1e-9)
    # = ||X W^T - X Q^T||^2 for H = 2 X^T X
    out = X.astype(np.float64) @ (W.astype(np.float64) - result.dequantized.astype(np.float64)).T
    assert errors["ref_error"] == pytest.approx(float(np.sum(out**2)), rel=1e-9)
    assert errors["got_error"] == errors["ref_error"]


def test_layer_errors_reject_non_finite_weights(rng):
    W, X = _layer(rng)
    bad = W.copy()
    bad[1, 2] = np.inf  # a float16 overflow in a backend's search
    with pytest.raises(AssertionError, match="1 non-finite weights"):
        test_algorithms.layer_errors("awq_quantize", bad, W, W, test_algorithms._output_error(X))
    with pytest.raises(AssertionError, match="float64"):
        test_algorithms.layer_errors("awq_quantize", W.astype(np.float64), W, W, test_algorithms._output_error(X))
