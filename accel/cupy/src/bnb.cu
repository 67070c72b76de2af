// bnb.cu: the bitsandbytes family (refquant.formats.bnb, bitsandbytes 0.50.2 CPU rules,
// bit for bit): NF4/FP4 4-bit blockwise, 8-bit dynamic blockwise (the 65536-entry LUT),
// the double-quantization offset in torch's float32 summation order, int8 vector-wise.
//
// Blockwise quantizers give each bitsandbytes block to one CUDA block (grid-stride over
// blocks): the block absmax is an integer max of the float bits with the sign cleared
// (the order of non-negative float bit patterns is the order of the values, and the
// same max flags NaN / inf), then every thread codes its elements. All arithmetic is
// the library's float32 steps (compiled without FMA contraction).
#include "common.cuh"
#include "reduce.cuh"

#define ABSMAX_FLOOR 1e-38f

// Sorted position of v among the codebook midpoints (ties to the lower code), as a code.
__device__ __forceinline__ u32 code_4bit(float v, const float* __restrict__ mid, int nmid,
                                         const u8* __restrict__ order) {
    int pos = 0;
    for (int j = 0; j < nmid; ++j) pos += mid[j] < v;
    return order[pos];
}

// packed (ceil(n/2),): first element in the high nibble; an odd n pads with pad_code.
// Full blocks scale by the float32 reciprocal of max(absmax, 1e-38); the partial last
// block divides by that clamped value and stores it as its absmax.
extern "C" __global__ void bnb_quantize_4bit(const float* __restrict__ x, u8* __restrict__ packed,
                                             float* __restrict__ absmax, i64 n, int blocksize,
                                             const float* __restrict__ mid, int nmid, const u8* __restrict__ order,
                                             int pad_code, int* bad) {
    const i64 n_blocks = (n + blocksize - 1) / blocksize;
    for (i64 b = blockIdx.x; b < n_blocks; b += gridDim.x) {
        const i64 start = b * blocksize, len = min(static_cast<i64>(blocksize), n - start);
        u32 m = 0;
        for (i64 i = threadIdx.x; i < len; i += blockDim.x) m = max(m, __float_as_uint(x[start + i]) & 0x7fffffffu);
        m = block_max_u32(m);
        if (m > 0x7f7fffffu && threadIdx.x == 0) flag_bad(bad);
        const float am = __uint_as_float(m), den = fmaxf(am, ABSMAX_FLOOR), inv = 1.0f / den;
        const bool full = len == blocksize;
        if (threadIdx.x == 0) absmax[b] = full ? am : den;
        for (i64 p = threadIdx.x; p < (len + 1) / 2; p += blockDim.x) {
            float v0 = x[start + 2 * p];
            v0 = fminf(fmaxf(full ? v0 * inv : v0 / den, -1.0f), 1.0f);
            u32 lo = static_cast<u32>(pad_code);
            if (2 * p + 1 < len) {
                float v1 = x[start + 2 * p + 1];
                v1 = fminf(fmaxf(full ? v1 * inv : v1 / den, -1.0f), 1.0f);
                lo = code_4bit(v1, mid, nmid, order);
            }
            packed[start / 2 + p] = static_cast<u8>((code_4bit(v0, mid, nmid, order) << 4) | lo);
        }
    }
}

extern "C" __global__ void bnb_dequantize_4bit(const u8* __restrict__ packed, const float* __restrict__ absmax,
                                               const float* __restrict__ table, i64 n, int blocksize,
                                               float* __restrict__ out) {
    GRID_STRIDE(j, (n + 1) / 2) {
        const u32 byte = packed[j];
        const i64 e = 2 * j;
        out[e] = table[byte >> 4] * absmax[e / blocksize];
        if (e + 1 < n) out[e + 1] = table[byte & 15u] * absmax[(e + 1) / blocksize];
    }
}

// codes (n,) of x - offset[0] (offset: the double-quantization mean, else 0): v = clamp(
// x * (1 / absmax), -1, 1) (NaN from 0 * inf: -1), index trunc(((v + 1) * 0.5) * 65535
// + 0.5), code lut[index]; an all-zero block is code 0 everywhere.
extern "C" __global__ void bnb_quantize_8bit(const float* __restrict__ x, const float* __restrict__ offset,
                                             u8* __restrict__ codes, float* __restrict__ absmax, i64 n,
                                             int blocksize, const u8* __restrict__ lut, int* bad) {
    const i64 n_blocks = (n + blocksize - 1) / blocksize;
    const float off = offset[0];
    for (i64 b = blockIdx.x; b < n_blocks; b += gridDim.x) {
        const i64 start = b * blocksize, len = min(static_cast<i64>(blocksize), n - start);
        u32 m = 0;
        for (i64 i = threadIdx.x; i < len; i += blockDim.x)
            m = max(m, __float_as_uint(x[start + i] - off) & 0x7fffffffu);
        m = block_max_u32(m);
        if (m > 0x7f7fffffu && threadIdx.x == 0) flag_bad(bad);
        const float am = __uint_as_float(m);
        if (threadIdx.x == 0) absmax[b] = am;
        const float inv = 1.0f / am;
        for (i64 i = threadIdx.x; i < len; i += blockDim.x) {
            if (am == 0.0f) {
                codes[start + i] = 0;
                continue;
            }
            float v = fminf(fmaxf((x[start + i] - off) * inv, -1.0f), 1.0f);
            if (v != v) v = -1.0f;
            const float t = (v + 1.0f) * 0.5f;
            codes[start + i] = lut[static_cast<int>(t * 65535.0f + 0.5f)];
        }
    }
}

extern "C" __global__ void bnb_dequantize_8bit(const u8* __restrict__ codes, const float* __restrict__ absmax,
                                               const float* __restrict__ table, i64 n, int blocksize,
                                               float* __restrict__ out) {
    GRID_STRIDE(i, n) { out[i] = table[codes[i]] * absmax[i / blocksize]; }
}

// torch's multi_row_sum: `size` rows of 4 x lanes values; four accumulator levels that
// cascade every 2**power rows (aten/src/ATen/native/cpu/SumKernel.cpp).
__device__ void multi_row_sum(const float* a, i64 size, int lanes, float* out) {
    const int width = 4 * lanes;
    int power = 0;
    while ((1LL << power) < size) ++power;
    power = max(4, power / 4);
    const i64 step = 1LL << power, mask = step - 1;
    float acc[4][32];
    for (int j = 0; j < 4; ++j)
        for (int e = 0; e < width; ++e) acc[j][e] = 0.0f;
    i64 i = 0;
    while (i + step <= size) {
        for (i64 r = i; r < i + step; ++r)
            for (int e = 0; e < width; ++e) acc[0][e] += a[r * width + e];
        i += step;
        for (int j = 1; j < 4; ++j) {
            for (int e = 0; e < width; ++e) {
                acc[j][e] += acc[j - 1][e];
                acc[j - 1][e] = 0.0f;
            }
            if (i & (mask << (j * power))) break;
        }
    }
    for (i64 r = i; r < size; ++r)
        for (int e = 0; e < width; ++e) acc[0][e] += a[r * width + e];
    for (int j = 1; j < 4; ++j)
        for (int e = 0; e < width; ++e) acc[0][e] += acc[j][e];
    for (int e = 0; e < width; ++e) out[e] = acc[0][e];
}

// torch's row_sum of n_rows vectors of `lanes` values -> partials[0 .. lanes).
__device__ void row_sum(const float* a, i64 n_rows, int lanes, float* partials) {
    const i64 m = n_rows / 4;
    for (int e = 0; e < 4 * lanes; ++e) partials[e] = 0.0f;
    if (m) multi_row_sum(a, m, lanes, partials);
    for (i64 r = 4 * m; r < n_rows; ++r)
        for (int e = 0; e < lanes; ++e) partials[e] += a[r * lanes + e];
    for (int k = 1; k < 4; ++k)
        for (int e = 0; e < lanes; ++e) partials[e] += partials[k * lanes + e];
}

// offset[0] = torch.sum(a) / n in float32, torch's one-thread order (8 lanes, scalar tail).
// Serial by definition: launched as one thread.
extern "C" __global__ void torch_mean(const float* __restrict__ a, i64 n, float* offset) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    float partials[32];
    const i64 n_vec = n / 8;
    float total = 0.0f;
    if (n_vec == 0) {
        row_sum(a, n, 1, partials);
        total += partials[0];
    } else {
        row_sum(a, n_vec, 8, partials);
        for (i64 i = 8 * n_vec; i < n; ++i) total += a[i];
        for (int e = 0; e < 8; ++e) total += partials[e];
    }
    offset[0] = total / static_cast<float>(n);
}

// Row absmax without outliers (|x| >= limit), and outlier columns, on the float bits
// with the sign cleared; one CUDA block per row (grid-stride over rows).
extern "C" __global__ void int8_row_stats(const float* __restrict__ x, i64 rows, i64 k, u32 limit_bits,
                                          float* __restrict__ stats, int* __restrict__ col_flags, int* bad) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        u32 am = 0, top = 0;
        for (i64 j = threadIdx.x; j < k; j += blockDim.x) {
            const u32 a = __float_as_uint(x[r * k + j]) & 0x7fffffffu;
            top = max(top, a);
            if (a >= limit_bits) {
                col_flags[j] = 1;
            } else {
                am = max(am, a);
            }
        }
        am = block_max_u32(am);
        top = block_max_u32(top);
        if (threadIdx.x == 0) {
            stats[r] = __uint_as_float(am);
            if (top > 0x7f7fffffu) flag_bad(bad);
        }
    }
}

// q = rint(x * float32(127 / row_stat)) (row_stat 0: scale 127), 0 in outlier columns
// (when use_cols) and where |x| >= limit.
extern "C" __global__ void int8_row_codes(const float* __restrict__ x, i64 rows, i64 k, float limit,
                                          const float* __restrict__ stats, const int* __restrict__ col_flags,
                                          int use_cols, i8* __restrict__ q) {
    GRID_STRIDE(i, rows * k) {
        const i64 r = i / k, j = i - r * k;
        const float s = stats[r];
        const float scale = 127.0f / (s != 0.0f ? s : 1.0f);
        const float v = x[i];
        const bool zero = (use_cols && col_flags[j]) || fabsf(v) >= limit;
        // absmax below 127 / FLT_MAX: the float32 scale overflows; the rule is computed in
        // float64 there, as refquant.formats.bnb.vectorwise_quantize_rows does
        const float code = !(scale <= 3.40282347e+38f) ? static_cast<float>(rint(static_cast<double>(v) * (127.0 / static_cast<double>(s))))
                                        : rintf(v * scale);
        q[i] = zero ? static_cast<i8>(0) : static_cast<i8>(static_cast<int>(code));
    }
}

extern "C" __global__ void int8_row_dequant(const i8* __restrict__ q, i64 rows, i64 k, const float* __restrict__ stats,
                                            float inv127, float* __restrict__ out) {
    GRID_STRIDE(i, rows * k) { out[i] = (static_cast<float>(q[i]) * stats[i / k]) * inv127; }
}
