"""Granularity: which elements of a tensor share one scale (and zero point).

Every granularity reduces to one rule, torchao's ``block_size`` idea: along each axis
of the tensor, elements are cut into consecutive runs of ``b`` elements, or the whole
axis is one run (``None``). A *group* is the Cartesian product of one run per axis, and
each group gets its own scale. The scale array has the same number of dimensions as the
tensor, with ``ceil(L / b)`` entries along an axis of length ``L`` cut into runs of
``b``, and 1 entry along a whole axis (:meth:`Granularity.grid_shape`).

============================  =========================================  ==================================
granularity                   runs per axis of a (out, in) weight        scale shape
============================  =========================================  ==================================
``PerTensor()``               (whole, whole)                             (1, 1)
``PerChannel(axis=0)``        (1, whole)                                 (out, 1)
``PerGroup(128)``             (1, 128) (each row is cut into groups)     (out, ceil(in / 128))
``PerToken()``                (1, whole) (one scale per row, last axis)  (out, 1)
``PerBlock((128, 128))``      (128, 128) on the last two axes            (ceil(out/128), ceil(in/128))
============================  =========================================  ==================================

Partial groups. When an axis length ``L`` is not a multiple of the run length ``b``, the
last run along that axis is shorter (``L mod b`` elements) and its group gets its own
scale computed from its real elements only: statistics use ``ufunc.reduceat`` over the
run starts, so no padding value ever enters a min, max or absmax (the failure of
bitsandbytes#1884). Only :meth:`Granularity.to_groups`, which must return a rectangle,
pads, with a fill value the caller chooses.

A run length must satisfy ``1 <= b <= L`` (an axis of length 0 has zero groups and
accepts any positive ``b``); anything else raises ValueError naming the parameter and
the axis length (torchao's ``PerGroup(1)`` and ``block_size`` inconsistencies).

References
----------
torchao ``quant_primitives.py`` (``block_size`` argument of ``choose_qparams_affine``),
``torchao/quantization/granularity.py`` (PerTensor, PerAxis, PerGroup, PerToken, PerBlock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from refquant._validate import check_int

__all__ = ["Granularity", "PerTensor", "PerChannel", "PerGroup", "PerToken", "PerBlock",
           "FixedRuns", "granularity_from_name", "checked_geometry", "canonical_granularity", "GRANULARITY_NAMES"]

# A run length per axis: an int b >= 1, or None for "the whole axis is one run".
BlockSize = tuple[int | None, ...]


def _normalize_axis(axis: int, ndim: int, owner: str) -> int:
    axis = check_int(f"{owner} axis", axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{owner} axis={axis} is out of range for an array with {ndim} dimension(s); "
                         f"allowed: {-ndim} <= axis < {ndim}")
    return axis % ndim


def _check_run(name: str, b: int, length: int, axis: int) -> int:
    """A run length ``b`` along an axis of ``length`` elements: 1 <= b <= length."""
    b = check_int(name, b)
    if b <= 0 or (length > 0 and b > length):
        raise ValueError(f"{name}={b} is not valid for axis {axis} of length {length}; "
                         f"it must satisfy 1 <= {name} <= {max(length, 1)}")
    return b


class Granularity:
    """Base class: subclasses define :meth:`block_size`; everything else derives from it."""

    name: str = ""

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        """Run length per axis of an array of ``shape`` (None: the whole axis)."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def grid_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the scale array: ``ceil(L / b)`` per cut axis, 1 per whole axis."""
        return tuple(1 if b is None else -(-length // b) for length, b in zip(shape, self.block_size(shape)))

    def reduce(self, x: np.ndarray, ufunc: Callable[..., Any], *, initial: float) -> np.ndarray:
        """Reduce every group of ``x`` with ``ufunc`` (``np.maximum``, ``np.minimum``).

        Parameters
        ----------
        x : ndarray, any shape
        ufunc : numpy ufunc with ``reduce`` and ``reduceat``
        initial : float
            Value of a reduction over no elements (a whole axis of length 0).

        Returns
        -------
        ndarray, shape ``grid_shape(x.shape)``, dtype of ``x``
            Partial groups are reduced over their real elements only.
        """
        out = x
        for axis, (length, b) in enumerate(zip(x.shape, self.block_size(x.shape))):
            if b is None:
                out = ufunc.reduce(out, axis=axis, keepdims=True, initial=initial)
            elif b > 1 and length > 0:
                out = ufunc.reduceat(out, np.arange(0, length, b), axis=axis)
        return out

    def expand(self, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Broadcast per-group ``values`` (shape ``grid_shape(shape)``) to ``shape``."""
        values = np.asarray(values)
        grid = self.grid_shape(shape)
        if values.shape != grid:
            raise ValueError(f"per-group values have shape {values.shape}; {self!r} on shape {shape} needs {grid}")
        for axis, (length, b) in enumerate(zip(shape, self.block_size(shape))):
            if b is not None and b > 1:
                values = np.take(values, np.arange(length) // b, axis=axis)  # element i -> group i // b
        return np.broadcast_to(values, shape)

    def to_groups(self, x: np.ndarray, fill: float | None = None) -> np.ndarray:
        """Rearrange ``x`` into one row per group, groups in C order of the scale grid.

        Parameters
        ----------
        x : ndarray, any shape
        fill : float or None
            Value written into the missing elements of partial groups. None (default)
            raises ValueError if any group is partial. The padding is visible to whatever
            the caller computes from the rows; statistics in refquant use :meth:`reduce`.

        Returns
        -------
        ndarray, shape (n_groups, group_elems), dtype of ``x``
            ``n_groups = prod(grid_shape)`` and ``group_elems = prod(run lengths)``.
        """
        x = np.asarray(x)
        runs = [length if b is None else b for length, b in zip(x.shape, self.block_size(x.shape))]
        grid = self.grid_shape(x.shape)
        padded = [g * r for g, r in zip(grid, runs)]
        if tuple(padded) != x.shape:
            if fill is None:
                raise ValueError(f"shape {x.shape} is not a multiple of the group shape {tuple(runs)} of {self!r}; "
                                 "pass fill= to pad partial groups, or use reduce()")
            x = np.pad(x, [(0, p - length) for p, length in zip(padded, x.shape)], constant_values=fill)
        inter = [d for pair in zip(grid, runs) for d in pair]   # (g0, r0, g1, r1, ...)
        order = list(range(0, 2 * x.ndim, 2)) + list(range(1, 2 * x.ndim, 2))
        return x.reshape(inter).transpose(order).reshape(int(np.prod(grid)), int(np.prod(runs)))

    def from_groups(self, groups: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Inverse of :meth:`to_groups`: rows of groups back to an array of ``shape``
        (padding of partial groups dropped)."""
        shape = tuple(shape)
        runs = [length if b is None else b for length, b in zip(shape, self.block_size(shape))]
        grid = self.grid_shape(shape)
        groups = np.asarray(groups)
        if groups.shape != (int(np.prod(grid)), int(np.prod(runs))):
            raise ValueError(f"groups have shape {groups.shape}; {self!r} on shape {shape} needs "
                             f"{(int(np.prod(grid)), int(np.prod(runs)))}")
        nd = len(shape)
        inter = groups.reshape(list(grid) + list(runs))
        order = [i for a in range(nd) for i in (a, nd + a)]    # back to (g0, r0, g1, r1, ...)
        full = inter.transpose(order).reshape([g * r for g, r in zip(grid, runs)])
        return full[tuple(slice(0, length) for length in shape)]


@dataclass(frozen=True)
class PerTensor(Granularity):
    """One scale for the whole tensor."""

    name = "per_tensor"

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        return (None,) * len(shape)


@dataclass(frozen=True)
class PerChannel(Granularity):
    """One scale per index along ``axis`` (e.g. ``axis=0``: per output row of a (out, in) weight).

    Parameters
    ----------
    axis : int
        The channel axis; negative values count from the end.
    """

    axis: int = 0
    name = "per_channel"

    def __post_init__(self) -> None:
        check_int("PerChannel axis", self.axis)

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        axis = _normalize_axis(self.axis, len(shape), "PerChannel")
        return tuple(1 if a == axis else None for a in range(len(shape)))


@dataclass(frozen=True)
class PerGroup(Granularity):
    """Consecutive groups of ``group_size`` elements along ``axis``, separately for every
    index of the other axes (GPTQ/AWQ ``group_size=128`` on a (out, in) weight).

    Parameters
    ----------
    group_size : int
        Elements per group, ``1 <= group_size <= shape[axis]``. If ``shape[axis]`` is not a
        multiple, the last group is shorter and gets its own scale from its real elements.
    axis : int
        The axis that is cut into groups (default -1, the input-feature axis).
    """

    group_size: int = 128
    axis: int = -1
    name = "per_group"

    def __post_init__(self) -> None:
        if check_int("group_size", self.group_size) <= 0:
            raise ValueError(f"group_size={self.group_size} must be >= 1")
        check_int("PerGroup axis", self.axis)

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        axis = _normalize_axis(self.axis, len(shape), "PerGroup")
        b = _check_run("group_size", self.group_size, shape[axis], axis)
        return tuple(b if a == axis else 1 for a in range(len(shape)))


@dataclass(frozen=True)
class PerToken(Granularity):
    """One scale per token: per index of all leading axes, over the last axis
    (activations of shape (..., tokens, hidden); BitNet b1.58 activations)."""

    name = "per_token"

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        if len(shape) == 0:
            raise ValueError("PerToken needs an array with at least 1 dimension, got a 0-d array")
        return (1,) * (len(shape) - 1) + (None,)


@dataclass(frozen=True)
class PerBlock(Granularity):
    """Tiles of ``block_shape`` over the last ``len(block_shape)`` axes, separately for every
    index of the leading axes (e.g. (128, 128) tiles of a weight, DeepSeek-V3 style).

    Parameters
    ----------
    block_shape : tuple of int
        Tile size per trailing axis, each ``1 <= b <= L``. Partial tiles at the ends get
        their own scale from their real elements.
    """

    block_shape: tuple[int, ...] = (128, 128)
    name = "per_block"

    def __post_init__(self) -> None:
        if not isinstance(self.block_shape, tuple) or len(self.block_shape) == 0:
            raise ValueError(f"block_shape={self.block_shape!r} must be a non-empty tuple of ints")
        for b in self.block_shape:
            if check_int("block_shape", b) <= 0:
                raise ValueError(f"block_shape={self.block_shape!r}: every entry must be >= 1")

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        k = len(self.block_shape)
        if len(shape) < k:
            raise ValueError(f"block_shape={self.block_shape} needs an array with at least {k} dimensions, "
                             f"got shape {shape}")
        lead = len(shape) - k
        runs = tuple(_check_run(f"block_shape[{i}]", b, shape[lead + i], lead + i)
                     for i, b in enumerate(self.block_shape))
        return (1,) * lead + runs


@dataclass(frozen=True)
class FixedRuns(Granularity):
    """Explicit run lengths per axis (None: the whole axis), for arrays of ``len(runs)`` axes.

    What a custom Granularity subclass becomes once checked (:func:`canonical_granularity`):
    the geometry it showed at that moment, fixed, so nothing computed later can differ.
    """

    runs: tuple[int | None, ...] = ()
    name = "fixed_runs"

    def block_size(self, shape: tuple[int, ...]) -> BlockSize:
        if len(shape) != len(self.runs):
            raise ValueError(f"FixedRuns{self.runs} applies to arrays of {len(self.runs)} axes, got shape {shape}")
        return self.runs


GRANULARITY_NAMES = ("per_tensor", "per_channel", "per_group", "per_token", "per_block")


def granularity_from_name(name: str, *, axis: int | None = None, group_size: int | None = None,
                          block_shape: tuple[int, ...] | None = None) -> Granularity:
    """Build a granularity from its name (``accel.ops.GRANULARITIES``) and parameters.

    ``axis`` applies to per_channel (default 0) and per_group (default -1);
    ``group_size`` to per_group (required); ``block_shape`` to per_block (default (128, 128)).

    Parameters
    ----------
    name : {"per_tensor", "per_channel", "per_group", "per_token", "per_block"}
        Any case.
    axis : int or None
        per_channel (default 0) and per_group (default -1); checked against the tensor's rank on use.
    group_size : int >= 1 or None
        per_group only, required there.
    block_shape : tuple of int >= 1, or None
        per_block only (default (128, 128)).
    """
    original, name = name, name.strip().lower() if isinstance(name, str) else name  # names are case-insensitive
    if name == "per_tensor":
        return PerTensor()
    if name == "per_channel":
        return PerChannel(0 if axis is None else axis)
    if name == "per_group":
        if group_size is None:
            raise ValueError("granularity='per_group' needs group_size (an int >= 1)")
        return PerGroup(group_size, -1 if axis is None else axis)
    if name == "per_token":
        return PerToken()
    if name == "per_block":
        return PerBlock((128, 128) if block_shape is None else tuple(block_shape))
    raise ValueError(f"granularity={original!r} is not supported; allowed: {', '.join(map(repr, GRANULARITY_NAMES))} "
                     "or a refquant.granularity object")


def checked_geometry(gran: Granularity, shape: tuple[int, ...]) -> tuple[tuple[int | None, ...], tuple[int, ...]]:
    """``(runs, grid)`` of ``gran`` on ``shape``, checked for consistency.

    The run length per axis (None: the whole axis) must be an int in ``1..L`` (any >= 1
    when ``L`` is 0) and
    the grid must be ``ceil(L / run)`` (1 for a whole axis): a subclass whose
    ``block_size`` and ``grid_shape`` disagree, or that returns runs of the wrong count,
    is refused with ValueError (kernels index scale grids from these numbers).

    Parameters
    ----------
    gran : Granularity (any refquant.granularity object; TypeError otherwise)
    shape : tuple of int >= 0, the tensor's shape
    """
    if not isinstance(gran, Granularity):
        raise TypeError(f"granularity must be a refquant.granularity object, got {gran!r}")
    shape = tuple(int(s) for s in shape)
    runs = tuple(gran.block_size(shape))
    if len(runs) != len(shape):
        raise ValueError(f"{gran!r}.block_size({shape}) gave {len(runs)} run lengths for {len(shape)} axes")
    for a, (length, b) in enumerate(zip(shape, runs)):
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1
                              or (length and b > length)):
            raise ValueError(f"{gran!r}.block_size({shape}) gave run {b!r} for axis {a} of length {length}; "
                             f"runs must be None or ints in 1..{max(length, 1)} (any >= 1 on an empty axis)")
    runs = tuple(None if b is None else int(b) for b in runs)
    grid = tuple(1 if b is None else -(-length // b) for length, b in zip(shape, runs))
    if tuple(gran.grid_shape(shape)) != grid:
        raise ValueError(f"{gran!r}.grid_shape({shape}) = {tuple(gran.grid_shape(shape))} disagrees with its "
                         f"block_size (grid {grid})")
    return runs, grid


def canonical_granularity(gran: Granularity, shape: tuple[int, ...]) -> Granularity:
    """``gran`` checked on ``shape`` (:func:`checked_geometry`); a built-in class is kept,
    any other subclass replaced by the :class:`FixedRuns` of its checked geometry.

    Parameters
    ----------
    gran : Granularity (any refquant.granularity object; TypeError otherwise)
    shape : tuple of int >= 0, the tensor's shape
    """
    runs, _ = checked_geometry(gran, shape)
    if type(gran) in (PerTensor, PerChannel, PerGroup, PerToken, PerBlock, FixedRuns):
        return gran
    return FixedRuns(runs)
