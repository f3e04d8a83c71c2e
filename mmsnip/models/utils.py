# Copyright (c) mmsnip contributors. All rights reserved.
"""The SNIP validity contract between the chip transforms and the models.

A training sample of a chip carries, next to mmdet's usual ground truth
(``gt_instances.bboxes`` xyxy in network-input pixels, ``.labels``):

- ``gt_instances.scale_valid``: ``(N,)`` bool tensor, True iff the
  object's size at this chip's scale lies in the scale's valid range
  (decided by the transform on the *unclipped* scaled box);
- ``gt_instances.metainfo['valid_range']``: ``(min, max)`` sqrt(area) in
  network-input pixels for this chip's scale (``max`` may be ``inf``).

Both are optional: without ``scale_valid`` every box is valid, without
``valid_range`` proposals are not filtered by size, so plain MMDetection
data trains exactly as with mmdet's own modules. The functions below are
the only readers of the contract.
"""
import math
from typing import Optional, Tuple

import torch
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.chips import box_sizes, in_range

# mmdet's AssignResult convention: gt_inds / labels of an ignored prior
# (neither positive nor negative, no gradient).
IGNORE = -1
# Names of the contract's fields.
SCALE_VALID = 'scale_valid'
VALID_RANGE = 'valid_range'


def scale_valid_mask(gt_instances: InstanceData) -> Optional[Tensor]:
    """The per-box scale validity of a sample, if it has one.

    Args:
        gt_instances (InstanceData): Ground truth of one sample.

    Returns:
        Tensor | None: ``(N,)`` bool on the device of
        ``gt_instances.bboxes``, or None if ``scale_valid`` is absent
        (every box valid).
    """
    if SCALE_VALID not in gt_instances.keys():
        return None
    valid = gt_instances.get(SCALE_VALID)
    device = get_box_tensor(gt_instances.bboxes).device
    return torch.as_tensor(valid, device=device).to(torch.bool).reshape(-1)


def valid_range_of(
        gt_instances: InstanceData) -> Optional[Tuple[float, float]]:
    """The chip scale's valid range (network-input pixels), if known.

    Args:
        gt_instances (InstanceData): Ground truth of one sample.

    Returns:
        tuple[float, float] | None: ``(min, max)`` sqrt(area); a ``None``
        max reads as ``inf``. None if ``valid_range`` is absent.
    """
    valid_range = gt_instances.metainfo.get(VALID_RANGE)
    if valid_range is None:
        return None
    lo, hi = valid_range
    return float(lo), math.inf if hi is None else float(hi)


def boxes_in_range(boxes, valid_range: Tuple[float, float]) -> Tensor:
    """Which boxes have a size strictly inside ``valid_range``.

    The size rule is :func:`mmsnip.chips.in_range` on
    :func:`mmsnip.chips.box_sizes` (``lo < sqrt(w * h) < hi``), the same
    rule the chip transforms use for ``scale_valid``, evaluated in float64
    so that fp16 boxes under AMP (whose ``w * h`` overflows above 256 px)
    are measured correctly.

    Args:
        boxes (Tensor | BaseBoxes): ``(N, 4)`` xyxy, network-input pixels.
        valid_range (tuple[float, float]): ``(lo, hi)``, same frame.

    Returns:
        Tensor: ``(N,)`` bool on the device of ``boxes``.
    """
    boxes = get_box_tensor(boxes)
    sizes = box_sizes(boxes.detach().to('cpu', torch.float64).numpy())
    return torch.from_numpy(in_range(sizes, valid_range)).to(boxes.device)


def select_gt(gt_instances: InstanceData, keep: Tensor) -> InstanceData:
    """The ``bboxes`` and ``labels`` of the kept boxes, as a new
    ``InstanceData`` (what assigners and point heads read; masks and other
    fields are left out on purpose, they are not needed to assign)."""
    return InstanceData(
        bboxes=gt_instances.bboxes[keep], labels=gt_instances.labels[keep])
