# Copyright (c) mmsnip contributors. All rights reserved.
"""SAHI's sliced inference around an mmsnip/MMDet detector (a benchmark peer).

SAHI (``pip install sahi``, an optional benchmark dependency) slices the
image, runs a detector on every slice and on the whole image, and merges.
:class:`SahiSlicedModel` runs the SAME trained detector through SAHI's own
``get_sliced_prediction`` (its slicing, shifting and postprocess code), so
``tools/benchmark.py`` compares AutoFocus with the tiling tool people use,
on equal weights and equal data. The detector sees slices resized by
``factor`` (SAHI itself never resizes; its model wrappers pick an input
size), exactly as :class:`~mmsnip.models.SlicedTTAModel` does.
"""
from typing import List, Optional

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.models.test_time_augs.chip_runner import (ChipRunner,
                                                      check_proposal_budget,
                                                      crop_resize,
                                                      detections_in_image)


def _require_sahi():
    try:
        import sahi  # noqa: F401
    except ImportError as e:  # pragma: no cover - sahi is in tests reqs
        raise ImportError(
            'the SAHI peer needs the optional `sahi` package: '
            'pip install -r requirements/optional.txt') from e


def _detection_model_class():
    """A ``sahi.models.base.DetectionModel`` running an MMDet detector."""
    _require_sahi()
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class MMDetectorForSahi(DetectionModel):
        """SAHI model wrapper: numpy RGB slices in, ``ObjectPrediction`` out.

        Slices (``perform_batch_inference``) are resized by ``factor`` and
        run as one padded batch; the whole image (``perform_inference``,
        SAHI's standard prediction) by ``full_image_factor``. ``pixels``
        counts the network-input pixels of every call.
        """

        def __init__(self, detector, factor: float,
                     full_image_factor: float, meta: dict,
                     rpn_proposals_per_mpix: Optional[float] = None):
            # SAHI hands the batches: run each as it comes, in one pass.
            self.runner = ChipRunner(
                detector, max_pad_ratio=None, max_batch=None,
                rpn_proposals_per_mpix=rpn_proposals_per_mpix,
                rescale=False, owner='SahiSlicedModel')
            self.factor = factor
            self.full_image_factor = full_image_factor
            self.meta = meta
            self.pixels = 0
            classes = detector.dataset_meta['classes'] if getattr(
                detector, 'dataset_meta', None) else None
            mapping = None if classes is None else {
                str(i): name for i, name in enumerate(classes)}
            # confidence 0: the detector's own test_cfg.score_thr applies
            super().__init__(model=detector, confidence_threshold=0.0,
                             category_mapping=mapping,
                             device=str(next(detector.parameters()).device))

        def set_model(self, model, **kwargs) -> None:
            self.model = model

        def _run(self, images: List[np.ndarray], factor: float) -> list:
            device = next(self.model.parameters()).device
            crops = []
            for image in images:  # RGB (SAHI) -> BGR (LoadImageFromFile)
                tensor = torch.from_numpy(
                    np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
                h, w = image.shape[:2]
                crops.append(crop_resize(tensor.to(device),
                                         np.array([0, 0, w, h]), factor))
            self.pixels += sum(c.shape[-2] * c.shape[-1] for c, _, _ in crops)
            results, _ = self.runner.run(crops, self.meta)
            return detections_in_image(results, crops)

        def perform_inference(self, image: np.ndarray) -> None:
            self._original_predictions = self._run([image],
                                                   self.full_image_factor)

        def perform_batch_inference(self, images: List[np.ndarray]) -> None:
            self._original_predictions = self._run(images, self.factor)

        def _create_object_prediction_list_from_original_predictions(
                self, shift_amount_list=[[0, 0]], full_shape_list=None):
            shifts = shift_amount_list
            if shifts and not isinstance(shifts[0], (list, tuple)):
                shifts = [shifts]
            shapes = full_shape_list
            if shapes and not isinstance(shapes[0], (list, tuple)):
                shapes = [shapes]
            per_image = []
            for i, (boxes, scores, labels) in enumerate(
                    self._original_predictions):
                keep = scores >= self.confidence_threshold
                names = self.category_mapping or {}
                per_image.append([
                    ObjectPrediction(
                        bbox=box, category_id=label,
                        category_name=names.get(str(label), str(label)),
                        score=score, shift_amount=list(shifts[i]),
                        full_shape=list(shapes[i]) if shapes else None)
                    for box, score, label in zip(
                        boxes[keep].tolist(), scores[keep].tolist(),
                        labels[keep].tolist())
                    if box[2] > box[0] and box[3] > box[1]
                ])
            self._object_prediction_list_per_image = per_image

    return MMDetectorForSahi


class SahiSlicedModel:
    """SAHI sliced inference with ``test_step`` like a ``tta_model``.

    Args:
        detector: A built, loaded detector in eval mode (an ``AutoFocus``
            model or any MMDet detector; its ``predict`` is used).
        tile_size (int): Slice side in ORIGINAL pixels (the name of
            ``SlicedTTAModel``'s argument).
        overlap (int): Overlap of neighbouring slices, ORIGINAL pixels
            (SAHI takes it as a ratio of ``tile_size``).
        factor (float): Resize factor of the slices.
        full_image (bool): SAHI's ``perform_standard_pred``: also run the
            whole image, resized by ``full_image_factor``.
        batch_size (int): Slices per forward pass.
        postprocess (dict): SAHI's postprocess, default class-aware NMS at
            IoU 0.5 as our ``tta_cfg``.
        rpn_proposals_per_mpix (float, optional): The RPN budget rule of
            our test-time models (``proposal_budget``), for a fair
            comparison; ``None``: the detector's own ``test_cfg``.
    """

    def __init__(self, detector, tile_size: int = 512, overlap: int = 64,
                 factor: float = 1.0, full_image: bool = True,
                 full_image_factor: float = 1.0, batch_size: int = 8,
                 postprocess: Optional[dict] = None,
                 rpn_proposals_per_mpix: Optional[float] = None):
        if not 0 <= overlap < tile_size:
            raise ValueError(f'SahiSlicedModel needs 0 <= overlap < '
                             f'tile_size, got {overlap}, {tile_size}')
        self.detector = detector
        self.tile_size, self.overlap = tile_size, overlap
        self.factor, self.full_image = factor, full_image
        self.full_image_factor = full_image_factor
        self.batch_size = batch_size
        check_proposal_budget(detector, rpn_proposals_per_mpix,
                              type(self).__name__)
        self.rpn_proposals_per_mpix = rpn_proposals_per_mpix
        self.postprocess = dict(postprocess_type='NMS',
                                postprocess_match_metric='IOU',
                                postprocess_match_threshold=0.5,
                                postprocess_class_agnostic=False)
        self.postprocess.update(postprocess or {})
        self._model_class = _detection_model_class()

    def parameters(self):
        return self.detector.parameters()

    @torch.no_grad()
    def test_step(self, data: dict) -> List[DetDataSample]:
        from sahi.predict import get_sliced_prediction
        out = []
        for image, sample in zip(data['inputs'], data['data_samples']):
            image: Tensor  # (3, H, W) BGR uint8, ORIGINAL size
            model = self._model_class(self.detector, self.factor,
                                      self.full_image_factor,
                                      sample.metainfo,
                                      self.rpn_proposals_per_mpix)
            rgb = image.permute(1, 2, 0).numpy()[..., ::-1]
            prediction = get_sliced_prediction(
                np.ascontiguousarray(rgb), model,
                slice_height=self.tile_size, slice_width=self.tile_size,
                overlap_height_ratio=self.overlap / self.tile_size,
                overlap_width_ratio=self.overlap / self.tile_size,
                perform_standard_pred=self.full_image,
                batch_size=self.batch_size, verbose=0,
                **self.postprocess)
            preds = prediction.object_prediction_list
            result = DetDataSample(metainfo=sample.metainfo)
            result.set_metainfo(dict(pixels=int(model.pixels)))
            instances = InstanceData()
            instances.bboxes = torch.tensor(
                [p.bbox.to_xyxy() for p in preds],
                dtype=torch.float32).reshape(-1, 4)
            instances.scores = torch.tensor([p.score.value for p in preds],
                                            dtype=torch.float32)
            instances.labels = torch.tensor([p.category.id for p in preds],
                                            dtype=torch.long)
            result.pred_instances = instances
            out.append(result)
        return out
