// matmul.cu: integer GEMM with int32 accumulation (dp4a), the zero-point expansion,
// int32 dequantization, LLM.int8() and the fused NF4/FP4 W4A16 dequant-matmul
// (refquant.matmul).
//
// Integer operands are first rewritten as signed int8 rows padded to a multiple of 4
// along k (to_signed_rows): a uint8 code u becomes u - 128 (u ^ 0x80), which moves 128
// into the zero point, so every GEMM is (a_s - za) . (b_s - zb) with int8 a_s, b_s:
// a_s . b_s by __dp4a (4 products per instruction) in int32 partial sums of DP4A_CHUNK
// quads (|sum| <= 8192 * 4 * 128**2 = 2**29) added in int64,
// then the expansion - zb * rowsum(a_s) - za * colsum(b_s) + k * za * zb in int64,
// range-checked into int32.
#include "common.cuh"
#include "reduce.cuh"

#define DP4A_CHUNK 8192LL

// dst (rows, kp) int8 from src element (r, c) at src[r * rs + c * cs] (uint8 codes
// shifted by -128 when is_unsigned), zero padded past k; sums[r] = row sum of dst.
extern "C" __global__ void to_signed_rows(const u8* __restrict__ src, i64 rows, i64 k, i64 rs, i64 cs,
                                          int is_unsigned, i8* __restrict__ dst, i64 kp, i64* __restrict__ sums) {
    GRID_STRIDE(r, rows) {
        i64 s = 0;
        for (i64 c = 0; c < kp; ++c) {
            int v = 0;
            if (c < k) {
                const u32 b = src[r * rs + c * cs];
                v = is_unsigned ? static_cast<int>(b) - 128 : static_cast<int>(static_cast<i8>(b));
            }
            dst[r * kp + c] = static_cast<i8>(v);
            s += v;
        }
        sums[r] = s;
    }
}

// out (m, n) int32 = a_s (m, kp) . b_s (n, kp)^T with the zero-point expansion; bad when a
// result leaves int32.
extern "C" __global__ void int8_gemm_nt(const int* __restrict__ a4, const int* __restrict__ b4, i64 m, i64 n, i64 kq,
                                        i64 k, const i64* __restrict__ za, const i64* __restrict__ zb,
                                        const i64* __restrict__ row_sums, const i64* __restrict__ col_sums,
                                        int* __restrict__ out, int* bad) {
    GRID_STRIDE(t, m * n) {
        const i64 i = t / n, j = t - i * n;
        i64 total = 0;
        for (i64 q0 = 0; q0 < kq; q0 += DP4A_CHUNK) {   // int32 partial sums cannot overflow
            int acc = 0;
            const i64 q1 = min(kq, q0 + DP4A_CHUNK);
            for (i64 q = q0; q < q1; ++q) acc = __dp4a(a4[i * kq + q], b4[j * kq + q], acc);
            total += acc;
        }
        const i64 r = total - zb[j] * row_sums[i] - za[i] * col_sums[j] + k * za[i] * zb[j];
        if (r < -2147483648LL || r > 2147483647LL) flag_bad(bad);
        out[t] = static_cast<int>(r);
    }
}

// float32((acc * sa[i]) * sb[j]) with float64 products: one rounding, as the reference.
extern "C" __global__ void dequantize_int32(const int* __restrict__ acc, i64 m, i64 n, const double* __restrict__ sa,
                                            const double* __restrict__ sb, float* __restrict__ out) {
    GRID_STRIDE(t, m * n) {
        const i64 i = t / n, j = t - i * n;
        out[t] = __double2float_rn(__dmul_rn(__dmul_rn(static_cast<double>(acc[t]), sa[i]), sb[j]));
    }
}

// LLM.int8(): out (rows, out_f) = acc * (xs * ws) / 127**2 + the outlier columns of x and
// w in float64, rounded once (acc: the int8 product from int8_gemm_nt).
extern "C" __global__ void llm_int8_epilogue(const int* __restrict__ acc, i64 rows, i64 out_f,
                                             const float* __restrict__ xs, const float* __restrict__ ws,
                                             const float* __restrict__ xo, const float* __restrict__ wo, i64 n_cols,
                                             float* __restrict__ out) {
    GRID_STRIDE(t, rows * out_f) {
        const i64 r = t / out_f, o = t - r * out_f;
        double v = static_cast<double>(acc[t]) * (static_cast<double>(xs[r]) * static_cast<double>(ws[o])) /
                   (127.0 * 127.0);
        double extra = 0.0;
        for (i64 c = 0; c < n_cols; ++c)
            extra += static_cast<double>(xo[r * n_cols + c]) * static_cast<double>(wo[o * n_cols + c]);
        out[t] = static_cast<float>(v + extra);
    }
}

// Fused W4A16: out (tokens, out_f) = x (tokens, in_f) @ W^T, W's element (o, i) being
// table[nibble] * absmax[(o * in_f + i) / blocksize] (bitsandbytes packing, first
// element in the high nibble; blocksize a power of two), decoded on the fly and never
// stored. One CUDA block per output row (grid-stride), float32 partial sums reduced
// across the block.
extern "C" __global__ void bnb_matmul_4bit(const float* __restrict__ x, i64 tokens, const u8* __restrict__ packed,
                                           const float* __restrict__ absmax, const float* __restrict__ table,
                                           i64 out_f, i64 in_f, int log2_blocksize, float* __restrict__ out) {
    for (i64 o = blockIdx.x; o < out_f; o += gridDim.x) {
        for (i64 t = 0; t < tokens; ++t) {
            float acc = 0.0f;
            for (i64 i = threadIdx.x; i < in_f; i += blockDim.x) {
                const i64 e = o * in_f + i;
                const u32 byte = packed[e >> 1];
                const float w = table[(e & 1) ? (byte & 15u) : (byte >> 4)] * absmax[e >> log2_blocksize];
                acc += x[t * in_f + i] * w;
            }
            acc = block_sum_f32(acc);
            if (threadIdx.x == 0) out[t * out_f + o] = acc;
        }
    }
}

// BitNet b1.58's ternary GEMM out (m, n) = a (m, k) @ t (k, n), t in {-1, 0, +1}: one thread
// per output, adds and subtracts only (no multiply). Partial sums are int32 over runs of
// 2**24 (|sum| <= 2**24 * 128 < 2**31), carried in int64; a result outside int32 flags bad.
extern "C" __global__ void ternary_gemm(const i8* __restrict__ a, const i8* __restrict__ t, i64 m, i64 n, i64 k,
                                        int* __restrict__ out, int* bad) {
    GRID_STRIDE(idx, m * n) {
        const i64 i = idx / n, j = idx - i * n;
        const i8* row = a + i * k;
        i64 total = 0;
        for (i64 k0 = 0; k0 < k; k0 += (1LL << 24)) {
            const i64 k1 = k0 + (1LL << 24) < k ? k0 + (1LL << 24) : k;
            int acc = 0;
            for (i64 kk = k0; kk < k1; ++kk) {
                const int w = t[kk * n + j];
                const int x = row[kk];
                acc += w == 1 ? x : (w == -1 ? -x : 0);
            }
            total += acc;
        }
        if (total > 2147483647LL || total < -2147483648LL) flag_bad(bad);
        out[idx] = static_cast<int>(total);
    }
}

// The fused dequant-matmuls accumulate in float32, so a product or partial sum beyond
// FLT_MAX gives inf - inf = NaN where the reference's float64 sum rounds to +-inf once.
// count_nonfinite flags whether any output is NaN or inf; recompute_nonfinite_f64 then
// recomputes only those outputs as float64 dot products of x (rows, in) and the decoded
// weight w (out, in), rounded once to float32 (one thread per output; finite ones return).
extern "C" __global__ void count_nonfinite(const u32* __restrict__ out, i64 n, int* flag) {
    GRID_STRIDE(i, n) {
        if ((out[i] & 0x7f800000u) == 0x7f800000u) flag_bad(flag);
    }
}

extern "C" __global__ void recompute_nonfinite_f64(const float* __restrict__ x, const float* __restrict__ w, i64 rows,
                                                   i64 out_f, i64 in_f, float* __restrict__ out) {
    GRID_STRIDE(idx, rows * out_f) {
        if ((__float_as_uint(out[idx]) & 0x7f800000u) != 0x7f800000u) continue;
        const i64 r = idx / out_f, o = idx - r * out_f;
        const float* xr = x + r * in_f;
        const float* wr = w + o * in_f;
        double acc = 0.0;
        for (i64 k = 0; k < in_f; ++k)
            acc = __dadd_rn(acc, __dmul_rn(static_cast<double>(xr[k]), static_cast<double>(wr[k])));
        out[idx] = __double2float_rn(acc);
    }
}
