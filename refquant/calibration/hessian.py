"""The GPTQ Hessian ``H = (2/N) Σ x xᵀ`` of a linear layer's inputs, accumulated in a stream and
summable across shards.

GPTQ (IST-DASLab ``gptq.py``, ``GPTQ.add_batch``) keeps ``H`` itself and rescales
it on every batch (``H ← H·n/(n + t)``, ``n ← n + t``, ``H += (sqrt(2/n)·X)ᵀ(sqrt(2/n)·X)`` in
float32). Mathematically that is ``H = (2/N)·Σ XᵀX`` over all batches, with ``N`` the number of
**samples** (sequences), not tokens: a 3-D batch (samples, seq, in) adds ``samples``; a 2-D
batch (tokens, in) counts as **one** sample, because ``add_batch`` unsqueezes it to a batch of 1.

This accumulator stores the raw float64 sum ``S = Σ XᵀX`` and ``N`` instead, so shards computed
on different machines add exactly (``a.merge(b)``: ``S_a + S_b``, ``N_a + N_b``) and the result
does not depend on the batch order; :attr:`HessianAccumulator.H` is ``2·S/N``. It differs from
GPTQ's running float32 rescaling only by float rounding. The scale of ``H`` does not change
GPTQ's result (its damping is relative to ``mean(diag(H))``).

Symbols: ``X`` calibration activations (tokens, in); ``H`` (in, in); ``N`` samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refquant._validate import as_float_array, check_int

__all__ = ["HessianAccumulator", "hessian_from_activations"]


class HessianAccumulator:
    """Streaming ``ΣXᵀX`` of a layer's inputs; ``.H = 2/N·ΣXᵀX`` as GPTQ defines it.

    Parameters
    ----------
    in_features : int, optional
        Expected input width; taken from the first batch when omitted.

    Attributes
    ----------
    xtx : ndarray of float64, shape (in, in)
        ``Σ XᵀX`` so far.
    n_samples : int
        ``N``: samples counted by GPTQ's rule (see :meth:`add`).
    n_tokens : int
        Rows of ``X`` seen.
    """

    def __init__(self, in_features: int | None = None) -> None:
        self.in_features = None if in_features is None else check_int("in_features", in_features, min=1)
        self.xtx = None if self.in_features is None else np.zeros((self.in_features, self.in_features))
        self.n_samples = 0
        self.n_tokens = 0

    def add(self, X: Any, n_samples: int | None = None) -> "HessianAccumulator":
        """Add a batch of layer inputs. Returns the accumulator.

        Parameters
        ----------
        X : ndarray of float, shape (tokens, in) or (samples, seq, in)
        n_samples : int, optional
            Samples this batch counts for ``N``. Default: GPTQ's rule, ``X.shape[0]`` for a
            3-D batch and 1 for a 2-D one.

        Raises
        ------
        ValueError
            NaN/inf in ``X``; ``X`` not 2-D or 3-D; an input width that differs from earlier batches.
        """
        arr = as_float_array("X", X, dtypes=(np.float16, np.float32, np.float64), allow_nan=False, min_ndim=2)
        if arr.ndim > 3:
            raise ValueError(f"X must be (tokens, in) or (samples, seq, in), got shape {arr.shape}")
        width = arr.shape[-1]
        if self.in_features is None:
            self.in_features = check_int("X.shape[-1]", width, min=1)
            self.xtx = np.zeros((width, width))
        elif width != self.in_features:
            raise ValueError(f"X has {width} input features, but this accumulator holds {self.in_features}; "
                             "every batch must have the same last dimension")
        tmp = (arr.shape[0] if arr.ndim == 3 else 1) if n_samples is None else check_int("n_samples", n_samples, min=0)
        rows = arr.reshape(-1, width).astype(np.float64)
        self.xtx += rows.T @ rows
        self.n_samples += tmp
        self.n_tokens += rows.shape[0]
        return self

    def merge(self, other: "HessianAccumulator") -> "HessianAccumulator":
        """A new accumulator holding both shards' sums (neither input changes)."""
        if not isinstance(other, HessianAccumulator):
            raise TypeError(f"other must be a HessianAccumulator, got {type(other).__name__}")
        if self.in_features is not None and other.in_features is not None and self.in_features != other.in_features:
            raise ValueError(f"cannot merge accumulators of {self.in_features} and {other.in_features} input features")
        width = self.in_features if self.in_features is not None else other.in_features
        out = HessianAccumulator(width)
        for part in (self, other):
            if part.xtx is not None:
                out.xtx += part.xtx
            out.n_samples += part.n_samples
            out.n_tokens += part.n_tokens
        return out

    __add__ = merge

    @property
    def H(self) -> np.ndarray:
        """``2/N · ΣXᵀX``, float64 (in, in).

        Raises
        ------
        ValueError
            Nothing added yet (N = 0).
        """
        if self.n_samples == 0 or self.xtx is None:
            raise ValueError("HessianAccumulator has no samples; call add(X) with calibration activations first")
        return (2.0 / self.n_samples) * self.xtx

    def __repr__(self) -> str:
        return f"HessianAccumulator(in_features={self.in_features}, n_samples={self.n_samples}, n_tokens={self.n_tokens})"


def hessian_from_activations(X: Any, n_samples: int | None = None) -> np.ndarray:
    """``H = 2/N · XᵀX`` of one batch of layer inputs (GPTQ's Hessian).

    Parameters
    ----------
    X : ndarray of float, shape (tokens, in) or (samples, seq, in)
    n_samples : int, optional
        ``N``; default GPTQ's rule (``X.shape[0]`` for 3-D input, 1 for 2-D).

    Returns
    -------
    ndarray of float64, shape (in, in)
    """
    return HessianAccumulator().add(X, n_samples).H
