# Copyright (c) mmsnip contributors. All rights reserved.
import math
import pickle
from unittest import mock

import numpy as np
import pytest

from mmsnip.chips import (ChipConfig, NegativeConfig, ScaleSpec,
                          range_gap, scales)


def test_factor_rules():
    assert ScaleSpec(factor=3.0).factor_for(480, 640) == 3.0
    assert ScaleSpec(max_side=512).factor_for(480, 640) == 512 / 640
    # mmdet keep-ratio resize (800, 1200) of a 480x640 image: 800/480 limits
    assert ScaleSpec(short_max=(800, 1200)).factor_for(480, 640) == \
        pytest.approx(800 / 480)
    # a very wide image is limited by the max side instead
    assert ScaleSpec(short_max=(800, 1200)).factor_for(100, 2400) == 0.5
    # as in mmengine's rescale_size, the order of the two numbers is free
    assert ScaleSpec(short_max=(1200, 800)).factor_for(100, 2400) == 0.5
    assert ScaleSpec(factor=1.667).scaled_shape(480, 640) == (800, 1067)
    assert ScaleSpec(max_side=512).scaled_shape(480, 640) == (384, 512)
    assert ScaleSpec(factor=1e-4).scaled_shape(10, 10) == (1, 1)
    assert [ScaleSpec(**{r: v}).rule for r, v in (
        ('factor', 2), ('max_side', 5), ('short_max', (1, 2)))] == [
            'factor', 'max_side', 'short_max']


@pytest.mark.parametrize('h, w', [(0, 640), (480, -1), (math.nan, 5),
                                  (480, 0), (math.inf, 5), (5, math.inf)])
def test_bad_image_size(h, w):
    with pytest.raises(ValueError, match='image size must be positive'):
        ScaleSpec(factor=2).factor_for(h, w)


def test_any_positive_finite_image_size_is_accepted():
    # the bound is 0, not 1: a sub-pixel side is positive
    assert ScaleSpec(max_side=2).factor_for(0.5, 0.25) == 4.0


def test_chip_config_geometry_and_ranges_are_the_scales_own():
    cfg = ChipConfig.paper_coco()
    with mock.patch.object(scales, '_GEOMETRY_CACHE_SIZE', 2):
        # repeated, int/float/numpy sizes, more sizes than the cache holds
        for h, w in [(480, 640), (480, 640), (375.0, 500),
                     (np.int64(427), np.int64(640)), (480, 640), (7, 9000),
                     (np.array(300), np.array(400.0))]:
            assert cfg.geometry(h, w) == tuple(
                (spec.factor_for(h, w), spec.scaled_shape(h, w))
                for spec in cfg.scales)
        assert len(cfg._geometry_cache) <= 2
    for h, w in [(0, 640), (480, math.nan), (math.inf, 640)]:
        with pytest.raises(ValueError, match='image size must be positive'):
            cfg.geometry(h, w)
    np.testing.assert_array_equal(
        cfg.valid_ranges, [spec.valid_range for spec in cfg.scales])
    assert not cfg.valid_ranges.flags.writeable
    # the caches are not settings: equality and pickling see the fields
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy == cfg == ChipConfig.paper_coco()
    assert copy.geometry(480, 640) == cfg.geometry(480, 640)


def test_valid_range_units():
    spec = ScaleSpec(factor=3.0, valid_range=(0, 80))
    assert spec.valid_range_scaled(3.0) == (0, 240)
    assert math.isinf(ScaleSpec(factor=1).valid_range[1])
    assert ScaleSpec(factor=1, valid_range=[120, None]).valid_range == \
        (120, math.inf)


@pytest.mark.parametrize('kwargs, match', [
    (dict(), 'exactly one'),
    (dict(factor=1, max_side=512), 'exactly one'),
    (dict(factor=0), 'ScaleSpec.factor must be a finite number > 0'),
    (dict(factor=math.inf), 'ScaleSpec.factor'),
    (dict(max_side=-1), 'ScaleSpec.max_side'),
    (dict(short_max=(800,)), 'ScaleSpec.short_max'),
    (dict(short_max=(800, 0)), 'ScaleSpec.short_max'),
    (dict(factor=1, valid_range=(80, 32)), 'valid_range'),
    (dict(factor=1, valid_range=(-1, 32)), 'valid_range'),
    (dict(factor=1, valid_range=(5, 5)), 'valid_range'),
    (dict(factor=1, valid_range=(1, 2, 3)), 'valid_range'),
])
def test_bad_scale_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScaleSpec(**kwargs)


def test_paper_defaults_pair_ranges_with_scales():
    cfg = ChipConfig.paper_coco()
    assert (cfg.chip_size, cfg.chip_stride) == (512, 32)
    coarse, middle, fine = cfg.scales
    # small objects are learned at the up-sampled scales (DESIGN.md)
    assert coarse.max_side == 512 and coarse.valid_range == (120, math.inf)
    assert middle.factor == 1.667 and middle.valid_range == (32, 150)
    assert fine.factor == 3.0 and fine.valid_range == (0, 80)
    assert cfg.off_grid and not cfg.allow_range_gaps


def test_from_dict_nested_and_flat_aliases():
    scales = [dict(max_side=512, valid_range=(120, None)),
              dict(factor=1.667, valid_range=(32, 150)),
              dict(factor=3.0, valid_range=(0, 80))]
    nested = ChipConfig.from_dict(dict(
        chip_size=512, chip_stride=32, scales=scales,
        negative=dict(min_proposals=(10, 10, 25), num_per_image=3)))
    assert nested.negative == NegativeConfig(min_proposals=(10, 10, 25),
                                             num_per_image=3)
    assert nested.negative.min_proposals_for(2) == 25
    assert nested.neg_per_image == 3
    assert nested.scales == ChipConfig.paper_coco().scales
    flat = ChipConfig.from_dict(dict(scales=scales, neg_min_proposals=5,
                                     neg_per_image=1))
    assert flat.negative == NegativeConfig(min_proposals=5, num_per_image=1)
    assert flat.neg_min_proposals == 5
    with pytest.raises(ValueError, match='both neg_per_image and negative'):
        ChipConfig.from_dict(dict(scales=scales, neg_per_image=1,
                                  negative=dict(num_per_image=2)))
    assert ChipConfig.from_dict(flat) is flat
    # the repr is stable (SniperDataset hashes it into its cache key)
    assert repr(flat) == repr(ChipConfig.from_dict(dict(
        scales=scales, negative=dict(min_proposals=5, num_per_image=1))))


def test_mmengine_delete_key_left_in_a_chip_cfg_is_no_field():
    """``chip_cfg = dict(_delete_=True, ...)`` (the runner's advice when
    keys of the base's chip_cfg are removed) handed to a dataset that
    replaced its base's whole (``dataset=dict(_delete_=True, ...)``, the
    SNIPER template) keeps MMEngine's ``_delete_``: nothing merged it away.
    It is MMEngine's merge directive, not a setting (was: ``unknown
    ChipConfig field(s) ['_delete_']``)."""
    scales = [dict(factor=1.0, valid_range=(0, 100))]
    assert ChipConfig.from_dict(dict(_delete_=True, scales=scales)) == \
        ChipConfig.from_dict(dict(scales=scales))


def test_chip_config_validation():
    scales = [dict(factor=1, valid_range=(0, 100))]

    def make(**kw):
        return ChipConfig.from_dict(dict(dict(scales=scales), **kw))

    with pytest.raises(ValueError, match='multiple of chip_stride'):
        make(chip_size=500, chip_stride=32)
    with pytest.raises(ValueError, match='chip_size must be an integer'):
        make(chip_size=0)
    with pytest.raises(ValueError, match='chip_stride must be an integer'):
        make(chip_stride=2.5)
    with pytest.raises(ValueError, match='unknown ChipConfig field'):
        make(chipsize=512)
    with pytest.raises(ValueError, match='unknown ChipConfig.negative'):
        make(negative=dict(num=2))
    with pytest.raises(ValueError, match='unknown ScaleSpec'):
        ChipConfig.from_dict(dict(scales=[dict(factor=1, range=(0, 1))]))
    with pytest.raises(ValueError,
                       match='ChipConfig.scales must hold at least one'):
        ChipConfig.from_dict(dict(scales=[]))
    with pytest.raises(ValueError, match='needs `scales`'):
        ChipConfig.from_dict(dict(chip_size=512))
    with pytest.raises(ValueError, match='negative.min_proposals'):
        make(negative=dict(min_proposals=0))
    with pytest.raises(ValueError, match='2 values for 1 scales'):
        make(negative=dict(min_proposals=(3, 4)))
    with pytest.raises(ValueError, match='negative.num_per_image'):
        make(neg_per_image=-1)
    with pytest.raises(ValueError, match='not a chip setting'):
        make(focus=dict(threshold=0.5))
    gap = [dict(factor=1, valid_range=(0, 50)),
           dict(factor=2, valid_range=(60, 100))]
    # (the second range is also mis-ordered: allow the gap, then check that)
    with pytest.raises(ValueError, match='50-60 px are valid at no scale'):
        ChipConfig.from_dict(dict(scales=gap[:1] + [
            dict(factor=0.5, valid_range=(60, 100))]))
    with pytest.raises(ValueError, match='finer than scales'):
        ChipConfig.from_dict(dict(scales=gap, allow_range_gaps=True))


@pytest.mark.parametrize('scales, ok', [
    # paper order, reversed order: both fine
    ([(dict(factor=3), (0, 80)), (dict(factor=1.667), (32, 150))], True),
    ([(dict(factor=1.667), (32, 150)), (dict(factor=3), (0, 80))], True),
    # the fine scale paired with the large objects: error
    ([(dict(factor=3), (32, 150)), (dict(factor=1.667), (0, 80))], False),
    # nested ranges where the finer admits larger objects: error
    ([(dict(factor=2), (0, 200)), (dict(factor=1), (0, 150))], False),
    # the finer scale's min above the coarser one's: error
    ([(dict(factor=2), (50, 100)), (dict(factor=1), (20, 200))], False),
    # equal ends are allowed (<=): the same max
    ([(dict(factor=2), (0, 100)), (dict(factor=1), (50, 100))], True),
    # SNIP with a catch-all coarse scale: fine
    ([(dict(factor=2), (0, 80)), (dict(factor=1), (0, None))], True),
    ([(dict(max_side=1000), (60, None)), (dict(max_side=2000), (0, 80))],
     True),
    ([(dict(max_side=2000), (60, None)), (dict(max_side=1000), (0, 80))],
     False),
    ([(dict(short_max=(800, 1333)), (0, 200)),
      (dict(short_max=(480, 800)), (0, 100))], False),
    # a fixed factor and a max-side rule are not comparable: accepted
    ([(dict(max_side=512), (0, 80)), (dict(factor=3), (32, None))], True),
])
def test_ranges_must_shrink_as_factors_grow(scales, ok):
    cfg = dict(scales=[dict(rule, valid_range=vr) for rule, vr in scales])
    if ok:
        ChipConfig.from_dict(cfg)
    else:
        with pytest.raises(ValueError, match='finer scales take smaller'):
            ChipConfig.from_dict(cfg)


def test_range_gap():
    assert range_gap([(120, math.inf), (32, 150), (0, 80)]) is None
    assert range_gap([(0, 10), (20, 30)]) == (10, 20)
    assert range_gap([(0, 80), (80, math.inf)]) is None  # touching


def test_focus_section_is_refused_with_its_home():
    """AutoFocus settings are not chip settings: a config that sets them in
    chip_cfg would silently change nothing, so it is an error naming where
    they live."""
    scales = [dict(factor=1.0, valid_range=(0, None))]
    with pytest.raises(ValueError, match='model.focus_head.*tta_model.scales'):
        ChipConfig.from_dict(dict(scales=scales, focus=dict(a=5)))


@pytest.mark.parametrize('spec', [
    dict(factor=1.667), dict(max_side=512), dict(short_max=(800, 1333)),
    dict(short_max=(1333, 800)), dict(short_max=(600, 600))])
def test_factors_for_is_factor_for_of_each_image(spec):
    spec = ScaleSpec(**spec)
    rng = np.random.default_rng(0)
    h, w = rng.integers(1, 5000, (2, 200))
    np.testing.assert_array_equal(
        spec.factors_for(h, w),
        [spec.factor_for(float(a), float(b)) for a, b in zip(h, w)])


def test_resize_rule_is_canonical():
    assert ScaleSpec(short_max=(1200, 800)).resize_rule == \
        ScaleSpec(short_max=(800, 1200)).resize_rule == \
        ('short_max', (800.0, 1200.0))
    assert ScaleSpec(short_max=(512, 512)).resize_rule == \
        ScaleSpec(max_side=512).resize_rule == ('max_side', 512.0)
    assert ScaleSpec(factor=2).resize_rule == ('factor', 2.0)
    # Compared by canonical rule: short_max (S, S) against max_side.
    assert ScaleSpec(short_max=(600, 600)).finer_or_equal(
        ScaleSpec(max_side=512)) is True


@pytest.mark.parametrize('mine, theirs, order', [
    ((800, 1333), (480, 800), True),
    ((480, 800), (800, 1333), False),
    # one side equal, the other larger: ordered for every image
    ((800, 1333), (800, 1200), True),
    ((800, 1200), (800, 1333), False),
    # a larger short side but a smaller max side: depends on the image
    ((1000, 1100), (800, 1333), None),
    ((800, 1333), (1000, 1100), None),
    # a smaller short side but a larger max side: depends on the image
    ((600, 1400), (800, 1333), None),
])
def test_short_max_rules_are_ordered_side_by_side(mine, theirs, order):
    # Sec. 3.2 range order: finer only if finer for every image size
    assert ScaleSpec(short_max=mine).finer_or_equal(
        ScaleSpec(short_max=theirs)) is order


def test_equal_rules_are_finer_or_equal_both_ways():
    for rule in (dict(factor=2), dict(max_side=512),
                 dict(short_max=(800, 1333))):
        assert ScaleSpec(**rule).finer_or_equal(ScaleSpec(**rule)) is True


def test_a_scale_without_valid_range_admits_every_size():
    assert ScaleSpec(factor=2).valid_range == (0.0, math.inf)


def test_same_resize_pairs_by_rule_and_on_a_dataset():
    cfg = ChipConfig(scales=[dict(factor=0.8, valid_range=(100, None)),
                             dict(max_side=512, valid_range=(40, 150)),
                             dict(short_max=(512, 512), valid_range=(0, 60))
                             ], allow_range_gaps=True)
    assert cfg.same_resize_pairs() == [(1, 2)]
    # Every image 640 px long: factor 0.8 is max_side 512 on all of them.
    assert cfg.same_resize_pairs([480, 640, 427], [640, 480, 640]) == \
        [(0, 1), (0, 2), (1, 2)]
    assert cfg.same_resize_pairs([480, 500], [640, 800]) == [(1, 2)]
    # portrait images 640 px high: the long side is the height
    assert cfg.same_resize_pairs([640, 640], [480, 300]) == \
        [(0, 1), (0, 2), (1, 2)]


def _three_scales():
    return dict(chip_size=256, chip_stride=32, scales=[
        dict(max_side=512, valid_range=(100, None)),
        dict(factor=1.0, valid_range=(32, 160)),
        dict(factor=2.0, valid_range=(0, 48))])


@pytest.mark.parametrize('change, match', [
    (lambda c: c['scales'][0].update(valid_range=None),
     r'scales\[0\]: ScaleSpec.valid_range must be \(min, max\)'),
    (lambda c: c['scales'][1].update(valid_range=[32, 'abc']),
     r'scales\[1\]: ScaleSpec.valid_range must be \(min, max\)'),
    (lambda c: c['scales'][2].update(valid_range=(0, '48')),
     r'scales\[2\]: ScaleSpec.valid_range'),
    (lambda c: c['scales'][0].update(max_side=None, short_max=800),
     r'scales\[0\]: ScaleSpec.short_max must be \(short, max\)'),
    (lambda c: c.update(scales=[1.0, 2.0]),
     r'scales\[0\]: a scale must be a dict'),
    (lambda c: c.update(scales=dict(factor=1.0)),
     'ChipConfig.scales must be a list'),
    (lambda c: c.update(off_grid='flase'),
     'ChipConfig.off_grid must be True or False'),
    (lambda c: c.update(allow_range_gaps='no'),
     'ChipConfig.allow_range_gaps must be True or False'),
    (lambda c: c.update(negative=dict(filter_range='False')),
     'negative.filter_range must be True or False'),
])
def test_bad_chip_cfg_values_name_scale_and_field(change, match):
    """Values from --cfg-options that used to raise a bare TypeError or to
    be read as True (a non-empty string)."""
    cfg = _three_scales()
    change(cfg)
    with pytest.raises(ValueError, match=match):
        ChipConfig.from_dict(cfg)
    with pytest.raises(ValueError, match='ChipConfig must be a dict'):
        ChipConfig.from_dict([1])
    ok = _three_scales()
    ok['scales'][2]['valid_range'] = np.array([0, 48.])
    ok.update(off_grid=np.bool_(False))
    assert ChipConfig.from_dict(ok).off_grid is False


def test_largest_valid_scaled_worked_example():
    """The docstring's example: factor 0.01, (120, inf) on a 640 x 480
    image: objects of at most sqrt(640 * 480) * 0.01 = 5.54 px; a bounded
    range caps it; max_side scales by each image's longer side."""
    from mmsnip.chips.scales import MIN_OBJECT_PX
    cfg = ChipConfig.from_dict(dict(scales=[
        dict(factor=0.01, valid_range=(120, None)),
        dict(max_side=64, valid_range=(32, 150)),
        dict(factor=2.0, valid_range=(0, 80))]))
    got = cfg.largest_valid_scaled([480, 100], [640, 100])
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got[0], [math.sqrt(640 * 480) * 0.01, 1.0])
    np.testing.assert_allclose(got[1], [150 * 64 / 640, 100 * 64 / 100])
    np.testing.assert_allclose(got[2], [160, 160])
    assert (got[0] < MIN_OBJECT_PX).all() and not (got[2] < 8).any()


def test_negative_defaults_and_no_negatives():
    # Sec. 3.3.3 defaults: M = 10 proposals, 2 chips per image per epoch
    neg = NegativeConfig()
    assert (neg.min_proposals, neg.num_per_image) == (10, 2)
    assert (neg.max_proposals, neg.filter_range) == (None, True)
    # 0 chips per image (no negatives) is a setting, not an error
    assert NegativeConfig(num_per_image=0).num_per_image == 0
    with pytest.raises(ValueError, match='negative.num_per_image'):
        NegativeConfig(num_per_image=-1)


@pytest.mark.parametrize('bad', ['abc', dict(factor=2)])
def test_scales_must_be_a_list(bad):
    with pytest.raises(ValueError, match='must be a list of scale dicts'):
        ChipConfig(scales=bad)


def test_a_cascade_runs_coarse_to_fine():
    # Sec. 3.4: AutoFocus processes the coarsest scale first
    coarse, mid, fine = (ScaleSpec(factor=f) for f in (1.0, 2.0, 3.0))
    scales.check_coarse_to_fine([coarse, mid, fine], 'scales')
    with pytest.raises(ValueError, match=r'scales\[0\] \(factor=2.0\) '
                       r'is finer than scales\[1\] \(factor=1.0\)'):
        scales.check_coarse_to_fine([mid, coarse], 'scales')
    with pytest.raises(ValueError, match=r'scales\[1\] \(factor=3.0\) '
                       r'is finer than scales\[2\] \(factor=2.0\)'):
        scales.check_coarse_to_fine([coarse, fine, mid], 'scales')
