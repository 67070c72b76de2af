"""ggml's scalar float32 arithmetic for the GGUF Numba kernels.

Every helper reproduces one piece of ``ggml-quants.c`` / ``ggml-impl.h``
(ggml-org/ggml @ d99724f2) bit for bit, as :mod:`refquant.formats._ggml_math` does for
NumPy:

- :func:`nearest_int` is ggml's bit trick (add 1.5·2^23, read the low mantissa bits),
  on the float32's actual bits, so it gives ggml's answer even outside the range ggml
  asserts (NaN and huge values from overflowing searches);
- :func:`fp32_to_fp16` / :func:`fp16_to_fp32` are ``GGML_FP32_TO_FP16`` (round to nearest
  even, NaN -> 0x7E00 with the sign) and its exact inverse, on integer bits, since Numba
  has no float16 arithmetic on the CPU;
- :func:`roundf` is C ``roundf`` (half away from zero);
- constants are float32  so that no expression silently widens to float64: Numba,
  like NumPy, promotes ``float32 * int`` and ``float32 * 0.5`` to float64, where C keeps
  float. Integers meet floats only through an explicit ``f32(...)``.

Kernels here are compiled with ``error_model="numpy"`` on top of the project's JIT options
(:mod:`accel.numba._jit`): a float division by zero must give IEEE inf/NaN as in C (the
searches rely on it and mask the result), not raise ZeroDivisionError, and the
per-division zero checks of the default error model would also block vectorization.
``fastmath`` stays off: no contraction to FMA, no reassociation of the in-order sums.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from accel.numba._jit import KERNEL

__all__ = ["first_absmax", "max_abs", "first_min_max", "gkernel", "ghelper", "ginline", "f32", "LANES", "stack_f32", "stack_i32", "stack_block_i32", "stack_quad_f32", "stack_super_f32", "nearest_int", "fp32_to_fp16", "fp16_to_fp32", "roundf",
           "f32_bits", "bits_f32", "scale_int8_run", "store_run", "code_bits", "bit_set", "trit", "fp32_to_bf16", "e8m0_to_fp32_half", "store_fp16", "load_fp16", "GROUP_MAX_EPS"]

_OPTIONS = dict(KERNEL, error_model="numpy")


def gkernel(fn):  # type: ignore[no-untyped-def]
    """A parallel GGUF kernel (``prange`` over chunks of blocks)."""
    return numba.njit(parallel=True, **_OPTIONS)(fn)


def ghelper(fn):  # type: ignore[no-untyped-def]
    """A serial GGUF helper (LLVM inlines the small ones into the kernels)."""
    return numba.njit(**_OPTIONS)(fn)


def ginline(fn):  # type: ignore[no-untyped-def]
    """A block decoder inlined into its callers by Numba itself (per-block calls that
    LLVM leaves out of line cost more than the block's work)."""
    return numba.njit(inline="always", **_OPTIONS)(fn)


f32 = np.float32
LANES = 16  # sub-blocks searched side by side (one AVX-512 vector of float32)
GROUP_MAX_EPS = np.float32(1e-15)  # ggml-quants.c: blocks with abs max below this are "all zero"


@intrinsic
def f32_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The bits of a float32 as int32 (``memcpy(&i, &f, 4)``)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def bits_f32(typingctx, u):  # type: ignore[no-untyped-def]
    """The float32 whose bits are the low 32 bits of an integer."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        v = args[0]
        width = v.type.width
        if width > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif width < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(u), codegen


@intrinsic
def scale_int8_run(typingctx, y, q, pos, d, n):  # type: ignore[no-untyped-def]
    """``y[j] = float(int8(q[pos + j])) * d`` for ``j < n`` (a literal), as one vector
    expression: ``n`` bytes loaded at once, sign-extended, converted, multiplied (IEEE
    float32 multiply, no contraction), stored at once.

    Written as vector IR because neither of Numba's loop forms vectorizes a 32-element
    block fully: a constant trip count is unrolled before the loop vectorizer sees it
    (and Numba leaves the SLP vectorizer off), a run-time one below 64 gets only the
    8-wide remainder loop. Loading the whole run before storing also settles the
    aliasing question (``y`` and ``q`` never overlap here)."""
    if not isinstance(n, types.IntegerLiteral) or y.layout != "C" or q.layout != "C" or y.dtype != types.float32:
        return None  # one vector load and store: contiguous arrays only
    count = n.literal_value

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        yv, qv, posv, dv, _ = args
        yarr = context.make_array(signature.args[0])(context, builder, value=yv)
        qarr = context.make_array(signature.args[1])(context, builder, value=qv)
        src = builder.bitcast(builder.gep(qarr.data, [posv]), ir.VectorType(ir.IntType(8), count).as_pointer())
        codes = builder.load(src, align=1)
        wide = builder.sitofp(builder.sext(codes, ir.VectorType(ir.IntType(32), count)),
                              ir.VectorType(ir.FloatType(), count))
        vec_f = ir.VectorType(ir.FloatType(), count)
        splat = builder.shuffle_vector(builder.insert_element(ir.Constant(vec_f, ir.Undefined), dv,
                                                              ir.Constant(ir.IntType(32), 0)),
                                       ir.Constant(vec_f, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), count), [0] * count))
        dst = builder.bitcast(yarr.data, vec_f.as_pointer())
        builder.store(builder.fmul(wide, splat), dst, align=4)
        return context.get_dummy_value()

    return types.void(y, q, pos, d, n), codegen


@intrinsic
def code_bits(typingctx, v, vshift, vmask, h, hshift, hmask, hpos):  # type: ignore[no-untyped-def]
    """``((v >> vshift) & vmask) | (((h >> hshift) & hmask) << hpos)`` in 32-bit integer
    arithmetic, as int32: a code from a low-bits byte and a high-bits byte (Q5/Q6/Q3
    layouts). Numba widens every integer operation to 64 bits and LLVM keeps the vector
    form in 64-bit lanes (half the lanes per instruction, then a truncation); one int32
    value per element keeps element loops at 16 lanes per AVX-512 vector."""
    args_t = (v, vshift, vmask, h, hshift, hmask, hpos)
    if not all(isinstance(t, types.Integer) for t in args_t):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a = [context.cast(builder, val, ty, types.int32) for val, ty in zip(args, signature.args)]
        low = builder.and_(builder.lshr(a[0], a[1]), a[2])
        high = builder.shl(builder.and_(builder.lshr(a[3], a[4]), a[5]), a[6])
        return builder.or_(low, high)

    return types.int32(*args_t), codegen


@intrinsic
def bit_set(typingctx, v, k):  # type: ignore[no-untyped-def]
    """Whether bit ``k`` of the integer ``v`` (taken as 32 bits) is set, tested in 32-bit
    arithmetic (see :func:`code_bits`: a Numba ``v & m`` is a 64-bit operation)."""
    if not (isinstance(v, types.Integer) and isinstance(k, types.Integer)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a = [context.cast(builder, val, ty, types.int32) for val, ty in zip(args, signature.args)]
        bit = builder.and_(builder.lshr(a[0], a[1]), ir.Constant(ir.IntType(32), 1))
        return builder.icmp_unsigned("!=", bit, ir.Constant(ir.IntType(32), 0))

    return types.boolean(v, k), codegen


@intrinsic
def trit(typingctx, b, p3):  # type: ignore[no-untyped-def]
    """Trit ``n`` of a TQ1_0 byte ``b`` minus 1, with ``p3 = 3**n``:
    ``(((b·p3 mod 256)·3) >> 8) - 1`` (``dequantize_row_tq1_0``), in 32-bit arithmetic
    (see :func:`code_bits`; a 64-bit vector multiply costs several instructions)."""
    if not (isinstance(b, types.Integer) and isinstance(p3, types.Integer)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        v, k = (context.cast(builder, val, ty, types.int32) for val, ty in zip(args, signature.args))
        low = builder.and_(builder.mul(v, k), ir.Constant(i32, 0xFF))
        return builder.sub(builder.lshr(builder.mul(low, ir.Constant(i32, 3)), ir.Constant(i32, 8)),
                           ir.Constant(i32, 1))

    return types.int32(b, p3), codegen


@intrinsic
def store_run(typingctx, y, pos, t, n):  # type: ignore[no-untyped-def]
    """``y[pos:pos + n] = t[:n]`` for a literal ``n``: one fixed-size copy of float32 (vector
    moves, no call) from a decoder's stack run ``t`` (:data:`stack_quad_f32`), whose
    element loop LLVM vectorizes without an alias check. (A slice-to-slice copy has a
    run-time length: a call to ``memcpy`` per run.)"""
    if not isinstance(n, types.IntegerLiteral) or y.layout != "C" or y.dtype != types.float32:
        return None  # a plain copy of n float32: only into a contiguous float32 array
    size = n.literal_value * 4

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        yarr = context.make_array(signature.args[0])(context, builder, value=args[0])
        tarr = context.make_array(signature.args[2])(context, builder, value=args[2])
        dst = builder.gep(yarr.data, [args[1]])
        cgutils.raw_memcpy(builder, dst, tarr.data, context.get_constant(types.intp, size), 1)
        return context.get_dummy_value()

    return types.void(y, pos, t, n), codegen


_MAGIC = np.float32(12582912.0)  # 1.5 * 2**23


@ghelper
def nearest_int(fval):  # type: ignore[no-untyped-def]
    """ggml ``nearest_int``: round half to even for abs(fval) <= 4194303 (int32)."""
    i = f32_bits(fval + _MAGIC)
    return np.int32((i & np.int32(0x007FFFFF)) - np.int32(0x00400000))


@ghelper
def roundf(v):  # type: ignore[no-untyped-def]
    """C ``roundf`` (half away from zero) of a float32, as float32."""
    a = np.abs(v)
    fl = np.floor(a)
    r = fl + np.float32(1.0) if a - fl >= np.float32(0.5) else fl
    return np.float32(np.copysign(r, v))


@ghelper
def fp32_to_fp16(f):  # type: ignore[no-untyped-def]
    """``GGML_FP32_TO_FP16``: float32 -> fp16 bits (uint16 value as int32), round to
    nearest even, overflow to inf, subnormals kept, NaN -> 0x7E00 with the sign.

    Every case is computed and one is selected (no branches), so loops over it vectorize:
    normal results rebias the exponent and round the 13 dropped mantissa bits; subnormal
    ones shift the significand (implicit bit included) right by 126 - e, which is more
    than 24 (a zero result) below 2**-25."""
    u = np.int64(f32_bits(f)) & np.int64(0xFFFFFFFF)
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    v = a - 0x38000000  # normal: exponent rebias, then drop 13 bits to nearest even
    q = v >> 13
    rem = v & 0x1FFF
    normal = q + ((rem > 0x1000) | ((rem == 0x1000) & ((q & 1) == 1)))
    e = a >> 23
    shift = min(max(126 - e, np.int64(14)), np.int64(31))
    sig = (a & 0x7FFFFF) | 0x800000
    qs = sig >> shift
    rs = sig - (qs << shift)
    half = np.int64(1) << (shift - 1)
    sub = qs + ((rs > half) | ((rs == half) & ((qs & 1) == 1)))
    mag = normal if a >= 0x38800000 else sub
    mag = 0x7C00 if a >= 0x477FF000 else mag  # >= 65520 rounds to inf (inf stays inf)
    mag = 0x7E00 if a > 0x7F800000 else mag
    return np.int32(sign | mag)


@ghelper
def fp16_to_fp32(h):  # type: ignore[no-untyped-def]
    """``GGML_FP16_TO_FP32``: fp16 bits (any integer type) -> float32, exact.

    Written without branches (selects only) so that loops over it vectorize: a normal
    number rebiases its exponent, a subnormal is m·2^-24 (exact in float32), inf/NaN keep
    their mantissa bits."""
    h = np.int32(h) & np.int32(0xFFFF)
    sign = (h & np.int32(0x8000)) << np.int32(16)
    e = (h >> np.int32(10)) & np.int32(0x1F)
    m = h & np.int32(0x3FF)
    normal = sign | ((e + np.int32(112)) << np.int32(23)) | (m << np.int32(13))
    special = sign | np.int32(0x7F800000) | (m << np.int32(13))
    sub = f32_bits(np.float32(m) * np.float32(2.0 ** -24)) | sign
    return bits_f32(np.int32(special if e == np.int32(0x1F) else (sub if e == np.int32(0) else normal)))


def _has_f16c() -> bool:
    """Whether LLVM may lower float <-> half conversions to F16C instructions here."""
    try:
        import llvmlite.binding as ll

        return bool(ll.get_host_cpu_features().get("f16c"))
    except Exception:  # noqa: BLE001 - no feature list: the software conversions are always right
        return False


#: Per-block fp16 scales are converted with one F16C instruction when the CPU has it (as
#: ggml's x86 build does); element loops keep the branch-free software conversions.
_F16C = _has_f16c()


@intrinsic
def _hw_fp32_to_fp16(typingctx, x):  # type: ignore[no-untyped-def]
    """fp16 bits (as int32) of a float32 by LLVM ``fptrunc`` (round to nearest even)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        h = builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
        return builder.zext(h, ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _hw_fp16_to_fp32(typingctx, h):  # type: ignore[no-untyped-def]
    """float32 of the fp16 bits in the low 16 bits of an integer by LLVM ``fpext`` (exact)."""
    if not isinstance(h, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        half = builder.bitcast(builder.trunc(args[0], ir.IntType(16)), ir.HalfType())
        return builder.fpext(half, ir.FloatType())

    return types.float32(h), codegen


@ghelper
def store_fp16(out, pos, f):  # type: ignore[no-untyped-def]
    """Write fp16(f) little-endian at ``out[pos:pos+2]``. (F16C for all but NaN, whose
    payload rule is ggml's software one.)"""
    h = _hw_fp32_to_fp16(f) if _F16C and f == f else fp32_to_fp16(f)
    out[pos] = np.uint8(h & 0xFF)
    out[pos + 1] = np.uint8((h >> 8) & 0xFF)


@ghelper
def load_fp16(b, pos):  # type: ignore[no-untyped-def]
    """Read the little-endian fp16 at ``b[pos:pos+2]`` as float32. (F16C for finite
    values; inf/NaN keep their exact bits through the software path, which F16C would
    change for a signalling NaN.)"""
    h = np.int32(b[pos]) | (np.int32(b[pos + 1]) << 8)
    if _F16C and (h & np.int32(0x7C00)) != np.int32(0x7C00):
        return _hw_fp16_to_fp32(h)
    return fp16_to_fp32(h)


@ghelper
def fp32_to_bf16(f):  # type: ignore[no-untyped-def]
    """``ggml_compute_fp32_to_bf16``: round to nearest even by u + 0x7FFF + lsb; NaN keeps
    its sign and top payload bits and gets the quiet bit. Returns the 16 bits as int32."""
    u = np.int64(f32_bits(f)) & np.int64(0xFFFFFFFF)
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return np.int32((u >> 16) | 64)
    return np.int32(((u + (0x7FFF + ((u >> 16) & 1))) >> 16) & 0xFFFF)


@ghelper
def e8m0_to_fp32_half(e):  # type: ignore[no-untyped-def]
    """``ggml_e8m0_to_fp32_half``: 2^(e - 128) as float32 (e = 0, 1: subnormals)."""
    e = np.int64(e)
    if e < 2:
        return bits_f32(np.int64(0x00200000) << e)
    return bits_f32((e - 1) << 23)



def _lanes_alloca(dtype, size=LANES):  # type: ignore[no-untyped-def]
    """An intrinsic returning a pointer to ``size`` elements of stack memory (an
    ``alloca`` in the function being compiled)."""

    @intrinsic
    def alloc(typingctx):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return cgutils.alloca_once(builder, context.get_value_type(dtype), size=size)

        return types.CPointer(dtype)(), codegen

    return alloc


#: ``numba.carray(stack_f32(), LANES)`` is a float32 array on the calling function's
#: stack. Per-lane state of the searches lives there: LLVM then knows it aliases none of
#: the argument arrays and keeps it in SIMD registers across the element loop (heap
#: arrays would be reloaded and stored on every element). Never return such an array.
stack_f32 = _lanes_alloca(types.float32)
stack_i32 = _lanes_alloca(types.int32)
stack_block_i32 = _lanes_alloca(types.int32, 32)  #: codes of one 32-element block
stack_quad_f32 = _lanes_alloca(types.float32, 64)  #: four 16-value runs of a decoder
stack_super_f32 = _lanes_alloca(types.float32, 256)  #: one decoded 256-value super-block


# --- scans with ggml's tie rules, vectorizable -------------------------------------------
#
# ggml's scans carry a dependency from one element to the next (``if (amax < fabsf(v))``),
# which a compiler may not reorder: 32 elements cost 32 compare-select latencies. For
# finite inputs (the quantizers reject the others) the same results come from an
# order-free integer reduction over the float bits, then a search for the first element
# that attains it: the first element wins ties, as in ggml.

_ABS = np.int32(0x7FFFFFFF)


@ghelper
def _order_key(v):  # type: ignore[no-untyped-def]
    """int32 key ordered as the float32 values (finite; -0 just below +0)."""
    b = f32_bits(v)
    return b ^ ((b >> np.int32(31)) & _ABS)


@ghelper
def first_absmax(xb, n):  # type: ignore[no-untyped-def]
    """``if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`` from amax = max = 0:
    returns (max, amax); an all-zero block (either sign) gives (+0, +0).

    One order-free max-reduction over int64 keys (|v|'s bits, then 0xFFFF - j; n <=
    65536): the largest magnitude and, among equal ones, the first index, as ggml's
    strict ``<`` keeps. (Alone, measured ~10x faster than a max pass and a search: the
    fabs form, unlike ``bits & 0x7FFFFFFF``, is vectorized by LLVM.)"""
    key = np.int64(0)
    for j in range(n):
        key = max(key, (np.int64(f32_bits(np.abs(xb[j]))) << 16) | (0xFFFF - j))  # fabs: vectorizes
    if (key >> 16) == 0:
        return np.float32(0.0), np.float32(0.0)
    v = xb[0xFFFF - (key & 0xFFFF)]
    return v, np.abs(v)


@ghelper
def max_abs(xb, n):  # type: ignore[no-untyped-def]
    """``amax = MAX(amax, fabsf(v))`` from 0 (a value, so the order is free)."""
    m = np.int32(0)
    for j in range(n):
        m = max(m, f32_bits(np.abs(xb[j])))  # fabs, not a mask of the bits: LLVM vectorizes it
    return bits_f32(m)


@ghelper
def first_min_max(xb, n):  # type: ignore[no-untyped-def]
    """``if (v < min) min = v; if (v > max) max = v;`` from min = FLT_MAX, max = -FLT_MAX:
    the first minimal and the first maximal element (which keeps the sign of a zero).

    One pass of two order-free int64 reductions over keys (the value's order key, then
    the index: j for the min, 0xFFFF - j for the max; n <= 65536), so the first index
    wins ties; ``v + 0`` makes -0 and +0 one key, as they compare equal in C."""
    kmin = (np.int64(_order_key(np.float32(np.finfo(np.float32).max))) << 16) | 0xFFFF
    kmax = (np.int64(_order_key(np.float32(-np.finfo(np.float32).max))) << 16)
    for j in range(n):
        k = np.int64(_order_key(xb[j] + np.float32(0.0))) << 16
        kmin = min(kmin, k | j)
        kmax = max(kmax, k | (0xFFFF - j))
    jmin = kmin & 0xFFFF
    jmax = 0xFFFF - (kmax & 0xFFFF)
    mn = xb[jmin] if jmin < n else np.float32(np.finfo(np.float32).max)
    mx = xb[jmax] if jmax < n else np.float32(-np.finfo(np.float32).max)
    return mn, mx
