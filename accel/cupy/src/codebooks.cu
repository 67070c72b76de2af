// codebooks.cu: codebook_encode / codebook_decode (nf4, fp4, iq4_nl, ternary, binary).
//
// Same rule as refquant.dtypes.codebooks: a value's code is its position among the
// float32 midpoints of the stably sorted table (how many midpoints lie strictly below
// it), mapped back through the sort order; a value exactly on a midpoint goes to the
// neighbour the codebook's tie rule names (0 lower, 1 upper, 2 toward zero, 3 away from
// zero); NaN sorts after every midpoint. Only comparisons: exact.
#include "common.cuh"

#define MAX_MIDPOINTS 255

extern "C" __global__ void codebook_encode(const float* __restrict__ x, u8* __restrict__ out, i64 n,
                                           const float* __restrict__ mid, int nmid, const u8* __restrict__ order,
                                           int tie) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        int pos;
        if (v != v) {
            pos = nmid;
        } else {
            int lo = 0;
            for (int j = 0; j < nmid; ++j) lo += mid[j] < v;
            pos = lo;
            if (tie != 0 && lo < nmid && mid[lo] == v) {
                int hi = lo;
                while (hi < nmid && mid[hi] == v) ++hi;   // midpoints equal to v (repeated values)
                if (tie == 1) {
                    pos = hi;
                } else {
                    bool upper_is_smaller = mid[lo] < 0.0f;   // a negative midpoint: upper is nearer zero
                    pos = (tie == 2) == upper_is_smaller ? hi : lo;
                }
            }
        }
        out[i] = order[pos];
    }
}

template <typename Code>
__device__ void decode(const Code* __restrict__ codes, float* __restrict__ out, i64 n, const float* __restrict__ table,
                       int size, int* bad) {
    GRID_STRIDE(i, n) {
        i64 c = static_cast<i64>(codes[i]);
        if (c < 0 || c >= size) {
            flag_bad(bad);
            out[i] = 0.0f;
        } else {
            out[i] = table[c];
        }
    }
}

extern "C" __global__ void codebook_decode_u8(const u8* codes, float* out, i64 n, const float* table, int size,
                                              int* bad) {
    decode(codes, out, n, table, size, bad);
}

extern "C" __global__ void codebook_decode_i64(const i64* codes, float* out, i64 n, const float* table, int size,
                                               int* bad) {
    decode(codes, out, n, table, size, bad);
}
