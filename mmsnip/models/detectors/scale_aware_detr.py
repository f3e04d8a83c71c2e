# Copyright (c) mmsnip contributors. All rights reserved.
"""Which DETR-family modules follow SNIP's label rule."""
from mmdet.models.dense_heads import DETRHead, DINOHead
from mmdet.models.detectors import DINO, DetectionTransformer
from torch import nn

from ..dense_heads.scale_aware_detr_head import (
    ScaleAwareConditionalDETRHead, ScaleAwareDABDETRHead, ScaleAwareDETRHead,
    ScaleAwareDETRMixin, ScaleAwareDeformableDETRHead, ScaleAwareDINOHead)
from .scale_aware_dino import ScaleAwareDINO

# mmdet's DETR-family bases: a detector or head of one of these types
# trains with Hungarian matching and needs the scale-aware classes below.
DETR_FAMILY = (DetectionTransformer, DETRHead)
# The scale-aware classes (mmdet class -> mmsnip class):
#   DETRHead -> ScaleAwareDETRHead, DeformableDETRHead ->
#   ScaleAwareDeformableDETRHead, ConditionalDETRHead ->
#   ScaleAwareConditionalDETRHead, DABDETRHead -> ScaleAwareDABDETRHead,
#   DINOHead -> ScaleAwareDINOHead, DINO (detector) -> ScaleAwareDINO.
SCALE_AWARE_DETR_TYPES = (ScaleAwareDETRHead, ScaleAwareDeformableDETRHead,
                          ScaleAwareConditionalDETRHead, ScaleAwareDABDETRHead,
                          ScaleAwareDINOHead, ScaleAwareDINO)


def is_scale_aware_detr(module: nn.Module) -> bool:
    """Whether a DETR-family detector or head follows SNIP's label rule.

    - a head (``DETRHead`` subclass): it is one of mmsnip's scale-aware
      heads, and a ``DINOHead`` subclass must be ``ScaleAwareDINOHead``
      (mmdet's ``DDQDETRHead``, ``GroundingDINOHead``... are not);
    - a detector (``DetectionTransformer`` subclass): its ``bbox_head`` is
      scale-aware, and a ``DINO`` subclass must be ``ScaleAwareDINO``
      (whose denoising queries see the valid boxes only).

    Args:
        module (nn.Module): A built detector or head.

    Returns:
        bool: True iff scale-aware.

    Raises:
        TypeError: ``module`` is not a DETR-family module (check
            ``isinstance(module, DETR_FAMILY)`` first).
    """
    if isinstance(module, DetectionTransformer):
        if isinstance(module, DINO) and not isinstance(module, ScaleAwareDINO):
            return False
        return is_scale_aware_detr(module.bbox_head)
    if isinstance(module, DETRHead):
        if isinstance(module, DINOHead):
            return isinstance(module, ScaleAwareDINOHead)
        return isinstance(module, ScaleAwareDETRMixin)
    raise TypeError(
        f'is_scale_aware_detr: {type(module).__name__} is not a DETR-family '
        'module (mmdet DetectionTransformer or DETRHead subclass).')
