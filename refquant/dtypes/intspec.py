"""Integer element types as data: width, signedness and whether the range is restricted.

The code range is derived, never typed in:

======  ==========  ===========================  ==========================================
signed  restricted  [qmin, qmax]                 example (bits = 8)
======  ==========  ===========================  ==========================================
True    False       [-2^(b-1), 2^(b-1) - 1]      int8 [-128, 127]: torch.ao qint8, AWQ
True    True        [-(2^(b-1) - 1), 2^(b-1) - 1]  int8_restricted [-127, 127]: LLM.int8,
                                                   ggml Q8_0, absmax / 127
False   False       [0, 2^b - 1]                 uint8 [0, 255]: torch.ao quint8, GPTQ
======  ==========  ===========================  ==========================================

The restricted range drops the lone most-negative code so the range is symmetric about
zero.

Examples
--------
>>> get_int_spec("int4").qmin, get_int_spec("int4").qmax
(-8, 7)
>>> get_int_spec(bits=8, signed=True, restricted=True).qmin
-127
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refquant._validate import check_int, normalize_name

__all__ = ["IntSpec", "INT_SPECS", "get_int_spec"]


@dataclass(frozen=True)
class IntSpec:
    """A ``bits``-wide integer code type.

    Parameters
    ----------
    name : str
        ``"int8"``, ``"uint4"``, ``"int8_restricted"``, ...
    bits : int
        Width, 1 to 32 (2 to 32 when signed and restricted).
    signed : bool
        Two's-complement range when True, else ``[0, 2**bits - 1]``.
    restricted : bool, default False
        Signed only: drop ``-2**(bits-1)`` so that ``qmin == -qmax``.
    """

    name: str
    bits: int
    signed: bool
    restricted: bool = False

    def __post_init__(self) -> None:
        for attr in ("signed", "restricted"):
            if not isinstance(getattr(self, attr), (bool, np.bool_)):
                raise TypeError(f"{attr} must be a bool, got {getattr(self, attr)!r}")
        check_int("bits", self.bits, min=2 if (self.signed and self.restricted) else 1, max=32)
        if self.restricted and not self.signed:
            raise ValueError(f"restricted=True needs signed=True (an unsigned range {self.name!r} has no "
                             "negative end to drop)")

    @property
    def qmin(self) -> int:
        """Smallest code."""
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + (1 if self.restricted else 0)

    @property
    def qmax(self) -> int:
        """Largest code."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def levels(self) -> int:
        """Number of codes, ``qmax - qmin + 1``."""
        return self.qmax - self.qmin + 1

    @property
    def dtype(self) -> np.dtype:
        """Smallest NumPy integer dtype holding every code (before sub-byte packing)."""
        for width in (8, 16, 32):
            if self.bits <= width:
                return np.dtype(f"{'int' if self.signed else 'uint'}{width}")
        raise AssertionError("unreachable: bits <= 32 is checked on construction")  # pragma: no cover


def _make() -> dict[str, IntSpec]:
    specs: dict[str, IntSpec] = {}
    for bits in (2, 3, 4, 8, 16):
        specs[f"int{bits}"] = IntSpec(f"int{bits}", bits, True)
        specs[f"uint{bits}"] = IntSpec(f"uint{bits}", bits, False)
        specs[f"int{bits}_restricted"] = IntSpec(f"int{bits}_restricted", bits, True, restricted=True)
    return specs


#: Registered integer types: int/uint 2, 3, 4, 8, 16 and the signed ``*_restricted`` ranges.
INT_SPECS: dict[str, IntSpec] = _make()


def get_int_spec(name: str | IntSpec | None = None, *, bits: int | None = None, signed: bool | None = None,
                 restricted: bool = False) -> IntSpec:
    """An :class:`IntSpec` by name, or by ``bits`` and ``signed``.

    Parameters
    ----------
    name : str or IntSpec, optional
        A key of :data:`INT_SPECS` (any case). Give either ``name`` or ``bits``.
    bits : int, optional
        Width (1 to 32); any width is allowed, not only the registered ones.
    signed : bool, optional
        Required with ``bits``.
    restricted : bool, default False
        With ``name``: the restricted variant of a signed type. With ``bits``: as in
        :class:`IntSpec`.

    Raises
    ------
    ValueError
        For an unknown name, both or neither of ``name``/``bits``, or an invalid range.
    TypeError
        For arguments of the wrong type.
    """
    if isinstance(name, IntSpec):
        return name
    if not isinstance(restricted, (bool, np.bool_)):
        raise TypeError(f"restricted must be a bool, got {restricted!r}")
    if (name is None) == (bits is None):
        raise ValueError(f"give exactly one of name or bits (got name={name!r}, bits={bits!r})")
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r} ({type(name).__name__})")
        key = normalize_name(name)
        spec = INT_SPECS.get(key)
        if spec is None:
            raise ValueError(f"name={name!r} is not a known integer type; allowed: {', '.join(INT_SPECS)}")
        if restricted and not spec.restricted:
            spec = get_int_spec(bits=spec.bits, signed=spec.signed, restricted=True)
        return spec
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"signed must be a bool when bits is given, got {signed!r}")
    bits = check_int("bits", bits, min=1, max=32)
    base = f"{'int' if signed else 'uint'}{bits}"
    if restricted:
        if not signed:
            raise ValueError("restricted=True needs signed=True")
        return INT_SPECS.get(f"{base}_restricted") or IntSpec(f"{base}_restricted", bits, True, True)
    return INT_SPECS.get(base) or IntSpec(base, bits, bool(signed))
