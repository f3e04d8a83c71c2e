# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's label rule for the DETR family (set prediction, Hungarian).

DETR heads match queries to ground truth one-to-one (Hungarian) and push
every unmatched query to background with label weight 1. On a SNIPER chip
that would teach "an out-of-range object is background". The rule here
(one home for DETR, Deformable DETR incl. two-stage, Conditional DETR,
DAB-DETR, DINO):

1. queries are matched (mmdet's own ``HungarianAssigner``) to the *valid*
   boxes only (``gt_instances.scale_valid``), so an invalid box never
   produces a positive;
2. an unmatched query whose predicted box has IoU > ``invalid_iou_thr``
   (default 0.5) with some *invalid* box gets label weight 0: it is
   neither positive nor background (Sec. 3.2.1, 3.3.4: invalid ground
   truth invalidates the predictions on it). It is also left out of the
   negatives count that scales DETR's classification loss.

Without ``scale_valid``, or with every box valid, every method here returns
exactly what mmdet's returns (same calls, same tensors).

Why IoU and not an all-box Hungarian run ("ignore the query that would
match the invalid box"): Hungarian gives an invalid box exactly one query
and would still push that object's other detections to background, i.e.
teach that the out-of-range object is background, which SNIP forbids; and
it always assigns *some* query to the invalid box, even one far from it
early in training. The IoU test is per query, independent of the matching
of the valid boxes, which therefore stays exactly mmdet's. Duplicates on
an invalid object are not suppressed at this scale; SNIP's inference keeps
only detections inside the scale's valid range, which drops them.

DINO's denoising queries are built from the valid boxes only
(``mmsnip.ScaleAwareDINO``) and follow rule 2 too, see
:class:`ScaleAwareDINOHead`.
"""
import copy
import inspect
from typing import Dict, List, Sequence, Tuple

import torch
from mmdet.models.dense_heads import (ConditionalDETRHead, DABDETRHead,
                                      DeformableDETRHead, DETRHead, DINOHead)
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   get_box_tensor)
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import MODELS
from mmsnip.utils.checks import UserInputError, is_number
from ..utils import scale_valid_mask, select_gt

__all__ = [
    'ScaleAwareDETRMixin', 'ScaleAwareDETRHead',
    'ScaleAwareDeformableDETRHead', 'ScaleAwareConditionalDETRHead',
    'ScaleAwareDABDETRHead', 'ScaleAwareDINOHead', 'queries_on_invalid',
    'DN_VALID_ONLY', 'DN_BBOX_PRED'
]

# Default of ``train_cfg.invalid_iou_thr``: a prediction with IoU > 0.5
# with an object is a detection of it under COCO's loosest criterion.
DEFAULT_INVALID_IOU_THR = 0.5


def queries_on_invalid(bbox_pred: Tensor, img_shape: Sequence[int],
                       invalid_bboxes, iou_thr: float) -> Tensor:
    """Which queries' predicted boxes land on an invalid object.

    Args:
        bbox_pred (Tensor): ``(num_queries, 4)`` predicted boxes of one
            image, normalized ``(cx, cy, w, h)`` in ``[0, 1]`` of the image
            (``img_shape``), as DETR heads regress them.
        img_shape (tuple[int, int]): ``(h, w)`` of the network input, the
            frame of ``invalid_bboxes``.
        invalid_bboxes (Tensor | BaseBoxes): ``(k, 4)`` xyxy boxes in
            network-input pixels.
        iou_thr (float): A query with IoU > ``iou_thr`` with some invalid
            box lands on it.

    Returns:
        Tensor: ``(num_queries,)`` bool on the device of ``bbox_pred``.
        IoUs are computed in float32 on detached predictions.

    Example, a 100 x 100 image, invalid box ``[50, 50, 100, 100]``,
    ``iou_thr=0.5``::

        predicted (cx, cy, w, h)     xyxy px            IoU    lands
        (0.75, 0.75, 0.5, 0.5)       [50, 50, 100, 100] 1.00   True
        (0.70, 0.70, 0.4, 0.4)       [50, 50, 90, 90]   0.64   True
        (0.60, 0.60, 0.2, 0.2)       [50, 50, 70, 70]   0.16   False
    """
    invalid = get_box_tensor(invalid_bboxes)
    if not len(bbox_pred) or not len(invalid):
        return torch.zeros(
            len(bbox_pred), dtype=torch.bool, device=bbox_pred.device)
    img_h, img_w = img_shape[:2]
    pred = bbox_cxcywh_to_xyxy(bbox_pred.detach().float())
    pred = pred * pred.new_tensor([img_w, img_h, img_w, img_h])
    ious = bbox_overlaps(invalid.to(pred.device, torch.float32), pred)
    return ious.max(dim=0).values > iou_thr


class ScaleAwareDETRMixin:
    """SNIP's rule for any ``DETRHead`` subclass; put it first in the bases.

    Hooks ``DETRHead._get_targets_single``, which every loss of the
    matching queries goes through: all decoder layers, and the encoder
    proposals of two-stage Deformable DETR and DINO (``loss_by_feat_single``
    -> ``get_targets``). Adds no parameter and no constructor argument, so
    mmdet checkpoints load unchanged.

    The IoU threshold is read from the head's ``train_cfg`` (the
    detector's ``model.train_cfg``) key ``invalid_iou_thr``, default 0.5.

    Example, a 100 x 100 image, valid box A ``[0, 0, 40, 40]``, invalid
    box B ``[50, 50, 100, 100]``, threshold 0.5::

        query  predicted xyxy px     Hungarian (A only)  IoU with B  result
        q0     [2, 2, 42, 42]        A                   0           positive A
        q1     [50, 50, 90, 90]      -                   0.64        weight 0
        q2     [50, 50, 70, 70]      -                   0.16        background
        q3     [0, 0, 20, 20]        -                   0           background

    q3 (a duplicate of A) stays background as in DETR; a query matched to
    a valid box stays positive even if it also overlaps an invalid box
    beyond the threshold (each valid box has exactly one matched query:
    removing it would leave the valid object without a positive).
    """

    def _invalid_iou_thr(self) -> float:
        """``train_cfg.invalid_iou_thr`` (default 0.5), validated."""
        cfg = self.train_cfg or {}
        thr = cfg.get('invalid_iou_thr', DEFAULT_INVALID_IOU_THR)
        if not is_number(thr) or not 0 <= thr <= 1:
            raise UserInputError(
                f'{type(self).__name__}: train_cfg.invalid_iou_thr must be '
                f'a number in [0, 1], got {thr!r}; fix model.train_cfg.'
                f'invalid_iou_thr in the config (default '
                f'{DEFAULT_INVALID_IOU_THR}).')
        return float(thr)

    def _ignore_on_invalid(self, targets: tuple, bbox_pred: Tensor,
                           img_meta: dict, invalid_bboxes) -> tuple:
        """Give label weight 0 to the non-positive queries on an invalid box.

        Args:
            targets (tuple): ``(labels, label_weights, bbox_targets,
                bbox_weights, pos_inds, neg_inds)`` of one image, as
                ``_get_targets_single`` returns them (computed from the
                valid boxes only).
            bbox_pred (Tensor): ``(num_queries, 4)`` normalized cxcywh.
            img_meta (dict): With ``img_shape`` ``(h, w)``.
            invalid_bboxes (Tensor): ``(k, 4)`` xyxy, network-input pixels.

        Returns:
            tuple: The same six items; ``label_weights`` zero and
            ``neg_inds`` without the queries on an invalid box.
        """
        (labels, label_weights, bbox_targets, bbox_weights, pos_inds,
         neg_inds) = targets
        hit = queries_on_invalid(bbox_pred, img_meta['img_shape'],
                                 invalid_bboxes, self._invalid_iou_thr())
        hit = hit.to(label_weights.device)
        hit[pos_inds] = False  # positives of valid boxes stay positive
        label_weights = label_weights.masked_fill(hit, 0)
        neg_inds = neg_inds[~hit[neg_inds]]
        return (labels, label_weights, bbox_targets, bbox_weights, pos_inds,
                neg_inds)

    def _get_targets_single(self, cls_score: Tensor, bbox_pred: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict) -> tuple:
        """DETR targets of one image from its valid boxes; queries on an
        invalid box get label weight 0.

        Args:
            cls_score (Tensor): ``(num_queries, cls_out_channels)`` logits.
            bbox_pred (Tensor): ``(num_queries, 4)`` normalized cxcywh.
            gt_instances (InstanceData): ``bboxes`` ``(n, 4)`` xyxy
                network-input pixels, ``labels`` ``(n,)``, optionally
                ``scale_valid`` ``(n,)`` bool.
            img_meta (dict): With ``img_shape`` ``(h, w)``.

        Returns:
            tuple: ``labels`` ``(num_queries,)`` (``num_classes`` is
            background), ``label_weights`` ``(num_queries,)`` (0 on an
            invalid box), ``bbox_targets`` / ``bbox_weights``
            ``(num_queries, 4)`` normalized cxcywh, ``pos_inds``,
            ``neg_inds`` (queries on an invalid box excluded).
        """
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return super()._get_targets_single(cls_score, bbox_pred,
                                               gt_instances, img_meta)
        # Sec. 3.2.1: valid ground truth assigns the labels...
        targets = super()._get_targets_single(cls_score, bbox_pred,
                                              select_gt(gt_instances, valid),
                                              img_meta)
        # ...predictions on invalid ground truth are excluded.
        return self._ignore_on_invalid(targets, bbox_pred, img_meta,
                                       gt_instances.bboxes[~valid])


def _detr_class_weight(num_classes: int, loss_cls: dict) -> Tuple[dict, float]:
    """What ``DETRHead.__init__`` does to ``loss_cls`` for ``DETRHead``
    itself (it checks ``self.__class__ is DETRHead``, so subclasses skip
    it): a per-class weight vector with ``bg_cls_weight`` on the background
    class. Returns the rewritten ``loss_cls`` and ``bg_cls_weight``."""
    loss_cls = copy.deepcopy(loss_cls)
    class_weight = loss_cls.get('class_weight', None)
    if class_weight is None:
        return loss_cls, 0
    if not isinstance(class_weight, float):
        raise TypeError('ScaleAwareDETRHead: loss_cls.class_weight must be '
                        f'a float (as in DETRHead), got {class_weight!r}.')
    bg_cls_weight = loss_cls.pop('bg_cls_weight', class_weight)
    if not isinstance(bg_cls_weight, float):
        raise TypeError('ScaleAwareDETRHead: loss_cls.bg_cls_weight must be '
                        f'a float (as in DETRHead), got {bg_cls_weight!r}.')
    weights = torch.ones(num_classes + 1) * class_weight
    weights[num_classes] = bg_cls_weight
    loss_cls['class_weight'] = weights
    return loss_cls, bg_cls_weight


# DETRHead's default ``loss_cls``, copied before any build (mmdet rewrites
# its mutable default in place when a DETRHead is built with it).
_DETR_LOSS_CLS = copy.deepcopy(
    inspect.signature(DETRHead.__init__).parameters['loss_cls'].default)


@MODELS.register_module()
class ScaleAwareDETRHead(ScaleAwareDETRMixin, DETRHead):
    """``DETRHead`` with SNIP's rule (see :class:`ScaleAwareDETRMixin`).

    Args:
        *args, **kwargs: ``DETRHead`` arguments. The background class
            weight of ``loss_cls`` (``bg_cls_weight``) is applied as
            ``DETRHead`` does for itself.
    """

    def __init__(self, *args, **kwargs):
        params = dict(
            inspect.signature(DETRHead.__init__).bind(self, *args,
                                                      **kwargs).arguments)
        params.pop('self')
        loss_cls = params.get('loss_cls', _DETR_LOSS_CLS)
        loss_cls, bg_cls_weight = _detr_class_weight(params['num_classes'],
                                                     loss_cls)
        params['loss_cls'] = loss_cls
        super().__init__(**params)
        self.bg_cls_weight = bg_cls_weight


@MODELS.register_module()
class ScaleAwareDeformableDETRHead(ScaleAwareDETRMixin, DeformableDETRHead):
    """``DeformableDETRHead`` (single- and two-stage) with SNIP's rule (see
    :class:`ScaleAwareDETRMixin`); the two-stage encoder proposals follow
    the same rule. Args as ``DeformableDETRHead``."""


@MODELS.register_module()
class ScaleAwareConditionalDETRHead(ScaleAwareDETRMixin, ConditionalDETRHead):
    """``ConditionalDETRHead`` with SNIP's rule (see
    :class:`ScaleAwareDETRMixin`). Args as ``ConditionalDETRHead``."""


@MODELS.register_module()
class ScaleAwareDABDETRHead(ScaleAwareDETRMixin, DABDETRHead):
    """``DABDETRHead`` with SNIP's rule (see :class:`ScaleAwareDETRMixin`).
    Args as ``DABDETRHead``."""


# ``dn_meta`` key set by ``mmsnip.ScaleAwareDINO``: the denoising queries
# were built from the valid boxes only.
DN_VALID_ONLY = 'scale_valid_only'
# ``img_meta`` key through which ``_loss_dn_single`` hands one image's
# denoising box predictions (normalized cxcywh) to ``_get_dn_targets_single``.
DN_BBOX_PRED = 'scale_aware_dn_bbox_pred'


def _any_invalid(batch_gt_instances: List[InstanceData]) -> bool:
    for gt_instances in batch_gt_instances:
        valid = scale_valid_mask(gt_instances)
        if valid is not None and not bool(valid.all()):
            return True
    return False


@MODELS.register_module()
class ScaleAwareDINOHead(ScaleAwareDETRMixin, DINOHead):
    """``DINOHead`` with SNIP's rule on every query DINO trains.

    - Matching queries of every decoder layer and the top-k encoder
      proposals: :class:`ScaleAwareDETRMixin` (Hungarian on valid boxes;
      unmatched queries with IoU > ``train_cfg.invalid_iou_thr`` (0.5) with
      an invalid box get label weight 0).
    - Denoising queries: ``mmsnip.ScaleAwareDINO`` builds them from the
      valid boxes only, so the denoising targets here are DINO's own,
      computed from the valid boxes in the same order (positive query ``g *
      group_size + i`` reconstructs the i-th *valid* box of group g). An
      invalid box therefore has no denoising query; a non-positive
      denoising query (a "negative" noised far from its valid box, or
      padding) whose predicted box has IoU > the threshold with an invalid
      box gets label weight 0, as a matching query would.

    Must be used with ``mmsnip.ScaleAwareDINO`` (``model.type``): with
    mmdet's ``DINO`` the denoising queries would include the invalid boxes
    and no longer line up with these targets, so a batch with an invalid
    box raises. Without ``scale_valid``, or with every box valid, the
    losses are exactly ``DINOHead``'s. Args as ``DINOHead``.
    """

    def _loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor,
                        batch_gt_instances: List[InstanceData],
                        batch_img_metas: List[dict],
                        dn_meta: Dict[str, int]) -> Tuple[Tensor]:
        """``DINOHead._loss_dn_single``; with invalid boxes, each image's
        ``dn_bbox_preds`` ``(num_denoising_queries, 4)`` (normalized
        cxcywh) ride along in its ``img_meta`` to the target computation.
        """
        if not _any_invalid(batch_gt_instances):
            return super()._loss_dn_single(dn_cls_scores, dn_bbox_preds,
                                           batch_gt_instances, batch_img_metas,
                                           dn_meta)
        if not dn_meta.get(DN_VALID_ONLY, False):
            raise RuntimeError(
                'ScaleAwareDINOHead got boxes with scale_valid=False but '
                'the denoising queries were not built from the valid boxes '
                'only: set model.type to mmsnip.ScaleAwareDINO (not DINO) '
                'in the config.')
        batch_img_metas = [
            dict(img_meta, **{DN_BBOX_PRED: bbox_pred.detach()})
            for img_meta, bbox_pred in zip(batch_img_metas, dn_bbox_preds)
        ]
        return super()._loss_dn_single(dn_cls_scores, dn_bbox_preds,
                                       batch_gt_instances, batch_img_metas,
                                       dn_meta)

    def _get_dn_targets_single(self, gt_instances: InstanceData,
                               img_meta: dict, dn_meta: Dict[str,
                                                             int]) -> tuple:
        """Denoising targets of one image from its valid boxes; non-positive
        denoising queries on an invalid box get label weight 0.

        Args:
            gt_instances (InstanceData): ``bboxes`` ``(n, 4)`` xyxy
                network-input pixels, ``labels`` ``(n,)``, optionally
                ``scale_valid`` ``(n,)`` bool.
            img_meta (dict): With ``img_shape``; with invalid boxes also
                this image's denoising box predictions (set by
                ``_loss_dn_single``).
            dn_meta (dict): ``num_denoising_queries``,
                ``num_denoising_groups`` (counted on the valid boxes).

        Returns:
            tuple: As ``DINOHead._get_dn_targets_single``: ``labels`` and
            ``label_weights`` ``(num_denoising_queries,)``, ``bbox_targets``
            and ``bbox_weights`` ``(num_denoising_queries, 4)``,
            ``pos_inds``, ``neg_inds``.
        """
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return super()._get_dn_targets_single(gt_instances, img_meta,
                                                  dn_meta)
        bbox_pred = img_meta.get(DN_BBOX_PRED)
        if bbox_pred is None:
            raise RuntimeError(
                'ScaleAwareDINOHead._get_dn_targets_single needs the '
                'denoising box predictions of the image; call it through '
                '_loss_dn_single (loss_by_feat / loss).')
        targets = super()._get_dn_targets_single(
            select_gt(gt_instances, valid), img_meta, dn_meta)
        return self._ignore_on_invalid(targets, bbox_pred, img_meta,
                                       gt_instances.bboxes[~valid])
