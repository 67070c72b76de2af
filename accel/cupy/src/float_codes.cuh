// float_codes.cuh: one float32 value <-> one code of a narrow float format
// (refquant.dtypes.floatspec.encode_float / decode_float), integer arithmetic only, so the
// codes are exact. A format is described by its FloatSpec fields, passed by the launch code.
// Shared by floats.cu (encode_float / decode_float) and microscaling.cu (MX, NVFP4).
#pragma once
#include "common.cuh"

// The FloatSpec fields the two rules read.
struct FloatFormat {
    int m, bias, bits, exp_bits, min_exp;
    int max_code;      // largest finite magnitude code
    int over_code;     // magnitude code written on overflow (max_code when saturating)
    int payload_nan;   // encode: NaN keeps its payload (IEEE formats)
    int nan_code;      // encode: NaN code otherwise
    int nan_kind;      // decode: 0 ieee (inf + NaNs), 1 fn (all-ones is NaN), 2 none
    int decode_payload;
};

// v >> shift rounded to nearest, ties to even (1 <= shift <= 25).
__device__ __forceinline__ int rne_shift(int v, int shift) {
    int q = v >> shift;
    int rem = v - (q << shift);
    int half = 1 << (shift - 1);
    return q + ((rem > half) | ((rem == half) & (q & 1)));
}

// The code of the float32 bit pattern x: round to nearest, ties to even, once.
__device__ __forceinline__ u32 encode_bits(u32 x, const FloatFormat& f) {
    const int rebias = (127 - f.bias) << 23;
    const u32 min_normal_bits = static_cast<u32>(f.min_exp + 127) << 23;
    const u32 nan_exp = ((1u << f.exp_bits) - 1u) << f.m;
    u32 sign = (x >> 31) << (f.bits - 1);
    u32 a = x & 0x7fffffffu;
    if (a > 0x7f800000u) {
        if (f.payload_nan) {
            u32 p = (a & 0x7fffffu) >> (23 - f.m);
            return nan_exp | (p != 0 ? p : 1u) | sign;
        }
        return static_cast<u32>(f.nan_code) ^ sign;
    }
    int mag;
    if (a >= min_normal_bits) {
        mag = rne_shift(static_cast<int>(a) - rebias, 23 - f.m);
    } else {   // subnormal in the format: the significand shifted to its fixed ulp
        int e32 = static_cast<int>(a >> 23);
        int sig = static_cast<int>(a & 0x7fffffu) | (e32 > 0 ? 0x800000 : 0);
        int e = e32 > 0 ? e32 - 127 : -126;
        mag = rne_shift(sig, min(23 + f.min_exp - f.m - e, 25));
    }
    if (mag > f.max_code || a == 0x7f800000u) mag = f.over_code;
    return static_cast<u32>(mag) | sign;
}

// The float32 bit pattern of code v (exact); v must fit in f.bits.
__device__ __forceinline__ u32 decode_bits(u32 v, const FloatFormat& f) {
    const u32 ones = (1u << f.exp_bits) - 1u, mant_mask = (1u << f.m) - 1u;
    const int sub_exp = f.min_exp - f.m + 127;
    u32 sign = (v >> (f.bits - 1)) << 31;
    u32 expf = (v >> f.m) & ones, mant = v & mant_mask;
    u32 mag;
    if (expf == 0) {
        if (mant == 0) {
            mag = 0;
        } else {   // subnormal: mant * 2**(min_exp - m), from the position p of its leading one
            int p = 31 - __clz(static_cast<int>(mant));
            int e = p + sub_exp;
            mag = e >= 1 ? (static_cast<u32>(e) << 23) | ((mant - (1u << p)) << (23 - p)) : mant << (sub_exp + 22);
        }
    } else {
        mag = (static_cast<u32>(static_cast<int>(expf) - f.bias + 127) << 23) | (mant << (23 - f.m));
    }
    bool all_ones = expf == ones;
    bool is_inf = f.nan_kind == 0 && all_ones && mant == 0;
    bool is_nan = (f.nan_kind == 0 && all_ones && mant != 0) || (f.nan_kind == 1 && all_ones && mant == mant_mask);
    if (is_inf) mag = 0x7f800000u;
    if (is_nan) mag = f.decode_payload ? (0x7f800000u | (mant << (23 - f.m))) : 0x7fc00000u;
    return mag | sign;
}

// A FloatFormat from its 11 fields as an int32 array (the launch code's float_format_table).
__device__ __forceinline__ FloatFormat load_format(const int* p) {
    return FloatFormat{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]};
}

// 2**e as float32 for -149 <= e <= 127 (exact bit pattern, subnormals included).
__device__ __forceinline__ float exp2_exact(int e) {
    return e >= -126 ? __uint_as_float(static_cast<u32>(e + 127) << 23) : __uint_as_float(1u << (e + 149));
}
