# Copyright (c) mmsnip contributors. All rights reserved.
"""The FocusPixel head of AutoFocus (Sec. 3.4.1, Fig. 11)."""
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmsnip.chips import FOCUS, IGNORE, FocusLabelRule, focus_pixel_labels
from mmsnip.registry import MODELS
from mmsnip.utils.checks import UserInputError, is_integer


@MODELS.register_module()
class FocusPixelHead(BaseModule):
    """Predicts FocusPixels: where small objects are, on a stride-s map.

    ``num_convs=2`` (default, Sec. 3.4.1 "two convolutional layers (3x3
    and 1x1) with ReLU" then a binary softmax classifier; the original
    code's head too): 3x3 conv + ReLU, 1x1 conv + ReLU, 1x1 conv to 2
    classes (background, focus). ``num_convs=1`` (mmsnip's earlier head,
    kept by the demo and aerial configs so their checkpoints load): 3x3
    conv + ReLU, 1x1 conv to 2 classes. Parameter names: ``conv`` (3x3),
    ``conv_1x1`` (the hidden 1x1, ``num_convs=2`` only), ``cls``. Trained
    with softmax cross-entropy on the labels of
    :func:`mmsnip.chips.focus_pixel_labels` computed from the chip's boxes
    (1 for objects of size ``(a, b)``, -1 ignored for ``< a`` and
    ``(b, c)``, 0 elsewhere; sizes in network-input pixels). Crowd boxes
    (``ignored_instances``) mark their cells as ignored unless a small
    object makes them FocusPixels. The paper applies no re-weighting: the
    classes are about 1:10 on 512 px chips.

    Args:
        in_channels (int): Channels of the input feature map.
        feat_channels (int): Channels of the hidden convs (256).
        stride (int): Stride of the input feature map (16).
        thresholds (Sequence[float]): ``(a, b, c)`` = (5, 64, 90),
            ``0 <= a < b <= c``, CHIP pixels. With ``stride`` they form
            :attr:`rule` (:class:`~mmsnip.chips.FocusLabelRule`, validated
            at build time), which the oracle FocusChips of
            ``AutoFocusTTAModel`` read too: one home for the label rule.
        boundary_ignore (bool): Sizes exactly ``a`` or ``b`` are ignored
            (the paper's text, default) rather than background (mmsnip's
            earlier rule); part of :attr:`rule`.
        labels_from (str): ``'whole'`` (default, the paper: "labels are
            computed from the re-scaled ground-truth box"): a box cut by the
            chip border is classified by the size of the whole box
            (``gt_instances.box_sizes`` from ``CropChip``; without it, the
            boxes' own sizes); ``'clipped'``: by the size of its part inside
            the chip (mmsnip's earlier rule, kept by the demo and aerial
            configs). The cells labelled are those the box covers in the
            chip either way.
        num_convs (int): Hidden conv layers before the classifier: 2
            (3x3 + 1x1, default) or 1 (3x3 only).
        loss_weight (float): Weight of the loss.

    Example:
        ``in_channels=64, feat_channels=64``: ``num_convs=2`` has
        ``(64*64*9 + 64) + (64*64 + 64) + (64*2 + 2) = 41218`` parameters,
        ``num_convs=1`` ``36928 + 130 = 37058``; both map ``(B, 64, H, W)`` to
        ``(B, 2, H, W)``.
    """

    def __init__(self,
                 in_channels: int = 256,
                 feat_channels: int = 256,
                 stride: int = 16,
                 thresholds: Sequence[float] = (5, 64, 90),
                 boundary_ignore: bool = True,
                 labels_from: str = 'whole',
                 num_convs: int = 2,
                 loss_weight: float = 1.0,
                 init_cfg=dict(
                     type='Normal', layer='Conv2d', std=0.01)):
        super().__init__(init_cfg=init_cfg)
        if len(tuple(thresholds)) != 3:
            raise UserInputError(
                'FocusPixelHead.thresholds must be (a, b, c), got '
                f'{thresholds!r}')
        if labels_from not in ('whole', 'clipped'):
            raise UserInputError("FocusPixelHead.labels_from must be 'whole' "
                                 f"or 'clipped', got {labels_from!r}")
        self.labels_from = labels_from
        if not is_integer(num_convs) or num_convs not in (1, 2):
            raise UserInputError(
                'FocusPixelHead.num_convs must be 1 (3x3) or 2 (3x3 + 1x1, '
                f'the paper), got {num_convs!r}')
        self.rule = FocusLabelRule(*thresholds, stride=stride,
                                   boundary_ignore=boundary_ignore,
                                   where='FocusPixelHead.thresholds')
        self.stride = self.rule.stride
        self.thresholds = self.rule.thresholds
        self.loss_weight = loss_weight
        self.num_convs = num_convs
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        if num_convs == 2:
            self.conv_1x1 = nn.Conv2d(feat_channels, feat_channels, 1)
        self.cls = nn.Conv2d(feat_channels, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` features -> ``(B, 2, H, W)`` logits."""
        x = F.relu(self.conv(x))
        if self.num_convs == 2:
            x = F.relu(self.conv_1x1(x))
        return self.cls(x)

    def predict(self, x: Tensor) -> Tensor:
        """``(B, H, W)`` FocusPixel probabilities."""
        return self.forward(x).float().softmax(dim=1)[:, 1]

    def get_targets(self, data_samples: List[DetDataSample],
                    map_hw) -> Tensor:
        """``(B, H, W)`` long labels in {-1, 0, 1} for a map of ``map_hw``."""
        h, w = map_hw
        canvas = (h * self.stride, w * self.stride)
        out = []
        for sample in data_samples:
            gt = sample.gt_instances
            boxes = get_box_tensor(gt.bboxes)
            sizes = None
            if self.labels_from == 'whole' and 'box_sizes' in gt.keys():
                sizes = gt.box_sizes.detach().double().cpu().numpy()
            labels = focus_pixel_labels(
                boxes.detach().float().cpu().numpy(), canvas, self.stride,
                *self.thresholds, boundary_ignore=self.rule.boundary_ignore,
                sizes=sizes)
            ignored = sample.get('ignored_instances', None)
            if ignored is not None and len(ignored) > 0:
                crowd = get_box_tensor(ignored.bboxes).detach().float()
                crowd_cells = _cells_covered(crowd.cpu().numpy(), canvas,
                                             self.stride)
                labels = np.where(crowd_cells & (labels != FOCUS), IGNORE,
                                  labels)
            out.append(torch.from_numpy(labels[:h, :w].astype(np.int64)))
        return torch.stack(out)

    def loss(self, x: Tensor, data_samples: List[DetDataSample]) -> dict:
        """``dict(loss_focus=...)``; cells labelled -1 are ignored."""
        logits = self.forward(x)
        targets = self.get_targets(data_samples,
                                   logits.shape[-2:]).to(logits.device)
        loss = F.cross_entropy(
            logits.float(), targets, ignore_index=IGNORE, reduction='sum')
        num = (targets != IGNORE).sum().clamp(min=1)
        return dict(loss_focus=self.loss_weight * loss / num)


def _cells_covered(boxes: np.ndarray, canvas_hw, stride: int) -> np.ndarray:
    """Cells of a stride grid any box overlaps (bool ``(H', W')``): the
    FocusPixel rule with every size counted as focus."""
    labels = focus_pixel_labels(boxes, canvas_hw, stride, a=0, b=np.inf,
                                c=np.inf)
    return labels == FOCUS
