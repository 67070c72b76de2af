// gguf_matmul.cu: fused W4A16 dequant-matmul for GGUF weights, out = x @ W^T with W's
// rows stored as ggml blocks (refquant.formats.gguf_matmul.dequant_matmul): each ggml
// block is decoded (ggml's exact values, gguf_blocks.cuh) into registers / local memory
// and multiplied at once; the weight is never materialized. One CUDA block per output
// row (grid-stride), one ggml block per thread at a time, float32 partial sums reduced
// across the CUDA block: an Nmse contract, not Exact. (Entry points are written out one
// per type: the simulator's build finds kernels by their `extern "C" __global__` line.)
#include "gguf_blocks.cuh"
#include "reduce.cuh"

// One template per block type (KIND, BS elements, TS bytes per block: compile-time, so the
// decode is inlined and a 32-element block's values can stay in registers).
template <int KIND, int BS, int TS>
__device__ void matmul_rows(const float* __restrict__ x, i64 tokens, const u8* __restrict__ w, i64 out_f, i64 in_f,
                            float* __restrict__ out) {
    const i64 nb = in_f / BS, row_bytes = nb * TS;
    float y[BS];
    for (i64 o = blockIdx.x; o < out_f; o += gridDim.x) {
        for (i64 t = 0; t < tokens; ++t) {
            float acc = 0.0f;
            for (i64 b = threadIdx.x; b < nb; b += blockDim.x) {
                dq_block(KIND, w + o * row_bytes + b * TS, y);
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
extern "C" __global__ void gguf_matmul_q4_0(GGUF_MATMUL_ARGS) { matmul_rows<K_Q4_0, 32, 18>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q4_1(GGUF_MATMUL_ARGS) { matmul_rows<K_Q4_1, 32, 20>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q5_0(GGUF_MATMUL_ARGS) { matmul_rows<K_Q5_0, 32, 22>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q5_1(GGUF_MATMUL_ARGS) { matmul_rows<K_Q5_1, 32, 24>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q8_0(GGUF_MATMUL_ARGS) { matmul_rows<K_Q8_0, 32, 34>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q8_1(GGUF_MATMUL_ARGS) { matmul_rows<K_Q8_1, 32, 36>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q2_k(GGUF_MATMUL_ARGS) { matmul_rows<K_Q2_K, 256, 84>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q3_k(GGUF_MATMUL_ARGS) { matmul_rows<K_Q3_K, 256, 110>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q4_k(GGUF_MATMUL_ARGS) { matmul_rows<K_Q4_K, 256, 144>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q5_k(GGUF_MATMUL_ARGS) { matmul_rows<K_Q5_K, 256, 176>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q6_k(GGUF_MATMUL_ARGS) { matmul_rows<K_Q6_K, 256, 210>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_q8_k(GGUF_MATMUL_ARGS) { matmul_rows<K_Q8_K, 256, 292>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_tq1_0(GGUF_MATMUL_ARGS) { matmul_rows<K_TQ1_0, 256, 54>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_tq2_0(GGUF_MATMUL_ARGS) { matmul_rows<K_TQ2_0, 256, 66>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_iq4_nl(GGUF_MATMUL_ARGS) { matmul_rows<K_IQ4_NL, 32, 18>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_iq4_xs(GGUF_MATMUL_ARGS) { matmul_rows<K_IQ4_XS, 256, 136>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_mxfp4(GGUF_MATMUL_ARGS) { matmul_rows<K_MXFP4, 32, 17>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_nvfp4(GGUF_MATMUL_ARGS) { matmul_rows<K_NVFP4, 64, 36>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_f16(GGUF_MATMUL_ARGS) { matmul_rows<K_F16, 1, 2>(x, tokens, w, out_f, in_f, out); }
extern "C" __global__ void gguf_matmul_bf16(GGUF_MATMUL_ARGS) { matmul_rows<K_BF16, 1, 2>(x, tokens, w, out_f, in_f, out); }
