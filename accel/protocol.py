"""The Backend protocol and its capability declaration.

A backend is any object with ``name``, ``device``, ``capabilities()``, ``asarray`` /
``to_numpy`` and one method per op it implements, named and called exactly as in
:data:`accel.ops.OP_SPECS`. Ops (or op/format pairs) it does not declare are reported
"not implemented" by the conformance matrix, never failed and never silently passed.
An undeclared pair must raise :class:`refquant.errors.UnsupportedError`, not fall back.

Op methods receive only arguments prepared by the reference (``OpSpec.prepare``, run by
:mod:`accel.dispatch` for every call): validated, normalized and C-contiguous. A backend
therefore holds kernels, not argument checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["OpCapability", "Backend", "supports"]


@dataclass(frozen=True)
class OpCapability:
    """What a backend supports of one op.

    Attributes
    ----------
    formats : frozenset of str or None
        The formats (keys of the op's format axis in ``OP_SPECS``) it implements; None
        for ops without a format axis.
    bit_exact : bool
        Whether the backend claims identical bits to the reference. Claimed bit-exact
        ops are held to the ``Exact`` contract whatever the contracts table says.
    constraints : mapping
        Extra limits, e.g. ``{"blocksizes": (64, 128)}`` or ``{"row_multiple": 256}``;
        conformance strategies draw only inputs within them.
    notes : str
        Free text shown in the matrix (why something is missing or approximate).
    out : bool
        The op method takes ``out=``, the result array allocated by the op's prepare
        function (``OpSpec.out`` ops only; for a tuple result a tuple of arrays in the
        result's order, None at a result the kernel allocates itself), writes it and
        returns it (the tuple: with its own arrays at the None entries); otherwise the
        dispatcher copies.
    """

    formats: frozenset[str] | None = None
    bit_exact: bool = True
    constraints: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""
    out: bool = False

    def supports(self, fmt: str | None) -> bool:
        return fmt is None or self.formats is None or fmt in self.formats


@runtime_checkable
class Backend(Protocol):
    """Structural type of a backend (ops are looked up by name, so they are not listed)."""

    name: str
    device: str  # "cpu" or "cuda"

    def capabilities(self) -> Mapping[str, OpCapability]: ...

    def asarray(self, x: Any) -> Any:
        """Convert a NumPy array into the backend's array type."""

    def to_numpy(self, x: Any) -> Any:
        """Convert a backend array (or a tuple/list of them) into NumPy."""


def supports(backend: Backend, op: str, fmt: str | None = None) -> bool:
    """True if ``backend`` declares ``op`` (and ``fmt``, when the op has a format axis)."""
    cap = backend.capabilities().get(op)
    return cap is not None and cap.supports(fmt)
