"""Granularity: group geometry, reductions over partial groups, and parameter errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refquant.granularity import (GRANULARITY_NAMES, PerBlock, PerChannel, PerGroup, PerTensor, PerToken,
                                  granularity_from_name)


def _group_ids(gran, shape):
    """Group index of every element (C order of the grid), via expand."""
    grid = gran.grid_shape(shape)
    return gran.expand(np.arange(int(np.prod(grid))).reshape(grid), shape)


def _brute_reduce(gran, x, fn):
    """Reduce each group by masking (no reduceat, no padding): the oracle for reduce()."""
    ids = _group_ids(gran, x.shape)
    grid = gran.grid_shape(x.shape)
    out = np.array([fn(x[ids == g]) if (ids == g).any() else 0.0 for g in range(int(np.prod(grid)))])
    return out.reshape(grid).astype(x.dtype)


CASES = [
    (PerTensor(), (6, 10), (1, 1)),
    (PerChannel(0), (6, 10), (6, 1)),
    (PerChannel(1), (6, 10), (1, 10)),
    (PerChannel(-1), (6, 10), (1, 10)),
    (PerGroup(4), (6, 10), (6, 3)),             # 10 = 4 + 4 + 2: partial last group
    (PerGroup(5, axis=0), (6, 10), (2, 10)),    # 6 = 5 + 1
    (PerGroup(10), (6, 10), (6, 1)),
    (PerGroup(1), (6, 10), (6, 10)),
    (PerToken(), (6, 10), (6, 1)),
    (PerToken(), (2, 3, 10), (2, 3, 1)),
    (PerBlock((4, 4)), (6, 10), (2, 3)),        # partial tiles on both axes
    (PerBlock((3,)), (2, 6, 7), (2, 6, 3)),
    (PerBlock((2, 5)), (3, 4, 10), (3, 2, 2)),
]


@pytest.mark.parametrize("gran,shape,grid", CASES, ids=lambda v: repr(v) if not isinstance(v, tuple) else str(v))
def test_grid_shape_and_reduce_match_brute_force(gran, shape, grid, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    assert gran.grid_shape(shape) == grid
    np.testing.assert_array_equal(gran.reduce(x, np.maximum, initial=-np.inf), _brute_reduce(gran, x, np.max))
    np.testing.assert_array_equal(gran.reduce(x, np.minimum, initial=np.inf), _brute_reduce(gran, x, np.min))


def test_partial_last_group_uses_only_real_elements():
    # all values are positive: a zero padding value would show up as the group's min
    x = np.array([[5.0, 6.0, 7.0, 8.0, 1.5, 2.5]], dtype=np.float32)
    g = PerGroup(4)
    np.testing.assert_array_equal(g.reduce(x, np.minimum, initial=np.inf), [[5.0, 1.5]])
    np.testing.assert_array_equal(g.reduce(x, np.maximum, initial=-np.inf), [[8.0, 2.5]])
    neg = -x
    np.testing.assert_array_equal(g.reduce(neg, np.maximum, initial=-np.inf), [[-5.0, -1.5]])


def test_expand_maps_element_i_to_group_i_div_size():
    g = PerGroup(3)
    expanded = g.expand(np.array([[10, 20, 30]]), (1, 7))
    np.testing.assert_array_equal(expanded, [[10, 10, 10, 20, 20, 20, 30]])
    b = PerBlock((2, 2))
    np.testing.assert_array_equal(b.expand(np.array([[1, 2], [3, 4]]), (3, 3)), [[1, 1, 2], [1, 1, 2], [3, 3, 4]])
    with pytest.raises(ValueError, match="needs"):
        g.expand(np.zeros((1, 2)), (1, 7))


@pytest.mark.parametrize("gran,shape,grid", CASES, ids=lambda v: repr(v) if not isinstance(v, tuple) else str(v))
def test_to_groups_round_trip(gran, shape, grid, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    groups = gran.to_groups(x, fill=np.nan)
    assert groups.shape[0] == int(np.prod(grid))
    np.testing.assert_array_equal(gran.from_groups(groups, shape), x)
    # every row holds exactly the elements of one group (in C order of the grid)
    ids = _group_ids(gran, shape)
    for g in range(groups.shape[0]):
        row = groups[g]
        np.testing.assert_array_equal(np.sort(row[~np.isnan(row)]), np.sort(x[ids == g]))


def test_to_groups_divisible_layout():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(PerGroup(2).to_groups(x), [[0, 1], [2, 3], [4, 5], [6, 7]])
    np.testing.assert_array_equal(PerChannel(1).to_groups(x), [[0, 4], [1, 5], [2, 6], [3, 7]])
    np.testing.assert_array_equal(PerBlock((2, 2)).to_groups(x), [[0, 1, 4, 5], [2, 3, 6, 7]])
    with pytest.raises(ValueError, match="fill"):
        PerGroup(3).to_groups(x)


def test_empty_arrays():
    x = np.zeros((0, 8), dtype=np.float32)
    assert PerTensor().reduce(x, np.maximum, initial=0.0).shape == (1, 1)
    assert PerGroup(4).reduce(x, np.maximum, initial=0.0).shape == (0, 2)
    assert PerChannel(0).reduce(x, np.maximum, initial=0.0).shape == (0, 1)
    assert PerGroup(4, axis=0).grid_shape((0, 8)) == (0, 8)     # an empty axis has zero groups


@pytest.mark.parametrize("size", [0, -1])
def test_bad_group_size_rejected_on_construction(size):
    with pytest.raises(ValueError, match=f"group_size={size}"):
        PerGroup(size)


def test_group_size_larger_than_axis_names_both():
    with pytest.raises(ValueError, match=r"group_size=16 .*length 10"):
        PerGroup(16).grid_shape((3, 10))
    with pytest.raises(ValueError, match=r"group_size=18446744073709551616 .*length 10"):   # bitsandbytes#1071
        PerGroup(2**64).grid_shape((3, 10))
    with pytest.raises(ValueError, match=r"block_shape\[1\]=128 .*length 64"):
        PerBlock((32, 128)).grid_shape((64, 64))


def test_other_parameter_errors():
    with pytest.raises(ValueError, match="axis=2"):
        PerChannel(2).grid_shape((3, 4))
    with pytest.raises(ValueError, match="axis=-3"):
        PerGroup(2, axis=-3).grid_shape((3, 4))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        PerToken().grid_shape(())
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        PerBlock((2, 2)).grid_shape((8,))
    with pytest.raises(ValueError, match="block_shape"):
        PerBlock((0, 2))
    with pytest.raises(ValueError, match="block_shape"):
        PerBlock([2, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group_size"):
        PerGroup(2.5)  # type: ignore[arg-type]


def test_granularities_are_hashable_values():
    assert PerGroup(128) == PerGroup(128, axis=-1)
    assert len({PerTensor(), PerTensor(), PerChannel(0), PerChannel(1)}) == 3
    with pytest.raises(AttributeError):
        PerGroup(4).group_size = 8  # type: ignore[misc]


def test_granularity_from_name():
    assert [granularity_from_name(n, group_size=8).name for n in GRANULARITY_NAMES] == list(GRANULARITY_NAMES)
    assert granularity_from_name("per_channel", axis=1) == PerChannel(1)
    assert granularity_from_name("per_group", group_size=32, axis=0) == PerGroup(32, 0)
    assert granularity_from_name("per_block", block_shape=(4, 8)) == PerBlock((4, 8))
    with pytest.raises(ValueError, match="group_size"):
        granularity_from_name("per_group")
    with pytest.raises(ValueError, match="per_row"):
        granularity_from_name("per_row")


def test_reduce_3d_every_axis_combination(rng):
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    for axis, size in itertools.product(range(3), (1, 2, 3)):
        g = PerGroup(size, axis=axis)
        np.testing.assert_array_equal(g.reduce(x, np.maximum, initial=-np.inf), _brute_reduce(g, x, np.max))
