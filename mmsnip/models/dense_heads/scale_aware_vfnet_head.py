# Copyright (c) mmsnip contributors. All rights reserved.
"""VarifocalNet whose classification loss leaves ignored points out (SNIP)."""
from typing import List

import torch
from mmdet.models.dense_heads import VFNetHead
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from torch import Tensor

from mmsnip.registry import MODELS
from mmsnip.utils.checks import UserInputError


@MODELS.register_module()
class ScaleAwareVFNetHead(VFNetHead):
    """``VFNetHead`` that gives ignored points no classification loss.

    VarifocalNet assigns with ``ATSSAssigner`` (``use_atss=True``), whose
    ignored points (``gt_inds == -1``, e.g. the ones that only an
    out-of-range object would take under
    :class:`~mmsnip.models.ScaleValidAssigner`) get label weight 0. But
    with ``use_vfl=True`` (the default) ``VFNetHead.loss_by_feat`` calls the
    varifocal loss on *every* point with no weight, so they would be
    trained as background. Here the varifocal loss sees only the points
    that are positive or negative (label weight > 0 or a positive label).
    Box losses are on positives only, as in VFNet; with ``use_vfl=False``
    the focal loss already takes the label weights and nothing changes.

    Same constructor and parameters as ``VFNetHead`` (VFNet checkpoints
    load unchanged); with no ignored point every loss equals
    ``VFNetHead``'s.

    Args:
        *args, **kwargs: ``VFNetHead`` arguments. ``use_atss`` must be True:
            with False VFNet assigns with FCOS's rule, not with the
            assigner, and scale validity would be ignored silently.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_atss:
            raise UserInputError(
                'ScaleAwareVFNetHead: use_atss=False assigns labels with '
                "FCOS's rule, which does not read gt_instances.scale_valid; "
                'set use_atss=True (the VFNet default) so that the '
                'ScaleValidAssigner in train_cfg.assigner assigns.')

    def loss_by_feat(
            self,
            cls_scores: List[Tensor],
            bbox_preds: List[Tensor],
            bbox_preds_refine: List[Tensor],
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """``VFNetHead.loss_by_feat`` (mmdet 3.3); only the varifocal
        loss's rows change (marked SNIP below).

        Args:
            cls_scores (list[Tensor]): Per level ``(N, C, H, W)`` logits.
            bbox_preds (list[Tensor]): Per level ``(N, 4, H, W)`` distances
                (l, t, r, b), network-input pixels / stride.
            bbox_preds_refine (list[Tensor]): Per level ``(N, 4, H, W)``
                refined distances.
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels``
                (and ``scale_valid``, read by the assigner).
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore (list[InstanceData], optional): Crowd
                boxes.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``,
            ``loss_bbox_rf``.
        """
        assert len(cls_scores) == len(bbox_preds) == len(bbox_preds_refine)
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        all_level_points = self.fcos_prior_generator.grid_priors(
            featmap_sizes, bbox_preds[0].dtype, bbox_preds[0].device)
        labels, label_weights, bbox_targets, bbox_weights = self.get_targets(
            cls_scores,
            all_level_points,
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore=batch_gt_instances_ignore)

        num_imgs = cls_scores[0].size(0)
        flatten_cls_scores = torch.cat([
            cls_score.permute(0, 2, 3,
                              1).reshape(-1,
                                         self.cls_out_channels).contiguous()
            for cls_score in cls_scores
        ])
        flatten_bbox_preds = torch.cat([
            bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4).contiguous()
            for bbox_pred in bbox_preds
        ])
        flatten_bbox_preds_refine = torch.cat([
            bbox_pred_refine.permute(0, 2, 3, 1).reshape(-1, 4).contiguous()
            for bbox_pred_refine in bbox_preds_refine
        ])
        flatten_labels = torch.cat(labels)
        flatten_bbox_targets = torch.cat(bbox_targets)
        flatten_points = torch.cat(
            [points.repeat(num_imgs, 1) for points in all_level_points])

        bg_class_ind = self.num_classes
        pos_inds = torch.where(((flatten_labels >= 0)
                                & (flatten_labels < bg_class_ind)) > 0)[0]
        num_pos = len(pos_inds)

        pos_bbox_preds = flatten_bbox_preds[pos_inds]
        pos_bbox_preds_refine = flatten_bbox_preds_refine[pos_inds]
        pos_labels = flatten_labels[pos_inds]

        if self.sync_num_pos:
            num_pos_avg_per_gpu = reduce_mean(
                pos_inds.new_tensor(num_pos).float()).item()
            num_pos_avg_per_gpu = max(num_pos_avg_per_gpu, 1.0)
        else:
            num_pos_avg_per_gpu = num_pos

        pos_bbox_targets = flatten_bbox_targets[pos_inds]
        pos_points = flatten_points[pos_inds]

        pos_decoded_bbox_preds = self.bbox_coder.decode(
            pos_points, pos_bbox_preds)
        pos_decoded_target_preds = self.bbox_coder.decode(
            pos_points, pos_bbox_targets)
        iou_targets_ini = bbox_overlaps(
            pos_decoded_bbox_preds,
            pos_decoded_target_preds.detach(),
            is_aligned=True).clamp(min=1e-6)
        bbox_weights_ini = iou_targets_ini.clone().detach()
        bbox_avg_factor_ini = reduce_mean(
            bbox_weights_ini.sum()).clamp_(min=1).item()

        pos_decoded_bbox_preds_refine = \
            self.bbox_coder.decode(pos_points, pos_bbox_preds_refine)
        iou_targets_rf = bbox_overlaps(
            pos_decoded_bbox_preds_refine,
            pos_decoded_target_preds.detach(),
            is_aligned=True).clamp(min=1e-6)
        bbox_weights_rf = iou_targets_rf.clone().detach()
        bbox_avg_factor_rf = reduce_mean(
            bbox_weights_rf.sum()).clamp_(min=1).item()

        if num_pos > 0:
            loss_bbox = self.loss_bbox(
                pos_decoded_bbox_preds,
                pos_decoded_target_preds.detach(),
                weight=bbox_weights_ini,
                avg_factor=bbox_avg_factor_ini)

            loss_bbox_refine = self.loss_bbox_refine(
                pos_decoded_bbox_preds_refine,
                pos_decoded_target_preds.detach(),
                weight=bbox_weights_rf,
                avg_factor=bbox_avg_factor_rf)

            if self.use_vfl:
                pos_ious = iou_targets_rf.clone().detach()
                cls_iou_targets = torch.zeros_like(flatten_cls_scores)
                cls_iou_targets[pos_inds, pos_labels] = pos_ious
        else:
            loss_bbox = pos_bbox_preds.sum() * 0
            loss_bbox_refine = pos_bbox_preds_refine.sum() * 0
            if self.use_vfl:
                cls_iou_targets = torch.zeros_like(flatten_cls_scores)

        if self.use_vfl:
            # SNIP (Sec. 3.2.1): ignored points (label weight 0, not
            # positive) are neither positives nor background.
            keep = (label_weights > 0) | (flatten_labels != bg_class_ind)
            loss_cls = self.loss_cls(
                flatten_cls_scores[keep],
                cls_iou_targets[keep],
                avg_factor=num_pos_avg_per_gpu)
        else:
            loss_cls = self.loss_cls(
                flatten_cls_scores,
                flatten_labels,
                weight=label_weights,
                avg_factor=num_pos_avg_per_gpu)

        return dict(
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            loss_bbox_rf=loss_bbox_refine)
