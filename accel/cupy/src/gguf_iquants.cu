// gguf_iquants.cu: ggml's quantizers of the non-linear 4-bit types IQ4_NL, IQ4_XS and
// MXFP4 / NVFP4 (ggml-quants.c @ d99724f2: quantize_row_iq4_nl_impl with ntry = 7,
// quantize_row_iq4_xs_impl, quantize_row_mxfp4_ref, quantize_row_nvfp4_ref). One thread per block / super-block
// (grid-stride), C's float32 operations in its order (no FMA contraction): bit-exact.
#include "gguf_search.cuh"

#define NTRY 7

// best_index_int8(16, kvalues_iq4nl, x): ggml's binary search (NaN ends at 15).
__device__ __forceinline__ int best_index_iq4nl(float x) {
    if (x <= kvalue_iq4nl(0)) return 0;
    if (x >= kvalue_iq4nl(15)) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < kvalue_iq4nl(mav)) mu = mav;
        else ml = mav;
    }
    return x - kvalue_iq4nl(mu - 1) < kvalue_iq4nl(mu) - x ? mu - 1 : mu;
}

// sum w q x and sum w q q over a sub-block, q the table value nearest id * x.
__device__ __forceinline__ void iq4_sums(const float* x, const float* w, float id, float* sumqx, float* sumq2) {
    float a = 0.0f, b = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float q = kvalue_iq4nl(best_index_iq4nl(id * x[j]));
        a += w[j] * q * x[j];
        b += w[j] * q * q;
    }
    *sumqx = a;
    *sumq2 = b;
}

// The scale of one 32-element sub-block (weights w): d = -max / values[0], then 2 NTRY + 1
// candidate inverse scales (itry + values[0]) / max, least squares; 0 for an all-zero one.
__device__ float iq4_sub_block_scale(const float* x, const float* w) {
    float amax;
    const float mx = signed_absmax(x, 32, &amax);
    if (amax < GROUP_MAX_EPS) return 0.0f;
    float sumqx, sumq2;
    iq4_sums(x, w, 1.0f / (-mx / kvalue_iq4nl(0)), &sumqx, &sumq2);
    float d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f, best = d * sumqx;
    for (int itry = -NTRY; itry <= NTRY; ++itry) {
        iq4_sums(x, w, static_cast<float>(itry - 127) / mx, &sumqx, &sumq2);
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

// Weights: x^2, or qw * sqrt(sigma2 + x^2) with sigma2 = sum(x^2) * (2 / super-block size).
__device__ __forceinline__ void iq4_weights(const float* x, const float* qw, int has_im, float sigma2, float* w) {
    for (int j = 0; j < 32; ++j) w[j] = has_im ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

__device__ __forceinline__ float sigma2_of(const float* x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; ++j) s += x[j] * x[j];
    return s * (2.0f / static_cast<float>(n));
}

extern "C" __global__ void gguf_quantize_iq4_nl(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                                const float* sigma2, u8* out, int* bad) {
    const i64 nbr = n / 32;
    GRID_STRIDE(b, rows * nbr) {
        const float* xb = x + b * 32;
        u8* o = out + b * 18;
        flag_nonfinite(xb, 32, bad);
        float w[32];
        iq4_weights(xb, qw + (has_im ? (b % nbr) * 32 : 0), has_im, sigma2_of(xb, 32), w);
        const float d = iq4_sub_block_scale(xb, w);
        store_fp16(o, d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 16; ++j)
            o[2 + j] = static_cast<u8>(best_index_iq4nl(id * xb[j]) | (best_index_iq4nl(id * xb[j + 16]) << 4));
    }
}

extern "C" __global__ void gguf_quantize_iq4_xs(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                                const float* sigma2, u8* out, int* bad) {
    const i64 nbr = n / 256;
    GRID_STRIDE(b, rows * nbr) {
        const float* xb = x + b * 256;
        u8* o = out + b * 136;
        flag_nonfinite(xb, 256, bad);
        const float s2 = sigma2_of(xb, 256);
        float scales[8], w[32], max_scale = 0.0f, amax_scale = 0.0f;
        for (int ib = 0; ib < 8; ++ib) {
            iq4_weights(xb + 32 * ib, qw + (has_im ? (b % nbr) * 256 + 32 * ib : 0), has_im, s2, w);
            scales[ib] = iq4_sub_block_scale(xb + 32 * ib, w);
            const float a = fabsf(scales[ib]);
            if (a > amax_scale) {
                amax_scale = a;
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32.0f;
        store_fp16(o, d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int scales_h = 0;
        for (int ib = 0; ib < 8; ++ib) {
            int l = nearest_int(id * scales[ib]);
            l = min(31, max(-32, l));
            const float dl = d * static_cast<float>(l), idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 16; ++j)
                o[8 + 16 * ib + j] = static_cast<u8>(best_index_iq4nl(idl * xb[32 * ib + j]) |
                                                     (best_index_iq4nl(idl * xb[32 * ib + 16 + j]) << 4));
            l += 32;
            if (ib % 2 == 0) o[4 + ib / 2] = static_cast<u8>(l & 0xF);
            else o[4 + ib / 2] = static_cast<u8>(o[4 + ib / 2] | ((l & 0xF) << 4));
            scales_h |= (l >> 4) << (2 * ib);
        }
        o[2] = static_cast<u8>(scales_h & 0xff);
        o[3] = static_cast<u8>((scales_h >> 8) & 0xff);
    }
}

// MXFP4: e = (uint8)(floorf(log2f(amax)) - 2 + 127). floorf(log2f(a)) is the exponent of
// a, plus one where log2f rounds up to the next integer (a just below a power of two);
// log2_bump[E + 149] holds the bits of the smallest float32 in [2**E, 2**(E+1)) for which
// it does, computed by the launch code from the reference's log2f rule: no device log2.
__device__ __forceinline__ int floor_log2f(float a, const u32* log2_bump) {
    const u32 bits = __float_as_uint(a);
    const int field = static_cast<int>(bits >> 23);
    const int E = field ? field - 127 : -118 - __clz(static_cast<int>(bits & 0x7fffffu));
    return E + (bits >= log2_bump[E + 149] ? 1 : 0);
}

// best_index_mxfp4: the first entry of least |kv[i] * d - x|.
__device__ __forceinline__ int best_index_mxfp4(float v, float d) {
    int bi = 0;
    float best_err = fabsf(kvalue_mxfp4(0) * d - v);
    for (int i = 1; i < 16; ++i) {
        const float err = fabsf(kvalue_mxfp4(i) * d - v);
        if (err < best_err) {
            bi = i;
            best_err = err;
        }
    }
    return bi;
}

extern "C" __global__ void gguf_quantize_mxfp4(const float* x, i64 nb, u8* out, const u32* log2_bump, int* bad) {
    GRID_STRIDE(b, nb) {
        const float* xb = x + b * 32;
        u8* o = out + b * 17;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) {
            const float a = fabsf(xb[j]);
            if (!(a <= 3.402823466e38f)) flag_bad(bad);
            amax = a > amax ? a : amax;
        }
        const u32 e = amax > 0.0f ? static_cast<u32>(floor_log2f(amax, log2_bump) - 2 + 127) & 0xffu : 0u;
        const float d = e8m0_to_f32_half(e);
        o[0] = static_cast<u8>(e);
        for (int j = 0; j < 16; ++j) {
            o[1 + j] = static_cast<u8>(best_index_mxfp4(xb[j], d) | (best_index_mxfp4(xb[j + 16], d) << 4));
        }
    }
}

// ggml_fp32_to_ue4m3 (ggml-impl.h): 0 unless x > 0; min(x, 448); the float32 exponent
// rebiased and the top 3 mantissa bits rounded half up (+ bit 19, carrying into the
// exponent); 0x7E from exponent 15 up; subnormals (int)(x * 512 + 0.5f), at most 7.
__device__ __forceinline__ u32 fp32_to_ue4m3(float x) {
    if (!(x > 0.0f)) return 0;
    const float xc = x < 448.0f ? x : 448.0f;
    const u32 bits = __float_as_uint(xc);
    int exp = static_cast<int>((bits >> 23) & 0xFFu) - 127 + 7;
    const int man = static_cast<int>((bits >> 20) & 7u) + static_cast<int>((bits >> 19) & 1u);
    const int carry = man > 7;
    exp += carry;
    if (exp - carry <= 0) {
        const int sub = static_cast<int>(xc * 512.0f + 0.5f);
        return static_cast<u32>(sub < 1 ? 0 : (sub > 7 ? 7 : sub));
    }
    return exp >= 15 ? 0x7Eu : static_cast<u32>((exp << 3) | (carry ? 0 : man));
}

// quantize_row_nvfp4_ref: per sub-block of 16, ue = fp32_to_ue4m3(amax / 6), d = half its
// value, codes by best_index_mxfp4; byte 8s + j = code j | code j + 8 << 4. One thread per
// block of 64 (36 bytes). Non-finite input flags bad (the reference refuses it).
extern "C" __global__ void gguf_quantize_nvfp4(const float* x, i64 nb, u8* out, int* bad) {
    GRID_STRIDE(b, nb) {
        u8* o = out + b * 36;
        for (int s = 0; s < 4; ++s) {
            const float* xs = x + b * 64 + 16 * s;
            float amax = 0.0f;
            for (int j = 0; j < 16; ++j) {
                const float a = fabsf(xs[j]);
                if (!(a <= 3.402823466e38f)) flag_bad(bad);
                amax = a > amax ? a : amax;
            }
            const u32 ue = fp32_to_ue4m3(amax / 6.0f);
            const float d = ue4m3_to_f32_half(ue);
            o[s] = static_cast<u8>(ue);
            for (int j = 0; j < 8; ++j)
                o[4 + 8 * s + j] = static_cast<u8>(best_index_mxfp4(xs[j], d) | (best_index_mxfp4(xs[j + 8], d) << 4));
        }
    }
}
