"""Codebook element types: a code is an index into a table of float32 values.

A :class:`Codebook` holds its values in code order (as published) and a tie rule.
Encoding picks the nearest value. "Nearest" is decided exactly as bitsandbytes' CPU
quantizer does it: sort the table (stable), take the float32 midpoints
``(v[i] + v[i+1]) / 2`` of sorted neighbours, and bucketize; a value exactly on a
midpoint goes to the neighbour named by the tie rule. Decoding is a table lookup.

=========  =====  ==============================================  ===========  ===========
name       codes  values                                          tie          source
=========  =====  ==============================================  ===========  ===========
nf4        16     NormalFloat quantiles of N(0, 1), in [-1, 1]    lower        bitsandbytes
fp4        16     bitsandbytes FP4 (not OCP e2m1), in [-1, 1]     lower        bitsandbytes
iq4_nl     16     ggml ``kvalues_iq4nl``: -127 ... 113            upper        ggml
ternary    3      -1, 0, 1 (codes 0, 1, 2)                        toward_zero  BitNet b1.58
binary     2      -1, +1 (codes 0, 1)                             lower        BitNet b1
=========  =====  ==============================================  ===========  ===========

Tie rules (a tie is an input equal to the float32 midpoint of two sorted neighbours):

* ``lower``: the smaller value. bitsandbytes' CPU ``quantize_4bit`` (``torch.bucketize``
  with ``right=False`` on the midpoints) and its CUDA ``dQuantizeNF4`` (strict ``>``
  tests) both do this. For ``binary`` it defines ``sign(0) = -1`` (also for -0.0), the
  BitNet b1 ``Sign`` (+1 if > 0, else -1).
* ``upper``: the larger value. ggml ``best_index_int8`` takes the lower neighbour
  only when it is strictly closer.
* ``toward_zero`` / ``away_from_zero``: the neighbour of smaller / larger magnitude
  (ambiguous, hence refused, for a midpoint of 0 between two distinct values).
  ``ternary`` uses ``toward_zero``, which equals BitNet b1.58's
  ``clamp(round_half_even(x), -1, 1)``; ggml ``TQ1_0``/``TQ2_0`` use ``lroundf``
  (``away_from_zero``) and build their codes with :func:`refquant.rounding.round_half_away`.

Non-finite input: -inf gets the smallest value's code; +inf **and NaN** get the
largest value's code (NaN sorts after every number, as in ``numpy.searchsorted`` and
``torch.bucketize``; bitsandbytes' CPU quantizer gives code 15 for NaN in nf4 and code 3,
i.e. +1.0, in fp4).

bitsandbytes FP4 has two zero codes: 0 and 8 (the sign bit set on a zero magnitude).
Both hold +0.0 in ``get_4bit_type`` (its table spells code 8 as the Python integer
``-0``, which is 0), so both decode to +0.0. The stable sort puts code 0 first, so
inputs in ``(-0.0026, 0]`` (including -0.0) get code 0 and ``(0, 0.0026]`` get code 8,
exactly as bitsandbytes' CPU backend (its CUDA kernel instead
sets the sign bit for ``x < 0``).

Codes are returned as uint8 (every codebook here has at most 256 entries); packing is
:mod:`refquant.packing`'s job.

References
----------
Dettmers et al., "QLoRA", NeurIPS 2023, section 3 (NF4); bitsandbytes 0.50.2
``functional.get_4bit_type`` and ``backends/default/ops.py`` (``quantize_4bit``);
ggml ``ggml-common.h`` ``kvalues_iq4nl`` and ``ggml-quants.c`` ``best_index_int8``;
Ma et al., "The Era of 1-bit LLMs" (BitNet b1.58), 2024; Wang et al., "BitNet", 2023.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from refquant._validate import as_float_array, as_int_array, normalize_name
from refquant.prepare import into

__all__ = ["Codebook", "CODEBOOKS", "TIE_RULES", "get_codebook", "codebook_encode", "codebook_decode"]

TIE_RULES = ("lower", "upper", "toward_zero", "away_from_zero")


@dataclass(frozen=True)
class Codebook:
    """A table of float32 values indexed by integer codes.

    Parameters
    ----------
    name : str
    values : tuple of float
        The value of each code, in code order; stored (and compared) as float32, so
        each must be finite in float32. Duplicates are allowed (bitsandbytes FP4 has
        two zero codes); the earlier code wins among equal values.
    tie : {"lower", "upper", "toward_zero", "away_from_zero"}
        Which neighbour an input exactly on a midpoint gets (module docstring).
    source : str
        Where the table comes from.
    """

    name: str
    values: tuple[float, ...]
    tie: str = "lower"
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.tie not in TIE_RULES:
            raise ValueError(f"tie={self.tie!r} is not supported; allowed: {', '.join(map(repr, TIE_RULES))}")
        vals = np.asarray(self.values, dtype=np.float64)
        if vals.ndim != 1 or not 2 <= vals.size <= 256:
            raise ValueError(f"values must be a flat sequence of 2 to 256 numbers, got {len(self.values)}")
        with np.errstate(over="ignore"):
            finite = np.isfinite(vals.astype(np.float32)).all()
        if not finite:
            raise ValueError(f"values of codebook {self.name!r} must be finite float32 numbers, got {self.values!r}")
        if self.tie in ("toward_zero", "away_from_zero"):
            s = np.sort(vals)
            if ((s[:-1] + s[1:] == 0) & (s[:-1] != s[1:])).any():
                raise ValueError(f"tie={self.tie!r} is ambiguous for codebook {self.name!r}: two values are "
                                 "symmetric about 0; use 'lower' or 'upper'")

    # ---- derived tables ------------------------------------------------------------
    @cached_property
    def table(self) -> np.ndarray:
        """Values in code order, float32, shape (n,), read-only."""
        t = np.asarray(self.values, dtype=np.float32)
        t.flags.writeable = False
        return t

    @cached_property
    def order(self) -> np.ndarray:
        """Codes sorted by value (stable: equal values keep code order), int64 (n,)."""
        o = np.argsort(self.table, kind="stable")
        o.flags.writeable = False
        return o

    @cached_property
    def midpoints(self) -> np.ndarray:
        """float32 ``(v[i] + v[i+1]) / 2`` of sorted neighbours, shape (n - 1,)."""
        s = self.table[self.order]
        m = (s[:-1] + s[1:]) / np.float32(2)
        m.flags.writeable = False
        return m

    @property
    def size(self) -> int:
        """Number of codes."""
        return len(self.values)

    @property
    def bits(self) -> int:
        """Bits needed per code, ``ceil(log2(size))``."""
        return max(1, (self.size - 1).bit_length())

    # ---- encode / decode -----------------------------------------------------------
    def encode(self, x: Any) -> np.ndarray:
        """Code of the nearest value for each element of ``x``.

        Parameters
        ----------
        x : array_like of float32 or float64, any shape
            float64 is rounded to float32 first (bitsandbytes and ggml work in float32).

        Returns
        -------
        ndarray of uint8, shape of ``x``

        Raises
        ------
        TypeError
            If ``x`` is not a floating-point array.
        """
        arr = as_float_array("x", x, dtypes=(np.float32, np.float64))
        if arr.dtype == np.float64:
            with np.errstate(over="ignore", invalid="ignore"):  # |x| > FLT_MAX -> inf; sNaN -> NaN
                arr = arr.astype(np.float32)
        mid = self.midpoints
        lo = _bucketize(mid, arr, "left")       # ties -> lower neighbour
        if self.tie == "lower":
            pos = lo
        else:
            hi = _bucketize(mid, arr, "right")  # ties -> upper neighbour
            if self.tie == "upper":
                pos = hi
            else:
                # On a tie, lo indexes the midpoint x sits on; its sign says which
                # neighbour is nearer zero (a negative midpoint: the upper one).
                at = mid[np.minimum(lo, mid.size - 1)]
                upper_is_smaller = at < 0
                take_hi = upper_is_smaller if self.tie == "toward_zero" else ~upper_is_smaller
                pos = np.where((hi != lo) & take_hi, hi, lo)
        return self.order[pos].astype(np.uint8)

    def decode(self, codes: Any) -> np.ndarray:
        """Values of ``codes``.

        Parameters
        ----------
        codes : array_like of integers in ``[0, size)``, any shape

        Returns
        -------
        ndarray of float32, shape of ``codes``

        Raises
        ------
        TypeError
            If ``codes`` is not an integer array.
        ValueError
            If a code is out of range.
        """
        return self.table[self.check_codes(codes)]

    def check_codes(self, codes: Any) -> np.ndarray:
        """``codes`` as an integer array, or TypeError / ValueError (a code outside ``[0, size)``)."""
        c = as_int_array("codes", codes)
        if c.size and (int(c.min()) < 0 or int(c.max()) >= self.size):
            bad = int(c.min()) if int(c.min()) < 0 else int(c.max())
            raise ValueError(f"codes contains {bad}, outside 0..{self.size - 1} for codebook {self.name!r}")
        return c


def _bucketize(mid: np.ndarray, x: np.ndarray, side: str) -> np.ndarray:
    """Position of ``x`` among the sorted midpoints: how many lie below it (``"left"``:
    strictly below, so a tie counts as below the midpoint; ``"right"``: at or below).
    NaN is placed after every midpoint. Equal to ``numpy.searchsorted(mid, x, side)``
    and to ``torch.bucketize(x, mid, right=(side == "right"))``; counting is ~3x faster
    than the binary search for the small tables here."""
    if mid.size > 32:
        return np.searchsorted(mid, x, side=side)
    pos = np.zeros(x.shape, np.uint8)
    for m in mid:
        pos += (m < x) if side == "left" else (m <= x)
    return np.where(np.isnan(x), np.uint8(mid.size), pos)


# ---- registered codebooks ----------------------------------------------------------

# bitsandbytes functional.get_4bit_type("nf4"): published float literals (the table
# create_normal_map(offset=0.9677083, use_extra_value=True) produced).
_NF4 = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)

# bitsandbytes get_4bit_type("fp4"): create_fp8_map(signed, 2 exponent bits, 1
# precision bit, 4 total bits) magnitudes in code order (bit 3 is the sign), divided by
# the largest, 12, in float32 as bitsandbytes does (tensor.div_(max)).
# Code 8 is +0.0: bitsandbytes writes it as the Python integer literal ``-0``, which is 0.
_BNB_FP4_RAW = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0,
                0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0)
_BNB_FP4 = tuple(float(np.float32(v) / np.float32(12.0)) for v in _BNB_FP4_RAW)

# ggml ggml-common.h kvalues_iq4nl (int8).
_IQ4_NL = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)

CODEBOOKS: dict[str, Codebook] = {c.name: c for c in (
    Codebook("nf4", _NF4, "lower", "bitsandbytes functional.get_4bit_type('nf4'); QLoRA section 3"),
    Codebook("fp4", _BNB_FP4, "lower", "bitsandbytes functional.get_4bit_type('fp4') (not OCP e2m1)"),
    Codebook("iq4_nl", tuple(float(v) for v in _IQ4_NL), "upper", "ggml ggml-common.h kvalues_iq4nl"),
    Codebook("ternary", (-1.0, 0.0, 1.0), "toward_zero", "BitNet b1.58: clamp(round(x), -1, 1)"),
    Codebook("binary", (-1.0, 1.0), "lower", "BitNet b1: Sign(x) = +1 if x > 0 else -1"),
)}


def get_codebook(name: str | Codebook) -> Codebook:
    """The registered :class:`Codebook` called ``name`` (any case).

    ``"fp4"`` here is bitsandbytes' FP4 table; OCP E2M1 is the float format
    ``float4_e2m1fn`` (:func:`refquant.dtypes.floatspec.get_float_spec`).

    Parameters
    ----------
    name : str or Codebook
        A key of :data:`CODEBOOKS` (any case), or a Codebook (returned as is).

    Raises
    ------
    ValueError
        For an unknown name, listing the allowed ones.
    TypeError
        If ``name`` is neither a str nor a Codebook.
    """
    if isinstance(name, Codebook):
        return name
    if not isinstance(name, str):
        raise TypeError(f"name must be a codebook name (str) or Codebook, got {name!r} ({type(name).__name__})")
    try:
        return CODEBOOKS[normalize_name(name)]
    except KeyError:
        raise ValueError(f"name={name!r} is not a known codebook; allowed: {', '.join(CODEBOOKS)}") from None


def codebook_encode(x: Any, name: str | Codebook, *, out: Any = None) -> np.ndarray:
    """Nearest-value codes of ``x`` in codebook ``name`` (see :meth:`Codebook.encode`).

    Parameters
    ----------
    x : array_like of float32 or float64, any shape
    name : str or Codebook
        ``"nf4"``, ``"fp4"``, ``"iq4_nl"``, ``"ternary"``, ``"binary"``.
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of uint8, shape of ``x``
    """
    return into(out, get_codebook(name).encode(x), (x,))


def codebook_decode(codes: Any, name: str | Codebook, *, out: Any = None) -> np.ndarray:
    """Values of ``codes`` in codebook ``name`` (see :meth:`Codebook.decode`).

    Parameters
    ----------
    codes : array_like of integers, any shape
    name : str or Codebook
    out : ndarray, optional
        An array to write the result into (:func:`refquant.prepare.into`).

    Returns
    -------
    ndarray of float32, shape of ``codes``
    """
    return into(out, get_codebook(name).decode(codes), (codes,))
