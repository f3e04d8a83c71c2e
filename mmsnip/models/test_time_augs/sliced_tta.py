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
from mmsnip.utils.checks import (UserInputError, check_integer,
                                  check_positive)
from ..input_sizes import InputViews, tile_views
from .chip_runner import (ChipRunner, StageTimer, check_one_view,
                          check_whole_image, crop_resize,
                          detections_in_image)
from .merge import MaskPaster, MergeConfig, add_masks, merge_detections


@MODELS.register_module()
class SlicedTTAModel(BaseTTAModel):
    """Tile the image uniformly, detect in every tile, merge (like SAHI).

    Tiles of ``tile_size`` ORIGINAL pixels (resized by ``factor``) overlap
    by ``overlap`` pixels; the last row and column are anchored at the image
    border (:func:`mmsnip.chips.chip_starts`). With ``full_image=True`` the
    whole image (resized by ``full_image_factor``) is processed too. All
    detections are projected to the image and merged by
    :func:`~mmsnip.models.test_time_augs.merge.merge_detections`
    (``tta_cfg``); masks of a mask detector are pasted into the ORIGINAL
    image for the merged detections only. Predictions carry ``pixels``,
    ``pixels_per_scale`` (``[tiles, full image]``) and ``chips_per_scale``
    like ``AutoFocusTTAModel``, and ``stage_seconds`` with the keys
    ``chip_generation`` (tiling), ``crop_resize`` (cutting, resizing and
    preprocessing tiles), ``detector`` (forward passes) and ``merge``
    (mapping to the image, :func:`merge_detections`, pasting masks). Use
    the same test pipeline (the image unresized).

    Args:
        tile_size (int): Tile side in ORIGINAL pixels, an integer >= 1.
        overlap (int): Overlap of neighbouring tiles, ORIGINAL pixels, an
            integer in ``[0, tile_size)``.
        factor (float): Resize factor of the tiles, finite and > 0.
        full_image (bool): Also run the whole image.
        full_image_factor (float): Its resize factor, finite and > 0.
        batch_size (int, optional): Tiles per forward pass, >= 1 (``None``:
            all in one).
        tta_cfg (dict): Merge settings, :class:`MergeConfig`.
        rpn_proposals_per_mpix (float, optional): Two-stage detectors: RPN
            proposals per million input pixels of a batch's largest tile,
            as ``AutoFocusTTAModel`` (:func:`proposal_budget`).
        min_rpn_proposals (int): Floor of that budget.

    Settings are checked when the model is built: an error names
    ``tta_model.<field>``.
    """
    STAGES = ('chip_generation', 'crop_resize', 'detector', 'merge')

    def __init__(self,
                 tile_size: int = 512,
                 overlap: int = 64,
                 factor: float = 1.0,
                 full_image: bool = False,
                 full_image_factor: float = 1.0,
                 batch_size: int = 8,
                 tta_cfg: Optional[dict] = None,
                 rpn_proposals_per_mpix: Optional[float] = None,
                 min_rpn_proposals: int = 100,
                 **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        tile_size = check_integer(tile_size, f'{owner}: tta_model.tile_size')
        overlap = check_integer(overlap, f'{owner}: tta_model.overlap', 0)
        for name, value in (('factor', factor),
                            ('full_image_factor', full_image_factor)):
            check_positive(value, f'{owner}: tta_model.{name}')
        if tile_size * factor < 1:
            raise UserInputError(
                f'{owner}: tta_model.factor={factor!r} resizes a tile of '
                f'tile_size={tile_size} px to {tile_size * factor:.3g} px, '
                'under one pixel; use a factor of at least '
                f'{1 / tile_size:.3g} (1.0 runs the tiles unresized)')
        # Tiles run in their order, batch_size at a time (they share one
        # shape, except when the image is smaller than a tile).
        self.runner = ChipRunner(
            self.module, max_pad_ratio=None, max_batch=batch_size,
            rpn_proposals_per_mpix=rpn_proposals_per_mpix,
            min_rpn_proposals=min_rpn_proposals, owner=owner,
            batch_key='batch_size')
        if overlap >= tile_size:
            raise UserInputError(
                f'{owner}: tta_model.overlap={overlap} must be less than '
                f'tta_model.tile_size={tile_size} (tiles step by tile_size '
                '- overlap ORIGINAL px)')
        self.tile_size, self.overlap = tile_size, overlap
        self.factor = factor
        self.full_image, self.full_image_factor = full_image, \
            full_image_factor
        self.tta_cfg = ConfigDict(tta_cfg or dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        self.merge_cfg = MergeConfig.from_dict(self.tta_cfg,
                                               owner=type(self).__name__)

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

    def input_views(self, image_shapes, images=None,
                    where: str = 'test_dataloader.dataset',
                    pipeline=None) -> InputViews:
        """The inputs this test feeds the detector: its tiles and, with
        ``full_image``, the whole image
        (:func:`~mmsnip.models.input_sizes.tile_views`).

        Args:
            image_shapes (array): ``(N, 2)`` ``(height, width)`` of the
                test images, ORIGINAL pixels.
            images (Sequence[str], optional): Their names, for messages.
            where (str): The dataset, for messages.
            pipeline (list[dict], optional): The test pipeline config
                (unused: the tiles are cut from the image as loaded).

        Returns:
            InputViews: For
            :func:`~mmsnip.models.input_sizes.tta_input_problem`.
        """
        return tile_views(image_shapes, self.tile_size, self.factor,
                          self.full_image_factor if self.full_image
                          else None, images, where)

    def _check_full_image(self, img_h: int, img_w: int, sample) -> None:
        """The whole image resized by ``full_image_factor`` must keep at
        least one pixel per side (else it would be silently clamped)."""
        side = min(img_h, img_w) * self.full_image_factor
        if round(side) < 1:
            raise UserInputError(
                f'{type(self).__name__}: tta_model.full_image_factor='
                f'{self.full_image_factor!r} resizes '
                f'{sample.metainfo.get("img_path") or "an image"} ({img_w}x'
                f'{img_h}) to under one pixel per side; use a factor of '
                f'at least {1 / min(img_h, img_w):.3g} (1.0: unresized)')

    @property
    def batch_size(self) -> int:
        """Tiles per forward pass (the runner's ``max_batch``)."""
        return self.runner.max_batch

    def _run(self, crops: list, meta: dict, timer: StageTimer,
             masks: MaskPaster):
        """Detect in ``crops`` (:class:`ChipRunner`); boxes, scores, labels
        lists (ORIGINAL pixels); masks go to ``masks``."""
        results, _ = self.runner.run(crops, meta, timer)
        boxes, scores, labels = [], [], []
        with timer('merge'):
            dets = detections_in_image(results, crops, rescaled=True)
            for crop, result, (b, s, lb) in zip(crops, results, dets):
                boxes.append(b)
                scores.append(s)
                labels.append(lb)
                add_masks(masks, result, None, crop.origin)
        return boxes, scores, labels

    @torch.no_grad()
    def test_step(self, data: dict) -> List[DetDataSample]:
        inputs, samples = data['inputs'], data['data_samples']
        check_one_view(samples, type(self).__name__)
        device = next(self.module.parameters()).device
        out = []
        for image, sample in zip(inputs, samples):
            check_whole_image(image, sample.metainfo, type(self).__name__)
        for image, sample in zip(inputs, samples):
            timer = StageTimer(device, self.STAGES)
            with timer('crop_resize'):
                image: Tensor = image.to(device)
            img_h, img_w = image.shape[-2:]
            with timer('chip_generation'):
                views = [(self.tiles(img_h, img_w), self.factor)]
            if self.full_image:
                self._check_full_image(img_h, img_w, sample)
                views.append((np.array([[0, 0, img_w, img_h]]),
                              self.full_image_factor))
            masks = MaskPaster((img_h, img_w), device)
            boxes, scores, labels, pixels, counts = [], [], [], [], []
            for windows, factor in views:
                with timer('crop_resize'):
                    crops = [crop_resize(image, w, factor) for w in windows]
                pixels.append(int(sum(c.image.shape[-2] * c.image.shape[-1]
                                      for c in crops)))
                counts.append(len(windows))
                b, s, lb = self._run(crops, sample.metainfo, timer, masks)
                boxes, scores, labels = boxes + b, scores + s, labels + lb
            with timer('merge'):
                pred = merge_detections(
                    boxes, scores, labels, self.merge_cfg,
                    masks=masks if masks.parts else None)
            result = DetDataSample(metainfo=sample.metainfo)
            result.set_metainfo(dict(pixels_per_scale=pixels,
                                     pixels=int(sum(pixels)),
                                     chips_per_scale=counts,
                                     stage_seconds=timer.seconds))
            result.pred_instances = pred
            out.append(result)
        return out
