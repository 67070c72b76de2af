// gguf_common.cuh: ggml's scalar helpers for the GGUF kernels (ggml-quants.c, ggml-impl.h
// @ d99724f2): fp16 / bf16 / e8m0 widening (integer bit manipulation: exact, NaN
// payloads kept), K-quant 6-bit scale/min unpacking; the non-linear 4-bit tables come
// from gguf_kvalues.cuh (generated from the reference's tables).
#pragma once
#include "common.cuh"
#include "gguf_kvalues.cuh"

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

// GGML_FP32_TO_FP16 (ggml-impl.h's portable path): round to nearest even, overflow to
// inf, subnormals kept, NaN -> 0x7e00 with the sign. Integer arithmetic only.
__device__ __forceinline__ u32 f32_to_fp16_bits(float f) {
    const u32 u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;
    if (a >= 0x477ff000u) return sign | 0x7c00u;           // >= 65520 rounds to inf (inf stays)
    u32 q, rem, half;
    if (a >= 0x38800000u) {                                 // normal: rebias, drop 13 bits
        const u32 v = a - 0x38000000u;
        q = v >> 13;
        rem = v & 0x1fffu;
        half = 0x1000u;
    } else {                                                // subnormal: shift the significand
        const int e = static_cast<int>(a >> 23);
        const int shift = min(max(126 - e, 14), 31);
        const u32 sig = (a & 0x7fffffu) | 0x800000u;
        q = sig >> shift;
        rem = sig - (q << shift);
        half = 1u << (shift - 1);
    }
    return sign | (q + ((rem > half) || (rem == half && (q & 1u))));
}

__device__ __forceinline__ void store_fp16(u8* p, float f) {
    const u32 h = f32_to_fp16_bits(f);
    p[0] = static_cast<u8>(h & 0xffu);
    p[1] = static_cast<u8>(h >> 8);
}

// C roundf (half away from zero), exact.
__device__ __forceinline__ float round_away(float v) { return roundf(v); }

// ggml nearest_int: round half to even through the float32 add of 1.5 * 2**23.
__device__ __forceinline__ int nearest_int(float f) {
    const float val = f + 12582912.0f;
    return static_cast<int>(__float_as_uint(val) & 0x007fffffu) - 0x00400000;
}

// (int8_t)v as x86-64 compiles it: truncate to int32, keep the low byte.
__device__ __forceinline__ int trunc_i8(float v) { return static_cast<int>(static_cast<i8>(static_cast<int>(v) & 0xff)); }

// The first element of largest magnitude (if (fabsf(v) > amax) { amax = fabsf(v); max = v; }
// from 0), its magnitude in *amax: ggml's signed absmax.
__device__ __forceinline__ float signed_absmax(const float* x, int n, float* amax) {
    float mx = 0.0f, a = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > a) {
            a = ax;
            mx = x[i];
        }
    }
    *amax = a;
    return mx;
}

// Flags NaN / inf among x[0..n) (types that cannot encode them).
__device__ __forceinline__ void flag_nonfinite(const float* x, int n, int* bad) {
    for (int j = 0; j < n; ++j)
        if (!(fabsf(x[j]) <= 3.402823466e38f)) flag_bad(bad);
}

// ggml_ue4m3_to_fp32 halved (ggml-impl.h @ d99724f2): bit 7 ignored, 0x7F is 0 (not NaN);
// exponent field e, mantissa m: m * 2**-10 for e = 0, else (8 + m) * 2**(e - 11) (exact).
__device__ __forceinline__ float ue4m3_to_f32_half(u32 c) {
    const u32 e = (c >> 3) & 0xFu, m = c & 7u;
    if (c == 0x7Fu) return 0.0f;
    return e == 0 ? static_cast<float>(m) * 0.0009765625f
                  : static_cast<float>(8u + m) * __uint_as_float((e + 116u) << 23);
}
