"""The CUDA backends: ``cuda-sim`` (the kernels on the CPU) and ``cupy`` (on a GPU).

Without a GPU, ``cupy`` is listed as unavailable with its reason and ``cuda-sim`` loads
wherever g++ does; both declare the same capabilities. The kernels that use barriers
and warp shuffles give the same bits whatever order the simulator runs a block's
threads in (no data races). Tests marked ``gpu`` compare the GPU with the simulator bit
for bit and skip without a device (``REFQUANT_REQUIRE_GPU=1`` makes that a failure).
"""

from __future__ import annotations

import numpy as np
import pytest

import accel
from accel.cupy import cuda_backend
from accel.cupy.device import SimDevice, cupy_unavailable_reason
from accel.cupy.sim import runtime
from accel.ops import OP_SPECS
from refquant.errors import UnsupportedError

needs_gxx = pytest.mark.skipif(runtime.compiler() is None, reason="no C++ compiler (g++) for cuda-sim")


def test_registry_lists_both_cuda_backends():
    info = accel.available_backends()
    assert {"cupy", "cuda-sim"} <= set(info)
    if cupy_unavailable_reason() is not None:
        assert not info["cupy"].loaded
        assert "CuPy" in info["cupy"].reason or "CUDA device" in info["cupy"].reason
    if runtime.compiler() is not None:
        assert info["cuda-sim"].loaded, info["cuda-sim"].reason
        assert info["cuda-sim"].backend.device == "cpu"


def test_capabilities_name_real_ops_and_formats():
    for op, (fn, cap) in cuda_backend._OPS.items():
        spec = OP_SPECS[op]
        assert callable(fn)
        if spec.formats is None:
            assert cap.formats is None, op
        else:
            assert cap.formats and cap.formats <= frozenset(spec.formats), op


@needs_gxx
def test_undeclared_op_raises_unsupported(monkeypatch):
    # every op of OP_SPECS is implemented: take one out of the table
    monkeypatch.delitem(cuda_backend._OPS, "awq_quantize")
    b = cuda_backend.CudaKernelsBackend("cuda-sim", SimDevice())
    assert "awq_quantize" not in b.capabilities()
    with pytest.raises(UnsupportedError, match="cuda-sim"):
        b.awq_quantize()  # the kernels' side, before any argument preparation


@needs_gxx
def test_invalid_input_raises_the_reference_error():
    b = accel.get_backend("cuda-sim")
    with pytest.raises(ValueError, match="outside 0..15"):
        b.codebook_decode(np.array([3, 16], np.uint8), "nf4")
    with pytest.raises(ValueError, match="NaN or inf"):
        b.bnb_quantize_4bit(np.array([1.0, np.nan], np.float32), "nf4", 64)
    with pytest.raises(ValueError, match="2-bit codes"):
        b.pack(np.array([[0, 4]], np.uint8), 2)


def _runs(schedule: str, monkeypatch) -> list[np.ndarray]:
    """Ops whose kernels synchronize (block reductions, shuffles) under one fiber order."""
    monkeypatch.setenv("REFQUANT_SIM_SCHEDULE", schedule)
    b = cuda_backend.CudaKernelsBackend("cuda-sim", SimDevice())
    rng = np.random.default_rng(3)
    x = rng.standard_normal(3 * 512 + 77).astype(np.float32)
    w = rng.standard_normal((8, 96)).astype(np.float32)
    packed, absmax = b.bnb_quantize_4bit(x, "nf4", 128)
    codes, amax8 = b.bnb_quantize_blockwise(x, 256)
    q, stats, cols = b.int8_vectorwise_quant(w * np.float32(3), 6.0)
    wp, wa = b.bnb_quantize_4bit(w, "fp4", 64)
    y = b.bnb_dequant_matmul_4bit(w[:2], wp, wa, "fp4", 64, (8, 96))
    mx = b.mx_quantize(x[:1536].reshape(3, 512), "mxfp4")
    nv = b.nvfp4_quantize(x[:1552])                                  # 97 blocks of 16: a half warp at the end
    # grid searches: 18 super-blocks, so a block runs a second, partial batch (4 and 8 per batch)
    rows = rng.standard_normal((3, 1536)).astype(np.float32)
    iq = [b.gguf_quantize(rows, "iq2_s", rng.random(1536).astype(np.float32)), b.gguf_quantize(rows, "iq3_xxs")]
    # tile_gemm (shared-memory tiles): GPTQ's trailing update (160 columns: a second block), AWQ's Gram matrix
    xs = rng.standard_normal((40, 160)).astype(np.float32)
    gq = b.gptq_quantize(np.tile(w, (1, 2))[:, :160], 2 * xs.T @ xs, 4, 32)
    aw = b.awq_quantize(w, xs[:, :96], 4, 32)
    return [packed, absmax, codes, amax8, q, stats, cols, y, *mx, *nv[:2], np.float32(nv[2]), *iq, gq, aw]


@needs_gxx
def test_synchronizing_kernels_do_not_depend_on_thread_order(monkeypatch):
    base = _runs("forward", monkeypatch)
    for schedule in ("reverse", "shuffled"):
        for got, want in zip(_runs(schedule, monkeypatch), base):
            np.testing.assert_array_equal(got, want)


@needs_gxx
def test_algorithm_ops_off_the_conformance_axis():
    """What the conformance formats do not reach: RTN of a float64 weight (the reference
    computes in float64: exact), GPTQ groups smaller than a block and groups spanning two
    blocks (96 columns: 96..191 crosses 128), with act-order, held to the conformance bound."""
    from refquant.algorithms import ops

    b = accel.get_backend("cuda-sim")
    rng = np.random.default_rng(7)
    W = rng.standard_normal((5, 200)) * 0.05
    for sym in (True, False):
        np.testing.assert_array_equal(b.rtn_quantize(W, 3, 64, sym), ops.rtn_quantize(W, 3, 64, sym))
    X = rng.standard_normal((48, 200)) * np.exp(rng.normal(0.0, 1.0, 200))
    X[:, 5] = 0.0   # a dead column
    H = (2 * X.T @ X / 48).astype(np.float32)
    W32 = W.astype(np.float32)

    def error(Q):  # type: ignore[no-untyped-def]
        D = W32.astype(np.float64) - Q
        return 0.5 * float(np.sum((D @ H.astype(np.float64)) * D))

    for group_size in (32, 96):
        for act_order in (False, True):
            got = b.gptq_quantize(W32, H, 4, group_size, act_order, False)
            assert error(got) <= 1.10 * error(ops.gptq_quantize(W32, H, 4, group_size, act_order, False))


@needs_gxx
def test_fused_matmul_recomputes_overflowed_outputs_on_the_device():
    """Products past FLT_MAX make the float32 sums inf - inf = NaN; the device's float64
    recompute gives the reference's result (here exactly 0 and +-inf)."""
    from refquant.gguf import dequant_matmul, quantize

    b = accel.get_backend("cuda-sim")
    w = np.concatenate([np.full((2, 32), 7e6, np.float32), np.full((2, 32), -7e6, np.float32)], axis=1)
    w[1, 32:] = 7e6                                                  # row 1: no cancellation, +inf
    data = quantize(w, "q8_0")
    x = np.full((3, 64), 1e32, np.float32)
    x[2] = 1.0                                                        # a finite row stays as computed
    got = b.gguf_dequant_matmul(x, data, "q8_0", (2, 64))
    want = dequant_matmul(x, data, "q8_0", (2, 64))
    assert np.isnan(want).sum() == 0 and np.isinf(want).any() and (want == 0).any()
    np.testing.assert_array_equal(got[:2], want[:2])
    np.testing.assert_allclose(got[2], want[2], rtol=1e-6)


@pytest.mark.gpu
def test_gpu_matches_the_simulator_bit_for_bit():
    from refquant.gguf import quantize

    gpu, sim = accel.get_backend("cupy"), accel.get_backend("cuda-sim")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    checks = [("encode_float", (x, "bfloat16")), ("bnb_quantize_4bit", (x, "nf4", 64)),
              ("bnb_quantize_blockwise", (x, 256)), ("gguf_quantize", (x, "q8_0")),
              ("int8_vectorwise_quant", (x, 2.0)), ("mx_quantize", (x, "mxfp6_e2m3")), ("nvfp4_quantize", (x,)),
              ("gguf_dequantize", (quantize(x, "iq2_xs", np.ones(256, np.float32)),
                                   "iq2_xs", x.shape)),
              ("ternary_matmul", (np.round(x * 20).astype(np.int8), np.sign(x.T).astype(np.int8)))]
    for op, args in checks:
        got = gpu.to_numpy(getattr(gpu, op)(*[gpu.asarray(a) if isinstance(a, np.ndarray) else a for a in args]))
        want = getattr(sim, op)(*args)
        for g, s in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(s), err_msg=op)


def test_gpu_sources_inline_their_headers_once():
    """The cupy backend hands NVRTC one self-contained text per file (CuPy's cache key)."""
    from accel.cupy.device import inline_source

    for path in sorted(runtime.SRC_DIR.glob("*.cu")):
        text = inline_source(path)
        assert "#include" not in text, path.name
        assert text.count("typedef unsigned char u8;") == 1, path.name   # common.cuh exactly once


@needs_gxx
def test_ggml_nvfp4_scales_on_every_rounding_boundary():
    """ggml's UE4M3 encoder rounds half up and has its own subnormal rule: sub-block
    maxima 6·v for v on both sides of every E4M3 rounding point and binade edge, and
    across the subnormal range, give the reference's bytes."""
    from refquant.gguf import quantize

    grid = np.concatenate([np.ldexp(1.0 + np.arange(8) / 8, e) for e in range(-6, 9)] +
                          [np.arange(1, 8) * 2.0**-9])
    mids = np.sort(np.concatenate([grid, (grid[:-1] + grid[1:]) / 2]))
    v = np.concatenate([np.nextafter(mids.astype(np.float32), np.float32(0)), mids.astype(np.float32),
                        np.nextafter(mids.astype(np.float32), np.float32(np.inf)), np.float32([300, 448, 500, 1e-7])])
    v = v[: v.size // 4 * 4].astype(np.float32) * np.float32(6.0)
    x = np.zeros((v.size, 16), np.float32)
    x[:, 0] = v
    x[:, 1:] = v[:, None] * np.linspace(-1, 1, 15, dtype=np.float32)
    x = x.reshape(-1, 64)
    got = accel.get_backend("cuda-sim").gguf_quantize(x, "nvfp4")
    np.testing.assert_array_equal(got, quantize(x, "nvfp4"))


def test_cupy_device_copies_each_constant_table_once():
    """Tables the kernels take (codebooks, LUTs, ggml's grids) go to the GPU once per key
    (checked with a stand-in for CuPy's array functions: no GPU needed)."""
    from accel.cupy.device import CupyDevice

    copies = []

    class FakeCupy:
        @staticmethod
        def asarray(a):
            copies.append(a)
            return np.array(a)

        ascontiguousarray = staticmethod(np.ascontiguousarray)

    dev = object.__new__(CupyDevice)
    dev.cp, dev._constants = FakeCupy, {}
    table = np.arange(8, dtype=np.uint8)
    first = dev.constant("t", table)
    assert dev.constant("t", table) is first and len(copies) == 1
    dev.constant("u", table)
    assert len(copies) == 2
    np.testing.assert_array_equal(first, table)

