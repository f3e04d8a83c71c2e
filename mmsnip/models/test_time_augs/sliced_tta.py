# Copyright (c) mmsnip contributors. All rights reserved.
"""Uniform sliced inference (tiling), the usual alternative to AutoFocus."""
from typing import List, Optional

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.model import BaseTTAModel
from torch import Tensor

from mmsnip.chips import chip_starts
from mmsnip.registry import MODELS
from .autofocus_tta import (crop_resize, detections_in_image, merge_detections,
                            pack_crops)


@MODELS.register_module()
class SlicedTTAModel(BaseTTAModel):
    """Tile the image uniformly, detect in every tile, merge (like SAHI).

    Tiles of ``tile_size`` ORIGINAL pixels (resized by ``factor``) overlap
    by ``overlap`` pixels; the last row and column are anchored at the image
    border (:func:`mmsnip.chips.chip_starts`). With ``full_image=True`` the
    whole image (resized by ``full_image_factor``) is processed too. All
    detections are projected to the image and merged by ``tta_cfg.nms``.
    Predictions carry ``pixels``, ``pixels_per_scale`` (``[tiles, full
    image]``) and ``chips_per_scale`` like ``AutoFocusTTAModel``; use the
    same test pipeline (the image unresized).

    Args:
        tile_size (int): Tile side in ORIGINAL pixels.
        overlap (int): Overlap of neighbouring tiles, ORIGINAL pixels.
        factor (float): Resize factor of the tiles.
        full_image (bool): Also run the whole image.
        full_image_factor (float): Its resize factor.
        batch_size (int): Tiles per forward pass.
        tta_cfg (dict): ``nms`` and ``max_per_img``.
    """

    def __init__(self,
                 tile_size: int = 512,
                 overlap: int = 64,
                 factor: float = 1.0,
                 full_image: bool = False,
                 full_image_factor: float = 1.0,
                 batch_size: int = 8,
                 tta_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0 <= overlap < tile_size:
            raise ValueError(f'SlicedTTAModel needs 0 <= overlap < '
                             f'tile_size, got {overlap}, {tile_size}')
        self.tile_size, self.overlap = tile_size, overlap
        self.factor = factor
        self.full_image, self.full_image_factor = full_image, \
            full_image_factor
        self.batch_size = batch_size
        self.tta_cfg = ConfigDict(tta_cfg or dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))

    def merge_preds(self, data_samples_list):  # pragma: no cover
        raise NotImplementedError('SlicedTTAModel merges its own tiles')

    def tiles(self, img_h: int, img_w: int) -> np.ndarray:
        """``(N, 4)`` tiles, xyxy ORIGINAL pixels, covering the image."""
        step = self.tile_size - self.overlap
        xs = chip_starts(img_w, self.tile_size, step)
        ys = chip_starts(img_h, self.tile_size, step)
        x0, y0 = np.meshgrid(xs, ys)
        x0, y0 = x0.ravel(), y0.ravel()
        return np.stack([x0, y0, np.minimum(x0 + self.tile_size, img_w),
                         np.minimum(y0 + self.tile_size, img_h)], axis=1)

    def _run(self, crops: list, meta: dict):
        """Detect in ``crops`` by batches; boxes, scores, labels lists."""
        dets = []
        for i in range(0, len(crops), self.batch_size):
            part = crops[i:i + self.batch_size]
            data = pack_crops(self.module, part, meta)
            results = self.module.predict(data['inputs'],
                                          data['data_samples'],
                                          rescale=False)
            dets.extend(detections_in_image(results, part))
        boxes, scores, labels = (list(x) for x in zip(*dets)) if dets \
            else ([], [], [])
        return boxes, scores, labels

    @torch.no_grad()
    def test_step(self, data: dict) -> List[DetDataSample]:
        inputs, samples = data['inputs'], data['data_samples']
        device = next(self.module.parameters()).device
        out = []
        for image, sample in zip(inputs, samples):
            image: Tensor = image.to(device)
            img_h, img_w = image.shape[-2:]
            tiles = self.tiles(img_h, img_w)
            crops = [crop_resize(image, t, self.factor) for t in tiles]
            pixels = [sum(c.shape[-2] * c.shape[-1] for c, _, _ in crops)]
            boxes, scores, labels = self._run(crops, sample.metainfo)
            counts = [len(tiles)]
            if self.full_image:
                whole = [crop_resize(image, np.array([0, 0, img_w, img_h]),
                                     self.full_image_factor)]
                pixels.append(whole[0][0].shape[-2] * whole[0][0].shape[-1])
                counts.append(1)
                b, s, lb = self._run(whole, sample.metainfo)
                boxes, scores, labels = boxes + b, scores + s, labels + lb
            result = DetDataSample(metainfo=sample.metainfo)
            result.set_metainfo(dict(pixels_per_scale=[int(p)
                                                       for p in pixels],
                                     pixels=int(sum(pixels)),
                                     chips_per_scale=counts))
            result.pred_instances = merge_detections(boxes, scores, labels,
                                                     self.tta_cfg)
            out.append(result)
        return out
