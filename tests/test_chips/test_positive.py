# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import (ChipConfig, ScaleSpec, chip_ground_truth,
                          chip_starts, generate_positive_chips, greedy_cover,
                          inside_matrix)
from mmsnip.chips.boxes import box_sizes, in_range, sanitize_boxes


def test_chip_starts_reach_the_border():
    np.testing.assert_array_equal(chip_starts(600, 512, 32), [0, 32, 64, 88])
    np.testing.assert_array_equal(chip_starts(512, 512, 32), [0])
    np.testing.assert_array_equal(chip_starts(300, 512, 32), [0])
    starts = chip_starts(1024, 512, 32)
    assert starts[-1] == 512 and len(np.unique(starts)) == len(starts)


def test_hand_checked_cover():
    # Two boxes 100 px apart fit one 512 chip; a third far away needs a
    # second chip; the chips are centred on the feasible runs.
    boxes = np.array([[100, 100, 150, 150], [200, 200, 260, 260],
                      [1500, 100, 1540, 140]], float)
    chips, covered, coverable = greedy_cover(boxes, (600, 2000), 512, 32)
    assert covered.all() and coverable.all()
    assert len(chips) == 2
    assert inside_matrix(boxes[:2], chips[:1]).all()
    assert inside_matrix(boxes[2:], chips[1:]).all()
    assert (chips[:, 2] - chips[:, 0] == 512).all()


def test_small_canvas_gives_one_clipped_chip():
    chips, covered, _ = greedy_cover(np.array([[10., 10, 20, 20]]),
                                     (200, 300), 512, 32)
    np.testing.assert_array_equal(chips, [[0, 0, 300, 200]])
    assert covered.all()


def test_box_larger_than_chip_is_uncoverable_not_an_infinite_loop():
    boxes = np.array([[0, 0, 700, 100], [10, 10, 20, 20]], float)
    chips, covered, coverable = greedy_cover(boxes, (1000, 1000), 512, 32)
    np.testing.assert_array_equal(coverable, [False, True])
    np.testing.assert_array_equal(covered, [False, True])
    assert len(chips) == 1


def test_paper_scales_pick_the_right_boxes():
    cfg = ChipConfig.paper_coco()
    # 640x480 image: a 20 px box is valid at the fine scales only, a 200 px
    # box at the coarse scale only, a 100 px box at coarse and middle.
    boxes = np.array([[10, 10, 30, 30], [300, 200, 500, 400],
                      [100, 100, 200, 200]], float)
    res = generate_positive_chips(boxes, 480, 640, cfg)
    np.testing.assert_array_equal(
        res.valid, [[False, True, False], [False, False, True],
                    [True, False, False]])
    assert set(res.chips.scale_index.tolist()) == {0, 1, 2}
    coarse = res.chips.select(res.chips.scale_index == 0)
    np.testing.assert_allclose(coarse.scale_factor, 0.8)
    np.testing.assert_allclose(coarse.boxes_scaled, [[0, 0, 512, 384]])
    np.testing.assert_allclose(coarse.boxes, [[0, 0, 640, 480]])


def test_crowd_boxes_need_no_cover_and_empty_images_work():
    cfg = ChipConfig.paper_coco()
    res = generate_positive_chips(np.array([[10., 10, 30, 30]]), 480, 640,
                                  cfg, iscrowd=np.array([True]))
    assert len(res.chips) == 0 and not res.valid.any()
    empty = generate_positive_chips(np.zeros((0, 4)), 480, 640, cfg)
    assert len(empty.chips) == 0 and empty.chips.boxes.shape == (0, 4)
    assert empty.valid.shape == (3, 0)
    with pytest.raises(ValueError, match='image size'):
        generate_positive_chips(np.zeros((0, 4)), 0, 640, cfg)


def test_degenerate_boxes_are_dropped_or_clipped():
    boxes = np.array([[10, 10, 10, 50], [np.nan, 0, 5, 5], [-50, -50, 30, 30],
                      [700, 10, 800, 50], [20, 20, 10, 10]], float)
    clipped, keep = sanitize_boxes(boxes, 480, 640)
    np.testing.assert_array_equal(keep, [False, False, True, False, False])
    np.testing.assert_array_equal(clipped[2], [0, 0, 30, 30])
    res = generate_positive_chips(boxes, 480, 640, ChipConfig.paper_coco())
    assert not res.valid[:, [0, 1, 3, 4]].any()


def test_huge_image_does_not_allocate_the_canvas():
    cfg = ChipConfig.paper_coco()
    boxes = np.array([[100, 100, 120, 120], [19000, 14000, 19030, 14040]])
    res = generate_positive_chips(boxes, 15000, 20000, cfg)
    fine = res.chips.select(res.chips.scale_index == 2)
    assert len(fine) == 2  # 3x canvas is 60000x45000 px


def test_chip_ground_truth_crops_and_keeps_validity():
    gt = np.array([[90, 90, 130, 130], [0, 0, 300, 300], [500, 500, 520, 520]],
                  float)
    chip = np.array([100, 100, 200, 200])
    out = chip_ground_truth(chip, 2.0, gt, (0, 80), iscrowd=[False, True,
                                                             False])
    np.testing.assert_array_equal(out.indices, [0, 1])
    np.testing.assert_allclose(out.boxes, [[0, 0, 60, 60], [0, 0, 200, 200]])
    # validity is decided on the whole (unclipped) box: 40 px valid, 300 not
    np.testing.assert_array_equal(out.valid, [True, False])
    np.testing.assert_array_equal(out.crowd, [False, True])
    np.testing.assert_array_equal(out.covered, [False, False])


boxes_strategy = st.lists(
    st.tuples(st.floats(0, 1900), st.floats(0, 1400), st.floats(2, 400),
              st.floats(2, 400)), min_size=0, max_size=25)


def _to_boxes(raw, w=2000, h=1500):
    arr = np.array([[x, y, min(x + bw, w), min(y + bh, h)]
                    for x, y, bw, bh in raw]).reshape(-1, 4)
    return arr


@settings(max_examples=60, deadline=None)
@given(boxes_strategy, st.sampled_from([(1500, 2000), (400, 300),
                                        (700, 2000)]))
def test_every_valid_box_is_inside_a_chip_of_its_scale(raw, hw):
    h, w = hw
    boxes = _to_boxes(raw, w, h)
    boxes, keep = sanitize_boxes(boxes, h, w)
    boxes = boxes[keep]
    cfg = ChipConfig.paper_coco()
    res = generate_positive_chips(boxes, h, w, cfg)
    chips = res.chips
    for s, spec in enumerate(cfg.scales):
        canvas = spec.scaled_shape(h, w)
        mine = chips.boxes_scaled[chips.scale_index == s]
        # chips lie inside the scaled canvas
        assert (mine[:, :2] >= 0).all()
        assert (mine[:, 2] <= canvas[1]).all()
        assert (mine[:, 3] <= canvas[0]).all()
        need = res.valid[s] & ~res.uncoverable[s]
        f = spec.factor_for(h, w)
        scaled = np.minimum(boxes[need] * f,
                            [canvas[1], canvas[0], canvas[1], canvas[0]])
        if need.any():
            assert inside_matrix(scaled, mine).any(axis=0).all()
        # uncoverable boxes are (nearly) as large as a chip: a side longer
        # than K - d may fall between the positions of the stride grid
        big = boxes[res.uncoverable[s]] * f
        limit = min(cfg.chip_size, *canvas) - cfg.chip_stride
        assert ((big[:, 2:] - big[:, :2]) > limit).any(axis=1).all()
        assert (res.valid[s] == in_range(box_sizes(boxes),
                                         spec.valid_range)).all()


@settings(max_examples=40, deadline=None)
@given(boxes_strategy, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_box_order(raw, rnd):
    boxes = _to_boxes(raw)
    perm = list(range(len(boxes)))
    rnd.shuffle(perm)
    cfg = ChipConfig.paper_coco()
    a = generate_positive_chips(boxes, 1500, 2000, cfg).chips
    b = generate_positive_chips(boxes[perm], 1500, 2000, cfg).chips

    def key(c):
        return sorted(map(tuple, np.c_[c.scale_index, c.boxes_scaled]))
    assert key(a) == key(b)


def test_custom_scales_and_stride():
    cfg = ChipConfig(scales=(ScaleSpec(factor=2, valid_range=(0, 40)),),
                     chip_size=128, chip_stride=16)
    boxes = np.array([[10, 10, 20, 20], [200, 200, 230, 230]], float)
    res = generate_positive_chips(boxes, 300, 300, cfg)
    assert len(res.chips) == 2
    assert ((res.chips.boxes_scaled[:, 2:] -
             res.chips.boxes_scaled[:, :2]) == 128).all()
