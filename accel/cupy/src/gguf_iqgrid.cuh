// gguf_iqgrid.cuh: ggml's dequantize_row_iq2_xxs ... dequantize_row_iq1_m for one
// super-block of 256 (ggml-quants.c @ d99724f2; refquant.formats.gguf_iqgrid). The
// lattice grids and ksigns_iq2xs are ggml's tables, passed by the launch code as device
// arrays from the reference's own copy (refquant.formats._iq_grids), never retyped here.
// Every value is (db * grid[j]) with the sign applied exactly, the C code's float32
// operations in its order (no FMA contraction): bit-exact. Shared by gguf_iqgrid.cu
// (dequantize) and gguf_matmul.cu (fused dequant-matmul).
#pragma once
#include "gguf_common.cuh"

__device__ __forceinline__ u32 load_u32(const u8* p) {
    return static_cast<u32>(p[0]) | (static_cast<u32>(p[1]) << 8) | (static_cast<u32>(p[2]) << 16) |
           (static_cast<u32>(p[3]) << 24);
}

// d * (0.5f + s) * factor, left to right (the IQ2 / IQ3_XXS sub-block scales).
__device__ __forceinline__ float half_scale(float d, u32 s, float factor) {
    return d * (0.5f + static_cast<float>(s)) * factor;
}

// 8 values (db * g[j]) negated where bit j of signs is set (ggml multiplies by -1 or 1).
__device__ __forceinline__ void put8(float* y, float db, const u8* g, u32 signs) {
    for (int j = 0; j < 8; ++j) {
        const float v = db * static_cast<float>(g[j]);
        y[j] = (signs >> j) & 1u ? -v : v;
    }
}

// IQ3's groups: two 4-entry grid rows.
__device__ __forceinline__ void put4x2(float* y, float db, const u8* g0, const u8* g1, u32 signs) {
    for (int j = 0; j < 4; ++j) {
        const float v0 = db * static_cast<float>(g0[j]), v1 = db * static_cast<float>(g1[j]);
        y[j] = (signs >> j) & 1u ? -v0 : v0;
        y[4 + j] = (signs >> (4 + j)) & 1u ? -v1 : v1;
    }
}

// IQ1's values: dl * (grid[j] + delta), the grid signed.
__device__ __forceinline__ void put_iq1(float* y, float dl, const i8* g, float delta) {
    for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(g[j]) + delta);
}

// IQ2_XXS (66 bytes): d, then per 32-element sub-block two uint32: four grid indices, and
// 4 x 7 sign bits + a 4-bit scale.
__device__ __forceinline__ void dq_iq2_xxs(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid,
    const u8* __restrict__ ksigns) {
    const float d = load_fp16(q);
    for (int ib = 0; ib < 8; ++ib) {
        const u8* s = q + 2 + 8 * ib;
        const u32 a1 = load_u32(s + 4);
        const float db = half_scale(d, a1 >> 28, 0.25f);
        for (int l = 0; l < 4; ++l) put8(y + 32 * ib + 8 * l, db, grid + 8 * s[l], ksigns[(a1 >> (7 * l)) & 127u]);
    }
}

// IQ2_XS (74 bytes): d, qs:u16[32] (9-bit index, 7-bit sign index), scales[8] (two nibbles).
__device__ __forceinline__ void dq_iq2_xs(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid,
    const u8* __restrict__ ksigns) {
    const float d = load_fp16(q);
    for (int ib = 0; ib < 8; ++ib) {
        const u32 sc = q[66 + ib];
        const float db0 = half_scale(d, sc & 0xFu, 0.25f), db1 = half_scale(d, sc >> 4, 0.25f);
        for (int l = 0; l < 4; ++l) {
            const u32 v = load_u16(q + 2 + 2 * (4 * ib + l));
            put8(y + 32 * ib + 8 * l, l < 2 ? db0 : db1, grid + 8 * (v & 511u), ksigns[v >> 9]);
        }
    }
}

// IQ2_S (82 bytes): d, qs[64] (32 low index bytes, 32 sign bytes), qh[8] (2 index bits a
// group), scales[8].
__device__ __forceinline__ void dq_iq2_s(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid,
    const u8* __restrict__ ksigns) {
    (void)ksigns;   // the sign bytes are stored whole
    const float d = load_fp16(q);
    for (int ib = 0; ib < 8; ++ib) {
        const u32 sc = q[74 + ib], qh = q[66 + ib];
        const float db0 = half_scale(d, sc & 0xFu, 0.25f), db1 = half_scale(d, sc >> 4, 0.25f);
        for (int l = 0; l < 4; ++l) {
            const u32 idx = q[2 + 4 * ib + l] | ((qh << (8 - 2 * l)) & 0x300u);
            put8(y + 32 * ib + 8 * l, l < 2 ? db0 : db1, grid + 8 * idx, q[2 + 32 + 4 * ib + l]);
        }
    }
}

// IQ3_XXS (98 bytes): d, qs[64] grid indices (two per group of 8), then per sub-block a
// uint32 of 4 x 7 sign bits + a 4-bit scale.
__device__ __forceinline__ void dq_iq3_xxs(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid,
    const u8* __restrict__ ksigns) {
    const float d = load_fp16(q);
    for (int ib = 0; ib < 8; ++ib) {
        const u32 a = load_u32(q + 2 + 64 + 4 * ib);
        const float db = half_scale(d, a >> 28, 0.5f);
        for (int l = 0; l < 4; ++l) {
            const u8* g = q + 2 + 8 * ib + 2 * l;
            put4x2(y + 32 * ib + 8 * l, db, grid + 4 * g[0], grid + 4 * g[1], ksigns[(a >> (7 * l)) & 127u]);
        }
    }
}

// IQ3_S (110 bytes): d, qs[64], qh[8] (9th index bits), signs[32], scales[4] (nibbles).
__device__ __forceinline__ void dq_iq3_s(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid,
    const u8* __restrict__ ksigns) {
    (void)ksigns;   // the sign bytes are stored whole
    const float d = load_fp16(q);
    for (int ib = 0; ib < 8; ++ib) {
        const u32 qh = q[66 + ib], sc = q[106 + ib / 2];
        const float db = d * static_cast<float>(1 + 2 * static_cast<int>(ib % 2 ? sc >> 4 : sc & 0xFu));
        for (int l = 0; l < 4; ++l) {
            const u32 i0 = q[2 + 8 * ib + 2 * l] | ((qh << (8 - 2 * l)) & 256u);
            const u32 i1 = q[2 + 8 * ib + 2 * l + 1] | ((qh << (7 - 2 * l)) & 256u);
            put4x2(y + 32 * ib + 8 * l, db, grid + 4 * i0, grid + 4 * i1, q[74 + 4 * ib + l]);
        }
    }
}

// IQ1_S (50 bytes): d, qs[32] (low 8 index bits), qh:u16[8] (3 index bits a group, a 3-bit
// scale, the delta's sign).
__device__ __forceinline__ void dq_iq1_s(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid_bytes,
    const u8* __restrict__ ksigns) {
    const i8* grid = reinterpret_cast<const i8*>(grid_bytes);
    (void)ksigns;   // IQ1 has no sign table
    const float d = load_fp16(q);
    for (int ib = 0; ib < 8; ++ib) {
        const u32 h = load_u16(q + 34 + 2 * ib);
        const float dl = d * static_cast<float>(2 * static_cast<int>((h >> 12) & 7u) + 1);
        const float delta = h & 0x8000u ? -0.125f : 0.125f;
        for (int l = 0; l < 4; ++l) {
            const u32 idx = q[2 + 4 * ib + l] | (((h >> (3 * l)) & 7u) << 8);
            put_iq1(y + 32 * ib + 8 * l, dl, grid + 8 * idx, delta);
        }
    }
}

// IQ1_M (56 bytes): qs[32], qh[16] (3 index bits + the delta's sign per group), scales[8]
// (four uint16: 3-bit scales per 16, the fp16 d in their top nibbles).
__device__ __forceinline__ void dq_iq1_m(const u8* __restrict__ q, float* __restrict__ y, const u8* __restrict__ grid_bytes,
    const u8* __restrict__ ksigns) {
    const i8* grid = reinterpret_cast<const i8*>(grid_bytes);
    (void)ksigns;   // IQ1 has no sign table
    u32 sc[4];
    for (int k = 0; k < 4; ++k) sc[k] = load_u16(q + 48 + 2 * k);
    const u32 bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0xF0u) | ((sc[2] >> 4) & 0xF00u) | (sc[3] & 0xF000u);
    const float d = fp16_to_f32(bits);
    for (int ib = 0; ib < 8; ++ib) {
        const u32 word = sc[ib / 2], base = 6 * (ib % 2);
        for (int l = 0; l < 4; ++l) {
            const u32 qh = q[32 + 2 * ib + l / 2];
            const u32 idx = q[4 * ib + l] | ((qh << (l % 2 ? 4 : 8)) & 0x700u);
            const float delta = qh & (l % 2 ? 0x80u : 0x08u) ? -0.125f : 0.125f;
            const u32 s = (word >> (base + (l < 2 ? 0 : 3))) & 7u;
            const float dl = d * static_cast<float>(2 * static_cast<int>(s) + 1);
            put_iq1(y + 32 * ib + 8 * l, dl, grid + 8 * idx, delta);
        }
    }
}

// Grid type ids (template arguments of gguf_matmul.cu).
enum GridKind { G_IQ2_XXS, G_IQ2_XS, G_IQ2_S, G_IQ3_XXS, G_IQ3_S, G_IQ1_S, G_IQ1_M };

// Any grid type by id (grid: the type's lattice as bytes; ksigns: ksigns_iq2xs).
__device__ __forceinline__ void dq_grid_block(int kind, const u8* q, float* y, const u8* grid, const u8* ksigns) {
    switch (kind) {
        case G_IQ2_XXS: dq_iq2_xxs(q, y, grid, ksigns); break;
        case G_IQ2_XS: dq_iq2_xs(q, y, grid, ksigns); break;
        case G_IQ2_S: dq_iq2_s(q, y, grid, ksigns); break;
        case G_IQ3_XXS: dq_iq3_xxs(q, y, grid, ksigns); break;
        case G_IQ3_S: dq_iq3_s(q, y, grid, ksigns); break;
        case G_IQ1_S: dq_iq1_s(q, y, grid, ksigns); break;
        case G_IQ1_M: dq_iq1_m(q, y, grid, ksigns); break;
    }
}
