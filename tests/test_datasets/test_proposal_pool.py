# Copyright (c) mmsnip contributors. All rights reserved.
"""Pooling the proposals of all scales (the released code's negatives):
one NMS over the union equals a brute-force reference; a pooled file
gives every scale the pool's rows in its range; the chip table built from
it equals the one built from the reference pool at every scale, and
differs from the per-scale table only in its negatives."""
import numpy as np
import pytest
import torch

from mmsnip.chips import ChipConfig
from mmsnip.chips.boxes import box_sizes, in_range
from mmsnip.datasets import chip_table
from mmsnip.datasets.chip_table import (ImageRecords, _proposal_rows,
                                        build_chip_table)
from mmsnip.datasets.proposal_pool import (POOL_IOU, greedy_nms,
                                           pool_keep, pool_order,
                                           pool_proposals)
from mmsnip.datasets.proposals import (ProposalFile, convert_proposals,
                                       save_proposals)

CFG = ChipConfig.from_dict(dict(
    chip_size=128, chip_stride=32, neg_min_proposals=2,
    scales=[dict(max_side=128, valid_range=(40, None)),
            dict(factor=1.0, valid_range=(16, 64)),
            dict(factor=2.0, valid_range=(0, 24))]))


def iou(a, b):
    """IoU of two xyxy boxes, continuous area."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def reference_pool(per_scale, thr=0.7):
    """Brute force: the union of all scales' rows (ORIGINAL pixels); in
    descending score order, keep a row unless it overlaps a kept one at
    IoU > thr."""
    rows = np.concatenate([np.asarray(p, np.float64).reshape(-1, 5)
                           for p in per_scale])
    kept = []
    for i in np.argsort(-rows[:, 4], kind='stable'):
        if all(iou(rows[i], rows[k]) <= thr for k in kept):
            kept.append(i)
    return rows[kept].reshape(-1, 5)


def random_rows(rng, n, low=0, high=200):
    """``n`` rows on a 0.5 px grid (exact in float16), sides 4-60 px,
    distinct scores; many overlap."""
    xy = rng.integers(2 * low, 2 * high, (n, 2)) / 2
    wh = rng.integers(8, 120, (n, 2)) / 2
    return np.c_[xy, xy + wh, rng.permutation(n) / n + rng.uniform(0, .001)]


def test_pool_equals_the_brute_force_reference():
    rng = np.random.default_rng(0)
    for trial in range(30):
        per_scale = [random_rows(rng, int(rng.integers(0, 60)), 0, 120)
                     for _ in range(3)]
        thr = (0.7, 0.5, 0.3)[trial % 3]
        want = reference_pool(per_scale, thr)
        got = pool_proposals(per_scale, thr)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
        # tensors in, tensors out (the miner's path), the same rows
        tensors = pool_proposals([torch.as_tensor(p) for p in per_scale],
                                 thr)
        assert isinstance(tensors, torch.Tensor)
        np.testing.assert_array_equal(tensors.numpy(), got)
    assert 0 < len(want) < sum(map(len, per_scale))  # some suppressed


def test_worked_example_of_the_docstring():
    per_scale = [np.array([[0, 0, 10, 10, 0.9], [50, 50, 90, 90, 0.4]]),
                 np.array([[0, 0, 10, 9, 0.8], [200, 0, 400, 100, 0.6]])]
    np.testing.assert_allclose(pool_proposals(per_scale), [
        [0, 0, 10, 10, 0.9], [200, 0, 400, 100, 0.6],
        [50, 50, 90, 90, 0.4]], rtol=1e-6)
    assert POOL_IOU == 0.7  # lib/nms/nms.py:56 of the released code


def test_threshold_ties_nan_and_empty():
    box = [0, 0, 10, 10]
    half = [0, 0, 10, 5]  # IoU 0.5 with box
    # IoU equal to the threshold is kept (the released code drops > thr)
    assert len(pool_proposals([np.array([box + [.9], half + [.8]])],
                              0.5)) == 2
    assert len(pool_proposals([np.array([box + [.9], half + [.8]])],
                              0.49)) == 1
    # equal scores: the input order decides (scale 0 first)
    got = pool_proposals([np.array([box + [.5]]), np.array([
        [0, 0, 10, 9.9, .5]])])
    np.testing.assert_array_equal(got, np.float32([box + [.5]]))
    # NaN scores rank last; rows with a NaN/inf coordinate are dropped
    got = pool_proposals([np.array([box + [np.nan], box + [.1],
                                    [np.nan, 0, 1, 1, 1],
                                    [0, 0, np.inf, 1, 1]])])
    np.testing.assert_array_equal(got, np.float32([box + [.1]]))
    assert pool_proposals([np.zeros((0, 5))] * 3).shape == (0, 5)
    assert pool_proposals([]).shape == (0, 5)
    for bad in (0, 1.5, float('nan'), None, True):
        with pytest.raises(ValueError, match='pool_proposals: pool_iou must '
                           r'be a number in \(0, 1\], got'):
            pool_proposals([np.zeros((0, 5))], bad)


KINDS = ('grid', 'continuous', 'near', 'tiny', 'huge')


def hard_rows(rng, kind, n, thr):
    """``(n, 5)`` float32 rows of one kind of hard case for the numpy NMS:
    coordinates on a coarse grid (equal and duplicate boxes, equal scores,
    IoUs at the thresholds); continuous ones; boxes each followed by a
    box inside it, flush with its right side and ``thr`` (within 3e-7) as
    wide (IoU ``thr``: where the sweep's bound is tight; rounding decides);
    such pairs with sides near 1e-22 px (subnormal areas, rounded by up to
    a tenth) or boxes with sides near 1e19 px (overflow).
    3% of the values are NaN or infinite."""
    if kind == 'grid':
        xy = rng.integers(0, 12, (n, 2)).astype(float)
        wh = rng.integers(-1, 8, (n, 2)).astype(float)
    elif kind == 'huge':
        xy = rng.uniform(-1e19, 1e19, (n, 2))
        wh = rng.uniform(0, 3e19, (n, 2))
    else:
        xy = rng.uniform(0, 200, (n, 2))
        wh = np.exp(rng.normal(np.log(40), 0.8, (n, 2)))
    boxes = np.c_[xy, xy + wh]
    if kind in ('near', 'tiny'):
        ratio = thr * (1 + rng.uniform(-3e-7, 3e-7, n)) if kind == 'near' \
            else rng.uniform(0.3, 1, n)
        inner = boxes.copy()
        inner[:, 0] = boxes[:, 2] - ratio * (boxes[:, 2] - boxes[:, 0])
        boxes = np.stack([boxes, inner], 1).reshape(-1, 4)[:n]
        if kind == 'tiny':
            boxes = boxes * 3e-24
    score = rng.integers(0, 4, n) / 4 if kind == 'grid' else \
        np.sort(rng.uniform(0, 1, n))[::-1]
    rows = np.c_[boxes, score].astype(np.float32)
    odd = rng.uniform(0, 1, rows.shape) < 0.03
    rows[odd] = rng.choice(np.float32([np.nan, np.inf, -np.inf]),
                           int(odd.sum()))
    return rows


@pytest.mark.parametrize('kind', KINDS)
def test_numpy_pool_keeps_exactly_mmcvs_rows(kind):
    """Arrays pool in numpy (greedy_nms's sweep), tensors through mmcv's
    nms: on the CPU the same rows, bit for bit, in the same order."""
    rng = np.random.default_rng(KINDS.index(kind))
    for trial in range(150):
        thr = (0.7, 0.5, 0.3, 1.0, 0.05, float(np.float32(0.7)))[trial % 6]
        per_scale = [hard_rows(rng, kind, int(rng.integers(0, 70)), thr)
                     for _ in range(int(rng.integers(1, 4)))]
        got = pool_proposals(per_scale, thr)
        want = pool_proposals([torch.as_tensor(p) for p in per_scale], thr)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want.numpy())
        keep = pool_keep(np.concatenate(per_scale), thr)
        assert keep.sum() == len(got)


def test_greedy_nms_suppresses_only_through_kept_rows():
    # row 1 overlaps row 0 (dropped); row 2 overlaps row 1 only: kept,
    # since row 1 suppresses nothing once dropped
    boxes = np.float32([[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 6]])
    np.testing.assert_array_equal(greedy_nms(boxes, 0.7), [1, 0, 1])
    np.testing.assert_array_equal(greedy_nms(boxes, 0.8), [1, 1, 1])
    np.testing.assert_array_equal(greedy_nms(boxes, 0.5), [1, 0, 0])
    assert greedy_nms(np.zeros((0, 4), np.float32), 0.7).shape == (0, )
    np.testing.assert_array_equal(pool_order(np.float32(
        [.5, np.nan, np.inf, .5, -np.inf])), [2, 0, 3, 4, 1])


def records(num=30, seed=0):
    rng = np.random.default_rng(seed)
    infos = []
    for i in range(num):
        h, w = int(rng.integers(150, 300)), int(rng.integers(150, 300))
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 120, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(4, 90, (n, 2))]
        infos.append(dict(img_id=100 + i, img_path=f'{i}.jpg', height=h,
                          width=w, instances=[dict(bbox=b.tolist())
                                              for b in boxes]))
    return ImageRecords.from_infos(infos, str)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A per-scale file (independent rows per scale, as mined) of
    :func:`records`, its pooled conversion and the reference pools."""
    tmp = tmp_path_factory.mktemp('pool')
    rec = records()
    rng = np.random.default_rng(1)
    per_scale = {i: [random_rows(rng, int(rng.integers(5, 40)), 0, 140)
                     for _ in range(3)] for i in rec.img_ids}
    src, dst = str(tmp / 'scales.npz'), str(tmp / 'pooled.npz')
    save_proposals(src, per_scale, 3, scales=CFG.scales)
    info = convert_proposals(src, dst, pool_iou=0.7)
    # the reference pools the rows as stored (quantised scores; their
    # order is the written scores' order)
    stored = ProposalFile(src)
    ref = {i: reference_pool(stored[i]) for i in per_scale}
    return rec, src, dst, ref, info


def test_each_scale_reads_the_pool_filtered_by_its_range(files):
    """A pooled file gives scale ``s`` exactly the reference pool's rows
    whose size (ORIGINAL pixels) is in ``R_s``."""
    rec, src, dst, ref, info = files
    pooled = ProposalFile(dst)
    assert (info['version'], pooled.pool_iou, pooled.runs_per_image) == \
        (4, 0.7, 1)
    assert pooled.scales == ProposalFile(src).scales  # record kept
    ids = list(rec.img_ids)
    rows, start = _proposal_rows(pooled, ids, 3)
    ranges = CFG.valid_ranges
    for n, img_id in enumerate(ids):
        want_all = ref[img_id]
        for s in range(3):
            got = rows[start[3 * n + s]:start[3 * n + s + 1]]
            lo, hi = ranges[s]
            keep = in_range(box_sizes(got[:, :4]), (lo, hi))
            want = want_all[in_range(box_sizes(want_all[:, :4]), (lo, hi))]
            np.testing.assert_array_equal(  # boxes exact (0.5 px grid)
                np.sort(got[keep, :4], axis=0), np.sort(want[:, :4], axis=0))
            # every scale reads the whole pool: a scale also sees the
            # in-range rows the other scales found
            assert len(got) == len(want_all)


def test_pooled_chip_table_differs_from_the_per_scale_one_as_expected(
        files):
    """Positives are equal; the negatives are those of the reference pool
    given to every scale, not those of each scale's own rows."""
    rec, src, dst, ref, _ = files
    per_scale = build_chip_table(rec, CFG, ProposalFile(src), workers=0)
    pooled = build_chip_table(rec, CFG, ProposalFile(dst), workers=0)
    want = build_chip_table(rec, CFG, {k: [v] * 3 for k, v in ref.items()},
                            workers=0)
    for k in chip_table.TABLE_FIELDS:
        np.testing.assert_array_equal(pooled[k], want[k])
    # the pooled file went to the covers as one row set per image (read
    # in one slice), the dict as the set repeated per scale: one table,
    # one count of the rows read
    assert chip_table._file_rows(ProposalFile(dst), list(rec.img_ids))[2] \
        == 1
    assert pooled['stats'] == want['stats']
    pos = per_scale['is_positive']
    assert pos.sum() == pooled['is_positive'].sum()
    for k in chip_table.TABLE_FIELDS:
        np.testing.assert_array_equal(per_scale[k][pos],
                                      pooled[k][:pos.sum()])
    neg_scale = per_scale['boxes'][~pos]
    neg_pool = pooled['boxes'][~pooled['is_positive']]
    assert len(neg_scale) and len(neg_pool)
    assert neg_scale.shape != neg_pool.shape or \
        not np.array_equal(neg_scale, neg_pool)
    # one pool for every scale: each image's proposal rows are read S times
    assert pooled['stats']['proposals'] == 3 * sum(map(len, ref.values()))
