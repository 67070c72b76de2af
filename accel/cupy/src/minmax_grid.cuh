// minmax_grid.cuh: the min-max group quantizers of GPTQ and AWQ
// (refquant.algorithms._quantizer, GPTQ_RULE and AWQ_RULE), for one row-group, in the
// working type T (float: GPTQ and RTN on float32 weights; double: RTN on float64 weights
// and AWQ, whose reference searches in float64).
//
// find_params turns the group's range into (scale, zero) with the reference's operation
// order: the scale is computed in T and rounded to float32 (a scale that rounds to 0
// becomes 2^-149), the zero-point derived from the rounded scale. qdq is
// scale * (clamp(rint(x / scale) + zero, 0, maxq) - zero). Exact: IEEE + - * / only,
// compiled without FMA contraction.
#pragma once
#include "common.cuh"

#define RULE_GPTQ 0
#define RULE_AWQ 1

template <typename T>
struct MinMaxGrid {
    T scale, zero;
};

template <typename T>
__device__ __forceinline__ T rint_t(T x) { return rint(x); }
template <>
__device__ __forceinline__ float rint_t<float>(float x) { return rintf(x); }

// Rounded to a float32 value, kept in T (refquant _quantizer._as_f32).
template <typename T>
__device__ __forceinline__ T as_f32(T v) {
    float f = static_cast<float>(v);
    if (f == 0.0f) f = 1.40129846e-45f;   // 2^-149
    return static_cast<T>(f);
}

// (scale, zero) of a row-group with range [xmin, xmax] (its plain min and max).
template <typename T>
__device__ __forceinline__ MinMaxGrid<T> find_params(T xmin, T xmax, int bits, int sym, int rule) {
    const int maxq = (1 << bits) - 1;
    MinMaxGrid<T> p;
    if (rule == RULE_GPTQ) {   // range extended to contain 0; an empty range becomes [-1, 1]
        xmin = xmin < T(0) ? xmin : T(0);
        xmax = xmax > T(0) ? xmax : T(0);
        if (sym) {   // GPTQ's sym quirk: a row with no negative value keeps xmin = 0
            const T a = xmin < T(0) ? -xmin : xmin;
            xmax = a > xmax ? a : xmax;
            if (xmin < T(0)) xmin = -xmax;
        }
        if (xmin == xmax) {
            xmin = T(-1);
            xmax = T(1);
        }
        p.scale = as_f32<T>((xmax - xmin) / T(maxq));
        p.zero = sym ? T((maxq + 1) / 2) : rint_t<T>(-xmin / p.scale);
        return p;
    }
    // AWQ pseudo_quantize_tensor: range floor 1e-5, zero-point clamped to [0, maxq]
    if (sym) {
        const T a = fmax(fabs(xmin), fabs(xmax));
        p.scale = as_f32<T>(fmax(a, T(1e-5)) / T((1 << (bits - 1)) - 1));
        p.zero = T(1 << (bits - 1));
        return p;
    }
    p.scale = as_f32<T>(fmax(xmax - xmin, T(1e-5)) / T(maxq));
    const T z = rint_t<T>(-xmin / p.scale);
    p.zero = z < T(0) ? T(0) : (z > T(maxq) ? T(maxq) : z);
    return p;
}

// The grid value of x: scale * (clamp(rint(x / scale) + zero, 0, maxq) - zero).
template <typename T>
__device__ __forceinline__ T qdq(T x, MinMaxGrid<T> p, int bits) {
    const T maxq = T((1 << bits) - 1);
    T q = rint_t<T>(x / p.scale) + p.zero;
    q = q < T(0) ? T(0) : (q > maxq ? maxq : q);
    return p.scale * (q - p.zero);
}
