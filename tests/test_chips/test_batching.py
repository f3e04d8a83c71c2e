# Copyright (c) mmsnip contributors. All rights reserved.
"""group_by_shape: every chip once, padding bounded, largest first."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import group_by_shape

shapes_st = st.lists(
    st.tuples(st.integers(1, 600), st.integers(1, 600)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(shapes=shapes_st, ratio=st.sampled_from([0.0, 0.3, 1.0, np.inf]),
       max_group=st.sampled_from([None, 1, 3]))
def test_groups_partition_and_bound_the_padding(shapes, ratio, max_group):
    shapes = np.array(shapes, np.float64).reshape(-1, 2)
    groups = group_by_shape(shapes, ratio, max_group)
    flat = np.concatenate(groups) if groups else np.zeros(0, int)
    assert sorted(flat.tolist()) == list(range(len(shapes)))
    areas = shapes[:, 0] * shapes[:, 1]
    # largest chips first
    assert np.all(np.diff(areas[flat]) <= 0)
    for group in groups:
        if max_group is not None:
            assert len(group) <= max_group
        if len(group) > 1:
            padded = shapes[group].max(0).prod() * len(group)
            assert padded <= (1 + ratio) * areas[group].sum() + 1e-6


def test_hand_cases():
    same = [[512, 512]] * 4
    assert [g.tolist() for g in group_by_shape(same, 0.0)] == [[0, 1, 2, 3]]
    assert [g.tolist() for g in group_by_shape(same, 0.0, 3)] == \
        [[0, 1, 2], [3]]
    mixed = [[512, 512], [100, 120], [512, 480], [96, 128]]
    assert [g.tolist() for g in group_by_shape(mixed)] == [[0, 2], [3, 1]]
    assert [g.tolist() for g in group_by_shape(mixed, np.inf)] == \
        [[0, 2, 3, 1]]
    assert group_by_shape(np.zeros((0, 2))) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match='max_pad_ratio'):
        group_by_shape([[1, 1]], -0.1)
    with pytest.raises(ValueError, match='max_group'):
        group_by_shape([[1, 1]], 0.3, 0)
