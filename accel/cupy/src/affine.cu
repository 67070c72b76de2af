// affine.cu: choose_qparams (per-group range), quantize_affine, dequantize_affine at
// every granularity (refquant.mapping).
//
// A granularity is per-axis run lengths: element (i0, .., i5) of the input (left-padded
// to 6 axes) uses scale-grid entry sum_a (i_a / run_a) * stride_a, run 0 meaning the
// whole axis shares one entry. geo holds shape[6], run[6], stride[6]. Quantize repeats
// the reference's float32 steps: t = x / scale (IEEE division), rounded (rintf: half
// even; roundf: half away; stochastic: floor(t) + (u < t - floor(t)) with the host's
// float64 u), clamped to [qmin - zp, qmax - zp] in float32, then zp added as an integer.
// Dequantize is float32(q - zp) * scale. Both exact; compiled without FMA contraction.
#include "common.cuh"

#define NDIM 6

__device__ __forceinline__ i64 group_of(i64 i, const i64* __restrict__ geo) {
    i64 g = 0, rem = i;
    for (int a = NDIM - 1; a >= 0; --a) {
        i64 extent = geo[a], idx = rem % extent;
        rem /= extent;
        if (geo[NDIM + a] != 0) g += (idx / geo[NDIM + a]) * geo[2 * NDIM + a];
    }
    return g;
}

extern "C" __global__ void quantize_affine(const float* __restrict__ x, int* __restrict__ out, i64 n,
                                           const float* __restrict__ scale, const int* __restrict__ zp, int has_zp,
                                           const i64* __restrict__ geo, int qmin, int qmax, int mode,
                                           const double* __restrict__ u, int* bad) {
    GRID_STRIDE(i, n) {
        i64 g = group_of(i, geo);
        float s = scale[g];
        int z = has_zp ? zp[g] : 0;
        float v = x[i];
        if (v != v) {
            flag_bad(bad);
            out[i] = 0;
            continue;
        }
        float t = v / s;
        float r;
        if (mode == 0) {
            r = rintf(t);
        } else if (mode == 1) {
            r = roundf(t);
        } else {
            float f = floorf(t);
            r = u[i] < static_cast<double>(t - f) ? f + 1.0f : f;
        }
        r = fminf(fmaxf(r, static_cast<float>(qmin - z)), static_cast<float>(qmax - z));
        out[i] = static_cast<int>(r) + z;
    }
}

extern "C" __global__ void dequantize_affine(const i64* __restrict__ q, float* __restrict__ out, i64 n,
                                             const float* __restrict__ scale, const int* __restrict__ zp, int has_zp,
                                             const i64* __restrict__ geo, i64 qmin, i64 qmax, int* bad) {
    GRID_STRIDE(i, n) {
        i64 g = group_of(i, geo);
        i64 c = q[i];
        if (c < qmin || c > qmax) flag_bad(bad);
        int z = has_zp ? zp[g] : 0;
        out[i] = static_cast<float>(static_cast<int>(c) - z) * scale[g];
    }
}

// Per-group min and max (both starting from 0), as order-preserving int32 keys of the
// float32 bits (key = b ^ ((b >> 31) & 0x7fffffff), its own inverse) so that integer
// atomics reduce them exactly; bad counts NaN / inf.
extern "C" __global__ void group_minmax(const int* __restrict__ xb, i64 n, const i64* __restrict__ geo, int* lo,
                                        int* hi, int* bad) {
    GRID_STRIDE(i, n) {
        int b = xb[i];
        if ((b & 0x7fffffff) > 0x7f7fffff) flag_bad(bad);
        int key = b ^ ((b >> 31) & 0x7fffffff);
        i64 g = group_of(i, geo);
        atomicMin(&lo[g], key);
        atomicMax(&hi[g], key);
    }
}
