# Copyright (c) mmsnip contributors. All rights reserved.
import math

import pytest

from mmsnip.chips import ChipConfig, ScaleSpec, range_gap


def test_factor_rules():
    assert ScaleSpec(factor=3.0).factor_for(480, 640) == 3.0
    assert ScaleSpec(max_side=512).factor_for(480, 640) == 512 / 640
    # mmdet keep-ratio resize (800, 1200) of a 480x640 image: 800/480 limits
    assert ScaleSpec(short_max=(800, 1200)).factor_for(480, 640) == \
        pytest.approx(800 / 480)
    # a very wide image is limited by the max side instead
    assert ScaleSpec(short_max=(800, 1200)).factor_for(100, 2400) == 0.5
    assert ScaleSpec(factor=1.667).scaled_shape(480, 640) == (800, 1067)
    assert ScaleSpec(factor=1e-4).scaled_shape(10, 10) == (1, 1)


def test_valid_range_units():
    spec = ScaleSpec(factor=3.0, valid_range=(0, 80))
    assert spec.valid_range_scaled(3.0) == (0, 240)
    assert math.isinf(ScaleSpec(factor=1).valid_range[1])


@pytest.mark.parametrize('kwargs, match', [
    (dict(), 'exactly one'),
    (dict(factor=1, max_side=512), 'exactly one'),
    (dict(factor=0), 'factor must be > 0'),
    (dict(max_side=-1), 'max_side'),
    (dict(short_max=(800,)), 'short_max'),
    (dict(factor=1, valid_range=(80, 32)), 'valid_range'),
    (dict(factor=1, valid_range=(-1, 32)), 'valid_range'),
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


def test_chip_config_validation():
    scales = [dict(factor=1, valid_range=(0, 100))]
    with pytest.raises(ValueError, match='multiple of chip_stride'):
        ChipConfig.from_dict(dict(scales=scales, chip_size=500,
                                  chip_stride=32))
    with pytest.raises(ValueError, match='positive integer'):
        ChipConfig.from_dict(dict(scales=scales, chip_size=0))
    with pytest.raises(ValueError, match='unknown ChipConfig'):
        ChipConfig.from_dict(dict(scales=scales, chipsize=512))
    with pytest.raises(ValueError, match='unknown ScaleSpec'):
        ChipConfig.from_dict(dict(scales=[dict(factor=1, range=(0, 1))]))
    gap = [dict(factor=1, valid_range=(0, 50)),
           dict(factor=2, valid_range=(60, 100))]
    with pytest.raises(ValueError, match='50-60 px are valid at no scale'):
        ChipConfig.from_dict(dict(scales=gap))
    ChipConfig.from_dict(dict(scales=gap, allow_range_gaps=True))


def test_range_gap():
    assert range_gap([(120, math.inf), (32, 150), (0, 80)]) is None
    assert range_gap([(0, 10), (20, 30)]) == (10, 20)


def test_none_means_no_upper_bound():
    assert ScaleSpec(factor=1, valid_range=(120, None)).valid_range == \
        (120, math.inf)
