"""Element types as data: floats (:mod:`.floatspec`), integers (:mod:`.intspec`) and
codebooks (:mod:`.codebooks`), each a frozen spec with derived properties, looked up
by name with ``get_*``.
"""

from refquant.dtypes.floatspec import (
    FLOAT_ALIASES,
    FLOAT_SPECS,
    FloatSpec,
    decode_float,
    encode_float,
    from_ml_dtypes,
    get_float_spec,
    to_ml_dtypes,
)
from refquant.dtypes.intspec import INT_SPECS, IntSpec, get_int_spec
from refquant.dtypes.codebooks import CODEBOOKS, Codebook, codebook_decode, codebook_encode, get_codebook

__all__ = [
    "FloatSpec", "FLOAT_SPECS", "FLOAT_ALIASES", "get_float_spec", "encode_float", "decode_float",
    "to_ml_dtypes", "from_ml_dtypes",
    "IntSpec", "INT_SPECS", "get_int_spec",
    "Codebook", "CODEBOOKS", "get_codebook", "codebook_encode", "codebook_decode",
]
