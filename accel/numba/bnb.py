"""bitsandbytes family as Numba kernels: NF4/FP4 4-bit blockwise, 8-bit dynamic
blockwise (the CPU library's LUT), double quantization, int8 vector-wise rows.

Each kernel mirrors one function of :mod:`refquant.formats.bnb` (bitsandbytes 0.50.2
CPU, bit for bit) and is parallel over blocks (or rows):

* ``_quantize_4bit`` - ``quantize_4bit_blocks``: full blocks scale by the float32
  reciprocal ``1 / max(absmax, 1e-38)``, the partial last block divides by that clamped
  value and stores it; the code of a scaled value is its count of float32 midpoints
  strictly below (ties to the lower code), mapped to the code without a lookup as
  ``order[0] + sum of (order[j+1] - order[j]) over midpoints j below``; two codes per
  byte, first in the high nibble; an odd length pads with the code of 0.0.
* ``_dequantize_4bit`` / ``_dequantize_8bit`` - ``code[q] * absmax[block]``, one float32
  multiply.
* ``_quantize_8bit`` - ``quantize_blockwise_8bit``: ``v = clamp(x * (1 / absmax), -1, 1)``,
  grid index ``trunc(((v + 1) * 0.5) * 65535 + 0.5)``, code ``LUT[index]``; an all-zero
  block is code 0 everywhere.
* ``_torch_sum`` - ``torch_sum_float32`` (one thread): torch's cascade order of float32
  sums, for the double-quantization offset.
* ``_vectorwise_stats`` / ``_vectorwise_codes`` - ``vectorwise_quantize_rows``.

Speed without changing a bit: the block absmax is an integer max of the float bits
with the sign cleared (it vectorizes; a float max does not without fast-math, and the
same max flags NaN/inf), the per-element arithmetic runs in vectorizable passes over a
per-task scratch buffer, and table lookups stay scalar (LLVM would otherwise emit
vector gathers, several times slower on this CPU): they read packed words and shift,
or sit in a loop with a never-taken early exit. The 4-bit decode's 16-entry lookup is
instead a tree of selects on the code bits, which vectorizes (``_lut16``).

Every float32 constant is an explicit ``np.float32``: a Python float would promote the
arithmetic to float64 and change the rounding.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import get_num_threads, prange

from accel.numba._jit import helper, kernel
from accel.numba.gguf_math import bit_set, stack_quad_f32 as stack_run_f32, store_run
from refquant.dtypes.codebooks import get_codebook
from refquant.formats.bnb import NESTED_BLOCKSIZE, dynamic_map, lut_8bit

__all__ = ["bnb_quantize_4bit", "bnb_dequantize_4bit", "bnb_quantize_blockwise", "bnb_dequantize_blockwise",
           "bnb_double_quantize", "int8_vectorwise_quant", "int8_vectorwise_dequant"]

F32 = np.float32
_FLT_MAX = F32(np.finfo(np.float32).max)
_ABSMAX_FLOOR = F32(1e-38)


# ------------------------------------------------------------------------ 4-bit
#
# Kernels split the blocks into tasks of ``per`` blocks, each with its own scratch
# buffers, and keep table lookups out of vectorized loops (see the module docstring).


@helper
def _absmax_bits(xb):  # type: ignore[no-untyped-def]
    """Largest ``bits & 0x7FFFFFFF`` of a block: the float32 absmax as an integer (the
    order of non-negative float bit patterns is the order of the values; an integer
    max vectorizes, a float max does not without fast-math). Above 0x7F7FFFFF: NaN/inf."""
    mb = np.uint32(0)
    for i in range(xb.size):
        mb = max(mb, xb[i] & np.uint32(0x7FFFFFFF))
    return mb


@kernel(iterations=lambda *a: -(-a[9].size // a[7]))
def _quantize_4bit(x, xb, blocksize, mid, delta, code0, pad_code, per, packed, absmax, bad):  # type: ignore[no-untyped-def]
    n = x.size
    n_blocks = absmax.size
    for pt in prange((n_blocks + per - 1) // per):
        task = np.int64(pt)
        scaled = np.empty(blocksize, np.float32)
        codes = np.empty(blocksize, np.uint8)
        bits = np.empty(1, np.uint32)
        as_float = bits.view(np.float32)
        for b in range(task * per, min(n_blocks, (task + 1) * per)):
            start = b * blocksize
            end = min(start + blocksize, n)
            length = end - start
            xs = x[start:end]                  # 0-based views: LLVM vectorizes their loops
            bits[0] = _absmax_bits(xb[start:end])
            if bits[0] > np.uint32(0x7F7FFFFF):
                bad[b] = 1
            am = as_float[0]
            den = max(am, _ABSMAX_FLOOR)
            if length == blocksize:            # full block: the float32 reciprocal
                absmax[b] = am
                inv = F32(1.0) / den
                for i in range(length):
                    scaled[i] = min(max(xs[i] * inv, F32(-1.0)), F32(1.0))
            else:                              # partial last block: a true division
                absmax[b] = den
                for i in range(length):
                    scaled[i] = min(max(xs[i] / den, F32(-1.0)), F32(1.0))
            # code of the sorted position = code0 + sum of the code steps delta[j] over
            # the midpoints mid[j] strictly below the value (uint8 arithmetic wraps)
            for i in range(length):
                codes[i] = code0
            for j in range(mid.size):
                m = mid[j]
                d = delta[j]
                for i in range(length):
                    codes[i] += d if scaled[i] > m else np.uint8(0)
            pk = packed[start >> 1:(end + 1) >> 1]
            for p in range(length >> 1):
                pk[p] = (codes[2 * p] << 4) | codes[2 * p + 1]
            if length & 1:                     # odd n: the pad element is the code of 0.0
                pk[length >> 1] = (codes[length - 1] << 4) | pad_code


@helper
def _lut16(t, byte, shift):  # type: ignore[no-untyped-def]
    """``t[(byte >> shift) & 15]`` for a 16-tuple ``t``, as a tree of 15 selects on the
    code's bits (tested in 32-bit lanes): it vectorizes, 16 codes per AVX-512 instruction,
    where a table lookup stays a scalar load per value."""
    b0, b1 = bit_set(byte, shift), bit_set(byte, shift + 1)
    b2, b3 = bit_set(byte, shift + 2), bit_set(byte, shift + 3)
    a0 = t[1] if b0 else t[0]
    a1 = t[3] if b0 else t[2]
    a2 = t[5] if b0 else t[4]
    a3 = t[7] if b0 else t[6]
    a4 = t[9] if b0 else t[8]
    a5 = t[11] if b0 else t[10]
    a6 = t[13] if b0 else t[12]
    a7 = t[15] if b0 else t[14]
    e0 = a1 if b1 else a0
    e1 = a3 if b1 else a2
    e2 = a5 if b1 else a4
    e3 = a7 if b1 else a6
    f0 = e1 if b2 else e0
    f1 = e3 if b2 else e2
    return f1 if b3 else f0


_RUN = 64  # values decoded on the stack, then stored at once


@kernel(iterations=lambda packed, absmax, *a: absmax.size)
def _dequantize_4bit(packed, absmax, table, blocksize, n, out):  # type: ignore[no-untyped-def]
    """``table`` is the 16 codebook values as a tuple (see :func:`_lut16`)."""
    for pb in prange(absmax.size):
        b = np.int64(pb)
        start = b * blocksize
        end = min(start + blocksize, n)
        s = absmax[b]
        run = numba.carray(stack_run_f32(), _RUN)  # on the stack: aliases neither input nor out
        p = start
        while p + _RUN <= end:  # whole runs: the element loop vectorizes, then one 256-byte store
            codes = packed[p >> 1:(p >> 1) + _RUN // 2]
            for j in range(_RUN // 2):
                byte = codes[j]
                run[2 * j] = _lut16(table, byte, 4) * s
                run[2 * j + 1] = _lut16(table, byte, 0) * s
            store_run(out, p, run, _RUN)
            p += _RUN
        for j in range(p >> 1, end >> 1):          # blocksize is even: whole bytes
            byte = packed[j]
            out[2 * j] = _lut16(table, byte, 4) * s
            out[2 * j + 1] = _lut16(table, byte, 0) * s
        if end & 1:                                     # odd n: the last high nibble
            out[end - 1] = _lut16(table, packed[end >> 1], 4) * s


# ------------------------------------------------------------------------ 8-bit


@kernel(iterations=lambda *a: -(-a[6].size // a[4]))
def _quantize_8bit(x, xb, blocksize, lut, per, codes, absmax, bad):  # type: ignore[no-untyped-def]
    n = x.size
    n_blocks = absmax.size
    for pt in prange((n_blocks + per - 1) // per):
        task = np.int64(pt)
        index = np.empty(blocksize, np.int32)
        bits = np.empty(1, np.uint32)
        as_float = bits.view(np.float32)
        for b in range(task * per, min(n_blocks, (task + 1) * per)):
            start = b * blocksize
            end = min(start + blocksize, n)
            xs = x[start:end]
            bits[0] = _absmax_bits(xb[start:end])
            if bits[0] > np.uint32(0x7F7FFFFF):
                bad[b] = 1
            am = as_float[0]
            absmax[b] = am
            if am == F32(0.0):
                for i in range(start, end):
                    codes[i] = 0
                continue
            inv = F32(1.0) / am                 # inf for a subnormal absmax below 1/FLT_MAX
            for i in range(end - start):
                v = xs[i] * inv
                v = min(max(v, F32(-1.0)), F32(1.0))
                if v != v:                      # 0 * inf: the library writes code 0
                    v = F32(-1.0)
                t = (v + F32(1.0)) * F32(0.5)
                index[i] = np.int32(t * F32(65535.0) + F32(0.5))
            i = 0
            while i < end - start:
                j = index[i]
                if j < 0:                       # never taken: keeps LLVM from turning the
                    break                       # lookups into (slow) vector gathers
                codes[start + i] = lut[j]
                i += 1


@kernel(iterations=lambda codes, words, absmax, *a: absmax.size)
def _dequantize_8bit(codes, words, absmax, table, blocksize, out):  # type: ignore[no-untyped-def]
    """``words`` is ``codes`` viewed as uint64 (8 codes each, little-endian): the lookups
    are unpacked from one load with shifts, which LLVM keeps scalar (no gathers)."""
    n = codes.size
    for pb in prange(absmax.size):
        b = np.int64(pb)
        start = b * blocksize
        end = min(start + blocksize, n)
        s = absmax[b]
        w_end = end >> 3                                # blocksize is a multiple of 8
        for w in range(start >> 3, w_end):
            v = words[w]
            i = w << 3
            for k in range(8):
                out[i + k] = table[(v >> np.uint64(8 * k)) & np.uint64(0xFF)] * s
        for i in range(w_end << 3, end):
            out[i] = table[codes[i]] * s


# ------------------------------------------------------- double quantization (QLoRA)


@helper
def _multi_row_sum(a, size, lanes, out):  # type: ignore[no-untyped-def]
    """torch's ``multi_row_sum``: ``a`` holds ``size`` rows of 4 x ``lanes`` values (C
    order); the four accumulator levels cascade every ``2**power`` rows."""
    width = 4 * lanes
    power = 0
    while (np.int64(1) << power) < size:              # CeilLog2(size)
        power += 1
    power = max(4, power // 4)
    step = np.int64(1) << power
    mask = step - 1
    acc = np.zeros((4, width), np.float32)
    i = np.int64(0)
    while i + step <= size:
        for r in range(i, i + step):
            for e in range(width):
                acc[0, e] += a[r * width + e]
        i += step
        for j in range(1, 4):
            for e in range(width):
                acc[j, e] += acc[j - 1, e]
                acc[j - 1, e] = F32(0.0)
            if i & (mask << (j * power)):
                break
    for r in range(i, size):
        for e in range(width):
            acc[0, e] += a[r * width + e]
    for j in range(1, 4):
        for e in range(width):
            acc[0, e] += acc[j, e]
    for e in range(width):
        out[e] = acc[0, e]


@helper
def _row_sum(a, n_rows, lanes):  # type: ignore[no-untyped-def]
    """torch's ``row_sum`` of ``n_rows`` vectors of ``lanes`` values -> (lanes,)."""
    m = n_rows // 4
    partials = np.zeros(4 * lanes, np.float32)
    if m:
        _multi_row_sum(a, m, lanes, partials)
    for r in range(4 * m, n_rows):
        for e in range(lanes):
            partials[e] += a[r * lanes + e]
    for k in range(1, 4):
        for e in range(lanes):
            partials[e] += partials[k * lanes + e]
    return partials[:lanes]


@helper
def _torch_sum(a):  # type: ignore[no-untyped-def]
    """``torch.sum`` of a float32 vector on one thread (serial by definition)."""
    n = a.size
    n_vec = n // 8
    total = F32(0.0)
    if n_vec == 0:
        return total + _row_sum(a, n, 1)[0]
    lanes = _row_sum(a, n_vec, 8)
    for i in range(8 * n_vec, n):                  # the scalar tail, then the 8 lanes
        total += a[i]
    for e in range(8):
        total += lanes[e]
    return total


# ----------------------------------------------------------- int8 vector-wise rows


@kernel(iterations=lambda xb, limit_bits, chunks, *a: chunks)
def _vectorwise_stats(xb, limit_bits, chunks, stats_bits, col_flags, bad):  # type: ignore[no-untyped-def]
    """Row absmax without outliers (``abs(x) >= limit``) and the outlier columns (one row
    of flags per row chunk), on the float bits with the sign cleared: integer compares
    and maxima, which vectorize (the order of the bits is the order of the values)."""
    rows, k = xb.shape
    per = (rows + chunks - 1) // chunks
    for pc in prange(chunks):
        c = np.int64(pc)
        flags = col_flags[c]
        for r in range(c * per, min(rows, (c + 1) * per)):
            row = xb[r]
            am = np.uint32(0)
            top = np.uint32(0)
            for j in range(k):
                a = row[j] & np.uint32(0x7FFFFFFF)
                top = max(top, a)
                outlier = a >= limit_bits
                flags[j] |= outlier
                am = max(am, np.uint32(0) if outlier else a)
            stats_bits[r] = am
            bad[r] = top > np.uint32(0x7F7FFFFF)          # NaN or inf


@kernel(iterations=lambda x, *a: x.shape[0])
def _vectorwise_codes(x, limit, stats, zero_cols, use_cols, q):  # type: ignore[no-untyped-def]
    rows, k = x.shape
    for pr in prange(rows):
        r = np.int64(pr)
        s = stats[r]
        scale = F32(127.0) / (s if s != F32(0.0) else F32(1.0))
        row = x[r]
        out = q[r]
        if np.isinf(scale):
            # row absmax < 127 / FLT_MAX: the float32 scale overflows; the reference's rule
            # computes such rows in float64 (refquant.formats.bnb.vectorwise_quantize_rows)
            scale64 = 127.0 / np.float64(s)
            for j in range(k):
                v = row[j]
                code = np.int8(np.rint(np.float64(v) * scale64))
                zero = (use_cols & zero_cols[j]) | (abs(v) >= limit)
                out[j] = np.int8(0) if zero else code
            continue
        for j in range(k):
            v = row[j]
            code = np.int8(np.rint(v * scale))
            zero = (use_cols & zero_cols[j]) | (abs(v) >= limit)
            out[j] = np.int8(0) if zero else code


@kernel(iterations=lambda q, *a: q.shape[0])
def _vectorwise_dequant(q, stats, out):  # type: ignore[no-untyped-def]
    rows, k = q.shape
    inv127 = F32(1 / 127)
    for pr in prange(rows):
        r = np.int64(pr)
        s = stats[r]
        for j in range(k):
            out[r, j] = (F32(q[r, j]) * s) * inv127


# ------------------------------------------------------------------ public ops


def _tables_4bit(quant_type: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Midpoints, code steps ``order[j+1] - order[j]`` (mod 256), the code of the smallest
    value, and the code of 0.0 (the pad nibble) of the codebook."""
    cb = get_codebook(quant_type)
    order = cb.order.astype(np.int64)
    delta = (np.diff(order) % 256).astype(np.uint8)
    zero = int(order[int(np.searchsorted(cb.midpoints, F32(0.0), side="left"))])
    return np.ascontiguousarray(cb.midpoints), delta, int(order[0]), zero


def _tasks(n_blocks: int, blocksize: int) -> int:
    """Blocks per parallel task: enough work per task (>= 16K elements) and >= 4 tasks per thread."""
    threads = get_num_threads()
    return max(1, min(max(1, 16384 // blocksize), -(-n_blocks // (4 * threads))))


def bnb_quantize_4bit(x: np.ndarray, quant_type: str, blocksize: int, *,
                      out: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.bnb.bnb_quantize_4bit` on prepared arguments
    (``refquant.prepare.bnb``: ``x`` flat, finite, float32, C-contiguous; ``out`` the
    packed uint8 (ceil(n/2),) and absmax float32 (n_blocks,) arrays)."""
    n = x.size
    n_blocks = -(-n // blocksize)
    packed, absmax = out
    flags = np.zeros(n_blocks, np.uint8)                # non-finite blocks: none after preparation
    mid, delta, code0, zero = _tables_4bit(quant_type)
    _quantize_4bit(x, x.view(np.uint32), blocksize, mid, delta, code0, zero, _tasks(n_blocks, blocksize),
                   packed, absmax, flags)
    return packed, absmax


def bnb_dequantize_4bit(packed: np.ndarray, absmax: np.ndarray, quant_type: str, blocksize: int,
                        shape: tuple[int, ...], *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.bnb.bnb_dequantize_4bit` on prepared arguments (flat uint8
    payload and float32 absmax of exactly the sizes ``shape`` needs; ``out`` float32 shape)."""
    _dequantize_4bit(packed, absmax, tuple(F32(v) for v in get_codebook(quant_type).table), blocksize, out.size,
                     out.reshape(-1))
    return out


def _quantize_8bit_flat(flat: np.ndarray, blocksize: int, codes: np.ndarray, absmax: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Codes uint8 (n,) and absmax float32 (n_blocks,) of ``flat``, written into the arrays given."""
    n_blocks = absmax.size
    flags = np.zeros(n_blocks, np.uint8)                # non-finite blocks: none after preparation
    _quantize_8bit(flat, flat.view(np.uint32), blocksize, lut_8bit(), _tasks(n_blocks, blocksize), codes, absmax,
                   flags)
    return codes, absmax


def bnb_quantize_blockwise(x: np.ndarray, blocksize: int, *,
                           out: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.bnb.bnb_quantize_blockwise` on prepared arguments (flat finite
    float32; ``out`` the codes and absmax arrays)."""
    return _quantize_8bit_flat(x, blocksize, *out)


def bnb_dequantize_blockwise(codes: np.ndarray, absmax: np.ndarray, blocksize: int, shape: tuple[int, ...], *,
                             out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.bnb.bnb_dequantize_blockwise` on prepared arguments."""
    n = codes.size
    _dequantize_8bit(codes, codes[: n - n % 8].view(np.uint64), absmax, dynamic_map(), blocksize, out.reshape(-1))
    return out


def bnb_double_quantize(absmax: np.ndarray, *, out: tuple[np.ndarray, np.ndarray, np.ndarray]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.bnb.bnb_double_quantize` on prepared arguments (finite,
    non-empty, 1-D float32; ``out`` codes, nested absmax and the 0-d offset): the offset in
    torch's one-thread summation order, then 8-bit blocks of 256."""
    codes, nested_absmax, offset = out
    offset[()] = F32(_torch_sum(absmax) / F32(absmax.size))
    _quantize_8bit_flat(absmax - offset[()], NESTED_BLOCKSIZE, codes, nested_absmax)
    return out


def int8_vectorwise_quant(x: np.ndarray, threshold: float = 0.0, *,
                          out: tuple[np.ndarray, np.ndarray, None] | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backend op :func:`refquant.bnb.int8_vectorwise_quant` on prepared arguments (finite
    2-D float16/bfloat16/float32 ``x``, C-contiguous; threshold >= 0; ``out`` the q and
    row_stats arrays, and None for the outlier columns, allocated here; None: all allocated,
    for this backend's own callers)."""
    x32 = np.ascontiguousarray(x, dtype=F32)
    rows, k = x32.shape
    flags = np.zeros(rows, np.uint8)                    # non-finite rows: none after preparation
    # outliers compare in the input dtype; widening is exact and monotone, so comparing
    # the float32 values with the float32 value of the input-dtype threshold is the same
    limit = F32(np.asarray(F32(threshold)).astype(x.dtype)) if threshold > 0 else F32(np.inf)
    chunks = max(1, min(get_num_threads() * 4, rows))
    q, stats, _ = out or (np.empty((rows, k), np.int8), np.empty(rows, F32), None)
    col_flags = np.zeros((chunks, k), np.uint8)
    _vectorwise_stats(x32.view(np.uint32), np.array(limit, F32).view(np.uint32)[()], chunks, stats.view(np.uint32),
                      col_flags, flags)
    cols = col_flags.any(axis=0)
    outlier_cols = np.flatnonzero(cols).astype(np.int64)
    _vectorwise_codes(x32, limit, stats, cols, rows > 1 and outlier_cols.size > 0, q)
    return q, stats, outlier_cols


def int8_vectorwise_dequant(q: np.ndarray, row_stats: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    """Backend op :func:`refquant.bnb.int8_vectorwise_dequant` on prepared arguments (2-D
    int8 codes, one finite float32 stat per row; ``out`` float32 of q's shape)."""
    _vectorwise_dequant(q, row_stats, out)
    return out
