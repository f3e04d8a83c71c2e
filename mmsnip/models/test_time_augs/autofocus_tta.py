# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus coarse-to-fine inference (Sec. 3.4, Algorithm 2, Fig. 11)."""
import dataclasses
import time
from contextlib import contextmanager
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.config import ConfigDict
from mmengine.model import BaseTTAModel
from torch import Tensor

from mmsnip.chips import (ScaleSpec, focus_chips, focus_stack_keep_mask,
                          group_by_shape, merge_overlapping,
                          oracle_focus_chips)
from mmsnip.registry import MODELS
from .merge import MergeConfig, merge_detections, part_rows

# ``flip_direction`` of a view -> the mask dims to flip back.
FLIP_DIMS = {None: (), 'horizontal': (-1, ), 'vertical': (-2, ),
             'diagonal': (-2, -1)}


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


class Crop(NamedTuple):
    """A window cut from the image and resized, ready for the detector.

    Attributes:
        image (Tensor): ``(C, h, w)`` float network input (not normalised).
        origin (tuple[int, int]): The window's top-left ``(x, y)``,
            ORIGINAL pixels.
        factors (tuple[float, float]): ``(fx, fy)``: ORIGINAL to network
            input pixels (exact, after rounding the output size).
    """
    image: Tensor
    origin: Tuple[int, int]
    factors: Tuple[float, float]

    @property
    def window_hw(self) -> Tuple[int, int]:
        """``(h, w)`` of the window in ORIGINAL pixels."""
        h, w = self.image.shape[-2:]
        return int(round(h / self.factors[1])), int(round(w / self.factors[0]))


def crop_resize(image: Tensor, box: np.ndarray, factor: float) -> Crop:
    """Cut ``box`` out of an image and resize the crop, on its device.

    Args:
        image (Tensor): ``(C, H, W)`` at ORIGINAL resolution.
        box (np.ndarray): ``(4,)`` xyxy in ORIGINAL pixels; the window cut
            is the box grown to whole pixels.
        factor (float): The scale's factor.

    Returns:
        Crop: the ``(C, h, w)`` float crop (bilinear, rounded to the uint8
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
    return Crop(crop[0].round().clamp(0, 255), (x1, y1),
                (out_w / (x2 - x1), out_h / (y2 - y1)))


class StageTimer:
    """Seconds spent per inference stage of one image.

    ``with timer('detector'): ...`` adds the block's wall time
    (``time.perf_counter``) to ``timer.seconds['detector']``; on CUDA the
    device is synchronised before each clock reading, so queued kernels are
    charged to the stage that launched them.

    Args:
        device: The model's device.
        stages (tuple[str]): The keys of ``seconds`` (all start at 0).
    """

    def __init__(self, device, stages: Sequence[str]):
        self.device = torch.device(device)
        self.seconds: Dict[str, float] = dict.fromkeys(stages, 0.0)

    def _now(self) -> float:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextmanager
    def __call__(self, stage: str):
        if stage not in self.seconds:
            raise KeyError(f'StageTimer: unknown stage {stage!r}; expected '
                           f'one of {list(self.seconds)}')
        start = self._now()
        try:
            yield
        finally:
            self.seconds[stage] += self._now() - start


def rpn_budget(pixels: float, per_mpix: Optional[float],
               minimum: int = 100) -> Optional[int]:
    """RPN proposals for an input of ``pixels`` network pixels:
    ``ceil(per_mpix * pixels / 1e6)``, at least ``minimum``; ``None`` if
    ``per_mpix`` is ``None`` (the detector's own ``test_cfg``)."""
    if per_mpix is None:
        return None
    return max(int(np.ceil(per_mpix * pixels / 1e6)), minimum)


def _inner_detector(module):
    """The detector inside an ``AutoFocus`` wrapper, else ``module``."""
    return getattr(module, 'detector', module)


@contextmanager
def proposal_budget(module, crops: Sequence[Crop],
                    per_mpix: Optional[float], minimum: int = 100):
    """Cap a two-stage detector's RPN proposals for one batch of crops.

    The budget is :func:`rpn_budget` of the batch's largest crop. Lowers
    ``rpn_head.test_cfg.nms_pre`` and ``max_per_img`` to it (never raises
    them) and restores them afterwards; ``per_mpix=None`` changes nothing.
    Small chips need far fewer proposals than whole images; with the
    whole-image budget the RoI head dominates the cost of many small chips.

    Args:
        module: The detector, or an ``AutoFocus`` wrapping one.
        crops (list[Crop]): The batch (:func:`crop_resize`).
        per_mpix (float, optional): Proposals per million input pixels.
        minimum (int): Floor of the budget.
    """
    num = rpn_budget(max(c.image.shape[-2] * c.image.shape[-1]
                         for c in crops), per_mpix, minimum)
    if num is None:
        yield
        return
    cfg = _inner_detector(module).rpn_head.test_cfg
    saved = {k: cfg[k] for k in ('nms_pre', 'max_per_img') if k in cfg}
    for key, value in saved.items():
        cfg[key] = min(int(num), value)
    try:
        yield
    finally:
        for key, value in saved.items():
            cfg[key] = value


def check_proposal_budget(module, per_mpix: Optional[float],
                          owner: str) -> None:
    """A clear error if a proposal budget is set for a detector (or the
    detector inside an ``AutoFocus``) without an RPN (one-stage detectors
    have none) or is not positive."""
    if per_mpix is None:
        return
    detector = _inner_detector(module)
    if not per_mpix > 0:
        raise ValueError(f'{owner}: rpn_proposals_per_mpix must be > 0, '
                         f'got {per_mpix}')
    if getattr(getattr(detector, 'rpn_head', None), 'test_cfg',
               None) is None:
        raise TypeError(f'{owner}: rpn_proposals_per_mpix needs a '
                        'two-stage detector with an rpn_head, got '
                        f'{type(detector).__name__}')


class MaskPaster:
    """The masks of one image's chips or views, pasted on demand.

    Each part (a chip, a tile or a view) adds its detections' masks in its
    window's ORIGINAL pixels; :func:`merge_detections` calls the paster with
    the indices it keeps (into the concatenation of the parts, in the order
    they were added), and only those are pasted into ``(K, H, W)`` masks of
    the whole ORIGINAL image: memory stays at the kept detections.

    Args:
        img_hw (tuple[int, int]): ``(H, W)`` of the ORIGINAL image.
        device: Where empty results are made.
    """

    def __init__(self, img_hw: Tuple[int, int], device='cpu'):
        self.img_hw = tuple(int(v) for v in img_hw)
        self.device = device
        self.parts = []
        self.sizes = []

    def add(self,
            masks: Tensor,
            rows: Optional[Tensor] = None,
            origin: Tuple[int, int] = (0, 0),
            flip_direction: Optional[str] = None) -> None:
        """Add a part.

        Args:
            masks (Tensor): ``(N, h, w)`` masks of the part's detections,
                ORIGINAL pixels of its window (bool, or uint8 if the head's
                ``mask_thr_binary < 0``).
            rows (Tensor, optional): Which of them belong to the part's
                (pruned) detections: bool ``(N,)`` or indices; default all.
            origin (tuple[int, int]): Window top-left ``(x, y)`` in the
                image.
            flip_direction (str, optional): The view was flipped
                (``'horizontal'``, ``'vertical'``, ``'diagonal'``): the
                masks are flipped back within the window when pasted.
        """
        if masks.dim() != 3:
            raise ValueError(f'MaskPaster: masks must be (N, h, w), got '
                             f'{tuple(masks.shape)}')
        if rows is None:
            rows = torch.arange(len(masks), device=masks.device)
        elif rows.dtype == torch.bool:
            rows = rows.nonzero()[:, 0]
        if flip_direction not in FLIP_DIMS:
            raise ValueError(f'MaskPaster: unknown flip_direction '
                             f'{flip_direction!r}')
        self.parts.append((masks, rows.to(masks.device), origin,
                           FLIP_DIMS[flip_direction]))
        self.sizes.append(len(rows))

    def __call__(self, inds: Tensor) -> Tensor:
        """``(K, H, W)`` masks in the ORIGINAL image of detections ``inds``
        (indices into the concatenation of the parts)."""
        img_h, img_w = self.img_hw
        if not self.parts:
            if len(inds):
                raise ValueError('MaskPaster: indices given but no parts')
            return torch.zeros((0, img_h, img_w), dtype=torch.bool,
                               device=self.device)
        out = self.parts[0][0].new_zeros((len(inds), img_h, img_w))
        for i, pos, local in part_rows(self.sizes, inds):
            masks, rows, (x0, y0), dims = self.parts[i]
            chunk = masks[rows[local.to(rows.device)]]
            if dims:
                chunk = chunk.flip(dims)
            h = min(chunk.shape[-2], img_h - y0)
            w = min(chunk.shape[-1], img_w - x0)
            out[pos.to(out.device), y0:y0 + h, x0:x0 + w] = \
                chunk[:, :h, :w].to(out.device, out.dtype)
        return out


@MODELS.register_module()
class AutoFocusTTAModel(BaseTTAModel):
    """Coarse-to-fine multi-scale testing with FocusChips.

    The coarsest scale runs on the whole image and predicts FocusPixels;
    Algorithm 2 (:func:`mmsnip.chips.focus_chips`) turns them into
    FocusChips, which alone are cropped from the ORIGINAL image (on its
    device), resized to the next scale and run in batches of similar shape;
    their FocusPixel maps give the chips of the scale after, and so on. Every
    scale's detections are pruned by focus stacking
    (:func:`mmsnip.chips.focus_stack_keep_mask`: chip-border and valid-range
    rules), projected to image coordinates and merged by
    :func:`~mmsnip.models.test_time_augs.merge.merge_detections`
    (``tta_cfg``: NMS or soft-NMS, optional box voting, see
    ``docs/merge.md``).

    Masks: if the detector predicts masks (Mask R-CNN inside ``AutoFocus``),
    each chip's masks (pasted by mmdet at the chip's window in ORIGINAL
    pixels) are pasted into the image for the merged detections only;
    results carry ``masks`` ``(K, H, W)`` of the ORIGINAL image.

    Each prediction carries in its metainfo ``pixels_per_scale``
    (network-input pixels, padding excluded), ``pixels``,
    ``chips_per_scale`` and ``stage_seconds``, the image's wall time per
    stage:

    - ``crop_resize``: cutting and resizing the chips on the device, and
      the data preprocessor (normalise, pad, batch);
    - ``detector``: the AutoFocus forward pass (backbone, detector heads
      incl. mmdet's mask pasting);
    - ``focus_map``: the FocusPixel head on the shared features and moving
      its maps to the host;
    - ``chip_generation``: Algorithm 2 and merging chips (or the oracle);
    - ``merge``: mapping detections to the image, focus-stack pruning,
      :func:`merge_detections` and pasting the kept masks.

    With a threshold that selects every pixel, every FocusChip is the whole
    image and the result equals ``SnipTTAModel`` on the same scales (masks
    included).

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
        tta_cfg (dict): Merge settings, :class:`MergeConfig`.
        max_pad_ratio (float): Chips of a scale are batched by shape; a
            batch pads at most this fraction of its real pixels
            (:func:`mmsnip.chips.group_by_shape`).
        max_batch (int, optional): At most this many chips per forward.
        rpn_proposals_per_mpix (float, optional): Two-stage detectors: RPN
            proposals per million input pixels of a batch's largest chip,
            at least ``min_rpn_proposals`` and at most the detector's own
            ``test_cfg.rpn`` (:func:`proposal_budget`). ``None``: the
            detector's budget for every chip.
        min_rpn_proposals (int): Floor of that budget.
    """
    STAGES = ('focus_map', 'chip_generation', 'crop_resize', 'detector',
              'merge')

    def __init__(self,
                 scales: Sequence[dict],
                 max_chips: int = 32,
                 border_tol: float = 1.0,
                 oracle: bool = False,
                 tta_cfg: Optional[dict] = None,
                 max_pad_ratio: float = 0.3,
                 max_batch: Optional[int] = 16,
                 rpn_proposals_per_mpix: Optional[float] = None,
                 min_rpn_proposals: int = 100,
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
        self.max_pad_ratio, self.max_batch = max_pad_ratio, max_batch
        group_by_shape([], max_pad_ratio, max_batch)  # validates both
        check_proposal_budget(self.module, rpn_proposals_per_mpix,
                              type(self).__name__)
        self.rpn_proposals_per_mpix = rpn_proposals_per_mpix
        self.min_rpn_proposals = min_rpn_proposals
        self.border_tol = border_tol
        self.oracle = oracle
        self.tta_cfg = ConfigDict(tta_cfg or dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        self.merge_cfg = MergeConfig.from_dict(self.tta_cfg)

    def merge_preds(self, data_samples_list):  # pragma: no cover
        raise NotImplementedError('AutoFocusTTAModel runs its own cascade')

    @torch.no_grad()
    def test_step(self, data: dict) -> List[DetDataSample]:
        inputs, samples = data['inputs'], data['data_samples']
        if isinstance(inputs, Tensor):
            inputs = list(inputs)
        return [self.cascade(img, sample)
                for img, sample in zip(inputs, samples)]

    def cascade(self, image: Tensor, sample: DetDataSample) -> DetDataSample:
        """AutoFocus on one image (``(C, H, W)`` at its original size)."""
        if self.module.focus_head_loaded is False and not self.oracle:
            raise RuntimeError(
                'AutoFocusTTAModel: the loaded checkpoint has no FocusPixel '
                'head weights (focus_head.*), e.g. a plain detector '
                'checkpoint: its focus maps would be noise. Test an '
                'AutoFocus-trained checkpoint, or the full pyramid '
                '(SnipTTAModel), or FocusChips from ground truth '
                '(oracle=True)')
        meta = sample.metainfo
        img_h, img_w = image.shape[-2:]
        device = next(self.module.parameters()).device
        timer = StageTimer(device, self.STAGES)
        with timer('crop_resize'):
            image = image.to(device)
        chips = np.array([[0, 0, img_w, img_h]], np.float64)
        boxes, scores, labels = [], [], []
        masks = MaskPaster((img_h, img_w), device)
        pixels, counts = [], []
        stride = self.module.focus_head.stride
        for s, scale in enumerate(self.scales):
            counts.append(len(chips))
            if not len(chips):
                pixels.append(0)
                continue
            factor = scale.spec.factor_for(img_h, img_w)
            with timer('crop_resize'):
                crops = [crop_resize(image, c, factor) for c in chips]
            pixels.append(
                int(sum(c.image.shape[-2] * c.image.shape[-1]
                        for c in crops)))
            results, focus = self.detect_chips(crops, meta, timer)
            with timer('merge'):
                dets = detections_in_image(results, crops, rescaled=True)
                for chip, crop, result, (b, sc, lb) in zip(
                        chips, crops, results, dets):
                    keep = focus_stack_keep_mask(
                        b.float().cpu().numpy(), chip, (img_h, img_w),
                        scale.spec.valid_range, self.border_tol)
                    keep = torch.from_numpy(keep).to(b.device)
                    boxes.append(b[keep])
                    scores.append(sc[keep])
                    labels.append(lb[keep])
                    add_masks(masks, result, keep, crop.origin)
            if s + 1 == len(self.scales):
                break
            if self.oracle:
                with timer('chip_generation'):
                    chips = self._oracle_chips(sample, factor, scale,
                                               self.scales[s + 1], stride,
                                               (img_h, img_w))
                continue
            with timer('focus_map'):
                maps = [m.float().cpu().numpy() for m in focus]
            with timer('chip_generation'):
                chips = self._next_chips(maps, crops, factor, scale,
                                         self.scales[s + 1], stride,
                                         (img_h, img_w))
        with timer('merge'):
            pred = merge_detections(boxes, scores, labels, self.merge_cfg,
                                    masks=masks if masks.parts else None)
        result = DetDataSample(metainfo=meta)
        result.set_metainfo(dict(pixels_per_scale=pixels,
                                 pixels=sum(pixels), chips_per_scale=counts,
                                 stage_seconds=timer.seconds))
        result.pred_instances = pred
        return result

    def detect_chips(self, crops: List[Crop], meta: dict,
                     timer: 'StageTimer'):
        """Detections and FocusPixel maps of the crops of one scale.

        Crops are batched by shape (:func:`mmsnip.chips.group_by_shape`:
        a batch pads to its largest crop, with at most ``max_pad_ratio``
        extra pixels and ``max_batch`` crops), each batch one
        ``predict_with_focus`` pass, timed by ``timer``.

        Returns:
            tuple: per crop, in the order of ``crops``: the prediction
            (``rescale=True``: boxes in the crop's window, ORIGINAL
            pixels) and its ``(ceil(h / s), ceil(w / s))`` FocusPixel
            probabilities (padding dropped; ``s`` the head's stride).
        """
        stride = self.module.focus_head.stride
        results, maps = [None] * len(crops), [None] * len(crops)
        shapes = [c.image.shape[-2:] for c in crops]
        for group in group_by_shape(shapes, self.max_pad_ratio,
                                    self.max_batch):
            part = [crops[i] for i in group]
            with timer('crop_resize'):
                data = pack_crops(self.module, part, meta)
            with proposal_budget(self.module, part,
                                 self.rpn_proposals_per_mpix,
                                 self.min_rpn_proposals):
                out, focus = self.module.predict_with_focus(
                    data['inputs'], data['data_samples'], rescale=True,
                    timer=timer)
            for i, result, prob in zip(group, out, focus):
                h, w = shapes[i]
                results[i] = result
                maps[i] = prob[:-(-h // stride), :-(-w // stride)]
        return results, maps

    def _next_chips(self, maps: List[np.ndarray], crops: List[Crop], factor,
                    scale, next_scale, stride, img_hw) -> np.ndarray:
        """FocusChips (ORIGINAL pixels) of the next scale from every chip's
        FocusPixel map (per chip ``(ceil(h / stride), ceil(w / stride))``
        probabilities), merged across chips until none overlap."""
        img_h, img_w = img_hw
        next_factor = next_scale.spec.factor_for(img_h, img_w)
        min_size = scale.min_size * factor / next_factor
        found = []
        for prob, (crop, (x0, y0), (fx, fy)) in zip(maps, crops):
            h, w = crop.shape[-2:]
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


def pack_crops(module, crops: List[Crop], meta: dict) -> dict:
    """Preprocess crops from :func:`crop_resize` into one padded batch.

    Each crop's metainfo says ``img_shape`` (the crop), ``scale_factor``
    and ``ori_shape`` = its window in ORIGINAL pixels, so a prediction with
    ``rescale=True`` gives boxes (and mmdet-pasted masks) in the window's
    ORIGINAL pixels.

    Args:
        module: The detector (its ``data_preprocessor`` normalises and pads).
        crops (list[Crop]): From :func:`crop_resize`.
        meta (dict): The image's metainfo (``img_id``, ``img_path``...).
    """
    samples = [
        DetDataSample(metainfo=dict(
            meta, img_shape=tuple(crop.shape[-2:]), scale_factor=f,
            ori_shape=Crop(crop, o, f).window_hw))
        for crop, o, f in crops
    ]
    return module.data_preprocessor(
        dict(inputs=[c for c, _, _ in crops], data_samples=samples), False)


def detections_in_image(results: List[DetDataSample],
                        crops: List[Crop],
                        rescaled: bool = False) -> list:
    """Per crop ``(boxes, scores, labels)``, boxes in ORIGINAL pixels.

    Args:
        results (list[DetDataSample]): Predictions on the crops' batch
            from :func:`pack_crops`.
        crops (list[Crop]): The crops.
        rescaled (bool): The predictions were made with ``rescale=True``
            (boxes in the window's ORIGINAL pixels: only shifted here);
            otherwise they are in network-input pixels and also divided by
            the crop's factors.
    """
    out = []
    for (_, (x0, y0), (fx, fy)), result in zip(crops, results):
        pred = result.pred_instances
        boxes = get_box_tensor(pred.bboxes)
        if not rescaled:
            boxes = boxes / boxes.new_tensor([fx, fy, fx, fy])
        offset = boxes.new_tensor([x0, y0, x0, y0])
        out.append((boxes + offset, pred.scores, pred.labels))
    return out


def add_masks(paster: MaskPaster, result: DetDataSample,
              keep: Optional[Tensor],
              origin: Tuple[int, int] = (0, 0),
              flip_direction: Optional[str] = None) -> None:
    """Hand a part's kept masks to ``paster``, if its detector made masks.

    Args:
        paster (MaskPaster): The image's paster.
        result (DetDataSample): The part's prediction (``rescale=True``:
            masks in the window's ORIGINAL pixels).
        keep (Tensor, optional): Bool ``(N,)`` or indices of its kept
            detections; None keeps all.
        origin, flip_direction: See :meth:`MaskPaster.add`.
    """
    pred = result.pred_instances
    if 'masks' not in pred:
        if paster.parts:
            raise ValueError('detections of one image come with and without '
                             'masks; every part must come from the same '
                             'detector')
        return
    masks = pred.masks
    if not isinstance(masks, Tensor):  # BitmapMasks and the like
        masks = masks.to_tensor(torch.bool, get_box_tensor(pred.bboxes).device)
    expected = tuple(result.metainfo['ori_shape'][:2])
    if tuple(masks.shape[-2:]) != expected:
        raise ValueError(
            f'masks of {result.metainfo.get("img_path")} are '
            f'{tuple(masks.shape[-2:])}, expected the window {expected}: '
            'predict with rescale=True')
    paster.add(masks, keep, origin, flip_direction)
