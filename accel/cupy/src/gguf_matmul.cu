// gguf_matmul.cu: fused W4A16 dequant-matmul for GGUF weights, out = x @ W^T with W's
// rows stored as ggml blocks (refquant.formats.gguf_matmul.dequant_matmul): each ggml
// block is decoded (ggml's exact values, gguf_blocks.cuh) into registers / local memory
// and multiplied at once; the weight is never materialized. One CUDA block per output
// row (grid-stride), one ggml block per thread at a time, float32 partial sums reduced
// across the CUDA block: an Nmse contract, not Exact.
#include "gguf_blocks.cuh"
#include "reduce.cuh"

#define MAX_BLOCK 256

extern "C" __global__ void gguf_matmul(const float* __restrict__ x, i64 tokens, const u8* __restrict__ w, i64 out_f,
                                       i64 in_f, int kind, int block_size, int type_size, float* __restrict__ out) {
    const i64 nb = in_f / block_size, row_bytes = nb * type_size;
    float y[MAX_BLOCK];
    for (i64 o = blockIdx.x; o < out_f; o += gridDim.x) {
        for (i64 t = 0; t < tokens; ++t) {
            float acc = 0.0f;
            for (i64 b = threadIdx.x; b < nb; b += blockDim.x) {
                dq_block(kind, w + o * row_bytes + b * type_size, y);
                const float* xb = x + t * in_f + b * block_size;
                for (int j = 0; j < block_size; ++j) acc += xb[j] * y[j];
            }
            acc = block_sum_f32(acc);
            if (threadIdx.x == 0) out[t * out_f + o] = acc;
        }
    }
}
