"""QuantScheme: one affine quantization recipe as data (element type, granularity,
symmetric or zero-point mapping, rounding), so that algorithms take a scheme and never
branch on format names (torchao's ``QuantizationConfig`` idea).

Examples
--------
>>> import numpy as np
>>> from refquant.granularity import PerGroup
>>> w = np.linspace(-1, 1, 256, dtype=np.float32).reshape(2, 128)
>>> scheme = QuantScheme("uint4", PerGroup(32), symmetric=False)     # GPTQ/AWQ-style int4, g32
>>> q, params = scheme.quantize(w)
>>> q.dtype, params.scale.shape
(dtype('uint8'), (2, 4))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refquant._validate import check_choice
from refquant.dtypes.intspec import IntSpec, get_int_spec
from refquant.granularity import Granularity, PerTensor
from refquant.mapping import ROUNDINGS, QuantParams, choose_qparams, dequantize_affine, quantize_affine

__all__ = ["QuantScheme"]


@dataclass(frozen=True)
class QuantScheme:
    """An affine quantization recipe.

    Parameters
    ----------
    dtype : IntSpec or str
        Code type, e.g. ``"int8"`` ([-128, 127]: torch.ao's divisor 127.5 when symmetric),
        ``"int8_restricted"`` ([-127, 127]: absmax / 127), ``"uint4"`` ([0, 15]).
        Names resolve through ``refquant.dtypes.intspec.get_int_spec``. At most 16 bits.
    granularity : Granularity
        ``PerTensor()`` (default), ``PerChannel(axis)``, ``PerGroup(size)``, ...
    symmetric : bool
        Absmax mapping (True) or min/max with a zero point (False).
    rounding : {"half_even", "half_away", "stochastic"}
        Rounding of ``x / scale``; stochastic needs ``rng`` in the calls.
    """

    dtype: IntSpec | str = "int8_restricted"
    granularity: Granularity = field(default_factory=PerTensor)
    symmetric: bool = True
    rounding: str = "half_even"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", get_int_spec(self.dtype))
        if not isinstance(self.granularity, Granularity):
            raise TypeError(f"granularity must be a refquant.granularity object, got {self.granularity!r}")
        check_choice("rounding", self.rounding, ROUNDINGS)
        if not isinstance(self.symmetric, (bool, np.bool_)):
            raise TypeError(f"symmetric must be True or False, got {self.symmetric!r}")

    def choose_qparams(self, x: Any, clip: tuple[float, float] | float | None = None) -> QuantParams:
        """Parameters for ``x`` under this scheme (``refquant.mapping.choose_qparams``)."""
        spec: IntSpec = self.dtype  # type: ignore[assignment]
        return choose_qparams(x, spec.bits, self.symmetric, signed=spec.signed, restricted_range=spec.restricted,
                              granularity=self.granularity, clip=clip)

    def quantize(self, x: Any, rng: np.random.Generator | None = None) -> tuple[np.ndarray, QuantParams]:
        """Codes of ``x`` and the parameters chosen for it."""
        params = self.choose_qparams(x)
        return quantize_affine(x, params, rounding=self.rounding, rng=rng), params

    def fake_quantize(self, x: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        """``x`` rounded onto this scheme's grid (float32), with parameters chosen from ``x``."""
        q, params = self.quantize(x, rng)
        return dequantize_affine(q, params)
