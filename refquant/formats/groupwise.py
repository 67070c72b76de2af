"""Storage cost of group-quantized weights: a ``bits``-wide code per weight plus per-group
statistics, as GPTQ / AWQ checkpoints (AutoGPTQ, AutoAWQ) and SpQR store them.

The formats own their bits per weight; :func:`refquant.metrics.bits_per_weight` (``"gptq"``,
``"awq"``, ``"spqr"``), the algorithms' results and the packed layouts
(:mod:`refquant.layouts.packed`) look them up here. A leaf module: it imports nothing of
refquant, so every layer may use it.
"""

from __future__ import annotations

__all__ = ["group_bits_per_weight", "spqr_average_bits"]


def group_bits_per_weight(bits: int, group_size: int, in_features: int | None = None, scale_bits: int = 16) -> float:
    """Storage cost of a group quantizer: ``bits + (scale_bits + bits) / group_size``.

    One fp16 scale and one ``bits``-wide packed zero per group, as GPTQ and AWQ
    checkpoints store them (4-bit g128 = 4.15625). ``g_idx`` is not
    counted (a convention); a per-channel group (``group_size <= 0``) spans the whole row,
    and a group never spans more than the row (``in_features``, None: no row given).

    Parameters
    ----------
    bits : int >= 1
        Code width (unchecked here: the public callers validate: :func:`refquant.metrics.bits_per_weight`).
    group_size : int
        Columns per group; <= 0 is one group per row.
    in_features : int >= 1 or None
        The row length, which bounds the group; None: no row given.
    scale_bits : int >= 1
        Bits of each group's scale (16: fp16).
    """
    if in_features is None:
        in_features = group_size
    g = min(group_size, in_features) if group_size > 0 else in_features
    return bits + (scale_bits + bits) / max(g, 1)


def spqr_average_bits(bits: int, group_size: int, qq_scale_bits: int, qq_zero_bits: int, qq_groupsize: int,
                      outlier_fraction: float = 0.0, round_zero: bool = False) -> float:
    """SpQR's ``get_average_number_of_bits`` (16-bit second-level statistics): ``bits +
    (qq_scale_bits + zero_bits) / group_size + 2 * (16 + 16) / (group_size * qq_groupsize)
    + 32 * outlier_fraction``, where ``zero_bits`` is ``qq_zero_bits``, or ``bits`` with
    ``round_zero`` (the zero stored as a first-level code instead of a second-level one).
    Vahe1994/SpQR ``main.py`` ``get_average_number_of_bits`` (SpQR: Dettmers et al., ICLR 2024).

    Parameters
    ----------
    bits : int >= 1
        First-level code width (unchecked here: the public callers validate: :func:`refquant.metrics.bits_per_weight`).
    group_size : int >= 1
    qq_scale_bits : int >= 1
        Width of the second-level quantized scales.
    qq_zero_bits : int >= 1
        Width of the second-level quantized zeros.
    qq_groupsize : int >= 1
        First-level groups per second-level group.
    outlier_fraction : float in [0, 1]
        Fraction of weights stored as outliers (32 bits each).
    round_zero : bool
        Zeros stored as first-level codes (``bits`` wide) instead.
    """
    zero_bits = bits if round_zero else qq_zero_bits
    return (bits + (qq_scale_bits + zero_bits) / group_size
            + 2 * (16 + 16) / (group_size * qq_groupsize) + 32 * outlier_fraction)
