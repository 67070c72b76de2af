"""OP_SPECS: the canonical op names every backend implements a subset of.

One row per op. ``reference`` is the ``module:function`` in refquant that defines the
op's result (the reference backend calls it directly), ``formats`` is the op's format
axis in the conformance matrix (None: the op has no format axis), and the backend
method has the same name and signature as the reference function. Arrays go in and
come out as the backend's own arrays; containers (tuples) keep their order.

Rows are grouped by spec area; add a row when the reference function exists, with its
conformance test in ``conformance/test_<area>.py`` and its tolerance in
``conformance/contracts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OpSpec", "OP_SPECS", "FLOAT_FORMATS", "GRANULARITIES"]


@dataclass(frozen=True)
class OpSpec:
    """One op of the Backend contract.

    Attributes
    ----------
    name : str
        Method name on a backend.
    reference : str
        ``"module:function"`` of the refquant function that defines the result.
    formats : tuple of str or None
        Values of the op's format axis (matrix columns), or None.
    area : str
        Spec area (matrix section, conformance test file).
    doc : str
        Signature and result, one line.
    """

    name: str
    reference: str
    formats: tuple[str, ...] | None
    area: str
    doc: str


FLOAT_FORMATS = ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn")
GRANULARITIES = ("per_tensor", "per_channel", "per_group", "per_token", "per_block")

_ROWS: list[OpSpec] = [
    # --- floats (issue 3) ---
    OpSpec("encode_float", "refquant.dtypes.floatspec:encode_float", FLOAT_FORMATS, "floats",
           "encode_float(x: float32 (...), fmt, *, saturate=False) -> uint16 (16-bit fmt) / uint8 codes (...), "
           "round-to-nearest-even; NaN/overflow codes as NumPy float16 / ml_dtypes"),
    OpSpec("decode_float", "refquant.dtypes.floatspec:decode_float", FLOAT_FORMATS, "floats",
           "decode_float(bits: uint16/uint8 (...), fmt) -> float32 (...), exact"),
    OpSpec("codebook_encode", "refquant.dtypes.codebooks:codebook_encode",
           ("nf4", "fp4", "iq4_nl", "ternary", "binary"), "codebooks",
           "codebook_encode(x: float32 (...), name) -> uint8 codes (...) of the nearest table value; "
           "ties by the codebook's rule"),
    OpSpec("codebook_decode", "refquant.dtypes.codebooks:codebook_decode",
           ("nf4", "fp4", "iq4_nl", "ternary", "binary"), "codebooks",
           "codebook_decode(codes: uint8 (...), name) -> float32 (...) table values"),
    # --- affine mapping (issue 3) ---
    # --- packing (issue 3) ---
    # --- bitsandbytes family (issue 4) ---
    # --- integer matmul (issue 4) ---
    # --- gguf (issue 5) ---
    # --- layouts (issue 7) ---
]

OP_SPECS: dict[str, OpSpec] = {row.name: row for row in _ROWS}
if len(OP_SPECS) != len(_ROWS):  # pragma: no cover - guards edits of the table
    raise RuntimeError("accel.ops: duplicate op name in _ROWS")
