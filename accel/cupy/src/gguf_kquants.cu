// gguf_kquants.cu: ggml's K-quant quantizers Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
// (ggml-quants.c @ d99724f2: quantize_row_qX_K_ref without an importance matrix,
// quantize_row_qX_K_impl with one). One thread per 256-element super-block (grid-stride):
// the sub-block searches of gguf_search.cuh, the sub-block scales quantized to 4 / 6 / 8
// bits, the codes re-derived from the stored scales, then packed; every float32 operation
// in C's order (compiled without FMA contraction): bit-exact.
#include "gguf_search.cuh"

__device__ __forceinline__ float seq_sumsq(const float* x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; ++j) s += x[j] * x[j];
    return s;
}

// W = qw * sqrt(sigma2 + x^2) for sub-block j of `size`, and its sum in order.
__device__ __forceinline__ float imatrix_weights(const float* x, const float* qw, float sigma2, int size, float* W) {
    float sw = 0.0f;
    for (int i = 0; i < size; ++i) {
        W[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
        sw += W[i];
    }
    return sw;
}

// qs[32h + l] = L[128h + l] | L[+32] << 2 | L[+64] << 4 | L[+96] << 6.
__device__ __forceinline__ void pack_2bit(u8* o, const int* L) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const int e = 128 * h + l;
            o[32 * h + l] = static_cast<u8>((L[e] | (L[e + 32] << 2) | (L[e + 64] << 4) | (L[e + 96] << 6)) & 0xff);
        }
}

// Six-bit scales and mins into 12 bytes (ggml's j < 4 / j >= 4 stores).
__device__ __forceinline__ void pack_scale_min_k4(u8* q, const int* Ls, const int* Lm) {
    for (int j = 0; j < 8; ++j) {
        const int ls = Ls[j] & 0xff, lm = Lm[j] & 0xff;
        if (j < 4) {
            q[j] = static_cast<u8>(ls);
            q[j + 4] = static_cast<u8>(lm);
        } else {
            q[j + 4] = static_cast<u8>((ls & 0xF) | ((lm & 0xF) << 4));
            q[j - 4] = static_cast<u8>(q[j - 4] | ((ls >> 4) << 6));
            q[j] = static_cast<u8>(q[j] | ((lm >> 4) << 6));
        }
    }
}

// L = clamp(nearest_int((x + dm) / d), 0, nmax) per sub-block from the stored d, dmin and
// sub-block scale / min (Q2_K nibbles, or the Q4_K / Q5_K 6-bit pairs at o + 4).
__device__ void requantize_affine(const float* x, const u8* o, int pos_d, int pos_dmin, int nsub, int size, int nmax,
                                  bool q2k, int* L) {
    const float dd = load_fp16(o + pos_d), dmin = load_fp16(o + pos_dmin);
    for (int j = 0; j < nsub; ++j) {
        int sc, m;
        if (q2k) {
            sc = o[j] & 0xF;
            m = o[j] >> 4;
        } else {
            scale_min_k4(j, o + 4, &sc, &m);
        }
        const float d = dd * static_cast<float>(sc);
        if (d == 0.0f) continue;
        const float dm = dmin * static_cast<float>(m);
        for (int ii = 0; ii < size; ++ii) L[size * j + ii] = clampi(nearest_int((x[size * j + ii] + dm) / d), 0, nmax);
    }
}

__device__ void q2k_block(const float* x, u8* o, const float* qw, int has_im) {
    int L[256], Laux[16], Ls[16], Lm[16];
    float W[16], scales[16], mins[16], sw[16];
    if (!has_im) {   // quantize_row_q2_K_ref: weights |x|, mean absolute error
        for (int j = 0; j < 16; ++j) {
            for (int i = 0; i < 16; ++i) W[i] = fabsf(x[16 * j + i]);
            scales[j] = make_qkx_quants(16, 3, x + 16 * j, W, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
        }
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; ++j) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; ++j) o[j] = static_cast<u8>(nearest_int(iscale * scales[j]) & 0xff);
            store_fp16(o + 80, max_scale / 15.0f);
        } else {
            for (int j = 0; j < 16; ++j) o[j] = 0;
            store_fp16(o + 80, 0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; ++j) o[j] = static_cast<u8>((o[j] | (nearest_int(iscale * mins[j]) << 4)) & 0xff);
            store_fp16(o + 82, max_min / 15.0f);
        } else {
            store_fp16(o + 82, 0.0f);
        }
    } else {         // quantize_row_q2_K_impl
        const float sigma2 = seq_sumsq(x, 256) / 256.0f;
        for (int j = 0; j < 16; ++j) {
            sw[j] = imatrix_weights(x + 16 * j, qw + 16 * j, sigma2, 16, W);
            scales[j] = make_qkx_quants(16, 3, x + 16 * j, W, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
        }
        const float dm = make_qp_quants(16, 15, scales, Ls, sw), mm = make_qp_quants(16, 15, mins, Lm, sw);
        store_fp16(o + 80, dm);
        store_fp16(o + 82, mm);
        for (int j = 0; j < 16; ++j) o[j] = static_cast<u8>((Ls[j] | (Lm[j] << 4)) & 0xff);
    }
    requantize_affine(x, o, 80, 82, 16, 16, 3, true, L);
    pack_2bit(o + 16, L);
}

__device__ void q3k_block(const float* x, u8* o, const float* qw, int has_im) {
    int L[256], Ls[16];
    float W[16], scales[16], sw[16];
    for (int k = 0; k < 12; ++k) o[96 + k] = 0;
    bool live = true;
    if (!has_im) {   // quantize_row_q3_K_ref
        for (int j = 0; j < 16; ++j) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        float amax;
        const float max_scale = signed_absmax(scales, 16, &amax);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; ++j) Ls[j] = clampi(static_cast<i8>(nearest_int(iscale * scales[j]) & 0xff), -32, 31) + 32;
            store_fp16(o + 108, 1.0f / iscale);
        } else {
            for (int j = 0; j < 16; ++j) Ls[j] = 0;
            store_fp16(o + 108, 0.0f);
        }
        live = max_scale != 0.0f;
    } else {         // quantize_row_q3_K_impl
        const float sigma2 = 2.0f * seq_sumsq(x, 256) / 256.0f;
        for (int j = 0; j < 16; ++j) {
            sw[j] = imatrix_weights(x + 16 * j, qw + 16 * j, sigma2, 16, W);
            scales[j] = make_qx_quants(16, 4, x + 16 * j, W, L + 16 * j);
        }
        store_fp16(o + 108, make_qx_quants(16, 32, scales, sw, Ls));
    }
    if (live) {
        for (int j = 0; j < 16; ++j) {
            int l = Ls[j];
            if (j < 8) {
                o[96 + j] = static_cast<u8>(l & 0xF);
            } else {
                o[96 + j - 8] = static_cast<u8>(o[96 + j - 8] | ((l & 0xF) << 4));
            }
            l >>= 4;
            o[104 + j % 4] = static_cast<u8>(o[104 + j % 4] | (l << (2 * (j / 4))));
        }
    }
    const float dd = load_fp16(o + 108);
    for (int j = 0; j < 16; ++j) {
        int s = j < 8 ? (o[96 + j] & 0xF) : (o[96 + j - 8] >> 4);
        s = (s | (((o[104 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        const float d = dd * static_cast<float>(s);
        if (d == 0.0f) continue;
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = clampi(nearest_int(x[16 * j + ii] / d), -4, 3) + 4;
    }
    for (int l = 0; l < 32; ++l) {   // hmask: bit k of byte l set when code 32k + l is > 3
        int h = 0;
        for (int k = 0; k < 8; ++k) h |= (L[32 * k + l] >> 2) << k;
        o[l] = static_cast<u8>(h);
    }
    for (int j = 0; j < 256; ++j) L[j] &= 3;
    pack_2bit(o + 32, L);
}

// Q4_K (nmax 15) / Q5_K (nmax 31).
__device__ void q45k_block(const float* x, u8* o, const float* qw, int has_im, int nmax) {
    int L[256], Laux[32], Ls[8], Lm[8];
    float W[32], scales[8], mins[8], sw[8];
    if (!has_im) {   // _ref: weights av_x + |x|, av_x = sqrt(sum x^2 / 32) per sub-block
        for (int j = 0; j < 8; ++j) {
            const float av_x = sqrtf(seq_sumsq(x + 32 * j, 32) / 32.0f);
            for (int i = 0; i < 32; ++i) W[i] = av_x + fabsf(x[32 * j + i]);
            scales[j] = make_qkx_quants(32, nmax, x + 32 * j, W, L + 32 * j, &mins[j], Laux, nmax == 15 ? -1.0f : -0.5f,
                                        0.1f, nmax == 15 ? 20 : 15, false);
        }
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; ++j) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
        for (int j = 0; j < 8; ++j) {
            Ls[j] = min(63, nearest_int(inv_scale * scales[j]) & 0xff);
            Lm[j] = min(63, nearest_int(inv_min * mins[j]) & 0xff);
        }
        pack_scale_min_k4(o + 4, Ls, Lm);
        store_fp16(o, max_scale / 63.0f);
        store_fp16(o + 2, max_min / 63.0f);
    } else {         // _impl: weights qw * sqrt(sigma2 + x^2), sigma2 = 2 sum x^2 / 256
        const float sigma2 = 2.0f * seq_sumsq(x, 256) / 256.0f;
        for (int j = 0; j < 8; ++j) {
            sw[j] = imatrix_weights(x + 32 * j, qw + 32 * j, sigma2, 32, W);
            scales[j] = make_qkx_quants(32, nmax, x + 32 * j, W, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
        }
        const float d = make_qp_quants(8, 63, scales, Ls, sw), dmin = make_qp_quants(8, 63, mins, Lm, sw);
        if (nmax == 31) {   // only quantize_row_q5_K_impl applies MIN(63, .) again
            for (int j = 0; j < 8; ++j) {
                Ls[j] = min(63, Ls[j]);
                Lm[j] = min(63, Lm[j]);
            }
        }
        pack_scale_min_k4(o + 4, Ls, Lm);
        store_fp16(o, d);
        store_fp16(o + 2, dmin);
    }
    requantize_affine(x, o, 0, 2, 8, 32, nmax, false, L);
    if (nmax == 15) {
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) o[16 + 32 * c + l] = static_cast<u8>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    } else {
        for (int l = 0; l < 32; ++l) o[16 + l] = 0;
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l], h = o[16 + l];
                if (l1 > 15) {
                    l1 -= 16;
                    h |= 1 << (2 * c);
                }
                if (l2 > 15) {
                    l2 -= 16;
                    h |= 2 << (2 * c);
                }
                o[16 + l] = static_cast<u8>(h);
                o[48 + 32 * c + l] = static_cast<u8>(l1 | (l2 << 4));
            }
    }
}

__device__ void q6k_block(const float* x, u8* o, const float* qw, int has_im) {
    int L[256];
    float W[16], scales[16];
    for (int j = 0; j < 16; ++j) {
        for (int i = 0; i < 16; ++i) W[i] = has_im ? qw[16 * j + i] : x[16 * j + i] * x[16 * j + i];   // raw imatrix
        scales[j] = make_qx_quants(16, 32, x + 16 * j, W, L + 16 * j);
    }
    float max_abs_scale;
    const float max_scale = signed_absmax(scales, 16, &max_abs_scale);
    if (max_abs_scale < GROUP_MAX_EPS) {
        for (int k = 0; k < 210; ++k) o[k] = 0;
        return;
    }
    const float iscale = -128.0f / max_scale;
    store_fp16(o + 208, 1.0f / iscale);
    for (int j = 0; j < 16; ++j) o[192 + j] = static_cast<u8>(min(127, nearest_int(iscale * scales[j])) & 0xff);
    const float dd = load_fp16(o + 208);
    for (int j = 0; j < 16; ++j) {
        const float d = dd * static_cast<float>(static_cast<i8>(o[192 + j]));
        if (d == 0.0f) continue;
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = clampi(nearest_int(x[16 * j + ii] / d), -32, 31) + 32;
    }
    for (int c = 0; c < 2; ++c)
        for (int l = 0; l < 32; ++l) {
            const int e = 128 * c + l;
            o[64 * c + l] = static_cast<u8>((L[e] & 0xF) | ((L[e + 64] & 0xF) << 4));
            o[64 * c + l + 32] = static_cast<u8>((L[e + 32] & 0xF) | ((L[e + 96] & 0xF) << 4));
            o[128 + 32 * c + l] = static_cast<u8>(
                ((L[e] >> 4) | ((L[e + 32] >> 4) << 2) | ((L[e + 64] >> 4) << 4) | ((L[e + 96] >> 4) << 6)) & 0xff);
        }
}

// x (rows, n) -> out (rows, n / 256 * size); qw (n,) when has_im. kind: 2..6 = Q2_K..Q6_K.
__device__ void kquant_rows(const float* x, i64 rows, i64 n, const float* qw, int has_im, u8* out, int* bad, int kind,
                            int size) {
    const i64 nbr = n / 256;
    GRID_STRIDE(b, rows * nbr) {
        const i64 j = b % nbr;
        const float* xb = x + b * 256;
        const float* q = qw + (has_im ? j * 256 : 0);
        u8* o = out + b * size;
        flag_nonfinite(xb, 256, bad);
        if (kind == 2) q2k_block(xb, o, q, has_im);
        else if (kind == 3) q3k_block(xb, o, q, has_im);
        else if (kind == 4) q45k_block(xb, o, q, has_im, 15);
        else if (kind == 5) q45k_block(xb, o, q, has_im, 31);
        else q6k_block(xb, o, q, has_im);
    }
}

extern "C" __global__ void gguf_quantize_q2_k(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    kquant_rows(x, rows, n, qw, has_im, out, bad, 2, 84);
}
extern "C" __global__ void gguf_quantize_q3_k(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    kquant_rows(x, rows, n, qw, has_im, out, bad, 3, 110);
}
extern "C" __global__ void gguf_quantize_q4_k(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    kquant_rows(x, rows, n, qw, has_im, out, bad, 4, 144);
}
extern "C" __global__ void gguf_quantize_q5_k(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    kquant_rows(x, rows, n, qw, has_im, out, bad, 5, 176);
}
extern "C" __global__ void gguf_quantize_q6_k(const float* x, i64 rows, i64 n, const float* qw, int has_im,
                                              const float* sigma2, u8* out, int* bad) {
    kquant_rows(x, rows, n, qw, has_im, out, bad, 6, 210);
}
