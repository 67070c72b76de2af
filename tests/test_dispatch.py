"""The dispatcher (accel.dispatch): every backend's kernels receive arguments prepared by
the reference, so a third-party backend gets the boundary's safety for free."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import numpy as np
import pytest

import accel
from accel.dispatch import Dispatched, prepare_by_signature, prepare_function
from accel.ops import OP_SPECS
from refquant.granularity import PerChannel
from refquant.mapping import choose_qparams
from refquant.prepare import MAX_ELEMENTS, Prepared, checked_size, output


@pytest.fixture
def spy_backend(tmp_path, monkeypatch):
    """A third-party backend whose kernels record what they receive (no checks of its own)."""
    (tmp_path / "spy_backend.py").write_text(textwrap.dedent("""
        import numpy as np
        from accel.protocol import OpCapability

        class Spy:
            name = "spy"
            device = "cpu"
            calls = []
            def capabilities(self):
                return {"dequantize_affine": OpCapability(out=True), "int8_matmul": OpCapability()}
            def asarray(self, x):
                return np.asarray(x)
            def to_numpy(self, x):
                return x
            def dequantize_affine(self, q, params, *, out):
                self.calls.append((q, params, out))
                out[...] = (q.astype(np.float32) * params.scale.reshape(-1)[0])
                return out
            def int8_matmul(self, a, b):
                self.calls.append((a, b))
                return (a.astype(np.int32) @ b.astype(np.int32))

        def make():
            return Spy()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = accel.get_backend("spy_backend:make")
    backend.raw.calls.clear()
    return backend


def test_get_backend_returns_the_dispatcher():
    assert isinstance(accel.get_backend("reference"), Dispatched)


def test_third_party_kernels_receive_prepared_arrays(spy_backend):
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    p = choose_qparams(x)
    q = np.asfortranarray(np.ones((3, 4), np.int64))
    got = spy_backend.dequantize_affine(q, p)
    (q_in, p_in, out), = spy_backend.raw.calls
    assert q_in.flags.c_contiguous and p_in.scale.flags.c_contiguous and out is got
    assert got.dtype == np.float32 and got.shape == (3, 4)


def test_third_party_kernels_never_see_refused_input(spy_backend):
    x = np.ones((3, 4), np.float32)
    p = choose_qparams(x, granularity=PerChannel(0))
    from dataclasses import replace

    for bad in (replace(p, scale=np.zeros_like(p.scale)), replace(p, scale=p.scale[:2]),
                replace(p, zero_point=np.zeros((5,), np.int32))):
        with pytest.raises(ValueError):
            spy_backend.dequantize_affine(np.ones((3, 4), np.int8), bad)
    with pytest.raises(TypeError):
        spy_backend.int8_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.int8))
    with pytest.raises(ValueError, match="inner dimensions"):
        spy_backend.int8_matmul(np.ones((2, 3), np.int8), np.ones((4, 2), np.int8))
    assert spy_backend.raw.calls == []


@pytest.mark.parametrize("name", ["reference", "spy_backend:make"])
def test_out_argument(name, spy_backend):
    backend = accel.get_backend(name)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    p = choose_qparams(x)
    q = np.ones((3, 4), np.int8)
    out = np.full((3, 4), np.nan, np.float32)
    assert backend.dequantize_affine(q, p, out=out) is out
    np.testing.assert_array_equal(out, accel.get_backend("reference").raw.dequantize_affine(q, p))
    with pytest.raises(ValueError, match="shape"):
        backend.dequantize_affine(q, p, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        backend.dequantize_affine(q, p, out=np.empty((4, 3), np.float32).T)
    buf = np.zeros(24, np.uint16)
    with pytest.raises(ValueError, match="shares memory"):   # checked before any kernel runs
        backend.encode_float(buf.view(np.float32).reshape(3, 4), "float16", out=buf[:12].reshape(3, 4))
    # encode_float out= on the reference (its function writes the caller's array)
    if name == "reference":
        codes = np.empty((3, 4), np.uint16)
        assert backend.encode_float(x, "float16", out=codes) is codes
        np.testing.assert_array_equal(codes, x.astype(np.float16).view(np.uint16))


def test_tuple_out_is_copied_for_backends_without_out_capability():
    """A backend that returns fresh tuples (no ``out`` capability): the dispatcher copies
    each result into the caller's entry and keeps the result at None entries."""
    from accel.reference import ReferenceBackend

    class Copying(ReferenceBackend):
        def capabilities(self):
            return {op: replace(cap, out=False) for op, cap in super().capabilities().items()}

    backend = Dispatched(Copying())
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)
    out = (np.empty((2, 1), np.uint8), np.empty((2, 32), np.uint8))
    got = backend.mx_quantize(x, "mxfp8_e4m3", out=out)
    assert got[0] is out[0] and got[1] is out[1]
    for a, b in zip(out, accel.get_backend("reference").mx_quantize(x, "mxfp8_e4m3")):
        np.testing.assert_array_equal(a, b)
    x[0, 0] = 10.0                                       # an outlier column
    q = np.empty((2, 32), np.int8)
    got = backend.int8_vectorwise_quant(x, 6.0, out=(q, None, None))
    assert got[0] is q and got[1].shape == (2,) and got[2].tolist() == [0]
    with pytest.raises(ValueError, match=r"out\[2\] must be None"):
        backend.int8_vectorwise_quant(x, 6.0, out=(q, None, np.empty(1, np.int64)))


def test_every_op_prepare_function_is_public_and_owned_by_refquant():
    for op, spec in OP_SPECS.items():
        fn = prepare_function(op)
        assert spec.prepare.startswith("refquant.prepare.") and not fn.__name__.startswith("_"), op


def test_default_prepare_binds_the_reference_signature():
    from dataclasses import replace

    prepare = prepare_by_signature(replace(OP_SPECS["int8_matmul"], prepare=None))
    a = np.asfortranarray(np.ones((2, 3), np.int8))
    p = prepare(a, b_q=np.ones((3, 2), np.int8))
    assert isinstance(p, Prepared) and p.args[0].flags.c_contiguous
    with pytest.raises(TypeError):
        prepare(a)


def test_sizes_are_computed_without_overflow():
    assert checked_size((2**24, 2**24)) == 2**48 == MAX_ELEMENTS
    with pytest.raises(ValueError, match="elements"):
        checked_size((2**40, 2**40))
    with pytest.raises(ValueError, match="elements"):
        output(None, (2**40, 2**40), np.uint8)
    from refquant import gguf

    with pytest.raises(ValueError, match="needs"):   # 2**32 * 2**32 * 32 wraps to 0 in int64
        gguf.dequantize(np.zeros(0, np.uint8), "q4_0", (2**32, 2**32, 32))
