// floats.cu: encode_float / decode_float for every FloatSpec (fp16, bf16, fp8, fp4).
//
// Same rule as refquant.dtypes.floatspec.encode_float: the float32 bit pattern is
// rounded to the format with integer arithmetic (round to nearest, ties to even), so
// no float operation is involved and the codes are exact. The format's constants come
// from its FloatSpec through the launch code (accel/cupy/floats.py).
#include "float_codes.cuh"

template <typename Code>
__device__ void encode(const u32* __restrict__ u, Code* __restrict__ out, i64 n, const FloatFormat f) {
    GRID_STRIDE(i, n) { out[i] = static_cast<Code>(encode_bits(u[i], f)); }
}

template <typename Code>
__device__ void decode(const Code* __restrict__ c, u32* __restrict__ out, i64 n, const FloatFormat f, int* bad) {
    GRID_STRIDE(i, n) {
        u32 v = c[i];
        if (v >> f.bits) flag_bad(bad);   // a wider code than the format's (fp4 in uint8)
        out[i] = decode_bits(v, f);
    }
}

// float64 bit patterns -> float32 bit patterns rounded to odd (Boldo & Melquiond, "Emulation
// of FMA and correctly rounded sums: proved algorithms using rounding to odd", IEEE Trans.
// Computers 57(4), 2008): truncate, then set the last bit when anything nonzero was dropped.
// Rounding that to nearest-even in a format whose grid is at least 4x coarser than
// float32's (every FloatSpec) equals rounding the float64 value once, so the float32 encode
// kernels serve float64 input. Integer arithmetic only. Past float32's range: FLT_MAX (odd),
// which overflows every format as the value does; NaN keeps its top 23 mantissa bits (1 if
// they vanish), as refquant.dtypes.floatspec.encode_float reads float64 payloads.
extern "C" __global__ void float64_to_float32_odd(const u64* __restrict__ u, u32* __restrict__ out, i64 n) {
    GRID_STRIDE(i, n) {
        u64 x = u[i];
        u32 sign = static_cast<u32>(x >> 63) << 31;
        u64 a = x & 0x7fffffffffffffffull;
        u64 mant = a & 0xfffffffffffffull;
        long long e = static_cast<long long>(a >> 52);
        u32 mag;
        if (e == 2047) {
            u32 p = static_cast<u32>(mant >> 29);
            mag = 0x7f800000u | ((p != 0 || mant == 0) ? p : 1u);
        } else if (e >= 1151) {
            mag = 0x7f7fffffu;
        } else if (e >= 897) {   // float32 normal range: 23 mantissa bits and the sticky bit
            u64 sticky = (mant & 0x1fffffffull) != 0 ? 1ull : 0ull;
            mag = static_cast<u32>((static_cast<u64>(e - 896) << 23) | (mant >> 29) | sticky);
        } else {                 // below: units of 2**-149, truncated, sticky OR'd
            long long eb = e > 0 ? e : 1;
            u64 sig = mant | (e > 0 ? (1ull << 52) : 0ull);
            long long sh = 926 - eb;
            int shift = static_cast<int>(sh < 0 ? 0 : (sh > 63 ? 63 : sh));
            u64 dropped = sig & ((1ull << shift) - 1ull);
            mag = static_cast<u32>((sig >> shift) | (dropped != 0 ? 1ull : 0ull));
        }
        out[i] = sign | mag;
    }
}

extern "C" __global__ void encode_float_u16(const u32* u, u16* out, i64 n, int m, int bias, int bits, int exp_bits,
                                            int min_exp, int max_code, int over_code, int payload_nan, int nan_code) {
    encode(u, out, n, FloatFormat{m, bias, bits, exp_bits, min_exp, max_code, over_code, payload_nan, nan_code, 0, 0});
}

extern "C" __global__ void encode_float_u8(const u32* u, u8* out, i64 n, int m, int bias, int bits, int exp_bits,
                                           int min_exp, int max_code, int over_code, int payload_nan, int nan_code) {
    encode(u, out, n, FloatFormat{m, bias, bits, exp_bits, min_exp, max_code, over_code, payload_nan, nan_code, 0, 0});
}

extern "C" __global__ void decode_float_u16(const u16* c, u32* out, i64 n, int m, int bias, int bits, int exp_bits,
                                            int min_exp, int nan_kind, int payload_nan, int* bad) {
    decode(c, out, n, FloatFormat{m, bias, bits, exp_bits, min_exp, 0, 0, 0, 0, nan_kind, payload_nan}, bad);
}

extern "C" __global__ void decode_float_u8(const u8* c, u32* out, i64 n, int m, int bias, int bits, int exp_bits,
                                           int min_exp, int nan_kind, int payload_nan, int* bad) {
    decode(c, out, n, FloatFormat{m, bias, bits, exp_bits, min_exp, 0, 0, 0, 0, nan_kind, payload_nan}, bad);
}
