# Copyright (c) mmsnip contributors. All rights reserved.
"""FCOS with SNIP's label rule for point-based assignment."""
from typing import List, Tuple

import torch
from mmdet.models.dense_heads import FCOSHead
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmsnip.registry import MODELS
from ..utils import IGNORE, scale_valid_mask, select_gt


class SkipIgnoredLoss(nn.Module):
    """Call a classification loss on the rows whose label is not ignored.

    ``FCOSHead.loss_by_feat`` passes every point to ``loss_cls`` with no
    weights; ignored points (label -1) are dropped here instead, so they
    count neither as positives nor as negatives. Attributes the head may
    query (``custom_cls_channels``, ``get_activation``...) are those of
    the wrapped loss.

    Args:
        loss (nn.Module): The wrapped loss (e.g. ``FocalLoss``).
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('loss'), name)

    def forward(self, pred: Tensor, target: Tensor, weight=None, **kwargs):
        """Args and return as the wrapped loss; ``target == -1`` rows are
        left out (a zero loss, connected to ``pred``, if all are)."""
        keep = target != IGNORE
        if not bool(keep.any()):
            return pred.sum() * 0
        if weight is not None:
            weight = weight[keep]
        return self.loss(pred[keep], target[keep], weight=weight, **kwargs)


@MODELS.register_module()
class ScaleAwareFCOSHead(FCOSHead):
    """``FCOSHead`` whose points learn from valid boxes only (SNIP).

    The point-assignment version of the RPN rule (Sec. 3.2.1, 3.3.4):

    1. targets come from the *valid* boxes only (``gt_instances.
       scale_valid``): FCOS's own assignment on them;
    2. a point that FCOS's assignment would make positive for some
       *invalid* box (inside the box, or its center region with
       ``center_sampling``, and the box within the level's regress range)
       is ignored, even if step 1 made it positive: left out of the
       classification loss (not a negative) and of the box and
       centerness losses.

    FCOS's positive criterion plays the role of the RPN's "IoU > 0.3 with
    an invalid box": both mean "this prior would match that object". A
    point merely lying inside a large invalid box on a level too fine for
    it stays a negative (as an anchor with IoU < 0.3 does), so small valid
    objects on a large invalid one keep their positives.

    Without ``scale_valid``, or with every box valid, it is ``FCOSHead``.

    Args:
        *args, **kwargs: ``FCOSHead`` arguments.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_cls = SkipIgnoredLoss(self.loss_cls)

    def _get_targets_single(
            self, gt_instances: InstanceData, points: Tensor,
            regress_ranges: Tensor,
            num_points_per_lvl: List[int]) -> Tuple[Tensor, Tensor]:
        """FCOS targets of one image from its valid boxes; points matched
        by an invalid box get label -1 (ignored).

        Returns:
            tuple: ``labels`` ``(num_points,)`` long (``num_classes`` is
            background, -1 ignored) and ``bbox_targets``
            ``(num_points, 4)`` (left, top, right, bottom).
        """
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return super()._get_targets_single(gt_instances, points,
                                               regress_ranges,
                                               num_points_per_lvl)
        gt_instances = InstanceData(
            bboxes=get_box_tensor(gt_instances.bboxes),
            labels=gt_instances.labels)
        labels, bbox_targets = super()._get_targets_single(
            select_gt(gt_instances, valid), points, regress_ranges,
            num_points_per_lvl)
        # Sec. 3.2.1: priors matching an invalid box are excluded.
        matched, _ = super()._get_targets_single(
            select_gt(gt_instances, ~valid), points, regress_ranges,
            num_points_per_lvl)
        ignored = matched != self.num_classes
        labels = torch.where(ignored, labels.new_tensor(IGNORE), labels)
        return labels, bbox_targets
