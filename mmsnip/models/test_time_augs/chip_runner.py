# Copyright (c) mmsnip contributors. All rights reserved.
"""Running a detector on windows of images: the chip runner.

Every chip-based test mode (``AutoFocusTTAModel``, ``SlicedTTAModel``, the
SAHI peer of :mod:`mmsnip.apis.sahi_peer`, the benchmark's detector limit)
does the same steps, here once:

1. :func:`crop_resize`: cut a window of the ORIGINAL image on its device
   and resize it (rounded to the uint8 grid like an OpenCV test pipeline);
2. :class:`ChipRunner`: group crops by shape
   (:func:`mmsnip.chips.group_by_shape`), :func:`pack_crops` each group
   (normalise, pad), run the detector under the RPN budget
   (:func:`proposal_budget`) and the per-chip detection cap
   (:func:`~.view_cap.view_cap`), and hand back, per crop in input order,
   the prediction and (for an ``AutoFocus`` detector) its FocusPixel map;
3. :func:`detections_in_image`: boxes back to ORIGINAL pixels.

Crops of several images can share a batch (``ChipRunner.run`` takes one
metainfo per crop). :class:`StageTimer` charges wall time to stages.
"""
import time
from contextlib import contextmanager, nullcontext
from typing import (Dict, List, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.logging import print_log
from torch import Tensor

from mmsnip.chips import Windows, group_by_shape
from mmsnip.models.branches import one_image_per_pass
from mmsnip.utils.checks import UserInputError, check_number, is_integer
from .view_cap import check_view_cap, inner_detector, view_cap


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


def check_one_view(samples: Sequence, owner: str) -> None:
    """The chip-based test modes take each image once, whole: a test
    batch of one ``DetDataSample`` per image. A ``tta_pipeline`` with a
    ``TestTimeAug`` (the SNIP pyramid's, kept from a SNIPER base) packs
    several views of each image instead: ``samples`` is then one tuple of
    samples per view.

    Args:
        samples (Sequence): ``data['data_samples']`` of a test batch.
        owner (str): The test-time model, for the message.

    Raises:
        UserInputError: Naming the number of views and the fix.
    """
    if samples and isinstance(samples[0], (list, tuple)):
        raise UserInputError(
            f'{owner}: the tta_pipeline makes {len(samples)} views of each '
            'image (a TestTimeAug, e.g. snip_tta_pipeline of the SNIPER '
            f'base, for SnipTTAModel), but {owner} takes each image once, '
            'whole, and resizes its chips itself: set tta_pipeline = '
            '{{_base_.chip_tta_pipeline}} (configs/_base_/autofocus/'
            'chip_test.py)')


def check_whole_image(image: Tensor, meta: dict, owner: str) -> None:
    """The chip-based test modes cut their windows from the image as the
    test pipeline loaded it and report the boxes in its pixels as the
    image's (ORIGINAL pixels, which ``CocoMetric`` and the result files
    assume): the image must be the whole image as it is, unresized,
    unpadded and unflipped.

    Args:
        image (Tensor): ``(C, H, W)``, as the pipeline packed it.
        meta (dict): Its metainfo (``ori_shape``, ``img_path``,
            ``flip``); without ``ori_shape`` nothing is checked.
        owner (str): The test-time model, for the message.

    Raises:
        ValueError: The pipeline resized, padded or flipped the image,
            naming it and the fix.
    """
    ori = meta.get('ori_shape')
    h, w = (int(v) for v in image.shape[-2:])
    changed = []
    if ori is not None and tuple(int(v) for v in ori[:2]) != (h, w):
        changed.append(f'is {w} x {h} as packed (resized or padded by '
                       'the tta_pipeline)')
    if meta.get('flip'):
        changed.append(f'was flipped ({meta.get("flip_direction")}) by '
                       'the tta_pipeline')
    if not changed:
        return
    oh, ow = (int(v) for v in ori[:2]) if ori is not None else (h, w)
    raise UserInputError(
        f'{owner}: {meta.get("img_path") or "an image"} ({ow} x {oh}) '
        + ' and '.join(changed) + f': {owner} cuts its chips from the '
        'image as packed and reports their boxes as the image\'s, so they '
        "would be in other pixels than the image's. Load and pack the "
        'whole image as it is: no Resize, Pad or RandomFlip in '
        'tta_pipeline (tta_pipeline = {{_base_.chip_tta_pipeline}} of '
        'configs/_base_/autofocus/chip_test.py); the model resizes its '
        'chips itself')


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
    cfg = inner_detector(module).rpn_head.test_cfg
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
    detector = inner_detector(module)
    if not per_mpix > 0:
        raise UserInputError(f'{owner}: rpn_proposals_per_mpix must be > 0, '
                             f'got {per_mpix}')
    if getattr(getattr(detector, 'rpn_head', None), 'test_cfg',
               None) is None:
        raise TypeError(f'{owner}: rpn_proposals_per_mpix needs a '
                        'two-stage detector with an rpn_head, got '
                        f'{type(detector).__name__}')


def pack_crops(module, crops: List[Crop],
               meta: Union[dict, Sequence[dict]]) -> dict:
    """Preprocess crops from :func:`crop_resize` into one padded batch.

    Each crop's metainfo says ``img_shape`` (the crop), ``scale_factor``
    and ``ori_shape`` = its window in ORIGINAL pixels, so a prediction with
    ``rescale=True`` gives boxes (and mmdet-pasted masks) in the window's
    ORIGINAL pixels.

    Args:
        module: The detector (its ``data_preprocessor`` normalises and pads).
        crops (list[Crop]): From :func:`crop_resize`.
        meta (dict | list[dict]): The image's metainfo (``img_id``,
            ``img_path``...), or one per crop (crops of several images).
    """
    metas = [meta] * len(crops) if isinstance(meta, dict) else list(meta)
    if len(metas) != len(crops):
        raise ValueError(f'pack_crops: {len(crops)} crops but {len(metas)} '
                         'metainfo dicts')
    samples = [
        DetDataSample(metainfo=dict(
            m, img_shape=tuple(crop.shape[-2:]), scale_factor=f,
            ori_shape=Crop(crop, o, f).window_hw))
        for (crop, o, f), m in zip(crops, metas)
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


class ChipRunner:
    """Runs a detector on crops, batched by shape, under an RPN budget
    and (optionally) another per-image detection cap.

    Args:
        module: The detector (an ``AutoFocus`` for ``with_focus=True``).
        with_focus (bool): Call ``predict_with_focus`` and return the
            FocusPixel maps too; else ``predict``.
        max_pad_ratio (float, optional): Crops are batched by shape
            (:func:`mmsnip.chips.group_by_shape`, largest first); a batch
            pads at most this fraction of its real pixels. ``None``: crops
            are batched in their input order, ``max_batch`` at a time
            (uniform tiles).
        max_batch (int, optional): At most this many crops per forward;
            1 for TridentNet testing with every branch, which merges the
            branches of one image per forward pass only
            (:func:`mmsnip.models.branches.one_image_per_pass`; logged).
        rpn_proposals_per_mpix (float, optional): :func:`proposal_budget`.
        min_rpn_proposals (int): Floor of that budget.
        view_max_per_img (int, optional): The detector's per-image cap
            while it runs on the crops (:func:`~.view_cap.view_cap`): an
            int, -1 for none; ``None``: the detector's own.
        rescale (bool): Predict with ``rescale=True`` (boxes in the window's
            ORIGINAL pixels, masks pasted by mmdet) or in network pixels.
        owner (str): Named in errors.
        batch_key (str): The owner's config key of ``max_batch``, named in
            its error (``SlicedTTAModel``: ``batch_size``).
    """

    def __init__(self, module, with_focus: bool = False,
                 max_pad_ratio: Optional[float] = 0.3,
                 max_batch: Optional[int] = 16,
                 rpn_proposals_per_mpix: Optional[float] = None,
                 min_rpn_proposals: int = 100, rescale: bool = True,
                 owner: str = 'ChipRunner',
                 view_max_per_img: Optional[int] = None,
                 batch_key: str = 'max_batch'):
        if with_focus and not hasattr(module, 'predict_with_focus'):
            raise TypeError(
                f'{owner} needs an AutoFocus detector (with a FocusPixel '
                f'head), got {type(module).__name__}; use SnipTTAModel for '
                'the full pyramid without one')
        if max_batch is not None and not (is_integer(max_batch)
                                          and max_batch >= 1):
            raise UserInputError(
                f'{owner}: tta_model.{batch_key} must be an integer >= 1 '
                f'(chips per forward pass) or None (no limit), got '
                f'{max_batch!r}')
        if max_pad_ratio is not None:  # NaN would batch every chip alone
            max_pad_ratio = check_number(
                max_pad_ratio, f'{owner}: tta_model.max_pad_ratio', 0)
        check_proposal_budget(module, rpn_proposals_per_mpix, owner)
        check_view_cap(module, view_max_per_img, owner)
        if max_batch != 1 and one_image_per_pass(module):
            max_batch = 1
            print_log(
                f'{owner}: {type(inner_detector(module)).__name__} tests '
                'with every branch (test_branch_idx=-1), whose merge is '
                'right for one image per forward pass only: one chip per '
                f'pass (tta_model.{batch_key} not used)', logger='current')
        self.owner, self.view_max_per_img = owner, view_max_per_img
        self.module, self.with_focus = module, with_focus
        self.max_pad_ratio, self.max_batch = max_pad_ratio, max_batch
        self.rpn_proposals_per_mpix = rpn_proposals_per_mpix
        self.min_rpn_proposals = min_rpn_proposals
        self.rescale = rescale

    def _groups_of_one(self, crops: Sequence[Crop]) -> List[np.ndarray]:
        if self.max_pad_ratio is None:
            step = self.max_batch or max(len(crops), 1)
            return [np.arange(i, min(i + step, len(crops)))
                    for i in range(0, len(crops), step)]
        return group_by_shape([c.image.shape[-2:] for c in crops],
                              self.max_pad_ratio, self.max_batch)

    def groups(self, crops: Sequence[Crop],
               owners: Optional[Sequence[int]] = None) -> List[np.ndarray]:
        """Index arrays into ``crops``, one per forward pass.

        Each image's crops (``owners[i]``: the image of crop ``i``; default
        all one image) are grouped on their own, exactly as in a batch of
        one image; groups of different images are then fused into one
        forward pass only where that changes nothing for any crop: the same
        padded shape (largest ``h`` and ``w``), the same RPN budget
        (largest crop area) and together at most ``max_batch`` crops.

        Example:
            Image 0 with crops 256 x 256 and 128 x 128, image 1 with one
            256 x 256 crop (``max_pad_ratio=0``): passes ``[0, 2]`` (both
            256 x 256) and ``[1]``.
        """
        owners = np.zeros(len(crops), np.int64) if owners is None else \
            np.asarray(owners, np.int64)
        per_image = []
        for img in dict.fromkeys(owners.tolist()):
            idx = np.flatnonzero(owners == img)
            per_image += [idx[g] for g in self._groups_of_one(
                [crops[j] for j in idx])]
        if len(set(owners.tolist())) <= 1:
            return per_image
        fused, open_by_key = [], {}
        for group in per_image:
            shapes = np.array([tuple(crops[j].image.shape[-2:])
                               for j in group])
            key = (int(shapes[:, 0].max()), int(shapes[:, 1].max()),
                   int((shapes[:, 0] * shapes[:, 1]).max()))
            at = open_by_key.get(key)
            if at is not None and (self.max_batch is None or len(
                    fused[at]) + len(group) <= self.max_batch):
                fused[at] = np.concatenate([fused[at], group])
            else:
                open_by_key[key] = len(fused)
                fused.append(group)
        return fused

    def run(self, crops: Sequence[Crop], metas: Union[dict, Sequence[dict]],
            timer=None, owners: Optional[Sequence[int]] = None,
            with_focus: Optional[bool] = None) -> Tuple[list, list]:
        """Predictions (and FocusPixel maps) of ``crops``.

        Args:
            crops (list[Crop]): From :func:`crop_resize`, of one or several
                images.
            metas (dict | list[dict]): The image's metainfo, or one per
                crop.
            owners (list[int], optional): Per crop, its image (for
                :meth:`groups`); default: all crops of one image.
            timer (StageTimer, optional): Charged ``crop_resize``
                (packing), ``detector`` and ``focus_map``.
            with_focus (bool, optional): This call only: False skips the
                FocusPixel head of a ``with_focus`` runner (maps ``None``);
                None: the runner's ``with_focus``.

        Returns:
            tuple: per crop, in the order of ``crops``: the prediction and
            (``with_focus``) its ``(ceil(h / s), ceil(w / s))`` float
            FocusPixel probability tensor (padding dropped; ``s`` the
            head's stride), else ``None``.
        """
        timer = timer or (lambda stage: nullcontext())
        if with_focus is None:
            with_focus = self.with_focus
        elif with_focus and not self.with_focus:
            raise ValueError('ChipRunner.run: with_focus=True needs a '
                             'runner built with with_focus=True')
        metas = [metas] * len(crops) if isinstance(metas, dict) else metas
        results, maps = [None] * len(crops), [None] * len(crops)
        for group in self.groups(crops, owners):
            part = [crops[i] for i in group]
            with timer('crop_resize'):
                data = pack_crops(self.module, part, [metas[i] for i in group])
            with proposal_budget(self.module, part,
                                 self.rpn_proposals_per_mpix,
                                 self.min_rpn_proposals), \
                    view_cap(self.module, self.view_max_per_img,
                             self.owner):
                if with_focus:
                    out, focus = self.module.predict_with_focus(
                        data['inputs'], data['data_samples'],
                        rescale=self.rescale, timer=timer)
                else:
                    with timer('detector'):
                        out = self.module.predict(data['inputs'],
                                                  data['data_samples'],
                                                  rescale=self.rescale)
                    focus = [None] * len(out)
            stride = self.module.focus_head.stride if with_focus else 1
            for i, result, prob in zip(group, out, focus):
                results[i] = result
                if prob is not None:
                    h, w = crops[i].image.shape[-2:]
                    maps[i] = prob[:-(-h // stride), :-(-w // stride)]
        return results, maps


def windows_of(crops: Sequence[Crop]) -> Windows:
    """The crops' :class:`~mmsnip.chips.Windows` (numpy, for the planner).
    """
    return Windows(
        origins=np.array([c.origin for c in crops], np.float64).reshape(-1, 2),
        factors=np.array([c.factors for c in crops],
                         np.float64).reshape(-1, 2),
        shapes=np.array([tuple(c.image.shape[-2:]) for c in crops],
                        np.int64).reshape(-1, 2))
