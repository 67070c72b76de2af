"""Hypothesis strategies for the conformance suite, with mandatory adversarial cases.

Random data rarely hits the inputs that break quantizers, so every array strategy
mixes in the values that do: rounding ties, subnormals of each target
format, ±0, NaN/±inf, values near the fp16 maximum, and whole blocks that are all
zero, constant, or one huge outlier. Shapes include ones that are not divisible by the
group/block size and empty arrays, where the op defines them.

Area-specific strategies live here too, one section per spec area.
"""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "ADVERSARIAL_FLOAT32", "adversarial_float32", "float32_arrays", "float32_matrices",
    "blocked_rows", "random_bit_patterns_f32", "TINY_ABSMAX", "inconsistent_qparams", "degenerate_block_format",
    "EMPTY_SHAPES",
]

F32 = np.float32

#: Row / block absmax values whose float32 reciprocal (127 / absmax, 1 / absmax) overflows:
#: subnormals up to just above 127 / FLT_MAX (a kernel that flushes them to 0).
TINY_ABSMAX = (1e-45, 1e-44, 1e-42, 1e-40, 1e-39, 1e-38, 1e-37, 3e-37, 1e-36)


def _f32_from_bits(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


# Values every float-input op must see. Ties are for fp16 (2^-11 steps near 1), bf16
# (2^-8) and fp8/fp4 grids; subnormal edges for fp16/bf16/fp8; overflow edges per format.
ADVERSARIAL_FLOAT32: tuple[float, ...] = tuple(float(F32(v)) for v in (
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.5,
    1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8,        # fp16 / bf16 ties to even
    1 + 2**-4, 1 + 3 * 2**-4, 1.25, 1.75, 0.25, 0.75,              # fp8 e4m3 / e5m2 / fp4 ties
    2**-24, 2**-25, 1.5 * 2**-24, 2**-14, 2**-15,                  # fp16 subnormal edges
    2**-9, 2**-10, 1.5 * 2**-9, 2**-6, 2**-16, 2**-17,             # fp8 subnormal edges
    2**-126, 2**-127, 2**-149,                                     # fp32 / bf16 subnormals
    65504.0, -65504.0, 65519.0, 65520.0, 65536.0,                  # fp16 max and overflow tie
    448.0, 464.0, 465.0, 480.0, 57344.0, 61439.0, 61440.0,         # fp8 max / overflow ties
    6.0, 6.5, 7.0, 100.0,                                          # fp4 saturation
    3.4028234663852886e38, -3.4028234663852886e38,                 # FLT_MAX
    float("inf"), float("-inf"), float("nan"),
    1e-11, -1e-11, 0.49999997,
)) + (_f32_from_bits(0x7FA00001), _f32_from_bits(0xFF800001), _f32_from_bits(0x7F7FFFFF),
      _f32_from_bits(0x3F808000), _f32_from_bits(0x3F818000))


def adversarial_float32(allow_nan: bool = True, allow_infinity: bool = True) -> st.SearchStrategy[float]:
    """One float32 value: adversarial half the time, otherwise any float32."""
    special = [v for v in ADVERSARIAL_FLOAT32
               if (allow_nan or not np.isnan(v)) and (allow_infinity or not np.isinf(v))]
    return st.one_of(st.sampled_from(special),
                     st.floats(width=32, allow_nan=allow_nan, allow_infinity=allow_infinity))


def random_bit_patterns_f32(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` float32 values with uniformly random bit patterns (every class of float)."""
    return rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def float32_arrays(*, min_size: int = 0, max_size: int = 64, allow_nan: bool = True,
                   allow_infinity: bool = True, elements: st.SearchStrategy[float] | None = None
                   ) -> st.SearchStrategy[np.ndarray]:
    """1-D float32 arrays mixing adversarial and arbitrary values."""
    elements = elements or adversarial_float32(allow_nan, allow_infinity)
    return hnp.arrays(np.float32, st.integers(min_size, max_size), elements=elements)


@st.composite
def float32_matrices(draw, *, max_rows: int = 8, max_cols: int = 64, min_rows: int = 1, min_cols: int = 1,
                     allow_nan: bool = False, allow_infinity: bool = False, scale: float = 1.0) -> np.ndarray:
    """2-D float32 matrices with rows that are sometimes all-zero, constant or outlier-heavy."""
    rows = draw(st.integers(min_rows, max_rows))
    cols = draw(st.integers(min_cols, max_cols))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "heavy", "uniform", "tiny", "huge"]))
    if kind == "normal":
        x = rng.standard_normal((rows, cols))
    elif kind == "heavy":
        x = rng.standard_t(2, (rows, cols))
    elif kind == "uniform":
        x = rng.uniform(-1, 1, (rows, cols))
    elif kind == "tiny":
        x = rng.standard_normal((rows, cols)) * 1e-11
    else:
        x = rng.standard_normal((rows, cols)) * 3e4
    x = (x * scale).astype(np.float32)
    for r in range(rows):
        special = draw(st.sampled_from(["none", "none", "zero", "const", "outlier"]))
        if special == "zero":
            x[r] = 0
        elif special == "const":
            x[r] = draw(st.sampled_from([1.0, -2.5, 0.1]))
        elif special == "outlier":
            x[r, draw(st.integers(0, cols - 1))] = draw(st.sampled_from([100.0, -1e4, 6.0e4]))
    if allow_nan and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = np.nan
    if allow_infinity and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = np.inf
    return x


@st.composite
def blocked_rows(draw, block: int, *, max_rows: int = 4, max_blocks: int = 4, scale: float = 1.0) -> np.ndarray:
    """float32 (rows, k * block) matrices for block formats (row length a multiple of ``block``)."""
    nblocks = draw(st.integers(1, max_blocks))
    return draw(float32_matrices(max_rows=max_rows, min_cols=nblocks * block, max_cols=nblocks * block, scale=scale))


# --- floats (issue 3) ---


@functools.lru_cache(maxsize=None)
def _float_format_pool(fmt: str) -> tuple[float, ...]:
    """Every finite value of ``fmt``, the midpoints between neighbours (ties), the
    overflow midpoint above max, and the float32 neighbours of all of those, both signs."""
    from refquant.dtypes.floatspec import decode_float, get_float_spec

    spec = get_float_spec(fmt)
    v = decode_float(np.arange(spec.max_code + 1, dtype=spec.storage_dtype), spec).astype(np.float64)
    edges = [spec.max + (spec.max - v[-2]) / 2, spec.smallest_subnormal / 2]
    with np.errstate(over="ignore"):  # bfloat16's overflow midpoint is past FLT_MAX
        base = np.concatenate([v, (v[:-1] + v[1:]) / 2, edges]).astype(F32)
    base = base[np.isfinite(base)]
    pool = np.concatenate([base, np.nextafter(base, F32(np.inf)), np.nextafter(base, F32(-np.inf))])
    pool = np.unique(np.concatenate([pool, -pool]))
    return tuple(float(p) for p in pool)


def _f32_in_range(fmt: str) -> st.SearchStrategy[float]:
    """float32 values whose exponent lies in, or just outside, the range of ``fmt``."""
    from refquant.dtypes.floatspec import get_float_spec

    spec = get_float_spec(fmt)
    lo = max(spec.min_exp - spec.mant_bits - 3 + 127, 0)
    hi = min(spec.max_exp + 2 + 127, 254)
    return st.builds(lambda s, e, m: _f32_from_bits((s << 31) | (e << 23) | m),
                     st.integers(0, 1), st.integers(lo, hi), st.integers(0, 2**23 - 1))


def float_format_inputs(fmt: str, *, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[np.ndarray]:
    """1-D float32 arrays aimed at float format ``fmt``: exact code values, ties between
    neighbouring codes and their float32 neighbours, overflow/underflow edges, values in
    the format's exponent range, plus the shared adversarial values (NaN, ±inf, ...)."""
    elements = st.one_of(st.sampled_from(_float_format_pool(fmt)), _f32_in_range(fmt), adversarial_float32())
    return hnp.arrays(np.float32, st.integers(min_size, max_size), elements=elements)


@functools.lru_cache(maxsize=None)
def float64_tie_pool(fmt: str) -> tuple[float, ...]:
    """float64 values that tell one rounding from two: every midpoint between neighbouring
    values of ``fmt`` (and the overflow midpoint above max) moved by one float64 ulp and by
    ``mid * 2**-30`` either way. float32 rounds all four onto the midpoint, so an encoder
    that narrows float64 to float32 first ties them, wrongly for half of them. Both signs."""
    from refquant.dtypes.floatspec import decode_float, get_float_spec

    spec = get_float_spec(fmt)
    v = decode_float(np.arange(spec.max_code + 1, dtype=spec.storage_dtype), spec).astype(np.float64)
    mid = np.append((v[:-1] + v[1:]) / 2, spec.max + (spec.max - v[-2]) / 2)
    pool = np.concatenate([np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf), mid * (1 + 2.0**-30),
                           mid * (1 - 2.0**-30)])
    return tuple(float(p) for p in np.unique(np.concatenate([pool, -pool])))


#: float64 values outside float32's reach: past FLT_MAX, below its smallest subnormal,
#: float64 subnormals, and NaNs whose payload lives in bits float32 drops.
FLOAT64_SPECIALS: tuple[float, ...] = tuple(float(v) for v in np.concatenate([
    np.array([1e300, -1e300, 3.5e38, 1e-50, -1e-50, 5e-324, np.inf, -np.inf, 0.0, -0.0]),
    np.array([0x7FF0000000000001, 0xFFF0000020000000, 0x7FF8000000000000], np.uint64).view(np.float64),
]))


def _f64_in_range(fmt: str) -> st.SearchStrategy[float]:
    """float64 values (all 52 mantissa bits random) whose exponent lies in, or just outside, the range of ``fmt``."""
    from refquant.dtypes.floatspec import get_float_spec

    spec = get_float_spec(fmt)
    lo, hi = spec.min_exp - spec.mant_bits - 3 + 1023, spec.max_exp + 2 + 1023
    return st.builds(lambda s, e, m: float(np.array([(s << 63) | (e << 52) | m], np.uint64).view(np.float64)[0]),
                     st.integers(0, 1), st.integers(lo, hi), st.integers(0, 2**52 - 1))


def float64_format_inputs(fmt: str, *, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[np.ndarray]:
    """1-D float64 arrays aimed at float format ``fmt``: values next to its midpoints that
    only a single rounding gets right, float64 values in its exponent range, the float32
    pool of :func:`float_format_inputs`, and :data:`FLOAT64_SPECIALS`."""
    elements = st.one_of(st.sampled_from(float64_tie_pool(fmt)), _f64_in_range(fmt),
                         st.sampled_from(_float_format_pool(fmt)), st.sampled_from(FLOAT64_SPECIALS))
    return hnp.arrays(np.float64, st.integers(min_size, max_size), elements=elements)


def float_format_codes(fmt: str, *, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[np.ndarray]:
    """1-D arrays of bit patterns of ``fmt`` in its storage dtype (every code possible,
    NaN and inf codes included)."""
    from refquant.dtypes.floatspec import get_float_spec

    spec = get_float_spec(fmt)
    special = st.sampled_from([0, spec.sign_mask, spec.max_code, spec.max_code | spec.sign_mask, spec.nan_code,
                               spec.nan_code ^ spec.sign_mask, 1, 1 | spec.sign_mask])
    elements = st.one_of(special, st.integers(0, (1 << spec.bits) - 1))
    return hnp.arrays(spec.storage_dtype, st.integers(min_size, max_size), elements=elements)


@functools.lru_cache(maxsize=None)
def _codebook_pool(name: str) -> tuple[float, ...]:
    from refquant.dtypes.codebooks import get_codebook

    cb = get_codebook(name)
    base = np.concatenate([cb.table, cb.midpoints, np.array([0.0, -0.0], F32)])
    pool = np.concatenate([base, np.nextafter(base, F32(np.inf)), np.nextafter(base, F32(-np.inf))])
    return tuple(float(p) for p in np.unique(pool))


def codebook_inputs(name: str, *, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[np.ndarray]:
    """1-D float32 arrays for codebook ``name``: its values, the midpoints between sorted
    neighbours (ties) and their float32 neighbours, values across (and beyond) its
    range, plus the shared adversarial values."""
    from refquant.dtypes.codebooks import get_codebook

    table = get_codebook(name).table
    lo, hi = float(table.min()), float(table.max())
    span = hi - lo
    around = st.floats(lo - span, hi + span, width=32)
    elements = st.one_of(st.sampled_from(_codebook_pool(name)), around, adversarial_float32())
    return hnp.arrays(np.float32, st.integers(min_size, max_size), elements=elements)


def codebook_codes(name: str, *, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[np.ndarray]:
    """1-D uint8 arrays of valid codes of codebook ``name``."""
    from refquant.dtypes.codebooks import get_codebook

    size = get_codebook(name).size
    return hnp.arrays(np.uint8, st.integers(min_size, max_size), elements=st.integers(0, size - 1))


# --- affine mapping (issue 3) ---


def _granularity_for(draw, fmt: str, shape: tuple[int, int]):  # type: ignore[no-untyped-def]
    from refquant.granularity import PerBlock, PerChannel, PerGroup, PerTensor, PerToken

    rows, cols = shape
    if fmt == "per_tensor":
        return PerTensor()
    if fmt == "per_channel":
        return PerChannel(draw(st.sampled_from([0, 1, -1])))
    if fmt == "per_group":
        axis = draw(st.sampled_from([-1, -1, 0]))
        length = cols if axis == -1 else rows
        return PerGroup(draw(st.integers(1, length)), axis)     # any size, partial last groups included
    if fmt == "per_token":
        return PerToken()
    if fmt == "per_block":
        return PerBlock((draw(st.integers(1, rows)), draw(st.integers(1, cols))))
    raise ValueError(f"unknown granularity format {fmt!r}")


@st.composite
def affine_cases(draw, fmt: str) -> tuple[np.ndarray, dict]:  # type: ignore[no-untyped-def]
    """``(x, choose_qparams kwargs)`` for granularity ``fmt`` (a name in ``accel.ops.GRANULARITIES``).

    Two kinds: float32 matrices with all-zero / constant / outlier rows and shapes not
    divisible by the group or block (bits 2..8, symmetric or not, signed or not); and
    exact rounding ties: ``x = (k + 0.5) * 2**e`` with ``clip`` fixing ``scale = 2**e``, so
    ``x / scale`` is exactly halfway, and some ``k`` beyond the clip range.
    """
    if draw(st.integers(0, 3)) == 0:
        rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 24))
        step = 2.0 ** draw(st.integers(-20, 20))
        k = draw(hnp.arrays(np.int64, (rows, cols), elements=st.integers(-140, 140)))
        x = ((k + 0.5) * step).astype(np.float32)
        kwargs = dict(bits=8, symmetric=True, clip=(-127 * step, 127 * step))
    else:
        x = draw(float32_matrices(max_rows=6, max_cols=40, scale=draw(st.sampled_from([1.0, 1e-3, 1e3]))))
        signed = draw(st.booleans())
        symmetric = draw(st.booleans())
        kwargs = dict(bits=draw(st.sampled_from([2, 3, 4, 8])), symmetric=symmetric, signed=signed,
                      restricted_range=draw(st.sampled_from([None, False] + ([True] if signed else []))))
    kwargs["granularity"] = _granularity_for(draw, fmt, x.shape)
    return x, kwargs


# --- packing (issue 3) ---


@st.composite
def pack_codes(draw, bits: int, *, max_rows: int = 3, max_len: int = 80) -> np.ndarray:  # type: ignore[no-untyped-def]
    """uint8 code matrices of ``bits``-bit codes: random, all-zero and all-max rows,
    and lengths that do not fill the last byte / word (including 0 and 1)."""
    rows = draw(st.integers(1, max_rows))
    n = draw(st.one_of(st.sampled_from([0, 1, 7, 8, 9, 31, 32, 33, 64]), st.integers(0, max_len)))
    top = (1 << bits) - 1
    codes = draw(hnp.arrays(np.uint8, (rows, n), elements=st.integers(0, top)))
    fill = draw(st.sampled_from(["none", "none", "zero", "max"]))
    if fill == "zero":
        codes[0] = 0
    elif fill == "max":
        codes[0] = top
    return codes
# --- bitsandbytes family (issue 4) ---


_BNB_BLOCK_KINDS = ("random", "random", "zero", "negzero", "const", "outlier", "codes", "tiny", "subnormal", "f32max")


def _bnb_fill_block(draw, rng: np.random.Generator, block: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Overwrite ``block`` (a view) with one of the blocks that break blockwise quantizers."""
    kind = draw(st.sampled_from(_BNB_BLOCK_KINDS), label="block kind")
    if kind == "zero":
        block[:] = 0.0
    elif kind == "negzero":
        block[:] = -0.0
    elif kind == "const":
        block[:] = draw(st.sampled_from([1.0, -2.5, 0.1, 65504.0]))
    elif kind == "outlier":             # one huge value: every other value is tiny relative to absmax
        block[rng.integers(0, block.size)] = draw(st.sampled_from([1e4, -3e4, 1e30, -3.4e38]))
    elif kind == "codes":               # exact NF4/FP4 values and float32 midpoints, times a power of 2
        from refquant.dtypes.codebooks import get_codebook

        pool = np.concatenate([get_codebook(n).table for n in ("nf4", "fp4")]
                              + [get_codebook(n).midpoints for n in ("nf4", "fp4")])
        block[:] = pool[rng.integers(0, pool.size, block.size)] * F32(2.0 ** draw(st.integers(-3, 3)))
        block[rng.integers(0, block.size)] = F32(2.0 ** draw(st.integers(-3, 3)))
    elif kind == "tiny":
        block[:] = rng.standard_normal(block.size) * 1e-11
    elif kind == "subnormal":           # absmax 1e-45 ... 1e-36: reciprocals overflow float32
        block[:] = rng.standard_normal(block.size) * draw(st.sampled_from(TINY_ABSMAX))
    elif kind == "f32max":              # magnitudes near the float32 maximum
        block[:] = rng.uniform(-1, 1, block.size) * F32(3.4e38)


@st.composite
def bnb_block_inputs(draw, blocksizes: tuple[int, ...], *, max_blocks: int = 3,  # type: ignore[no-untyped-def]
                     ) -> tuple[np.ndarray, int]:
    """``(x, blocksize)`` for bitsandbytes' blockwise quantizers (4-bit or 8-bit).

    ``x`` is finite float32, 1-D or 2-D, blocked over its C-order flattening. Its length
    is usually *not* a multiple of ``blocksize`` (a partial last block, odd lengths,
    a single element), and each block may be all +0 / -0, constant, one huge outlier
    (the rest tiny relative to the absmax: FP4's +-0 codes), exact code values and
    midpoints, or ~1e-11.
    """
    blocksize = draw(st.sampled_from(blocksizes), label="blocksize")
    full = draw(st.integers(0, max_blocks))
    tail = draw(st.one_of(st.sampled_from([0, 1, 2, 3, blocksize // 2 + 1, blocksize - 1]),
                          st.integers(0, blocksize - 1)))
    n = max(1, full * blocksize + tail)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = draw(st.sampled_from(["normal", "heavy", "uniform", "huge"]))
    if base == "normal":
        x = rng.standard_normal(n)
    elif base == "heavy":
        x = rng.standard_t(1.5, n)
    elif base == "uniform":
        x = rng.uniform(-1, 1, n)
    else:
        x = rng.standard_normal(n) * 3e4
    x = x.astype(F32)
    for start in range(0, n, blocksize):
        _bnb_fill_block(draw, rng, x[start:start + blocksize])
    cols = draw(st.sampled_from([c for c in (1, 2, 3, 7, 64) if n % c == 0]))
    return (x.reshape(-1, cols) if cols > 1 else x), blocksize


@st.composite
def bnb_packed_inputs(draw, blocksizes: tuple[int, ...], bytes_per_element: float,  # type: ignore[no-untyped-def]
                      *, max_blocks: int = 3) -> tuple[np.ndarray, np.ndarray, int, tuple[int, ...]]:
    """``(payload, absmax, blocksize, shape)`` for the dequantize ops: any bytes (every
    code, 4-bit pads included), absmax from 0 and subnormals to 3e38."""
    blocksize = draw(st.sampled_from(blocksizes), label="blocksize")
    n = draw(st.integers(1, max_blocks * blocksize))
    shape = draw(st.sampled_from([(n,)] + [(n // c, c) for c in (2, 3, 16) if n % c == 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    payload = rng.integers(0, 256, int(np.ceil(n * bytes_per_element))).astype(np.uint8)
    n_blocks = -(-n // blocksize)
    special = np.array([0.0, 1e-38, 1e-45, 1.0, 3e38, 65504.0], F32)
    absmax = np.where(rng.random(n_blocks) < 0.3, special[rng.integers(0, special.size, n_blocks)],
                      rng.exponential(2.0, n_blocks)).astype(F32)
    return payload, absmax, blocksize, shape


@st.composite
def bnb_absmax_vectors(draw, *, max_size: int = 700) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Non-negative float32 absmax vectors for double quantization: one block, more than
    256 blocks (several nested blocks), zeros, equal values, one dominant block."""
    n = draw(st.one_of(st.sampled_from([1, 2, 255, 256, 257, 513]), st.integers(1, max_size)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "zeros", "const", "dominant", "tiny"]))
    a = np.abs(rng.standard_normal(n)) * 3
    if kind == "zeros":
        a[rng.random(n) < 0.5] = 0
    elif kind == "const":
        a[:] = 0.7
    elif kind == "dominant":
        a[rng.integers(0, n)] = 1e6
    elif kind == "tiny":
        a *= 1e-30
    return a.astype(F32)


@st.composite
def int8_rowwise_inputs(draw, *, max_rows: int = 8, max_cols: int = 96) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """``(x, threshold)`` for ``int8_vectorwise_quant``: float32 or float16 matrices with
    all-zero / constant / outlier rows, half-integer ties at code scale, and values at and
    around the threshold (6.0 or 3.0; 0 disables outliers)."""
    x = draw(float32_matrices(max_rows=max_rows, max_cols=max_cols, scale=draw(st.sampled_from([1.0, 2.0, 1e-3]))))
    if draw(st.booleans(), label="extreme rows"):       # rows of tiny absmax (1e-45 ... 1e-36) or near FLT_MAX
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        for r in range(x.shape[0]):
            if rng.random() < 0.5:
                x[r] = (rng.uniform(-1, 1, x.shape[1]) * draw(st.sampled_from(TINY_ABSMAX + (3e38,)))).astype(F32)
    threshold = draw(st.sampled_from([0.0, 6.0, 3.0]))
    if threshold and draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        edge = np.array([threshold, -threshold, np.nextafter(F32(threshold), F32(0)), 60.0], F32)
        x.flat[rng.integers(0, x.size, 1 + x.size // 16)] = edge[rng.integers(0, edge.size, 1 + x.size // 16)]
    if draw(st.booleans()):
        x = np.clip(x, -6e4, 6e4).astype(np.float16)
    return x, threshold


# --- integer matmul (issue 4) ---


@st.composite
def int8_matmul_operands(draw, *, max_dim: int = 24, max_k: int = 300, dtypes=(np.int8,)):  # type: ignore[no-untyped-def]
    """``(a_q, b_q)``: 8-bit code matrices (m, k) and (k, n) including 1 x k and k x 1
    shapes, k = 1, and runs of the extreme codes (-128 / 127, 0 / 255)."""
    m = draw(st.one_of(st.just(1), st.integers(1, max_dim)))
    n = draw(st.one_of(st.just(1), st.integers(1, max_dim)))
    k = draw(st.one_of(st.sampled_from([1, 2, 16, max_k]), st.integers(1, max_k)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def operand(shape):  # type: ignore[no-untyped-def]
        dtype = draw(st.sampled_from(dtypes))
        info = np.iinfo(dtype)
        q = rng.integers(info.min, info.max + 1, shape)
        kind = draw(st.sampled_from(["random", "min", "max", "mixed"]))
        if kind == "min":
            q[:] = info.min
        elif kind == "max":
            q[:] = info.max
        elif kind == "mixed":
            q = np.where(rng.random(shape) < 0.5, info.min, info.max)
        return q.astype(dtype)

    return operand((m, k)), operand((k, n))


@st.composite
def zero_points(draw, codes: np.ndarray, length: int):  # type: ignore[no-untyped-def]
    """A scalar or per-row/column zero point within the code range of ``codes``."""
    info = np.iinfo(codes.dtype)
    if draw(st.booleans()):
        return draw(st.sampled_from([0, info.min, info.max]) | st.integers(info.min, info.max))
    return draw(hnp.arrays(np.int64, (length,), elements=st.integers(info.min, info.max)))


@st.composite
def outlier_activations(draw, *, max_tokens: int = 16, max_in: int = 96, max_out: int = 24):  # type: ignore[no-untyped-def]
    """``(x, w, threshold)`` for LLM.int8(): activations with a few systematic outlier
    feature columns (magnitude 6 to 100, LLM.int8() section 4), sometimes none, sometimes
    a single token; weights ~N(0, 0.05^2) with an all-zero output row."""
    tokens = draw(st.one_of(st.just(1), st.integers(1, max_tokens)))
    d_in = draw(st.integers(2, max_in))
    d_out = draw(st.integers(1, max_out))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((tokens, d_in))
    n_out = draw(st.integers(0, min(4, d_in - 1)))
    cols = rng.choice(d_in, n_out, replace=False)
    x[:, cols] *= draw(st.sampled_from([6.0, 20.0, 100.0]))
    w = rng.standard_normal((d_out, d_in)) * 0.05
    if d_out > 1 and draw(st.booleans()):
        w[0] = 0
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    return x.astype(dtype), w.astype(dtype), draw(st.sampled_from([6.0, 6.0, 3.0, 0.0]))


# --- gguf (issue 5) ---
@st.composite
def gguf_cases(draw, block_size: int, *, max_rows: int = 3, max_blocks: int = 2,  # type: ignore[no-untyped-def]
               allow_nonfinite: bool = False, grid_levels: tuple[int, ...] = (8, 16, 127),
               require_imatrix: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, imatrix)`` for a ggml block type of ``block_size`` elements.

    ``x`` is float32 (rows, k * block_size) of one of the row kinds ggml's golden vectors
    use (normal, heavy-tailed, tiny ~1e-11, near the fp16 maximum, integer and half-integer
    ties, and the code midpoints of a symmetric grid of ``grid_levels`` levels per side scaled
    by each 32-block's max: pass the format's own, e.g. (8,) for Q4_0), with whole rows set
    to +0, -0, a constant or one outlier; NaN/inf only when
    ``allow_nonfinite`` (f16, bf16). ``imatrix`` is None, random positive, or positive with
    zero columns (a zeroed first block included); never None with
    ``require_imatrix`` (the types ggml quantizes only with one: IQ2_XXS, IQ2_XS, IQ1_S).
    """
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, 64)) if block_size == 1 else draw(st.integers(1, max_blocks)) * block_size
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "heavy", "tiny", "fp16max", "ties", "grid_ties", "grid_ties"]))
    if kind == "normal":
        x = rng.standard_normal((rows, cols))
    elif kind == "heavy":
        x = rng.standard_t(1.5, (rows, cols))
    elif kind == "tiny":
        x = rng.standard_normal((rows, cols)) * 1e-11
    elif kind == "fp16max":
        x = rng.uniform(60000.0, 65504.0, (rows, cols)) * rng.choice([-1.0, 1.0], (rows, cols))
    elif kind == "ties":
        x = rng.integers(-16, 16, (rows, cols)) + rng.choice([0.0, 0.5], (rows, cols))
    else:  # code midpoints of Q4_0/Q5_0/Q8_0-like grids (L = 8, 16, 127 levels per side) scaled
        # by each 32-block's max: exposes codes computed from a rounded scale or another rounding
        seg = min(32, cols)
        nseg = -(-cols // seg)
        levels = rng.choice(np.asarray(grid_levels), (rows, nseg, 1))
        top = rng.standard_normal((rows, nseg, 1)) * 10.0 ** rng.uniform(-3, 3, (rows, nseg, 1))
        k = np.floor(rng.random((rows, nseg, seg)) * 2 * levels) - levels
        x = (k + 0.5) * (top / -levels)
        x[:, :, 0] = top[:, :, 0]
        x = x.reshape(rows, nseg * seg)[:, :cols]
    x = x.astype(np.float32)
    for r in range(rows):
        special = draw(st.sampled_from(["none", "none", "zero", "negzero", "const", "outlier"]))
        if special == "zero":
            x[r] = 0.0
        elif special == "negzero":
            x[r] = -0.0
        elif special == "const":
            x[r] = draw(st.sampled_from([1.0, -2.5, 0.1, 65504.0]))
        elif special == "outlier":
            x[r, draw(st.integers(0, cols - 1))] = draw(st.sampled_from([100.0, -1e4, 6.0e4]))
    if cols >= 2 and draw(st.booleans()):  # one more grid-midpoint block in any row kind
        seg = min(32, cols)
        top = rng.standard_normal() * 10.0 ** rng.uniform(-3, 3)
        level = int(rng.choice(np.asarray(grid_levels)))
        k = np.floor(rng.random(seg) * 2 * level) - level
        block = (k + 0.5) * (top / -level)
        block[0] = top
        x[draw(st.integers(0, rows - 1)), :seg] = block.astype(np.float32)
    if allow_nonfinite and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    im_kind = draw(st.sampled_from(["random", "zeros"] if require_imatrix else ["none", "none", "random", "zeros"]))
    imatrix = None
    if im_kind != "none":
        imatrix = (rng.gamma(1.0, 1.0, cols) + 1e-3).astype(np.float32)
        if im_kind == "zeros":
            imatrix[rng.random(cols) < 0.3] = 0.0
            imatrix[:min(block_size, cols)] = 0.0
    return x, imatrix


# --- microscaling (issue 17) ---


@functools.lru_cache(maxsize=None)
def _mx_element_pool(fmt: str) -> tuple[np.ndarray, float]:
    """(values, top) of an MX format's element type: every finite value, the midpoints
    (ties) and their float32 neighbours, and a value of the top binade ``2**emax_elem``
    that fixes the block's scale."""
    from refquant.formats.mx import get_mx_format

    f = get_mx_format(fmt)
    if f.spec is None:   # MXINT8: int8 / 64 and the half-way points
        k = np.arange(-130, 131, dtype=np.float64)
        base = np.concatenate([k, k + 0.5]) / 64
        base = base.astype(F32)
    else:
        base = np.array(_float_format_pool(f.spec.name), F32)
    return base, float(2.0**f.emax_elem)


@st.composite
def mx_blocks(draw, fmt: str, *, max_rows: int = 3, max_blocks: int = 3) -> np.ndarray:  # type: ignore[no-untyped-def]
    """float32 (rows, k * 32) for MX format ``fmt``: per block, element-type values and
    their ties times ``2**e`` (e across, and past, E8M0's range) with one top-binade value
    fixing the shared scale, so ``V / X`` lands exactly on ties; or a random block; plus
    zero, -0, subnormal, NaN and ±inf blocks."""
    pool, top = _mx_element_pool(fmt)
    rows = draw(st.integers(1, max_rows))
    nb = draw(st.integers(1, max_blocks))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = np.empty((rows, nb, 32), F32)
    for r in range(rows):
        for b in range(nb):
            kind = draw(st.sampled_from(["ties", "ties", "ties", "random", "zero", "tiny", "nonfinite"]))
            e = draw(st.sampled_from([0, 0, -3, 7, -127, -133, -149, 100, 120]))
            if kind == "ties":
                v = rng.choice(pool, 32).astype(np.float64)
                v[rng.integers(0, 32)] = top * rng.choice([1.0, -1.0, 1.5])
                x[r, b] = np.clip(np.ldexp(v, e), -3e38, 3e38).astype(F32)
            elif kind == "random":
                x[r, b] = (rng.standard_normal(32) * 10.0 ** rng.uniform(-30, 30)).astype(F32)
            elif kind == "zero":
                x[r, b] = draw(st.sampled_from([0.0, -0.0]))
            elif kind == "tiny":
                x[r, b] = rng.integers(-8, 9, 32).astype(F32) * F32(2.0**-149)
            else:
                x[r, b] = rng.standard_normal(32).astype(F32)
                x[r, b, rng.integers(0, 32)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x.reshape(rows, nb * 32)


@st.composite
def mx_codes(draw, fmt: str, *, max_rows: int = 3, max_blocks: int = 3) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(scales uint8 (rows, k), codes uint8 (rows, 32 k)): any E8M0 byte (0, 1, 127, 254,
    the NaN 0xFF and random) and any element code of the format's width."""
    from refquant.formats.mx import get_mx_format

    bits = get_mx_format(fmt).bits
    rows = draw(st.integers(1, max_rows))
    nb = draw(st.integers(1, max_blocks))
    scales = draw(hnp.arrays(np.uint8, (rows, nb), elements=st.one_of(st.sampled_from([0, 1, 127, 254, 255]),
                                                                       st.integers(0, 255))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return scales, rng.integers(0, 1 << bits, (rows, nb * 32)).astype(np.uint8)


@st.composite
def nvfp4_inputs(draw, *, max_rows: int = 3, max_blocks: int = 4):  # type: ignore[no-untyped-def]
    """(x float32 (rows, 16 k), global_amax or None): normal, heavy, tiny and huge rows,
    zero rows and blocks, and E2M1 ties when the tensor max is 2688 (global scale 1);
    a calibrated global_amax below or above the data."""
    nb = draw(st.integers(1, max_blocks))
    x = draw(float32_matrices(max_rows=max_rows, min_cols=16 * nb, max_cols=16 * nb))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):   # ties: block max 6 * s with s an E4M3 value, global scale 1
        ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, -0.25, -2.5, -0.0, 0.0], F32)
        s = draw(st.sampled_from([1.0, 0.5, 448.0, 2.0**-9, 3.25, 0.013671875]))
        row = draw(st.integers(0, x.shape[0] - 1))
        x[row] = rng.choice(ties, x.shape[1]) * F32(s)
        x[row, 0] = F32(2688.0)
    g = draw(st.sampled_from([None, None, None, 1.0, 2688.0, 1e-3, 1e6]))
    return x, g


# --- layouts (issue 7) ---


@st.composite
def gptq_layout_case(draw, bits: int, version: int):  # type: ignore[no-untyped-def]
    """``(codes, zeros, scales, g_idx)`` for GPTQ packing: dimensions that fill whole
    int32 runs, zero-points at both extremes (0 only for v2), fp16-exact
    scales from tiny to large, natural or act-order (permuted) ``g_idx``."""
    run = 32 if bits == 3 else 32 // bits
    out = run * draw(st.integers(1, 3))
    in_ = run * draw(st.integers(1, 4))
    group = draw(st.sampled_from([g for g in (run, 2 * run, 64, in_) if in_ % g == 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maxq = 2**bits - 1
    lo = 1 if version == 1 else 0
    codes = rng.integers(0, maxq + 1, (out, in_)).astype(np.uint8)
    zeros = rng.integers(lo, maxq + 1, (out, in_ // group))
    zeros.flat[0] = lo
    zeros.flat[-1] = maxq
    scales = rng.choice(np.array([6e-8, 1e-3, 0.0123, 1.0, 3.5, 65504.0]), zeros.shape).astype(np.float16)
    g_idx = np.arange(in_) // group
    if draw(st.booleans()):  # act-order: each group holds the columns at its permuted positions
        g_idx = g_idx[np.argsort(rng.permutation(in_))]
    return codes, zeros, scales.astype(np.float32), g_idx.astype(np.int32)


@st.composite
def awq_layout_case(draw):  # type: ignore[no-untyped-def]
    """``(codes, zeros, scales, group_size)`` for AWQ GEMM packing (out % 8 == 0, in % group == 0)."""
    out = 8 * draw(st.integers(1, 6))
    group = draw(st.sampled_from([8, 32, 128]))
    in_ = group * draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    codes = rng.integers(0, 16, (out, in_)).astype(np.uint8)
    zeros = rng.integers(0, 16, (out, in_ // group))
    zeros.flat[0], zeros.flat[-1] = 0, 15
    scales = rng.uniform(1e-4, 10, zeros.shape).astype(np.float16).astype(np.float32)
    return codes, zeros, scales, group


# --- algorithms (issue 7) ---


@st.composite
def linear_layer_cases(draw, *, in_features: tuple[int, ...] = (128, 192), max_out: int = 16,  # type: ignore[no-untyped-def]
                       max_tokens: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """``(W, X)``: a linear layer's float32 weight (out, in) and calibration inputs
    (tokens, in) for the weight-quantization algorithms. ``in_features`` 192 with groups
    of 128 has a partial last group (the reference defines it).

    Activations are synthetic but correlated as real ones are: a low-rank mix of a few
    latent factors plus noise, lognormal per-channel magnitudes, a few systematic
    outlier channels (x20 or x100) and dead input columns (all zero: GPTQ's zero
    Hessian diagonal, AWQ's zero mean |x|); sometimes fewer tokens
    than inputs (a singular Hessian). Weights are normal or heavy-tailed with an
    all-zero row or an outlier weight, tiny (~1e-6) or near the float16 maximum (AWQ's
    scaled weights overflow float16 there).
    """
    in_ = draw(st.sampled_from(in_features), label="in_features")
    out = draw(st.integers(2, max_out), label="out_features")
    tokens = draw(st.one_of(st.integers(16, max_tokens), st.just(in_ + 16)), label="tokens")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rank = draw(st.sampled_from([2, 8, in_]), label="activation rank")
    X = rng.standard_normal((tokens, rank)) @ rng.standard_normal((rank, in_)) / np.sqrt(rank)
    X += 0.1 * rng.standard_normal((tokens, in_))
    X *= np.exp(rng.normal(0.0, 1.0, in_))
    n_outlier = draw(st.integers(0, 4), label="outlier channels")
    X[:, rng.choice(in_, n_outlier, replace=False)] *= draw(st.sampled_from([20.0, 100.0]))
    n_dead = draw(st.sampled_from([0, 0, 1, in_ // 16]), label="dead columns")
    X[:, rng.choice(in_, n_dead, replace=False)] = 0.0
    kind = draw(st.sampled_from(["normal", "normal", "heavy", "tiny", "fp16max"]), label="weights")
    W = rng.standard_t(3, (out, in_)) if kind == "heavy" else rng.standard_normal((out, in_))
    W *= {"normal": 0.05, "heavy": 0.05, "tiny": 1e-6, "fp16max": 2e4}[kind]
    if kind == "fp16max":
        W = np.clip(W, -65504.0, 65504.0)
        W[0, 0] = 65504.0
    special = draw(st.sampled_from(["none", "zero_row", "outlier"]), label="special row")
    if special == "zero_row":
        W[0] = 0.0
    elif special == "outlier":
        W[-1, rng.integers(0, in_)] = min(40.0 * np.max(np.abs(W)), 65504.0)
    return W.astype(np.float32), X.astype(np.float32)


def hessian(X: np.ndarray) -> np.ndarray:
    """GPTQ's ``H = 2 X^T X`` of inputs ``X`` (tokens, in), accumulated in float64 by
    :func:`refquant.calibration.hessian.hessian_from_activations`, as float32 (in, in)."""
    from refquant.calibration.hessian import hessian_from_activations

    return hessian_from_activations(X).astype(np.float32)


# --- the boundary (issue 13): inputs the preparation must refuse, and extremes ---


@st.composite
def inconsistent_qparams(draw, params, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """QuantParams that must be refused for an array of ``shape``: fields that disagree in
    shape or dtype, zero / negative / non-finite scales, zero points outside the code
    range, code ranges beyond 16 bits, and a granularity subclass whose ``block_size`` and
    ``grid_shape`` disagree (a kernel trusting it reads past the scale grid)."""
    from dataclasses import replace

    from refquant.granularity import PerTensor

    kind = draw(st.sampled_from(["zp_shape", "scale_shape", "zero_scale", "neg_scale", "nan_scale", "inf_scale",
                                 "scale_dtype", "zp_range", "wide_codes", "lying_granularity"]), label="kind")
    scale = np.array(params.scale, copy=True)
    grid = scale.shape
    if kind == "zp_shape":
        return replace(params, zero_point=np.zeros(grid + (2,), np.int32), symmetric=False)
    if kind == "scale_shape":
        return replace(params, scale=np.ones(tuple(g + 1 for g in grid) or (2,), F32), zero_point=None)
    if kind in ("zero_scale", "neg_scale", "nan_scale", "inf_scale"):
        if scale.size == 0:
            return replace(params, scale=np.ones(tuple(g + 1 for g in grid) or (2,), F32), zero_point=None)
        scale.flat[draw(st.integers(0, scale.size - 1))] = {"zero_scale": 0.0, "neg_scale": -1.0,
                                                            "nan_scale": np.nan, "inf_scale": np.inf}[kind]
        return replace(params, scale=scale)
    if kind == "scale_dtype":
        return replace(params, scale=scale.astype(np.float64))
    if kind == "zp_range":
        return replace(params, zero_point=np.full(grid, params.qmax + 1, np.int32), symmetric=False)
    if kind == "wide_codes":
        return replace(params, bits=1, qmin=70000, qmax=70001, zero_point=None)
    # a granularity that claims one scale per element (runs of 1) with a one-element grid

    class Lying(PerTensor):
        def block_size(self, shp):  # type: ignore[no-untyped-def]
            return (1,) * len(shp)

        def grid_shape(self, shp):  # type: ignore[no-untyped-def]
            return (1,) * len(shp)

    return replace(params, scale=np.ones((1,) * len(shape), F32), zero_point=None, granularity=Lying())


def degenerate_block_format(qtype: str):  # type: ignore[no-untyped-def]
    """A subclass of the registered BlockFormat ``qtype`` whose declared sizes disagree
    with its block dtype (type_size one byte short): kernels that trust it corrupt memory."""
    from refquant.formats import FORMATS

    base = FORMATS[qtype]
    return type(f"Degenerate{base.__name__}", (base,), {"type_size": base.type_size - 1})


#: Zero-width and empty shapes every op must handle like the reference (empty results or
#: the reference's own error, never a crash or a raw reshape error).
EMPTY_SHAPES = ((0,), (0, 0), (3, 0), (0, 4), (2, 0, 3))
