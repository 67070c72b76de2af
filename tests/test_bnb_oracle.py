"""refquant.bnb against bitsandbytes 0.50.x on CPU (the test oracle): packed bytes,
absmax, double-quantization fields, 8-bit codes, int8 vector-wise codes and the
safetensors files must be identical.

bitsandbytes (and torch) are oracles only; these tests skip where it is not installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refquant import bnb
from refquant.formats import bnb as fmt

torch = pytest.importorskip("torch")
functional = pytest.importorskip("bitsandbytes.functional")

pytestmark = pytest.mark.oracle
F32 = np.float32


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Pin torch to one thread (the double-quant mean order depends on it above 32768
    blocks) and restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def bits(a) -> np.ndarray:
    a = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
    return a.view(np.uint32) if a.dtype == np.float32 else a


def make_input(kind: str, n: int, blocksize: int, rng: np.random.Generator) -> np.ndarray:
    """float32 test vectors: distributions plus the blocks that break quantizers."""
    x = rng.standard_normal(n).astype(F32)
    if kind == "student_t":
        x = rng.standard_t(1.5, n).astype(F32)
    elif kind == "uniform":
        x = rng.uniform(-3, 3, n).astype(F32)
    elif kind == "zero_blocks":             # first full block and the (partial) last one all zero
        x[:blocksize] = 0
        x[n - (n % blocksize or blocksize):] = 0
    elif kind == "outlier":                 # one huge value per block of the first blocks
        x[rng.integers(0, n, 1 + n // blocksize)] = F32(3e4) * rng.choice([-1, 1])
        x[0] = F32(1e30)
    elif kind == "tiny":
        x = (x * F32(1e-11)).astype(F32)
    elif kind == "code_values":             # exact NF4 values and float32 midpoints times 2
        table = np.concatenate([fmt.code_4bit("nf4"), (fmt.code_4bit("nf4")[:-1] + fmt.code_4bit("nf4")[1:]) / F32(2)])
        x = (table[rng.integers(0, table.size, n)] * F32(2)).astype(F32)
    elif kind == "constant":
        x[:] = F32(0.7)
    return x


KINDS = ("normal", "student_t", "uniform", "zero_blocks", "outlier", "tiny", "code_values", "constant")


def test_tables_equal_bitsandbytes():
    np.testing.assert_array_equal(bits(bnb.dynamic_map()), bits(functional.create_dynamic_map()))
    for qt in ("nf4", "fp4"):
        np.testing.assert_array_equal(bits(fmt.code_4bit(qt)), bits(functional.get_4bit_type(qt, device="cpu")))


def test_bitsandbytes_4bit_blocksizes():
    """The block sizes refquant accepts are exactly those bitsandbytes' quantize_4bit accepts."""
    x = torch.ones(128)
    for bs in (16, 32, 48, 64, 4096, 8192):
        try:
            functional.quantize_4bit(x, blocksize=bs)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == (bs in fmt.BLOCKSIZES_4BIT), bs


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("blocksize", fmt.BLOCKSIZES_4BIT)
def test_quantize_4bit_bit_exact(rng, quant_type, blocksize):
    for n in (1, 3, blocksize, 2 * blocksize + 1, 3 * blocksize - 7, 4100 + blocksize // 2):
        for kind in KINDS:
            x = make_input(kind, n, blocksize, rng)
            for double_quant in (False, True):
                packed, state = functional.quantize_4bit(torch.from_numpy(x), blocksize=blocksize, quant_type=quant_type,
                                                         compress_statistics=double_quant)
                q = bnb.quantize_4bit(x, quant_type, blocksize, double_quant)
                where = f"{quant_type} bs={blocksize} n={n} {kind} dq={double_quant}"
                np.testing.assert_array_equal(q.packed, packed.numpy().reshape(-1), err_msg=where)
                if not double_quant:
                    np.testing.assert_array_equal(bits(q.absmax), bits(state.absmax), err_msg=where)
                    continue
                np.testing.assert_array_equal(q.nested.codes, state.absmax.numpy(), err_msg=where)
                np.testing.assert_array_equal(bits(q.nested.absmax), bits(state.state2.absmax), err_msg=where)
                assert F32(q.nested.offset) == F32(state.offset.item()), where


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_dequantize_4bit_matches(rng, quant_type):
    """Values equal bitsandbytes'; bits too, except that its CPU kernel decodes FP4 code 8
    to -0.0 in some code paths and +0.0 in others (refquant: +0.0, its quant_map)."""
    for blocksize, n in ((64, 4096), (64, 333), (256, 1000), (2048, 5000)):
        x = make_input("zero_blocks", n, blocksize, rng)
        for double_quant in (False, True):
            packed, state = functional.quantize_4bit(torch.from_numpy(x), blocksize=blocksize, quant_type=quant_type,
                                                     compress_statistics=double_quant)
            expected = functional.dequantize_4bit(packed, state).numpy().reshape(-1)
            got = bnb.dequantize_4bit(bnb.quantize_4bit(x, quant_type, blocksize, double_quant)).reshape(-1)
            np.testing.assert_array_equal(got, expected)
            nonzero = expected != 0
            np.testing.assert_array_equal(bits(got[nonzero]), bits(expected[nonzero]))
            if quant_type == "nf4":
                np.testing.assert_array_equal(bits(got), bits(expected))


def test_4bit_half_precision_inputs(rng):
    import ml_dtypes

    x = rng.standard_normal(3000).astype(F32)
    for dtype, tdtype in ((np.float16, torch.float16), (ml_dtypes.bfloat16, torch.bfloat16)):
        xd = x.astype(dtype)
        t = torch.from_numpy(xd.astype(F32)).to(tdtype)
        packed, state = functional.quantize_4bit(t, blocksize=64, quant_type="nf4", compress_statistics=True)
        q = bnb.quantize_4bit(xd, "nf4", 64, True)
        np.testing.assert_array_equal(q.packed, packed.numpy().reshape(-1))
        np.testing.assert_array_equal(q.nested.codes, state.absmax.numpy())


@pytest.mark.parametrize("threads", [1, 2])
def test_double_quant_offset_above_32768_blocks(rng, threads):
    """torch's float32 mean depends on its thread count above 32768 blocks; refquant
    reproduces the order of a given count (``mean_threads``)."""
    x = rng.standard_t(2, 32 * 40000 + 5).astype(F32)
    torch.set_num_threads(threads)
    _, state = functional.quantize_4bit(torch.from_numpy(x), blocksize=32, quant_type="nf4", compress_statistics=True)
    q = bnb.quantize_4bit(x, "nf4", 32, double_quant=True, mean_threads=threads)
    assert F32(q.nested.offset) == F32(state.offset.item())
    np.testing.assert_array_equal(q.nested.codes, state.absmax.numpy())


def test_torch_sum_order(rng):
    for n in list(range(1, 70)) + [127, 128, 129, 1000, 4097, 32768, 32769, 65536 + 17]:
        for scale in (1.0, 1e3):
            x = (rng.random(n) * scale).astype(F32)
            assert fmt.torch_sum_float32(x) == F32(torch.from_numpy(x).sum().item()), n


@pytest.mark.parametrize("blocksize", fmt.BLOCKSIZES_8BIT)
def test_quantize_blockwise_bit_exact(rng, blocksize):
    for n in (1, 7, 255, blocksize, 2 * blocksize + 3, 5000):
        for kind in KINDS:
            x = make_input(kind, n, blocksize, rng)
            codes, state = functional.quantize_blockwise(torch.from_numpy(x), blocksize=blocksize)
            q = bnb.quantize_blockwise(x, blocksize)
            where = f"bs={blocksize} n={n} {kind}"
            np.testing.assert_array_equal(q.packed, codes.numpy(), err_msg=where)
            np.testing.assert_array_equal(bits(q.absmax), bits(state.absmax), err_msg=where)
            expected = functional.dequantize_blockwise(codes, state).numpy()
            np.testing.assert_array_equal(bits(bnb.dequantize_blockwise(q)), bits(expected), err_msg=where)


def test_quantize_blockwise_degenerate_blocks():
    for x in ([1e-39, 0.0, -5e-40, 3e-40], [0.0] * 10, [-0.0, 5.0, -5.0], [1e-36, 0.0, -5e-37]):
        xa = np.array(x, F32)
        codes, state = functional.quantize_blockwise(torch.from_numpy(xa), blocksize=64)
        q = bnb.quantize_blockwise(xa, 64)
        np.testing.assert_array_equal(q.packed, codes.numpy())
        np.testing.assert_array_equal(bits(q.absmax), bits(state.absmax))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("threshold", [0.0, 3.0, 6.0, 6.002])
def test_int8_vectorwise_bit_exact(rng, dtype, threshold):
    cases = [rng.standard_t(1.5, (16, 256)), rng.standard_normal((1, 64)) * 4, np.zeros((3, 8)),
             np.array([[6.0, 1.0, -6.0], [0.5, 0.25, 0.125]]), np.array([[7.0, -8.0], [9.0, 10.0]]),
             np.arange(-12, 12, 0.5).reshape(4, 12)]
    for x in cases:
        xd = np.asarray(x).astype(dtype)
        q_ref, stats_ref, cols_ref = functional.int8_vectorwise_quant(torch.from_numpy(xd.copy()), threshold)
        q, stats, cols = bnb.int8_vectorwise_quant(xd, threshold)
        np.testing.assert_array_equal(q, q_ref.numpy())
        np.testing.assert_array_equal(bits(stats), bits(stats_ref))
        np.testing.assert_array_equal(cols, np.zeros(0, np.int64) if cols_ref is None else cols_ref.numpy())
        deq_ref = functional.int8_vectorwise_dequant(q_ref, stats_ref).numpy()
        np.testing.assert_array_equal(bits(bnb.int8_vectorwise_dequant(q, stats)), bits(deq_ref))


def test_int8_matmul_and_dequant_match_bitsandbytes(rng):
    from refquant.matmul import dequantize_int32, int8_matmul

    a = rng.integers(-128, 128, (7, 300)).astype(np.int8)
    b = rng.integers(-128, 128, (5, 300)).astype(np.int8)
    acc = functional.int8_linear_matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_array_equal(int8_matmul(a, b.T), acc)
    row, col = rng.random(7).astype(F32) * 10, rng.random(5).astype(F32) * 10
    ref = functional.int8_mm_dequant(torch.from_numpy(acc), torch.from_numpy(row), torch.from_numpy(col)).float().numpy()
    got = dequantize_int32(acc, row / 127, col / 127)
    # bitsandbytes returns float16 and its CPU constant 6.200124e-05 is 1.8e-5 larger
    # (relatively) than 1/127**2.
    np.testing.assert_allclose(got, ref, rtol=2e-3)


# ---- serialization ----------------------------------------------------------------


def _bnb_file(path, x, quant_type, blocksize, double_quant):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    packed, state = functional.quantize_4bit(torch.from_numpy(x), blocksize=blocksize, quant_type=quant_type,
                                             compress_statistics=double_quant)
    tensors = {"weight": packed}
    tensors.update({f"weight.{k}": v for k, v in state.as_dict(packed=True).items()})
    safetensors_torch.save_file(tensors, str(path))
    return packed, state


@pytest.mark.parametrize("quant_type, double_quant", [("nf4", True), ("nf4", False), ("fp4", True)])
def test_bitsandbytes_saved_file_loads_and_dequantizes_identically(tmp_path, rng, quant_type, double_quant):
    x = rng.standard_normal((48, 70)).astype(F32)
    packed, state = _bnb_file(tmp_path / "bnb.safetensors", x, quant_type, 64, double_quant)
    q = bnb.load(tmp_path / "bnb.safetensors")
    assert q.shape == (48, 70) and q.quant_type == quant_type and (q.nested is not None) == double_quant
    expected = functional.dequantize_4bit(packed, state).numpy()
    np.testing.assert_array_equal(bnb.dequantize_4bit(q), expected)
    if quant_type == "nf4":
        np.testing.assert_array_equal(bits(bnb.dequantize_4bit(q)), bits(expected))
    # refquant writes the very same file for the same input ...
    bnb.quantize_4bit(x, quant_type, 64, double_quant).save(tmp_path / "refquant.safetensors")
    assert (tmp_path / "refquant.safetensors").read_bytes() == (tmp_path / "bnb.safetensors").read_bytes()
    # ... and rewriting what it loaded gives identical bytes.
    q.save(tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "bnb.safetensors").read_bytes()


def test_refquant_file_loads_in_bitsandbytes(tmp_path, rng):
    """bitsandbytes reads refquant's file. (Rows are a multiple of the block size here:
    bitsandbytes 0.50.2's AVX-512 CPU dequantize_4bit indexes blocks per row, so it
    mis-scales 2-D tensors whose row length is not a multiple of the block size, e.g.
    (33, 64) at blocksize 128, even for its own quantization; the blocks of
    quantize_4bit, its torch path and refquant run over the flattened tensor.)"""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    x = rng.standard_normal((33, 128)).astype(F32)
    q = bnb.quantize_4bit(x, "nf4", 64, double_quant=True)
    q.save(tmp_path / "w.safetensors")
    tensors = safetensors_torch.load_file(str(tmp_path / "w.safetensors"))
    weight = tensors.pop("weight")
    state = functional.QuantState.from_dict({k[len("weight."):]: v for k, v in tensors.items()}, device="cpu")
    np.testing.assert_array_equal(bits(functional.dequantize_4bit(weight, state).numpy()), bits(bnb.dequantize_4bit(q)))
    assert math.prod(state.shape) == x.size
