// gguf_matmul.cu: fused W4A16 dequant-matmul for GGUF weights, out = x @ W^T with W's
// rows stored as ggml blocks (refquant.formats.gguf_matmul.dequant_matmul): each ggml
// block is decoded (ggml's exact values, gguf_blocks.cuh) into registers / local memory
// and multiplied at once; the weight is never materialized. One CUDA block per output
// row (grid-stride), one ggml block per thread at a time, float32 partial sums reduced
// across the CUDA block: an Nmse contract, not Exact. (Entry points are written out one
// per type: the simulator's build finds kernels by their `extern "C" __global__` line.)
#include "gguf_blocks.cuh"
#include "gguf_iqgrid.cuh"
#include "reduce.cuh"

// Block decoders: the type id a template argument, so the decode is inlined.
template <int KIND> struct Dq {
    __device__ __forceinline__ void operator()(const u8* q, float* y) const { dq_block(KIND, q, y); }
};
template <int KIND> struct DqGrid {   // the IQ grid types, with their device tables
    const u8* grid;
    const u8* ksigns;
    __device__ __forceinline__ void operator()(const u8* q, float* y) const { dq_grid_block(KIND, q, y, grid, ksigns); }
};

// One instance per block type (BS elements, TS bytes per block: compile-time, so a
// 32-element block's values can stay in registers).
template <int BS, int TS, typename Decode>
__device__ void matmul_rows(const float* __restrict__ x, i64 tokens, const u8* __restrict__ w, i64 out_f, i64 in_f,
                            float* __restrict__ out, const Decode dq_block_of) {
    const i64 nb = in_f / BS, row_bytes = nb * TS;
    float y[BS];
    for (i64 o = blockIdx.x; o < out_f; o += gridDim.x) {
        for (i64 t = 0; t < tokens; ++t) {
            float acc = 0.0f;
            for (i64 b = threadIdx.x; b < nb; b += blockDim.x) {
                dq_block_of(w + o * row_bytes + b * TS, y);
                const float* xb = x + t * in_f + b * BS;
#pragma unroll 32
                for (int j = 0; j < BS; ++j) acc += xb[j] * y[j];
            }
            acc = block_sum_f32(acc);
            if (threadIdx.x == 0) out[t * out_f + o] = acc;
        }
    }
}

#define GGUF_MATMUL_ARGS const float *x, i64 tokens, const u8 *w, i64 out_f, i64 in_f, float *out
extern "C" __global__ void gguf_matmul_q4_0(GGUF_MATMUL_ARGS) { matmul_rows<32, 18>(x, tokens, w, out_f, in_f, out, Dq<K_Q4_0>()); }
extern "C" __global__ void gguf_matmul_q4_1(GGUF_MATMUL_ARGS) { matmul_rows<32, 20>(x, tokens, w, out_f, in_f, out, Dq<K_Q4_1>()); }
extern "C" __global__ void gguf_matmul_q5_0(GGUF_MATMUL_ARGS) { matmul_rows<32, 22>(x, tokens, w, out_f, in_f, out, Dq<K_Q5_0>()); }
extern "C" __global__ void gguf_matmul_q5_1(GGUF_MATMUL_ARGS) { matmul_rows<32, 24>(x, tokens, w, out_f, in_f, out, Dq<K_Q5_1>()); }
extern "C" __global__ void gguf_matmul_q8_0(GGUF_MATMUL_ARGS) { matmul_rows<32, 34>(x, tokens, w, out_f, in_f, out, Dq<K_Q8_0>()); }
extern "C" __global__ void gguf_matmul_q8_1(GGUF_MATMUL_ARGS) { matmul_rows<32, 36>(x, tokens, w, out_f, in_f, out, Dq<K_Q8_1>()); }
extern "C" __global__ void gguf_matmul_q2_k(GGUF_MATMUL_ARGS) { matmul_rows<256, 84>(x, tokens, w, out_f, in_f, out, Dq<K_Q2_K>()); }
extern "C" __global__ void gguf_matmul_q3_k(GGUF_MATMUL_ARGS) { matmul_rows<256, 110>(x, tokens, w, out_f, in_f, out, Dq<K_Q3_K>()); }
extern "C" __global__ void gguf_matmul_q4_k(GGUF_MATMUL_ARGS) { matmul_rows<256, 144>(x, tokens, w, out_f, in_f, out, Dq<K_Q4_K>()); }
extern "C" __global__ void gguf_matmul_q5_k(GGUF_MATMUL_ARGS) { matmul_rows<256, 176>(x, tokens, w, out_f, in_f, out, Dq<K_Q5_K>()); }
extern "C" __global__ void gguf_matmul_q6_k(GGUF_MATMUL_ARGS) { matmul_rows<256, 210>(x, tokens, w, out_f, in_f, out, Dq<K_Q6_K>()); }
extern "C" __global__ void gguf_matmul_q8_k(GGUF_MATMUL_ARGS) { matmul_rows<256, 292>(x, tokens, w, out_f, in_f, out, Dq<K_Q8_K>()); }
extern "C" __global__ void gguf_matmul_tq1_0(GGUF_MATMUL_ARGS) { matmul_rows<256, 54>(x, tokens, w, out_f, in_f, out, Dq<K_TQ1_0>()); }
extern "C" __global__ void gguf_matmul_tq2_0(GGUF_MATMUL_ARGS) { matmul_rows<256, 66>(x, tokens, w, out_f, in_f, out, Dq<K_TQ2_0>()); }
extern "C" __global__ void gguf_matmul_iq4_nl(GGUF_MATMUL_ARGS) { matmul_rows<32, 18>(x, tokens, w, out_f, in_f, out, Dq<K_IQ4_NL>()); }
extern "C" __global__ void gguf_matmul_iq4_xs(GGUF_MATMUL_ARGS) { matmul_rows<256, 136>(x, tokens, w, out_f, in_f, out, Dq<K_IQ4_XS>()); }
extern "C" __global__ void gguf_matmul_mxfp4(GGUF_MATMUL_ARGS) { matmul_rows<32, 17>(x, tokens, w, out_f, in_f, out, Dq<K_MXFP4>()); }
extern "C" __global__ void gguf_matmul_nvfp4(GGUF_MATMUL_ARGS) { matmul_rows<64, 36>(x, tokens, w, out_f, in_f, out, Dq<K_NVFP4>()); }
extern "C" __global__ void gguf_matmul_f16(GGUF_MATMUL_ARGS) { matmul_rows<1, 2>(x, tokens, w, out_f, in_f, out, Dq<K_F16>()); }
extern "C" __global__ void gguf_matmul_bf16(GGUF_MATMUL_ARGS) { matmul_rows<1, 2>(x, tokens, w, out_f, in_f, out, Dq<K_BF16>()); }

// The IQ grid types: the launch code passes the type's grid and ksigns_iq2xs.
#define GGUF_MATMUL_GRID_ARGS const float *x, i64 tokens, const u8 *w, i64 out_f, i64 in_f, const u8 *grid, \
    const u8 *ksigns, float *out
extern "C" __global__ void gguf_matmul_iq2_xxs(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 66>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ2_XXS>{grid, ksigns});
}
extern "C" __global__ void gguf_matmul_iq2_xs(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 74>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ2_XS>{grid, ksigns});
}
extern "C" __global__ void gguf_matmul_iq2_s(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 82>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ2_S>{grid, ksigns});
}
extern "C" __global__ void gguf_matmul_iq3_xxs(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 98>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ3_XXS>{grid, ksigns});
}
extern "C" __global__ void gguf_matmul_iq3_s(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 110>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ3_S>{grid, ksigns});
}
extern "C" __global__ void gguf_matmul_iq1_s(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 50>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ1_S>{grid, ksigns});
}
extern "C" __global__ void gguf_matmul_iq1_m(GGUF_MATMUL_GRID_ARGS) {
    matmul_rows<256, 56>(x, tokens, w, out_f, in_f, out, DqGrid<G_IQ1_M>{grid, ksigns});
}
