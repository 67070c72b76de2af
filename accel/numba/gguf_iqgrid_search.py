"""ggml's grid searches (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M) as Numba kernels.

``quantize_row_iq3_xxs_impl``, ``quantize_row_iq3_s_impl``, ``quantize_row_iq2_xxs_impl``,
``quantize_row_iq2_xs_impl``, ``quantize_row_iq2_s_impl``, ``quantize_row_iq1_s_impl`` and
``quantize_row_iq1_m_impl`` (``ggml-quants.c``, ggml-org/ggml @ d99724f2; IQ1_M's split
search llama.cpp @ 0c1e57098), one super-block of 256 per loop iteration, one sub-block at a
time as the C code runs them. The steps and
their float32 rules are those written out in :mod:`refquant.formats.gguf_iqgrid_search`
(the NumPy form, vectorized over sub-blocks); here each is a scalar loop in C's order:
every sum ``s += ...`` from 0 in index order, products left to right, ``nearest_int``
ggml's bit trick, strict comparisons so the first candidate wins a tie. The grid tables
(levels, ``kmap``, neighbour lists ordered by (distance, index)) are the reference's
(:func:`refquant.formats.gguf_iqgrid_search.grid_tables`), passed in as arrays.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange, types

from accel.numba.gguf_math import _lanes_alloca, GROUP_MAX_EPS, f32, fp32_to_fp16, ghelper, gkernel, nearest_int
from accel.numba.gguf_blocks import instantiate, register
from accel.numba.gguf_search import make_qp_quants
from refquant.formats.gguf_iqgrid_search import SEARCH_GRIDS, grid_tables

__all__ = ["QUANTIZE"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_EPS8 = np.float32(1e-8)        # GROUP_MAX_EPS_IQ3_XXS, GROUP_MAX_EPS_IQ2_S
CHUNK = 4                       # super-blocks per prange iteration
OFF, ALL_IF_OFF, ALL = range(3)  # which groups the final re-pick redoes
_stack_terms = _lanes_alloca(types.float32, 24)  # a group's 8 x 3 neighbour-score terms, on the stack


@ghelper
def _weights(xb, qw, has_im, factor, w, waux):  # type: ignore[no-untyped-def]
    """Step 1 on a super-block: ``w = x²``, or ``qw·sqrtf(sigma2 + x²)`` with
    ``sigma2 = factor·Σx²/256``; ``waux = sqrtf(w)``."""
    s = _ZERO
    for i in range(256):
        s += xb[i] * xb[i]
    sigma2 = (f32(factor) * s) / np.float32(256.0)
    for i in range(256):
        v = xb[i]
        w[i] = qw[i] * np.sqrt(sigma2 + v * v) if has_im else v * v
        waux[i] = np.sqrt(w[i])


@ghelper
def _even_signs(x, w, n, xval, signs):  # type: ignore[no-untyped-def]
    """Step 2 with parity: xval = |x|, the element with the least ``w·x·x`` of a group of 8
    with an odd number of negatives negated; 7 sign bits per group into ``signs``."""
    for k in range(n // 8):
        nneg = 0
        bits = 0
        imin = 0
        vmin = _ZERO
        for j in range(8):
            i = 8 * k + j
            v = x[i]
            xval[i] = np.abs(v)
            if v < 0:
                nneg += 1
                bits |= 1 << j
            e = w[i] * v * v
            if j == 0 or e < vmin:
                vmin = e
                imin = j
        if nneg % 2 == 1:
            xval[8 * k + imin] = -xval[8 * k + imin]
            bits ^= 1 << imin
        signs[k] = bits & 127


@ghelper
def _plain_signs(x, n, xval, signs):  # type: ignore[no-untyped-def]
    """Step 2 without parity (IQ3_S, IQ2_S): xval = |x|, all 8 sign bits per group."""
    for k in range(n // 8):
        bits = 0
        for j in range(8):
            v = x[8 * k + j]
            xval[8 * k + j] = np.abs(v)
            if v < 0:
                bits |= 1 << j
        signs[k] = bits


@ghelper
def _vmax(xval, n):  # type: ignore[no-untyped-def]
    m = xval[0]
    for i in range(1, n):
        m = xval[i] if xval[i] > m else m
    return m


@ghelper
def _levels_of(xval, inv, kmax, n, L):  # type: ignore[no-untyped-def]
    """``clamp(nearest_int(0.5·(inv·xval - 1)), 0, kmax - 1)``."""
    for i in range(n):
        L[i] = max(0, min(kmax - 1, nearest_int(_HALF * (inv * xval[i] - _ONE))))


@ghelper
def _point(L, k, g, bits):  # type: ignore[no-untyped-def]
    u = 0
    for i in range(g):
        u |= L[g * k + i] << (bits * i)
    return u


@ghelper
def _snap(L, xval, waux, scale, n, g, bits, levels, kmap, nbr, cnt, todo, on):  # type: ignore[no-untyped-def]
    """``iq3_find_best_neighbour`` / ``iq2_find_best_neighbour`` on the groups with ``todo``
    that are off the grid (least ``Σ waux·(scale·q - xval)²``, the first on a tie); ``on``
    receives whether each group was on the grid."""
    for k in range(n // g):
        u = _point(L, k, g, bits)
        on[k] = kmap[u] >= 0
        if on[k] or not todo[k]:
            continue
        best = -1
        bestd = _ZERO
        if g == 8:  # 2-bit grids, long lists: each element's term for its 3 levels once, then lookups
            T = numba.carray(_stack_terms(), 24)
            for i in range(8):
                for lev in range(3):
                    diff = scale * f32(2 * lev + 1) - xval[8 * k + i]
                    T[3 * i + lev] = waux[8 * k + i] * diff * diff
            for c in range(cnt[u]):
                gi = nbr[u, c]
                d2 = _ZERO
                for i in range(8):
                    d2 += T[3 * i + levels[gi, i]]
                if best < 0 or d2 < bestd:
                    best = gi
                    bestd = d2
        else:
            for c in range(cnt[u]):
                gi = nbr[u, c]
                d2 = _ZERO
                for i in range(g):
                    diff = scale * f32(2 * levels[gi, i] + 1) - xval[g * k + i]
                    d2 += waux[g * k + i] * diff * diff
                if best < 0 or d2 < bestd:
                    best = gi
                    bestd = d2
        for i in range(g):
            L[g * k + i] = levels[best, i]


@ghelper
def _ls_sums(w, xval, L, n):  # type: ignore[no-untyped-def]
    sumqx = _ZERO
    sumq2 = _ZERO
    for i in range(n):
        q = f32(2 * L[i] + 1)
        sumqx += w[i] * xval[i] * q
        sumq2 += w[i] * q * q
    return sumqx, sumq2


@ghelper
def _search(xval, w, waux, n, g, bits, levels, kmap, nbr, cnt, kmax, t0, t1, step, denom, scale, L, on, redo,
            Laux, onaux, todo):  # type: ignore[no-untyped-def]
    """Steps 3-4 on one sub-block (the reference's ``_search``): trial scales
    ``id = (2 kmax - 1 + step·is)/denom`` for ``is = t0..t1``, then the final re-pick.
    ``L``, ``on`` hold the start and receive the result; returns the scale."""
    ng = n // g
    best = _ZERO
    for k in range(ng):
        todo[k] = True
    for it in range(t0, t1 + 1):
        inv = (f32(2 * kmax - 1) + f32(it) * step) / denom
        this_scale = _ONE / inv
        _levels_of(xval, inv, kmax, n, Laux)
        _snap(Laux, xval, waux, this_scale, n, g, bits, levels, kmap, nbr, cnt, todo, onaux)
        sumqx, sumq2 = _ls_sums(w, xval, Laux, n)
        if sumq2 > _ZERO and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            for i in range(n):
                L[i] = Laux[i]
            for k in range(ng):
                on[k] = onaux[k]
    any_off = False
    for k in range(ng):
        any_off |= not on[k]
    again = scale > _ZERO if redo == ALL else (any_off and scale > _ZERO)
    if again:
        for k in range(ng):
            todo[k] = (not on[k]) if redo == OFF else True
        _levels_of(xval, _ONE / scale, kmax, n, Laux)
        _snap(Laux, xval, waux, scale, n, g, bits, levels, kmap, nbr, cnt, todo, onaux)
        for k in range(ng):
            if todo[k]:
                for i in range(g):
                    L[g * k + i] = Laux[g * k + i]
        sumqx, sumq2 = _ls_sums(w, xval, L, n)
        if sumq2 > _ZERO:
            scale = sumqx / sumq2
    return scale


@ghelper
def _finish(scale, live, signs, sign_mask, L, n, g, bits, kmap, idx):  # type: ignore[no-untyped-def]
    """A negative scale is made positive with the stored signs flipped; dead sub-blocks get
    scale 0, no signs and grid index 0. Writes ``idx`` (n / g,), returns the scale."""
    if not live:
        for k in range(n // 8):
            signs[k] = 0
        for k in range(n // g):
            idx[k] = 0
        return _ZERO
    if scale < _ZERO:
        scale = -scale
        for k in range(n // 8):
            signs[k] = ~signs[k] & sign_mask
    for k in range(n // g):
        idx[k] = kmap[_point(L, k, g, bits)]
    return scale


@ghelper
def _super_scale(scales, m, fudge, ls):  # type: ignore[no-untyped-def]
    """Step 5: ``d = max_scale/31``; returns (fp16 bits of ``d·fudge``, all-zero); ``ls``
    receives ``clamp(nearest_int(0.5·(scale/d - 1)), 0, 15)`` with the float32 ``1/d``."""
    max_scale = scales[0]
    for i in range(1, m):
        max_scale = scales[i] if scales[i] > max_scale else max_scale
    if max_scale == _ZERO:
        for i in range(m):
            ls[i] = 0
        return 0, True
    d = max_scale / np.float32(31.0)
    inv_d = _ONE / d
    for i in range(m):
        ls[i] = max(0, min(15, nearest_int(_HALF * (inv_d * scales[i] - _ONE))))
    return fp32_to_fp16(d * fudge), False


@ghelper
def _put_u32(ob, pos, v):  # type: ignore[no-untyped-def]
    for k in range(4):
        ob[pos + k] = np.uint8((v >> (8 * k)) & 0xFF)


@ghelper
def _put_fp16_bits(ob, pos, h):  # type: ignore[no-untyped-def]
    ob[pos] = np.uint8(h & 0xFF)
    ob[pos + 1] = np.uint8((h >> 8) & 0xFF)


IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S = range(5)


@ghelper
def _grid_super_block(kind, xb, qw, has_im, ob, levels, kmap, nbr, cnt, w, waux, xval, L, Laux, Lqp, on, onaux,
                      todo, alive, signs, idx, scales, ls):  # type: ignore[no-untyped-def]
    """One super-block of IQ3_XXS / IQ3_S / IQ2_XXS / IQ2_XS / IQ2_S into ``ob``."""
    sub = 16 if kind == IQ2_XS or kind == IQ2_S else 32
    g = 4 if kind == IQ3_XXS or kind == IQ3_S else 8
    bits = 3 if g == 4 else 2
    kmax = 8 if g == 4 else 3
    nsub = 256 // sub
    if kind == IQ2_S and not has_im:
        s = _ZERO
        for i in range(256):
            s += xb[i] * xb[i]
        sigma2 = (np.float32(2.0) * s) / np.float32(256.0)
        for i in range(256):
            w[i] = np.float32(0.25) * sigma2 + xb[i] * xb[i]
            waux[i] = np.sqrt(w[i])
    else:
        _weights(xb, qw, has_im, 1 if (kind == IQ2_XXS or kind == IQ2_XS) else 2, w, waux)
    ng = sub // g
    ns = sub // 8
    for ib in range(nsub):
        a = sub * ib
        xs = xb[a:a + sub]
        ws = w[a:a + sub]
        was = waux[a:a + sub]
        xv = xval[a:a + sub]
        sg = signs[ib * ns:(ib + 1) * ns]
        if kind == IQ3_S or kind == IQ2_S:
            _plain_signs(xs, sub, xv, sg)
        else:
            _even_signs(xs, ws, sub, xv, sg)
        vmax = _vmax(xv, sub)
        if kind == IQ3_S:
            live = vmax != _ZERO
        elif kind == IQ3_XXS or kind == IQ2_S:
            live = not (vmax < _EPS8)
        else:
            live = not (vmax < GROUP_MAX_EPS)
        Ls = L[a:a + sub]
        for i in range(sub):
            Ls[i] = 0
        for k in range(ng):
            on[k] = kind != IQ3_S
        scale = _ZERO
        if kind == IQ2_XXS:
            qp_scale = make_qp_quants(sub, 4, xv, Lqp, ws)
            eff_max = qp_scale * np.float32(3.0)
            live = live and eff_max > _ZERO
            if live:
                for i in range(sub):
                    Ls[i] = np.int32(Lqp[i])
                scale = _search(xv, ws, was, sub, g, bits, levels, kmap, nbr, cnt, kmax, -6, 6, np.float32(0.1),
                                eff_max, qp_scale, Ls, on, ALL, Laux, onaux, todo)
        elif live:
            if g == 4:
                t0, t1 = (-15, 15) if kind == IQ3_XXS else (-9, 9)
                step = np.float32(0.2)
                start = vmax / np.float32(15.0)
            else:
                t0, t1 = -9, 9
                step = np.float32(0.1)
                start = vmax / np.float32(5.0)
            scale = _search(xv, ws, was, sub, g, bits, levels, kmap, nbr, cnt, kmax, t0, t1, step, vmax, start,
                            Ls, on, ALL_IF_OFF if kind == IQ3_S else OFF, Laux, onaux, todo)
        scales[ib] = _finish(scale, live, sg, 255 if (kind == IQ3_S or kind == IQ2_S) else 127, Ls, sub, g, bits,
                             kmap, idx[ib * ng:(ib + 1) * ng])
        alive[ib] = live
    fudge = np.float32(1.0)
    if kind == IQ3_XXS:
        fudge = np.float32(1.0125)
    elif kind == IQ3_S:
        fudge = np.float32(1.033)
    elif kind == IQ2_S:
        fudge = np.float32(0.9875)
    dh, zero = _super_scale(scales, nsub, fudge, ls)
    for i in range(ob.size):
        ob[i] = 0
    if zero and kind != IQ3_S and kind != IQ2_S:
        return
    _put_fp16_bits(ob, 0, dh)
    if kind == IQ3_XXS or kind == IQ2_XXS:
        for ib in range(8):
            sas = (np.uint32(signs[4 * ib]) | (np.uint32(signs[4 * ib + 1]) << 7) | (np.uint32(signs[4 * ib + 2]) << 14)
                   | (np.uint32(signs[4 * ib + 3]) << 21) | (np.uint32(ls[ib]) << 28))
            if kind == IQ3_XXS:
                for k in range(8):
                    ob[2 + 8 * ib + k] = np.uint8(idx[8 * ib + k])
                _put_u32(ob, 66 + 4 * ib, sas)
            else:
                for k in range(4):
                    ob[2 + 8 * ib + k] = np.uint8(idx[4 * ib + k])
                _put_u32(ob, 2 + 8 * ib + 4, sas)
    elif kind == IQ2_XS:
        for k in range(32):
            q2 = idx[k] | (signs[k] << 9)
            ob[2 + 2 * k] = np.uint8(q2 & 0xFF)
            ob[3 + 2 * k] = np.uint8((q2 >> 8) & 0xFF)
        for i in range(8):
            ob[66 + i] = np.uint8(ls[2 * i] | (ls[2 * i + 1] << 4))
    elif kind == IQ2_S:
        for k in range(32):
            ob[2 + k] = np.uint8(idx[k] & 255)
            ob[34 + k] = np.uint8(signs[k])
        for i in range(8):
            h = 0
            for k in range(4):
                h |= (idx[4 * i + k] >> 8) << (2 * k)
            ob[66 + i] = np.uint8(h)
            if not zero:
                ob[74 + i] = np.uint8(ls[2 * i] | (ls[2 * i + 1] << 4))
        if zero:
            ob[0] = 0
            ob[1] = 0
    else:  # IQ3_S: qs / signs of live sub-blocks moved to the front (ggml's write pointers)
        slot = 0
        for ib in range(8):
            h = 0
            for k in range(8):
                h |= (idx[8 * ib + k] >> 8) << k
            ob[66 + ib] = np.uint8(h if alive[ib] else 0)
            if alive[ib]:
                for k in range(8):
                    ob[2 + 8 * slot + k] = np.uint8(idx[8 * ib + k] & 255)
                for k in range(4):
                    ob[74 + 4 * slot + k] = np.uint8(signs[4 * ib + k])
                slot += 1
        if zero:
            ob[0] = 0
            ob[1] = 0
        else:
            for i in range(4):
                ob[106 + i] = np.uint8(ls[2 * i] | (ls[2 * i + 1] << 4))


# --- IQ1_S, IQ1_M: the exhaustive 3-level split over the sorted sub-block --------------------

_X_P = np.array([-1 + 0.125, 0.125, 1 + 0.125], np.float32)      # x_p / x_m of quantize_row_iq1_s_impl
_X_M = np.array([-1 - 0.125, -0.125, 1 - 0.125], np.float32)
_MASKS_IQ1M = np.array([0x00, 0x80, 0x08, 0x88], np.int64)
_NEG_FLT_MAX = np.float32(-np.finfo(np.float32).max)
IQ1_S, IQ1_M = 5, 6


@ghelper
def _sort_order(x, n, order):  # type: ignore[no-untyped-def]
    """Indices sorting x ascending, equal values in index order (a stable insertion sort;
    glibc's ``qsort`` in the golden vectors' ggml keeps that order, see the reference)."""
    for i in range(n):
        j = i
        while j > 0 and x[order[j - 1]] > x[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@ghelper
def _iq1_neighbour(L, k, xs, ws, scale, xx, levels, kmap, nbr, cnt):  # type: ignore[no-untyped-def]
    """``iq1_find_best_neighbour2`` for group k of 8: the grid index of ``u`` or, off the
    grid, the neighbour minimizing ``Σ w·(scale·xx[l] - x)²`` (the first on a tie)."""
    u = _point(L, k, 8, 2)
    gi = kmap[u]
    if gi >= 0:
        return gi, False
    best = -1
    bestd = _ZERO
    T = numba.carray(_stack_terms(), 24)            # each element's term for its 3 levels, then lookups
    for i in range(8):
        for lev in range(3):
            diff = scale * xx[lev] - xs[8 * k + i]
            T[3 * i + lev] = ws[8 * k + i] * diff * diff
    for c in range(cnt[u]):
        cand = nbr[u, c]
        d2 = _ZERO
        for i in range(8):
            d2 += T[3 * i + levels[cand, i]]
        if best < 0 or d2 < bestd:
            best = cand
            bestd = d2
    return best, True


@ghelper
def _group_ls_sums(xx, gi, levels, ws, xs, off, sumqx, sumq2):  # type: ignore[no-untyped-def]
    """The least-squares sums continued over one group of 8 at ``off`` (grid point ``gi``)."""
    for i in range(8):
        q = xx[levels[gi, i]]
        sumqx += ws[off + i] * q * xs[off + i]
        sumq2 += ws[off + i] * q * q
    return sumqx, sumq2


@ghelper
def _max_and_clear(scales, m, ob):  # type: ignore[no-untyped-def]
    """The largest of the ``m`` sub-block scales; the block's bytes set to 0."""
    max_scale = scales[0]
    for i in range(1, m):
        max_scale = scales[i] if scales[i] > max_scale else max_scale
    for i in range(ob.size):
        ob[i] = 0
    return max_scale


@ghelper
def _iq1s_split(xs, ws, n, order, sumx, sumw):  # type: ignore[no-untyped-def]
    """The reference's ``_iq1_best_split`` on one sub-block: (scale, i1, i2, shift)."""
    _sort_order(xs, n, order)
    sumx[0] = _ZERO
    sumw[0] = _ZERO
    for i in range(n):
        t = ws[order[i]] * xs[order[i]]
        sumx[i + 1] = t if i == 0 else sumx[i] + t           # np.add.accumulate: starts at the first term
        sumw[i + 1] = ws[order[i]] if i == 0 else sumw[i] + ws[order[i]]
    best = _NEG_FLT_MAX
    scale = np.abs(xs[0])
    for i in range(1, n):
        a = np.abs(xs[i])
        scale = a if a > scale else scale
    b1 = -1
    b2 = -1
    shift = 0
    for i1 in range(n + 1):
        a = sumx[i1] - sumx[0]
        aw = sumw[i1] - sumw[0]
        for i2 in range(i1, n + 1):
            b = sumx[i2] - sumx[i1]
            c = sumx[n] - sumx[i2]
            bw = sumw[i2] - sumw[i1]
            cw = sumw[n] - sumw[i2]
            for sgn in (1, -1):
                xx = _X_P if sgn == 1 else _X_M
                sumqx = a * xx[0] + b * xx[1] + c * xx[2]
                sumq2 = aw * xx[0] * xx[0] + bw * xx[1] * xx[1] + cw * xx[2] * xx[2]
                if sumq2 > _ZERO and sumqx * sumqx > best * sumq2:
                    scale = sumqx / sumq2
                    best = scale * sumqx
                    b1 = i1
                    b2 = i2
                    shift = sgn
    return scale, b1, b2, shift


@ghelper
def _iq1s_super_block(xb, qw, ob, levels, kmap, nbr, cnt, w, waux, L, order, sumx, sumw, idx, scales,
                      shifts):  # type: ignore[no-untyped-def]
    """One IQ1_S super-block (``quantize_row_iq1_s_impl``) into ``ob`` (50 bytes)."""
    _weights(xb, qw, True, 2, w, waux)
    for ib in range(8):
        xs = xb[32 * ib:32 * ib + 32]
        ws = w[32 * ib:32 * ib + 32]
        Ls = L[32 * ib:32 * ib + 32]
        vmax = np.abs(xs[0])
        for i in range(1, 32):
            a = np.abs(xs[i])
            vmax = a if a > vmax else vmax
        scale, b1, b2, shift = _iq1s_split(xs, ws, 32, order, sumx, sumw)
        live = not (vmax < np.float32(1e-12)) and shift != 0
        for pos in range(32):
            Ls[order[pos]] = (1 if pos >= b1 else 0) + (1 if pos >= b2 else 0)
        if scale < _ZERO:
            for i in range(32):
                Ls[i] = 2 - Ls[i]
            scale = -scale
            shift = -shift
        xx = _X_P if shift == 1 else _X_M
        redo = False
        for k in range(4):
            gi, off = _iq1_neighbour(Ls, k, xs, ws, scale, xx, levels, kmap, nbr, cnt)
            idx[4 * ib + k] = gi if live else 0
            redo |= off and live
        if redo:
            sumqx = _ZERO
            sumq2 = _ZERO
            for k in range(4):
                sumqx, sumq2 = _group_ls_sums(xx, idx[4 * ib + k], levels, ws, xs, 8 * k, sumqx, sumq2)
            if sumqx > _ZERO and sumq2 > _ZERO:
                scale = sumqx / sumq2
        scales[ib] = scale if live else _ZERO
        shifts[ib] = shift if live else 1
    max_scale = _max_and_clear(scales, 8, ob)
    if max_scale == _ZERO:
        return
    d = max_scale / np.float32(15.0)
    _put_fp16_bits(ob, 0, fp32_to_fp16(d * np.float32(1.125)))
    inv_d = _ONE / d
    for ib in range(8):
        ls = max(0, min(7, nearest_int(_HALF * (inv_d * scales[ib] - _ONE))))
        ls |= 8 if shifts[ib] == -1 else 0
        h = ls << 12
        for k in range(4):
            ob[2 + 4 * ib + k] = np.uint8(idx[4 * ib + k] & 255)
            h |= (idx[4 * ib + k] >> 8) << (3 * k)
        _put_fp16_bits(ob, 34 + 2 * ib, h)


@ghelper
def _iq1m_xx(k, half):  # type: ignore[no-untyped-def]
    """The shifted values of half ``half`` (0, 1) of a sub-block under shift pair ``k``
    (bit 1: first half -1/8, bit 0: second half -1/8)."""
    neg = (k >= 2) if half == 0 else (k % 2 == 1)
    return _X_M if neg else _X_P


@ghelper
def _iq1m_split(xs, ws, order, scale, px, pw):  # type: ignore[no-untyped-def]
    """The split search of ``quantize_row_iq1_m_impl`` on one sub-block of 16 (llama.cpp @
    0c1e57098: per-half prefix sums over the sorted values, px / pw float32 (2, 17) scratch;
    the reference's ``_iq1m_split`` gives the formulas): (scale, i1, i2, k)."""
    _sort_order(xs, 16, order)
    px[0, 0] = _ZERO
    px[1, 0] = _ZERO
    pw[0, 0] = _ZERO
    pw[1, 0] = _ZERO
    for j in range(16):
        e = order[j]
        h = 1 if e >= 8 else 0
        px[h, j + 1] = px[h, j] + ws[e] * xs[e]
        px[1 - h, j + 1] = px[1 - h, j]
        pw[h, j + 1] = pw[h, j] + ws[e]
        pw[1 - h, j + 1] = pw[1 - h, j]
    best = _NEG_FLT_MAX
    b1 = -1
    b2 = -1
    bk = -1
    for i1 in range(17):
        for i2 in range(i1, 17):
            for k in range(4):
                sumqx = _ZERO
                sumq2 = _ZERO
                for h in range(2):
                    v = _iq1m_xx(k, h)
                    qx = px[h, 16] * v[2] - (px[h, i1] + px[h, i2])
                    q2 = pw[h, 16] * v[2] * v[2] + pw[h, i1] * (v[0] * v[0] - v[1] * v[1]) + \
                        pw[h, i2] * (v[1] * v[1] - v[2] * v[2])
                    sumqx = qx if h == 0 else sumqx + qx
                    sumq2 = q2 if h == 0 else sumq2 + q2
                if sumq2 > _ZERO and sumqx * sumqx > best * sumq2:
                    scale = sumqx / sumq2
                    best = scale * sumqx
                    b1 = i1
                    b2 = i2
                    bk = k
    return scale, b1, b2, bk


@ghelper
def _iq1m_super_block(xb, qw, has_im, ob, levels, kmap, nbr, cnt, w, waux, L, order, idx, scales,
                      shifts, px, pw):  # type: ignore[no-untyped-def]
    """One IQ1_M super-block (``quantize_row_iq1_m_impl``) into ``ob`` (56 bytes)."""
    _weights(xb, qw, has_im, 2, w, waux)
    for ib in range(16):
        xs = xb[16 * ib:16 * ib + 16]
        ws = w[16 * ib:16 * ib + 16]
        Ls = L[16 * ib:16 * ib + 16]
        vmax = np.abs(xs[0])
        for i in range(1, 16):
            a = np.abs(xs[i])
            vmax = a if a > vmax else vmax
        scale, b1, b2, bk = _iq1m_split(xs, ws, order, vmax, px, pw)
        live = not (vmax < np.float32(1e-7)) and bk >= 0
        if bk < 0:                                        # nothing accepted: the first split (all level 2)
            b1 = 0
            b2 = 0
        for pos in range(16):
            Ls[order[pos]] = (1 if pos >= b1 else 0) + (1 if pos >= b2 else 0)
        if scale < _ZERO:
            for i in range(16):
                Ls[i] = 2 - Ls[i]
            scale = -scale
            bk = 3 - bk
        redo = False
        for k in range(2):
            gi, off = _iq1_neighbour(Ls, k, xs, ws, scale, _iq1m_xx(bk, k), levels, kmap, nbr, cnt)
            idx[2 * ib + k] = gi if live else 0
            redo |= off and live
        if redo:
            sumqx = _ZERO
            sumq2 = _ZERO
            for k in range(2):
                sumqx, sumq2 = _group_ls_sums(_iq1m_xx(bk, k), idx[2 * ib + k], levels, ws, xs, 8 * k, sumqx, sumq2)
            if sumqx > _ZERO and sumq2 > _ZERO:
                scale = sumqx / sumq2
        scales[ib] = scale if live else _ZERO
        shifts[ib] = bk if live else 0
    max_scale = _max_and_clear(scales, 16, ob)
    if max_scale == _ZERO:
        return
    d = max_scale / np.float32(15.0)
    inv_d = _ONE / d
    sumqx = _ZERO
    sumq2 = _ZERO
    sc0 = 0
    sc1 = 0
    sc2 = 0
    sc3 = 0
    for ib in range(16):
        ls = max(0, min(7, nearest_int(_HALF * (inv_d * scales[ib] - _ONE))))
        word = ls << (3 * (ib % 4))
        if ib < 4:
            sc0 |= word
        elif ib < 8:
            sc1 |= word
        elif ib < 12:
            sc2 |= word
        else:
            sc3 |= word
        fl = f32(2 * ls + 1)
        for k in range(2):
            xx = _iq1m_xx(shifts[ib], k)
            for i in range(8):
                e = 16 * ib + 8 * k + i
                q = xx[levels[idx[2 * ib + k], i]] * fl
                sumqx += w[e] * q * xb[e]
                sumq2 += w[e] * q * q
        ob[2 * ib] = np.uint8(idx[2 * ib] & 255)
        ob[2 * ib + 1] = np.uint8(idx[2 * ib + 1] & 255)
        ob[32 + ib] = np.uint8((idx[2 * ib] >> 8) | ((idx[2 * ib + 1] >> 8) << 4) | _MASKS_IQ1M[shifts[ib]])
    if sumq2 > _ZERO:
        d = sumqx / sumq2
    h = fp32_to_fp16(d * np.float32(1.1125))
    sc0 |= (h & 0xF) << 12
    sc1 |= (h & 0xF0) << 8
    sc2 |= (h & 0xF00) << 4
    sc3 |= h & 0xF000
    _put_fp16_bits(ob, 48, sc0)
    _put_fp16_bits(ob, 50, sc1)
    _put_fp16_bits(ob, 52, sc2)
    _put_fp16_bits(ob, 54, sc3)


def _quantize_template(x, imatrix, has_im, out, levels, kmap, nbr, cnt):  # type: ignore[no-untyped-def]
    """Rows x float32 (rows, 256 k) into out uint8 (rows, k·block bytes), a few super-blocks per
    prange iteration with their scratch arrays; ``KIND`` (bound by :func:`_quantizer`) picks the
    type's super-block rule at compile time."""
    rows, n = x.shape
    nbr_row = n // 256
    total = rows * nbr_row
    size = out.shape[1] // nbr_row
    for c in prange((total + CHUNK - 1) // CHUNK):
        w = np.empty(256, np.float32)
        waux = np.empty(256, np.float32)
        xval = np.empty(256, np.float32)
        L = np.empty(256, np.int32)
        Laux = np.empty(32, np.int32)
        Lqp = np.empty(32, np.uint8)
        on = np.empty(8, np.bool_)
        alive = np.empty(16, np.bool_)
        onaux = np.empty(8, np.bool_)
        todo = np.empty(8, np.bool_)
        signs = np.empty(32, np.int64)
        idx = np.empty(64, np.int64)
        scales = np.empty(16, np.float32)
        ls = np.empty(16, np.int64)
        order = np.empty(32, np.int64)
        sumx = np.empty(33, np.float32)
        sumw = np.empty(33, np.float32)
        px = np.empty((2, 17), np.float32)
        pw = np.empty((2, 17), np.float32)
        for b in range(c * CHUNK, min(total, (c + 1) * CHUNK)):
            r = b // nbr_row
            j = b - r * nbr_row
            qw = imatrix[j * 256:(j + 1) * 256] if has_im else imatrix
            xb = x[r, j * 256:(j + 1) * 256]
            ob = out[r, j * size:(j + 1) * size]
            if KIND == IQ1_S:  # noqa: F821 - bound by instantiate
                _iq1s_super_block(xb, qw, ob, levels, kmap, nbr, cnt, w, waux, L, order, sumx, sumw, idx, scales,
                                  ls)
            elif KIND == IQ1_M:  # noqa: F821
                _iq1m_super_block(xb, qw, has_im, ob, levels, kmap, nbr, cnt, w, waux, L, order, idx, scales, ls,
                                  px, pw)
            else:
                _grid_super_block(KIND, xb, qw, has_im, ob, levels, kmap, nbr, cnt, w, waux, xval, L, Laux, Lqp, on,
                                  onaux, todo, alive, signs, idx, scales, ls)


def _quantizer(name: str, kind: int):  # type: ignore[no-untyped-def]
    """The registered op for one type: its own kernel (``KIND`` a compile-time constant; the
    super-block rules are compiled once, shared by the kernels) and its grid tables
    (:data:`refquant.formats.gguf_iqgrid_search.SEARCH_GRIDS`, built once, on first use)."""
    kernel = register(gkernel(instantiate(_quantize_template, f"{name}_quantize", KIND=kind)))
    cache: list = []

    def run(x, imatrix, sigma2, has_im, out):  # type: ignore[no-untyped-def]
        if not cache:
            t = grid_tables(*SEARCH_GRIDS[name])
            cache.extend(np.ascontiguousarray(a) for a in (t.levels, t.kmap, t.neighbours, t.counts.astype(np.int32)))
        kernel(x, imatrix, has_im, out, *cache)
    return run


QUANTIZE = {name: _quantizer(name, k) for k, name in enumerate(("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s",
                                                                "iq1_s", "iq1_m"))}
