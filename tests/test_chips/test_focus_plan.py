# Copyright (c) mmsnip contributors. All rights reserved.
"""The cascade planner (pure numpy): hand-made maps, exact chips."""
import math
import subprocess
import sys

import numpy as np
import pytest

from mmsnip.chips import (EVERY_PIXEL, NO_PIXEL, FocusLabelRule, FocusScale,
                          ScaleSpec, SizeGap, Windows, cap_chips,
                          cascade_size_gaps, focus_recall,
                          focus_scales, format_focus_recall, plan_next_chips,
                          plan_oracle_chips, stack_keep_masks)

SPEC = ScaleSpec(factor=1.0, valid_range=(0, None))


def _scale(**kw):
    return FocusScale(SPEC, **dict(dict(threshold=0.5, dilation=1,
                                        min_size=0), **kw))


def _windows(origins, factors, shapes):
    return Windows(np.array(origins, float), np.array(factors, float),
                   np.array(shapes, np.int64))


def test_min_size_is_in_the_next_scales_pixels():
    # A 200 x 200 image at factor 0.5: one 100 x 100 crop, stride 10, one
    # FocusPixel at row 2, col 3 = CROP [30, 20, 40, 30]. k = 40 px of the
    # next scale (factor 1.0) = 20 CROP px: grown about its centre
    # (35, 25) to [25, 15, 45, 35] CROP = [50, 30, 90, 70] ORIGINAL, 40 px
    # wide: 40 px of the next scale.
    prob = np.zeros((10, 10))
    prob[2, 3] = 1
    win = _windows([[0, 0]], [[0.5, 0.5]], [[100, 100]])
    chips = plan_next_chips([prob], win, _scale(min_size=40), 0.5, 1.0, 10,
                            (200, 200), max_chips=8)
    np.testing.assert_array_equal(chips, [[50, 30, 90, 70]])
    # The same k with the next scale at factor 2.0: 10 CROP px, no growth.
    chips = plan_next_chips([prob], win, _scale(min_size=40), 0.5, 2.0, 10,
                            (200, 200), max_chips=8)
    np.testing.assert_array_equal(chips, [[60, 40, 80, 60]])


def test_min_size_in_the_current_scales_pixels_as_the_original_code():
    # The map of test_min_size_is_in_the_next_scales_pixels; k = 40 counted
    # in THIS scale's pixels (factor 0.5): grown about (35, 25) CROP to
    # [15, 5, 55, 45] CROP = [30, 10, 110, 90] ORIGINAL, 80 px of the next
    # scale (factor 1.0): twice the default frame's chip per side.
    prob = np.zeros((10, 10))
    prob[2, 3] = 1
    win = _windows([[0, 0]], [[0.5, 0.5]], [[100, 100]])
    scale = _scale(min_size=40, min_size_frame='current')
    assert scale.min_size_here(0.5, 1.0) == 40
    assert _scale(min_size=40).min_size_here(0.5, 1.0) == 20
    chips = plan_next_chips([prob], win, scale, 0.5, 1.0, 10, (200, 200),
                            max_chips=8)
    np.testing.assert_array_equal(chips, [[30, 10, 110, 90]])
    # The next scale's factor no longer matters.
    np.testing.assert_array_equal(
        plan_next_chips([prob], win, scale, 0.5, 2.0, 10, (200, 200),
                        max_chips=8), [[30, 10, 110, 90]])
    assert FocusScale.from_dict(dict(factor=1.0, min_size_frame='current')
                                ).min_size_frame == 'current'
    with pytest.raises(ValueError, match=r"scale\.min_size_frame must be "
                       r"one of \('next', 'current'\), got 'map'"):
        _scale(min_size_frame='map')


def test_chips_of_overlapping_windows_are_merged():
    # Two 40 x 40 windows at factor 1, origins x = 0 and x = 30, stride 10.
    # Window 0: cells (0, 2), (0, 3) -> [20, 0, 40, 10]. Window 1: cells
    # (0, 0), (0, 1) -> [30, 0, 50, 10] ORIGINAL: they overlap and merge to
    # [20, 0, 50, 10]; its cell (3, 3) -> [60, 30, 70, 40] stays apart.
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[0, 2:4] = 1
    b[0, 0:2] = 1
    b[3, 3] = 1
    win = _windows([[0, 0], [30, 0]], [[1, 1], [1, 1]], [[40, 40], [40, 40]])
    chips = plan_next_chips([a, b], win, _scale(), 1.0, 1.0, 10, (40, 70),
                            max_chips=8)
    np.testing.assert_array_equal(chips, [[20, 0, 50, 10], [60, 30, 70, 40]])


def test_cap_keeps_the_largest_chips():
    # One 60 x 60 window, stride 10, four separate components of areas
    # 100, 200, 300 and 100 ORIGINAL px^2.
    prob = np.zeros((6, 6))
    prob[0, 0] = 1              # [0, 0, 10, 10]
    prob[0, 3:5] = 1            # [30, 0, 50, 10]
    prob[3:6, 0] = 1            # [0, 30, 10, 60]
    prob[4, 3] = 1              # [30, 40, 40, 50]
    win = _windows([[0, 0]], [[1, 1]], [[60, 60]])
    args = ([prob], win, _scale(), 1.0, 1.0, 10, (60, 60))
    assert len(plan_next_chips(*args, max_chips=8)) == 4
    np.testing.assert_array_equal(plan_next_chips(*args, max_chips=2),
                                  [[0, 30, 10, 60], [30, 0, 50, 10]])
    # cap_chips alone: ties keep their input order.
    boxes = np.array([[0, 0, 2, 2], [0, 0, 3, 3], [5, 5, 7, 7]], float)
    np.testing.assert_array_equal(cap_chips(boxes, 2), boxes[[1, 0]])
    assert cap_chips(boxes, 3) is boxes


def test_threshold_inclusive_and_the_extremes():
    prob = np.full((2, 2), 0.5)
    prob[1, 1] = 0.0
    win = _windows([[0, 0]], [[1, 1]], [[20, 20]])
    run = (lambda **kw: plan_next_chips([prob], win, _scale(**kw), 1.0, 1.0,
                                        10, (20, 20), max_chips=8))
    assert len(run(threshold=0.5)) == 0           # the paper's > t
    np.testing.assert_array_equal(run(threshold=0.5,
                                      inclusive_threshold=True),
                                  [[0, 0, 20, 20]])
    # EVERY_PIXEL selects even p = 0; NO_PIXEL nothing, even p = 1.
    np.testing.assert_array_equal(run(**EVERY_PIXEL), [[0, 0, 20, 20]])
    assert len(plan_next_chips([np.ones((2, 2))], win, _scale(**NO_PIXEL),
                               1.0, 1.0, 10, (20, 20), 8)) == 0


def test_oracle_plan_labels_ground_truth_with_the_rule():
    # A 20 px object at (40, 40) in a 128 x 128 image, factor 1, stride 16:
    # FocusPixels rows/cols 2..3 -> [32, 32, 64, 64]; a 3 px object is
    # ignored (not a FocusPixel), a 100 px one is background.
    gt = np.array([[40, 40, 60, 60], [100, 100, 103, 103]], float)
    rule = FocusLabelRule(5, 64, 90, stride=16)
    chips = plan_oracle_chips(gt, _scale(), 1.0, 1.0, rule, (128, 128), 8)
    np.testing.assert_array_equal(chips, [[32, 32, 64, 64]])
    big = np.array([[0, 0, 100, 100]], float)
    assert len(plan_oracle_chips(big, _scale(), 1.0, 1.0, rule, (128, 128),
                                 8)) == 0
    # A stricter rule (a = 25) ignores the 20 px object too.
    strict = FocusLabelRule(25, 64, 90, stride=16)
    assert len(plan_oracle_chips(gt, _scale(), 1.0, 1.0, strict, (128, 128),
                                 8)) == 0


def test_stacking_masks_per_chip():
    # Chip [0, 200, 200, 400] of a 1000 x 1000 image (left side on the
    # image border): touching the left side is fine, the inner right side
    # is not; the second chip's valid range drops the 150 px detection.
    dets = [np.array([[0, 250, 50, 300], [0, 250, 200, 300]], float),
            np.array([[300, 300, 450, 450], [300, 300, 330, 330]], float)]
    chips = np.array([[0, 200, 200, 400], [250, 250, 600, 600]], float)
    keep = stack_keep_masks(dets, chips, (1000, 1000), (0, 100), 0.0)
    assert [k.tolist() for k in keep] == [[True, False], [False, True]]
    # within border_tol (ORIGINAL px) of an inner side counts as touching
    keep = stack_keep_masks([np.array([[0, 250, 195, 300]], float)],
                            chips[:1], (1000, 1000), (0, 100), 10.0)
    assert keep[0].tolist() == [False]


@pytest.mark.parametrize('field,value,match', [
    ('threshold', float('nan'), r'scales\[0\]\.threshold .*got nan'),
    ('threshold', -0.1, r'scales\[0\]\.threshold .*\[0, 1\]'),
    ('threshold', 1.01, r'scales\[0\]\.threshold .*\[0, 1\]'),
    ('dilation', 0, r'scales\[0\]\.dilation must be an integer >= 1'),
    ('dilation', 2.5, r'scales\[0\]\.dilation'),
    ('min_size', -1, r'scales\[0\]\.min_size'),
    ('min_size', float('inf'), r'scales\[0\]\.min_size .*finite'),
    ('border_tol', float('nan'), r'scales\[0\]\.border_tol'),
    ('inclusive_threshold', 'yes',
     r'scales\[0\]\.inclusive_threshold must be a bool'),
])
def test_scale_settings_are_validated(field, value, match):
    cfg = dict(factor=1.0, valid_range=(0, None), **{field: value})
    with pytest.raises(ValueError, match='AutoFocusTTAModel.' + match):
        focus_scales([cfg])


def test_scale_dicts_and_unknown_keys():
    scales = focus_scales([
        dict(max_side=512, valid_range=(100, None), threshold=0.3,
             dilation=3, min_size=128),
        dict(factor=2.0, valid_range=(0, 80))])
    assert scales[0] == FocusScale(ScaleSpec(max_side=512,
                                             valid_range=(100, None)),
                                   0.3, 3, 128)
    assert scales[1].border_tol is None and not scales[1].inclusive_threshold
    with pytest.raises(ValueError, match=r'X.scales\[1\]: unknown ScaleSpec '
                       r"field\(s\) \['min_sise'\].*min_size"):
        focus_scales([dict(factor=1.0), dict(factor=2.0, min_sise=3)], 'X')
    with pytest.raises(ValueError, match='at least one scale'):
        focus_scales([])


@pytest.mark.parametrize('abc,stride,match', [
    ((64, 5, 90), 16, r'0 <= a < b <= c'),
    ((5, 64, 60), 16, r'0 <= a < b <= c'),
    ((float('nan'), 64, 90), 16, r': a must be'),
    ((-1, 64, 90), 16, r': a must be'),
    ((5, 64, 90), 0, r'stride must be an integer >= 1'),
])
def test_label_rule_is_validated(abc, stride, match):
    with pytest.raises(ValueError, match=match):
        FocusLabelRule(*abc, stride=stride)
    assert FocusLabelRule(0, 64, float('inf')).thresholds == (0, 64,
                                                              float('inf'))


def test_label_rule_boundary_flag():
    assert FocusLabelRule().boundary_ignore is True
    assert FocusLabelRule(5, 64, 90, 16, False) != FocusLabelRule()
    with pytest.raises(ValueError, match='boundary_ignore must be a bool'):
        FocusLabelRule(boundary_ignore=1)
    # Oracle chips use FocusPixels only: the flag (ignore or background at
    # exactly a, b) does not move them. A 64 px object is neither.
    gt = np.array([[40, 40, 60, 60], [0, 0, 64, 64]], float)
    for flag in (True, False):
        rule = FocusLabelRule(5, 64, 90, 16, flag)
        np.testing.assert_array_equal(
            plan_oracle_chips(gt, _scale(), 1.0, 1.0, rule, (128, 128), 8),
            [[32, 32, 64, 64]])


def test_planner_needs_no_torch():
    code = ('import sys; import mmsnip.chips.focus_plan; '
            'print("torch" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == 'False'


def test_focus_recall_needed_and_covered_per_transition():
    ranges = [(100, None), (32, 160), (0, 48)]  # ORIGINAL px, overlapping
    gt = np.array([
        [0, 0, 10, 10],        # 10 px: fine only -> transition 1
        [100, 100, 140, 140],  # 40 px: middle and fine -> transition 0
        [300, 300, 500, 500],  # 200 px: coarse only -> never needed
        [600, 600, 720, 720],  # 120 px: coarse and middle -> never needed
        [0, 0, 0, 5],          # zero area: valid nowhere
    ], float)
    whole = np.array([[0, 0, 1000, 1000]], float)
    middle = np.array([[90, 90, 200, 200]], float)
    fine = np.array([[5, 0, 100, 100]], float)  # cuts the 10 px box
    counts = focus_recall(gt, [whole, middle, fine], ranges)
    assert counts.tolist() == [[1, 1], [1, 0]]
    assert format_focus_recall(counts.tolist()) == '1/1, 0/1'
    assert format_focus_recall(None) == '-'
    # a scale that did not run covers nothing; a box on a chip's side is
    # inside (closed intervals)
    assert focus_recall(gt, [whole], ranges).tolist() == [[1, 0], [1, 0]]
    assert focus_recall(gt, [whole, np.array([[100, 100, 140, 140.]])],
                        ranges).tolist() == [[1, 1], [1, 0]]
    assert focus_recall(np.zeros((0, 4)), [whole], ranges).tolist() == \
        [[0, 0], [0, 0]]


# ---------------------------------------------------------------------------
# sizes a cascade can never detect


COCO_640 = [0.8, 800 / 480, 3.0]  # a 640x480 image, the COCO test pyramid


def test_training_ranges_at_test_lose_80_to_120_px_on_coco():
    """The COCO training ranges keep >= 120 px at the coarsest scale whose
    FocusPixels reach only sizes under 64 / 0.8 = 80 px: 80-120 px is lost;
    the released AutoFocus test ranges close it."""
    rule = FocusLabelRule(5, 64, 90)
    assert cascade_size_gaps(COCO_640, [(120, None), (32, 150), (0, 80)],
                             rule) == [SizeGap(80.0, 120, 0)]
    assert cascade_size_gaps(COCO_640, [(75, None), (32, 180), (0, 75)],
                             rule) == []
    # an upper end too low: nothing keeps what the finer scale cannot reach
    assert cascade_size_gaps([0.8, 1.6], [(0, 50), (0, 30)],
                             rule) == [SizeGap(50, math.inf, 0)]
    # touching ranges leave no gap; sizes under a / f_0 are not gaps
    assert cascade_size_gaps([0.5, 1.0], [(128, None), (0, 128)],
                             rule) == []
    with pytest.raises(ValueError, match='2 factors for 1 valid ranges'):
        cascade_size_gaps([1, 2], [(0, None)], rule)


@pytest.mark.parametrize('seed', range(200))
def test_size_gaps_are_exactly_the_sizes_no_scale_reaches_and_keeps(seed):
    """Property, by brute force over sizes: a size above a / f_0 is in a
    returned gap iff no scale both reaches it (every coarser scale's
    FocusPixels took it: a / f < size < b / f) and keeps it (valid range);
    each gap's scale reaches all of it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    factors = np.sort(rng.uniform(0.3, 4.0, n))
    rule = FocusLabelRule(*np.sort(rng.uniform(1, 100, 2)), 200)
    ranges = []
    for _ in range(n):
        lo, hi = np.sort(rng.uniform(0, 300, 2))
        ranges.append((float(lo), None if rng.random() < 0.3 else float(hi)))
    gaps = cascade_size_gaps(list(factors), ranges, rule)
    sizes = np.linspace(rule.a / factors[0], 600, 3001)[1:]
    detected = np.zeros(len(sizes), bool)
    reached = np.ones(len(sizes), bool)
    reached_at = []
    for f, (lo, hi) in zip(factors, ranges):
        reached_at.append(reached.copy())
        detected |= reached & (sizes >= lo) & (sizes < (hi or math.inf))
        reached &= (sizes > rule.a / f) & (sizes < rule.b / f)
    in_gap = np.zeros(len(sizes), bool)
    for gap in gaps:
        inside = (sizes > gap.lo) & (sizes < gap.hi)
        in_gap |= inside
        assert reached_at[gap.scale][inside].all()
    # endpoints (measure zero) may go either way
    edges = np.array([v for g in gaps for v in (g.lo, g.hi)] +
                     [v for f in factors for v in (rule.a / f, rule.b / f)] +
                     [v for r in ranges for v in r if v is not None])
    clear = np.abs(sizes[:, None] - edges[None]).min(1) > 1e-6
    np.testing.assert_array_equal(in_gap[clear], ~detected[clear])


def test_full_pyramid_scales_select_every_pixel_where_chips_are_planned():
    """The full pyramid as a cascade (MultiScaleInferencer's pyramid mode,
    autofocus_sweep's and benchmark's reference): EVERY_PIXEL on every
    scale that plans the next one; the finest keeps what it had, so
    AutoFocusTTAModel's 'the finest sets threshold... Remove them there'
    warning no longer blames the user for settings the tools added."""
    from mmsnip.chips import full_pyramid_scales
    scales = [dict(max_side=512, valid_range=(100, None), threshold=0.3),
              dict(factor=1.0, valid_range=(32, 160), threshold=0.2),
              dict(factor=2.0, valid_range=(0, 48), border_tol=1.0)]
    assert full_pyramid_scales(scales) == [
        dict(scales[0], **EVERY_PIXEL), dict(scales[1], **EVERY_PIXEL),
        scales[2]]
    assert scales[0]['threshold'] == 0.3  # the input is not changed
    assert full_pyramid_scales(scales[2:]) == [scales[2]]
    assert full_pyramid_scales([]) == []


def test_border_tol_may_be_any_finite_value_from_0():
    from mmsnip.chips.focus_plan import cascade_limits
    # Sec. 3.4.3: the paper's tolerance is 0; fractions of a pixel too
    for tol in (0.0, 0.5):
        assert cascade_limits(None, tol) == (None, tol)
        assert _scale(border_tol=tol).border_tol == tol
    with pytest.raises(ValueError, match='border_tol'):
        cascade_limits(None, -0.5)


def test_only_t_0_inclusive_selects_every_pixel():
    assert _scale(threshold=0.0, inclusive_threshold=True) \
        .selects_every_pixel
    assert not _scale(threshold=0.0).selects_every_pixel
    assert not _scale(threshold=0.5,
                      inclusive_threshold=True).selects_every_pixel


def test_focus_recall_of_a_single_scale_has_no_transition():
    counts = focus_recall(np.array([[0, 0, 10, 10.]]),
                          [np.array([[0, 0, 100, 100.]])], [(0, None)])
    assert counts.shape == (0, 2)


def test_a_range_touching_the_reach_keeps_no_size():
    # factor 0.8 reaches (5 / 0.8, 64 / 0.8) = (6.25, 80) for the next
    # scale, whose range (80, 100) starts where that ends: it keeps no
    # size, and 6.25-120 px is one gap (scale 0 keeps from 120 px on)
    assert cascade_size_gaps([0.8, 2.0], [(120, None), (80, 100)],
                             FocusLabelRule()) == [SizeGap(6.25, 120, 0)]


def test_with_a_0_every_size_from_0_is_reached():
    rule = FocusLabelRule(a=0, b=64, c=90)
    assert cascade_size_gaps([1.0], [(0, None)], rule) == []


def test_empty_traces():
    from mmsnip.chips.focus_plan import CascadeTrace, ScaleTrace
    trace = ScaleTrace(1.0, np.zeros((0, 4)), np.zeros((0, 2)),
                       np.zeros(0), np.zeros((0, 2)), [], [])
    assert [a.shape for a in trace.kept()] == [(0, 4), (0, ), (0, )]
    assert CascadeTrace((10, 10), 16).oracle is False
