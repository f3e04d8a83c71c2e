# Copyright (c) mmsnip contributors. All rights reserved.
"""The paper's label rules at their thresholds, by hand (Sec. 3.2.1, 3.3.4).

Boxes are chosen so that every IoU and size is exact in float32: the
expected labels follow from the paper's inequalities alone.
"""
import torch
from mmengine.structures import InstanceData

from mmsnip.models import ScaleAwareMaxIoUAssigner, ScaleAwareRoIAssigner

RPN = dict(
    pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
    match_low_quality=False)
RCNN = dict(
    pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
    match_low_quality=False)


def _gt(boxes, valid, valid_range=None):
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.arange(len(boxes)) + 1)
    gt.scale_valid = torch.tensor(valid, dtype=torch.bool)
    if valid_range is not None:
        gt.set_metainfo(dict(valid_range=valid_range))
    return gt


def _priors(boxes):
    return InstanceData(
        priors=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))


def test_rcnn_label_l_of_r_at_its_bounds():
    # Sec. 3.2.1: l(r) = l_GT if IoU >= 0.5 and s < size(r) < e; 0 if IoU
    # < 0.5 and in range; -1 if size(r) <= s or size(r) >= e. Range (32,
    # 160) CHIP px; one ground-truth box [0, 0, 100, 100].
    proposals = _priors([
        [0, 0, 100, 50],  # IoU 5000 / 10000 = 0.5 exactly, size 70.7: 1
        [0, 0, 100, 49],  # IoU 0.49, in range: background
        [500, 500, 532, 532],  # size exactly 32 = s: ignored
        [500, 500, 533, 533],  # size 33: background (IoU 0)
        [500, 500, 660, 660],  # size exactly 160 = e: ignored
        [500, 500, 659, 659],  # size 159: background
    ])
    gt = _gt([[0, 0, 100, 100]], [False], valid_range=(32, 160))
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    # labels use every box, the invalid one too (Sec. 3.3.4)
    assert res.gt_inds.tolist() == [1, 0, -1, 0, -1, 0]
    assert res.labels.tolist() == [1, -1, -1, -1, -1, -1]


def test_rpn_invalid_box_threshold_is_strict():
    # Sec. 3.2.1: anchors with "an overlap greater than 0.3" with an
    # invalid box are excluded. Invalid box [0, 0, 100, 100]; the valid
    # box is far away.
    priors = _priors([
        [0, 0, 100, 31],  # IoU 0.31 with the invalid box: ignored
        [0, 0, 100, 30],  # IoU 0.30 exactly: not greater, background
        [1000, 1000, 1100, 1100],  # IoU 1 with the valid box: positive
    ])
    gt = _gt([[0, 0, 100, 100], [1000, 1000, 1100, 1100]], [False, True])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(priors, gt)
    assert res.gt_inds.tolist() == [-1, 0, 2]


def test_rpn_labels_come_from_valid_boxes_only():
    # Sec. 3.3.4: "valid ground-truth boxes to assign labels": an anchor
    # equal to an invalid box is never its positive; ignored instead.
    priors = _priors([[0, 0, 100, 100]])
    gt = _gt([[0, 0, 100, 100]], [False])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(priors, gt)
    assert res.gt_inds.tolist() == [-1]
    assert res.labels.tolist() == [-1]
