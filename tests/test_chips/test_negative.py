# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import (ChipConfig, ScaleSpec, generate_negative_chips,
                          generate_positive_chips, inside_matrix,
                          sample_negative_chips)

CFG = ChipConfig(scales=(ScaleSpec(factor=1.0, valid_range=(0, 200)),),
                 chip_size=256, chip_stride=32,
                 negative=dict(min_proposals=3))
NO_GT = np.zeros((0, 4))


def _cluster(cx, cy, n, size=20, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-40, 40, (n, 2)) + [cx, cy]
    return np.c_[xy, xy + size]


def _negatives(props, cfg=CFG, gt=NO_GT, hw=(1000, 1000)):
    pos = generate_positive_chips(gt, *hw, cfg).chips
    return generate_negative_chips(props, *hw, cfg, pos)


def test_negatives_cover_dense_proposal_clusters_only():
    # 10 proposals around (600, 600), 2 around (100, 700): M = 3
    props = np.vstack([_cluster(600, 600, 10), _cluster(100, 700, 2, seed=1)])
    neg = _negatives(props)
    assert len(neg) == 1 and not neg.is_positive.any()
    assert inside_matrix(props[:10], neg.boxes_scaled).all()
    assert neg.boxes.shape == (1, 4) and neg.scale_index.tolist() == [0]


def test_proposals_inside_positive_chips_are_dropped():
    gt = np.array([[580., 580, 620, 620]])
    pos = generate_positive_chips(gt, 1000, 1000, CFG).chips
    assert len(pos) == 1
    props = _cluster(600, 600, 10, size=10)
    assert inside_matrix(props, pos.boxes_scaled).all()
    assert len(generate_negative_chips(props, 1000, 1000, CFG, pos)) == 0
    # Positives of another scale do not remove them: the 40 px box is
    # valid at scale 1 only, whose positive chip encloses the proposals;
    # scale 0 has no positive chip, so they make a negative chip there.
    two = ChipConfig(scales=(ScaleSpec(factor=1.0, valid_range=(0, 30)),
                             ScaleSpec(factor=0.5, valid_range=(25, 200))),
                     chip_size=256, chip_stride=32,
                     negative=dict(min_proposals=3))
    props = _cluster(600, 600, 10, size=28)  # valid at both scales
    neg = _negatives(props, two, gt=gt)
    assert neg.scale_index.tolist() == [0]


def test_range_filter_and_its_switch():
    # five 210 px proposals (range max 200) that fit one 256 px chip
    props = np.array([[600 + i, 600 + i, 810 + i, 810 + i]
                      for i in range(5)], float)
    assert len(_negatives(props)) == 0
    off = ChipConfig(scales=CFG.scales, chip_size=256, chip_stride=32,
                     negative=dict(min_proposals=3, filter_range=False))
    assert len(_negatives(props, off)) == 1


def test_min_proposals_per_scale_and_top_k_by_score():
    props = np.c_[_cluster(600, 600, 5), np.linspace(0.1, 0.9, 5)]
    cfg = ChipConfig(scales=CFG.scales, chip_size=256, chip_stride=32,
                     negative=dict(min_proposals=(6,)))
    assert len(_negatives(props, cfg)) == 0
    # top-3 by score: 3 proposals, M = 3 -> one chip; top-2 -> none
    for k, n in ((3, 1), (2, 0)):
        cfg = ChipConfig(scales=CFG.scales, chip_size=256, chip_stride=32,
                         negative=dict(min_proposals=3, max_proposals=k))
        assert len(_negatives(props, cfg)) == n


def test_bad_proposals_are_ignored_or_rejected():
    props = np.vstack([_cluster(600, 600, 3),
                       [[np.nan, 0, 5, 5], [5, 5, 5, 50], [2000, 0, 2050, 9]]])
    neg = _negatives(props)
    assert len(neg) == 1  # only the 3 good ones count: M = 3
    with pytest.raises(ValueError, match=r'shape \(P, 4\) or \(P, 5\)'):
        _negatives(np.zeros((3, 6)))


def test_per_scale_proposals_and_mismatch():
    cfg = ChipConfig.paper_coco()
    pos = generate_positive_chips(NO_GT, 480, 640, cfg).chips
    props = [np.zeros((0, 5))] * 3
    neg = generate_negative_chips(props, 480, 640, cfg, pos)
    assert len(neg) == 0 and neg.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match='proposals for 2 scales'):
        generate_negative_chips(props[:2], 480, 640, cfg, pos)


def test_sampling_is_deterministic_per_seed_epoch_image():
    a = sample_negative_chips(50, 2, seed=0, epoch=3, image_key=7)
    b = sample_negative_chips(50, 2, seed=0, epoch=3, image_key=7)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and len(np.unique(a)) == 2 and (a < 50).all()
    assert (np.diff(a) > 0).all()
    epochs = {tuple(sample_negative_chips(50, 2, 0, e, 7)) for e in range(8)}
    images = {tuple(sample_negative_chips(50, 2, 0, 0, i)) for i in range(8)}
    seeds = {tuple(sample_negative_chips(50, 2, s, 0, 7)) for s in range(8)}
    assert min(len(epochs), len(images), len(seeds)) > 4
    np.testing.assert_array_equal(sample_negative_chips(1, 2, 0, 0, 0), [0])
    assert len(sample_negative_chips(0, 2, 0, 0, 0)) == 0
    assert len(sample_negative_chips(5, 0, 0, 0, 0)) == 0
    with pytest.raises(ValueError, match='>= 0'):
        sample_negative_chips(-1, 2, 0, 0, 0)


def test_sampling_with_string_keys_is_stable():
    # Fixed expected values: Python's salted hash() would change them
    # between processes; SHA-256 does not.
    a = sample_negative_chips(1000, 3, 0, 0, '000000139.jpg')
    np.testing.assert_array_equal(
        a, sample_negative_chips(1000, 3, 0, 0, '000000139.jpg'))
    assert not np.array_equal(
        a, sample_negative_chips(1000, 3, 0, 0, '000000140.jpg'))
    assert len(sample_negative_chips(1000, 3, 0, 0, -5)) == 3
    with pytest.raises(ValueError, match='image_key must be an int or a str'):
        sample_negative_chips(10, 2, 0, 0, 1.5)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.integers(0, 2**31), st.integers(1, 6))
def test_negative_chips_hold_enough_proposals(n, seed, m):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 900, (n, 2))
    props = np.c_[xy, xy + rng.uniform(5, 90, (n, 2))]
    cfg = ChipConfig(scales=CFG.scales, chip_size=256, chip_stride=32,
                     negative=dict(min_proposals=m))
    neg = _negatives(props, cfg)
    inside = inside_matrix(np.minimum(props, 1000), neg.boxes_scaled)
    assert (inside.sum(1) >= m).all()
    # the greedy stops only when no chip holds M uncovered proposals: any
    # chip of the cover holds at least M proposals not in earlier chips
    seen = np.zeros(n, bool)
    for row in inside:
        assert (row & ~seen).sum() >= m
        seen |= row
    # permuting proposals does not change the pool
    perm = rng.permutation(n)
    np.testing.assert_array_equal(_negatives(props[perm], cfg).boxes,
                                  neg.boxes)
