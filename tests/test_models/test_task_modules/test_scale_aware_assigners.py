# Copyright (c) mmsnip contributors. All rights reserved.
import torch
from mmdet.models.task_modules.assigners import MaxIoUAssigner
from mmdet.models.task_modules.samplers import RandomSampler
from mmengine.structures import InstanceData

from mmsnip.models import ScaleAwareMaxIoUAssigner, ScaleAwareRoIAssigner

RPN = dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
           match_low_quality=True)
RCNN = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
            match_low_quality=False)


def _gt(boxes, valid=None, labels=None, valid_range=None):
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels or [0] * len(boxes)))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid)
    if valid_range is not None:
        gt.set_metainfo(dict(valid_range=valid_range))
    return gt


def _priors(boxes):
    return InstanceData(priors=torch.tensor(boxes, dtype=torch.float32))


def _box_with_iou(iou, ref=(0, 0, 100, 100)):
    """A box to the right of ``ref`` (same height) with the given IoU."""
    w = ref[2] - ref[0]
    shift = w * (1 - iou) / (1 + iou)
    return [ref[0] + shift, ref[1], ref[2] + shift, ref[3]]


def test_invalid_box_iou_031_ignores_the_anchor_029_does_not():
    invalid = [0, 0, 100, 100]
    anchors = _priors([_box_with_iou(0.31), _box_with_iou(0.29),
                       [300, 300, 340, 340], [301, 300, 341, 340]])
    gt = _gt([invalid, [300, 300, 340, 340]], valid=[False, True],
             labels=[3, 5])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    # 0.31 > 0.3 with the invalid box: ignored; 0.29: a plain negative.
    assert res.gt_inds.tolist()[:2] == [-1, 0]
    # the valid box keeps its positives, indexed in the FULL gt list
    assert res.gt_inds.tolist()[2:] == [2, 2]
    assert res.labels.tolist()[2:] == [5, 5]
    assert res.num_gts == 2


def test_invalidation_overrides_positives():
    both = [0, 0, 100, 100]
    anchors = _priors([both])
    gt = _gt([both, [5, 0, 105, 100]], valid=[True, False])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    assert res.gt_inds.tolist() == [-1]


def test_without_validity_it_is_max_iou_assigner():
    anchors = _priors([[0, 0, 10, 10], [0, 0, 100, 100], [50, 50, 90, 90]])
    gt = _gt([[0, 0, 90, 100], [40, 40, 90, 90]], labels=[1, 2])
    a = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    b = MaxIoUAssigner(**RPN).assign(anchors, gt)
    assert torch.equal(a.gt_inds, b.gt_inds)
    assert torch.equal(a.labels, b.labels)
    all_valid = _gt([[0, 0, 90, 100], [40, 40, 90, 90]], valid=[True, True],
                    labels=[1, 2])
    c = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, all_valid)
    assert torch.equal(a.gt_inds, c.gt_inds)


def test_only_invalid_boxes_give_negatives_and_ignores():
    anchors = _priors([[0, 0, 100, 100], [500, 500, 600, 600]])
    gt = _gt([[0, 0, 100, 100]], valid=[False])
    res = ScaleAwareMaxIoUAssigner(**RPN).assign(anchors, gt)
    assert res.gt_inds.tolist() == [-1, 0]


def test_rcnn_out_of_range_proposals_are_never_sampled():
    # range (32, 160) chip px: the 20 px and 200 px proposals are ignored
    proposals = _priors([[0, 0, 20, 20], [0, 0, 200, 200], [0, 0, 60, 60],
                         [300, 300, 360, 360]])
    gt = _gt([[0, 0, 58, 58], [0, 0, 198, 198]], valid=[True, False],
             labels=[1, 2], valid_range=(32, 160))
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    assert res.gt_inds.tolist() == [-1, -1, 1, 0]
    sampler = RandomSampler(num=8, pos_fraction=0.5,
                            add_gt_as_proposals=True)
    for _ in range(20):
        sample = sampler.sample(
            ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt), proposals,
            gt)
        chosen = torch.cat([sample.pos_inds, sample.neg_inds]).tolist()
        # priors = [gt0, gt1, p0, p1, p2, p3]: gt1 (invalid) and p0, p1
        # (out of range) are never sampled
        assert not {1, 2, 3} & set(chosen)
        assert 0 in sample.pos_inds.tolist()  # the valid gt as proposal


def test_rcnn_labels_use_invalid_boxes_too():
    # a 60 px proposal (in range) overlapping an INVALID 64 px box
    proposals = _priors([[0, 0, 60, 60]])
    gt = _gt([[0, 0, 64, 64]], valid=[False], labels=[4],
             valid_range=(32, 160))
    res = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    assert res.gt_inds.tolist() == [1] and res.labels.tolist() == [4]


def test_rcnn_without_chip_info_is_max_iou_assigner():
    proposals = _priors([[0, 0, 20, 20], [0, 0, 60, 60]])
    gt = _gt([[0, 0, 58, 58]], labels=[1])
    a = ScaleAwareRoIAssigner(**RCNN).assign(proposals, gt)
    b = MaxIoUAssigner(**RCNN).assign(proposals, gt)
    assert torch.equal(a.gt_inds, b.gt_inds)
