# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import (ChipConfig, ScaleSpec, generate_negative_chips,
                          generate_positive_chips, inside_matrix,
                          sample_negative_chips)

CFG = ChipConfig(scales=(ScaleSpec(factor=1.0, valid_range=(0, 200)),),
                 chip_size=256, chip_stride=32, neg_min_proposals=3)


def _cluster(cx, cy, n, size=20, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-40, 40, (n, 2)) + [cx, cy]
    return np.c_[xy, xy + size]


def test_negatives_cover_dense_proposal_clusters_only():
    props = np.vstack([_cluster(600, 600, 10), _cluster(100, 700, 2, seed=1)])
    pos = generate_positive_chips(np.zeros((0, 4)), 1000, 1000, CFG).chips
    neg = generate_negative_chips(props, 1000, 1000, CFG, pos)
    assert len(neg) == 1 and not neg.is_positive.any()
    assert inside_matrix(props[:10], neg.boxes_scaled).all()


def test_proposals_inside_positive_chips_are_dropped():
    gt = np.array([[580., 580, 620, 620]])
    pos = generate_positive_chips(gt, 1000, 1000, CFG).chips
    assert len(pos) == 1
    props = _cluster(600, 600, 10, size=10)
    assert inside_matrix(props, pos.boxes_scaled).all()
    assert len(generate_negative_chips(props, 1000, 1000, CFG, pos)) == 0


def test_proposals_out_of_range_are_ignored():
    props = _cluster(600, 600, 10, size=250)  # 250 px > range max 200
    pos = generate_positive_chips(np.zeros((0, 4)), 1000, 1000, CFG).chips
    assert len(generate_negative_chips(props, 1000, 1000, CFG, pos)) == 0


def test_per_scale_proposals_and_mismatch():
    cfg = ChipConfig.paper_coco()
    pos = generate_positive_chips(np.zeros((0, 4)), 480, 640, cfg).chips
    props = [np.zeros((0, 5))] * 3
    assert len(generate_negative_chips(props, 480, 640, cfg, pos)) == 0
    with pytest.raises(ValueError, match='proposals for 2 scales'):
        generate_negative_chips(props[:2], 480, 640, cfg, pos)


def test_sampling_is_deterministic_per_seed_epoch_image():
    a = sample_negative_chips(50, 2, seed=0, epoch=3, image_key=7)
    b = sample_negative_chips(50, 2, seed=0, epoch=3, image_key=7)
    np.testing.assert_array_equal(a, b)
    epochs = {tuple(sample_negative_chips(50, 2, 0, e, 7)) for e in range(8)}
    assert len(epochs) > 1
    assert len(np.unique(a)) == 2 and (a < 50).all()
    np.testing.assert_array_equal(sample_negative_chips(1, 2, 0, 0, 0), [0])
    assert len(sample_negative_chips(0, 2, 0, 0, 0)) == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 200), st.integers(0, 2**31))
def test_negative_chips_hold_enough_proposals(n, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 900, (n, 2))
    props = np.c_[xy, xy + rng.uniform(5, 90, (n, 2))]
    pos = generate_positive_chips(np.zeros((0, 4)), 1000, 1000, CFG).chips
    neg = generate_negative_chips(props, 1000, 1000, CFG, pos)
    counts = inside_matrix(np.minimum(props, 1000), neg.boxes_scaled).sum(1)
    assert (counts >= CFG.neg_min_proposals).all()
