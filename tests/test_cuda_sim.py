"""The cuda-sim SIMT runtime (accel/cupy/sim): CUDA semantics on the CPU.

Kernels in tests/cuda_sim/sim_kernels.cu exercise barriers, warp shuffles and votes,
atomics, the fp16 / bf16 conversion intrinsics (every 16-bit code, and float32 values
on and around every rounding tie, against NumPy and ml_dtypes) and __dp4a; a kernel
that omits a barrier must give different results when the fibers of a block run in
different orders, and undefined collectives must stop the launch with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from accel.cupy.sim import runtime

pytestmark = pytest.mark.skipif(runtime.compiler() is None, reason="no C++ compiler (g++) for cuda-sim")

KERNELS = Path(__file__).parent / "cuda_sim" / "sim_kernels.cu"


@pytest.fixture(scope="module")
def mod():
    return runtime.load_module(KERNELS)


@pytest.mark.parametrize("schedule", sorted(runtime.SCHEDULES))
def test_barrier_tree_sum_is_order_independent(mod, schedule):
    x = np.random.default_rng(0).integers(-1000, 1000, 3 * 256, dtype=np.int32)
    out = np.zeros(3, np.int32)
    mod.launch("block_sum", (3,), (256,), [x, out], schedule=schedule, seed=7)
    np.testing.assert_array_equal(out, x.reshape(3, 256).sum(axis=1))


def test_missing_barrier_is_exposed_by_fiber_order(mod):
    """Without __syncthreads the result depends on the order threads run in: the runtime
    runs them in several orders, and the racy kernel disagrees with itself."""
    x = np.arange(1, 257, dtype=np.int32)
    results = set()
    for schedule, seed in [("forward", 0), ("reverse", 0), ("shuffled", 1), ("shuffled", 2)]:
        out = np.zeros(1, np.int32)
        mod.launch("block_sum_racy", (1,), (256,), [x, out], schedule=schedule, seed=seed)
        results.add(int(out[0]))
    assert len(results) > 1
    synced, racy = [], []
    for schedule in ("forward", "reverse"):
        for flag, sink in ((1, synced), (0, racy)):
            out = np.zeros(96, np.int32)
            mod.launch("rotate", (1,), (96,), [np.arange(96, dtype=np.int32), out, np.int32(flag)], schedule=schedule)
            sink.append(out)
    np.testing.assert_array_equal(synced[0], np.roll(np.arange(96), -1))
    np.testing.assert_array_equal(synced[1], synced[0])
    assert not np.array_equal(racy[0], racy[1])


def _expected_shuffles(x, delta, width):
    lane = np.arange(x.size)
    seg = lane // width * width
    shfl = x[seg + delta % width]
    up = np.where(lane % width - delta < 0, x, x[np.clip(lane - delta, 0, None)])
    down = np.where(lane % width + delta >= width, x, x[np.clip(lane + delta, None, x.size - 1)])
    src = lane ^ delta
    xor = np.where(src >= seg + width, x, x[np.minimum(src, x.size - 1)])
    pairs = (x[lane ^ 1].astype(np.float32) + 0.5) * 2
    return np.concatenate([shfl, up, down, xor, pairs.astype(np.int32)])


@pytest.mark.parametrize("delta,width", [(1, 32), (5, 32), (3, 8), (7, 16), (0, 4), (31, 32)])
def test_shuffles_follow_the_programming_guide(mod, delta, width):
    x = (np.arange(64, dtype=np.int32) * 7 + 3)
    out = np.zeros(5 * 64, np.int32)
    mod.launch("shuffles", (1,), (64,), [x, out, np.int32(delta), np.int32(width)], schedule="shuffled", seed=3)
    # each warp of the block shuffles within itself
    expected = np.concatenate([_expected_shuffles(x[w * 32:(w + 1) * 32], delta, width).reshape(5, 32)
                               for w in range(2)], axis=1).reshape(-1)
    np.testing.assert_array_equal(out, expected)


def test_warp_sum_reduction(mod):
    x = np.random.default_rng(1).standard_normal(4 * 128).astype(np.float32)
    out = np.zeros(16, np.float32)
    mod.launch("warp_sum", (4,), (128,), [x, out])
    # the shfl_down tree's own float32 order: pairs at distance 16, 8, 4, 2, 1
    w = x.reshape(16, 32).copy()
    for off in (16, 8, 4, 2, 1):
        w[:, :off] = w[:, :off] + w[:, off:2 * off]
    np.testing.assert_array_equal(out, w[:, 0])


def test_votes(mod):
    x = np.zeros(64, np.int32)
    x[[0, 3, 4, 31]] = 1
    x[32:] = 1
    out = np.zeros(8, np.uint32)
    mod.launch("votes", (1,), (64,), [x, out], schedule="reverse")
    bits0 = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 31)
    np.testing.assert_array_equal(out, [bits0, 1, 0, bits0 & 0x55555555, 0xFFFFFFFF, 1, 1, 0x55555555])


def test_syncthreads_count_and_or(mod):
    x = np.zeros(100, np.int32)
    x[[5, 50, 99]] = 1
    out = np.zeros(3, np.int32)
    mod.launch("sync_votes", (1,), (100,), [x, out])
    np.testing.assert_array_equal(out, [3, 0, 1])
    mod.launch("sync_votes", (1,), (100,), [np.ones(100, np.int32), out])
    np.testing.assert_array_equal(out, [100, 1, 1])


def test_atomics_from_every_block(mod):
    n = 1000
    x = np.random.default_rng(2).integers(0, 1 << 20, n, dtype=np.int32)
    s, mx, tickets = np.zeros(1, np.int32), np.full(1, -1, np.int32), np.zeros(n + 1, np.int32)
    hist, fs = np.zeros(8, np.uint32), np.zeros(1, np.float32)
    mod.launch("atomics", (4,), (256,), [x, np.int32(n), s, hist, mx, fs, tickets], schedule="shuffled", seed=5)
    assert s[0] == x.sum() and mx[0] == x.max() and fs[0] == n
    np.testing.assert_array_equal(hist, np.bincount(x & 7, minlength=8))
    assert tickets[0] == n and tickets[1:].sum() == n     # every ticket handed out once


def test_undefined_collectives_are_refused(mod):
    with pytest.raises(runtime.SimError, match="exited"):
        mod.launch("shuffle_exited_lane", (1,), (32,), [np.zeros(32, np.int32)])
    with pytest.raises(runtime.SimError, match="deadlock"):
        mod.launch("divergent_barrier_deadlock", (1,), (32,), [np.zeros(32, np.int32)])
    with pytest.raises(runtime.SimError, match="1..1024"):
        mod.launch("block_sum", (1,), (2048,), [np.zeros(1, np.int32), np.zeros(1, np.int32)])
    with pytest.raises(runtime.SimError, match="NumPy scalar"):
        mod.launch("rotate", (1,), (4,), [np.zeros(4, np.int32), np.zeros(4, np.int32), 1])


def _tie_inputs(mbits: int, ebits: int) -> np.ndarray:
    """float32 values exactly halfway between adjacent 16-bit codes (every code), their
    float32 neighbours, the extremes of the range and special values."""
    codes = np.arange(1 << 16, dtype=np.uint32)
    if ebits == 8:
        lo = (codes << 16).view(np.float32)
    else:
        lo = codes.astype(np.uint16).view(np.float16).astype(np.float32)
    finite = lo[np.isfinite(lo)]
    srt = np.unique(finite)
    mid = (srt[:-1].astype(np.float64) + srt[1:]) / 2
    mid32 = mid.astype(np.float32)
    mid32 = mid32[mid32.astype(np.float64) == mid]             # exact ties only
    extra = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 65519.996, 1e-8, -1e-8, 6e-8, 3e-8,
                      3.4028235e38, 1e-45, -1e-45], np.float32)
    out = np.concatenate([mid32, np.nextafter(mid32, np.float32(np.inf)), np.nextafter(mid32, np.float32(-np.inf)),
                          finite, extra])
    return out


def _round_directed(x: np.ndarray, dtype, mode: str) -> np.ndarray:
    """Directed rounding of float32 into a 16-bit dtype, by search among its finite
    values: rd the largest value <= x, ru the smallest >= x, rz the one nearer zero; a
    zero result keeps the sign of x, infinities stay."""
    codes = np.arange(1 << 16, dtype=np.uint16)
    vals = codes.view(dtype).astype(np.float64)
    keep = np.isfinite(vals) & ~((vals == 0) & (codes >= 0x8000))
    order = np.argsort(vals[keep], kind="stable")
    v, c = vals[keep][order], codes[keep][order]
    inf = codes[np.isposinf(vals)][0]
    xd = x.astype(np.float64)
    i_lo = np.searchsorted(v, xd, side="right") - 1
    i_hi = np.searchsorted(v, xd, side="left")
    lo = np.where(i_lo >= 0, c[np.clip(i_lo, 0, c.size - 1)], inf | 0x8000)
    hi = np.where(i_hi < c.size, c[np.clip(i_hi, 0, c.size - 1)], inf)
    out = {"rd": lo, "ru": hi, "rz": np.where(xd >= 0, lo, hi)}[mode].astype(np.uint16)
    out = np.where(np.isinf(xd), inf | np.where(xd < 0, 0x8000, 0), out).astype(np.uint16)
    zero = (out & 0x7FFF) == 0
    return np.where(zero, np.where(np.signbit(xd), 0x8000, 0), out).astype(np.uint16)


@pytest.fixture(scope="module")
def converted(mod):
    codes = np.arange(1 << 16, dtype=np.uint16)
    f = np.concatenate([_tie_inputs(10, 5), _tie_inputs(7, 8)])
    n = max(codes.size, f.size)
    h = np.resize(codes, n)
    f = np.resize(f, n)
    h2f, b2f = np.zeros(n, np.float32), np.zeros(n, np.float32)
    f2h, f2b = np.zeros(4 * n, np.uint16), np.zeros(4 * n, np.uint16)
    mod.launch("half_convert", (8,), (256,), [h, f, np.int64(n), h2f, b2f, f2h, f2b])
    return h, f, h2f, b2f, f2h.reshape(n, 4), f2b.reshape(n, 4)


def test_half_and_bfloat16_widening_on_every_code(converted):
    h, _, h2f, b2f, _, _ = converted
    for got, dtype in ((h2f, np.float16), (b2f, ml_dtypes.bfloat16)):
        want = h.view(dtype).astype(np.float32)
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    # NaN payloads survive widening exactly (CUDA's cvt.f32.f16 keeps them)
    assert h2f[0x7E01].view(np.uint32) == 0x7FC02000


@pytest.mark.parametrize("which,dtype", [(4, np.float16), (5, ml_dtypes.bfloat16)])
@pytest.mark.parametrize("mode", ["rn", "rz", "rd", "ru"])
def test_half_and_bfloat16_narrowing_on_ties(converted, which, dtype, mode):
    f, got = converted[1], converted[which][:, ["rn", "rz", "rd", "ru"].index(mode)]
    nan = np.isnan(f)
    assert (got[nan] == 0x7FFF).all()                     # CUDA's canonical NaN
    with np.errstate(over="ignore", invalid="ignore"):
        want = f[~nan].astype(dtype).view(np.uint16) if mode == "rn" else _round_directed(f[~nan], dtype, mode)
    bad = np.flatnonzero(got[~nan] != want)
    assert bad.size == 0, f"{bad.size} mismatches, first x={f[~nan][bad[:5]]} got={got[~nan][bad[:5]]} want={want[bad[:5]]}"


def test_dp4a_and_float_to_int_rounding(mod):
    rng = np.random.default_rng(9)
    n = 300
    a = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
    b = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
    f = np.concatenate([np.arange(-4, 4, 0.5, dtype=np.float32), np.array([np.nan, 3e9, -3e9], np.float32),
                        rng.standard_normal(n).astype(np.float32) * 100])[:n]
    dot, udot, rn = np.zeros(n, np.int32), np.zeros(n, np.uint32), np.zeros(n, np.int32)
    mod.launch("int_intrinsics", (2,), (256,), [a, b, f, np.int32(n), dot, udot, rn])
    sa, sb = a.view(np.int8).reshape(n, 4).astype(np.int64), b.view(np.int8).reshape(n, 4).astype(np.int64)
    ua, ub = a.view(np.uint8).reshape(n, 4).astype(np.int64), b.view(np.uint8).reshape(n, 4).astype(np.int64)
    idx = np.arange(n)
    np.testing.assert_array_equal(dot, ((sa * sb).sum(1) + idx).astype(np.int32))
    np.testing.assert_array_equal(udot, ((ua * ub).sum(1) + idx).astype(np.uint32))
    want = np.rint(np.nan_to_num(f.astype(np.float64), nan=0.0)).clip(-2**31, 2**31 - 1).astype(np.int32)
    np.testing.assert_array_equal(rn, want)
