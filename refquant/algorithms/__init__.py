"""Weight-quantization algorithms: pure functions, NumPy in, NumPy out.

Conventions: ``W`` is (out_features, in_features) as in a
Linear layer, ``H`` the (in, in) Hessian ``2 X^T X``, ``X`` the calibration inputs
(tokens, in). Every result exposes ``.dequantized`` (float32, ``W``'s shape) and
``.bits_per_weight``, plus its codes and parameters.

=================  ==========================================================  ===========
function           what                                                        module
=================  ==========================================================  ===========
``rtn``            round-to-nearest per group (the baseline)                   rtn.py
``gptq``           GPTQ (Frantar et al. 2023): OBS column updates via H^-1      gptq.py
``awq``            AWQ (Lin et al. 2024): activation-aware scales + clipping    awq.py
``spqr``           SpQR (Dettmers et al. 2024): bilevel stats + fp16 outliers   spqr.py
``mixed``          1 % salient input channels in fp16, RTN the rest             mixed.py
``bitnet_b1``      BitNet binary weights; ``bitnet_b158`` ternary (b1.58)       bitnet.py
``fake_quantize``  QAT forward/backward: torch FakeQuantize, BitNet STE, LSQ    qat.py
=================  ==========================================================  ===========
"""

from __future__ import annotations

from refquant.algorithms._result import QuantizedWeight
from refquant.algorithms.awq import AWQResult, awq
from refquant.algorithms.bitnet import (BitNetWeight, QuantizedActivation, activation_quant_b1,
                                        activation_quant_b158, bitnet_b1, bitnet_b158)
from refquant.algorithms.gptq import GPTQResult, gptq
from refquant.algorithms.mixed import MixedResult, mixed
from refquant.algorithms.qat import (fake_quantize, fake_quantize_backward, lsq_backward, lsq_forward,
                                     lsq_grad_factor, ste_backward, ste_forward)
from refquant.algorithms.rtn import rtn
from refquant.algorithms.spqr import SpQRResult, spqr

__all__ = [
    "rtn", "gptq", "awq", "spqr", "mixed", "bitnet_b1", "bitnet_b158",
    "activation_quant_b1", "activation_quant_b158",
    "fake_quantize", "fake_quantize_backward", "ste_forward", "ste_backward",
    "lsq_forward", "lsq_backward", "lsq_grad_factor",
    "QuantizedWeight", "GPTQResult", "AWQResult", "SpQRResult", "MixedResult",
    "BitNetWeight", "QuantizedActivation",
]
