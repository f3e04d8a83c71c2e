# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's scale-aware label assignment (Sec. 3.2.1, 3.3.4).

Both assigners read the chip's scale validity from the ground truth that
``PackChipInputs`` packs: ``gt_instances.scale_valid`` (``(N,)`` bool: the
object's size at this chip's scale is in the scale's valid range) and
``gt_instances.metainfo['valid_range']`` (``(min, max)`` sqrt(area) in
network-input pixels). Without them (plain MMDetection data) they behave
exactly like ``MaxIoUAssigner``.
"""
from typing import Optional

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult, MaxIoUAssigner
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData

from mmsnip.chips import box_sizes, in_range
from mmsnip.registry import TASK_UTILS

IGNORED = -1  # gt_inds / labels of priors excluded from the loss


def scale_valid_mask(gt_instances: InstanceData) -> Optional[torch.Tensor]:
    """``gt_instances.scale_valid`` as a bool tensor, or None if absent."""
    if 'scale_valid' not in gt_instances:
        return None
    return gt_instances.scale_valid.to(torch.bool)


@TASK_UTILS.register_module()
class ScaleAwareMaxIoUAssigner(MaxIoUAssigner):
    """``MaxIoUAssigner`` that learns from valid boxes only (RPN, one-stage).

    The RPN rule of SNIP (Sec. 3.2.1, 3.3.4): anchors are assigned against
    the *valid* ground truth only, then every anchor whose IoU with an
    *invalid* ground-truth box exceeds ``invalid_iou_thr`` is ignored
    (``gt_inds = -1``), positive or not: its gradient is not propagated.
    ``gt_inds`` index the full ground-truth list, so targets are fetched as
    usual. Use it as ``train_cfg.rpn.assigner`` (two-stage detectors) or
    ``train_cfg.assigner`` (RetinaNet and other MaxIoU one-stage heads).

    Example, ``invalid_iou_thr=0.3``: an anchor with IoU 0.31 to an invalid
    box is ignored even if it overlaps a valid box by 0.8; at IoU 0.29 it
    keeps the label the valid boxes give it.

    Args:
        invalid_iou_thr (float): IoU above which an anchor is invalidated by
            an invalid ground-truth box (0.3 in the paper).
        **kwargs: ``MaxIoUAssigner`` arguments.
    """

    def __init__(self, *args, invalid_iou_thr: float = 0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.invalid_iou_thr = invalid_iou_thr

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return super().assign(pred_instances, gt_instances,
                                  gt_instances_ignore, **kwargs)
        valid_idx = torch.nonzero(valid, as_tuple=False).squeeze(1)
        result = super().assign(pred_instances, gt_instances[valid],
                                gt_instances_ignore, **kwargs)
        gt_inds = result.gt_inds.clone()
        pos = gt_inds > 0
        gt_inds[pos] = valid_idx.to(gt_inds.device)[gt_inds[pos] - 1] + 1
        labels = result.labels.clone()
        # Sec. 3.2.1: anchors overlapping an invalid box by > 0.3 are ignored.
        invalid_boxes = get_box_tensor(gt_instances.bboxes[~valid]).float()
        priors = get_box_tensor(pred_instances.priors).float()
        if len(invalid_boxes) and len(priors):
            ious = self.iou_calculator(invalid_boxes.to(priors.device),
                                       priors)
            hit = ious.max(dim=0).values > self.invalid_iou_thr
            gt_inds[hit] = IGNORED
            labels[hit] = IGNORED
        return AssignResult(
            num_gts=len(gt_instances),
            gt_inds=gt_inds,
            max_overlaps=result.max_overlaps,
            labels=labels)


class ScaleAwareAssignResult(AssignResult):
    """``AssignResult`` that keeps invalid ground truth out of sampling.

    Samplers with ``add_gt_as_proposals`` prepend every ground-truth box as
    a positive proposal (``add_gt_``); here the invalid ones are prepended
    as ignored instead, so they are never sampled (the original code also
    appended only in-range ground truth).
    """

    def __init__(self, *args, gt_valid: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.gt_valid = gt_valid

    def add_gt_(self, gt_labels: torch.Tensor) -> None:
        super().add_gt_(gt_labels)
        invalid = ~self.gt_valid.to(self.gt_inds.device)
        num_gts = len(gt_labels)
        self.gt_inds[:num_gts][invalid] = IGNORED
        self.labels[:num_gts][invalid] = IGNORED


@TASK_UTILS.register_module()
class ScaleAwareRoIAssigner(MaxIoUAssigner):
    """``MaxIoUAssigner`` for the RoI head with SNIP's range rule.

    Sec. 3.2.1 / 3.3.4: proposals are labelled against *all* ground-truth
    boxes (valid or not: a cropped large object can still produce a valid
    small proposal), but proposals whose size lies outside the chip scale's
    valid range are ignored (never sampled as positive or negative), and
    invalid ground-truth boxes are not added as proposals. Works with any
    sampler (``RandomSampler``, ``OHEMSampler``...) and per stage in
    Cascade R-CNN.

    Args:
        **kwargs: ``MaxIoUAssigner`` arguments, e.g. ``pos_iou_thr=0.5,
            neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=False``.
    """

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        result = super().assign(pred_instances, gt_instances,
                                gt_instances_ignore, **kwargs)
        valid = scale_valid_mask(gt_instances)
        valid_range = gt_instances.metainfo.get('valid_range')
        if valid is None and valid_range is None:
            return result
        gt_inds, labels = result.gt_inds.clone(), result.labels.clone()
        if valid_range is not None:
            priors = get_box_tensor(pred_instances.priors)
            sizes = box_sizes(priors.detach().float().cpu().numpy())
            out = torch.from_numpy(~in_range(sizes, valid_range)).to(
                gt_inds.device)
            gt_inds[out] = IGNORED
            labels[out] = IGNORED
        if valid is None:
            valid = torch.ones(len(gt_instances), dtype=torch.bool)
        return ScaleAwareAssignResult(
            num_gts=result.num_gts,
            gt_inds=gt_inds,
            max_overlaps=result.max_overlaps,
            labels=labels,
            gt_valid=valid)
