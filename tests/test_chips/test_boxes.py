# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import (as_boxes, box_sizes, boxes_overlap, check_boxes,
                          in_range, inside_matrix, rectangle_counts,
                          sanitize_boxes)
from mmsnip.chips.boxes import sanitize_box_rows

# Box coordinates around a 480 x 640 image: inside, outside, on the
# borders, signed zeros and the values sanitize_boxes must drop.
COORDINATES = st.one_of(
    st.floats(-100, 800, allow_nan=False),
    st.sampled_from([0.0, -0.0, 480.0, 640.0, np.nan, np.inf, -np.inf]))


def test_as_boxes_shapes():
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes(np.zeros((0, 5))).shape == (0, 4)
    assert as_boxes([[0, 0, 1, 1]]).dtype == np.float64
    with pytest.raises(ValueError, match=r'gt must have shape \(N, 4\)'):
        as_boxes([[0, 0, 1]], 'gt')


def test_box_sizes_and_strict_range():
    boxes = np.array([[0, 0, 4, 9], [5, 5, 5, 9], [3, 3, 1, 1]], float)
    np.testing.assert_allclose(box_sizes(boxes), [6, 0, 0])
    np.testing.assert_array_equal(
        in_range(np.array([32, 32.5, 150, np.nan]), (32, 150)),
        [False, True, False, False])
    assert in_range(np.array([1e9]), (120, np.inf)).all()


def test_sanitize_rule():
    boxes = np.array([
        [10, 10, 10, 50],     # zero width: dropped
        [np.nan, 0, 5, 5],    # NaN: dropped
        [-50, -50, 30, 30],   # partly outside: clipped
        [700, 10, 800, 50],   # wholly outside (right): dropped
        [20, 20, 10, 10],     # negative size: dropped
        [0, 0, np.inf, 5],    # inf: dropped
        [600, 400, 700, 500],  # partly outside (bottom right): clipped
    ], float)
    clipped, keep = sanitize_boxes(boxes, 480, 640)
    np.testing.assert_array_equal(
        keep, [False, False, True, False, False, False, True])
    np.testing.assert_array_equal(clipped[2], [0, 0, 30, 30])
    np.testing.assert_array_equal(clipped[6], [600, 400, 640, 480])
    assert (clipped[~keep] == 0).all()
    # Any memory layout of the input: the same rows kept and clipped.
    for layout in (np.asfortranarray(boxes), np.repeat(boxes, 2, 0)[::2]):
        again, kept = sanitize_boxes(layout, 480, 640)
        np.testing.assert_array_equal(kept, keep)
        np.testing.assert_array_equal(again, clipped)
    clipped, keep = sanitize_boxes(np.zeros((0, 4)), 1, 1)
    assert clipped.shape == (0, 4) and keep.shape == (0,)
    for h, w in ((0, 10), (10, -1), (np.nan, 10), (np.inf, 10)):
        with pytest.raises(ValueError, match='image size must be positive'):
            sanitize_boxes(np.zeros((0, 4)), h, w)
    # per-box sizes, also one of them a scalar: each box clipped to its own
    wide = np.array([[-5, -5, 900, 900], [-5, -5, 900, 900]], float)
    for h, w in (([480, 200], [640, 640]), ([480, 200], 640)):
        clipped, keep = sanitize_boxes(wide, np.array(h), np.array(w))
        np.testing.assert_array_equal(clipped, [[0, 0, 640, 480],
                                                [0, 0, 640, 200]])
        assert keep.all()
    with pytest.raises(ValueError, match='image size must be positive'):
        sanitize_boxes(wide, np.array([480, 0]), 640)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[COORDINATES] * 4), max_size=12),
       st.sampled_from([(480, 640), (480.5, 639.25), (np.int64(300), 7)]))
def test_sanitize_box_rows_is_sanitize_boxes_on_python_floats(rows, hw):
    clipped, keep = sanitize_boxes(np.array(rows).reshape(-1, 4), *hw)
    got, got_keep = sanitize_box_rows([list(r) for r in rows], *hw)
    np.testing.assert_array_equal(np.array(got).reshape(-1, 4), clipped)
    np.testing.assert_array_equal(np.array(got_keep, bool), keep)
    for h, w in ((0, 10), (10, -1), (np.nan, 10), (np.inf, 10)):
        with pytest.raises(ValueError, match='image size must be positive'):
            sanitize_box_rows(rows, h, w)


@pytest.mark.parametrize('box, match', [
    ([np.nan, 0, 1, 1], r'gt\[1\] .* is not finite'),
    ([5, 5, 5, 9], r'gt\[1\] .* zero or negative size'),
    ([5, 5, 9, 2], r'gt\[1\] .* zero or negative size'),
    ([-1, 0, 9, 9], r'gt\[1\] .* outside the 640x480 image'),
    ([600, 0, 641, 9], r'gt\[1\] .* outside'),
])
def test_check_boxes_names_the_offending_index(box, match):
    boxes = np.array([[0, 0, 10, 10], box], float)
    with pytest.raises(ValueError, match=match):
        check_boxes(boxes, 480, 640, name='gt')
    np.testing.assert_array_equal(check_boxes(boxes[:1], 480, 640),
                                  boxes[:1])


def test_inside_and_overlap_matrices():
    chips = np.array([[0, 0, 100, 100], [50, 50, 150, 150]], float)
    boxes = np.array([[0, 0, 100, 100], [60, 60, 120, 120],
                      [100, 0, 120, 20]], float)
    np.testing.assert_array_equal(inside_matrix(boxes, chips),
                                  [[True, False, False],
                                   [False, True, False]])
    # touching is not overlapping
    np.testing.assert_array_equal(boxes_overlap(boxes, chips),
                                  [[True, True], [True, True],
                                   [False, False]])
    assert inside_matrix(np.zeros((0, 4)), chips).shape == (2, 0)


def test_inside_is_exact_by_default_and_overlap_is_per_axis():
    # Sec. 3.3.2: covered = completely enclosed; 0.05 px past is outside
    chip = np.array([[0, 0, 100, 100]], float)
    past = np.array([[0, 0, 100.05, 50]])
    assert not inside_matrix(past, chip).any()
    assert inside_matrix(past, chip, tol=0.1).all()
    # tall side-by-side boxes: overlapping in y, apart in x (both orders)
    left = np.array([[0, 0, 10, 100]], float)
    right = np.array([[20, 0, 30, 100]], float)
    assert not boxes_overlap(left, right).any()
    assert not boxes_overlap(right, left).any()
    # wide boxes one above the other: overlapping in x, apart in y
    top = np.array([[0, 0, 100, 10]], float)
    bottom = np.array([[0, 20, 100, 30]], float)
    assert not boxes_overlap(top, bottom).any()
    assert not boxes_overlap(bottom, top).any()
    # touching along y is not overlapping; half a pixel of overlap is
    below = np.array([[0, 10, 100, 30], [0, 9.5, 100, 30]])
    assert boxes_overlap(top, below).tolist() == [[False, True]]
    beside = np.array([[99.5, 0, 120, 10]])
    assert boxes_overlap(top, beside).tolist() == [[True]]


def test_rectangle_counts():
    r0, r1 = np.array([0, 1, 2]), np.array([2, 3, 2])
    c0, c1 = np.array([0, 1, 0]), np.array([2, 4, 4])  # last one is empty
    counts = rectangle_counts((3, 4), r0, r1, c0, c1)
    expected = np.zeros((3, 4))
    expected[0:2, 0:2] += 1
    expected[1:3, 1:4] += 1
    np.testing.assert_array_equal(counts, expected)
    assert rectangle_counts((2, 2), *[np.zeros(0, int)] * 4).shape == (2, 2)
