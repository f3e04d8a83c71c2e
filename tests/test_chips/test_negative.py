# Copyright (c) mmsnip contributors. All rights reserved.
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import (NEGATIVE_SAMPLING_RULE, ChipConfig, ChipSet,
                          ScaleSpec, box_sizes, chip_starts,
                          generate_negative_chips, generate_positive_chips,
                          in_range, inside_matrix, make_chip_set,
                          sample_negative_chips, sample_negative_chips_batch,
                          sanitize_boxes, to_canvas)
from mmsnip.chips.boxes import FIT_EPS

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


@pytest.mark.parametrize('factor', [1.0, 3.0])
@pytest.mark.parametrize('past', [FIT_EPS / 2, 2 * FIT_EPS])
def test_covered_means_what_the_cover_means(past, factor):
    # A proposal that passes a positive chip's edge by less than FIT_EPS
    # SCALED pixels (float rounding) is covered by it, as a box is for the
    # cover itself; one that passes it by more is not. One image and the
    # batch agree.
    from mmsnip.chips.negative import negative_chips_batch
    cfg = ChipConfig(scales=(ScaleSpec(factor=factor, valid_range=(0, 200)),),
                     chip_size=256, chip_stride=32,
                     negative=dict(min_proposals=3))
    gt = np.array([[580., 580, 620, 620]])
    pos = generate_positive_chips(gt, 1000, 1000, cfg).chips
    assert len(pos) == 1
    x1, y1, x2, y2 = pos.boxes_scaled[0]
    top = np.linspace(y1, y2 - 30, 5)
    scaled = np.c_[np.full(5, x1) - past, top, np.full(5, x1 + 40), top + 30]
    props = scaled / factor  # ORIGINAL pixels
    one = generate_negative_chips(props, 1000, 1000, cfg, pos)
    batch, counts = negative_chips_batch(
        np.c_[props, np.ones(5)], np.array([0, 5]), np.array([1000.]),
        np.array([1000.]), cfg, pos, np.array([0, 1]))
    assert len(one) == len(batch) == counts.sum() == \
        (0 if past < FIT_EPS else 1)


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


def test_proposal_arrays_with_and_without_scores():
    from mmsnip.chips.negative import as_proposals
    # no proposals at all, in any empty shape: (0, 5)
    for empty in ([], np.zeros((0, 4)), np.zeros((0, 5))):
        assert as_proposals(empty, 0).shape == (0, 5)
    # a missing score column is filled with ones
    np.testing.assert_array_equal(as_proposals([[1, 2, 3, 4]], 0),
                                  [[1, 2, 3, 4, 1]])
    # one number is no proposal
    with pytest.raises(ValueError, match='proposals of scale 2'):
        as_proposals([5.0], 2)


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


def test_sampling_many_images_at_once_is_each_images_own_draw():
    sizes = np.array([0, 3, 50, 7, 1000, 2, 4])
    keys = [0, 'a.jpg', 2, -5, 4, 'b.jpg', 6]
    for num in (0, 1, 4):
        local, counts = sample_negative_chips_batch(sizes, num, 5, 2, keys)
        each = [sample_negative_chips(int(n), num, 5, 2, k)
                for n, k in zip(sizes, keys)]
        np.testing.assert_array_equal(counts, np.minimum(sizes, num))
        np.testing.assert_array_equal(local, np.concatenate(each))
        # An image's draw does not depend on the other images.
        part, _ = sample_negative_chips_batch(sizes[2:5], num, 5, 2,
                                              keys[2:5])
        np.testing.assert_array_equal(part, np.concatenate(each[2:5]))
    # Integer key arrays take the vectorised path: the same draws.
    a, _ = sample_negative_chips_batch(sizes, 2, 0, 1, np.arange(7))
    b, _ = sample_negative_chips_batch(sizes, 2, 0, 1, list(range(7)))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match='got 2 image keys for 7'):
        sample_negative_chips_batch(sizes, 2, 0, 1, [0, 1])
    for seed, epoch in ((-1, 1), (1.5, 1), (0, -2), (0, 2.0)):
        with pytest.raises(ValueError,
                           match='seed and epoch must be ints >= 0'):
            sample_negative_chips_batch(sizes, 2, seed, epoch, keys)
    with pytest.raises(ValueError, match='num must be ints >= 0'):
        sample_negative_chips_batch(sizes, 2.5, 0, 0, keys)
    # numpy integers are ints
    np.testing.assert_array_equal(
        sample_negative_chips_batch(sizes, np.int64(2), np.int64(0),
                                    np.uint32(1), keys)[0],
        sample_negative_chips_batch(sizes, 2, 0, 1, keys)[0])


def test_sampling_is_uniform_over_subsets():
    # Pool of 5, 2 drawn: each of the 10 subsets about equally often over
    # epochs (and over images), as the paper's random sampling needs.
    draws = 20000
    per_epoch = np.array([sample_negative_chips(5, 2, 0, e, 3)
                          for e in range(draws)])
    per_image, _ = sample_negative_chips_batch(np.full(draws, 5), 2, 0, 0,
                                               np.arange(draws))
    for picks in (per_epoch, per_image.reshape(-1, 2)):
        code = picks[:, 0] * 5 + picks[:, 1]
        counts = np.unique(code, return_counts=True)[1]
        assert len(counts) == 10
        # binomial sd about 42: 6 sd either side
        assert np.abs(counts - draws / 10).max() < 260


def test_sampling_rule_is_pinned():
    # These draws define NEGATIVE_SAMPLING_RULE 2: a change of rule must
    # change that number (resumed runs check it, SniperSampler).
    assert NEGATIVE_SAMPLING_RULE == 2
    np.testing.assert_array_equal(
        sample_negative_chips(1000, 3, 0, 0, '000000139.jpg'),
        [528, 654, 997])
    np.testing.assert_array_equal(sample_negative_chips(50, 2, 0, 3, 7),
                                  [18, 40])


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


def _dense_cover(boxes, hw, k, d, m):
    """Greedy cover over every grid candidate, written plainly: while some
    candidate encloses >= m uncovered boxes, the first best in row-major
    order picks the boxes S; the chip is the middle of the candidates
    enclosing S (greedy_cover's documented tie-break)."""
    h, w = hw
    sx, sy = chip_starts(w, k, d), chip_starts(h, k, d)
    iy, ix = np.divmod(np.arange(len(sx) * len(sy)), len(sx))
    cand = np.stack([sx[ix], sy[iy], sx[ix] + min(k, w), sy[iy] + min(k, h)],
                    axis=1)
    inside = inside_matrix(boxes, cand)
    remaining = np.ones(len(boxes), bool)
    chips = []
    while True:
        counts = (inside & remaining).sum(1)
        best = int(np.argmax(counts))
        if counts[best] < m:
            break
        s = inside[best] & remaining
        ok = inside[:, s].all(1)
        mid_x = (ix[ok].min() + ix[ok].max()) // 2
        mid_y = (iy[ok].min() + iy[ok].max()) // 2
        chips.append(cand[(ix == mid_x) & (iy == mid_y)][0])
        remaining &= ~s
    return np.array(chips).reshape(-1, 4)


def _reference_negatives(per_scale, h, w, cfg, pos):
    """Sec. 3.3.3 one scale at a time, without shortcuts."""
    sets = []
    for s, spec in enumerate(cfg.scales):
        props = np.asarray(per_scale[s], float).reshape(-1, 5)
        boxes, keep = sanitize_boxes(props[:, :4], h, w)
        if cfg.negative.max_proposals is not None:
            order = [i for i in np.argsort(-props[:, 4], kind='stable')
                     if keep[i]][:cfg.negative.max_proposals]
            keep = np.isin(np.arange(len(props)), order)
        keep &= in_range(box_sizes(boxes), spec.valid_range)
        factor = spec.factor_for(h, w)
        canvas = spec.scaled_shape(h, w)
        scaled = to_canvas(boxes[keep], factor, canvas)
        mine = pos.boxes_scaled[pos.scale_index == s]
        scaled = scaled[~inside_matrix(scaled, mine, FIT_EPS).any(0)]
        chips = _dense_cover(scaled, canvas, cfg.chip_size, cfg.chip_stride,
                             cfg.negative.min_proposals_for(s))
        sets.append(make_chip_set(chips, s, factor, canvas, h, w, False))
    return ChipSet.concat(sets)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([None, 40]),
       st.sampled_from([(480, 640), (427, 612), (900, 300)]))
def test_negatives_equal_a_plain_reference(seed, max_props, hw):
    # The vectorised path (all scales at once, shared positive test) gives
    # exactly the chips of the plain per-scale rule with a dense cover.
    h, w = hw
    rng = np.random.default_rng(seed)
    cfg = ChipConfig(scales=ChipConfig.paper_coco().scales, off_grid=False,
                     negative=dict(min_proposals=(3, 4, 5),
                                   max_proposals=max_props))
    gt = rng.uniform(0, 1, (5, 2)) * [w - 80, h - 80]
    gt = np.c_[gt, gt + rng.uniform(5, 80, (5, 2))]
    pos = generate_positive_chips(gt, h, w, cfg).chips
    per_scale = []
    for _ in range(3):
        xy = rng.uniform(-20, 1, (80, 2)) * [-w / 20, -h / 20]
        wh = np.exp(rng.normal(np.log(50), 0.8, (80, 2)))
        score = np.round(rng.uniform(0, 1, 80), 1)  # ties
        per_scale.append(np.c_[xy, xy + wh, score])
    per_scale[1][:3, 0] = np.nan  # dropped rows
    got = generate_negative_chips(per_scale, h, w, cfg, pos)
    want = _reference_negatives(per_scale, h, w, cfg, pos)
    assert len(got) == len(want)
    for f in ('boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
              'is_positive'):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f),
                                      err_msg=f)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([None, 30]),
       st.sampled_from(['paper', 'off_grid', 'one_by_one']))
def test_batch_equals_one_image_at_a_time(seed, max_props, case):
    # 'off_grid': chips of 128 on a stride of 64, so that many proposals
    # need off-grid starts, some of them fractional (a side within a pixel
    # of the chip's); 'one_by_one': every canvas through greedy_cover.
    from mmsnip.chips import negative
    rng = np.random.default_rng(seed)
    cfg = ChipConfig(scales=ChipConfig.paper_coco().scales,
                     chip_size=128 if case == 'off_grid' else 512,
                     chip_stride=64 if case == 'off_grid' else 32,
                     negative=dict(min_proposals=(2, 3, 4),
                                   max_proposals=max_props))
    sizes = [(480, 640), (427, 612), (900, 300), (375, 500), (640, 427)]
    flat, row_start, pos, want = [], [0], [], []
    for h, w in sizes:
        gt = rng.uniform(0, 1, (4, 2)) * [w - 60, h - 60]
        chips = generate_positive_chips(
            np.c_[gt, gt + rng.uniform(5, 60, (4, 2))], h, w, cfg).chips
        per_scale = []
        for s in range(3):
            n = int(rng.integers(0, 60))
            xy = rng.uniform(0, 1, (n, 2)) * [w, h]
            wh = np.exp(rng.normal(np.log(40), 0.8, (n, 2)))
            if case == 'off_grid' and s:
                # a proposal whose scaled width is just under the chip's,
                # with 4 small ones inside its span: a chip must start
                # off the grid to hold them (sometimes at a fraction)
                long_w = (cfg.chip_size - rng.uniform(0, 1.5)) / \
                    cfg.scales[s].factor
                x0 = rng.uniform(0, w - long_w)
                y0 = rng.uniform(0, h - 60)
                sx = x0 + rng.uniform(0, long_w - 35, 4)
                sy = y0 + rng.uniform(0, 15, 4)
                xy = np.r_[[[x0, y0]], np.c_[sx, sy], xy]
                wh = np.r_[[[long_w, 35]], np.full((4, 2), 34.0), wh]
                n += 5
            per_scale.append(np.c_[xy, xy + wh,
                                   np.round(rng.uniform(0, 1, n), 1)])
            flat.append(per_scale[-1])
            row_start.append(row_start[-1] + n)
        pos.append(chips)
        want.append(generate_negative_chips(per_scale, h, w, cfg, chips))
    hw = np.array(sizes, float)
    cells = 0 if case == 'one_by_one' else negative.MAX_GRID_CELLS
    rows = np.concatenate(flat)
    args = (rows, np.array(row_start), hw[:, 0], hw[:, 1], cfg,
            ChipSet.concat(pos), np.cumsum([0] + [len(p) for p in pos]))
    # The chip table's way: the rows sanitised by the caller (it counts
    # the dropped ones); its keep mask is left as it was.
    img = np.repeat(np.arange(len(sizes)), np.diff(row_start).reshape(
        len(sizes), 3).sum(1))
    sanitized = sanitize_boxes(rows[:, :4], hw[img, 0], hw[img, 1])
    keep_before = sanitized[1].copy()
    with mock.patch.object(negative, 'MAX_GRID_CELLS', cells):
        results = [negative.negative_chips_batch(*args),
                   negative.negative_chips_batch(*args, sanitized)]
    np.testing.assert_array_equal(sanitized[1], keep_before)
    with pytest.raises(ValueError, match='sanitized must be'):
        negative.negative_chips_batch(
            *args, (sanitized[0][1:], sanitized[1][1:]))
    want_counts = [len(x) for x in want]
    want = ChipSet.concat(want)
    for got, counts in results:
        assert counts.tolist() == want_counts
        for f in ('boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
                  'is_positive'):
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f),
                                          err_msg=f)
        assert not got.is_positive.any()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([None, 30]), st.booleans())
def test_shared_rows_equal_the_rows_repeated_per_scale(seed, max_props,
                                                       filter_range):
    # A file pooled over the scales holds one row set per image for every
    # scale: shared_scales gives the chips of that set repeated per scale
    # (the batch's usual input) and of generate_negative_chips given one
    # array, with ties, dropped rows and rows in several scales' ranges.
    from mmsnip.chips import negative
    rng = np.random.default_rng(seed)
    cfg = ChipConfig(scales=ChipConfig.paper_coco().scales, chip_size=512,
                     chip_stride=32,
                     negative=dict(min_proposals=(2, 3, 4),
                                   max_proposals=max_props,
                                   filter_range=filter_range))
    sizes = [(480, 640), (427, 612), (900, 300), (375, 500), (640, 427)]
    sets, pos, want = [], [], []
    for h, w in sizes:
        gt = rng.uniform(0, 1, (4, 2)) * [w - 60, h - 60]
        chips = generate_positive_chips(
            np.c_[gt, gt + rng.uniform(5, 60, (4, 2))], h, w, cfg).chips
        n = int(rng.integers(0, 150))
        xy = rng.uniform(0, 1, (n, 2)) * [w, h]
        wh = np.exp(rng.normal(np.log(40), 0.9, (n, 2)))
        rows = np.c_[xy, xy + wh, np.round(rng.uniform(0, 1, n), 1)]
        rows[rng.uniform(0, 1, n) < 0.05, 0] = np.nan
        sets.append(rows)
        pos.append(chips)
        want.append(generate_negative_chips(rows, h, w, cfg, chips))
    hw = np.array(sizes, float)
    positive = ChipSet.concat(pos)
    pos_start = np.cumsum([0] + [len(p) for p in pos])
    got, counts = negative.negative_chips_batch(
        np.concatenate(sets), np.cumsum([0] + [len(r) for r in sets]),
        hw[:, 0], hw[:, 1], cfg, positive, pos_start, shared_scales=True)
    repeated = [r for r in sets for _ in range(3)]
    again, again_counts = negative.negative_chips_batch(
        np.concatenate(repeated), np.cumsum([0] + [len(r) for r in repeated]),
        hw[:, 0], hw[:, 1], cfg, positive, pos_start)
    assert counts.tolist() == again_counts.tolist() == [len(x) for x in want]
    want = ChipSet.concat(want)
    for f in ('boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
              'is_positive'):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f),
                                      err_msg=f)
        np.testing.assert_array_equal(getattr(again, f), getattr(want, f),
                                      err_msg=f)
    with pytest.raises(ValueError, match=r'5 \+ 1 entries'):
        negative.negative_chips_batch(
            np.concatenate(repeated), np.cumsum([0] + [len(r) for r in
                                                    repeated]),
            hw[:, 0], hw[:, 1], cfg, positive, pos_start, shared_scales=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 3000), st.floats(0, 700),
                          st.sampled_from([100, 511, 512, 513, 600, 1067,
                                           1920, 2000, 2049]),
                          st.sampled_from([0.0, 1e-6, 2e-6, 0.5])),
                min_size=1, max_size=30),
       st.sampled_from([(512, 32), (256, 64), (128, 16), (512, 57)]))
def test_grid_runs_equal_the_search_on_the_grid(raw, k_d):
    # negative_chips_batch computes the cover's index runs arithmetically
    # for many canvases at once; they must be searchsorted's exactly,
    # including edges on grid positions and within FIT_EPS of them.
    from mmsnip.chips.positive import _cached_starts, _feasible_runs
    from mmsnip.chips.positive import grid_runs
    k, d = k_d
    x, width, length, off = (np.array(c) for c in zip(*raw))
    # edges on grid positions, or FIT_EPS-close to them, or anywhere
    on_grid = np.round(x / d) * d
    lo = np.where(off > 0, on_grid + off - 1e-6, x)
    hi = np.where(off > 0, on_grid + np.minimum(k, length) - off + 1e-6,
                  x + width)
    hi = np.maximum(hi, lo)
    first, last = grid_runs(lo, hi, length, k, d)
    for n in range(len(raw)):
        starts = _cached_starts(int(length[n]), k, d)
        want = _feasible_runs(lo[n:n + 1], hi[n:n + 1], starts,
                              min(k, int(length[n])))
        assert (first[n], last[n]) == (want[0][0], want[1][0]), n


def test_a_given_cover_picks_the_negative_chips():
    props = np.concatenate([_cluster(200, 200, 6), _cluster(700, 650, 5)])
    pos = generate_positive_chips(NO_GT, 1000, 1000, CFG).chips
    one_chip = np.array([[0.0, 0.0, 256.0, 256.0]])

    def first_chip_only(boxes, canvas_hw, chip_size, chip_stride,
                        min_count=1, off_grid=True):
        coverable = np.ones(len(boxes), bool)
        return one_chip, coverable, coverable

    got = generate_negative_chips(props, 1000, 1000, CFG, pos,
                                  cover=first_chip_only)
    np.testing.assert_array_equal(got.boxes_scaled, one_chip)
    assert len(generate_negative_chips(props, 1000, 1000, CFG, pos)) == 2


def test_top_k_counts_each_image_on_its_own():
    # Sec. 3.3.3 with max_proposals: the top k kept rows of EACH segment
    # (image, scale); a one-row segment before does not use up k
    from mmsnip.chips.negative import _top_k_mask
    seg = np.array([0, 1, 1, 1, 1])
    score = np.array([0.9, 0.5, 0.8, 0.7, 0.6])
    keep = np.array([True, True, False, True, True])
    # segment 1 by score: row 2 (dropped), rows 3 and 4 (the top 2), row 1
    np.testing.assert_array_equal(_top_k_mask(seg, score, keep, 2),
                                  [True, False, False, True, True])


@pytest.mark.parametrize('boxes_shape, keep_len', [((2, 3), 2), ((2, 4), 3)])
def test_batch_refuses_mis_shaped_sanitized_rows(boxes_shape, keep_len):
    from mmsnip.chips.negative import negative_chips_batch
    sanitized = (np.zeros(boxes_shape), np.ones(keep_len, bool))
    with pytest.raises(ValueError, match=r'sanitized must be \(2, 4\) '
                       r'boxes and \(2,\) keep'):
        negative_chips_batch(np.zeros((2, 5)), [0, 2], [100], [100], CFG,
                             ChipSet.empty(), [0, 0], sanitized=sanitized)
