# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's proposal label rule for RoI heads."""
from typing import Optional

import torch
from mmdet.models.task_modules.assigners import AssignResult, MaxIoUAssigner
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import TASK_UTILS
from ...utils import (IGNORE, boxes_in_range, scale_valid_mask, valid_range_of)


class ScaleAwareAssignResult(AssignResult):
    """``AssignResult`` that remembers which ground-truth boxes are valid.

    Only for samplers that know nothing of scale validity (mmdet's
    ``RandomSampler``, ``OHEMSampler``...): with ``add_gt_as_proposals``
    they prepend every ground-truth box as a positive proposal through
    :meth:`add_gt_`; here the invalid ones are prepended as ignored, so they
    are never sampled. :class:`ScaleAwareRandomSampler` does not prepend
    them at all and never calls :meth:`add_gt_`.

    Args:
        gt_valid (Tensor): ``(num_gts,)`` bool.
        *args, **kwargs: ``AssignResult`` arguments.
    """

    def __init__(self, *args, gt_valid: Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.gt_valid = gt_valid

    def add_gt_(self, gt_labels: Tensor) -> None:
        super().add_gt_(gt_labels)
        # Invalid ground truth is never a proposal (original SNIPER code).
        invalid = ~self.gt_valid.to(self.gt_inds.device)
        self.gt_inds[:len(invalid)][invalid] = IGNORE
        self.labels[:len(invalid)][invalid] = IGNORE


@TASK_UTILS.register_module()
class ScaleAwareRoIAssigner(MaxIoUAssigner):
    """``MaxIoUAssigner`` for RoI heads with SNIP's size rule on proposals.

    The RCNN rule (Sec. 3.2.1, the label ``l(r)``, and Sec. 3.3.4):
    proposals are labelled against *all* ground-truth boxes, valid or not
    (a large object cut by the chip can still give a small, valid proposal),
    but a proposal whose size sqrt(area) is not strictly inside the chip
    scale's valid range (``gt_instances.metainfo['valid_range']``,
    network-input pixels) is ignored: ``gt_inds = labels = -1``, never
    sampled as positive or negative. In Cascade R-CNN every stage applies
    it to its own (refined) boxes.

    Example, ``pos_iou_thr=neg_iou_thr=0.5`` and ``valid_range=(32,
    160)``::

        proposal size   best IoU (box validity)   gt_inds
        60              0.70 (valid)              index of that box
        60              0.70 (invalid)            index of that box
        60              0.20                      0 (negative)
        20 or 200       any                       -1 (ignored)

    Pair it with :class:`ScaleAwareRandomSampler`, which adds only the
    *valid* boxes as proposals. With another sampler the result still keeps
    invalid boxes from being sampled (see :class:`ScaleAwareAssignResult`).
    Without ``scale_valid`` and ``valid_range``, the result is exactly
    ``MaxIoUAssigner``'s.

    Args:
        *args, **kwargs: ``MaxIoUAssigner`` arguments, e.g.
            ``pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
            match_low_quality=False``.
    """

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign proposals to all ground truth, ignore the out-of-range.

        Args:
            pred_instances (InstanceData): ``priors`` ``(n, 4)`` xyxy
                proposals, network-input pixels.
            gt_instances (InstanceData): ``bboxes`` ``(k, 4)``, ``labels``
                ``(k,)``, optionally ``scale_valid`` ``(k,)`` bool and
                ``metainfo['valid_range']``.
            gt_instances_ignore (InstanceData, optional): Crowd boxes.

        Returns:
            AssignResult: a :class:`ScaleAwareAssignResult` when the sample
            carries the SNIP fields, mmdet's ``AssignResult`` otherwise.
        """
        # Sec. 3.3.4: all ground truth (valid or not) labels proposals...
        result = super().assign(pred_instances, gt_instances,
                                gt_instances_ignore, **kwargs)
        valid = scale_valid_mask(gt_instances)
        valid_range = valid_range_of(gt_instances)
        if valid is None and valid_range is None:
            return result
        gt_inds, labels = result.gt_inds.clone(), result.labels.clone()
        if valid_range is not None:
            # ...and proposals out of the scale's range are not sampled.
            out = ~boxes_in_range(pred_instances.priors, valid_range)
            gt_inds[out.to(gt_inds.device)] = IGNORE
            labels[out.to(labels.device)] = IGNORE
        if valid is None:
            valid = torch.ones(len(gt_instances), dtype=torch.bool)
        return ScaleAwareAssignResult(
            num_gts=result.num_gts,
            gt_inds=gt_inds,
            max_overlaps=result.max_overlaps,
            labels=labels,
            gt_valid=valid)
