// gguf_search.cuh: ggml's candidate-scale searches (ggml-quants.c @ d99724f2:
// make_qx_quants, make_q3_quants, make_qkx2_quants / make_qkx3_quants, make_qp_quants),
// each the C function's sequential float32 loops in its order, one sub-block per call.
// Codes go to int arrays holding what ggml's int8_t / uint8_t arrays hold.
#pragma once
#include "gguf_common.cuh"

#define GROUP_MAX_EPS 1e-15f

__device__ __forceinline__ int clampi(int v, int lo, int hi) { return max(lo, min(hi, v)); }

// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = w): L[i] = l + nmax; returns the scale.
__device__ float make_qx_quants(int n, int nmax, const float* x, const float* w, int* L) {
    float amax;
    const float mx = signed_absmax(x, n, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float fnmax = static_cast<float>(nmax);
    float iscale = -fnmax / mx, sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = l + nmax;
        const float fl = static_cast<float>(l);
        sumlx += w[i] * x[i] * fl;
        suml2 += w[i] * fl * fl;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(fnmax + 0.1f * static_cast<float>(is)) / mx;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const float fl = static_cast<float>(clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            sumlx += w[i] * x[i] * fl;
            suml2 += w[i] * fl * fl;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1) + nmax;
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// make_q3_quants(n, nmax, x, L, do_rmse = true): weights x^2, least squares, up to five
// coordinate-descent passes; L[i] = l + nmax; scale 0 unless suml2 > 0.
__device__ float make_q3_quants(int n, int nmax, const float* x, int* L) {
    float amax;
    const float mx = signed_absmax(x, n, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float iscale = -static_cast<float>(nmax) / mx;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = l;
        const float w = x[i] * x[i], fl = static_cast<float>(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i], fli = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * fli;
            if (slx > 0.0f) {
                float sl2 = suml2 - w * fli * fli;
                const int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    const float fn = static_cast<float>(new_l);
                    slx += w * x[i] * fn;
                    sl2 += w * fn * fn;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] += nmax;
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// make_qkx2_quants / make_qkx3_quants (with weights: the same rule): codes 0..nmax in L,
// *the_min = -min; returns the scale (0, codes 0 when max == min).
__device__ float make_qkx_quants(int n, int nmax, const float* x, const float* w, int* L, float* the_min, int* Laux,
                                 float rmin, float rdelta, int nstep, bool use_mad) {
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0.0f) mn = 0.0f;
    if (mx == mn) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -mn;
        return 0.0f;
    }
    const float fnmax = static_cast<float>(nmax);
    float iscale = fnmax / (mx - mn), scale = 1.0f / iscale, best = 0.0f;
    for (int i = 0; i < n; ++i) {
        L[i] = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
        float diff = scale * static_cast<float>(L[i]) + mn - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best += w[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (mx - mn);
        float sl = 0.0f, sl2 = 0.0f, sxl = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = l;
            const float wl = w[i] * static_cast<float>(l);
            sl += wl;
            sl2 += wl * static_cast<float>(l);
            sxl += wl * x[i];
        }
        const float D = sum_w * sl2 - sl * sl;
        if (D > 0.0f) {
            float ts = (sum_w * sxl - sum_x * sl) / D, tm = (sl2 * sum_x - sl * sxl) / D;
            if (tm > 0.0f) {
                tm = 0.0f;
                ts = sxl / sl2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = ts * static_cast<float>(Laux[i]) + tm - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best = err;
                scale = ts;
                mn = tm;
            }
        }
    }
    *the_min = -mn;
    return scale;
}

// make_qp_quants: non-negative values to codes 0..nmax (as uint8_t stores), 9 scales,
// coordinate descent; 0 when suml2 is not > 0.
__device__ float make_qp_quants(int n, int nmax, const float* x, int* L, const float* w) {
    float mx = 0.0f;
    for (int i = 0; i < n; ++i) mx = mx > x[i] ? mx : x[i];
    if (mx < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float fnmax = static_cast<float>(nmax);
    float iscale = fnmax / mx;
    for (int i = 0; i < n; ++i) L[i] = nearest_int(iscale * x[i]) & 0xff;
    const float scale = 1.0f / iscale;
    float best_mse = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * static_cast<float>(L[i]);
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / mx, scale_is = 1.0f / iscale_is;
        float mse = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = min(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * static_cast<float>(l);
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = min(nmax, nearest_int(iscale * x[i]));
        L[i] = l & 0xff;
        const float fl = static_cast<float>(l);
        sumlx += w[i] * x[i] * fl;
        suml2 += w[i] * fl * fl;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w[i] * x[i] * li, sl2 = suml2 - w[i] * li * li;
            if (slx > 0.0f && sl2 > 0.0f) {
                const int new_l = min(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    const float fn = static_cast<float>(new_l);
                    slx += w[i] * x[i] * fn;
                    sl2 += w[i] * fn * fn;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = new_l & 0xff;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}
