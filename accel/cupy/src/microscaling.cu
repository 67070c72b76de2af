// microscaling.cu: OCP MX v1.0 block codec (refquant.formats.mx) and NVIDIA's two-level
// NVFP4 (refquant.formats.nvfp4). Bit-exact: element codes by the integer rounding of
// float_codes.cuh, scales from float32 exponents, and only the reference's own float32
// operations (one multiply by a power of two, NVFP4's divisions and products), compiled
// without FMA contraction.
#include "float_codes.cuh"

// MX quantize (section 6.3), one thread per block of 32: shared_exp = floor(log2(amax)) -
// emax_elem from amax's float32 exponent (clamped to -127; -127 for an all-zero block),
// P_i = element(V_i * 2**-shared_exp) rounded to nearest even, saturating. A block holding
// NaN or inf gets the NaN scale 0xFF and zero codes. is_int8: MXINT8 (rint(64 v), +-127).
extern "C" __global__ void mx_quantize(const u32* __restrict__ x, i64 nb, const int* __restrict__ fmt, int emax_elem,
                                       int is_int8, u8* __restrict__ scales, u8* __restrict__ codes) {
    const FloatFormat f = load_format(fmt);
    GRID_STRIDE(b, nb) {
        const u32* v = x + b * 32;
        u32 amax = 0;
        bool finite = true;
        for (int i = 0; i < 32; ++i) {
            const u32 a = v[i] & 0x7fffffffu;
            finite &= a < 0x7f800000u;
            amax = a > amax ? a : amax;   // finite magnitudes order as their bit patterns
        }
        u8* q = codes + b * 32;
        if (!finite) {
            scales[b] = 0xFF;
            for (int i = 0; i < 32; ++i) q[i] = 0;
            continue;
        }
        int shared = -127;
        if (amax != 0) {
            const int e32 = static_cast<int>(amax >> 23);
            const int fl = e32 > 0 ? e32 - 127 : (31 - __clz(static_cast<int>(amax))) - 149;   // floor(log2 amax)
            shared = max(fl - emax_elem, -127);
        }
        scales[b] = static_cast<u8>(shared + 127);
        const float inv_x = exp2_exact(-shared);   // 2**-shared: exact (shared >= emax_elem - 127 ... 127)
        for (int i = 0; i < 32; ++i) {
            const float p = __fmul_rn(__uint_as_float(v[i]), inv_x);   // V_i / X, one rounding (as ldexp)
            if (is_int8) {
                const float r = rintf(__fmul_rn(p, 64.0f));            // exact scaling, ties to even
                const int k = static_cast<int>(fminf(fmaxf(r, -127.0f), 127.0f));
                q[i] = static_cast<u8>(static_cast<i8>(k));
            } else {
                q[i] = static_cast<u8>(encode_bits(__float_as_uint(p), f));
            }
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

// NVFP4 quantize, one thread per block of 16 (refquant.formats.nvfp4 steps 2-3): the E4M3
// block scale of block_amax / (6 g), then each value divided by e4m3(s) * g and rounded to
// E2M1 on its magnitude (saturating), the sign bit for a non-zero negative quotient. e4m3 and
// e2m1 are the two formats' fields (float_format_table, saturating). Block 0's thread 0
// writes g.
extern "C" __global__ void nvfp4_quantize(const u32* __restrict__ x, i64 nb, const u32* __restrict__ amax_bits,
                                          const int* __restrict__ e4m3, const int* __restrict__ e2m1,
                                          u8* __restrict__ packed, u8* __restrict__ block_scales,
                                          float* __restrict__ global_scale) {
    const FloatFormat fs = load_format(e4m3), fe = load_format(e2m1);
    const float g = nvfp4_global(*amax_bits);
    if (blockIdx.x == 0 && threadIdx.x == 0) *global_scale = g;
    GRID_STRIDE(b, nb) {
        const u32* v = x + b * 16;
        u32 amax = 0;
        for (int i = 0; i < 16; ++i) {
            const u32 a = v[i] & 0x7fffffffu;
            amax = a > amax ? a : amax;
        }
        float s = __fdiv_rn(__uint_as_float(amax), __fmul_rn(6.0f, g));
        if (s == 0.0f) s = 1.0f;
        if (s < 0.001953125f) s = 0.001953125f;   // 2**-9, E4M3's smallest subnormal; NaN stays (np.maximum)
        // 0 / 0 (g underflowed to 0 on an all-zero block): the reference's host division
        // gives x86's default NaN, whose sign bit is set, and encodes it with that sign.
        if (s != s) s = __uint_as_float(0xffc00000u);
        const u32 sc = encode_bits(__float_as_uint(s), fs);
        block_scales[b] = static_cast<u8>(sc);
        const float d = __fmul_rn(__uint_as_float(decode_bits(sc, fs)), g);
        for (int j = 0; j < 8; ++j) {
            u32 q2[2];
            for (int h = 0; h < 2; ++h) {
                const float xv = __uint_as_float(v[2 * j + h]);
                const float q = __fdiv_rn(xv, d);
                // 0 / 0 or a NaN scale (a block whose scale underflowed): x86's default NaN,
                // sign bit set, as the reference's host division gives.
                const bool neg = q != q ? true : (q < 0.0f);
                q2[h] = encode_bits(__float_as_uint(fabsf(q)), fe) | (neg ? 8u : 0u);
            }
            packed[b * 8 + j] = static_cast<u8>(q2[0] | (q2[1] << 4));
        }
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
