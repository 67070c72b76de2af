"""Block formats: ggml/GGUF block types as declared byte layouts plus block rules.

Importing this package registers every format in :data:`FORMATS` (lowercase GGUF name ->
:class:`~refquant.formats.base.BlockFormat` subclass). One module per format family:

- ``gguf_float``    F16, BF16 (block size 1)
- ``gguf_legacy``   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1
- ``gguf_kquants``  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K
- ``gguf_ternary``  TQ1_0, TQ2_0
- ``gguf_iquants``  IQ4_NL, IQ4_XS
- ``gguf_iqgrid``   IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (grids: ``iq_grids``)
- ``gguf_mx``       MXFP4, NVFP4

Shared machinery: ``base`` (Field, BlockFormat, registry), ``_ggml_math`` (ggml's float32
arithmetic, conversions, rounding), ``gguf_kquants_search`` (ggml's vectorized scale
searches, used by the K-quants and the legacy types' imatrix paths).
"""

from __future__ import annotations

from refquant.formats.base import FORMATS, FORMATS_BY_ID, BlockFormat, Field

# The format families. Each import registers its classes; add a family here.
from refquant.formats import gguf_float  # noqa: F401,E402
from refquant.formats import gguf_legacy  # noqa: F401,E402
from refquant.formats import gguf_ternary  # noqa: F401,E402
from refquant.formats import gguf_iquants  # noqa: F401,E402
from refquant.formats import gguf_mx  # noqa: F401,E402
from refquant.formats import gguf_iqgrid  # noqa: F401,E402

from refquant.formats import gguf_kquants  # noqa: F401,E402

__all__ = ["BlockFormat", "Field", "FORMATS", "FORMATS_BY_ID"]
