// gguf_blocks.cuh: ggml's dequantize_row_* for one block of every GGUF block type
// (ggml-quants.c @ d99724f2), each the C function's float32 operations in its order.
// Shared by gguf.cu (dequantize) and gguf_matmul.cu (fused dequant-matmul).
#pragma once
#include "gguf_common.cuh"

__device__ __forceinline__ void dq_q4_0(const u8* q, float* y) {
    const float d = load_fp16(q);
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((q[2 + j] & 0xF) - 8) * d;
        y[j + 16] = static_cast<float>((q[2 + j] >> 4) - 8) * d;
    }
}

__device__ __forceinline__ void dq_q4_1(const u8* q, float* y) {
    const float d = load_fp16(q), m = load_fp16(q + 2);
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(q[4 + j] & 0xF) * d + m;
        y[j + 16] = static_cast<float>(q[4 + j] >> 4) * d + m;
    }
}

// Q5_0 (has_min 0) and Q5_1 (has_min 1): the fifth bit of element j is bit j of qh.
__device__ __forceinline__ void dq_q5(const u8* q, float* y, int has_min) {
    const int pos = has_min ? 4 : 2;
    const float d = load_fp16(q), m = has_min ? load_fp16(q + 2) : 0.0f;
    const u32 qh = static_cast<u32>(q[pos]) | (static_cast<u32>(q[pos + 1]) << 8) | (static_cast<u32>(q[pos + 2]) << 16) |
                   (static_cast<u32>(q[pos + 3]) << 24);
    for (int j = 0; j < 16; ++j) {
        const int x0 = (q[pos + 4 + j] & 0xF) | static_cast<int>(((qh >> j) << 4) & 0x10u);
        const int x1 = (q[pos + 4 + j] >> 4) | static_cast<int>((qh >> (j + 12)) & 0x10u);
        if (has_min) {
            y[j] = static_cast<float>(x0) * d + m;
            y[j + 16] = static_cast<float>(x1) * d + m;
        } else {
            y[j] = static_cast<float>(x0 - 16) * d;
            y[j + 16] = static_cast<float>(x1 - 16) * d;
        }
    }
}

// Q8_0 (pos 2) and Q8_1 (pos 4: d, s).
__device__ __forceinline__ void dq_q8(const u8* q, float* y, int pos) {
    const float d = load_fp16(q);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<i8>(q[pos + j])) * d;
}

__device__ __forceinline__ float trit(u32 byte, u32 pow3) { return static_cast<float>(static_cast<int>((((byte * pow3) & 0xFFu) * 3u) >> 8) - 1); }

__device__ __forceinline__ void dq_tq1_0(const u8* q, float* y) {
    const float d = load_fp16(q + 52);
    const u32 pow3[5] = {1, 3, 9, 27, 81};
    for (int n = 0; n < 5; ++n)
        for (int m = 0; m < 32; ++m) y[32 * n + m] = trit(q[m], pow3[n]) * d;
    for (int n = 0; n < 5; ++n)
        for (int m = 0; m < 16; ++m) y[160 + 16 * n + m] = trit(q[32 + m], pow3[n]) * d;
    for (int n = 0; n < 4; ++n)
        for (int m = 0; m < 4; ++m) y[240 + 4 * n + m] = trit(q[48 + m], pow3[n]) * d;
}

__device__ __forceinline__ void dq_tq2_0(const u8* q, float* y) {
    const float d = load_fp16(q + 64);
    for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 4; ++s)
            for (int m = 0; m < 32; ++m)
                y[128 * h + 32 * s + m] = static_cast<float>(((q[32 * h + m] >> (2 * s)) & 3) - 1) * d;
}

__device__ __forceinline__ void dq_q2_k(const u8* q, float* y) {
    const float d = load_fp16(q + 80), dmin = load_fp16(q + 82);
    for (int j = 0; j < 16; ++j) {
        const float dl = d * static_cast<float>(q[j] & 0xF), ml = dmin * static_cast<float>(q[j] >> 4);
        const int shift = 2 * ((j % 8) / 2), base = 16 + 32 * (j / 8) + 16 * (j % 2);
        for (int l = 0; l < 16; ++l) y[16 * j + l] = dl * static_cast<float>((q[base + l] >> shift) & 3) - ml;
    }
}

__device__ __forceinline__ void dq_q3_k(const u8* q, float* y) {
    const float dall = load_fp16(q + 108);
    for (int j = 0; j < 16; ++j) {
        int sc = j < 8 ? (q[96 + j] & 0xF) : (q[96 + j - 8] >> 4);
        sc = (sc | (((q[104 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        const float dl = dall * static_cast<float>(sc);
        for (int l = 0; l < 16; ++l) {
            const int e = 16 * j + l;
            const int low = (q[32 + 32 * (e / 128) + (e % 32)] >> (2 * ((e % 128) / 32))) & 3;
            const int hb = (q[e % 32] >> (e / 32)) & 1;
            y[e] = dl * static_cast<float>(low - (hb ? 0 : 4));
        }
    }
}

// Q4_K (has_high 0) and Q5_K (has_high 1: the fifth bits in qh[32]).
__device__ __forceinline__ void dq_q45_k(const u8* q, float* y, int has_high) {
    const float d = load_fp16(q), dmin = load_fp16(q + 2);
    const u8* qs = q + (has_high ? 48 : 16);
    for (int c = 0; c < 4; ++c) {
        int sc, m;
        scale_min_k4(2 * c, q + 4, &sc, &m);
        const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
        scale_min_k4(2 * c + 1, q + 4, &sc, &m);
        const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
            const int v = qs[32 * c + l];
            int lo = v & 0xF, hi = v >> 4;
            if (has_high) {
                const int h = q[16 + l];
                lo += ((h >> (2 * c)) & 1) ? 16 : 0;
                hi += ((h >> (2 * c + 1)) & 1) ? 16 : 0;
            }
            y[64 * c + l] = d1 * static_cast<float>(lo) - m1;
            y[64 * c + 32 + l] = d2 * static_cast<float>(hi) - m2;
        }
    }
}

__device__ __forceinline__ void dq_q6_k(const u8* q, float* y) {
    const float d = load_fp16(q + 208);
    for (int c = 0; c < 2; ++c) {
        for (int l = 0; l < 32; ++l) {
            const int is = 192 + 8 * c + l / 16;
            const int a = q[64 * c + l], b = q[64 * c + l + 32], h = q[128 + 32 * c + l];
            const int q1 = ((a & 0xF) | ((h & 3) << 4)) - 32, q2 = ((b & 0xF) | (((h >> 2) & 3) << 4)) - 32;
            const int q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32, q4 = ((b >> 4) | (((h >> 6) & 3) << 4)) - 32;
            float* yy = y + 128 * c + l;
            yy[0] = d * static_cast<float>(static_cast<i8>(q[is])) * static_cast<float>(q1);
            yy[32] = d * static_cast<float>(static_cast<i8>(q[is + 2])) * static_cast<float>(q2);
            yy[64] = d * static_cast<float>(static_cast<i8>(q[is + 4])) * static_cast<float>(q3);
            yy[96] = d * static_cast<float>(static_cast<i8>(q[is + 6])) * static_cast<float>(q4);
        }
    }
}

__device__ __forceinline__ void dq_q8_k(const u8* q, float* y) {
    const float d = __uint_as_float(static_cast<u32>(q[0]) | (static_cast<u32>(q[1]) << 8) |
                                    (static_cast<u32>(q[2]) << 16) | (static_cast<u32>(q[3]) << 24));
    for (int j = 0; j < 256; ++j) y[j] = d * static_cast<float>(static_cast<i8>(q[4 + j]));
}

__device__ __forceinline__ void dq_iq4_nl(const u8* q, float* y) {
    const float d = load_fp16(q);
    for (int j = 0; j < 16; ++j) {
        y[j] = d * kvalue_iq4nl(q[2 + j] & 0xF);
        y[j + 16] = d * kvalue_iq4nl(q[2 + j] >> 4);
    }
}

__device__ __forceinline__ void dq_iq4_xs(const u8* q, float* y) {
    const float d = load_fp16(q);
    const u32 sh = load_u16(q + 2);
    for (int ib = 0; ib < 8; ++ib) {
        const int ls = ((q[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | static_cast<int>(((sh >> (2 * ib)) & 3u) << 4);
        const float dl = d * static_cast<float>(ls - 32);
        for (int j = 0; j < 16; ++j) {
            const int v = q[8 + 16 * ib + j];
            y[32 * ib + j] = dl * kvalue_iq4nl(v & 0xF);
            y[32 * ib + 16 + j] = dl * kvalue_iq4nl(v >> 4);
        }
    }
}

__device__ __forceinline__ void dq_mxfp4(const u8* q, float* y) {
    const float d = e8m0_to_f32_half(q[0]);
    for (int j = 0; j < 16; ++j) {
        y[j] = kvalue_mxfp4(q[1 + j] & 0xF) * d;
        y[j + 16] = kvalue_mxfp4(q[1 + j] >> 4) * d;
    }
}

// ggml's NVFP4 (dequantize_row_nvfp4): four sub-blocks of 16, each kv[q] * ue4m3_half(d[s]),
// byte 8s + j holding code j (low nibble) and j + 8 (high nibble).
__device__ __forceinline__ void dq_nvfp4(const u8* q, float* y) {
    for (int s = 0; s < 4; ++s) {
        const float d = ue4m3_to_f32_half(q[s]);
        for (int j = 0; j < 8; ++j) {
            const int v = q[4 + 8 * s + j];
            y[16 * s + j] = kvalue_mxfp4(v & 0xF) * d;
            y[16 * s + 8 + j] = kvalue_mxfp4(v >> 4) * d;
        }
    }
}

// Block type ids (template arguments of gguf_matmul.cu).
enum GgufKind {
    K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0, K_Q8_1, K_Q2_K, K_Q3_K, K_Q4_K, K_Q5_K, K_Q6_K, K_Q8_K,
    K_TQ1_0, K_TQ2_0, K_IQ4_NL, K_IQ4_XS, K_MXFP4, K_NVFP4, K_F16, K_BF16
};

// Any block type by id (the fused kernels take the type as a parameter).
__device__ __forceinline__ void dq_block(int kind, const u8* q, float* y) {
    switch (kind) {
        case K_Q4_0: dq_q4_0(q, y); break;
        case K_Q4_1: dq_q4_1(q, y); break;
        case K_Q5_0: dq_q5(q, y, 0); break;
        case K_Q5_1: dq_q5(q, y, 1); break;
        case K_Q8_0: dq_q8(q, y, 2); break;
        case K_Q8_1: dq_q8(q, y, 4); break;
        case K_Q2_K: dq_q2_k(q, y); break;
        case K_Q3_K: dq_q3_k(q, y); break;
        case K_Q4_K: dq_q45_k(q, y, 0); break;
        case K_Q5_K: dq_q45_k(q, y, 1); break;
        case K_Q6_K: dq_q6_k(q, y); break;
        case K_Q8_K: dq_q8_k(q, y); break;
        case K_TQ1_0: dq_tq1_0(q, y); break;
        case K_TQ2_0: dq_tq2_0(q, y); break;
        case K_IQ4_NL: dq_iq4_nl(q, y); break;
        case K_IQ4_XS: dq_iq4_xs(q, y); break;
        case K_MXFP4: dq_mxfp4(q, y); break;
        case K_NVFP4: dq_nvfp4(q, y); break;
        case K_F16: y[0] = fp16_to_f32(load_u16(q)); break;       // one element per "block"
        default: y[0] = __uint_as_float(load_u16(q) << 16); break;  // K_BF16
    }
}
