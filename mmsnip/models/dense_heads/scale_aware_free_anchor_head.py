# Copyright (c) mmsnip contributors. All rights reserved.
"""FreeAnchor with SNIP's label rule in its anchor bags."""
from mmdet.models.dense_heads import FreeAnchorRetinaHead
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import MODELS
from ..utils import scale_valid_mask


@MODELS.register_module()
class ScaleAwareFreeAnchorRetinaHead(FreeAnchorRetinaHead):
    """``FreeAnchorRetinaHead`` whose bags follow SNIP (Sec. 3.2.1, 3.3.4).

    FreeAnchor never calls its assigner: its loss builds, per object, a bag
    of the ``pre_anchor_topk`` anchors of highest IoU (the positive bag
    loss), and weighs every anchor's background loss by ``1 - P{anchor
    belongs to some object}`` (the negative bag loss). Here:

    1. only *valid* objects (``gt_instances.scale_valid``) get a positive
       bag (and count in its normaliser);
    2. the probability that an anchor belongs to an object still covers
       *every* object, so an anchor on an invalid one is not pushed to
       background (FreeAnchor's soft form of "ignored").

    Without ``scale_valid`` (or with every object valid) it is exactly
    ``FreeAnchorRetinaHead``; no new parameters (checkpoints load).
    """

    #: It holds an assigner but never calls it (FreeAnchor's matching is
    #: its own): ``SnipLabelCheckHook`` does not expect a call.
    skips_assigner = True

    def positive_loss_single(self, cls_prob: Tensor, bbox_pred: Tensor,
                             flat_anchors: Tensor,
                             gt_instances: InstanceData) -> tuple:
        """``(box_prob, positive_loss, num_pos)`` as mmdet's: ``box_prob``
        from all objects, the positive bags of the valid ones."""
        valid = scale_valid_mask(gt_instances)
        box_prob, positive_loss, num_pos = super().positive_loss_single(
            cls_prob, bbox_pred, flat_anchors, gt_instances)
        if valid is None or bool(valid.all()):
            return box_prob, positive_loss, num_pos
        _, positive_loss, num_pos = super().positive_loss_single(
            cls_prob, bbox_pred, flat_anchors, gt_instances[valid])
        return box_prob, positive_loss, num_pos
