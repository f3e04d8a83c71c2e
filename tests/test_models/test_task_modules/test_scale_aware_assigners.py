# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP label rules: hand-made boxes with exact expected assignments."""
import math

import numpy as np
import pytest
import torch
from mmdet.models.task_modules.assigners import MaxIoUAssigner
from mmdet.models.task_modules.samplers import RandomSampler
from mmengine.structures import InstanceData

from mmsnip.chips import box_sizes, in_range
from mmsnip.models import (ScaleAwareAssignResult, ScaleAwareMaxIoUAssigner,
                           ScaleAwareRandomSampler, ScaleAwareRoIAssigner)
from mmsnip.models.utils import (boxes_in_range, scale_valid_mask,
                                 valid_range_of)
from mmsnip.registry import TASK_UTILS

RPN = dict(
    pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True)
RCNN = dict(
    pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=False)
SAMPLER = dict(num=8, pos_fraction=0.5, add_gt_as_proposals=True)


def _gt(boxes, valid=None, labels=None, valid_range=None, dtype=torch.float32):
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=dtype).reshape(-1, 4),
        labels=torch.tensor(labels or [0] * len(boxes), dtype=torch.long))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid, dtype=torch.bool)
    if valid_range is not None:
        gt.set_metainfo(dict(valid_range=valid_range))
    return gt


def _priors(boxes, dtype=torch.float32):
    return InstanceData(priors=torch.tensor(boxes, dtype=dtype).reshape(-1, 4))


def _box_with_iou(iou, ref=(0, 0, 100, 100)):
    """``ref`` shifted right (same height) so that its IoU with ``ref`` is
    ``iou``: IoU = (w - s) / (w + s)."""
    w = ref[2] - ref[0]
    shift = w * (1 - iou) / (1 + iou)
    return [ref[0] + shift, ref[1], ref[2] + shift, ref[3]]


def _assert_same(a, b):
    assert a.num_gts == b.num_gts
    assert torch.equal(a.gt_inds, b.gt_inds)
    assert torch.equal(a.labels, b.labels)
    assert torch.allclose(a.max_overlaps, b.max_overlaps)


# ---------------------------------------------------------------- contract


def test_contract_readers():
    gt = _gt([[0, 0, 10, 10]])
    assert scale_valid_mask(gt) is None and valid_range_of(gt) is None
    gt.scale_valid = torch.tensor([1], dtype=torch.uint8)
    gt.set_metainfo(dict(valid_range=(16, None)))
    assert scale_valid_mask(gt).dtype == torch.bool
    assert valid_range_of(gt) == (16.0, math.inf)


def test_size_rule_is_the_chips_rule():
    """Strict bounds, float64 sizes: the same answers as mmsnip.chips."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (500, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 200, (500, 2))], 1)
    boxes[:3] = [[0, 0, 32, 32], [0, 0, 160, 160], [0, 0, 64,
                                                    25]]  # 32, 160, 40
    ours = boxes_in_range(torch.from_numpy(boxes).float(), (32, 160))
    ref = in_range(
        box_sizes(boxes.astype(np.float32).astype(np.float64)), (32, 160))
    assert ours.tolist() == ref.tolist()
    assert ours[:3].tolist() == [False, False, True]


# ------------------------------------------------------- RPN / RetinaNet


def test_invalid_box_iou_031_ignores_the_anchor_029_does_not():
    invalid = [0, 0, 100, 100]
    anchors = _priors([
        _box_with_iou(0.31),
        _box_with_iou(0.29), [300, 300, 340, 340], [301, 300, 341, 340]
    ])
    # invalid box FIRST: the valid one is index 1 of the full list
    gt = _gt([invalid, [300, 300, 340, 340]],
             valid=[False, True],
             labels=[3, 5])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    # 0.31 > 0.3 with the invalid box: ignored; 0.29: a plain negative
    assert res.gt_inds.tolist() == [-1, 0, 2, 2]
    assert res.labels.tolist() == [-1, -1, 5, 5]
    assert res.num_gts == 2


def test_gt_inds_index_the_original_list():
    boxes = [[0, 0, 50, 50], [100, 0, 150, 50], [200, 0, 250, 50],
             [300, 0, 350, 50]]
    anchors = _priors(boxes)
    gt = _gt(boxes, valid=[False, True, False, True], labels=[7, 8, 9, 6])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    assert res.gt_inds.tolist() == [-1, 2, -1, 4]
    assert res.labels.tolist() == [-1, 8, -1, 6]
    assert res.num_gts == 4


def test_invalidation_overrides_positives():
    both = [0, 0, 100, 100]
    anchors = _priors([both])
    gt = _gt([both, [5, 0, 105, 100]], valid=[True, False])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    assert res.gt_inds.tolist() == [-1]


def test_invalid_iou_thr_is_configurable():
    anchors = _priors([_box_with_iou(0.45)])
    gt = _gt([[0, 0, 100, 100]], valid=[False])
    strict = TASK_UTILS.build(
        dict(type='ScaleAwareMaxIoUAssigner', invalid_iou_thr=0.5, **RPN))
    assert strict.assign(anchors, gt).gt_inds.tolist() == [0]
    assert ScaleAwareMaxIoUAssigner(**RPN).assign(anchors,
                                                  gt).gt_inds.tolist() == [-1]


def test_only_invalid_boxes_give_negatives_and_ignores():
    anchors = _priors([[0, 0, 100, 100], [500, 500, 600, 600]])
    gt = _gt([[0, 0, 100, 100]], valid=[False])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    assert res.gt_inds.tolist() == [-1, 0]
    assert res.num_gts == 1


@pytest.mark.parametrize(
    'cfg',
    [
        RPN,
        dict(
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=0.5),  # RetinaNet, with crowd boxes
    ])
def test_without_validity_it_is_max_iou_assigner(cfg):
    torch.manual_seed(0)
    xy = torch.rand(200, 2) * 100
    anchors = InstanceData(
        priors=torch.cat([xy, xy + 8 + torch.rand(200, 2) * 60], 1))
    boxes = [[0, 0, 90, 100], [40, 40, 90, 90], [10, 60, 30, 90]]
    crowd = InstanceData(
        bboxes=torch.tensor([[60., 0., 100., 40.]]), labels=torch.tensor([0]))
    ref = MaxIoUAssigner(**cfg).assign(anchors, _gt(boxes, labels=[1, 2, 0]),
                                       crowd)
    ours = ScaleAwareMaxIoUAssigner(**cfg)
    _assert_same(
        ours.assign(anchors, _gt(boxes, labels=[1, 2, 0]), crowd), ref)
    _assert_same(
        ours.assign(anchors, _gt(boxes, [True] * 3, labels=[1, 2, 0]), crowd),
        ref)


def test_crowd_boxes_still_ignore_anchors():
    anchors = _priors([[0, 0, 40, 40], [200, 200, 260, 260]])
    gt = _gt([[200, 200, 260, 260], [500, 500, 900, 900]], valid=[True, False])
    crowd = InstanceData(
        bboxes=torch.tensor([[0., 0., 50., 50.]]), labels=torch.tensor([0]))
    assigner = ScaleAwareMaxIoUAssigner(**RPN, ignore_iof_thr=0.5)
    assert assigner.assign(anchors, gt, crowd).gt_inds.tolist() == [-1, 1]


def test_invalid_ious_are_float32_under_amp():
    """fp16 boxes of 400 px: w * h overflows in fp16 (IoU NaN) unless the
    rule casts to float32."""
    anchors = _priors([
        _box_with_iou(0.31, (0, 0, 400, 400)),
        _box_with_iou(0.29, (0, 0, 400, 400))
    ],
                      dtype=torch.float16)
    gt = _gt([[0, 0, 400, 400], [1000, 1000, 1010, 1010]],
             valid=[False, True],
             dtype=torch.float16)
    fp16_iou = dict(type='BboxOverlaps2D', scale=512., dtype='fp16')
    res = ScaleAwareMaxIoUAssigner(
        **RPN, iou_calculator=fp16_iou).assign(anchors, gt)
    assert res.gt_inds.tolist() == [-1, 0]


# ------------------------------------------------------------------ RCNN


def _rcnn_case():
    # valid_range (32, 160) chip px: the 20 px and 200 px proposals are out
    proposals = _priors([[0, 0, 20, 20], [0, 0, 200, 200], [0, 0, 60, 60],
                         [300, 300, 360, 360]])
    gt = _gt([[0, 0, 198, 198], [0, 0, 58, 58]],
             valid=[False, True],
             labels=[2, 1],
             valid_range=(32, 160))
    return proposals, gt


def test_rcnn_out_of_range_proposals_are_ignored():
    proposals, gt = _rcnn_case()
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    assert res.gt_inds.tolist() == [-1, -1, 2, 0]
    assert res.labels.tolist() == [-1, -1, 1, -1]
    assert res.num_gts == 2


@pytest.mark.parametrize('sampler', ['mmsnip', 'mmdet'])
def test_rcnn_never_samples_out_of_range_proposals_or_invalid_gt(sampler):
    """Over many draws. With mmdet's RandomSampler the invalid box is
    prepended but ignored; with ours it is not prepended at all."""
    proposals, gt = _rcnn_case()
    assigner = ScaleAwareRoIAssigner(**RCNN)
    if sampler == 'mmsnip':
        smp = ScaleAwareRandomSampler(**SAMPLER)
        # priors = [valid gt 1, p0, p1, p2, p3]
        valid_gt, never = [0], {1, 2}
    else:
        smp = RandomSampler(**SAMPLER)
        # priors = [gt 0 (invalid), gt 1, p0, p1, p2, p3]
        valid_gt, never = [1], {0, 2, 3}
    torch.manual_seed(0)
    for _ in range(50):
        res = smp.sample(assigner.assign(proposals, gt), proposals, gt)
        pos, neg = res.pos_inds.tolist(), res.neg_inds.tolist()
        assert not never & set(pos + neg)
        assert set(valid_gt) <= set(pos)
        assert res.pos_gt_labels.tolist() == [1] * len(pos)


def test_sampler_adds_only_valid_gt_as_proposals():
    proposals = _priors([[0, 0, 60, 60], [300, 300, 360, 360]])
    boxes = [[0, 0, 62, 62], [100, 100, 150, 150], [300, 300, 358, 358]]
    gt = _gt(
        boxes,
        valid=[False, True, False],
        labels=[3, 4, 5],
        valid_range=(32, 160))
    res = ScaleAwareRandomSampler(
        num=16, pos_fraction=1.0).sample(
            ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt), proposals, gt)
    # priors = [gt 1, p0, p1]; both proposals are positives of INVALID boxes
    assert len(res.priors) == 3
    assert torch.equal(res.priors[0], torch.tensor(boxes[1]))
    assert sorted(res.pos_inds.tolist()) == [0, 1, 2]
    order = res.pos_inds.argsort()
    assert res.pos_is_gt[order].tolist() == [1, 0, 0]
    assert res.pos_assigned_gt_inds[order].tolist() == [1, 0, 2]
    assert res.pos_gt_labels[order].tolist() == [4, 3, 5]
    assert torch.equal(res.pos_gt_bboxes[order],
                       torch.tensor(boxes)[[1, 0, 2]])


def test_rcnn_labels_use_invalid_boxes_too():
    # a 60 px proposal (in range) overlapping an INVALID 64 px box
    proposals = _priors([[0, 0, 60, 60]])
    gt = _gt([[0, 0, 64, 64]],
             valid=[False],
             labels=[4],
             valid_range=(32, 160))
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    assert res.gt_inds.tolist() == [1] and res.labels.tolist() == [4]
    sample = ScaleAwareRandomSampler(**SAMPLER).sample(res, proposals, gt)
    assert sample.pos_inds.tolist() == [0]  # no gt prepended
    assert sample.pos_gt_labels.tolist() == [4]


def test_rcnn_without_chip_info_is_max_iou_assigner_and_random_sampler():
    proposals = _priors([[0, 0, 20, 20], [0, 0, 60, 60], [5, 5, 60, 60],
                         [200, 200, 260, 260], [90, 90, 99, 99]])
    gt = _gt([[0, 0, 58, 58], [200, 200, 250, 250]], labels=[1, 2])
    a = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    b = MaxIoUAssigner(**RCNN).assign(proposals, gt)
    _assert_same(a, b)
    assert type(a) is type(b)
    for sampler_gt in (gt,
                       _gt([[0, 0, 58, 58], [200, 200, 250, 250]],
                           valid=[True, True],
                           labels=[1, 2])):
        torch.manual_seed(3)
        x = ScaleAwareRandomSampler(**SAMPLER).sample(
            MaxIoUAssigner(**RCNN).assign(proposals, gt), proposals,
            sampler_gt)
        torch.manual_seed(3)
        y = RandomSampler(**SAMPLER).sample(
            MaxIoUAssigner(**RCNN).assign(proposals, gt), proposals, gt)
        for key in ('pos_inds', 'neg_inds', 'priors', 'pos_is_gt',
                    'pos_assigned_gt_inds', 'pos_gt_labels'):
            assert torch.equal(getattr(x, key), getattr(y, key)), key


def test_range_only_or_validity_only():
    proposals = _priors([[0, 0, 20, 20], [0, 0, 60, 60]])
    only_range = _gt([[0, 0, 58, 58]], labels=[1], valid_range=(32, 160))
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, only_range)
    assert res.gt_inds.tolist() == [-1, 1]
    assert res.gt_valid.tolist() == [True]
    only_valid = _gt([[0, 0, 58, 58]], valid=[False], labels=[1])
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, only_valid)
    assert isinstance(res, ScaleAwareAssignResult)
    assert res.gt_inds.tolist() == [0, 1]  # no range: no size filter


def test_proposal_sizes_are_float64_under_amp():
    """A 300 px fp16 proposal: w * h = 90000 overflows fp16 (size inf)
    unless the rule casts; mmdet's IoUs in fp16 with its AMP setting."""
    proposals = _priors([[0, 0, 300, 300], [0, 0, 100, 100]],
                        dtype=torch.float16)
    gt = _gt([[0, 0, 290, 290]],
             valid=[True],
             labels=[1],
             valid_range=(200, 400),
             dtype=torch.float16)
    fp16_iou = dict(type='BboxOverlaps2D', scale=512., dtype='fp16')
    res = ScaleAwareRoIAssigner(
        **RCNN, iou_calculator=fp16_iou).assign(proposals, gt)
    assert res.gt_inds.tolist() == [1, -1]
