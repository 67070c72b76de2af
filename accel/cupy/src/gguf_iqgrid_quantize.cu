// gguf_iqgrid_quantize.cu: gguf_quantize for ggml's grid types IQ2_XXS, IQ2_XS, IQ2_S,
// IQ3_XXS, IQ3_S, IQ1_S and IQ1_M: quantize_row_iq2_xxs_impl ... quantize_row_iq1_m_impl
// (ggml-quants.c @ d99724f2, IQ1_M's split search llama.cpp @ 0c1e57098;
// refquant.formats.gguf_iqgrid_search, whose docstrings give the steps). The sub-blocks of
// a super-block are searched independently, so each is one thread: a super-block is nsub
// consecutive threads of a block (8 for the 32-element sub-blocks, 16 for IQ2_XS, IQ2_S,
// IQ1_M; IQ_THREADS a multiple of both), which leave their result in shared memory; after a
// barrier the first of them derives the super-block scale and writes the block's bytes.
// Every search is the C code's float32 operations in its order (sums from 0 in index order,
// products left to right, strict comparisons: the first candidate wins a tie; compiled
// without FMA contraction):
// bit-exact.
//
// Grid tables (the reference's grid_tables(name, nwant), from the launch code): levels
// (G, group) uint8, each grid point's levels l (value 2l + 1); kmap int32 (2**(bits*group)),
// the grid index of point u = sum l_i << bits*i or -1; nbr int32, the neighbour lists of
// the off-grid points back to back, ordered by (distance, index); start int32
// (2**(bits*group) + 1): point u's list is nbr[start[u] .. start[u + 1]).
#include "gguf_search.cuh"

#define IQ_THREADS 64    // threads per block (accel/cupy/gguf.py launches with the same)
#define EPS_1E8 1e-8f    // GROUP_MAX_EPS_IQ3_XXS, GROUP_MAX_EPS_IQ2_S

enum IqKind { K_IQ2_XXS, K_IQ2_XS, K_IQ2_S, K_IQ3_XXS, K_IQ3_S, K_IQ1_S, K_IQ1_M };
enum Redo { REDO_OFF, REDO_ALL_IF_OFF, REDO_ALL };   // which groups the final re-pick redoes

struct GridTables {
    const u8* levels;
    const int* kmap;
    const int* nbr;
    const int* start;
};

// What one thread leaves for its super-block's writer.
struct SubResult {
    float scale;
    int live;
    int shift;      // IQ1_S: +1 / -1; IQ1_M: the shift pair k
    int signs[4];   // per group of 8
    int idx[8];     // grid index per group
};

// --- shared steps -------------------------------------------------------------------------

// sigma2 = factor * sum(x^2) / 256 over the super-block, the sum in index order.
__device__ __forceinline__ float super_sigma2(const float* xb, float factor) {
    float s = 0.0f;
    for (int i = 0; i < 256; ++i) s += xb[i] * xb[i];
    return (factor * s) / 256.0f;
}

// The weight of element i: qw * sqrtf(sigma2 + x^2) with an imatrix, else x^2 (IQ2_S:
// 0.25 sigma2 + x^2).
__device__ __forceinline__ float iq_weight(float v, const float* qw, int i, int has_im, float sigma2, bool iq2s) {
    if (has_im) return qw[i] * sqrtf(sigma2 + v * v);
    return iq2s ? 0.25f * sigma2 + v * v : v * v;
}

// xval = |x|; an odd count of negatives in a group of 8 negates the element with the least
// w*x*x (the first on a tie); 7 sign bits per group.
__device__ void even_signs(const float* x, const float* w, int n, float* xval, int* signs) {
    for (int k = 0; k < n / 8; ++k) {
        int nneg = 0, bits = 0, imin = 0;
        float vmin = 0.0f;
        for (int j = 0; j < 8; ++j) {
            const int i = 8 * k + j;
            const float v = x[i];
            xval[i] = fabsf(v);
            if (v < 0.0f) {
                ++nneg;
                bits |= 1 << j;
            }
            const float e = w[i] * v * v;
            if (j == 0 || e < vmin) {
                vmin = e;
                imin = j;
            }
        }
        if (nneg % 2 == 1) {
            xval[8 * k + imin] = -xval[8 * k + imin];
            bits ^= 1 << imin;
        }
        signs[k] = bits & 127;
    }
}

// xval = |x|, all 8 sign bits per group (IQ3_S, IQ2_S).
__device__ void plain_signs(const float* x, int n, float* xval, int* signs) {
    for (int k = 0; k < n / 8; ++k) {
        int bits = 0;
        for (int j = 0; j < 8; ++j) {
            const float v = x[8 * k + j];
            xval[8 * k + j] = fabsf(v);
            if (v < 0.0f) bits |= 1 << j;
        }
        signs[k] = bits;
    }
}

__device__ __forceinline__ float first_max(const float* v, int n) {
    float m = v[0];
    for (int i = 1; i < n; ++i) m = v[i] > m ? v[i] : m;
    return m;
}

__device__ __forceinline__ float abs_max(const float* v, int n) {
    float m = fabsf(v[0]);
    for (int i = 1; i < n; ++i) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

__device__ __forceinline__ int grid_point(const int* L, int k, int g, int bits) {
    int u = 0;
    for (int i = 0; i < g; ++i) u |= L[g * k + i] << (bits * i);
    return u;
}

// The neighbour of off-grid point u with the least sum over its elements of T[nlev*i + l]
// (the element's term at the candidate's level), the first on a tie.
__device__ __forceinline__ int best_neighbour(const GridTables& t, int u, int g, int nlev, const float* T) {
    int best = -1;
    float bestd = 0.0f;
    for (int c = t.start[u]; c < t.start[u + 1]; ++c) {
        const int gi = t.nbr[c];
        float d2 = 0.0f;
        for (int i = 0; i < g; ++i) d2 += T[nlev * i + t.levels[g * gi + i]];
        if (best < 0 || d2 < bestd) {
            best = gi;
            bestd = d2;
        }
    }
    return best;
}

// iq3_find_best_neighbour / iq2_find_best_neighbour on the groups with todo that are off
// the grid (least sum waux*(scale*q - xval)^2); on[k] receives whether group k was on it.
__device__ void snap(int* L, const float* xval, const float* waux, float scale, int n, int g, int bits, int nlev,
                     const GridTables& t, const bool* todo, bool* on) {
    float T[32];
    for (int k = 0; k < n / g; ++k) {
        const int u = grid_point(L, k, g, bits);
        on[k] = t.kmap[u] >= 0;
        if (on[k] || !todo[k]) continue;
        for (int i = 0; i < g; ++i)
            for (int l = 0; l < nlev; ++l) {
                const float diff = scale * static_cast<float>(2 * l + 1) - xval[g * k + i];
                T[nlev * i + l] = waux[g * k + i] * diff * diff;
            }
        const int best = best_neighbour(t, u, g, nlev, T);
        for (int i = 0; i < g; ++i) L[g * k + i] = t.levels[g * best + i];
    }
}

__device__ __forceinline__ void levels_of(const float* xval, float inv, int kmax, int n, int* L) {
    for (int i = 0; i < n; ++i) L[i] = clampi(nearest_int(0.5f * (inv * xval[i] - 1.0f)), 0, kmax - 1);
}

__device__ __forceinline__ void ls_sums(const float* w, const float* xval, const int* L, int n, float* sumqx,
                                        float* sumq2) {
    float sx = 0.0f, s2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float q = static_cast<float>(2 * L[i] + 1);
        sx += w[i] * xval[i] * q;
        s2 += w[i] * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

// Steps 3-4 (the reference's _search): trial scales id = (2 kmax - 1 + step*is)/denom for
// is = t0..t1, then the final re-pick. L, on hold the start and receive the result.
__device__ float grid_search(const float* xval, const float* w, const float* waux, int n, int g, int bits, int nlev,
                             const GridTables& t, int t0, int t1, float step, float denom, float scale, int* L,
                             bool* on, int redo) {
    const int ng = n / g;
    int Laux[32];
    bool onaux[8], todo[8];
    float best = 0.0f, sumqx, sumq2;
    for (int k = 0; k < ng; ++k) todo[k] = true;
    for (int it = t0; it <= t1; ++it) {
        const float inv = (static_cast<float>(2 * nlev - 1) + static_cast<float>(it) * step) / denom;
        levels_of(xval, inv, nlev, n, Laux);
        snap(Laux, xval, waux, 1.0f / inv, n, g, bits, nlev, t, todo, onaux);
        ls_sums(w, xval, Laux, n, &sumqx, &sumq2);
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            for (int i = 0; i < n; ++i) L[i] = Laux[i];
            for (int k = 0; k < ng; ++k) on[k] = onaux[k];
        }
    }
    bool any_off = false;
    for (int k = 0; k < ng; ++k) any_off |= !on[k];
    if (redo == REDO_ALL ? scale > 0.0f : (any_off && scale > 0.0f)) {
        for (int k = 0; k < ng; ++k) todo[k] = redo == REDO_OFF ? !on[k] : true;
        levels_of(xval, 1.0f / scale, nlev, n, Laux);
        snap(Laux, xval, waux, scale, n, g, bits, nlev, t, todo, onaux);
        for (int k = 0; k < ng; ++k)
            if (todo[k])
                for (int i = 0; i < g; ++i) L[g * k + i] = Laux[g * k + i];
        ls_sums(w, xval, L, n, &sumqx, &sumq2);
        if (sumq2 > 0.0f) scale = sumqx / sumq2;
    }
    return scale;
}

// --- IQ2 / IQ3: one sub-block -------------------------------------------------------------

struct IqConfig {
    int sub, g, bits, nlev, t0, t1, redo;
    float step, fudge;
    bool parity;    // 7 sign bits + parity (else all 8 stored)
};

__device__ __forceinline__ IqConfig iq_config(int kind) {
    switch (kind) {
        case K_IQ2_XXS: return {32, 8, 2, 3, -6, 6, REDO_ALL, 0.1f, 1.0f, true};
        case K_IQ2_XS: return {16, 8, 2, 3, -9, 9, REDO_OFF, 0.1f, 1.0f, true};
        case K_IQ2_S: return {16, 8, 2, 3, -9, 9, REDO_OFF, 0.1f, 0.9875f, false};
        case K_IQ3_XXS: return {32, 4, 3, 8, -15, 15, REDO_OFF, 0.2f, 1.0125f, true};
        default: return {32, 4, 3, 8, -9, 9, REDO_ALL_IF_OFF, 0.2f, 1.033f, false};   // K_IQ3_S
    }
}

// Sub-block ib of super-block xb (weights: sigma2 as the type computes it) into r.
__device__ void grid_sub_block(int kind, const float* xb, const float* qw, int has_im, float sigma2, int ib,
                               const GridTables& t, SubResult* r) {
    const IqConfig c = iq_config(kind);
    const int a = c.sub * ib, ng = c.sub / c.g;
    float w[32], waux[32], xval[32];
    int L[32];
    bool on[8];
    for (int i = 0; i < c.sub; ++i) {
        w[i] = iq_weight(xb[a + i], qw, a + i, has_im, sigma2, kind == K_IQ2_S);
        waux[i] = sqrtf(w[i]);
    }
    if (c.parity) {
        even_signs(xb + a, w, c.sub, xval, r->signs);
    } else {
        plain_signs(xb + a, c.sub, xval, r->signs);
    }
    const float vmax = first_max(xval, c.sub);
    bool live = kind == K_IQ3_S ? vmax != 0.0f
                                : !(vmax < (kind == K_IQ3_XXS || kind == K_IQ2_S ? EPS_1E8 : GROUP_MAX_EPS));
    for (int i = 0; i < c.sub; ++i) L[i] = 0;
    for (int k = 0; k < ng; ++k) on[k] = kind != K_IQ3_S;
    float scale = 0.0f;
    if (kind == K_IQ2_XXS) {
        int Lqp[32];
        const float qp_scale = make_qp_quants(c.sub, 4, xval, Lqp, w);
        const float eff_max = qp_scale * 3.0f;
        live = live && eff_max > 0.0f;
        if (live) {
            for (int i = 0; i < c.sub; ++i) L[i] = Lqp[i];
            scale = grid_search(xval, w, waux, c.sub, c.g, c.bits, c.nlev, t, c.t0, c.t1, c.step, eff_max, qp_scale,
                                L, on, c.redo);
        }
    } else if (live) {
        const float start = vmax / (c.g == 4 ? 15.0f : 5.0f);
        scale = grid_search(xval, w, waux, c.sub, c.g, c.bits, c.nlev, t, c.t0, c.t1, c.step, vmax, start, L, on,
                            c.redo);
    }
    // ggml's "should never happen": a negative scale made positive, the stored signs flipped
    r->live = live;
    if (!live) {
        for (int k = 0; k < c.sub / 8; ++k) r->signs[k] = 0;
        for (int k = 0; k < ng; ++k) r->idx[k] = 0;
        r->scale = 0.0f;
        return;
    }
    if (scale < 0.0f) {
        scale = -scale;
        for (int k = 0; k < c.sub / 8; ++k) r->signs[k] = ~r->signs[k] & (c.parity ? 127 : 255);
    }
    for (int k = 0; k < ng; ++k) r->idx[k] = t.kmap[grid_point(L, k, c.g, c.bits)];
    r->scale = scale;
}

__device__ __forceinline__ void put_u16(u8* o, u32 v) {
    o[0] = static_cast<u8>(v & 0xffu);
    o[1] = static_cast<u8>((v >> 8) & 0xffu);
}

__device__ __forceinline__ void put_u32(u8* o, u32 v) {
    for (int k = 0; k < 4; ++k) o[k] = static_cast<u8>((v >> (8 * k)) & 0xffu);
}

// The largest of the m scales (the first on a tie); the block's bytes set to 0.
__device__ __forceinline__ float max_scale_and_clear(const SubResult* r, int m, u8* ob, int size) {
    float mx = r[0].scale;
    for (int i = 1; i < m; ++i) mx = r[i].scale > mx ? r[i].scale : mx;
    for (int i = 0; i < size; ++i) ob[i] = 0;
    return mx;
}

// Step 5 and the layout: d = max_scale/31 stored as fp16(d*fudge), 4-bit sub-block scales.
__device__ void grid_write(int kind, const SubResult* r, u8* ob, int size) {
    const IqConfig c = iq_config(kind);
    const int nsub = 256 / c.sub;
    const float max_scale = max_scale_and_clear(r, nsub, ob, size);
    const bool zero = max_scale == 0.0f;
    int ls[16];
    u32 dh = 0;
    if (!zero) {
        const float d = max_scale / 31.0f, inv_d = 1.0f / d;
        for (int i = 0; i < nsub; ++i) ls[i] = clampi(nearest_int(0.5f * (inv_d * r[i].scale - 1.0f)), 0, 15);
        dh = f32_to_fp16_bits(d * c.fudge);
    } else {
        if (kind != K_IQ3_S && kind != K_IQ2_S) return;
        for (int i = 0; i < nsub; ++i) ls[i] = 0;
    }
    put_u16(ob, dh);
    if (kind == K_IQ3_XXS || kind == K_IQ2_XXS) {
        for (int ib = 0; ib < 8; ++ib) {
            const int* s = r[ib].signs;
            const u32 sas = static_cast<u32>(s[0]) | (static_cast<u32>(s[1]) << 7) | (static_cast<u32>(s[2]) << 14) |
                            (static_cast<u32>(s[3]) << 21) | (static_cast<u32>(ls[ib]) << 28);
            if (kind == K_IQ3_XXS) {
                for (int k = 0; k < 8; ++k) ob[2 + 8 * ib + k] = static_cast<u8>(r[ib].idx[k]);
                put_u32(ob + 66 + 4 * ib, sas);
            } else {
                for (int k = 0; k < 4; ++k) ob[2 + 8 * ib + k] = static_cast<u8>(r[ib].idx[k]);
                put_u32(ob + 2 + 8 * ib + 4, sas);
            }
        }
    } else if (kind == K_IQ2_XS) {
        for (int ib = 0; ib < 16; ++ib)
            for (int k = 0; k < 2; ++k)
                put_u16(ob + 2 + 2 * (2 * ib + k), static_cast<u32>(r[ib].idx[k] | (r[ib].signs[k] << 9)));
        for (int i = 0; i < 8; ++i) ob[66 + i] = static_cast<u8>(ls[2 * i] | (ls[2 * i + 1] << 4));
    } else if (kind == K_IQ2_S) {
        for (int ib = 0; ib < 16; ++ib)
            for (int k = 0; k < 2; ++k) {
                const int grp = 2 * ib + k, idx = r[ib].idx[k];
                ob[2 + grp] = static_cast<u8>(idx & 255);
                ob[34 + grp] = static_cast<u8>(r[ib].signs[k]);
                ob[66 + grp / 4] |= static_cast<u8>((idx >> 8) << (2 * (grp % 4)));
            }
        if (!zero)
            for (int i = 0; i < 8; ++i) ob[74 + i] = static_cast<u8>(ls[2 * i] | (ls[2 * i + 1] << 4));
        else
            put_u16(ob, 0);
    } else {   // IQ3_S: qs / signs of live sub-blocks moved to the front (ggml's write pointers)
        int slot = 0;
        for (int ib = 0; ib < 8; ++ib) {
            if (!r[ib].live) continue;
            int h = 0;
            for (int k = 0; k < 8; ++k) {
                h |= (r[ib].idx[k] >> 8) << k;
                ob[2 + 8 * slot + k] = static_cast<u8>(r[ib].idx[k] & 255);
            }
            ob[66 + ib] = static_cast<u8>(h);
            for (int k = 0; k < 4; ++k) ob[74 + 4 * slot + k] = static_cast<u8>(r[ib].signs[k]);
            ++slot;
        }
        if (!zero)
            for (int i = 0; i < 4; ++i) ob[106 + i] = static_cast<u8>(ls[2 * i] | (ls[2 * i + 1] << 4));
        else
            put_u16(ob, 0);
    }
}

// --- IQ1_S, IQ1_M: the exhaustive 3-level split over the sorted sub-block -----------------

__device__ __forceinline__ float x_shifted(int negative, int l) {   // x_p / x_m of quantize_row_iq1_s_impl
    return static_cast<float>(l - 1) + (negative ? -0.125f : 0.125f);
}

// Indices sorting x ascending, equal values in index order (stable insertion sort).
__device__ void sort_order(const float* x, int n, int* order) {
    for (int i = 0; i < n; ++i) {
        int j = i;
        while (j > 0 && x[order[j - 1]] > x[i]) {
            order[j] = order[j - 1];
            --j;
        }
        order[j] = i;
    }
}

// iq1_find_best_neighbour2 for group k of 8: the grid index of its point or, off the grid,
// the neighbour minimizing sum w*(scale*xx[l] - x)^2 (first on a tie); *off: it was off.
__device__ int iq1_neighbour(const int* L, int k, const float* xs, const float* ws, float scale, int negative,
                             const GridTables& t, bool* off) {
    const int u = grid_point(L, k, 8, 2), gi = t.kmap[u];
    *off = gi < 0;
    if (gi >= 0) return gi;
    float T[24];
    for (int i = 0; i < 8; ++i)
        for (int l = 0; l < 3; ++l) {
            const float diff = scale * x_shifted(negative, l) - xs[8 * k + i];
            T[3 * i + l] = ws[8 * k + i] * diff * diff;
        }
    return best_neighbour(t, u, 8, 3, T);
}

// After the split: levels L of groups ngroups of 8 to grid indices (r->idx), then, if any
// group was off the grid, scale = sum w*q*x / sum w*q^2 when both are positive.
// negative(k): whether group k uses the -1/8 values.
template <typename Neg>
__device__ float iq1_snap_refit(const int* L, int ngroups, const float* xs, const float* ws, float scale, Neg negative,
                                const GridTables& t, int live, SubResult* r) {
    bool redo = false;
    for (int k = 0; k < ngroups; ++k) {
        bool off = false;
        r->idx[k] = live ? iq1_neighbour(L, k, xs, ws, scale, negative(k), t, &off) : 0;
        redo |= off;
    }
    if (redo) {
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int k = 0; k < ngroups; ++k)
            for (int i = 0; i < 8; ++i) {
                const float q = x_shifted(negative(k), t.levels[8 * r->idx[k] + i]);
                sumqx += ws[8 * k + i] * q * xs[8 * k + i];
                sumq2 += ws[8 * k + i] * q * q;
            }
        if (sumqx > 0.0f && sumq2 > 0.0f) scale = sumqx / sumq2;
    }
    return scale;
}

struct NegIq1s {
    int shift;
    __device__ int operator()(int) const { return shift != 1; }
};

// IQ1_M's shift pair k: bit 1 for the first half, bit 0 for the second (-1/8 when set).
__device__ __forceinline__ int iq1m_negative(int k, int half) { return half == 0 ? k >= 2 : k % 2 == 1; }

struct NegIq1m {
    int k;
    __device__ int operator()(int half) const { return iq1m_negative(k, half); }
};

// IQ1_S sub-block ib (quantize_row_iq1_s_impl) into r.
__device__ void iq1s_sub_block(const float* xb, const float* qw, float sigma2, int ib, const GridTables& t,
                               SubResult* r) {
    const float* xs = xb + 32 * ib;
    float ws[32], sumx[33], sumw[33];
    int order[32], L[32];
    for (int i = 0; i < 32; ++i) ws[i] = iq_weight(xs[i], qw, 32 * ib + i, 1, sigma2, false);
    const float vmax = abs_max(xs, 32);
    sort_order(xs, 32, order);
    sumx[0] = sumw[0] = 0.0f;
    for (int i = 0; i < 32; ++i) {   // np.add.accumulate: starts at the first term
        const float tx = ws[order[i]] * xs[order[i]];
        sumx[i + 1] = i == 0 ? tx : sumx[i] + tx;
        sumw[i + 1] = i == 0 ? ws[order[i]] : sumw[i] + ws[order[i]];
    }
    float best = -3.402823466e38f, scale = vmax;
    int b1 = -1, b2 = -1, shift = 0;
    for (int i1 = 0; i1 <= 32; ++i1) {
        const float a = sumx[i1] - sumx[0], aw = sumw[i1] - sumw[0];
        for (int i2 = i1; i2 <= 32; ++i2) {
            const float b = sumx[i2] - sumx[i1], c = sumx[32] - sumx[i2];
            const float bw = sumw[i2] - sumw[i1], cw = sumw[32] - sumw[i2];
            for (int neg = 0; neg < 2; ++neg) {
                const float x0 = x_shifted(neg, 0), x1 = x_shifted(neg, 1), x2 = x_shifted(neg, 2);
                const float sumqx = a * x0 + b * x1 + c * x2;
                const float sumq2 = aw * x0 * x0 + bw * x1 * x1 + cw * x2 * x2;
                if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    b1 = i1;
                    b2 = i2;
                    shift = neg ? -1 : 1;
                }
            }
        }
    }
    const int live = !(vmax < 1e-12f) && shift != 0;
    for (int pos = 0; pos < 32; ++pos) L[order[pos]] = (pos >= b1) + (pos >= b2);
    if (scale < 0.0f) {
        for (int i = 0; i < 32; ++i) L[i] = 2 - L[i];
        scale = -scale;
        shift = -shift;
    }
    scale = iq1_snap_refit(L, 4, xs, ws, scale, NegIq1s{shift}, t, live, r);
    r->live = live;
    r->scale = live ? scale : 0.0f;
    r->shift = live ? shift : 1;
}

__device__ void iq1s_write(const SubResult* r, u8* ob) {
    const float max_scale = max_scale_and_clear(r, 8, ob, 50);
    if (max_scale == 0.0f) return;
    const float d = max_scale / 15.0f, inv_d = 1.0f / d;
    put_u16(ob, f32_to_fp16_bits(d * 1.125f));
    for (int ib = 0; ib < 8; ++ib) {
        const int ls = clampi(nearest_int(0.5f * (inv_d * r[ib].scale - 1.0f)), 0, 7) | (r[ib].shift == -1 ? 8 : 0);
        u32 h = static_cast<u32>(ls) << 12;
        for (int k = 0; k < 4; ++k) {
            ob[2 + 4 * ib + k] = static_cast<u8>(r[ib].idx[k] & 255);
            h |= static_cast<u32>(r[ib].idx[k] >> 8) << (3 * k);
        }
        put_u16(ob + 34 + 2 * ib, h);
    }
}

// IQ1_M sub-block ib of 16 (quantize_row_iq1_m_impl, llama.cpp @ 0c1e57098) into r: the
// split scored from per-half prefix sums over the sorted values (the reference's _iq1m_split).
__device__ void iq1m_sub_block(const float* xb, const float* qw, int has_im, float sigma2, int ib, const GridTables& t,
                               SubResult* r) {
    const float* xs = xb + 16 * ib;
    float ws[16], px[2][17], pw[2][17];
    int order[16], L[16];
    for (int i = 0; i < 16; ++i) ws[i] = iq_weight(xs[i], qw, 16 * ib + i, has_im, sigma2, false);
    const float vmax = abs_max(xs, 16);
    sort_order(xs, 16, order);
    px[0][0] = px[1][0] = pw[0][0] = pw[1][0] = 0.0f;
    for (int j = 0; j < 16; ++j) {
        const int e = order[j], h = e >= 8;
        px[h][j + 1] = px[h][j] + ws[e] * xs[e];
        px[1 - h][j + 1] = px[1 - h][j];
        pw[h][j + 1] = pw[h][j] + ws[e];
        pw[1 - h][j + 1] = pw[1 - h][j];
    }
    float best = -3.402823466e38f, scale = vmax;
    int b1 = -1, b2 = -1, bk = -1;
    for (int i1 = 0; i1 <= 16; ++i1)
        for (int i2 = i1; i2 <= 16; ++i2)
            for (int k = 0; k < 4; ++k) {
                float sumqx = 0.0f, sumq2 = 0.0f;
                for (int h = 0; h < 2; ++h) {
                    const int neg = iq1m_negative(k, h);
                    const float v0 = x_shifted(neg, 0), v1 = x_shifted(neg, 1), v2 = x_shifted(neg, 2);
                    const float qx = px[h][16] * v2 - (px[h][i1] + px[h][i2]);
                    const float q2 = pw[h][16] * v2 * v2 + pw[h][i1] * (v0 * v0 - v1 * v1)
                                     + pw[h][i2] * (v1 * v1 - v2 * v2);
                    sumqx = h == 0 ? qx : sumqx + qx;
                    sumq2 = h == 0 ? q2 : sumq2 + q2;
                }
                if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    b1 = i1;
                    b2 = i2;
                    bk = k;
                }
            }
    const int live = !(vmax < 1e-7f) && bk >= 0;
    if (bk < 0) b1 = b2 = 0;   // nothing accepted: the first split (all level 2)
    for (int pos = 0; pos < 16; ++pos) L[order[pos]] = (pos >= b1) + (pos >= b2);
    if (scale < 0.0f) {
        for (int i = 0; i < 16; ++i) L[i] = 2 - L[i];
        scale = -scale;
        bk = 3 - bk;
    }
    scale = iq1_snap_refit(L, 2, xs, ws, scale, NegIq1m{bk}, t, live, r);
    r->live = live;
    r->scale = live ? scale : 0.0f;
    r->shift = live ? bk : 0;
}

// Per super-block: 3-bit scales from d = max_scale/15, then d refit over the super-block
// (every sub-block included: zero ones decode grid point 0) and stored as fp16(d*1.1125)
// in the top nibbles of the four scale words.
__device__ void iq1m_write(const SubResult* r, const float* xb, const float* qw, int has_im, float sigma2,
                           const GridTables& t, u8* ob) {
    const float max_scale = max_scale_and_clear(r, 16, ob, 56);
    if (max_scale == 0.0f) return;
    float d = max_scale / 15.0f;
    const float inv_d = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    u32 sc[4] = {0, 0, 0, 0};
    for (int ib = 0; ib < 16; ++ib) {
        const int ls = clampi(nearest_int(0.5f * (inv_d * r[ib].scale - 1.0f)), 0, 7);
        sc[ib / 4] |= static_cast<u32>(ls) << (3 * (ib % 4));
        const float fl = static_cast<float>(2 * ls + 1);
        for (int k = 0; k < 2; ++k)
            for (int i = 0; i < 8; ++i) {
                const int e = 16 * ib + 8 * k + i;
                const float we = iq_weight(xb[e], qw, e, has_im, sigma2, false);
                const float q = x_shifted(iq1m_negative(r[ib].shift, k), t.levels[8 * r[ib].idx[k] + i]) * fl;
                sumqx += we * q * xb[e];
                sumq2 += we * q * q;
            }
        ob[2 * ib] = static_cast<u8>(r[ib].idx[0] & 255);
        ob[2 * ib + 1] = static_cast<u8>(r[ib].idx[1] & 255);
        const int mask = (iq1m_negative(r[ib].shift, 0) ? 0x08 : 0) | (iq1m_negative(r[ib].shift, 1) ? 0x80 : 0);
        ob[32 + ib] = static_cast<u8>((r[ib].idx[0] >> 8) | ((r[ib].idx[1] >> 8) << 4) | mask);
    }
    if (sumq2 > 0.0f) d = sumqx / sumq2;
    const u32 h = f32_to_fp16_bits(d * 1.1125f);
    sc[0] |= (h & 0xFu) << 12;
    sc[1] |= (h & 0xF0u) << 8;
    sc[2] |= (h & 0xF00u) << 4;
    sc[3] |= h & 0xF000u;
    for (int k = 0; k < 4; ++k) put_u16(ob + 48 + 2 * k, sc[k]);
}

// --- the kernels --------------------------------------------------------------------------

// x (rows, n) float32, n a multiple of 256; qw (n,) the imatrix when has_im; out the
// blocks, size bytes each. Threads [s*nsub, (s+1)*nsub) of a block take super-block s of
// the block's current batch, one sub-block each (grid-stride over batches).
template <int KIND>
__device__ void iq_grid_rows(const float* x, i64 rows, i64 n, const float* qw, int has_im, const GridTables& t,
                             u8* out, int* bad) {
    __shared__ SubResult slots[IQ_THREADS];
    constexpr int nsub = KIND == K_IQ2_XS || KIND == K_IQ2_S || KIND == K_IQ1_M ? 16 : 8;
    constexpr int size = KIND == K_IQ2_XXS ? 66 : KIND == K_IQ2_XS ? 74 : KIND == K_IQ2_S ? 82
                       : KIND == K_IQ3_XXS ? 98 : KIND == K_IQ3_S ? 110 : KIND == K_IQ1_S ? 50 : 56;
    constexpr float factor = KIND == K_IQ2_XXS || KIND == K_IQ2_XS ? 1.0f : 2.0f;
    const i64 per_row = n / 256, total = rows * per_row, per_block = IQ_THREADS / nsub;
    const int ib = static_cast<int>(threadIdx.x) % nsub, first = static_cast<int>(threadIdx.x) - ib;
    for (i64 batch = blockIdx.x * per_block; batch < total; batch += static_cast<i64>(gridDim.x) * per_block) {
        const i64 b = batch + threadIdx.x / nsub;
        const float* xb = x + b * 256;
        const float* qwb = has_im ? qw + (b % per_row) * 256 : qw;
        float sigma2 = 0.0f;
        if (b < total) {
            sigma2 = super_sigma2(xb, factor);
            if (KIND == K_IQ1_S) {
                iq1s_sub_block(xb, qwb, sigma2, ib, t, &slots[threadIdx.x]);
            } else if (KIND == K_IQ1_M) {
                iq1m_sub_block(xb, qwb, has_im, sigma2, ib, t, &slots[threadIdx.x]);
            } else {
                grid_sub_block(KIND, xb, qwb, has_im, sigma2, ib, t, &slots[threadIdx.x]);
            }
        }
        __syncthreads();
        if (b < total && ib == 0) {
            flag_nonfinite(xb, 256, bad);
            u8* ob = out + b * size;
            if (KIND == K_IQ1_S) {
                iq1s_write(&slots[first], ob);
            } else if (KIND == K_IQ1_M) {
                iq1m_write(&slots[first], xb, qwb, has_im, sigma2, t, ob);
            } else {
                grid_write(KIND, &slots[first], ob, size);
            }
        }
        __syncthreads();   // the slots are refilled by the next batch
    }
}

// Every kernel: (x, rows, n, qw, has_im, levels, kmap, nbr, start, out, bad).
extern "C" __global__ void gguf_quantize_iq2_xxs(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ2_XXS>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
extern "C" __global__ void gguf_quantize_iq2_xs(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ2_XS>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
extern "C" __global__ void gguf_quantize_iq2_s(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ2_S>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
extern "C" __global__ void gguf_quantize_iq3_xxs(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ3_XXS>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
extern "C" __global__ void gguf_quantize_iq3_s(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ3_S>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
extern "C" __global__ void gguf_quantize_iq1_s(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ1_S>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
extern "C" __global__ void gguf_quantize_iq1_m(const float* x, i64 rows, i64 n, const float* qw, int has_im,
    const u8* levels, const int* kmap, const int* nbr, const int* start, u8* out, int* bad) {
    iq_grid_rows<K_IQ1_M>(x, rows, n, qw, has_im, GridTables{levels, kmap, nbr, start}, out, bad);
}
