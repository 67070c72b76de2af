// cuda_sim_fp16.h: __half and __nv_bfloat16 for the SIMT runtime, bit-exact with the
// conversion intrinsics of cuda_fp16.h / cuda_bf16.h (IEEE 754 binary16 and bfloat16).
//
// Narrowing conversions round the float32 bit pattern with integer arithmetic in the
// mode the intrinsic names (_rn: nearest, ties to even; _rz: toward zero; _rd / _ru:
// toward -inf / +inf), subnormals and overflow included; a NaN becomes the canonical
// NaN 0x7fff as CUDA's conversions produce it. Widening conversions are exact.
// Arithmetic (__hadd, __hmul, ...) is done in float32 and rounded once: float32 holds
// the exact sum or product of two 16-bit values' significands to within a half-ulp
// boundary (24 >= 2 * 11 + 2), so the double rounding is innocuous.
#pragma once

struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f);
    operator float() const;
};
struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f);
    operator float() const;
};
typedef __nv_bfloat16 nv_bfloat16;
struct __half2 {
    __half x, y;
};

namespace cuda_sim {
enum RoundMode { RN, RZ, RD, RU };

// float32 -> a binary format with `ebits` exponent bits, `mbits` stored mantissa bits.
inline unsigned short narrow_float(float f, int ebits, int mbits, RoundMode mode) {
    uint32_t u = to_bits(f) & 0xffffffffu;
    uint32_t sign = u >> 31, a = u & 0x7fffffffu;
    int bias = (1 << (ebits - 1)) - 1;
    uint32_t sign_bit = sign << (ebits + mbits);
    uint32_t inf = ((1u << ebits) - 1u) << mbits;
    uint32_t max_finite = inf - 1u;
    if (a > 0x7f800000u) return 0x7fff;
    if (a == 0x7f800000u) return static_cast<unsigned short>(sign_bit | inf);
    int field = static_cast<int>(a >> 23);
    int E = (field ? field : 1) - 127;                        // value = m * 2**(E - 23)
    uint32_t m = (a & 0x7fffffu) | (field ? 0x800000u : 0u);
    int shift = 23 - mbits + std::max(0, 1 - bias - E);       // to the target's ulp
    shift = std::min(shift, 25);
    uint32_t q = m >> shift, rem = m - (q << shift), half = 1u << (shift - 1);
    bool up = false;
    if (mode == RN) up = rem > half || (rem == half && (q & 1u));
    if (mode == RU) up = rem != 0 && !sign;
    if (mode == RD) up = rem != 0 && sign;
    q += up;
    uint32_t r = (static_cast<uint32_t>(std::max(E + bias, 1) - 1) << mbits) + q;
    if (r > max_finite) {
        bool to_inf = mode == RN || (mode == RU && !sign) || (mode == RD && sign);
        r = to_inf ? inf : max_finite;
    }
    return static_cast<unsigned short>(sign_bit | r);
}

inline float widen_float(unsigned short h, int ebits, int mbits) {
    uint32_t sign = static_cast<uint32_t>(h >> (ebits + mbits)) << 31;
    uint32_t field = (h >> mbits) & ((1u << ebits) - 1u), mant = h & ((1u << mbits) - 1u);
    int bias = (1 << (ebits - 1)) - 1;
    uint32_t bits;
    if (field == (1u << ebits) - 1u) {
        bits = 0x7f800000u | (mant << (23 - mbits));          // inf, NaN with its payload
    } else if (field != 0) {
        bits = ((field - bias + 127) << 23) | (mant << (23 - mbits));
    } else if (mant == 0) {
        bits = 0;
    } else if (bias == 127) {
        bits = mant << (23 - mbits);                          // bfloat16 subnormal: float32 subnormal
    } else {
        int p = 31 - __builtin_clz(mant);                     // leading one of the subnormal
        bits = (static_cast<uint32_t>(p + 1 - bias - mbits + 127) << 23) | ((mant - (1u << p)) << (23 - p));
    }
    return from_bits<float>(sign | bits);
}
}  // namespace cuda_sim

inline __half __ushort_as_half(unsigned short x) { __half h; h.__x = x; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __float2half_rn(float f) { return __ushort_as_half(cuda_sim::narrow_float(f, 5, 10, cuda_sim::RN)); }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline __half __float2half_rz(float f) { return __ushort_as_half(cuda_sim::narrow_float(f, 5, 10, cuda_sim::RZ)); }
inline __half __float2half_rd(float f) { return __ushort_as_half(cuda_sim::narrow_float(f, 5, 10, cuda_sim::RD)); }
inline __half __float2half_ru(float f) { return __ushort_as_half(cuda_sim::narrow_float(f, 5, 10, cuda_sim::RU)); }
inline float __half2float(__half h) { return cuda_sim::widen_float(h.__x, 5, 10); }
inline __half::__half(float f) { __x = __float2half_rn(f).__x; }
inline __half::operator float() const { return __half2float(*this); }

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { __nv_bfloat16 h; h.__x = x; return h; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    return __ushort_as_bfloat16(cuda_sim::narrow_float(f, 8, 7, cuda_sim::RN));
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) {
    return __ushort_as_bfloat16(cuda_sim::narrow_float(f, 8, 7, cuda_sim::RZ));
}
inline __nv_bfloat16 __float2bfloat16_rd(float f) {
    return __ushort_as_bfloat16(cuda_sim::narrow_float(f, 8, 7, cuda_sim::RD));
}
inline __nv_bfloat16 __float2bfloat16_ru(float f) {
    return __ushort_as_bfloat16(cuda_sim::narrow_float(f, 8, 7, cuda_sim::RU));
}
inline float __bfloat162float(__nv_bfloat16 h) { return cuda_sim::widen_float(h.__x, 8, 7); }
inline __nv_bfloat16::__nv_bfloat16(float f) { __x = __float2bfloat16_rn(f).__x; }
inline __nv_bfloat16::operator float() const { return __bfloat162float(*this); }

inline __half __hadd(__half a, __half b) { return __float2half_rn(__half2float(a) + __half2float(b)); }
inline __half __hsub(__half a, __half b) { return __float2half_rn(__half2float(a) - __half2float(b)); }
inline __half __hmul(__half a, __half b) { return __float2half_rn(__half2float(a) * __half2float(b)); }
inline __half __hneg(__half a) { return __ushort_as_half(a.__x ^ 0x8000u); }
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) {
    return __float2bfloat16_rn(__bfloat162float(a) + __bfloat162float(b));
}
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) {
    return __float2bfloat16_rn(__bfloat162float(a) * __bfloat162float(b));
}
