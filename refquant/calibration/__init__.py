"""Calibration: observers that turn streamed activations into ranges and quantization parameters,
the streaming GPTQ Hessian, and per-channel activation statistics.

- :mod:`~refquant.calibration.observers`: ``MinMaxObserver``, ``MovingAverageMinMaxObserver``,
  ``PercentileObserver``, ``MSEObserver``, ``EntropyObserver`` (KL), ``HistogramObserver``;
- :mod:`~refquant.calibration.search`: the range searches on a histogram (NVIDIA / torch.ao rules);
- :mod:`~refquant.calibration.histogram`: the exact streaming histogram the observers share;
- :mod:`~refquant.calibration.hessian`: ``HessianAccumulator`` / ``hessian_from_activations``
  (GPTQ's ``H = 2/N Σ x xᵀ``, summable across shards);
- :mod:`~refquant.calibration.act_stats`: ``ActStats``, per-channel activation statistics
  (absmax, mean |x|, mean x², the inputs of SmoothQuant / AWQ / imatrix-style importance).
"""

from __future__ import annotations

from refquant.calibration.act_stats import ActStats
from refquant.calibration.hessian import HessianAccumulator, hessian_from_activations
from refquant.calibration.observers import (
    OBSERVERS,
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    make_observer,
)

__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver", "MSEObserver",
           "EntropyObserver", "HistogramObserver", "OBSERVERS", "make_observer", "HessianAccumulator",
           "hessian_from_activations", "ActStats"]
