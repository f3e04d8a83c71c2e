# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus coarse-to-fine inference (Sec. 3.4, Algorithm 2, Fig. 11)."""
import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.ops import batched_nms
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.config import ConfigDict
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.chips import (ScaleSpec, focus_chips, focus_stack_keep_mask,
                          merge_overlapping, oracle_focus_chips)
from mmsnip.registry import MODELS


@dataclasses.dataclass(frozen=True)
class FocusScale:
    """A scale of the cascade and the FocusChip settings it hands on.

    ``threshold``/``dilation``/``min_size`` (``t``, ``d``, ``k``) turn this
    scale's FocusPixel map into the chips of the NEXT scale; ``min_size``
    is in the next scale's pixels. The last scale needs none.
    """
    spec: ScaleSpec
    threshold: float = 0.5
    dilation: int = 3
    min_size: float = 256


def crop_resize(image: Tensor, box: np.ndarray, factor: float):
    """Cut ``box`` out of an image and resize the crop, on its device.

    Args:
        image (Tensor): ``(C, H, W)`` at ORIGINAL resolution.
        box (np.ndarray): ``(4,)`` xyxy in ORIGINAL pixels; the window cut
            is the box grown to whole pixels.
        factor (float): The scale's factor.

    Returns:
        tuple: the ``(C, h, w)`` float crop (bilinear, rounded to the uint8
        grid like the OpenCV resize of a test pipeline), the window's
        top-left corner ``(x, y)`` and the exact factors ``(fx, fy)``.
    """
    x1, y1 = (int(np.floor(v)) for v in box[:2])
    x2, y2 = (int(np.ceil(v)) for v in box[2:])
    crop = image[:, y1:y2, x1:x2].float()[None]
    out_h = max(int(round((y2 - y1) * factor)), 1)
    out_w = max(int(round((x2 - x1) * factor)), 1)
    if (out_h, out_w) != tuple(crop.shape[-2:]):
        crop = F.interpolate(crop, size=(out_h, out_w), mode='bilinear',
                             align_corners=False)
    return (crop[0].round().clamp(0, 255), (x1, y1),
            (out_w / (x2 - x1), out_h / (y2 - y1)))


@MODELS.register_module()
class AutoFocusTTAModel(BaseTTAModel):
    """Coarse-to-fine multi-scale testing with FocusChips.

    The coarsest scale runs on the whole image and predicts FocusPixels;
    Algorithm 2 (:func:`mmsnip.chips.focus_chips`) turns them into
    FocusChips, which alone are cropped from the ORIGINAL image (on its
    device), resized to the next scale and run as one padded batch; their
    FocusPixel maps give the chips of the scale after, and so on. Every
    scale's detections are pruned by focus stacking
    (:func:`mmsnip.chips.focus_stack_keep_mask`: chip-border and valid-range
    rules), projected to image coordinates and merged by ``tta_cfg.nms``.

    Each prediction carries ``pixels_per_scale`` (network-input pixels,
    padding excluded), ``pixels`` and ``chips_per_scale`` in its metainfo.
    With a threshold that selects every pixel, every FocusChip is the whole
    image and the result equals ``SnipTTAModel`` on the same scales.

    The wrapped module must be an ``AutoFocus`` detector. Test pipeline:
    load the image and pack it unresized (``tta_pipeline`` of the AutoFocus
    configs).

    Args:
        scales (list[dict]): Coarse to fine: ``ScaleSpec`` fields plus the
            FocusChip settings ``threshold``, ``dilation``, ``min_size``.
        max_chips (int): At most this many FocusChips per scale (the
            largest first).
        border_tol (float): Focus-stacking border tolerance, ORIGINAL px.
        oracle (bool): Build FocusChips from the ground truth of the test
            sample (``gt_instances``, loaded by the test pipeline) instead
            of the predicted maps: the upper bound of Sec. 4.4.1.
        tta_cfg (dict): ``nms`` and ``max_per_img``.
    """

    def __init__(self,
                 scales: Sequence[dict],
                 max_chips: int = 32,
                 border_tol: float = 1.0,
                 oracle: bool = False,
                 tta_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not hasattr(self.module, 'predict_with_focus'):
            raise TypeError(
                'AutoFocusTTAModel needs an AutoFocus detector (with a '
                f'FocusPixel head), got {type(self.module).__name__}; use '
                'SnipTTAModel for the full pyramid without one')
        self.scales = []
        for cfg in scales:
            cfg = dict(cfg)
            focus = {k: cfg.pop(k) for k in ('threshold', 'dilation',
                                             'min_size') if k in cfg}
            self.scales.append(FocusScale(ScaleSpec.from_dict(cfg), **focus))
        self.max_chips = max_chips
        self.border_tol = border_tol
        self.oracle = oracle
        self.tta_cfg = ConfigDict(tta_cfg or dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))

    def merge_preds(self, data_samples_list):  # pragma: no cover
        raise NotImplementedError('AutoFocusTTAModel runs its own cascade')

    @torch.no_grad()
    def test_step(self, data: dict) -> List[DetDataSample]:
        inputs, samples = data['inputs'], data['data_samples']
        if isinstance(inputs, Tensor):
            inputs = list(inputs)
        return [self.cascade(img, sample)
                for img, sample in zip(inputs, samples)]

    def _detect(self, crops: list, meta: dict):
        """Run the detector on the crops of one scale as one padded batch.

        Returns:
            tuple: per crop ``(boxes, scores, labels)`` with boxes in
            ORIGINAL pixels, and the ``(N, H', W')`` FocusPixel maps.
        """
        data = pack_crops(self.module, crops, meta)
        results, focus = self.module.predict_with_focus(
            data['inputs'], data['data_samples'], rescale=False)
        return detections_in_image(results, crops), focus

    def cascade(self, image: Tensor, sample: DetDataSample) -> DetDataSample:
        """AutoFocus on one image (``(C, H, W)`` at its original size)."""
        meta = sample.metainfo
        img_h, img_w = image.shape[-2:]
        device = next(self.module.parameters()).device
        image = image.to(device)
        chips = np.array([[0, 0, img_w, img_h]], np.float64)
        boxes, scores, labels = [], [], []
        pixels, counts = [], []
        stride = self.module.focus_head.stride
        for s, scale in enumerate(self.scales):
            counts.append(len(chips))
            if not len(chips):
                pixels.append(0)
                continue
            factor = scale.spec.factor_for(img_h, img_w)
            crops = [crop_resize(image, c, factor) for c in chips]
            pixels.append(
                int(sum(c.shape[-2] * c.shape[-1] for c, _, _ in crops)))
            dets, focus = self._detect(crops, meta)
            for chip, (b, sc, lb) in zip(chips, dets):
                keep = focus_stack_keep_mask(
                    b.float().cpu().numpy(), chip, (img_h, img_w),
                    scale.spec.valid_range, self.border_tol)
                keep = torch.from_numpy(keep).to(b.device)
                boxes.append(b[keep])
                scores.append(sc[keep])
                labels.append(lb[keep])
            if s + 1 == len(self.scales):
                break
            if self.oracle:
                chips = self._oracle_chips(sample, factor, scale,
                                           self.scales[s + 1], stride,
                                           (img_h, img_w))
            else:
                chips = self._next_chips(focus, crops, factor, scale,
                                         self.scales[s + 1], stride,
                                         (img_h, img_w))
        result = DetDataSample(metainfo=meta)
        result.set_metainfo(dict(pixels_per_scale=pixels,
                                 pixels=sum(pixels), chips_per_scale=counts))
        result.pred_instances = merge_detections(boxes, scores, labels,
                                                 self.tta_cfg)
        return result

    def _next_chips(self, focus: Tensor, crops, factor, scale, next_scale,
                    stride, img_hw) -> np.ndarray:
        """FocusChips (ORIGINAL pixels) of the next scale from every chip's
        FocusPixel map, merged across chips until none overlap."""
        img_h, img_w = img_hw
        next_factor = next_scale.spec.factor_for(img_h, img_w)
        min_size = scale.min_size * factor / next_factor
        found = []
        for prob, (crop, (x0, y0), (fx, fy)) in zip(
                focus.float().cpu().numpy(), crops):
            h, w = crop.shape[-2:]
            prob = prob[:-(-h // stride), :-(-w // stride)]  # drop padding
            scaled, _ = focus_chips(prob, scale.threshold, scale.dilation,
                                    min_size, stride, (h, w), factor)
            found.append(scaled / [fx, fy, fx, fy] + [x0, y0, x0, y0])
        merged = merge_overlapping(np.clip(
            np.concatenate(found), 0, [img_w, img_h, img_w, img_h]))
        if len(merged) > self.max_chips:
            area = (merged[:, 2] - merged[:, 0]) * (merged[:, 3] -
                                                   merged[:, 1])
            merged = merged[np.argsort(-area, kind='stable')[:self.max_chips]]
        return merged

    def _oracle_chips(self, sample, factor, scale, next_scale, stride,
                      img_hw) -> np.ndarray:
        """FocusChips of the next scale from perfect FocusPixels: the
        sample's ground truth labelled at this scale."""
        img_h, img_w = img_hw
        gt = sample.gt_instances.bboxes if 'gt_instances' in sample else []
        gt = get_box_tensor(gt).float().cpu().numpy() if len(gt) else \
            np.zeros((0, 4))
        next_factor = next_scale.spec.factor_for(img_h, img_w)
        a, b, c = self.module.focus_head.thresholds
        _, orig = oracle_focus_chips(
            gt, img_h, img_w, factor, stride, a, b, c, scale.dilation,
            scale.min_size * factor / next_factor)
        return orig[:self.max_chips]


def pack_crops(module, crops: list, meta: dict) -> dict:
    """Preprocess crops from :func:`crop_resize` into one padded batch.

    Args:
        module: The detector (its ``data_preprocessor`` normalises and pads).
        crops (list): ``(crop, origin, (fx, fy))`` tuples.
        meta (dict): The image's metainfo (``img_shape`` and
            ``scale_factor`` are set per crop).
    """
    samples = [
        DetDataSample(metainfo=dict(
            meta, img_shape=tuple(crop.shape[-2:]), scale_factor=f))
        for crop, _, f in crops
    ]
    return module.data_preprocessor(
        dict(inputs=[c for c, _, _ in crops], data_samples=samples), False)


def detections_in_image(results: List[DetDataSample], crops: list) -> list:
    """Per crop ``(boxes, scores, labels)``, boxes mapped from the crop's
    network input back to ORIGINAL pixels (``rescale=False`` predictions)."""
    out = []
    for (_, (x0, y0), (fx, fy)), result in zip(crops, results):
        pred = result.pred_instances
        scale = pred.bboxes.new_tensor([fx, fy, fx, fy])
        offset = pred.bboxes.new_tensor([x0, y0, x0, y0])
        out.append((pred.bboxes / scale + offset, pred.scores, pred.labels))
    return out


def merge_detections(boxes: List[Tensor], scores: List[Tensor],
                     labels: List[Tensor], tta_cfg) -> InstanceData:
    """Concatenate detections (ORIGINAL pixels) and merge them by
    ``tta_cfg.nms`` (class-aware), keeping ``tta_cfg.max_per_img``."""
    out = InstanceData()
    boxes = torch.cat(boxes) if boxes else torch.zeros((0, 4))
    scores = torch.cat(scores) if scores else torch.zeros(0)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    if boxes.numel() == 0:
        out.bboxes, out.scores, out.labels = boxes.reshape(0, 4), scores, \
            labels
        return out
    dets, keep = batched_nms(boxes, scores, labels, tta_cfg.nms)
    dets = dets[:tta_cfg.max_per_img]
    out.bboxes = dets[:, :-1]
    out.scores = dets[:, -1]
    out.labels = labels[keep][:tta_cfg.max_per_img]
    return out
