# Copyright (c) mmsnip contributors. All rights reserved.
import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmsnip.chips import (ChipConfig, ChipSet, ScaleSpec, box_sizes,
                          chip_ground_truth, chip_starts,
                          generate_positive_chips, greedy_cover, in_range,
                          inside_matrix, positive, sanitize_boxes)

ONE_SCALE = ChipConfig(scales=(ScaleSpec(factor=1.0),))


def test_chip_starts_reach_the_border():
    np.testing.assert_array_equal(chip_starts(600, 512, 32), [0, 32, 64, 88])
    np.testing.assert_array_equal(chip_starts(512, 512, 32), [0])
    np.testing.assert_array_equal(chip_starts(300, 512, 32), [0])
    np.testing.assert_array_equal(chip_starts(544, 512, 32), [0, 32])
    starts = chip_starts(1024, 512, 32)
    assert starts[-1] == 512 and len(np.unique(starts)) == len(starts)


def test_hand_checked_1000x600_image():
    # Grid: x starts 0, 32, ..., 480 and 488; y starts 0, 32, 64 and 88.
    # A and B share the first chip [0, 0, 512, 512] (first in row-major
    # order). C alone: x starts 448..488 (indices 14-16) -> middle 480;
    # y starts 64, 88 (indices 2-3) -> the first of the two middles, 64.
    boxes = np.array([[10, 10, 60, 60],      # A
                      [400, 300, 450, 350],  # B
                      [900, 500, 950, 550]],  # C
                     float)
    res = generate_positive_chips(boxes, 600, 1000, ONE_SCALE)
    np.testing.assert_array_equal(res.chips.boxes_scaled,
                                  [[0, 0, 512, 512], [480, 64, 992, 576]])
    np.testing.assert_array_equal(res.chips.boxes, res.chips.boxes_scaled)
    assert res.valid.all() and not res.uncoverable.any()
    # The same image at factor 2 (canvas 1200 x 2000): ORIGINAL chips are
    # the SCALED ones halved, and every box is covered in SCALED pixels.
    cfg = ChipConfig(scales=(ScaleSpec(factor=2.0),))
    res = generate_positive_chips(boxes, 600, 1000, cfg)
    chips = res.chips
    np.testing.assert_allclose(chips.boxes, chips.boxes_scaled / 2)
    assert inside_matrix(boxes * 2, chips.boxes_scaled).any(0).all()
    assert (chips.scale_factor == 2).all() and chips.is_positive.all()


def test_small_canvas_gives_one_clipped_chip():
    chips, covered, _ = greedy_cover(np.array([[10., 10, 20, 20]]),
                                     (200, 300), 512, 32)
    np.testing.assert_array_equal(chips, [[0, 0, 300, 200]])
    assert covered.all()
    # one side small, the other large: clipped on that side only
    chips, _, _ = greedy_cover(np.array([[900., 10, 920, 20]]),
                               (200, 1000), 512, 32)
    np.testing.assert_array_equal(chips[:, [1, 3]], [[0, 200]])
    assert chips[0, 2] - chips[0, 0] == 512


def test_box_larger_than_chip_is_uncoverable_not_an_infinite_loop():
    boxes = np.array([[0, 0, 700, 100], [10, 10, 20, 20]], float)
    chips, covered, coverable = greedy_cover(boxes, (1000, 1000), 512, 32)
    np.testing.assert_array_equal(coverable, [False, True])
    np.testing.assert_array_equal(covered, [False, True])
    assert len(chips) == 1
    res = generate_positive_chips(boxes, 1000, 1000, ONE_SCALE)
    np.testing.assert_array_equal(res.uncoverable, [[True, False]])
    np.testing.assert_array_equal(res.valid, [[True, True]])
    # ... and it is seen, cropped, in the chip it overlaps
    gt = chip_ground_truth(res.chips.boxes[0], 1.0, boxes, (0, np.inf))
    np.testing.assert_array_equal(gt.indices, [0, 1])
    np.testing.assert_array_equal(gt.covered, [False, True])
    assert gt.valid.all()


def test_off_grid_chip_for_a_box_between_grid_positions():
    # 495 px wide: no grid chip (starts 0, 32, ...) encloses [20, 515].
    box = np.array([[20., 0, 515, 50]])
    chips, covered, _ = greedy_cover(box, (1000, 1000), 512, 32,
                                     off_grid=False)
    assert len(chips) == 0 and not covered.any()
    chips, covered, _ = greedy_cover(box, (1000, 1000), 512, 32)
    # feasible starts [3, 20] -> middle 11.5 -> 12 (integer)
    np.testing.assert_array_equal(chips, [[12, 0, 524, 512]])
    assert covered.all()
    cfg = ChipConfig(scales=(ScaleSpec(factor=1.0),), off_grid=False)
    res = generate_positive_chips(box, 1000, 1000, cfg)
    assert res.uncoverable.all() and len(res.chips) == 0


def test_to_canvas_clips_x_to_the_width_and_y_to_the_height():
    # a 10 px box at factor 1.04 is 10.4 px: over a rounded-down canvas
    # side it is clipped to that side, per box (canvas (h, w)) or shared
    boxes = np.array([[0, 0, 10, 10.], [5, 5, 10, 10]])
    np.testing.assert_allclose(positive.to_canvas(
        boxes, np.array([[1.04], [1.04]]), np.array([[10., 20], [20, 10]])),
        [[0, 0, 10.4, 10], [5.2, 5.2, 10, 10.4]])
    np.testing.assert_allclose(positive.to_canvas(boxes, 1.04, (10, 20)),
                               [[0, 0, 10.4, 10], [5.2, 5.2, 10.4, 10]])


@pytest.mark.parametrize('x1, start', [
    # feasible starts [512.05 - 512, 2.9] = [0.05, 2.9]: middle 1.475 -> 1
    (2.9, 1.0),
    # feasible starts [0.05, 0.5] hold no integer: the interval's start
    (0.5, 0.05)])
def test_off_grid_start_near_the_canvas_origin(x1, start):
    box = np.array([[x1, 0, 512.05, 100]])
    chips, covered, _ = greedy_cover(box, (200, 1000), 512, 32)
    np.testing.assert_allclose(chips, [[start, 0, start + 512, 200]])
    assert covered.all()
    # the array path's start (boxes of many canvases)
    np.testing.assert_allclose(positive.off_grid_starts(
        box[:, 0], box[:, 2], 1000, 512), [start])


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


def test_chip_reaching_the_canvas_border_reaches_the_image_border():
    # 1003 * 1.667 = 1672.001 rounds down to 1672: 1672 / 1.667 < 1003.
    cfg = ChipConfig(scales=(ScaleSpec(factor=1.667),))
    box = np.array([[953., 10, 1003, 60]])
    res = generate_positive_chips(box, 600, 1003, cfg)
    assert res.chips.boxes[0, 2] == 1003
    gt = chip_ground_truth(res.chips.boxes[0], 1.667, box, (0, np.inf))
    assert gt.covered.all()


def test_crowd_boxes_need_no_cover_and_empty_images_work():
    cfg = ChipConfig.paper_coco()
    res = generate_positive_chips(np.array([[10., 10, 30, 30]]), 480, 640,
                                  cfg, iscrowd=np.array([True]))
    assert len(res.chips) == 0 and not res.valid.any()
    empty = generate_positive_chips(np.zeros((0, 4)), 480, 640, cfg)
    chips = empty.chips
    assert len(chips) == 0 and chips.boxes.shape == (0, 4)
    assert chips.boxes_scaled.shape == (0, 4)
    assert chips.scale_index.dtype == np.int64
    assert chips.is_positive.dtype == bool
    assert empty.valid.shape == (3, 0) and empty.uncoverable.shape == (3, 0)
    # no box valid anywhere (all degenerate)
    res = generate_positive_chips([[5, 5, 5, 5]], 480, 640, cfg)
    assert len(res.chips) == 0 and res.valid.shape == (3, 1)
    with pytest.raises(ValueError, match='image size'):
        generate_positive_chips(np.zeros((0, 4)), 0, 640, cfg)
    with pytest.raises(ValueError, match='iscrowd has 2 entries'):
        generate_positive_chips([[0, 0, 5, 5]], 480, 640, cfg, [0, 1])


def test_degenerate_boxes_are_dropped_or_clipped():
    boxes = np.array([[10, 10, 10, 50], [np.nan, 0, 5, 5], [-50, -50, 30, 30],
                      [700, 10, 800, 50], [20, 20, 10, 10]], float)
    res = generate_positive_chips(boxes, 480, 640, ChipConfig.paper_coco())
    assert not res.valid[:, [0, 1, 3, 4]].any()
    assert res.valid[:, 2].any()  # clipped to [0, 0, 30, 30]: 30 px


def test_huge_image_never_allocates_the_canvas():
    cfg = ChipConfig.paper_coco()
    boxes = np.array([[100, 100, 120, 120], [19000, 14000, 19030, 14040],
                      [5000, 5000, 5060, 5050]], float)
    tracemalloc.start()
    res = generate_positive_chips(boxes, 15000, 20000, cfg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    fine = res.chips.select(res.chips.scale_index == 2)
    assert len(fine) == 3  # 3x canvas is 45000 x 60000 px
    assert inside_matrix(boxes * 3, fine.boxes_scaled).any(0).all()
    # guards against O(canvas) regressions (memory, not time; the speed
    # is tools/benchmark_chips.py's): a uint8 canvas would be 2.7 GB, the
    # candidate grid 2.6 M cells
    assert peak < 4 << 20


def test_huge_image_with_many_scattered_boxes():
    # aerial-like: 2000 small objects, split into independent groups
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [19900, 14900], (2000, 2))
    boxes = np.c_[xy, xy + rng.uniform(5, 60, (2000, 2))]
    cfg = ChipConfig.paper_coco()
    res = generate_positive_chips(boxes, 15000, 20000, cfg)
    for s in range(3):
        mine = res.chips.boxes[res.chips.scale_index == s]
        need = res.valid[s]
        tol = [-1e-6, -1e-6, 1e-6, 1e-6]
        assert inside_matrix(boxes[need], mine + tol).any(0).all()
    assert not res.uncoverable.any()


def test_chip_ground_truth_crops_and_keeps_validity():
    gt = np.array([[90, 90, 130, 130], [0, 0, 300, 300], [500, 500, 520, 520],
                   [120, 120, 150, 150]], float)
    chip = np.array([100, 100, 200, 200])
    out = chip_ground_truth(chip, 2.0, gt, (0, 80),
                            iscrowd=[False, True, False, False])
    np.testing.assert_array_equal(out.indices, [0, 1, 3])
    np.testing.assert_allclose(out.boxes, [[0, 0, 60, 60], [0, 0, 200, 200],
                                           [40, 40, 100, 100]])
    # validity is decided on the whole (unclipped) box: 40 px valid, 300 not
    np.testing.assert_array_equal(out.valid, [True, False, True])
    np.testing.assert_array_equal(out.crowd, [False, True, False])
    np.testing.assert_array_equal(out.covered, [False, False, True])
    # anisotropic factor of an integer crop
    out = chip_ground_truth(chip, (2.0, 1.0), gt[3:], (0, 80))
    np.testing.assert_allclose(out.boxes, [[40, 20, 100, 50]])
    empty = chip_ground_truth(chip, 1.0, np.zeros((0, 4)), (0, 80))
    assert empty.boxes.shape == (0, 4) and empty.indices.dtype == np.int64


def test_chip_set_helpers():
    res = generate_positive_chips([[10, 10, 30, 30], [300, 200, 500, 400]],
                                  480, 640, ChipConfig.paper_coco())
    both = ChipSet.concat([res.chips, ChipSet.empty(), res.chips])
    assert len(both) == 2 * len(res.chips)
    np.testing.assert_array_equal(both.select(slice(0, len(res.chips))).boxes,
                                  res.chips.boxes)
    assert len(ChipSet.concat([])) == 0


def test_custom_scales_and_stride():
    cfg = ChipConfig(scales=(ScaleSpec(factor=2, valid_range=(0, 40)),),
                     chip_size=128, chip_stride=16)
    boxes = np.array([[10, 10, 20, 20], [200, 200, 230, 230]], float)
    res = generate_positive_chips(boxes, 300, 300, cfg)
    assert len(res.chips) == 2
    assert ((res.chips.boxes_scaled[:, 2:] -
             res.chips.boxes_scaled[:, :2]) == 128).all()


# -- properties --------------------------------------------------------------
boxes_strategy = st.lists(
    st.tuples(st.floats(-50, 1950), st.floats(-50, 1450), st.floats(0, 600),
              st.floats(0, 600)), min_size=0, max_size=25)


def _to_boxes(raw):
    return np.array([[x, y, x + bw, y + bh]
                     for x, y, bw, bh in raw]).reshape(-1, 4)


@settings(max_examples=200, deadline=None)
@given(boxes_strategy, st.sampled_from([(1500, 2000), (400, 300),
                                        (700, 2000), (97, 1203)]),
       st.booleans(), st.booleans())
def test_every_valid_box_is_inside_a_chip_of_its_scale(
        raw, hw, crowd_first, off_grid):
    h, w = hw
    boxes = _to_boxes(raw)
    crowd = np.zeros(len(boxes), bool)
    crowd[:1] = crowd_first
    cfg = ChipConfig(scales=ChipConfig.paper_coco().scales,
                     off_grid=off_grid)
    res = generate_positive_chips(boxes, h, w, cfg, crowd)
    chips = res.chips
    clipped, keep = sanitize_boxes(boxes, h, w)
    for s, spec in enumerate(cfg.scales):
        # G_i: sane, not crowd, in range
        np.testing.assert_array_equal(
            res.valid[s],
            keep & ~crowd & in_range(box_sizes(clipped), spec.valid_range))
        f = spec.factor_for(h, w)
        canvas = spec.scaled_shape(h, w)
        mine = chips.select(chips.scale_index == s)
        # chips lie inside the scaled canvas, with side min(K, canvas side)
        sc = mine.boxes_scaled
        assert (sc[:, :2] >= 0).all()
        assert (sc[:, 2] <= canvas[1]).all() and (sc[:, 3] <= canvas[0]).all()
        np.testing.assert_allclose(sc[:, 2] - sc[:, 0], min(512, canvas[1]))
        np.testing.assert_allclose(sc[:, 3] - sc[:, 1], min(512, canvas[0]))
        # ... and inside the image in ORIGINAL pixels
        assert (mine.boxes[:, :2] >= 0).all()
        assert (mine.boxes[:, 2] <= w).all() and (mine.boxes[:, 3] <= h).all()
        need = res.valid[s] & ~res.uncoverable[s]
        scaled = np.minimum(clipped * f,
                            [canvas[1], canvas[0], canvas[1], canvas[0]])
        assert inside_matrix(scaled[need], sc).any(axis=0).all()
        # the same in ORIGINAL pixels (what CropChip and export see)
        for n in np.flatnonzero(need):
            assert any(chip_ground_truth(c, f, clipped[n:n + 1],
                                         spec.valid_range).covered.any()
                       for c in mine.boxes)
        # no more chips than boxes to cover (each chip covers a new box)
        assert len(mine) <= need.sum()
        # uncoverable: larger than a chip (or between grid positions)
        big = scaled[res.uncoverable[s]]
        side = big[:, 2:] - big[:, :2]
        limit = np.array([min(512, canvas[1]), min(512, canvas[0])])
        if off_grid:
            assert (side > limit + 1e-6).any(axis=1).all()
        else:
            assert (side > limit - 32).any(axis=1).all()


@settings(max_examples=100, deadline=None)
@given(boxes_strategy, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_box_order(raw, rnd):
    boxes = _to_boxes(raw)
    perm = list(range(len(boxes)))
    rnd.shuffle(perm)
    cfg = ChipConfig.paper_coco()
    a = generate_positive_chips(boxes, 1500, 2000, cfg)
    b = generate_positive_chips(boxes[perm], 1500, 2000, cfg)
    for f in ('boxes', 'boxes_scaled', 'scale_index', 'scale_factor'):
        np.testing.assert_array_equal(getattr(a.chips, f),
                                      getattr(b.chips, f))
    np.testing.assert_array_equal(a.valid[:, perm], b.valid)
    np.testing.assert_array_equal(a.uncoverable[:, perm], b.uncoverable)


def _dense_greedy(boxes, hw, k, d):
    """Algorithm 1 over every grid candidate, written plainly: the first
    best candidate in row-major order picks the boxes S; the chip is the
    middle of the candidates enclosing S (the documented tie-break)."""
    h, w = hw
    sx, sy = chip_starts(w, k, d), chip_starts(h, k, d)
    iy, ix = np.divmod(np.arange(len(sx) * len(sy)), len(sx))
    cand = np.stack([sx[ix], sy[iy], sx[ix] + min(k, w), sy[iy] + min(k, h)],
                    axis=1)
    inside = inside_matrix(boxes, cand)
    remaining = inside.any(0)
    chips = []
    while remaining.any():
        best = int(np.argmax((inside & remaining).sum(1)))
        s = inside[best] & remaining
        ok = inside[:, s].all(1)
        mid_x = (ix[ok].min() + ix[ok].max()) // 2
        mid_y = (iy[ok].min() + iy[ok].max()) // 2
        chips.append(cand[(ix == mid_x) & (iy == mid_y)][0])
        remaining &= ~s
    return np.array(chips).reshape(-1, 4), inside.any(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1300), st.integers(0, 700),
                          st.integers(1, 300), st.integers(1, 300)),
                max_size=20),
       st.sampled_from([(600, 800), (300, 1400), (700, 700)]),
       st.sampled_from([(256, 32), (256, 64), (128, 16)]))
def test_greedy_cover_equals_a_dense_enumeration(raw, hw, k_d):
    h, w = hw
    k, d = k_d
    boxes = np.minimum(np.array([[x, y, x + bw, y + bh]
                                 for x, y, bw, bh in raw]).reshape(-1, 4),
                       [w, h, w, h]).astype(float)
    chips, covered, coverable = greedy_cover(boxes, hw, k, d,
                                             off_grid=False)
    expected, fits = _dense_greedy(boxes, hw, k, d)
    np.testing.assert_array_equal(chips, expected)
    np.testing.assert_array_equal(coverable, fits)
    np.testing.assert_array_equal(covered, coverable)


@settings(max_examples=50, deadline=None)
@given(boxes_strategy)
def test_group_splitting_does_not_change_the_cover(raw):
    boxes = np.minimum(_to_boxes(raw), [2000, 1500, 2000, 1500]) * 3
    hw = (4500, 6000)
    chips, covered, _ = greedy_cover(boxes, hw, 512, 32)
    with mock.patch.object(positive, '_DENSE_BUCKET', 0):
        coarse, coarse_covered, _ = greedy_cover(boxes, hw, 512, 32)
    np.testing.assert_array_equal(chips, coarse)
    np.testing.assert_array_equal(covered, coarse_covered)


# The three implementations of the greedy loop behind greedy_cover: plain
# Python bit masks (a few boxes), the whole small count grid (its run masks
# from cached step tables, or built directly for long sides), and the
# compressed grid updated in windows. Each setting forces one of them.
PATHS = {
    'python': dict(_SMALL=10 ** 6),
    'small_grid': dict(_SMALL=0),
    'small_grid_no_tables': dict(_SMALL=0, _STEP_TABLE=0),
    'window': dict(_SMALL=0, _SMALL_GRID=0),
}


def _cover_with(path, *args, **kwargs):
    with mock.patch.multiple(positive, **PATHS[path]):
        return greedy_cover(*args, **kwargs)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1300), st.integers(0, 700),
                          st.integers(1, 300), st.integers(1, 300)),
                max_size=40),
       st.sampled_from([(600, 800), (300, 1400), (700, 700), (400, 200)]),
       st.sampled_from([(256, 32), (256, 64), (128, 16), (512, 32)]),
       st.sampled_from([1, 2, 5]), st.booleans())
def test_every_greedy_path_gives_the_same_cover(raw, hw, k_d, min_count,
                                                off_grid):
    h, w = hw
    k, d = k_d
    boxes = np.minimum(np.array([[x, y, x + bw, y + bh]
                                 for x, y, bw, bh in raw]).reshape(-1, 4),
                       [w, h, w, h]).astype(float) * 0.97
    results = {p: _cover_with(p, boxes, hw, k, d, min_count=min_count,
                              off_grid=off_grid) for p in PATHS}
    for path in ('small_grid', 'small_grid_no_tables', 'window'):
        for got, want in zip(results[path], results['python']):
            np.testing.assert_array_equal(got, want, err_msg=path)
    if min_count == 1 and not off_grid:
        expected, fits = _dense_greedy(boxes, hw, k, d)
        np.testing.assert_array_equal(results['window'][0], expected)
        np.testing.assert_array_equal(results['window'][2], fits)


CHIP_FIELDS = ('boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
               'is_positive')


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.one_of(st.floats(-200, 1400, allow_nan=False),
              st.sampled_from([0.0, 600.0, np.nan, np.inf, -np.inf])),
    st.floats(-200, 1000, allow_nan=False),
    # widths: any, or on a valid-range border of paper_coco (with h None:
    # a square of that size)
    st.one_of(st.floats(1, 700), st.sampled_from([32., 80., 120., 150.])),
    st.one_of(st.floats(-5, 500), st.none()), st.booleans()), max_size=24),
    # (401, 603), (250, 371): canvases rounded down at some scale, so the
    # far-border rule of the ORIGINAL chips matters
    st.sampled_from([(600, 1000), (480.5, 639.25), (300, 4000), (90, 70),
                     (401, 603), (250, 371)]),
    st.sampled_from([ChipConfig.paper_coco(), ONE_SCALE]))
# boxes across the right and bottom borders: chips on the far canvas
# borders, whose ORIGINAL sides are put on the image border
@example([(580., 100., 120., 60., False), (100., 380., 60., 80., False)],
         (401, 603), ChipConfig.paper_coco())
def test_few_box_path_equals_the_numpy_path(raw, hw, cfg):
    # generate_positive_chips of up to _SMALL boxes runs on Python floats
    # from the clean-up on; forced onto the numpy path (clean-up, validity,
    # greedy_cover, chip_set_from_rows) it must give the same result.
    boxes = np.array([[x, y, x + w, y + (w if h is None else h)]
                      for x, y, w, h, _ in raw], float).reshape(-1, 4)
    crowd = np.array([c for *_, c in raw], bool)
    results = []
    for small in (10 ** 6, -1):
        with mock.patch.object(positive, '_SMALL', small):
            results.append(generate_positive_chips(boxes, *hw, cfg, crowd))
    few, numpy_path = results
    for f in CHIP_FIELDS:
        got, want = getattr(few.chips, f), getattr(numpy_path.chips, f)
        np.testing.assert_array_equal(got, want, err_msg=f)
        assert got.dtype == want.dtype, f
    np.testing.assert_array_equal(few.valid, numpy_path.valid)
    np.testing.assert_array_equal(few.uncoverable, numpy_path.uncoverable)
    assert few.valid.shape == (len(cfg.scales), len(boxes))


def test_batch_equals_one_image_at_a_time():
    rng = np.random.default_rng(5)
    cfg = ChipConfig.paper_coco()
    boxes, starts, heights, widths, crowd = [], [0], [], [], []
    for k in range(300):
        h, w = int(rng.integers(200, 900)), int(rng.integers(200, 900))
        # mostly a few boxes (plain Python path), sometimes many (numpy)
        n = int(rng.integers(30, 60)) if k % 25 == 0 else \
            int(rng.poisson(6))
        xy = rng.uniform(-20, [w, h], (n, 2))
        b = np.c_[xy, xy + np.exp(rng.normal(3.5, 1.2, (n, 2)))]
        if k % 40 == 1 and n:
            b[0, 2] = np.nan  # dropped by sanitize_boxes in both
        boxes.append(b)
        crowd.append(rng.random(n) < 0.1)
        starts.append(starts[-1] + n)
        heights.append(h)
        widths.append(w)
    chips, counts = positive.positive_chips_batch(
        np.concatenate(boxes), starts, np.array(heights, float),
        np.array(widths, float), cfg, np.concatenate(crowd))
    expected = ChipSet.concat([
        generate_positive_chips(b, h, w, cfg, c).chips
        for b, h, w, c in zip(boxes, heights, widths, crowd)])
    for f in CHIP_FIELDS:
        np.testing.assert_array_equal(getattr(chips, f),
                                      getattr(expected, f), err_msg=f)
        assert getattr(chips, f).dtype == getattr(expected, f).dtype
    np.testing.assert_array_equal(counts, [
        len(generate_positive_chips(b, h, w, cfg, c).chips)
        for b, h, w, c in zip(boxes, heights, widths, crowd)])


@pytest.mark.parametrize('change, match', [
    (dict(crowd=[False, True, False]), 'iscrowd has 3 entries for 2 boxes'),
    (dict(crowd=[False]), 'iscrowd has 1 entries for 2 boxes'),
    (dict(box_start=[0, 1]), 'box_start must run from 0 to the 2 boxes'),
    (dict(box_start=[0, 2, 1, 2]), 'never decreasing'),
    (dict(box_start=[1, 2]), 'box_start must run from 0'),
    (dict(heights=[480.0]), '1 heights and 2 widths for 2 images'),
    (dict(widths=[640.0, np.inf]), 'positive and finite'),
])
def test_batch_refuses_inconsistent_arrays(change, match):
    args = dict(boxes=[[0, 0, 40, 40], [10, 10, 50, 50]],
                box_start=[0, 1, 2], heights=[480.0, 300.0],
                widths=[640.0, 400.0], crowd=[False, False])
    args.update(change)
    with pytest.raises(ValueError, match=match):
        positive.positive_chips_batch(cfg=ChipConfig.paper_coco(), **args)


@pytest.mark.parametrize('num', [1, 40])  # plain Python and numpy paths
def test_greedy_cover_refuses_non_finite_boxes(num):
    boxes = np.tile([[10.0, 10, 40, 40]], (num, 1))
    boxes[-1, 0] = np.nan
    with pytest.raises(ValueError, match=rf'boxes_scaled\[{num - 1}\].*not '
                       'finite; sanitise'):
        greedy_cover(boxes, (2000, 2000), 512, 32)


def test_a_given_cover_runs_every_scale_of_every_image():
    # A reference cover (tools/benchmark_chips.py passes the released
    # generator's) is called for each scale with valid boxes, also for an
    # image of a few boxes (which the default covers in plain Python), and
    # its chips are the result.
    cfg = ChipConfig.paper_coco()
    rng = np.random.default_rng(3)
    for n in (3, 40):
        xy = rng.uniform(0, 400, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(5, 200, (n, 2))]
        calls = []

        def recording_cover(*args, **kwargs):
            calls.append(args[1])
            return greedy_cover(*args, **kwargs)

        got = generate_positive_chips(boxes, 480, 640, cfg,
                                      cover=recording_cover)
        want = generate_positive_chips(boxes, 480, 640, cfg)
        assert len(calls) == int(want.valid.any(axis=1).sum()) > 0
        np.testing.assert_array_equal(got.chips.boxes_scaled,
                                      want.chips.boxes_scaled)
        np.testing.assert_array_equal(got.chips.scale_index,
                                      want.chips.scale_index)
        np.testing.assert_array_equal(got.uncoverable, want.uncoverable)
