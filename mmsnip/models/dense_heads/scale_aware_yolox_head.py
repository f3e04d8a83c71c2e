# Copyright (c) mmsnip contributors. All rights reserved.
"""YOLOX whose objectness loss leaves ignored priors out (SNIP)."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import YOLOXHead
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import MODELS
from ..utils import IGNORE
from .scale_aware_fcos_head import SkipIgnoredLoss


@MODELS.register_module()
class ScaleAwareYOLOXHead(YOLOXHead):
    """``YOLOXHead`` that gives ignored priors no objectness loss.

    ``YOLOXHead`` trains objectness on *every* prior (target 1 for the
    positives, 0 for all others, no weights), so a prior that the assigner
    ignores (``gt_inds == -1``, e.g. one that only an out-of-range object
    would take under :class:`~mmsnip.models.ScaleValidAssigner`) would be
    pushed to background. Here its objectness target is -1 and
    ``loss_obj`` is wrapped in :class:`SkipIgnoredLoss`, which leaves those
    rows out: such a prior is neither positive nor negative. Class, box and
    L1 losses are on positives only, as in YOLOX.

    Same constructor, layers and parameters as ``YOLOXHead`` (the loss
    wrapper holds no parameters), so YOLOX checkpoints load unchanged. With
    no ignored prior every loss equals ``YOLOXHead``'s. Pair it with
    ``train_cfg.assigner = dict(type='mmsnip.ScaleValidAssigner',
    assigner=dict(type='SimOTAAssigner', center_radius=2.5))``.

    Args:
        *args, **kwargs: ``YOLOXHead`` arguments.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_obj = SkipIgnoredLoss(self.loss_obj)

    def _get_targets_single(
            self,
            priors: Tensor,
            cls_preds: Tensor,
            decoded_bboxes: Tensor,
            objectness: Tensor,
            gt_instances: InstanceData,
            img_meta: dict,
            gt_instances_ignore: Optional[InstanceData] = None) -> tuple:
        """``YOLOXHead._get_targets_single`` (mmdet 3.3) with objectness
        target -1 for the priors the assigner ignores.

        Args:
            priors (Tensor): ``(n, 4)`` ``(cx, cy, stride_w, stride_h)``,
                network-input pixels (grid corners, no 0.5 offset).
            cls_preds (Tensor): ``(n, num_classes)`` logits.
            decoded_bboxes (Tensor): ``(n, 4)`` xyxy.
            objectness (Tensor): ``(n,)`` logits.
            gt_instances (InstanceData): ``bboxes``, ``labels`` (and
                ``scale_valid``, read by the assigner).
            img_meta (dict): Meta information of the image.
            gt_instances_ignore (InstanceData, optional): Crowd boxes.

        Returns:
            tuple: ``foreground_mask`` ``(n,)`` bool, ``cls_target``
            ``(p, num_classes)``, ``obj_target`` ``(n, 1)`` (1 positive, 0
            negative, -1 ignored), ``bbox_target`` ``(p, 4)``,
            ``l1_target`` ``(p, 4)``, ``num_pos`` ``p``.
        """
        if len(gt_instances) == 0:
            return super()._get_targets_single(priors, cls_preds,
                                               decoded_bboxes, objectness,
                                               gt_instances, img_meta,
                                               gt_instances_ignore)
        # From here to the marked line: YOLOXHead's code, unchanged.
        offset_priors = torch.cat(
            [priors[:, :2] + priors[:, 2:] * 0.5, priors[:, 2:]], dim=-1)
        scores = cls_preds.sigmoid() * objectness.unsqueeze(1).sigmoid()
        pred_instances = InstanceData(
            bboxes=decoded_bboxes, scores=scores.sqrt_(), priors=offset_priors)
        assign_result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=gt_instances,
            gt_instances_ignore=gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, pred_instances,
                                              gt_instances)
        pos_inds = sampling_result.pos_inds
        num_pos_per_img = pos_inds.size(0)
        pos_ious = assign_result.max_overlaps[pos_inds]
        cls_target = F.one_hot(sampling_result.pos_gt_labels,
                               self.num_classes) * pos_ious.unsqueeze(-1)
        obj_target = torch.zeros_like(objectness).unsqueeze(-1)
        obj_target[pos_inds] = 1
        bbox_target = sampling_result.pos_gt_bboxes
        l1_target = cls_preds.new_zeros((num_pos_per_img, 4))
        if self.use_l1:
            l1_target = self._get_l1_target(l1_target, bbox_target,
                                            priors[pos_inds])
        foreground_mask = torch.zeros_like(objectness).to(torch.bool)
        foreground_mask[pos_inds] = 1
        # SNIP (Sec. 3.2.1): ignored priors are not background either.
        ignored = (assign_result.gt_inds == IGNORE).to(obj_target.device)
        obj_target[ignored] = IGNORE
        return (foreground_mask, cls_target, obj_target, bbox_target,
                l1_target, num_pos_per_img)
