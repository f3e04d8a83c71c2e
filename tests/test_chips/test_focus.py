# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import (BACKGROUND, FOCUS, IGNORE, boxes_overlap,
                          focus_chips, focus_pixel_labels,
                          focus_stack_keep_mask, merge_overlapping,
                          oracle_focus_chips)


def test_focus_pixel_labels_rules():
    boxes = np.array([
        [0, 0, 20, 20],      # 20 px: FOCUS
        [64, 0, 67, 3],      # 3 px: IGNORE (< a)
        [0, 32, 70, 102],    # 70 px: IGNORE (b < size < c)
        [64, 32, 164, 132],  # 100 px: BACKGROUND (>= c)
    ], float)
    labels = focus_pixel_labels(boxes, (128, 192), stride=16)
    assert labels.shape == (8, 12) and labels.dtype == np.int8
    assert (labels[:2, :2] == FOCUS).all()
    assert labels[0, 4] == IGNORE
    assert labels[2, 0] == IGNORE and labels[6, 4] == IGNORE
    assert labels[6, 8] == BACKGROUND
    assert labels[7, 11] == BACKGROUND


def test_focus_wins_and_exact_thresholds_are_background():
    boxes = np.array([[0, 0, 70, 70], [0, 0, 30, 30], [100, 0, 105, 5]],
                     float)
    labels = focus_pixel_labels(boxes, (80, 128), stride=16)
    assert (labels[:2, :2] == FOCUS).all()  # 1 wins over the 70 px ignore
    assert labels[3, 3] == IGNORE
    assert labels[0, 6] == BACKGROUND  # exactly a = 5
    with pytest.raises(ValueError):
        focus_pixel_labels(boxes, (80, 128), a=10, b=5)
    assert focus_pixel_labels(np.zeros((0, 4)), (33, 17)).shape == (3, 2)


def test_focus_chips_two_blobs_far_apart_and_merged_when_close():
    prob = np.zeros((40, 40), np.float32)
    prob[2, 2] = prob[35, 35] = 0.9
    chips, orig = focus_chips(prob, 0.5, 3, 64, 16, (640, 640), factor=2.0)
    assert len(chips) == 2
    assert ((chips[:, 2:] - chips[:, :2]) >= 64).all()
    np.testing.assert_allclose(orig, chips / 2)
    prob[2, 5] = 0.9  # 3 cells right of the first blob: chips overlap
    chips, _ = focus_chips(prob, 0.5, 3, 64, 16, (640, 640))
    assert len(chips) == 2
    assert not (boxes_overlap(chips, chips) & ~np.eye(2, dtype=bool)).any()


def test_focus_chips_threshold_is_strict_and_border_clipping():
    prob = np.full((4, 4), 0.5, np.float32)
    assert len(focus_chips(prob, 0.5, 1, 64, 16, (64, 64))[0]) == 0
    prob[0, 0] = 0.6
    chips, _ = focus_chips(prob, 0.5, 1, 128, 16, (64, 100))
    np.testing.assert_allclose(chips, [[0, 0, 100, 64]])  # canvas < k


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 900), st.floats(0, 900),
                          st.floats(1, 200), st.floats(1, 200)),
                max_size=30))
def test_merged_chips_never_overlap_and_cover_inputs(raw):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in raw]).reshape(
        -1, 4)
    merged = merge_overlapping(boxes)
    adj = boxes_overlap(merged, merged)
    np.fill_diagonal(adj, False)
    assert not adj.any()
    if len(boxes):
        inside = ((boxes[:, None, :2] >= merged[None, :, :2]) &
                  (boxes[:, None, 2:] <= merged[None, :, 2:])).all(-1)
        assert inside.any(1).all()


def test_oracle_focus_chips_from_ground_truth():
    gt = np.array([[100, 100, 110, 110], [900, 700, 915, 712],
                   [0, 0, 400, 400]], float)
    chips, orig = oracle_focus_chips(gt, 800, 1000, factor=1.0,
                                     min_size=128)
    assert len(chips) == 2  # the 400 px object is background
    for box in gt[:2]:
        assert ((box[:2] >= orig[:, :2]) & (box[2:] <= orig[:, 2:])).all(
            1).any()


def test_focus_stack_pruning_rules():
    img_hw = (1000, 1000)
    chip = np.array([200, 200, 400, 400])
    dets = np.array([
        [250, 250, 300, 300],  # inside: kept
        [200, 250, 250, 300],  # touches the inner left border: dropped
        [250, 250, 300, 400],  # touches the inner bottom border: dropped
        [250, 250, 252, 252],  # 2 px, outside valid range (5, 100): dropped
    ], float)
    keep = focus_stack_keep_mask(dets, chip, img_hw, (5, 100))
    np.testing.assert_array_equal(keep, [True, False, False, False])
    # A chip on the image's left border keeps detections touching that
    # border if their other sides are inside ...
    chip = np.array([0, 200, 200, 400])
    dets = np.array([[0, 250, 50, 300], [0, 250, 200, 300]], float)
    np.testing.assert_array_equal(
        focus_stack_keep_mask(dets, chip, img_hw, (0, 1000)), [True, False])
    # ... and a chip spanning the image keeps everything in range.
    whole = np.array([0, 0, 1000, 1000])
    np.testing.assert_array_equal(
        focus_stack_keep_mask([[0, 0, 1000, 1000]], whole, img_hw,
                              (0, 2000)), [True])
