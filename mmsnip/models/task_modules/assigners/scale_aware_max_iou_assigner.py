# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's anchor label rule for RPN and MaxIoU one-stage heads."""
from typing import Optional

import torch
from mmdet.models.task_modules.assigners import AssignResult, MaxIoUAssigner
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import TASK_UTILS
from ...utils import IGNORE, scale_valid_mask, select_gt


@TASK_UTILS.register_module()
class ScaleAwareMaxIoUAssigner(MaxIoUAssigner):
    """``MaxIoUAssigner`` that learns from valid boxes only (RPN, RetinaNet).

    SNIP's RPN rule (Sec. 3.2.1, 3.3.4: "we use valid ground-truth boxes
    to assign labels and invalid ground-truth boxes to invalidate
    anchors"), in two steps:

    1. assign with ``MaxIoUAssigner`` against the *valid* ground truth
       only (``gt_instances.scale_valid``; crowd boxes in
       ``gt_instances_ignore`` work as in mmdet);
    2. every prior whose IoU with some *invalid* box is greater than
       ``invalid_iou_thr`` is ignored (``gt_inds = labels = -1``), even if
       step 1 made it positive: the paper excludes these anchors from
       training, and the original code overrides positives too.

    ``gt_inds`` index the full ground-truth list (1-based, as in mmdet) and
    ``num_gts`` is its length, so the head fetches targets from
    ``gt_instances`` as usual. Without ``scale_valid``, or with every box
    valid, the result is exactly ``MaxIoUAssigner``'s.

    Example, RPN thresholds ``pos_iou_thr=0.7, neg_iou_thr=0.3`` and
    ``invalid_iou_thr=0.3``::

        IoU with valid box   IoU with invalid box   gt_inds
        0.80                 0.10                   index of the valid box
        0.80                 0.31                   -1 (ignored, overrides)
        0.10                 0.31                   -1 (ignored)
        0.10                 0.29                   0 (negative)

    The extra IoUs are computed in float32 whatever the priors' dtype or
    the ``iou_calculator`` (mmdet's ``BboxOverlaps2D(dtype='fp16')`` would
    give fp16 IoUs, too coarse near the threshold under AMP).

    Args:
        invalid_iou_thr (float): A prior with IoU above this with an
            invalid box is ignored. Defaults to 0.3 (paper).
        *args, **kwargs: ``MaxIoUAssigner`` arguments (``pos_iou_thr``,
            ``neg_iou_thr``, ``min_pos_iou``, ``match_low_quality``,
            ``ignore_iof_thr``, ``gpu_assign_thr``, ``iou_calculator``...).
    """

    def __init__(self, *args, invalid_iou_thr: float = 0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.invalid_iou_thr = invalid_iou_thr

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign priors to the valid ground truth, ignore those on invalid.

        Args:
            pred_instances (InstanceData): ``priors`` ``(n, 4)`` xyxy
                (anchors), network-input pixels.
            gt_instances (InstanceData): ``bboxes`` ``(k, 4)``, ``labels``
                ``(k,)`` and optionally ``scale_valid`` ``(k,)`` bool.
            gt_instances_ignore (InstanceData, optional): Crowd boxes.

        Returns:
            AssignResult: ``gt_inds`` ``(n,)`` (0 negative, -1 ignored,
            i > 0 the i-th box of ``gt_instances``), ``labels`` ``(n,)``,
            ``max_overlaps`` ``(n,)`` (IoU with the valid boxes),
            ``num_gts = k``.
        """
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return super().assign(pred_instances, gt_instances,
                                  gt_instances_ignore, **kwargs)
        valid_idx = valid.nonzero(as_tuple=False).squeeze(1)
        # Sec. 3.3.4: valid ground truth assigns the labels...
        result = super().assign(pred_instances,
                                select_gt(gt_instances, valid_idx),
                                gt_instances_ignore, **kwargs)
        gt_inds, labels = result.gt_inds.clone(), result.labels.clone()
        pos = gt_inds > 0
        gt_inds[pos] = valid_idx.to(gt_inds.device)[gt_inds[pos] - 1] + 1
        # ...and priors with IoU > 0.3 to an invalid box are ignored.
        hit = self._invalidated(pred_instances.priors,
                                gt_instances.bboxes[~valid])
        gt_inds[hit.to(gt_inds.device)] = IGNORE
        labels[hit.to(labels.device)] = IGNORE
        return AssignResult(
            num_gts=len(gt_instances),
            gt_inds=gt_inds,
            max_overlaps=result.max_overlaps,
            labels=labels)

    def _invalidated(self, priors, invalid_bboxes) -> Tensor:
        """``(n,)`` bool: IoU with some invalid box > ``invalid_iou_thr``.

        float32 IoUs, on the CPU when there are more invalid boxes than
        ``gpu_assign_thr`` (as ``MaxIoUAssigner`` does for all boxes).
        """
        priors = get_box_tensor(priors)
        invalid = get_box_tensor(invalid_bboxes)
        if not len(priors) or not len(invalid):
            return torch.zeros(
                len(priors), dtype=torch.bool, device=priors.device)
        on_cpu = 0 < self.gpu_assign_thr < len(invalid)
        device = torch.device('cpu') if on_cpu else priors.device
        ious = bbox_overlaps(
            invalid.to(device, torch.float32),
            priors[:, :4].to(device, torch.float32))
        return (ious.max(dim=0).values
                > self.invalid_iou_thr).to(priors.device)
