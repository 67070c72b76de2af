// algorithms.cu: the weight-quantization algorithms rtn_quantize, gptq_quantize and
// awq_quantize (refquant.algorithms.ops); launch code in accel/cupy/algorithms.py.
//
// Checks that apply (tests/test_cuda_nvcc.py): every kernel compiles for sm_80 / sm_90
// without spills, and, compiled like every file with --fmad=false, holds no fma.rn.f32.
// Exactness: rtn_groups is bit-exact (Exact contract: the reference's float32 / float64
// operation order, minmax_grid.cuh). GPTQ and AWQ are searches held to NoWorseThanRef:
// gptq_block repeats the reference's float32 column sweep exactly, but the lazy trailing
// update (gemm_sub_f32) sums in another order than NumPy's BLAS; awq_qdq is exact in
// float64, its loss (gemm_f64, row_dot_f64) sums in another order.
#include "common.cuh"
#include "minmax_grid.cuh"

// tile_gemm: a block of GEMM_THREADS = 16 x 8 threads computes a TILE x TILE tile of C,
// each thread a MICRO_M x MICRO_N micro-tile (register blocking: an operand read from
// shared memory feeds 4 or 8 products), over k in steps of KSTEP.
#define TILE 64
#define KSTEP 32
#define GEMM_THREADS 128
#define MICRO_M 4   // TILE / 16 rows per thread
#define MICRO_N 8   // TILE / 8 columns per thread

// --- shared: one row-group on its min-max grid --------------------------------------------

// [min, max] of x[c] * (s ? s[c] : 1) over columns c0..c1-1 of one row.
template <typename T>
__device__ __forceinline__ void row_range(const T* __restrict__ x, const T* __restrict__ s, i64 c0, i64 c1, T& lo,
                                          T& hi) {
    lo = hi = s ? x[c0] * s[c0] : x[c0];
    for (i64 c = c0 + 1; c < c1; ++c) {
        const T v = s ? x[c] * s[c] : x[c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
}

// RTN (refquant.algorithms.rtn, GPTQ's grid): one thread per row-group of W (rows, cols),
// groups of gs columns (the last may be shorter); out = the dequantized weight, float32.
template <typename T>
__device__ void rtn_groups(const T* __restrict__ W, i64 rows, i64 cols, i64 gs, int bits, int sym,
                           float* __restrict__ out) {
    const i64 n_groups = (cols + gs - 1) / gs;
    GRID_STRIDE(t, rows * n_groups) {
        const i64 r = t / n_groups, c0 = (t - r * n_groups) * gs, c1 = min(c0 + gs, cols);
        const T* w = W + r * cols;
        T lo, hi;
        row_range<T>(w, nullptr, c0, c1, lo, hi);
        const MinMaxGrid<T> p = find_params<T>(lo, hi, bits, sym, RULE_GPTQ);
        for (i64 c = c0; c < c1; ++c) out[r * cols + c] = static_cast<float>(qdq<T>(w[c], p, bits));
    }
}

extern "C" __global__ void rtn_groups_f32(const float* __restrict__ W, i64 rows, i64 cols, i64 gs, int bits,
                                          int sym, float* __restrict__ out) {
    rtn_groups<float>(W, rows, cols, gs, bits, sym, out);
}

extern "C" __global__ void rtn_groups_f64(const double* __restrict__ W, i64 rows, i64 cols, i64 gs, int bits,
                                          int sym, float* __restrict__ out) {
    rtn_groups<double>(W, rows, cols, gs, bits, sym, out);
}

// --- tiled GEMM ------------------------------------------------------------------------------

// C[i, j] (-)= sum_p A[i, p] B[p, j] for i < m, j < n, p < k, with A[i, p] at
// A[i * a_rs + p * a_cs], B[p, j] at B[p * b_rs + j * b_cs], C[i, j] at C[i * ldc + j]
// (strides let one kernel read a transposed operand). Tiles of A (TILE x KSTEP) and B
// (KSTEP x TILE) in shared memory; thread (ty, tx) = (tid / 8, tid % 8) owns outputs
// (ty + 16 a, tx + 8 b), a < MICRO_M, b < MICRO_N; blocks stride over the output tiles.
template <typename T, bool SUBTRACT>
__device__ void tile_gemm(i64 m, i64 n, i64 k, const T* __restrict__ A, i64 a_rs, i64 a_cs,
                          const T* __restrict__ B, i64 b_rs, i64 b_cs, T* __restrict__ C, i64 ldc) {
    __shared__ T As[KSTEP][TILE + 1];   // As[p][i]: A's tile transposed
    __shared__ T Bs[KSTEP][TILE + 1];
    const int tid = threadIdx.x, tx = tid % 8, ty = tid / 8;
    const i64 tiles_n = (n + TILE - 1) / TILE, tiles = ((m + TILE - 1) / TILE) * tiles_n;
    for (i64 tile = blockIdx.x; tile < tiles; tile += gridDim.x) {   // uniform over the block
        const i64 i0 = (tile / tiles_n) * TILE, j0 = (tile % tiles_n) * TILE;
        T acc[MICRO_M][MICRO_N];
        for (int a = 0; a < MICRO_M; ++a)
            for (int b = 0; b < MICRO_N; ++b) acc[a][b] = T(0);
        for (i64 p0 = 0; p0 < k; p0 += KSTEP) {
            for (int e = tid; e < TILE * KSTEP; e += GEMM_THREADS) {
                const int row = e / KSTEP, col = e % KSTEP;     // A: (i0 + row, p0 + col)
                const i64 ia = i0 + row, pa = p0 + col;
                As[col][row] = ia < m && pa < k ? A[ia * a_rs + pa * a_cs] : T(0);
                const int pr = e / TILE, jc = e % TILE;          // B: (p0 + pr, j0 + jc)
                const i64 pb = p0 + pr, jb = j0 + jc;
                Bs[pr][jc] = pb < k && jb < n ? B[pb * b_rs + jb * b_cs] : T(0);
            }
            __syncthreads();
            for (int q = 0; q < KSTEP; ++q) {
                T a_reg[MICRO_M], b_reg[MICRO_N];
                for (int a = 0; a < MICRO_M; ++a) a_reg[a] = As[q][ty + 16 * a];
                for (int b = 0; b < MICRO_N; ++b) b_reg[b] = Bs[q][tx + 8 * b];
                for (int a = 0; a < MICRO_M; ++a)
                    for (int b = 0; b < MICRO_N; ++b) acc[a][b] += a_reg[a] * b_reg[b];
            }
            __syncthreads();
        }
        for (int a = 0; a < MICRO_M; ++a)
            for (int b = 0; b < MICRO_N; ++b) {
                const i64 i = i0 + ty + 16 * a, j = j0 + tx + 8 * b;
                if (i < m && j < n) C[i * ldc + j] = SUBTRACT ? C[i * ldc + j] - acc[a][b] : acc[a][b];
            }
    }
}

extern "C" __global__ void gemm_sub_f32(i64 m, i64 n, i64 k, const float* __restrict__ A, i64 a_rs, i64 a_cs,
                                        const float* __restrict__ B, i64 b_rs, i64 b_cs, float* __restrict__ C,
                                        i64 ldc) {
    tile_gemm<float, true>(m, n, k, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc);
}

extern "C" __global__ void gemm_f64(i64 m, i64 n, i64 k, const double* __restrict__ A, i64 a_rs, i64 a_cs,
                                    const double* __restrict__ B, i64 b_rs, i64 b_cs, double* __restrict__ C, i64 ldc) {
    tile_gemm<double, false>(m, n, k, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc);
}

// --- GPTQ (Frantar et al. 2023, Algorithm 1) ---------------------------------------------------

// One block of B = count columns i1 .. i1+count-1 of the column sweep, one thread per row r.
// W (rows, cols): the weight in quantization order (act-order permuted, dead columns
// zeroed) carrying the lazy updates of earlier blocks; U (cols, cols): the upper Cholesky
// factor of H^-1 (sec. 3.3), d = U[j, j]. The thread copies its row's block into W1
// (stored transposed, (B, rows), so that a warp's accesses are contiguous), then for each
// column j: fits the group's grid when j starts a group (on W_fit[r, j : j + gs], the
// global W as the reference fits it, or the un-zeroed W once for per-channel), quantizes
// w = W1[j] to Q[r, j], takes the scaled error E[j] = (w - q) / d and applies eq. (3)
// inside the block, W1[k] -= E[j] * U[j, k] for k > j. E is stored transposed (B, rows)
// for the trailing update gemm_sub_f32: W[:, i2:] -= E @ U[i1:i2, i2:]. The grid of a group
// that spans blocks persists in scale / zero (rows,).
extern "C" __global__ void gptq_block(const float* __restrict__ W, const float* __restrict__ W_fit,
                                      const float* __restrict__ U, i64 rows, i64 cols, i64 i1, i64 count, i64 gs,
                                      int bits, int sym, float* __restrict__ W1, float* __restrict__ E,
                                      float* __restrict__ scale, float* __restrict__ zero, float* __restrict__ Q) {
    GRID_STRIDE(r, rows) {
        for (i64 k = 0; k < count; ++k) W1[k * rows + r] = W[r * cols + i1 + k];
        MinMaxGrid<float> p;
        p.scale = scale[r];
        p.zero = zero[r];
        for (i64 i = 0; i < count; ++i) {
            const i64 j = i1 + i;
            if (j % gs == 0) {
                float lo, hi;
                row_range<float>(W_fit + r * cols, nullptr, j, min(j + gs, cols), lo, hi);
                p = find_params<float>(lo, hi, bits, sym, RULE_GPTQ);
            }
            const float d = U[j * cols + j];
            const float w = W1[i * rows + r];
            const float q = qdq<float>(w, p, bits);
            const float err = (w - q) / d;
            Q[r * cols + j] = q;
            for (i64 k = i + 1; k < count; ++k) W1[k * rows + r] -= err * U[j * cols + i1 + k];
            E[i * rows + r] = err;
        }
        scale[r] = p.scale;
        zero[r] = p.zero;
    }
}

// --- AWQ (Lin et al. 2024, sec. 3.3, eq. 4-5) ---------------------------------------------------

// n_cand candidates s (n_cand, cols) of the scale search at once, one thread per
// (candidate, row, group): the effective weight Q(W s) / s of AWQ's grid, in float64 as
// the reference. Writes D[c * rows + r] = W[r] - Q(W s_c) / s_c (float64, (n_cand * rows,
// cols)) or, when final is set, the effective weight of candidate 0 as float32 into eff
// (the op's result).
extern "C" __global__ void awq_qdq(const double* __restrict__ W, const double* __restrict__ s, i64 n_cand, i64 rows,
                                   i64 cols, i64 gs, int bits, int sym, int final, double* __restrict__ D,
                                   float* __restrict__ eff) {
    const i64 n_groups = (cols + gs - 1) / gs;
    GRID_STRIDE(t, n_cand * rows * n_groups) {
        const i64 rr = t / n_groups, r = rr % rows, c0 = (t - rr * n_groups) * gs, c1 = min(c0 + gs, cols);
        const double* w = W + r * cols;
        const double* sc = s + (rr / rows) * cols;
        double lo, hi;
        row_range<double>(w, sc, c0, c1, lo, hi);
        const MinMaxGrid<double> p = find_params<double>(lo, hi, bits, sym, RULE_AWQ);
        for (i64 c = c0; c < c1; ++c) {
            const double e = qdq<double>(w[c] * sc[c], p, bits) / sc[c];
            if (final) eff[rr * cols + c] = static_cast<float>(e);
            else D[rr * cols + c] = w[c] - e;
        }
    }
}

// loss[r] = sum_c P[r, c] D[r, c] with P = D G (G = X^T X): row r's share of the squared
// output error ||X D^T||^2 (the search compares the sums over rows).
extern "C" __global__ void row_dot_f64(const double* __restrict__ P, const double* __restrict__ D, i64 rows, i64 cols,
                                       double* __restrict__ loss) {
    GRID_STRIDE(r, rows) {
        double acc = 0.0;
        for (i64 c = 0; c < cols; ++c) acc += P[r * cols + c] * D[r * cols + c];
        loss[r] = acc;
    }
}
