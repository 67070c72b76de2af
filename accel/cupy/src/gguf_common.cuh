// gguf_common.cuh: ggml's scalar helpers for the GGUF kernels (ggml-quants.c, ggml-impl.h
// @ d99724f2): fp16 / bf16 / e8m0 widening (integer bit manipulation: exact, NaN
// payloads kept), K-quant 6-bit scale/min unpacking, and the non-linear 4-bit tables.
#pragma once
#include "common.cuh"

__device__ __forceinline__ u32 load_u16(const u8* p) { return static_cast<u32>(p[0]) | (static_cast<u32>(p[1]) << 8); }

// GGML_FP16_TO_FP32: a normal number rebiases its exponent, a subnormal is m * 2**-24.
__device__ __forceinline__ float fp16_to_f32(u32 h) {
    const u32 sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) return __uint_as_float(__float_as_uint(static_cast<float>(m) * 5.9604644775390625e-8f) | sign);
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}

__device__ __forceinline__ float load_fp16(const u8* p) { return fp16_to_f32(load_u16(p)); }

// ggml_e8m0_to_fp32_half: 2**(e - 128) (e = 0, 1: float32 subnormals).
__device__ __forceinline__ float e8m0_to_f32_half(u32 e) {
    return __uint_as_float(e < 2 ? (0x00200000u << e) : ((e - 1u) << 23));
}

// get_scale_min_k4: the 6-bit scale and min of sub-block j from 12 packed bytes.
__device__ __forceinline__ void scale_min_k4(int j, const u8* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

__device__ __forceinline__ float kvalue_iq4nl(int i) {
    const signed char kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    return static_cast<float>(kv[i]);
}

__device__ __forceinline__ float kvalue_mxfp4(int i) {
    const signed char kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    return static_cast<float>(kv[i]);
}
