# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP inference on the full image pyramid (Sec. 3.2.2)."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict

from mmsnip.chips import (ScaleSpec, box_sizes, check_range_order,
                          check_some_scales, in_range)
from mmsnip.registry import MODELS
from mmsnip.utils.checks import UserInputError
from ..input_sizes import InputViews, pipeline_view_pad, pyramid_views
from .chip_runner import StageTimer
from .merge import MaskPaster, MergeConfig, add_masks, merge_detections
from .shape_groups import grouped_test_step
from .view_cap import check_view_cap, view_cap


@MODELS.register_module()
class SnipTTAModel(DetTTAModel):
    """Full-pyramid multi-scale testing with SNIP's valid ranges.

    Each view of the ``tta_pipeline`` (one ``Resize`` per scale, optionally
    times flips) runs the detector on the whole resized image; its
    detections, mapped back to original pixels, are kept only if their size
    lies in the valid range of the view's scale (Sec. 3.2.2: "we do not
    select detections which fall outside a specified range at each
    resolution"); the survivors of all views are merged by
    :func:`~mmsnip.models.test_time_augs.merge.merge_detections`
    (``tta_cfg``: NMS or soft-NMS, optional box voting, ``max_per_img``;
    see ``docs/merge.md``).

    Masks: unlike mmdet's ``DetTTAModel``, predictions of a mask detector
    keep their masks: each view's masks (``(N, H, W)`` of the ORIGINAL
    image, pasted by mmdet) are flipped back for flipped views and follow
    their detections through the merge.

    A view's scale is recognised by its position among the image's views
    (one resize per scale, in the order of ``scales``, flips after them,
    as the shipped ``tta_pipeline``), checked against its shape (that
    scale's ``ScaleSpec.scaled_shape`` of the image, which
    ``ResizeToScale`` makes) or else its ``scale_factor``, which must
    match the factor that scale gives for the image (within 2%); where
    the position does not fit, by the shape or factor alone
    (:meth:`scales_of_views`). A ``tta_pipeline`` that disagrees
    with ``scales``, or views that neither tells apart (two scales that
    resize an image alike, out of order), is an error, not a silent wrong
    filter. ``scales`` must be ordered as the chips' (a finer scale keeps
    smaller objects, :func:`~mmsnip.chips.check_range_order`), checked
    when the model is built.

    Every merged prediction carries ``pixels_per_scale`` (list of
    ``h * w`` of each view's network input, summed over flips),
    ``pixels`` (their sum) and ``stage_seconds`` in its metainfo:
    ``merge`` (this image's valid-range filtering and merge) and, when run
    through :meth:`test_step`, ``detector`` (the forward passes of all
    views of the batch, preprocessing and mmdet's mask pasting included,
    shared equally by the batch's images: exact for one image per batch).
    Resizing happens in the data pipeline and is not timed here.

    Args:
        scales (list[dict]): :class:`~mmsnip.chips.ScaleSpec` fields per
            scale: a factor rule and ``valid_range`` (ORIGINAL pixels).
        tta_cfg (dict, optional): Merge settings, :class:`MergeConfig`;
            default NMS at IoU 0.5, 100 detections.
        view_max_per_img (int, optional): The detector's own per-image cap
            (``max_per_img`` of its ``test_cfg``) while it runs on the
            views (:func:`.view_cap.view_cap`; restored afterwards): an
            int >= 1, or -1 for none (a DETR-family ``topk`` is clamped to
            the number of scores it ranks). The valid-range filter
            then comes before any cap, and ``tta_cfg.max_per_img`` caps
            once, after the merge: the order of the released SNIPER code
            (the COCO configs set -1). ``None`` (default): the detector
            caps each view before the filter, so at a fine view
            out-of-range large detections can take every slot and crowd
            the valid small ones out (a deviation from the released code;
            the demo's published numbers were measured so). A detector
            without a cap to replace is an error when the model is built.
    """

    def __init__(self, scales: Sequence[dict], tta_cfg=None,
                 view_max_per_img: Optional[int] = None, **kwargs):
        tta_cfg = ConfigDict(tta_cfg or dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        merge_cfg = MergeConfig.from_dict(  # fail early
            tta_cfg, owner=type(self).__name__)
        super().__init__(tta_cfg=tta_cfg, **kwargs)
        check_view_cap(self.module, view_max_per_img, type(self).__name__)
        self.view_max_per_img = view_max_per_img
        self.merge_cfg = merge_cfg
        self.scales = [
            s if isinstance(s, ScaleSpec) else ScaleSpec.from_dict(dict(s))
            for s in scales
        ]
        check_some_scales(self.scales, f'{type(self).__name__}.scales')
        # one rule with the chips: a finer scale keeps smaller objects
        check_range_order(self.scales, f'{type(self).__name__}.scales')

    def input_views(self, image_shapes, images=None,
                    where: str = 'test_dataloader.dataset',
                    pipeline=None) -> InputViews:
        """The views this pyramid feeds the detector: each image resized
        by each of ``scales``, padded by a ``Pad`` stage of ``pipeline``
        (:func:`~mmsnip.models.input_sizes.pyramid_views`).

        Args:
            image_shapes (array): ``(N, 2)`` ``(height, width)`` of the
                test images, ORIGINAL pixels.
            images (Sequence[str], optional): Their names, for messages.
            where (str): The dataset, for messages.
            pipeline (list[dict], optional): The test pipeline config
                (``tta_pipeline``; its ``Pad`` stage counts).

        Returns:
            InputViews: For
            :func:`~mmsnip.models.input_sizes.tta_input_problem`.
        """
        return pyramid_views(image_shapes, self.scales, images, where,
                             pipeline_view_pad(pipeline))

    def test_step(self, data) -> List[DetDataSample]:
        """Views through the detector (its cap replaced by
        ``view_max_per_img``), then the merge; adds the batch's detector
        time to ``stage_seconds``."""
        timer = StageTimer(_device(self.module), ('total', ))
        with timer('total'), view_cap(self.module, self.view_max_per_img,
                                      type(self).__name__):
            results = self._test_views(data)
        merge = sum(r.metainfo['stage_seconds']['merge'] for r in results)
        share = max(timer.seconds['total'] - merge, 0.0) / max(
            len(results), 1)
        for result in results:
            result.set_metainfo(dict(stage_seconds=dict(
                result.metainfo['stage_seconds'], detector=share)))
        return results

    def _test_views(self, data) -> List[DetDataSample]:
        """mmengine's ``BaseTTAModel.test_step`` (one forward pass per
        view, then :meth:`merge_preds`), with each view's forward pass
        split by input shape (:func:`.shape_groups.grouped_test_step`):
        images of different sizes are not padded to a common canvas, so
        every image's predictions are those of a batch of one, whatever
        the batch holds.

        Padding matters at a pyramid's fine scales: a 6000 x 400 panorama
        and a 600 x 1200 portrait at 2x share a 12000 x 2400 canvas, the
        RPN spends its proposals on the padding, and the detections of
        both images change (most of them, on such a batch).
        """
        if not isinstance(data, dict):
            return super().test_step(data)
        for samples in data.get('data_samples') or []:
            for sample in samples:
                self._check_view_meta(sample.metainfo)
        num_views = len(data[next(iter(data))])
        predictions = [
            grouped_test_step(self.module,
                               {key: value[v] for key, value in data.items()})
            for v in range(num_views)
        ]
        return self.merge_preds(list(zip(*predictions)))

    #: Metainfo a view needs: its scale is found by ``scale_factor``, and
    #: the detector maps its boxes back to ``ori_shape`` with it.
    VIEW_META_KEYS = ('ori_shape', 'img_shape', 'scale_factor')

    def _check_view_meta(self, meta: dict) -> None:
        """A view's metainfo must hold :attr:`VIEW_META_KEYS` (a
        ``tta_pipeline`` whose ``PackDetInputs`` ``meta_keys`` leave one
        out fails in mmdet's heads with a bare ``AssertionError``)."""
        missing = [k for k in self.VIEW_META_KEYS if k not in meta]
        if missing:
            names = ', '.join(repr(k) for k in missing)
            raise UserInputError(
                f'{type(self).__name__}: the views of '
                f'{meta.get("img_path") or "an image"} have no {names} in '
                "their metainfo: the tta_pipeline's PackDetInputs meta_keys "
                'leave it out, and the pyramid finds each view\'s scale by '
                'its scale_factor, which the detector also maps the boxes '
                f'back with; add {names} to meta_keys (mmdet\'s default '
                "meta_keys have them: ('img_id', 'img_path', 'ori_shape', "
                "'img_shape', 'scale_factor', 'flip', 'flip_direction'))")

    def _match(self, meta: dict) -> Tuple[int, List[int]]:
        """The scale of a view and every scale that resizes this image to
        the same shape as it (views of those cannot be told apart).

        A scale whose canvas (``ScaleSpec.scaled_shape``, what
        ``ResizeToScale`` makes) is the view's ``img_shape`` is its
        scale: exact also where rounding a side to a whole pixel (at
        least one) changes its factor, as on an 8000 x 6 strip at
        ``max_side=512`` (512 x 1: factors 0.064 and 1/6). Otherwise
        (another resize, a ``Pad`` stage) the scale whose factor is
        nearest the view's mean ``scale_factor``, an error beyond 2%.
        """
        h, w = meta['ori_shape'][:2]
        shapes = [s.scaled_shape(h, w) for s in self.scales]
        view_shape = tuple(int(v) for v in meta['img_shape'][:2])
        if view_shape in shapes:
            best = shapes.index(view_shape)
        else:
            actual = float(np.mean(meta['scale_factor']))
            expected = np.array([s.factor_for(h, w) for s in self.scales])
            err = np.abs(expected / actual - 1)
            best = int(err.argmin())
            if err[best] > 0.02:
                vh, vw = view_shape
                raise UserInputError(
                    f'SnipTTAModel: a view of '
                    f'{meta.get("img_path") or "an image"} ({w}x{h}) was '
                    f'resized by {actual:.4f} to {vw}x{vh}, but the scales '
                    f'give {expected.round(4)}; make tta_pipeline match '
                    'tta_model.scales')
        tied = [i for i, shape in enumerate(shapes)
                if shape == shapes[best]]
        return best, tied

    def scale_of_view(self, meta: dict) -> int:
        """Index of the scale a view was resized to, by its
        ``scale_factor``; an error if two scales with different valid
        ranges resize the image alike (use :meth:`scales_of_views`)."""
        best, tied = self._match(meta)
        ranges = {self.scales[i].valid_range for i in tied}
        if len(ranges) > 1:
            h, w = meta['ori_shape'][:2]
            names = ' and '.join(
                f'scales[{i}] ({self.scales[i].rule_text})'
                for i in tied)
            raise UserInputError(
                f'{type(self).__name__}: tta_model.{names} resize '
                f'{meta.get("img_path")} ({w}x{h}) alike, so their views '
                'cannot be told apart by size, and the views are not in the '
                'order of tta_model.scales (the same number per scale, '
                'scale by scale) to tell them by position. Make the '
                "tta_pipeline's TestTimeAug list one resize per scale, in "
                'the order of tta_model.scales, as its first transforms '
                '(flips after them)')
        return best

    def scales_of_views(self, metas: Sequence[dict]) -> List[int]:
        """The scale of each view of one image, in the views' order.

        mmdet's ``TestTimeAug`` yields its views in the order of its
        transforms (the product of its lists, the first varying
        slowest), and ``merge_preds`` gets them so: with one resize per
        scale listed first, in the order of ``scales``, view ``i`` of
        ``n`` is scale ``i // (n / len(scales))``. That position is used
        where every view's ``scale_factor`` agrees with it, which tells
        apart scales that resize an image alike (``max_side=512`` and
        ``factor=1.0`` on a 512 x 384 image); else each view's scale is
        found by its factor (:meth:`scale_of_view`: an error where that is
        ambiguous).
        """
        matches = [self._match(meta) for meta in metas]
        n, m = len(metas), len(self.scales)
        if n and n % m == 0:
            position = [i // (n // m) for i in range(n)]
            if all(p in tied for p, (_, tied) in zip(position, matches)):
                return position
        return [self.scale_of_view(meta) for meta in metas]

    def _check_every_scale_viewed(self, views: Sequence[int],
                                  meta: dict) -> None:
        """Every scale of ``scales`` got a view of the image (or one that
        resizes it alike, with the same valid range).

        Args:
            views (Sequence[int]): The scale of each view
                (:meth:`scales_of_views`).
            meta (dict): A view's metainfo (``ori_shape``, ``img_path``).

        Raises:
            ValueError: A scale without a view, naming it and the fix: a
                ``tta_pipeline`` without its resize never runs the scale,
                so the objects of its valid range would be missed without
                a word.
        """
        seen = set(views)
        h, w = meta['ori_shape'][:2]
        missing = [
            i for i, spec in enumerate(self.scales) if i not in seen
            and not any(self.scales[j].valid_range == spec.valid_range
                        and self.scales[j].scaled_shape(h, w) ==
                        spec.scaled_shape(h, w) for j in seen)
        ]
        if not missing:
            return
        names = ', '.join(
            f'scales[{i}] ({self.scales[i].rule_text}, valid_range='
            f'{self.scales[i].valid_range})' for i in missing)
        rules = ', '.join(
            f'ResizeToScale(scale=dict({self.scales[i].rule_text}))'
            for i in missing)
        raise UserInputError(
            f'{type(self).__name__}: the tta_pipeline gives '
            f'{len(views)} view(s) of {meta.get("img_path")}, none of '
            f'them resized to tta_model.{names}: that scale would never '
            'run, and the objects of its valid range would be missed. '
            "Give the tta_pipeline's TestTimeAug one resize per scale of "
            f'tta_model.scales, in their order (here also {rules}), or '
            'remove the scale from tta_model.scales')

    def _merge_single_sample(
            self, data_samples: List[DetDataSample]) -> DetDataSample:
        timer = StageTimer(_device(self.module), ('merge', ))
        with timer('merge'):
            result = self._merge_views(data_samples)
        result.set_metainfo(dict(stage_seconds=timer.seconds))
        return result

    def _merge_views(self,
                     data_samples: List[DetDataSample]) -> DetDataSample:
        boxes, scores, labels, metas = [], [], [], []
        pixels = [0] * len(self.scales)
        first = data_samples[0]
        masks = MaskPaster(first.metainfo['ori_shape'][:2],
                           first.pred_instances.bboxes.device)
        views = self.scales_of_views([s.metainfo for s in data_samples])
        self._check_every_scale_viewed(views, first.metainfo)
        for sample, scale in zip(data_samples, views):
            meta = sample.metainfo
            pixels[scale] += int(np.prod(meta['img_shape'][:2]))
            pred = sample.pred_instances
            sizes = box_sizes(pred.bboxes.detach().float().cpu().numpy())
            keep = torch.from_numpy(
                in_range(sizes, self.scales[scale].valid_range)).to(
                    pred.bboxes.device)
            boxes.append(pred.bboxes[keep])
            scores.append(pred.scores[keep])
            labels.append(pred.labels[keep])
            # views without a RandomFlip carry no flip keys
            flip = meta.get('flip', False)
            metas.append(dict(meta, flip=flip,
                              flip_direction=meta.get('flip_direction')))
            add_masks(masks, sample, keep,
                      flip_direction=meta.get('flip_direction')
                      if flip else None)
        # flipped views' boxes back to the image (DetTTAModel's helper)
        merged_boxes, merged_scores = self.merge_aug_bboxes(
            boxes, scores, metas)
        first.pred_instances = merge_detections(
            [merged_boxes], [merged_scores], [torch.cat(labels)],
            self.merge_cfg, masks=masks if masks.parts else None)
        first.set_metainfo(dict(pixels_per_scale=pixels, pixels=sum(pixels)))
        return first


def _device(module) -> torch.device:
    """The module's device (CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return torch.device('cpu') if param is None else param.device
