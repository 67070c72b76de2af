"""Every CUDA source of accel/cupy/src compiles with the machine's nvcc for sm_80 and
sm_90 (ptxas -v), streaming kernels do not spill registers, and the PTX of bit-exact
kernels holds no fma.rn.f32 (no contraction of a*b+c: --fmad=false, as the cupy backend
compiles them). Skipped, with the reason, only where nvcc is absent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from accel.cupy import nvcc_check

pytestmark = pytest.mark.skipif(nvcc_check.nvcc() is None, reason="nvcc is not installed on this machine")

# Kernels allowed to use the stack / to fuse multiply-adds: not streaming, or Nmse.
NOT_STREAMING = {"torch_mean"}            # one thread, torch's sum cascade in local arrays
NOT_BIT_EXACT = {"llm_int8_epilogue", "bnb_matmul_4bit"}   # Nmse contracts (float sums)


@pytest.fixture(scope="module")
def reports():
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(nvcc_check.compile_file, nvcc_check.sources()))


def test_every_source_compiles_for_sm80_and_sm90(reports):
    failed = {r.source: r.errors[-2000:] for r in reports if not r.ok}
    assert not failed, failed
    for r in reports:
        archs = {k.arch for k in r.kernels}
        assert archs == set(nvcc_check.ARCHS), f"{r.source}: ptxas reported {archs}"


def test_streaming_kernels_do_not_spill(reports):
    spills = [(r.source, k.name, k.arch, k.spill_stores, k.spill_loads) for r in reports for k in r.kernels
              if k.name not in NOT_STREAMING and (k.spill_stores or k.spill_loads)]
    assert not spills, spills


def test_bit_exact_kernels_have_no_fma(reports):
    fused = [(r.source, k.name) for r in reports for k in r.kernels if k.name not in NOT_BIT_EXACT and k.fma_f32]
    assert not fused, f"fma.rn.f32 in bit-exact kernels: {fused}"


def test_the_fma_check_can_fail(tmp_path):
    """Without --fmad=false nvcc contracts a*b+c: the PTX scan sees it."""
    src = tmp_path / "axpy.cu"
    src.write_text('extern "C" __global__ void axpy(float* y, const float* x, float a) '
                   '{ int i = threadIdx.x; y[i] = a * x[i] + y[i]; }\n')
    import subprocess

    out = tmp_path / "axpy.ptx"
    subprocess.run([nvcc_check.nvcc(), "-arch=compute_80", "-ptx", "-o", str(out), str(src)], check=True)
    assert nvcc_check._ptx_fma_counts(out.read_text()) == {"axpy": 1}
