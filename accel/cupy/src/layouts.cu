// layouts.cu: fused dequantization of checkpoint layouts (refquant.layouts): GPTQ v1/v2
// and AutoAWQ GEMM. W[o, c] = float32(scale) * (float32(q) - float32(zero)), the
// reference's float32 operations (exact). Codes are read straight from the int32 words.
// Packing and unpacking are compositions of packing.cu's kernels (accel/cupy/layouts.py).
#include "common.cuh"

// b bits at stream position `bit` of a stream of 32-bit words w[0], w[stride], ...
// (low bit first; a code may straddle two words, as GPTQ's 3-bit layout).
__device__ __forceinline__ u32 stream_code(const u32* w, i64 stride, i64 n_words, i64 bit, int bits) {
    const i64 r = bit >> 5;
    u64 v = w[r * stride];
    if (r + 1 < n_words) v |= static_cast<u64>(w[(r + 1) * stride]) << 32;
    return static_cast<u32>((v >> (bit & 31)) & ((1u << bits) - 1u));
}

// qweight (in*b/32, out) words, column o a stream of input codes; qzeros (G, out*b/32),
// row g a stream of output zero points (stored zero - 1 in v1: version 1 adds 1, and a
// stored 2**b - 1 is flagged, the reference then explains); scales float32 (G, out).
extern "C" __global__ void gptq_dequantize(const u32* __restrict__ qweight, const u32* __restrict__ qzeros,
                                           const float* __restrict__ scales, const int* __restrict__ g_idx,
                                           i64 out_f, i64 in_f, i64 w_rows, i64 z_words, int bits, int version,
                                           float* __restrict__ out, int* bad) {
    GRID_STRIDE(t, out_f * in_f) {
        const i64 o = t / in_f, c = t - o * in_f;
        const i64 g = g_idx[c];
        const u32 q = stream_code(qweight + o, out_f, w_rows, c * bits, bits);
        u32 z = stream_code(qzeros + g * z_words, 1, z_words, o * bits, bits);
        if (version == 1) {
            if (z == (1u << bits) - 1u) flag_bad(bad);
            z += 1;
        }
        out[t] = scales[g * out_f + o] * (static_cast<float>(q) - static_cast<float>(z));
    }
}

// AutoAWQ GEMM: qweight (in, out/8), qzeros (G, out/8); nibble i of a word is output
// 8j + AWQ_ORDER[i], AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7); scales float32 (G, out).
extern "C" __global__ void awq_dequantize(const u32* __restrict__ qweight, const u32* __restrict__ qzeros,
                                          const float* __restrict__ scales, i64 out_f, i64 in_f, i64 group_size,
                                          float* __restrict__ out) {
    const i64 words = out_f / 8;
    GRID_STRIDE(t, out_f * in_f) {
        const i64 o = t / in_f, c = t - o * in_f, g = c / group_size;
        const int k = static_cast<int>(o & 7);
        const int shift = 4 * ((k & 1) ? 4 + k / 2 : k / 2);
        const u32 q = (qweight[c * words + o / 8] >> shift) & 0xFu;
        const u32 z = (qzeros[g * words + o / 8] >> shift) & 0xFu;
        out[t] = scales[g * out_f + o] * (static_cast<float>(q) - static_cast<float>(z));
    }
}
