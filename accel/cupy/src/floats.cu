// floats.cu: encode_float / decode_float for every FloatSpec (fp16, bf16, fp8, fp4).
//
// Same rule as refquant.dtypes.floatspec.encode_float: the float32 bit pattern is
// rounded to the format with integer arithmetic (round to nearest, ties to even), so
// no float operation is involved and the codes are exact. The format's constants come
// from its FloatSpec through the launch code (accel/cupy/floats.py).
#include "common.cuh"

// v >> shift rounded to nearest, ties to even (1 <= shift <= 25).
__device__ __forceinline__ int rne_shift(int v, int shift) {
    int q = v >> shift;
    int rem = v - (q << shift);
    int half = 1 << (shift - 1);
    return q + ((rem > half) | ((rem == half) & (q & 1)));
}

template <typename Code>
__device__ void encode(const u32* __restrict__ u, Code* __restrict__ out, i64 n, int m, int bias, int bits,
                       int exp_bits, int min_exp, int max_code, int over_code, int payload_nan, int nan_code) {
    const int rebias = (127 - bias) << 23;
    const u32 min_normal_bits = static_cast<u32>(min_exp + 127) << 23;
    const u32 nan_exp = ((1u << exp_bits) - 1u) << m;
    GRID_STRIDE(i, n) {
        u32 x = u[i];
        u32 sign = (x >> 31) << (bits - 1);
        u32 a = x & 0x7fffffffu;
        u32 code;
        if (a > 0x7f800000u) {
            if (payload_nan) {
                u32 p = (a & 0x7fffffu) >> (23 - m);
                code = nan_exp | (p != 0 ? p : 1u) | sign;
            } else {
                code = static_cast<u32>(nan_code) ^ sign;
            }
        } else {
            int mag;
            if (a >= min_normal_bits) {
                mag = rne_shift(static_cast<int>(a) - rebias, 23 - m);
            } else {   // subnormal in the format: the significand shifted to its fixed ulp
                int e32 = static_cast<int>(a >> 23);
                int sig = static_cast<int>(a & 0x7fffffu) | (e32 > 0 ? 0x800000 : 0);
                int e = e32 > 0 ? e32 - 127 : -126;
                mag = rne_shift(sig, min(23 + min_exp - m - e, 25));
            }
            if (mag > max_code || a == 0x7f800000u) mag = over_code;
            code = static_cast<u32>(mag) | sign;
        }
        out[i] = static_cast<Code>(code);
    }
}

template <typename Code>
__device__ void decode(const Code* __restrict__ c, u32* __restrict__ out, i64 n, int m, int bias, int bits,
                       int exp_bits, int min_exp, int nan_kind, int payload_nan, int* bad) {
    const u32 ones = (1u << exp_bits) - 1u, mant_mask = (1u << m) - 1u;
    const int sub_exp = min_exp - m + 127;
    GRID_STRIDE(i, n) {
        u32 v = c[i];
        if (v >> bits) flag_bad(bad);   // a wider code than the format's (fp4 in uint8)
        u32 sign = (v >> (bits - 1)) << 31;
        u32 expf = (v >> m) & ones, mant = v & mant_mask;
        u32 mag;
        if (expf == 0) {
            if (mant == 0) {
                mag = 0;
            } else {   // subnormal: mant * 2**(min_exp - m), from the position p of its leading one
                int p = 31 - __clz(static_cast<int>(mant));
                int e = p + sub_exp;
                mag = e >= 1 ? (static_cast<u32>(e) << 23) | ((mant - (1u << p)) << (23 - p))
                             : mant << (sub_exp + 22);
            }
        } else {
            mag = (static_cast<u32>(static_cast<int>(expf) - bias + 127) << 23) | (mant << (23 - m));
        }
        bool all_ones = expf == ones;
        bool is_inf = nan_kind == 0 && all_ones && mant == 0;
        bool is_nan = (nan_kind == 0 && all_ones && mant != 0) || (nan_kind == 1 && all_ones && mant == mant_mask);
        if (is_inf) mag = 0x7f800000u;
        if (is_nan) mag = payload_nan ? (0x7f800000u | (mant << (23 - m))) : 0x7fc00000u;
        out[i] = mag | sign;
    }
}

extern "C" __global__ void encode_float_u16(const u32* u, u16* out, i64 n, int m, int bias, int bits, int exp_bits,
                                            int min_exp, int max_code, int over_code, int payload_nan, int nan_code) {
    encode(u, out, n, m, bias, bits, exp_bits, min_exp, max_code, over_code, payload_nan, nan_code);
}

extern "C" __global__ void encode_float_u8(const u32* u, u8* out, i64 n, int m, int bias, int bits, int exp_bits,
                                           int min_exp, int max_code, int over_code, int payload_nan, int nan_code) {
    encode(u, out, n, m, bias, bits, exp_bits, min_exp, max_code, over_code, payload_nan, nan_code);
}

extern "C" __global__ void decode_float_u16(const u16* c, u32* out, i64 n, int m, int bias, int bits, int exp_bits,
                                            int min_exp, int nan_kind, int payload_nan, int* bad) {
    decode(c, out, n, m, bias, bits, exp_bits, min_exp, nan_kind, payload_nan, bad);
}

extern "C" __global__ void decode_float_u8(const u8* c, u32* out, i64 n, int m, int bias, int bits, int exp_bits,
                                           int min_exp, int nan_kind, int payload_nan, int* bad) {
    decode(c, out, n, m, bias, bits, exp_bits, min_exp, nan_kind, payload_nan, bad);
}
