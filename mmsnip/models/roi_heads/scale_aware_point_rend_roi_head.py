# Copyright (c) mmsnip contributors. All rights reserved.
"""PointRend's RoI head for batches without a positive RoI."""
from typing import List, Tuple

from mmdet.models.roi_heads import PointRendRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.utils import InstanceList
from torch import Tensor

from mmsnip.registry import MODELS


@MODELS.register_module()
class ScaleAwarePointRendRoIHead(PointRendRoIHead):
    """``PointRendRoIHead`` that trains on batches with no positive RoI.

    Under SNIP's rule an object outside its chip scale's valid range gives
    no positive, so a batch of chips without a valid object (SNIPER's
    negative chips, or chips whose objects are all out of range) has no
    positive RoI. mmdet's mask head gives a zero loss then; PointRend's
    point loss stops on ``assert rois.shape[0] > 0``. Here ``loss_point``
    is 0 for such a batch, connected to every parameter of the point head
    (zero gradients, as distributed training needs). Batches with a
    positive RoI train exactly as ``PointRendRoIHead``. No new parameters:
    checkpoints load unchanged.
    """

    def _mask_point_loss(self, x: Tuple[Tensor],
                         sampling_results: List[SamplingResult],
                         mask_preds: Tensor,
                         batch_gt_instances: InstanceList) -> dict:
        if any(len(res.pos_bboxes) for res in sampling_results):
            return super()._mask_point_loss(x, sampling_results, mask_preds,
                                            batch_gt_instances)
        zero = mask_preds.sum() * 0.0
        for param in self.point_head.parameters():
            zero = zero + param.sum() * 0.0
        return dict(loss_point=zero)
