"""GPU benchmarks of the cupy backend (marked ``gpu``: skipped without a CUDA device).

Run with ``pytest tests/bench/test_bench_cupy.py --benchmark-only`` (``tools/gpu_check.sh``
does, and renders the report). Each op runs on a 4096 x 4096 float32 layer already on
the device; time is measured with CUDA events around the launch (pytest-benchmark's
pedantic mode, the device synchronized each round), and GB/s (bytes read + written) is
compared with the device-to-device copy bandwidth measured in the same run
(:func:`device_copy_gbs`). Targets (issue 12): streaming quantize / dequantize >= 80% of
copy bandwidth, fused 4-bit GEMV >= 70%.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

SHAPE = (4096, 4096)
ROUNDS = 20


@functools.lru_cache(maxsize=None)
def device_copy_gbs(nbytes: int = 256 * 2**20, repeats: int = 10) -> float:
    """Best device-to-device copy bandwidth in GB/s (bytes read + written), CUDA events."""
    import cupy as cp

    src = cp.ones(nbytes // 4, cp.float32)
    dst = cp.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        cp.copyto(dst, src)
        stop.record()
        stop.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return 2 * nbytes / best / 1e9


def _run(benchmark, fn, bytes_moved: int, rounds: int = ROUNDS) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Time ``fn`` with CUDA events (min over ``rounds``) and record GB/s and the copy fraction."""
    import cupy as cp

    times: list[float] = []

    def timed() -> None:
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)

    fn()   # compile / warm up
    benchmark.pedantic(timed, rounds=rounds, iterations=1)
    seconds = min(times)
    copy = device_copy_gbs()
    info = {"seconds_cuda_events": seconds, "GB/s": round(bytes_moved / seconds / 1e9, 2),
            "copy_GB/s": round(copy, 2), "fraction_of_copy": round(bytes_moved / seconds / 1e9 / copy, 4)}
    benchmark.extra_info.update(info)
    return info


@pytest.fixture(scope="module")
def gpu():
    import accel

    return accel.get_backend("cupy")


@pytest.fixture(scope="module")
def weight(gpu):
    return gpu.asarray(np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32))


def test_copy_bandwidth(benchmark, weight):
    import cupy as cp

    dst = cp.empty_like(weight)
    _run(benchmark, lambda: cp.copyto(dst, weight), 2 * weight.nbytes)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float8_e4m3fn"])
def test_encode_float(benchmark, gpu, weight, fmt):
    out = gpu.encode_float(weight, fmt)
    _run(benchmark, lambda: gpu.encode_float(weight, fmt), weight.nbytes + out.nbytes)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_decode_float(benchmark, gpu, weight, fmt):
    bits = gpu.encode_float(weight, fmt)
    _run(benchmark, lambda: gpu.decode_float(bits, fmt), bits.nbytes + weight.nbytes)


def test_quantize_affine_per_channel(benchmark, gpu, weight):
    from refquant.mapping import choose_qparams

    params = choose_qparams(np.asarray(weight.get()), granularity="per_channel", axis=0)
    q = gpu.quantize_affine(weight, params)
    _run(benchmark, lambda: gpu.quantize_affine(weight, params), weight.nbytes + q.nbytes)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_bnb_quantize_4bit(benchmark, gpu, weight, quant_type):
    packed, absmax = gpu.bnb_quantize_4bit(weight, quant_type, 64)
    _run(benchmark, lambda: gpu.bnb_quantize_4bit(weight, quant_type, 64),
         weight.nbytes + packed.nbytes + absmax.nbytes)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_bnb_dequantize_4bit(benchmark, gpu, weight, quant_type):
    packed, absmax = gpu.bnb_quantize_4bit(weight, quant_type, 64)
    _run(benchmark, lambda: gpu.bnb_dequantize_4bit(packed, absmax, quant_type, 64, SHAPE),
         packed.nbytes + absmax.nbytes + weight.nbytes)


def test_bnb_quantize_blockwise(benchmark, gpu, weight):
    codes, absmax = gpu.bnb_quantize_blockwise(weight, 4096)
    _run(benchmark, lambda: gpu.bnb_quantize_blockwise(weight, 4096), weight.nbytes + codes.nbytes + absmax.nbytes)


@pytest.mark.parametrize("qtype", ["q4_0", "q4_k", "q6_k", "q8_0"])
def test_gguf_dequantize(benchmark, gpu, weight, qtype):
    from refquant.gguf import quantize

    data = gpu.asarray(quantize(np.asarray(weight.get()), qtype))
    _run(benchmark, lambda: gpu.gguf_dequantize(data, qtype, SHAPE), data.nbytes + weight.nbytes)


@pytest.mark.parametrize("qtype", ["q8_0", "q8_k"])
def test_gguf_quantize(benchmark, gpu, weight, qtype):
    data = gpu.gguf_quantize(weight, qtype)
    _run(benchmark, lambda: gpu.gguf_quantize(weight, qtype), weight.nbytes + data.nbytes)


@pytest.mark.parametrize("qtype", ["iq2_xxs", "iq2_xs", "iq3_s", "iq1_s", "iq1_m"])
def test_gguf_quantize_grid_search(benchmark, gpu, weight, qtype):
    """The IQ grid types' searches (one thread per sub-block), with an importance matrix
    (IQ2_XXS, IQ2_XS and IQ1_S need one): compute-bound, GB/s for comparison only."""
    imatrix = gpu.asarray(np.random.default_rng(1).gamma(1.0, 1.0, SHAPE[1]).astype(np.float32))
    data = gpu.gguf_quantize(weight, qtype, imatrix)
    _run(benchmark, lambda: gpu.gguf_quantize(weight, qtype, imatrix), weight.nbytes + data.nbytes)


@pytest.mark.parametrize("fmt", ["mxfp8_e4m3", "mxfp4", "mxint8"])
def test_mx_quantize(benchmark, gpu, weight, fmt):
    scales, codes = gpu.mx_quantize(weight, fmt)
    _run(benchmark, lambda: gpu.mx_quantize(weight, fmt), weight.nbytes + scales.nbytes + codes.nbytes)


@pytest.mark.parametrize("fmt", ["mxfp8_e4m3", "mxfp4"])
def test_mx_dequantize(benchmark, gpu, weight, fmt):
    scales, codes = gpu.mx_quantize(weight, fmt)
    _run(benchmark, lambda: gpu.mx_dequantize(scales, codes, fmt), scales.nbytes + codes.nbytes + weight.nbytes)


def test_nvfp4_quantize(benchmark, gpu, weight):
    """Two passes: the tensor's max |x| (a device reduction), then the blocks."""
    packed, scales, _ = gpu.nvfp4_quantize(weight)
    _run(benchmark, lambda: gpu.nvfp4_quantize(weight), 2 * weight.nbytes + packed.nbytes + scales.nbytes)


def test_nvfp4_dequantize(benchmark, gpu, weight):
    packed, scales, g = gpu.nvfp4_quantize(weight)
    _run(benchmark, lambda: gpu.nvfp4_dequantize(packed, scales, g), packed.nbytes + scales.nbytes + weight.nbytes)


def _random_blocks(qtype: str) -> np.ndarray:
    """Random bytes of a SHAPE tensor of ``qtype``, each block's leading float16 d set to
    0.01 where the type has one (the grid types' search makes host quantization of a
    4096 x 4096 layer slow; any bytes decode)."""
    from refquant.gguf import get_format

    fmt = get_format(qtype)
    nb = SHAPE[0] * SHAPE[1] // fmt.block_size
    data = np.random.default_rng(4).integers(0, 256, (nb, fmt.type_size), dtype=np.uint8)
    if qtype not in ("iq1_m", "nvfp4"):   # d elsewhere (iq1_m) or four UE4M3 bytes (nvfp4)
        data[:, :2] = np.array([0.01], np.float16).view(np.uint8)
    return data.reshape(SHAPE[0], -1)


@pytest.mark.parametrize("qtype", ["iq2_xxs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m", "nvfp4"])
def test_gguf_dequantize_grid_types(benchmark, gpu, weight, qtype):
    data = gpu.asarray(_random_blocks(qtype))
    _run(benchmark, lambda: gpu.gguf_dequantize(data, qtype, SHAPE), data.nbytes + weight.nbytes)


@pytest.fixture(scope="module")
def numba_2_cores():
    """The Numba backend limited to 2 threads (the CPU the K-quant target is set against),
    or None without numba."""
    try:
        import numba

        import accel
    except ImportError:
        return None
    backend = accel.get_backend("numba")
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    return backend


@pytest.mark.parametrize("qtype", ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"])
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
def test_gguf_kquant_quantize(benchmark, gpu, weight, numba_2_cores, qtype, with_imatrix):
    """K-quant quantize of the whole layer; the Numba backend on 2 threads is timed once on
    its first 512 rows and scaled to the layer (rows are independent; target: the GPU
    >= 100x faster)."""
    import time

    host = np.asarray(weight.get())
    im = np.random.default_rng(2).uniform(0.1, 2.0, SHAPE[1]).astype(np.float32) if with_imatrix else None
    im_dev = gpu.asarray(im) if im is not None else None
    data = gpu.gguf_quantize(weight, qtype, im_dev)
    info = _run(benchmark, lambda: gpu.gguf_quantize(weight, qtype, im_dev), weight.nbytes + data.nbytes)
    if numba_2_cores is not None:
        numba_2_cores.gguf_quantize(host[:256], qtype, im)        # compile
        t0 = time.perf_counter()
        numba_2_cores.gguf_quantize(host[:512], qtype, im)
        cpu = (time.perf_counter() - t0) * SHAPE[0] / 512
        benchmark.extra_info.update({"numba_2_threads_s": round(cpu, 4),
                                     "speedup_vs_numba_2_threads": round(cpu / info["seconds_cuda_events"], 1)})


@pytest.mark.parametrize("qtype", ["q4_0", "q4_k", "q8_0"])
def test_gguf_gemv(benchmark, gpu, weight, qtype):
    """Fused W4A16 GEMV: one token; the bytes are the packed weight (read once)."""
    from refquant.gguf import quantize

    data = gpu.asarray(quantize(np.asarray(weight.get()), qtype))
    x = gpu.asarray(np.random.default_rng(1).standard_normal((1, SHAPE[1])).astype(np.float32))
    _run(benchmark, lambda: gpu.gguf_dequant_matmul(x, data, qtype, SHAPE), data.nbytes + x.nbytes + 4 * SHAPE[0])


def test_nf4_gemv(benchmark, gpu, weight):
    packed, absmax = gpu.bnb_quantize_4bit(weight, "nf4", 64)
    x = gpu.asarray(np.random.default_rng(1).standard_normal((1, SHAPE[1])).astype(np.float32))
    _run(benchmark, lambda: gpu.bnb_dequant_matmul_4bit(x, packed, absmax, "nf4", 64, SHAPE),
         packed.nbytes + absmax.nbytes + x.nbytes + 4 * SHAPE[0])


def test_ternary_matmul(benchmark, gpu):
    """BitNet's ternary GEMM (adds / subtracts only), 64 tokens through a 4096 x 4096 layer."""
    rng = np.random.default_rng(1)
    a = gpu.asarray(rng.integers(-128, 128, (64, 4096)).astype(np.int8))
    t = gpu.asarray(rng.integers(-1, 2, (4096, 4096)).astype(np.int8))
    info = _run(benchmark, lambda: gpu.ternary_matmul(a, t), a.nbytes + t.nbytes + 4 * 64 * 4096)
    benchmark.extra_info["Gadds/s"] = round(64 * 4096 * 4096 / info["seconds_cuda_events"] / 1e9, 2)


def test_int8_matmul(benchmark, gpu):
    rng = np.random.default_rng(1)
    a = gpu.asarray(rng.integers(-128, 128, (512, 4096)).astype(np.int8))
    b = gpu.asarray(rng.integers(-128, 128, (4096, 4096)).astype(np.int8))
    info = _run(benchmark, lambda: gpu.int8_matmul(a, b), a.nbytes + b.nbytes + 4 * 512 * 4096)
    benchmark.extra_info["TOPS"] = round(2 * 512 * 4096 * 4096 / info["seconds_cuda_events"] / 1e12, 2)


# --- the algorithm ops: whole-layer searches, timed end to end (host steps included) ---
ALGORITHM_ROUNDS = 3
CALIBRATION_TOKENS = 512


@pytest.fixture(scope="module")
def calibration():
    """``X`` (512 tokens, 4096) with lognormal channel magnitudes, and GPTQ's ``H = 2 XᵀX / N``."""
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((CALIBRATION_TOKENS, SHAPE[1])) * np.exp(rng.normal(0.0, 1.0, SHAPE[1]))).astype(np.float32)
    return X, (2.0 / CALIBRATION_TOKENS) * (X.T @ X)


def test_rtn_quantize(benchmark, gpu, weight):
    out = gpu.rtn_quantize(weight, 4, 128)
    _run(benchmark, lambda: gpu.rtn_quantize(weight, 4, 128), weight.nbytes + out.nbytes)


@pytest.mark.parametrize("act_order", [False, True], ids=["natural", "act_order"])
def test_gptq_quantize(benchmark, gpu, weight, calibration, act_order):
    """GPTQ of a 4096 x 4096 layer given H (4 bits, groups of 128): the host's Cholesky of
    H^-1 and the device sweep; GB/s for comparison only (compute-bound)."""
    H = gpu.asarray(calibration[1])
    out = gpu.gptq_quantize(weight, H, 4, 128, act_order)
    info = _run(benchmark, lambda: gpu.gptq_quantize(weight, H, 4, 128, act_order),
                weight.nbytes + H.nbytes + out.nbytes, rounds=ALGORITHM_ROUNDS)
    benchmark.extra_info["layer_s"] = info["seconds_cuda_events"]


def test_awq_quantize(benchmark, gpu, weight, calibration):
    """AWQ's 20-ratio scale search on a 4096 x 4096 layer with 512 tokens (float64 Gram-matrix
    loss: 20 GEMMs of 4096^3); GB/s for comparison only."""
    X = gpu.asarray(calibration[0])
    out = gpu.awq_quantize(weight, X, 4, 128)
    info = _run(benchmark, lambda: gpu.awq_quantize(weight, X, 4, 128), weight.nbytes + X.nbytes + out.nbytes,
                rounds=ALGORITHM_ROUNDS)
    benchmark.extra_info["layer_s"] = info["seconds_cuda_events"]
