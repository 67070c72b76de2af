"""Failure messages of the conformance suite end with a repro line that runs as printed."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest

from conformance.harness import check, repro_line
from examples.minimal_backend import MinimalBackend

SPEC = "tests.meta.test_repro:make_broken"


class _Broken(MinimalBackend):
    name = "broken"

    def int8_matmul(self, a_q, b_q):  # type: ignore[no-untyped-def]
        out = super().int8_matmul(a_q, b_q)
        out.flat[:1] += 1
        return out


def make_broken() -> _Broken:
    return _Broken()


def _run(line: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(line, {})  # noqa: S102 - the line under test
    return out.getvalue()


@pytest.mark.parametrize("k", [2, 64], ids=["inline", "npz"])
def test_failure_repro_line_runs_as_printed(k, tmp_path, monkeypatch):
    import accel

    monkeypatch.setenv("REFQUANT_REPRO_DIR", str(tmp_path))
    backend = accel.get_backend(SPEC)
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (3, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, 2), dtype=np.int8)
    got = backend.int8_matmul(a, b)
    with pytest.raises(AssertionError) as failure:
        check("int8_matmul", None, got, a.astype(np.int32) @ b.astype(np.int32), backend=backend,
              inputs={"a_q": a, "b_q": b})
    (line,) = re.findall(r"^repro: (.*)$", str(failure.value), re.M)
    assert SPEC in line and "..." not in line
    assert (".npz" in line) == (k == 64) and len(list(tmp_path.glob("*.npz"))) == (k == 64)
    assert _run(line) == f"{got}\n"


def test_repro_values_without_literals_and_positional_keys(tmp_path, monkeypatch):
    import accel

    monkeypatch.setenv("REFQUANT_REPRO_DIR", str(tmp_path))
    backend = accel.get_backend(SPEC)
    bits = np.array([0x7E00, 0x3C00], dtype=np.uint16)  # NaN and 1.0: no exact literal for the NaN result
    line = repro_line(backend, "decode_float", {"arg0": bits, "fmt": "float16", })
    assert "decode_float(np.array([32256, 15360], dtype='uint16'), fmt='float16')" in line
    assert _run(line) == f"{backend.decode_float(bits, 'float16')}\n"
    x = np.array([np.nan, 1.0], dtype=np.float32)
    line = repro_line(backend, "int8_matmul", {"a_q": np.empty((2, 0), np.int8), "b_q": x})
    assert "np.empty((2, 0), dtype='int8')" in line and "d['b_q']" in line
    line = repro_line(backend, "int8_matmul", {"a_q": np.float32(1.5), "b_q": np.bool_(True), "c": (1,), "d": -0.0})
    assert "a_q=np.float32(1.5), b_q=np.bool" in line and "(1,), -0.0" in line
