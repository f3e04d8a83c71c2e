# Copyright (c) mmsnip contributors. All rights reserved.
"""YOLACT's prototype head with SNIP's label rule in its semantic branch."""
from typing import Optional

import torch
from mmdet.models.dense_heads import YOLACTProtonet
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmsnip.registry import MODELS
from ..utils import scale_valid_mask


class PixelWeightedLoss(nn.Module):
    """Call a loss with the per-element weight set just before the call.

    ``YOLACTProtonet.loss_by_feat`` calls ``loss_segm(pred, target,
    avg_factor=...)`` with no weight, right after computing the image's
    targets; :class:`ScaleAwareYOLACTProtonet` sets :attr:`weight` there.
    It is used once (then reset), so a stale weight never reaches another
    image.

    Args:
        loss (nn.Module): The wrapped loss (e.g. sigmoid
            ``CrossEntropyLoss``).
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss
        self.weight: Optional[Tensor] = None

    def forward(self, pred: Tensor, target: Tensor, **kwargs) -> Tensor:
        weight, self.weight = self.weight, None
        return self.loss(pred, target, weight=weight, **kwargs)


@MODELS.register_module()
class ScaleAwareYOLACTProtonet(YOLACTProtonet):
    """``YOLACTProtonet`` whose semantic segmentation branch follows SNIP.

    The instance masks already do (they are cut for the positives of the
    box head, whose assigner is scale-aware). The semantic branch learns a
    ``(num_classes, h, w)`` map of every object's mask; here (Sec. 3.2.1,
    3.3.4, as for anchors):

    1. the targets come from the *valid* objects only
       (``gt_instances.scale_valid``), with mmdet's own rule;
    2. the pixels of an *invalid* object that no valid object covers are
       ignored (weight 0, in every class channel), not background.

    Without ``scale_valid`` (or with every object valid) it is exactly
    ``YOLACTProtonet``; no new parameters (mmdet checkpoints load).

    Example:
        One valid disc and one invalid square in a chip: the disc's
        channel is 1 on the disc, every channel is 0 elsewhere, and the
        square's pixels weigh 0 in the semantic loss.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.loss_segm is not None:
            self.loss_segm = PixelWeightedLoss(self.loss_segm)

    def _get_targets_single(self, mask_preds: Tensor,
                            segm_pred: Optional[Tensor],
                            gt_instances: InstanceData,
                            positive_info: InstanceData) -> tuple:
        """mmdet's targets, the semantic ones from valid objects only; the
        ignored pixels go to ``loss_segm.weight`` for the loss that
        ``loss_by_feat`` computes next."""
        if self.loss_segm is not None:
            self.loss_segm.weight = None
        valid = scale_valid_mask(gt_instances)
        mixed = segm_pred is not None and valid is not None and \
            not bool(valid.all())
        # With invalid objects, mmdet's semantic targets (of every object)
        # are not computed: those of the valid and invalid ones are.
        out = super()._get_targets_single(
            mask_preds, None if mixed else segm_pred, gt_instances,
            positive_info)
        if not mixed:
            return out
        segm_targets = self._segm_targets(mask_preds, segm_pred,
                                          gt_instances[valid])
        invalid = self._segm_targets(mask_preds, segm_pred,
                                     gt_instances[~valid]).amax(0)
        covered = segm_targets.amax(0)
        # 1 where an in-range object is or no object is; 0 on the pixels
        # only out-of-range objects cover.
        weight = 1 - invalid * (1 - covered)
        self.loss_segm.weight = weight.expand_as(segm_pred)
        return out[:2] + (segm_targets, ) + out[3:]

    def _segm_targets(self, mask_preds: Tensor, segm_pred: Tensor,
                      gt_instances: InstanceData) -> Tensor:
        """``(num_classes, h, w)`` semantic targets of ``gt_instances``
        by mmdet's rule (zeros if there are none)."""
        no_positives = InstanceData(
            pos_assigned_gt_inds=torch.zeros(
                0, dtype=torch.long, device=segm_pred.device))
        targets = super()._get_targets_single(mask_preds, segm_pred,
                                              gt_instances, no_positives)[2]
        return torch.zeros_like(segm_pred) if targets is None else targets
