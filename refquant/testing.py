"""Comparators for checking an implementation against refquant.

Failures explain themselves: they name what was compared, count the differing
elements and blocks, show the worst block, and for floats the number of differing
bits, so a mismatch in one block of a 4096x4096 tensor is found at a glance
(gguf-py's ``compare_tensors`` and array-api-tests' assertion messages are the model).

    >>> import numpy as np
    >>> assert_bitexact(np.float32([1, 2]), np.float32([1, 2]))
    >>> assert_ulp(np.float32([1.0]), np.nextafter(np.float32([1.0]), np.float32(2)), ulp=1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import check_int

__all__ = ["assert_bitexact", "assert_ulp", "block_diff_report", "matmul_error_bound"]


def _bits(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "fc" and a.dtype.itemsize in (2, 4, 8):
        return a.view(f"u{a.dtype.itemsize}")
    if a.dtype.kind == "V" or a.dtype.names:                      # structured blocks: compare bytes
        return np.ascontiguousarray(a).view(np.uint8).reshape(a.shape + (-1,))
    return a


def block_diff_report(actual: Any, desired: Any, *, block_size: int | None = None, max_blocks: int = 3) -> str:
    """Describe where two equally shaped arrays differ (empty string when they are identical).

    Parameters
    ----------
    actual, desired : array_like, same shape and dtype
        Compared bit for bit (floats through their bit patterns; NaN equals NaN only
        when the bit patterns are equal).
    block_size : int, optional
        Elements per block along the last axis (e.g. 32 for Q4_0 rows, 256 for K-quants);
        default: the whole last axis is one block.
    max_blocks : int
        How many differing blocks to show.

    Returns
    -------
    str
        Number of differing elements and blocks, then the worst blocks (most differing
        elements first) with their first differing positions and, for floats, values and
        the count of differing bits.
    """
    a, d = np.asarray(actual), np.asarray(desired)
    if a.shape != d.shape or a.dtype != d.dtype:
        return f"shape/dtype mismatch: actual {a.shape} {a.dtype}, desired {d.shape} {d.dtype}"
    if a.size == 0:
        return ""
    bad = _bits(a) != _bits(d)
    if bad.ndim > a.ndim:                                         # per-byte comparison of structured blocks
        bad = bad.any(axis=-1)
    if not bad.any():
        return ""
    last = a.shape[-1] if a.ndim else 1
    bs = last if block_size is None else check_int("block_size", block_size, min=1)
    flat_bad = bad.reshape(-1, last) if a.ndim else bad.reshape(1, 1)
    n_blocks_row = -(-last // bs)
    pad = n_blocks_row * bs - last
    per_block = np.pad(flat_bad, ((0, 0), (0, pad))).reshape(flat_bad.shape[0], n_blocks_row, bs).sum(axis=2)
    total_blocks = per_block.size
    lines = [f"{int(bad.sum())} of {bad.size} elements differ, in {int((per_block > 0).sum())} of "
             f"{total_blocks} blocks of {bs}"]
    order = np.argsort(-per_block, axis=None, kind="stable")[:max_blocks]
    a2, d2 = (a.reshape(-1, last), d.reshape(-1, last)) if a.ndim else (a.reshape(1, 1), d.reshape(1, 1))
    for flat in order:
        r, b = divmod(int(flat), n_blocks_row)
        if per_block[r, b] == 0:
            break
        cols = np.nonzero(flat_bad[r, b * bs:(b + 1) * bs])[0][:4] + b * bs
        parts = []
        for c in cols:
            av, dv = a2[r, c], d2[r, c]
            if a.dtype.kind == "f":
                nbits = bin(int(_bits(np.asarray(av)) ^ _bits(np.asarray(dv)))).count("1")
                parts.append(f"[{c}] {av!r} vs {dv!r} ({nbits} bits differ)")
            else:
                parts.append(f"[{c}] {av!r} vs {dv!r}")
        lines.append(f"  row {r} block {b}: {int(per_block[r, b])} differ; " + "; ".join(parts))
    return "\n".join(lines)


def assert_bitexact(actual: Any, desired: Any, *, block_size: int | None = None, what: str = "arrays") -> None:
    """Raise AssertionError unless ``actual`` and ``desired`` have identical shape, dtype and bits.

    Signed zeros and NaN payloads count (use :func:`assert_ulp` for tolerant float
    comparisons). The message is :func:`block_diff_report`, prefixed by ``what``.

    Parameters
    ----------
    actual : array_like
    desired : array_like
        Compared with ``actual`` bit for bit (any dtype).
    block_size : int >= 1 or None
        Elements per block along the last axis in the report; None: the whole last axis.
    what : str
        Prefix of the message.
    """
    report = block_diff_report(actual, desired, block_size=block_size)
    if report:
        raise AssertionError(f"{what} are not bit-exact: {report}")


def assert_ulp(actual: Any, desired: Any, *, ulp: int = 1, what: str = "arrays") -> None:
    """Raise AssertionError unless every element is within ``ulp`` units in the last place.

    Units are those of ``desired``'s dtype at ``desired``'s magnitude (``np.spacing``);
    NaN must face NaN and infinities must be equal.

    Parameters
    ----------
    actual : ndarray of float
    desired : ndarray of float
        actual's shape and dtype.
    ulp : int >= 0
    what : str
        Prefix of the message.
    """
    ulp = check_int("ulp", ulp, min=0)
    a, d = np.asarray(actual), np.asarray(desired)
    if a.shape != d.shape or a.dtype != d.dtype:
        raise AssertionError(f"{what}: shape/dtype mismatch: actual {a.shape} {a.dtype}, desired {d.shape} {d.dtype}")
    if a.dtype.kind != "f":
        raise TypeError(f"assert_ulp compares floating-point arrays, got dtype {a.dtype}")
    with np.errstate(invalid="ignore", over="ignore"):
        nan_bad = np.isnan(a) != np.isnan(d)
        inf_bad = (np.isinf(a) | np.isinf(d)) & (a != d) & ~np.isnan(a) & ~np.isnan(d)
        finite = np.isfinite(a) & np.isfinite(d)
        diff = np.abs(a.astype(np.float64) - d.astype(np.float64))
        limit = ulp * np.abs(np.spacing(np.abs(d))).astype(np.float64)
        far = finite & (diff > limit)
    bad = nan_bad | inf_bad | far
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements beyond {ulp} ulp; "
                             f"first at {idx}: actual {a[idx]!r}, desired {d[idx]!r}")


def matmul_error_bound(a: Any, b: Any) -> np.ndarray:
    """Bound on ``|fl(a @ b) - a @ b|`` for a float32 product summed in any order.

    A float32 dot product of length ``n`` computed in *any* summation order (blocked,
    pairwise, split across threads, with or without FMA) satisfies
    ``|fl(x·y) - x·y| <= gamma_n * (|x|·|y|)`` with ``gamma_n = n u / (1 - n u)`` and
    ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
    2002, section 3.1, eq. (3.5)). BLAS results for the same operands therefore differ
    between blockings (batch splits, thread counts, ``M = 1`` GEMV paths) by up to twice
    this bound, which is the tolerance to use when the same float32 product is computed
    through two different paths; bit equality is not promised.

    Parameters
    ----------
    a : array_like of float, shape (..., m, n)
    b : array_like of float, shape (..., n, p)

    Returns
    -------
    ndarray of float64, shape of ``a @ b``
        ``gamma_n * (|a| @ |b|)``, computed in float64.

    Raises
    ------
    ValueError
        If ``n * u >= 1`` (the bound is then meaningless) or the shapes do not multiply.
    """
    shape = np.shape(a)
    n = shape[-1] if shape else 1
    u = 2.0 ** -24
    if n * u >= 1:
        raise ValueError(f"a has reduction length n={n}; the float32 bound needs n < 2**24")
    return n * u / (1 - n * u) * (np.abs(np.asarray(a, np.float64)) @ np.abs(np.asarray(b, np.float64)))

