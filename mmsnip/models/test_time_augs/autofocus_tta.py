# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus coarse-to-fine inference (Sec. 3.4, Algorithm 2, Fig. 11).

The loop only: planning is :mod:`mmsnip.chips.focus_plan`, running chips is
:mod:`.chip_runner`, merging and masks :mod:`.merge`. The names re-exported
below from those modules keep old imports working; import them from their
homes in new code.
"""
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel
from torch import Tensor

from mmsnip.chips import (CascadeTrace, FocusScale, ScaleTrace, cap_chips,
                          cascade_limits, cascade_size_gaps, focus_recall,
                          focus_scales,
                          plan_next_chips, plan_oracle_chips,
                          stack_keep_masks)
from mmsnip.chips.focus_plan import TRANSITION_KEYS
from mmsnip.registry import MODELS
from mmsnip.utils.checks import UserInputError
from ..input_sizes import InputViews, cascade_views
from .chip_runner import (ChipRunner, Crop, StageTimer, check_one_view,
                          check_whole_image, crop_resize,
                          detections_in_image, windows_of)
from .merge import MaskPaster, MergeConfig, add_masks, merge_detections


def _runner_setting(name: str) -> property:
    """A property reading and writing ``self.runner.<name>``."""
    return property(lambda self: getattr(self.runner, name),
                    lambda self, value: setattr(self.runner, name, value),
                    doc=f'The chip runner\'s ``{name}``.')


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
    ``chips_per_scale``, with ground truth in the test sample
    ``focus_recall`` (per transition ``[needed, covered]`` objects,
    :func:`mmsnip.chips.focus_recall`) and ``stage_seconds``, the image's
    wall time per stage:

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

    The FocusPixel head runs only where its maps are used: on scales whose
    maps plan the next scale's chips. Not on the finest scale, not with
    ``oracle``, not on a scale whose threshold selects every pixel (``t =
    0`` inclusive: any map plans the same chips), unless ``trace`` asks
    for the maps; a one-scale cascade never runs it.

    The wrapped module must be an ``AutoFocus`` detector. Test pipeline:
    load the image and pack it unresized (``tta_pipeline`` of the AutoFocus
    configs).

    Structure: this class is only the loop. The planner
    (:mod:`mmsnip.chips.focus_plan`: FocusChips across chips, the cap,
    stacking masks; pure numpy) decides, the chip runner
    (:class:`~mmsnip.models.test_time_augs.chip_runner.ChipRunner`: crop
    on the device, resize, group by shape, pack, predict under the RPN
    budget) runs. The chips of every image of a batch at one scale run
    together: each image's chips are grouped as for a batch of one, and
    groups of different images share a forward pass where they have the
    same padded shape and RPN budget (:meth:`ChipRunner.groups`), so per
    image the result is that of a batch of one.
    :meth:`predict_cascade` with ``trace=True`` also returns, per image, a
    :class:`~mmsnip.chips.CascadeTrace` (per scale: chips, windows, maps,
    detections, keep masks, next chips) that ``tools/visualize_autofocus.py``
    draws. With a batch of several images, ``stage_seconds`` are the
    batch's seconds shared equally (exact for one image per batch).

    Args:
        scales (list[dict]): Coarse to fine: ``ScaleSpec`` fields plus the
            FocusChip settings of :class:`~mmsnip.chips.FocusScale`:
            ``threshold`` (t, in [0, 1]), ``dilation`` (d),
            ``min_size`` (k, in the NEXT scale's pixels; this scale's
            with ``min_size_frame='current'``, the original code),
            ``inclusive_threshold`` (``>= t``) and ``border_tol`` (this
            scale's stacking tolerance; default the ``border_tol`` below).
            Validated at build time: an error names ``scales[i]`` and the
            field.
        max_chips (int, optional): At most this many FocusChips per scale
            and image, the largest kept (:func:`~mmsnip.chips.cap_chips`).
            ``None`` (default, the paper): no cap. A cap that drops chips
            is logged (once per model) and counted in every prediction's
            metainfo ``focus_chips_dropped`` (per transition); the objects
            only the dropped chips held are lost (``focus_recall``).
        border_tol (float): Focus-stacking border tolerance, ORIGINAL px,
            of scales without their own: 0 (default, the paper: a
            detection touching a chip side not on the image border is
            pruned); the original code used 10; the demo and aerial
            configs set 1 (their published numbers).
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
            ``test_cfg.rpn`` (:func:`.chip_runner.proposal_budget`).
            ``None``: the detector's budget for every chip.
        min_rpn_proposals (int): Floor of that budget.
        view_max_per_img (int, optional): The detector's own per-image cap
            (``max_per_img`` of its ``test_cfg``) while it runs on the
            chips (:func:`.view_cap.view_cap`; restored afterwards): an
            int >= 1, or -1 for none (a DETR-family ``topk`` is clamped to
            the number of scores it ranks). Focus stacking's valid
            range then filters each chip's detections before any cap, and
            ``tta_cfg.max_per_img`` caps once, after the merge: the order
            of the released code (the COCO config sets -1). ``None``
            (default): the detector caps each chip before the filter, so
            out-of-range detections can crowd valid ones out (a deviation
            from the released code; the demo's published numbers were
            measured so). A detector without a cap to replace is an error
            when the model is built.
    """
    STAGES = ('focus_map', 'chip_generation', 'crop_resize', 'detector',
              'merge')

    def __init__(self,
                 scales: Sequence[dict],
                 max_chips: Optional[int] = None,
                 border_tol: float = 0.0,
                 oracle: bool = False,
                 tta_cfg: Optional[dict] = None,
                 max_pad_ratio: float = 0.3,
                 max_batch: Optional[int] = 16,
                 rpn_proposals_per_mpix: Optional[float] = None,
                 min_rpn_proposals: int = 100,
                 view_max_per_img: Optional[int] = None,
                 **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        if not hasattr(self.module, 'predict_with_focus'):
            raise TypeError(
                'AutoFocusTTAModel needs an AutoFocus detector (with a '
                f'FocusPixel head), got {type(self.module).__name__}; use '
                'SnipTTAModel for the full pyramid without one')
        self.scales: List[FocusScale] = focus_scales(scales, owner)
        _warn_unused_on_finest(scales, owner)
        self.max_chips, self.border_tol = cascade_limits(max_chips,
                                                         border_tol, owner)
        self._warned_cap = False
        self._warned_gap = False
        self.oracle = bool(oracle)
        self.runner = ChipRunner(
            self.module, with_focus=True, max_pad_ratio=max_pad_ratio,
            max_batch=max_batch,
            rpn_proposals_per_mpix=rpn_proposals_per_mpix,
            min_rpn_proposals=min_rpn_proposals, owner=owner,
            view_max_per_img=view_max_per_img)
        self.tta_cfg = ConfigDict(tta_cfg or dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        self.merge_cfg = MergeConfig.from_dict(self.tta_cfg,
                                               owner=type(self).__name__)

    # The runner's settings, readable and settable here (tests and sweeps
    # change them on a built model).
    max_pad_ratio = _runner_setting('max_pad_ratio')
    max_batch = _runner_setting('max_batch')
    rpn_proposals_per_mpix = _runner_setting('rpn_proposals_per_mpix')
    min_rpn_proposals = _runner_setting('min_rpn_proposals')
    view_max_per_img = _runner_setting('view_max_per_img')

    def merge_preds(self, data_samples_list):  # pragma: no cover
        raise NotImplementedError('AutoFocusTTAModel runs its own cascade')

    def input_views(self, image_shapes, images=None,
                    where: str = 'test_dataloader.dataset',
                    pipeline=None) -> InputViews:
        """The smallest inputs this cascade can feed the detector: the
        whole image at the coarsest scale, the smallest possible FocusChip
        at each later one (:func:`~mmsnip.models.input_sizes.
        cascade_views`).

        Args:
            image_shapes (array): ``(N, 2)`` ``(height, width)`` of the
                test images, ORIGINAL pixels.
            images (Sequence[str], optional): Their names, for messages.
            where (str): The dataset, for messages.
            pipeline (list[dict], optional): The test pipeline config
                (unused: the cascade cuts its inputs from the image as
                loaded).

        Returns:
            InputViews: For
            :func:`~mmsnip.models.input_sizes.tta_input_problem`.
        """
        return cascade_views(image_shapes, self.scales,
                             self.module.focus_head.stride, self.oracle,
                             images, where)

    @torch.no_grad()
    def test_step(self, data: dict) -> List[DetDataSample]:
        inputs, samples = data['inputs'], data['data_samples']
        check_one_view(samples, type(self).__name__)
        if isinstance(inputs, Tensor):
            inputs = list(inputs)
        return self.predict_cascade(inputs, samples)[0]

    def cascade(self, image: Tensor, sample: DetDataSample) -> DetDataSample:
        """AutoFocus on one image (``(C, H, W)`` at its original size)."""
        return self.predict_cascade([image], [sample])[0][0]

    def _check_focus_head(self) -> None:
        """A clear error for a checkpoint without (all of) the FocusPixel
        head's weights, unless the chips come from the ground truth."""
        if self.module.focus_head_loaded is False and not self.oracle:
            missing = getattr(self.module, 'focus_head_missing', None) or []
            hint = ''
            if missing and all(k.startswith('focus_head.conv_1x1.')
                               for k in missing):
                hint = ('; only the hidden 1x1 conv is missing: a '
                        'checkpoint of the one-conv head, load it with '
                        'FocusPixelHead(num_convs=1)')
            raise RuntimeError(
                'AutoFocusTTAModel: the loaded checkpoint has no FocusPixel '
                'head weights (focus_head.*'
                + (f'; missing {", ".join(missing)}' if missing else '')
                + hint
                + '), e.g. a plain detector checkpoint: its focus maps '
                'would be noise. Test an AutoFocus-trained checkpoint, or the '
                'full pyramid (SnipTTAModel), or FocusChips from ground truth '
                '(oracle=True)')

    def _check_ground_truth(self, sample: DetDataSample) -> None:
        """``oracle``: the sample must carry its ground truth boxes
        (``gt_instances.bboxes``; none for an image without objects)."""
        if 'gt_instances' in sample and 'bboxes' in sample.gt_instances:
            return
        raise UserInputError(
            f'{type(self).__name__}: oracle=True plans the FocusChips from '
            'the ground truth, but '
            f'{sample.metainfo.get("img_path") or "an image"} has no ground '
            'truth in its test sample: the tta_pipeline loads no '
            "annotations; add dict(type='LoadAnnotations', with_bbox=True) "
            'before PackDetInputs (as chip_tta_pipeline of '
            'configs/_base_/autofocus/chip_test.py), or set oracle=False '
            '(images without annotations, MultiScaleInferencer)')

    @torch.no_grad()
    def predict_cascade(self, images: Sequence[Tensor],
                        samples: Sequence[DetDataSample],
                        trace: bool = False
                        ) -> Tuple[List[DetDataSample],
                                   Optional[List[CascadeTrace]]]:
        """The cascade on a batch of images, their chips run together.

        Per scale: cut every image's chips (:func:`crop_resize`), run them
        all (:class:`ChipRunner`), then per image stack the detections
        (:func:`~mmsnip.chips.stack_keep_masks`) and plan the next chips
        (:func:`~mmsnip.chips.plan_next_chips`, or
        :func:`~mmsnip.chips.plan_oracle_chips`); finally merge per image.

        Args:
            images (list[Tensor]): ``(C, H_i, W_i)`` each, ORIGINAL size.
            samples (list[DetDataSample]): Their metainfo (and
                ``gt_instances`` for ``oracle``).
            trace (bool): Also return what the cascade did.

        Returns:
            tuple: one merged ``DetDataSample`` per image (ORIGINAL pixels;
            metainfo ``pixels_per_scale``, ``pixels``, ``chips_per_scale``,
            ``stage_seconds``) and, with ``trace``, one
            :class:`~mmsnip.chips.CascadeTrace` per image (else ``None``).
        """
        self._check_focus_head()
        for image, sample in zip(images, samples):
            check_whole_image(image, sample.metainfo, type(self).__name__)
            if self.oracle:
                self._check_ground_truth(sample)
        device = next(self.module.parameters()).device
        timer = StageTimer(device, self.STAGES)
        with timer('crop_resize'):
            runs = [_ImageRun(image.to(device), sample,
                              self.module.focus_head.stride, self.oracle,
                              trace) for image, sample in zip(images, samples)]
        for run in runs:
            self._warn_size_gaps(run)
        for s, scale in enumerate(self.scales):
            crops, owners = [], []
            with timer('crop_resize'):
                for i, run in enumerate(runs):
                    run.factor = scale.spec.factor_for(*run.hw)
                    mine = [crop_resize(run.image, c, run.factor)
                            for c in run.chips]
                    run.counts.append(len(mine))
                    run.chips_run.append(run.chips)
                    run.pixels.append(int(sum(c.image.shape[-2] *
                                              c.image.shape[-1]
                                              for c in mine)))
                    crops += mine
                    owners += [i] * len(mine)
            if not crops:
                continue
            # The FocusPixel head only where its maps are used: planning the
            # next scale's chips from them (not after the finest scale, not
            # from ground truth, not when t = 0 inclusive selects every
            # cell whatever the map) and the trace.
            needs_maps = trace or (
                not self.oracle and s + 1 < len(self.scales)
                and not scale.selects_every_pixel)
            results, maps = self.runner.run(
                crops, [runs[i].sample.metainfo for i in owners], timer,
                owners, with_focus=needs_maps)
            owners = np.array(owners)
            for i, run in enumerate(runs):
                idx = np.flatnonzero(owners == i)
                if not len(idx):
                    continue
                part = ([crops[j] for j in idx], [results[j] for j in idx],
                        [maps[j] for j in idx])
                self._stack(run, scale, *part, timer)
                if s + 1 < len(self.scales):
                    self._plan(run, s, part[0], part[2], timer)
        out = []
        for run in runs:
            with timer('merge'):
                pred = merge_detections(
                    run.boxes, run.scores, run.labels, self.merge_cfg,
                    masks=run.masks if run.masks.parts else None)
            out.append(run.result(pred, self.scales))
        shared = {k: v / max(len(runs), 1) for k, v in timer.seconds.items()}
        for result in out:
            result.set_metainfo(dict(stage_seconds=dict(shared)))
        return out, [run.trace for run in runs] if trace else None

    def _warn_size_gaps(self, run: '_ImageRun') -> None:
        """Warn (once per model) of object sizes this image's cascade can
        never detect: no scale both reaches and keeps them
        (:func:`~mmsnip.chips.cascade_size_gaps`; the valid ranges against
        the FocusPixel sizes ``(a, b)`` at this image's factors)."""
        if self._warned_gap:
            return
        factors = [scale.spec.factor_for(*run.hw) for scale in self.scales]
        gaps = cascade_size_gaps(factors,
                                 [s.spec.valid_range for s in self.scales],
                                 self.module.focus_head.rule)
        if not gaps:
            return
        self._warned_gap = True
        rule = self.module.focus_head.rule
        lines = []
        for gap in gaps:
            s = gap.scale
            lo, hi = self.scales[s].spec.valid_range
            fix = (f'lower its lower end to at most {gap.lo:.4g}'
                   if gap.hi <= lo else
                   f'raise its upper end to at least {gap.hi:.4g}')
            lines.append(
                f'{gap.lo:.4g}-{gap.hi:.4g} px: scales[{s}] (factor '
                f'{factors[s]:.4g}) reaches them but keeps only '
                f'valid_range ({lo:g}, {hi:g}) ({fix})')
        h, w = run.hw
        print_log(
            f'{type(self).__name__}: objects of these sizes (sqrt(area), '
            'ORIGINAL px) are lost whatever the FocusPixel maps predict in '
            f'{run.sample.metainfo.get("img_path") or "an image"} ({w}x{h}): '
            + '; '.join(lines) + '. A scale hands on to the next only '
            f'objects of {rule.a:g}-{rule.b:g} px at its factor '
            '(FocusPixelHead.thresholds a, b, CHIP px), so its valid range '
            'must start at or below b / factor; the training ranges often '
            'do not (the released AutoFocus code tests COCO with (75, inf), '
            '(32, 180), (0, 75)). Reported once; images of other sizes may '
            'lose other bands (mmsnip.chips.cascade_size_gaps).',
            logger='current', level=logging.WARNING)

    def _stack(self, run: '_ImageRun', scale: FocusScale, crops: List[Crop],
               results: list, maps: list, timer: StageTimer) -> None:
        """Focus stacking of one image's chips at a scale (Sec. 3.4.3): the
        kept detections and masks go to ``run``; the trace records the
        scale."""
        tol = self.border_tol if scale.border_tol is None else \
            scale.border_tol
        with timer('merge'):
            found = detections_in_image(results, crops, rescaled=True)
            keeps = stack_keep_masks(
                [b.float().cpu().numpy() for b, _, _ in found], run.chips,
                run.hw, scale.spec.valid_range, tol)
            for crop, result, (b, sc, lb), keep in zip(crops, results, found,
                                                       keeps):
                keep = torch.from_numpy(keep).to(b.device)
                run.boxes.append(b[keep])
                run.scores.append(sc[keep])
                run.labels.append(lb[keep])
                add_masks(run.masks, result, keep, crop.origin)
        if run.trace is not None:
            win = windows_of(crops)
            run.trace.scales.append(ScaleTrace(
                factor=run.factor, chips=run.chips.copy(),
                origins=win.origins, factors=win.factors, crop_hw=win.shapes,
                focus=[m.float().cpu().numpy() for m in maps],
                dets=[(b.detach().float().cpu().numpy(),
                       sc.detach().float().cpu().numpy(),
                       lb.detach().cpu().numpy().astype(np.int64))
                      for b, sc, lb in found],
                keep=keeps))

    def _plan(self, run: '_ImageRun', s: int, crops: List[Crop], maps: list,
              timer: StageTimer) -> None:
        """The chips scale ``s + 1`` runs on for one image (Algorithm 2 on
        its maps, or the oracle's)."""
        scale = self.scales[s]
        next_factor = self.scales[s + 1].spec.factor_for(*run.hw)
        if self.oracle:
            with timer('chip_generation'):
                planned = plan_oracle_chips(
                    _gt_boxes(run.sample), scale, run.factor, next_factor,
                    self.module.focus_head.rule, run.hw)
        else:
            stride = self.module.focus_head.stride
            with timer('focus_map'):
                # No map computed (every cell selected): any map plans the
                # same chips; ones of the head's shape.
                maps = [np.ones((-(-c.image.shape[-2] // stride),
                                 -(-c.image.shape[-1] // stride)), np.float32)
                        if m is None else m.float().cpu().numpy()
                        for c, m in zip(crops, maps)]
            with timer('chip_generation'):
                planned = plan_next_chips(
                    maps, windows_of(crops), scale, run.factor, next_factor,
                    self.module.focus_head.stride, run.hw)
        run.chips = cap_chips(planned, self.max_chips)
        dropped = len(planned) - len(run.chips)
        run.dropped.append(dropped)
        if dropped and not self._warned_cap:
            self._warned_cap = True
            print_log(
                f'{type(self).__name__}: max_chips={self.max_chips} dropped '
                f'{dropped} of {len(planned)} FocusChips for scale {s + 1} '
                f'of {run.sample.metainfo.get("img_path") or "an image"} '
                '(the smallest; objects only they held are lost). Later '
                'drops are counted in each prediction\'s metainfo '
                '"focus_chips_dropped"; max_chips=None runs every chip.',
                logger='current', level=logging.WARNING)
        if run.trace is not None:
            run.trace.scales[-1].next_chips = run.chips.copy()


class _ImageRun:
    """One image's state through the cascade: its chips for the current
    scale (``(C, 4)`` xyxy ORIGINAL px; the whole image at first), that
    scale's factor, the kept detections and masks so far, pixels and chip
    counts per scale, and the trace (or ``None``)."""

    def __init__(self, image: Tensor, sample: DetDataSample, stride: int,
                 oracle: bool, trace: bool):
        self.image, self.sample = image, sample
        self.hw = tuple(int(v) for v in image.shape[-2:])
        h, w = self.hw
        self.chips = np.array([[0, 0, w, h]], np.float64)
        self.factor = 1.0
        self.boxes, self.scores, self.labels = [], [], []
        self.masks = MaskPaster(self.hw, image.device)
        self.pixels: List[int] = []
        self.counts: List[int] = []
        self.dropped: List[int] = []  # per transition, by max_chips
        self.chips_run: List[np.ndarray] = []
        self.trace = CascadeTrace(self.hw, stride, oracle) if trace else None

    def result(self, pred, scales: Sequence[FocusScale]) -> DetDataSample:
        """The image's ``DetDataSample``: ``pred``, the pixel counts (0 for
        scales that did not run) and, where the sample has ground truth,
        ``focus_recall`` (:func:`~mmsnip.chips.focus_recall`: per
        transition ``[needed, covered]`` objects)."""
        pad = [0] * (len(scales) - len(self.counts))
        result = DetDataSample(metainfo=self.sample.metainfo)
        result.set_metainfo(dict(
            pixels_per_scale=self.pixels + pad, pixels=sum(self.pixels),
            chips_per_scale=self.counts + pad,
            focus_chips_dropped=self.dropped + [0] * (
                len(scales) - 1 - len(self.dropped))))
        if 'gt_instances' in self.sample and \
                'bboxes' in self.sample.gt_instances:
            result.set_metainfo(dict(focus_recall=focus_recall(
                _gt_boxes(self.sample), self.chips_run,
                [scale.spec.valid_range for scale in scales]).tolist()))
        result.pred_instances = pred
        if self.trace is not None:
            self.trace.result = result
        return result


def _warn_unused_on_finest(scales: Sequence[dict], owner: str) -> None:
    """Warn (at build) of FocusChip settings on the finest scale: they
    plan the chips of a NEXT scale, which it does not have, so they have
    no effect (``border_tol`` does: it is the scale's own stacking)."""
    last = scales[-1]
    if isinstance(last, FocusScale):
        return  # built already: what was written is not known
    unused = [k for k in TRANSITION_KEYS
              if k != 'border_tol' and k in dict(last)]
    if unused:
        i = len(scales) - 1
        print_log(
            f'{owner}: scales[{i}] (the finest) sets '
            f'{", ".join(unused)}, which have no effect: FocusChip '
            'settings plan the chips of the next scale, and the finest '
            'scale has none. Remove them there; to change the chips of '
            f'scales[{i}], set them on scales[{i - 1}]'
            if i else
            f'{owner}: scales[0] (the only scale) sets '
            f'{", ".join(unused)}, which have no effect: a one-scale '
            'cascade plans no FocusChips. Remove them',
            logger='current', level=logging.WARNING)


def _gt_boxes(sample: DetDataSample) -> np.ndarray:
    """``(N, 4)`` ground-truth boxes of a test sample, ORIGINAL px."""
    gt = sample.gt_instances.bboxes if 'gt_instances' in sample else []
    return get_box_tensor(gt).float().cpu().numpy() if len(gt) else \
        np.zeros((0, 4))
