"""bitsandbytes block formats: NF4/FP4 4-bit blockwise, 8-bit dynamic blockwise,
double quantization of the absmax, and int8 vector-wise (LLM.int8) rows.

Every rule here reproduces what bitsandbytes 0.50.2 computes on CPU, bit for bit
(checked by ``tests/test_bnb_oracle.py``). The functions work on
flat, already validated float32 arrays; :mod:`refquant.bnb` is the public, checked API.

Storage of a 4-bit tensor of ``n`` elements at block size ``B`` (``quantize_4bit``)
==============================  ===================  =========================================
field                           bytes                meaning
==============================  ===================  =========================================
packed (bnb key ``weight``)     ceil(n / 2)          two 4-bit codes per byte, the FIRST element
                                                     in the HIGH nibble; an odd ``n`` is padded
                                                     with the code of 0.0
absmax                          4 * ceil(n / B)      float32 max abs(x) per block (C order); a
                                                     partial last block has its own
--- with double quantization (``compress_statistics=True``) replacing ``absmax``: ---
absmax codes                    ceil(n / B)          uint8 dynamic-map codes of absmax - offset
nested_absmax                   4 * ceil(nb / 256)   float32 absmax of those, per 256 blocks
nested_offset                   4                    float32 mean of the absmax (torch order)
==============================  ===================  =========================================

Bits per weight at B = 64: 4 + 32/64 = 4.5, or 4 + 8/64 + 32/(64*256) = 4.126953 with
double quantization (QLoRA, Dettmers et al. 2023, section 3 "Double Quantization").

An 8-bit dynamic blockwise tensor (``quantize_blockwise``) is one uint8 code per
element plus one float32 absmax per block of ``B`` (default 4096).

Where bitsandbytes disagrees with itself, refquant follows its CPU quantizers:

* all-zero 4-bit block: CUDA computes 0 * (1/0) = NaN and writes code 0 (0x00 for NF4);
  the CPU path clamps absmax to 1e-38 and writes the code of 0.0 (0x77). Same values.
* FP4 +-0: CUDA signs by ``x < 0``; the CPU quantizer gives (-0.0026, 0] code 0 and
  (0, 0.0026] code 8. Code 8 decodes to +0.0 here (``get_4bit_type``), to -0.0 in CUDA
  and in parts of the CPU dequantizer.
* 8-bit codes: CUDA and the torch fallback pick the nearest code of ``x / absmax``; the
  CPU library the nearest code of a 65536-point grid (a 0 becomes code 131).
* The AVX-512 CPU ``dequantize_4bit`` of 0.50.2 indexes blocks per row, so it mis-scales
  2-D tensors whose row length is not a multiple of the block size; blocks here (and in
  every quantizer of bitsandbytes) run over the flattened tensor.

References
----------
bitsandbytes 0.50.2: ``functional.py`` (``quantize_4bit``, ``quantize_blockwise``,
``create_dynamic_map``, ``get_4bit_type``), ``backends/default/ops.py`` (the torch
4-bit quantizer the CPU build runs, ``int8_vectorwise_quant``), ``csrc/cpu_ops.cpp``
(the 65536-entry LUT 8-bit quantizer of the CPU library). T. Dettmers et al., "QLoRA:
Efficient Finetuning of Quantized LLMs", 2023; "8-bit Optimizers via Block-wise
Quantization", 2022 (the dynamic map); "LLM.int8()", 2022 (vector-wise int8).
"""

from __future__ import annotations

import functools

import numpy as np

from refquant.dtypes.codebooks import get_codebook
from refquant.packing import pack, unpack

__all__ = [
    "BLOCKSIZES_4BIT", "BLOCKSIZES_8BIT", "NESTED_BLOCKSIZE", "QUANT_TYPES_4BIT", "bits_per_weight_4bit",
    "code_4bit", "dynamic_map", "quantize_4bit_blocks", "dequantize_4bit_blocks",
    "quantize_blockwise_8bit", "dequantize_blockwise_8bit", "torch_sum_float32",
    "double_quantize", "double_dequantize", "vectorwise_quantize_rows", "vectorwise_dequantize_rows",
]

F32 = np.float32

#: Block sizes ``bitsandbytes.functional.quantize_4bit`` accepts (it raises on any other).
BLOCKSIZES_4BIT = (32, 64, 128, 256, 512, 1024, 2048, 4096)
#: Block sizes documented for ``quantize_blockwise`` (8-bit).
BLOCKSIZES_8BIT = (64, 128, 256, 512, 1024, 2048, 4096)
#: Block size of the second-level (nested) quantization of the absmax.
NESTED_BLOCKSIZE = 256
QUANT_TYPES_4BIT = ("nf4", "fp4")


def bits_per_weight_4bit(blocksize: int = 64, double_quant: bool = False,
                         double_quant_blocksize: int = NESTED_BLOCKSIZE) -> float:
    """Stored bits per weight of NF4/FP4: ``4 + 32 / blocksize`` (a float32 absmax per block),
    or with double quantization ``4 + 8 / blocksize + 32 / (blocksize * double_quant_blocksize)``
    (8-bit absmax codes plus a float32 second-level absmax per ``double_quant_blocksize``
    blocks; the one float32 offset per tensor is not counted). QLoRA section 3 ("Double
    Quantization": 0.5 -> 0.127 bits per parameter at blocksize 64).

    ``blocksize`` and ``double_quant_blocksize`` are positive ints (any value: the cost of a
    hypothetical layout too; the codecs accept only :data:`BLOCKSIZES_4BIT`); ``double_quant``
    a bool.

    Parameters
    ----------
    blocksize : int >= 1
        Values per absmax (unchecked here: the public callers validate: :func:`refquant.metrics.bits_per_weight`).
    double_quant : bool
        The absmax are stored as 8-bit codes with a second-level float32 absmax.
    double_quant_blocksize : int >= 1
        First-level blocks per second-level absmax (bitsandbytes: 256).
    """
    if not double_quant:
        return 4 + 32 / blocksize
    return 4 + 8 / blocksize + 32 / (blocksize * double_quant_blocksize)

# torch's default backend guards its reciprocal with absmax.clamp(min=1e-38) (a float32
# subnormal), so an all-zero block scales to 0 instead of NaN.
_ABSMAX_FLOOR = F32(1e-38)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- tables


def code_4bit(quant_type: str) -> np.ndarray:
    """The 16 float32 values a 4-bit code decodes to (``get_4bit_type``), indexed by code.

    NF4 is sorted ascending (code 7 is 0.0); bitsandbytes FP4 is bit 3 = sign and a
    3-bit magnitude code (not OCP e2m1), values ``[0, 0.0625, 8, 12, 4, 6, 2, 3] / 12``.
    The tables live in :mod:`refquant.dtypes.codebooks` (``nf4``, ``fp4``).

    FP4 code 8 is +0.0, as in ``get_4bit_type`` (whose ``-0`` is the Python integer 0)
    and in the ``quant_map`` bitsandbytes saves. Its own CPU dequantization is not
    consistent about it: the native kernel gives -0.0 for code 8 in the scalar tail of a
    row (length not a multiple of 16 on AVX-512), +0.0 elsewhere; CUDA gives -0.0.

    Parameters
    ----------
    quant_type : {"nf4", "fp4"}
        KeyError otherwise (the public functions check it first).
    """
    return get_codebook(quant_type).table


def _torch_linspace_float32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps, dtype=torch.float32)`` bit for bit.

    torch (``RangeFactoriesKernel.cpp``) computes ``step = (end - start) / (steps - 1)`` in
    float32 and fills the first half as ``start + step * i`` and the second half as
    ``end - step * (steps - 1 - i)``, each a fused multiply-add (one rounding). The FMA is
    emulated in float64: ``step * i`` and the sum are exact there for these sizes.
    NumPy's linspace rounds differently from 17 points on.
    """
    start32, end32 = F32(start), F32(end)
    step = F32((end32 - start32) / F32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    first = np.float64(start32) + np.float64(step) * i
    second = np.float64(end32) - np.float64(step) * (steps - 1 - i)
    return np.where(i < steps // 2, first, second).astype(F32)


@functools.cache
def dynamic_map() -> np.ndarray:
    """bitsandbytes' signed 8-bit dynamic map, 256 float32 values sorted ascending.

    ``create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)``: for exponent
    ``i = 0..6``, the means of neighbouring points of ``linspace(0.1, 1, 2**i + 1)`` times
    ``10**(i - 6)``, with both signs (127 positive and 127 negative values), plus 0 and 1.
    Index 127 is 0.0, index 255 is 1.0, index 0 is -0.99296874 (Dettmers et al. 2022,
    "8-bit Optimizers via Block-wise Quantization", section 2 "Dynamic Tree Quantization").
    """
    parts = [np.zeros(1, F32), np.ones(1, F32)]
    for i in range(7):
        bounds = _torch_linspace_float32(0.1, 1.0, 2**i + 1)
        means = (bounds[:-1] + bounds[1:]) / F32(2)
        # torch multiplies the float32 tensor by the Python scalar in float32.
        values = F32(10.0 ** (i - 6)) * means
        parts += [values, -values]
    return _read_only(np.sort(np.concatenate(parts)))


# ----------------------------------------------------------------- 4-bit NF4 / FP4


def _normalize_4bit(x: np.ndarray, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block absmax and values scaled into [-1, 1], as torch's default backend does.

    Full blocks multiply by the float32 reciprocal ``1 / max(absmax, 1e-38)``; the partial
    last block divides by ``max(absmax, 1e-38)`` instead, and that clamped value is what it
    stores as its absmax (so an all-zero partial block stores 1e-38, a full one 0).
    Returns ``(scaled (n,), absmax (n_blocks,))``, both float32.
    """
    n = x.size
    full = n - n % blocksize
    blocks = x[:full].reshape(-1, blocksize)                        # (n_full_blocks, B)
    absmax = np.abs(blocks).max(axis=1, initial=F32(0))
    inv = F32(1) / np.maximum(absmax, _ABSMAX_FLOOR)
    scaled = np.clip(blocks * inv[:, None], F32(-1), F32(1)).reshape(-1)
    if full < n:
        tail = x[full:]
        am = np.maximum(np.abs(tail).max(), _ABSMAX_FLOOR)
        absmax = np.append(absmax, am)
        scaled = np.concatenate([scaled, np.clip(tail / am, F32(-1), F32(1))])
    return scaled, absmax.astype(F32)


def quantize_4bit_blocks(x: np.ndarray, quant_type: str, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
    """NF4 / FP4 blockwise quantization of a flat float32 array.

    Each value, scaled by its block's absmax, gets the code whose value is nearest, with a
    value exactly on a float32 midpoint taking the lower code (``torch.bucketize``,
    ``right=False``; the CUDA comparison trees agree except for FP4's +-0).

    Parameters
    ----------
    x : ndarray of float32, shape (n,)
        Finite values, in C order of the original tensor.
    quant_type : {"nf4", "fp4"}
    blocksize : int
        One of :data:`BLOCKSIZES_4BIT`.

    Returns
    -------
    packed : ndarray of uint8, shape (ceil(n / 2),)
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
    """
    scaled, absmax = _normalize_4bit(x, blocksize)
    if scaled.size % 2:
        # bitsandbytes pads the *scaled* values with one 0.0, so the pad nibble is the
        # code of 0.0 (7 for NF4, 0 for FP4) and never touches an absmax.
        scaled = np.append(scaled, F32(0))
    # Nearest value, ties to the lower one: torch.bucketize(right=False) on the float32
    # midpoints of the stably sorted table (the codebook's "lower" tie rule).
    codes = get_codebook(quant_type).encode(scaled)
    return pack(codes, 4, "high_first"), absmax


def dequantize_4bit_blocks(packed: np.ndarray, absmax: np.ndarray, quant_type: str,
                           blocksize: int, n: int) -> np.ndarray:
    """``code[nibble] * absmax[block]`` in float32 (one rounding), for the first ``n`` codes.

    Parameters
    ----------
    packed : ndarray of uint8, shape (ceil(n / 2),)
        Two codes per byte, first in the high nibble.
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
    quant_type : {"nf4", "fp4"}
    blocksize : int, a power of two in 32..4096
    n : int >= 0
        Codes to decode (unchecked here: the public callers validate).

    Returns
    -------
    ndarray of float32, shape (n,)
    """
    codes = unpack(packed, 4, 2 * packed.size, "high_first")[:n]
    values = code_4bit(quant_type)[codes]
    return values * np.repeat(absmax, blocksize)[:n]


# -------------------------------------------------------------- 8-bit dynamic (LUT)


@functools.cache
def lut_8bit() -> np.ndarray:
    """The CPU library's 65536-entry lookup table for the dynamic map (``cpu_ops.cpp``).

    Grid point ``g_j = (2 j) / 65535 - 1`` (float32 division, then float32 subtraction);
    ``LUT[j]`` = the number of float32 midpoints ``0.5 * (code[i] + code[i + 1])`` strictly
    below ``g_j``, i.e. the nearest code of the grid point, ties to the lower code.
    """
    code = dynamic_map()
    midpoints = F32(0.5) * (code[:-1] + code[1:])
    grid = np.arange(65536, dtype=F32) * F32(2) / F32(65535) - F32(1)
    return _read_only(np.searchsorted(midpoints, grid, side="left").astype(np.uint8))


def quantize_blockwise_8bit(x: np.ndarray, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
    """8-bit dynamic-map blockwise quantization, as the bitsandbytes 0.50.2 CPU library does.

    Per block: ``absmax = max abs(x)``; an all-zero block gets code 0 everywhere (it
    decodes to -0.0). Otherwise ``v = clamp(x * (1 / absmax), -1, 1)`` and
    ``t = (v + 1) * 0.5`` in float32, the grid index ``j = trunc(t * 65535 + 0.5)``, and
    the code is ``LUT[j]``. So the code is the nearest code of the grid point, not of
    ``v``: a 0 in a non-zero block gets code 131 (+2.1e-5), never 127.
    The partial last block is its own block (its absmax is over its real elements).

    Parameters
    ----------
    x : ndarray of float32, shape (n,)
    blocksize : int

    Returns
    -------
    codes : ndarray of uint8, shape (n,)
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
    """
    n = x.size
    n_blocks = -(-n // blocksize)
    # Zero padding cannot change a max of absolute values; it is cut off again below.
    blocks = np.zeros(n_blocks * blocksize, dtype=F32)
    blocks[:n] = x
    blocks = blocks.reshape(n_blocks, blocksize)                    # (n_blocks, B)
    absmax = np.abs(blocks).max(axis=1, initial=F32(0))
    zero = absmax == 0
    with np.errstate(over="ignore", invalid="ignore"):
        # A subnormal absmax below 1/FLT_MAX makes the float32 reciprocal inf; the library
        # then computes 0 * inf = NaN for zeros of the block, which it writes as code 0.
        inv = F32(1) / np.where(zero, F32(1), absmax)
        v = np.clip(blocks * inv[:, None], F32(-1), F32(1))
    v[np.isnan(v)] = F32(-1)
    t = (v + F32(1)) * F32(0.5)
    # The x86-64 library fuses t * 65535 + 0.5 into one FMA; for every float32 t in [0, 1]
    # two float32 roundings give the same index (checked exhaustively).
    j = (t * F32(65535) + F32(0.5)).astype(np.int64)
    codes = lut_8bit()[j]
    codes[zero] = 0
    return codes.reshape(-1)[:n], absmax.astype(F32)


def dequantize_blockwise_8bit(codes: np.ndarray, absmax: np.ndarray, blocksize: int) -> np.ndarray:
    """``dynamic_map()[code] * absmax[block]`` in float32 (``dequantizeBlockwise8bitCpu``).

    Parameters
    ----------
    codes : ndarray of uint8, shape (n,)
    absmax : ndarray of float32, shape (ceil(n / blocksize),)
    blocksize : int, a power of two in 64..4096 (unchecked here: the public callers validate)
    """
    n = codes.size
    return dynamic_map()[codes] * np.repeat(absmax, blocksize)[:n]


# ------------------------------------------------------- double quantization (QLoRA)


def _multi_row_sum(rows: np.ndarray) -> np.ndarray:
    """torch's ``multi_row_sum`` (``aten/src/ATen/native/cpu/SumKernel.cpp``), float32.

    ``rows`` has shape (size, 4, lanes). Rows are summed in steps of ``2**P`` rows into
    level 0 of four accumulator levels; after each step level j-1 is added into level j
    (and zeroed) until ``i & (mask << j*P)`` is non-zero. This cascade bounds the error
    growth; reproducing it exactly is what makes the offset bit-identical.
    """
    size = rows.shape[0]
    power = max(4, ((size - 1).bit_length() if size > 1 else 0) // 4)  # CeilLog2(size) // 4
    step, mask = 1 << power, (1 << power) - 1
    acc = np.zeros((4,) + rows.shape[1:], dtype=F32)
    n_steps = size // step
    if n_steps:
        # Level 0 is zero at the start of every step, so a step is a sequential sum from 0;
        # np.cumsum accumulates sequentially (unlike np.sum's pairwise order).
        step_sums = np.cumsum(rows[: n_steps * step].reshape(n_steps, step, *rows.shape[1:]), axis=1)[:, -1]
        i = 0
        for s in step_sums:
            acc[0] += s
            i += step
            for j in range(1, 4):
                acc[j] += acc[j - 1]
                acc[j - 1] = 0
                if i & (mask << (j * power)):
                    break
    for r in rows[n_steps * step:]:
        acc[0] += r
    for j in range(1, 4):
        acc[0] += acc[j]
    return acc[0]


def _row_sum(v: np.ndarray) -> np.ndarray:
    """torch's ``row_sum``: the row as (-1, 4) rows for :func:`_multi_row_sum`, leftovers to partial 0."""
    m = v.shape[0] // 4
    partials = _multi_row_sum(v[: 4 * m].reshape(m, 4, *v.shape[1:])) if m else np.zeros((4,) + v.shape[1:], F32)
    for r in v[4 * m:]:
        partials[0] += r
    for k in range(1, 4):
        partials[0] += partials[k]
    return partials[0]


def _torch_sum_one_chunk(a: np.ndarray) -> np.float32:
    """``torch.sum`` of a contiguous float32 vector on one thread (``vectorized_inner_sum``)."""
    lanes = 8
    n_vec = a.size // lanes
    if n_vec == 0:
        return F32(F32(0) + _row_sum(a))
    vec_acc = _row_sum(a[: n_vec * lanes].reshape(n_vec, lanes))
    total = F32(0)
    for value in np.concatenate([a[n_vec * lanes:], vec_acc]):      # scalar tail, then the lanes
        total = F32(total + value)
    return total


def torch_sum_float32(a: np.ndarray, threads: int = 1) -> np.float32:
    """The float32 sum of a 1-D array in exactly the order torch 2.x uses on x86-64 CPUs.

    Parameters
    ----------
    a : ndarray of float32, shape (n,)
    threads : int
        torch's intra-op thread count. With ``c = min(threads, ceil(n / 32768))`` chunks
        greater than 1, torch sums ``c`` contiguous chunks of ``ceil(n / c)`` elements
        separately and adds the chunk sums in order; below 32769 elements
        the result never depends on threads.

    Returns
    -------
    numpy.float32
    """
    n = a.size
    chunks = max(1, min(threads, -(-n // 32768)))
    if chunks == 1:
        return _torch_sum_one_chunk(a)
    size = -(-n // chunks)
    total = F32(0)
    for start in range(0, n, size):
        total = F32(total + _torch_sum_one_chunk(a[start:start + size]))
    return total


def double_quantize(absmax: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Quantize the per-block absmax to 8 bits (QLoRA "double quantization").

    ``offset = mean(absmax)`` (torch's float32 sum order, divided by the count in
    float32), then ``quantize_blockwise_8bit(absmax - offset, 256)``.

    Parameters
    ----------
    absmax : ndarray of float32, shape (n_blocks,)
    threads : int
        torch thread count the mean is reproduced for (see :func:`torch_sum_float32`).

    Returns
    -------
    codes : ndarray of uint8, shape (n_blocks,)
    nested_absmax : ndarray of float32, shape (ceil(n_blocks / 256),)
    offset : numpy.float32

    Raises
    ------
    ValueError
        If the float32 sum of ``absmax`` overflows (bitsandbytes then stores an inf offset).
    """
    with np.errstate(over="ignore"):
        offset = F32(torch_sum_float32(absmax, threads) / F32(absmax.size))
    if not np.isfinite(offset):
        raise ValueError("double quantization is undefined for this tensor: the float32 sum of its block "
                         "absmax overflows (blocks near the float32 maximum); quantize without double_quant")
    codes, nested_absmax = quantize_blockwise_8bit(absmax - offset, NESTED_BLOCKSIZE)
    return codes, nested_absmax, offset


def double_dequantize(codes: np.ndarray, nested_absmax: np.ndarray, offset: np.float32,
                      blocksize: int = NESTED_BLOCKSIZE) -> np.ndarray:
    """The absmax a double-quantized tensor dequantizes with: ``code[q] * absmax2 + offset``.

    Two float32 roundings, as bitsandbytes (``dequantize_blockwise`` then ``+= offset``).

    Parameters
    ----------
    codes : ndarray of uint8, shape (n_blocks,)
        Dynamic-map codes of ``absmax - offset``.
    nested_absmax : ndarray of float32, shape (ceil(n_blocks / blocksize),)
    offset : float32
        The mean the codes are relative to.
    blocksize : int >= 1
        Second-level block size (bitsandbytes: 256) (unchecked here: the public callers validate).
    """
    return dequantize_blockwise_8bit(codes, nested_absmax, blocksize) + F32(offset)


# ----------------------------------------------------------- int8 vector-wise rows


def vectorwise_quantize_rows(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LLM.int8() vector-wise quantization of rows (``int8_vectorwise_quant``).

    ``row_stat = max abs`` of the row without its outliers, and
    ``q = round_half_even(x * float32(127 / row_stat))`` in float32.
    With ``threshold > 0`` an outlier is ``abs(x) >= threshold`` with the threshold cast
    to the input's dtype (through float32, as torch casts a Python scalar); outliers are
    0, and with more than one row every column holding an outlier is 0 in all rows.
    A row whose (non-outlier) values are all 0 gets ``row_stat = 0`` and codes 0
    (bitsandbytes computes 0 * inf there, an undefined NaN-to-int8 cast); a row whose
    absmax is below 127 / FLT_MAX is computed in float64 (bitsandbytes' float32 scale
    overflows there).

    Parameters
    ----------
    x : ndarray of float16, bfloat16 or float32, shape (rows, k)
        Finite values.
    threshold : float
        >= 0; 0 disables outlier handling.

    Returns
    -------
    q : ndarray of int8, shape (rows, k)
    row_stats : ndarray of float32, shape (rows,)
    outlier_cols : ndarray of int64, shape (n_outlier_cols,)
        Ascending indices of columns holding an outlier (empty when there is none).
    """
    rows = x.shape[0]
    if threshold > 0:
        limit = np.asarray(F32(threshold)).astype(x.dtype)
        outliers = np.abs(x) >= limit
        outlier_cols = np.flatnonzero(outliers.any(axis=0)).astype(np.int64)
        x32 = np.where(outliers, F32(0), x.astype(F32))
    else:
        outlier_cols = np.zeros(0, dtype=np.int64)
        x32 = x.astype(F32)
    row_stats = np.abs(x32).max(axis=1, initial=F32(0)).astype(F32)
    zero_row = row_stats == 0
    with np.errstate(over="ignore"):
        scale = F32(127) / np.where(zero_row, F32(1), row_stats)
    tiny = np.isinf(scale)
    q = np.rint(x32 * np.where(tiny, F32(1), scale)[:, None])
    if tiny.any():
        # row_stat < 127 / FLT_MAX (~3.7e-37): the float32 scale overflows and bitsandbytes
        # then writes undefined inf-to-int8 casts (0 on x86-64). refquant computes such rows
        # in float64, which gives the codes the rule means (the row's absmax -> +-127).
        q[tiny] = np.rint(x32[tiny].astype(np.float64) * (127.0 / row_stats[tiny].astype(np.float64))[:, None])
    q = q.astype(np.int8)
    if rows > 1 and outlier_cols.size:
        q[:, outlier_cols] = 0
    return q, row_stats, outlier_cols


def vectorwise_dequantize_rows(q: np.ndarray, row_stats: np.ndarray) -> np.ndarray:
    """``(q * row_stat) * float32(1/127)``: two float32 roundings, as bitsandbytes'
    ``int8_vectorwise_dequant`` (it multiplies by 7.874015718698502e-3).

    Parameters
    ----------
    q : ndarray of int8, shape (rows, k)
    row_stats : ndarray of float32, shape (rows,)
        Each row's absmax (any float32; beyond float32's range the result is +-inf).
    """
    with np.errstate(over="ignore"):  # beyond float32's range the value is +-inf
        return (q.astype(F32) * row_stats[:, None]) * F32(1 / 127)
