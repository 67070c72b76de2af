// gguf_quantize.cu: ggml's quantize_row_* for F16, BF16, the legacy 32-element types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1), Q8_K and the ternary TQ1_0 / TQ2_0
// (ggml-quants.c @ d99724f2): the _ref rules, and for Q4_0 ... Q5_1 with an importance
// matrix the _impl rules (weights qw * sqrt(sigma2 + x^2), sigma2 = sum(x^2) / n_per_row
// over the whole row, then make_qx_quants / make_qkx3_quants). One thread per ggml block
// (grid-stride), the C function's float32 operations in its order (compiled without
// FMA contraction): bit-exact. bad flags NaN / inf in a type that cannot encode them (the
// reference then raises).
#include "gguf_search.cuh"

__device__ __forceinline__ float block_amax(const float* x, int n, int* bad) {
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float a = fabsf(x[j]);
        if (!(a <= 3.402823466e38f)) flag_bad(bad);        // NaN or inf
        amax = a > amax ? a : amax;                          // MAX(amax, fabsf(v))
    }
    return amax;
}

extern "C" __global__ void gguf_quantize_f16(const float* x, i64 n, u16* out) {
    GRID_STRIDE(i, n) { out[i] = static_cast<u16>(f32_to_fp16_bits(x[i])); }
}

// ggml_compute_fp32_to_bf16: u + 0x7fff + lsb, NaN quieted (sign and top payload kept).
extern "C" __global__ void gguf_quantize_bf16(const float* x, i64 n, u16* out) {
    GRID_STRIDE(i, n) {
        const u32 u = __float_as_uint(x[i]);
        out[i] = static_cast<u16>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 64u
                                                                   : (u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
    }
}

// Q8_0 (with_sum 0) / Q8_1 (with_sum 1: s = fp16(sum(q) * d)): d = amax / 127, q =
// roundf(x * (1 / d)) with the unrounded d, then d stored as fp16.
__device__ __forceinline__ void q8_block(const float* x, u8* o, int with_sum, int* bad) {
    const float d = block_amax(x, 32, bad) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    u8* qs = o + (with_sum ? 4 : 2);
    int total = 0;
    for (int j = 0; j < 32; ++j) {
        const int q = trunc_i8(round_away(x[j] * id));
        total += q;
        qs[j] = static_cast<u8>(q & 0xff);
    }
    store_fp16(o, d);
    if (with_sum) store_fp16(o + 2, static_cast<float>(total) * d);
}

extern "C" __global__ void gguf_quantize_q8_0(const float* x, i64 nb, u8* out, int* bad) {
    GRID_STRIDE(b, nb) { q8_block(x + b * 32, out + b * 34, 0, bad); }
}
extern "C" __global__ void gguf_quantize_q8_1(const float* x, i64 nb, u8* out, int* bad) {
    GRID_STRIDE(b, nb) { q8_block(x + b * 32, out + b * 36, 1, bad); }
}

// Q8_K: iscale = -127 / max (the signed element of largest magnitude, first one), q =
// min(127, nearest_int(iscale * x)), 16 sums of 16 codes, d = 1 / iscale as float32.
extern "C" __global__ void gguf_quantize_q8_k(const float* x, i64 nb, u8* out, int* bad) {
    GRID_STRIDE(b, nb) {
        const float* xb = x + b * 256;
        u8* o = out + b * 292;
        flag_nonfinite(xb, 256, bad);
        float amax;
        const float mx = signed_absmax(xb, 256, &amax);
        if (amax == 0.0f) {
            for (int k = 0; k < 292; ++k) o[k] = 0;
            continue;
        }
        const float iscale = -127.0f / mx;
        for (int j = 0; j < 256; ++j) o[4 + j] = static_cast<u8>(min(127, nearest_int(iscale * xb[j])) & 0xff);
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int ii = 0; ii < 16; ++ii) s += static_cast<i8>(o[4 + 16 * j + ii]);
            o[260 + 2 * j] = static_cast<u8>(s & 0xff);
            o[261 + 2 * j] = static_cast<u8>((s >> 8) & 0xff);
        }
        const u32 u = __float_as_uint(1.0f / iscale);
        for (int k = 0; k < 4; ++k) o[k] = static_cast<u8>((u >> (8 * k)) & 0xffu);
    }
}

__device__ __forceinline__ int tern(float v, float id) { return static_cast<int>(round_away(v * id)) + 1; }

__device__ __forceinline__ u8 trits_byte(int q) { return static_cast<u8>(((q & 0xff) * 256 + 242) / 243); }

// TQ1_0: five trits per byte in ggml's element order, then four in the qh bytes.
extern "C" __global__ void gguf_quantize_tq1_0(const float* x, i64 nb, u8* out, int* bad) {
    GRID_STRIDE(b, nb) {
        const float* xb = x + b * 256;
        u8* o = out + b * 54;
        const float d = block_amax(xb, 256, bad);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int m = 0; m < 32; ++m) {
            int q = 0;
            for (int n = 0; n < 5; ++n) q = q * 3 + tern(xb[m + 32 * n], id);
            o[m] = trits_byte(q);
        }
        for (int m = 0; m < 16; ++m) {
            int q = 0;
            for (int n = 0; n < 5; ++n) q = q * 3 + tern(xb[160 + m + 16 * n], id);
            o[32 + m] = trits_byte(q);
        }
        for (int j = 0; j < 4; ++j) {
            int q = 0;
            for (int m = 0; m < 4; ++m) q = q * 3 + tern(xb[240 + j + 4 * m], id);
            o[48 + j] = trits_byte(q * 3);
        }
        store_fp16(o + 52, d);
    }
}

// TQ2_0: four 2-bit trits per byte.
extern "C" __global__ void gguf_quantize_tq2_0(const float* x, i64 nb, u8* out, int* bad) {
    GRID_STRIDE(b, nb) {
        const float* xb = x + b * 256;
        u8* o = out + b * 66;
        const float d = block_amax(xb, 256, bad);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int k = 0; k < 2; ++k)
            for (int m = 0; m < 32; ++m) {
                int q = 0;
                for (int n = 0; n < 4; ++n) q += (tern(xb[128 * k + m + 32 * n], id) & 3) << (2 * n);
                o[32 * k + m] = static_cast<u8>(q & 0xff);
            }
        store_fp16(o + 64, d);
    }
}

// sigma2[r] = (sum of x^2 over row r, in index order) / n: one thread per row.
extern "C" __global__ void row_sigma2(const float* x, i64 rows, i64 n, float* sigma2) {
    GRID_STRIDE(r, rows) {
        float s = 0.0f;
        for (i64 j = 0; j < n; ++j) s += x[r * n + j] * x[r * n + j];
        sigma2[r] = s / static_cast<float>(n);
    }
}

__device__ __forceinline__ void pack_halves(u8* o, const int* L) {
    for (int j = 0; j < 16; ++j) o[j] = static_cast<u8>((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
}

__device__ __forceinline__ void pack_qh(u8* o, const int* L) {   // bit j: bit 4 of code j
    u32 qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<u32>((L[j] & 0x10) >> 4) << j;
    for (int k = 0; k < 4; ++k) o[k] = static_cast<u8>((qh >> (8 * k)) & 0xffu);
}

// Q4_0 (levels 8) / Q5_0 (levels 16): d = max / -levels (max: the first element of
// largest magnitude), code MIN(2 levels - 1, (int8_t)(x * (1/d) + levels + 0.5)).
__device__ void q40_block(const float* x, u8* o, int levels, const float* qw, float sigma2, int has_im) {
    int L[32];
    float d;
    if (has_im) {
        float W[32];
        for (int j = 0; j < 32; ++j) W[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
        d = make_qx_quants(32, levels, x, W, L);
    } else {
        float amax;
        d = signed_absmax(x, 32, &amax) / static_cast<float>(-levels);
        const float id = d != 0.0f ? 1.0f / d : 0.0f, shift = static_cast<float>(levels) + 0.5f;
        for (int j = 0; j < 32; ++j) L[j] = min(2 * levels - 1, trunc_i8(x[j] * id + shift)) & 0xff;
    }
    store_fp16(o, d);
    if (levels == 8) {
        pack_halves(o + 2, L);
    } else {
        pack_qh(o + 2, L);
        pack_halves(o + 6, L);
    }
}

// Q4_1 (levels 15) / Q5_1 (levels 31): d = (max - min) / levels, m = min, code
// (x - min) * (1/d) + 0.5 truncated (Q4_1: MIN(15, (int8_t)v); Q5_1: (uint8_t)v).
__device__ void q41_block(const float* x, u8* o, int levels, const float* qw, float sigma2, int has_im) {
    int L[32];
    float d, m;
    if (has_im) {
        float W[32];
        int Laux[32];
        for (int j = 0; j < 32; ++j) W[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
        float the_min;
        d = make_qkx_quants(32, levels, x, W, L, &the_min, Laux, -0.9f, 0.05f, 36, false);
        m = -the_min;
    } else {
        float mn = 3.402823466e38f, mx = -3.402823466e38f;
        for (int j = 0; j < 32; ++j) {
            if (x[j] < mn) mn = x[j];
            if (x[j] > mx) mx = x[j];
        }
        d = (mx - mn) / static_cast<float>(levels);
        m = mn;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j) {
            int q = static_cast<int>((x[j] - mn) * id + 0.5f);
            if (levels == 15) q = min(15, static_cast<int>(static_cast<i8>(q & 0xff)));
            L[j] = q & 0xff;
        }
    }
    store_fp16(o, d);
    store_fp16(o + 2, m);
    if (levels == 15) {
        pack_halves(o + 4, L);
    } else {
        pack_qh(o + 4, L);
        pack_halves(o + 8, L);
    }
}

// Legacy types: x (rows, n), imatrix qw (n,) when has_im, sigma2 (rows,) from row_sigma2;
// levels 8 / 16: Q4_0 / Q5_0, 15 / 31: Q4_1 / Q5_1; size: bytes per block.
__device__ void legacy_rows(const float* x, i64 rows, i64 n, const float* qw, int has_im, const float* sigma2, u8* out,
                            int* bad, int levels, int size) {
    const i64 nbr = n / 32;
    GRID_STRIDE(b, rows * nbr) {
        const i64 r = b / nbr, j = b - r * nbr;
        const float* xb = x + b * 32;
        flag_nonfinite(xb, 32, bad);
        const float s2 = has_im ? sigma2[r] : 0.0f;
        if (levels == 8 || levels == 16) {
            q40_block(xb, out + b * size, levels, qw + (has_im ? j * 32 : 0), s2, has_im);
        } else {
            q41_block(xb, out + b * size, levels, qw + (has_im ? j * 32 : 0), s2, has_im);
        }
    }
}

extern "C" __global__ void gguf_quantize_q4_0(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    legacy_rows(x, rows, n, qw, has_im, sigma2, out, bad, 8, 18);
}
extern "C" __global__ void gguf_quantize_q5_0(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    legacy_rows(x, rows, n, qw, has_im, sigma2, out, bad, 16, 22);
}
extern "C" __global__ void gguf_quantize_q4_1(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    legacy_rows(x, rows, n, qw, has_im, sigma2, out, bad, 15, 20);
}
extern "C" __global__ void gguf_quantize_q5_1(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    legacy_rows(x, rows, n, qw, has_im, sigma2, out, bad, 31, 24);
}
