# Copyright (c) mmsnip contributors. All rights reserved.
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmsnip.chips import (ChipConfig, box_issues, chip_statistics, in_range,
                          object_sizes, sample_images, sanitize_boxes,
                          suggest_params)


def test_worked_example_of_the_docstring():
    s = suggest_params([6, 400], trim=0)
    assert [sc.factor for sc in s.scales] == [1.25, 2.24, 4.0]  # coarse 1st
    assert [sc.valid_range for sc in s.scales] == [
        (51.8, math.inf), (29.0, 103.0), (0.0, 57.8)]
    assert s.span == (7.5, 400.0)
    assert any('max_factor' in n for n in s.notes)
    cfg = s.chip_cfg()
    assert cfg['scales'][0]['valid_range'] == (51.8, None)  # dumpable
    assert ChipConfig.from_dict(cfg).scales == s.scales


def test_ranges_map_into_the_target_and_overlap():
    sizes = np.geomspace(10, 2560, 200)
    s = suggest_params(sizes, num_scales=3, target=(40, 400), open_ends=False)
    fine_to_coarse = s.scales[::-1]
    for sc in fine_to_coarse:
        lo, hi = sc.valid_range_scaled(sc.factor)
        assert 40 - 1e-9 <= lo < hi <= 400 + 1e-9
    for a, b in zip(fine_to_coarse, fine_to_coarse[1:]):
        assert b.valid_range[0] < a.valid_range[1]  # neighbours overlap
        assert b.factor < a.factor
    assert s.span == (fine_to_coarse[0].valid_range[0],
                      fine_to_coarse[-1].valid_range[1])


def test_too_few_scales_keep_the_densest_window_and_say_so():
    # two clusters far apart: one scale can serve only one of them
    sizes = np.r_[np.full(90, 8.0), np.full(10, 3000.0)]
    s = suggest_params(sizes, num_scales=1, target=(30, 300), max_factor=8)
    (sc, ) = s.scales
    assert 30 <= 8 * sc.factor <= 300
    s2 = suggest_params(sizes, num_scales=2, target=(30, 300), max_factor=8)
    assert any('try more scales' in n for n in s2.notes)
    assert any('10.0% at least' in n for n in s2.notes), s2.notes
    lo, hi = s2.span
    assert lo < 8 < hi and not lo < 3000 < hi


def test_narrow_sizes_spread_scales_apart():
    s = suggest_params(np.full(50, 20.0), num_scales=3)
    factors = sorted(sc.factor for sc in s.scales)
    assert factors[1] / factors[0] >= 1.49 and factors[2] / factors[1] >= 1.49
    assert max(factors) <= 4.0


@pytest.mark.parametrize('kwargs, match', [
    (dict(sizes=[0, -1, np.nan]), 'no object with a positive'),
    (dict(sizes=[10], num_scales=0), 'num_scales'),
    (dict(sizes=[10], target=(50, 40)), 'target'),
    (dict(sizes=[10], overlap=1.0), 'overlap'),
    (dict(sizes=[10], chip_size=500, chip_stride=32), 'multiple'),
    (dict(sizes=[10], num_scales=3, target=(100, 200)), 'too narrow'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        suggest_params(**kwargs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.5, 5000), min_size=1, max_size=60),
       st.integers(1, 4), st.booleans())
def test_property_every_object_in_the_span_is_valid_on_target(
        sizes, num_scales, open_ends):
    sizes = np.array(sizes)
    s = suggest_params(sizes, num_scales=num_scales, open_ends=open_ends)
    cfg = s.chip_config()  # validated: ordered ranges, no gap
    lo, hi = s.span
    inside = (sizes > lo) & (sizes < hi)
    for size in sizes[inside]:
        ok = [in_range(np.array([size]), sc.valid_range)[0] and
              s.target[0] - 1e-6 <= size * sc.factor <= s.target[1] + 1e-6
              for sc in cfg.scales]
        assert any(ok), (size, cfg.scales)
    ranges = sorted(sc.valid_range for sc in cfg.scales)
    for (a_lo, a_hi), (b_lo, b_hi) in zip(ranges, ranges[1:]):
        assert b_lo < a_hi  # strictly overlapping neighbours
    if open_ends:
        assert ranges[0][0] == 0 and math.isinf(ranges[-1][1])
    # same input, same suggestion
    assert suggest_params(sizes, num_scales=num_scales,
                          open_ends=open_ends) == s


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3))
@example(510509, 1)  # one thin object, uncoverable: no chip
def test_property_chips_per_image_positive_when_objects_exist(seed,
                                                              num_scales):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 4))
    shapes = rng.integers(200, 1500, (m, 2))
    n = int(rng.integers(1, 30))
    idx = rng.integers(0, m, n)
    wh = rng.uniform(3, 150, (n, 2))
    xy = rng.uniform(0, 1, (n, 2)) * np.maximum(shapes[idx][:, ::-1] - wh, 1)
    boxes = np.c_[xy, xy + wh]
    sizes = object_sizes(boxes, idx, shapes)
    s = suggest_params(sizes, num_scales=num_scales)
    stats = chip_statistics(s.chip_config(), boxes, idx, shapes)
    assert stats.num_objects == n
    # A chip whenever some object fits one at a scale where it is valid
    # (sizes are sqrt(area): a thin box can be longer than a chip at every
    # such scale, e.g. 143 x 6.4 px at the factor 4.0 suggested for it).
    assert (stats.chips_per_image > 0) == (stats.frac_uncoverable < 1)
    assert stats.frac_valid_nowhere == 0  # open ends
    assert stats.pyramid_pixels_per_image > 0


def test_statistics_hand_checked():
    cfg = ChipConfig.from_dict(dict(
        chip_size=128, chip_stride=32,
        scales=[dict(factor=1.0, valid_range=(20, 60)),
                dict(factor=2.0, valid_range=(0, 30))]))
    shapes = np.array([[200, 300], [100, 100], [64, 64]])
    boxes = np.array([
        [10, 10, 50, 50],      # 40 px: valid at 1x (40 px), on target
        [100, 100, 110, 110],  # 10 px: valid at 2x (20 px), off target
        [0, 0, 80, 80],        # 80 px: valid nowhere
        [0, 0, 5, 5],          # crowd: not an object
        [5, 5, 5, 9],          # zero area: not an object
    ], float)
    idx = np.array([0, 0, 1, 1, 1])
    crowd = np.array([0, 0, 0, 1, 0], bool)
    stats = chip_statistics(cfg, boxes, idx, shapes, crowd, target=(30, 100))
    assert stats.num_images == 3 and stats.num_objects == 3
    assert stats.frac_valid_nowhere == pytest.approx(1 / 3)
    assert stats.frac_off_target == pytest.approx(1 / 3)
    assert stats.frac_uncoverable == 0
    assert stats.valid_scales_per_object == pytest.approx(2 / 3)
    # image 0: one chip per scale; images 1, 2: none
    assert stats.chips_per_scale == pytest.approx((1 / 3, 1 / 3))
    assert stats.chip_pixels_per_image == pytest.approx(2 * 128**2 / 3)
    pyramid = (200 * 300 + 400 * 600 + 100 * 100 + 200 * 200 + 64 * 64 +
               128 * 128) / 3
    assert stats.pyramid_pixels_per_image == pytest.approx(pyramid)
    assert stats.pyramid_ratio == pytest.approx(pyramid /
                                                (2 * 128**2 / 3))
    with pytest.raises(ValueError, match=r'img_index must be in \[0, 3\)'):
        chip_statistics(cfg, boxes, idx + 2, shapes)


def test_sample_images_is_deterministic():
    np.testing.assert_array_equal(sample_images(5, None), np.arange(5))
    np.testing.assert_array_equal(sample_images(5, 9), np.arange(5))
    a = sample_images(1000, 10, seed=1)
    np.testing.assert_array_equal(a, sample_images(1000, 10, seed=1))
    assert len(np.unique(a)) == 10 and (np.diff(a) > 0).all()


def test_box_issues_and_per_box_image_sizes():
    boxes = np.array([[0, 0, 10, 10], [-5, 0, 10, 10], [np.nan, 0, 1, 1],
                      [5, 5, 5, 9], [8, 8, 2, 2], [300, 0, 310, 10]], float)
    issues = box_issues(boxes, 100, 200)
    expected = dict(ok=0, clipped=1, not_finite=2, empty=3, outside=5)
    for name, row in expected.items():
        assert np.flatnonzero(issues[name]).tolist() == \
            ([row, 4] if name == 'empty' else [row]), name
    total = sum(issues[k].astype(int) for k in issues)
    assert (total == 1).all()  # exactly one class per box
    # per-box image sizes: the same box is inside one image, outside another
    clipped, keep = sanitize_boxes(np.tile([[150., 0, 160, 10]], (2, 1)),
                                   np.array([100, 100]), np.array([200, 120]))
    assert keep.tolist() == [True, False]
    with pytest.raises(ValueError, match='image size must be positive'):
        sanitize_boxes(boxes[:2], np.array([10, 0]), 5)
