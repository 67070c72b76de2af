// microscaling.cu: OCP MX v1.0 block codec (refquant.formats.mx) and NVIDIA's two-level
// NVFP4 (refquant.formats.nvfp4). Bit-exact: element codes by the integer rounding of
// float_codes.cuh, scales from float32 exponents, and only the reference's own float32
// operations (one multiply by a power of two, NVFP4's divisions and products), compiled
// without FMA contraction.
#include "float_codes.cuh"

// max of v over groups of `width` lanes (a power of two <= 32) of a full warp.
__device__ __forceinline__ u32 group_max_u32(u32 v, int width) {
    for (int off = width / 2; off > 0; off >>= 1) {
        const u32 o = __shfl_xor_sync(0xffffffffu, v, off, width);
        v = o > v ? o : v;
    }
    return v;
}

// MX quantize (section 6.3), one lane per element, one warp per block of 32 (reads and
// writes coalesced): shared_exp = floor(log2(amax)) - emax_elem from amax's float32
// exponent (clamped to -127; -127 for an all-zero block), P_i = element(V_i * 2**-shared_exp)
// rounded to nearest even, saturating. A block holding NaN or inf gets the NaN scale 0xFF
// and zero codes. is_int8: MXINT8 (rint(64 v), +-127). n is a multiple of 32 and the block
// size of the launch too, so a warp's lanes are all in range or all out (full-mask shuffles).
extern "C" __global__ void mx_quantize(const u32* __restrict__ x, i64 n, const int* __restrict__ fmt, int emax_elem,
                                       int is_int8, u8* __restrict__ scales, u8* __restrict__ codes) {
    const FloatFormat f = load_format(fmt);
    GRID_STRIDE(i, n) {
        const u32 v = x[i];
        const u32 a = v & 0x7fffffffu;
        const bool finite = __all_sync(0xffffffffu, a < 0x7f800000u);
        const u32 amax = group_max_u32(a, 32);   // finite magnitudes order as their bit patterns
        const bool lane0 = (i & 31) == 0;
        if (!finite) {
            if (lane0) scales[i / 32] = 0xFF;
            codes[i] = 0;
            continue;
        }
        int shared = -127;
        if (amax != 0) {
            const int e32 = static_cast<int>(amax >> 23);
            const int fl = e32 > 0 ? e32 - 127 : (31 - __clz(static_cast<int>(amax))) - 149;   // floor(log2 amax)
            shared = max(fl - emax_elem, -127);
        }
        if (lane0) scales[i / 32] = static_cast<u8>(shared + 127);
        const float p = __fmul_rn(__uint_as_float(v), exp2_exact(-shared));   // V_i / X, one rounding (as ldexp)
        if (is_int8) {
            const float r = rintf(__fmul_rn(p, 64.0f));                      // exact scaling, ties to even
            codes[i] = static_cast<u8>(static_cast<i8>(static_cast<int>(fminf(fmaxf(r, -127.0f), 127.0f))));
        } else {
            codes[i] = static_cast<u8>(encode_bits(__float_as_uint(p), f));
        }
    }
}

// MX dequantize, one thread per element: element value * 2**(scale - 127) in float32, NaN
// for scale 0xFF. A code wider than the format flags bad (the reference's ValueError).
extern "C" __global__ void mx_dequantize(const u8* __restrict__ scales, const u8* __restrict__ codes, i64 n,
                                         const int* __restrict__ fmt, int is_int8, float* __restrict__ out,
                                         int* bad) {
    const FloatFormat f = load_format(fmt);
    GRID_STRIDE(i, n) {
        const u32 c = codes[i], s = scales[i / 32];
        float p;
        if (is_int8) {
            p = __fmul_rn(static_cast<float>(static_cast<i8>(c)), 0.015625f);   // int8 * 2**-6, exact
        } else {
            if (c >> f.bits) flag_bad(bad);
            p = __uint_as_float(decode_bits(c, f));
        }
        out[i] = s == 0xFF ? __uint_as_float(0x7fc00000u) : __fmul_rn(p, exp2_exact(static_cast<int>(s) - 127));
    }
}

// max |x| over n finite float32 (as bits: non-negative floats order as integers) into *amax.
extern "C" __global__ void abs_max_bits(const u32* __restrict__ x, i64 n, u32* amax) {
    u32 m = 0;
    GRID_STRIDE(i, n) {
        const u32 a = x[i] & 0x7fffffffu;
        m = a > m ? a : m;
    }
    for (int off = 16; off > 0; off >>= 1) {
        const u32 o = __shfl_xor_sync(0xffffffffu, m, off);
        m = o > m ? o : m;
    }
    if ((threadIdx.x & 31) == 0) atomicMax(amax, m);
}

// NVFP4's per-tensor decode scale (Model Optimizer's amax / (6 * 448), 1 for amax == 0).
__device__ __forceinline__ float nvfp4_global(u32 amax_bits) {
    const float amax = __uint_as_float(amax_bits);
    return amax == 0.0f ? 1.0f : __fdiv_rn(amax, 2688.0f);
}

// NVFP4 quantize (refquant.formats.nvfp4 steps 2-3), one lane per element, 16 lanes per
// block (coalesced): the E4M3 block scale of block_amax / (6 g), then each value divided by
// e4m3(s) * g and rounded to E2M1 on its magnitude (saturating), the sign bit for a
// non-zero negative quotient; even lanes write a byte (their code low, the next lane's
// high). e4m3 and e2m1 are the two formats' fields (format_fields, saturating). The loop
// runs per warp (while its first element is in range), so the full-mask shuffles always
// have every lane; when n % 32 == 16 the upper half-warp joins them with zeros and writes
// nothing. Block 0's thread 0 writes g.
extern "C" __global__ void nvfp4_quantize(const u32* __restrict__ x, i64 n, const u32* __restrict__ amax_bits,
                                          const int* __restrict__ e4m3, const int* __restrict__ e2m1,
                                          u8* __restrict__ packed, u8* __restrict__ block_scales,
                                          float* __restrict__ global_scale) {
    const FloatFormat fs = load_format(e4m3), fe = load_format(e2m1);
    const float g = nvfp4_global(*amax_bits);
    if (blockIdx.x == 0 && threadIdx.x == 0) *global_scale = g;
    const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 w0 = (static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x) & ~31LL; w0 < n; w0 += stride) {
        const i64 i = w0 + (threadIdx.x & 31);   // the warp's first element is in range
        const bool in = i < n;
        const u32 v = in ? x[i] : 0u;
        const u32 amax = group_max_u32(v & 0x7fffffffu, 16);
        float s = __fdiv_rn(__uint_as_float(amax), __fmul_rn(6.0f, g));
        if (s == 0.0f) s = 1.0f;
        if (s < 0.001953125f) s = 0.001953125f;   // 2**-9, E4M3's smallest subnormal; NaN stays (np.maximum)
        // 0 / 0 (g underflowed to 0 on an all-zero block): the reference's host division
        // gives x86's default NaN, whose sign bit is set, and encodes it with that sign.
        if (s != s) s = __uint_as_float(0xffc00000u);
        const u32 sc = encode_bits(__float_as_uint(s), fs);
        const float d = __fmul_rn(__uint_as_float(decode_bits(sc, fs)), g);
        const float q = __fdiv_rn(__uint_as_float(v), d);
        // 0 / 0 or a NaN scale: x86's default NaN, sign bit set, as the reference's host division gives.
        const bool neg = q != q ? true : (q < 0.0f);
        const u32 code = encode_bits(__float_as_uint(fabsf(q)), fe) | (neg ? 8u : 0u);
        const u32 high = __shfl_down_sync(0xffffffffu, code, 1);
        if (in && (i & 15) == 0) block_scales[i / 16] = static_cast<u8>(sc);
        if (in && (i & 1) == 0) packed[i / 2] = static_cast<u8>(code | (high << 4));
    }
}

// NVFP4 dequantize, one thread per byte: e2m1(q) * (e4m3(block_scale) * g), element 2j in
// the low nibble.
extern "C" __global__ void nvfp4_dequantize(const u8* __restrict__ packed, const u8* __restrict__ block_scales,
                                            i64 n_bytes, float g, const int* __restrict__ e4m3,
                                            const int* __restrict__ e2m1, float* __restrict__ out) {
    const FloatFormat fs = load_format(e4m3), fe = load_format(e2m1);
    GRID_STRIDE(j, n_bytes) {
        const float d = __fmul_rn(__uint_as_float(decode_bits(block_scales[j / 8], fs)), g);
        const u32 byte = packed[j];
        out[2 * j] = __fmul_rn(__uint_as_float(decode_bits(byte & 0xFu, fe)), d);
        out[2 * j + 1] = __fmul_rn(__uint_as_float(decode_bits(byte >> 4, fe)), d);
    }
}
