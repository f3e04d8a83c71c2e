# Copyright (c) mmsnip contributors. All rights reserved.
"""FCOS with SNIP's label rule for point-based assignment."""
from typing import Tuple

import torch
from mmdet.models.dense_heads import FCOSHead
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmsnip.registry import MODELS
from ..task_modules.assigners.scale_aware_assigners import (IGNORED,
                                                            scale_valid_mask)


class SkipIgnoredLoss(nn.Module):
    """Call a classification loss on the rows whose label is not ignored.

    Args:
        loss (nn.Module): The wrapped loss (e.g. ``FocalLoss``).
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, pred: Tensor, target: Tensor, weight=None, **kwargs):
        keep = target != IGNORED
        if weight is not None:
            weight = weight[keep]
        return self.loss(pred[keep], target[keep], weight=weight, **kwargs)


@MODELS.register_module()
class ScaleAwareFCOSHead(FCOSHead):
    """``FCOSHead`` whose points learn from valid boxes only (SNIP).

    The point-assignment counterpart of the RPN rule (Sec. 3.2.1): targets
    come from the valid ground truth only (``gt_instances.scale_valid``),
    and points inside an invalid box are ignored, i.e. left out of the
    classification loss and of the box and centerness losses, even if a
    valid box made them positive. Without ``scale_valid`` it is
    ``FCOSHead``. Arguments: as ``FCOSHead``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_cls = SkipIgnoredLoss(self.loss_cls)

    def _get_targets_single(self, gt_instances: InstanceData, points: Tensor,
                            regress_ranges: Tensor,
                            num_points_per_lvl: list) -> Tuple[Tensor, Tensor]:
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return super()._get_targets_single(gt_instances, points,
                                               regress_ranges,
                                               num_points_per_lvl)
        labels, bbox_targets = super()._get_targets_single(
            gt_instances[valid], points, regress_ranges, num_points_per_lvl)
        invalid = get_box_tensor(gt_instances.bboxes[~valid]).to(points)
        if len(invalid):
            x, y = points[:, None, 0], points[:, None, 1]
            inside = ((x > invalid[:, 0]) & (x < invalid[:, 2]) &
                      (y > invalid[:, 1]) & (y < invalid[:, 3])).any(dim=1)
            labels = torch.where(inside, labels.new_tensor(IGNORED), labels)
        return labels, bbox_targets
