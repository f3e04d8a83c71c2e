# Copyright (c) mmsnip contributors. All rights reserved.
"""Merging detections of several scales, chips or views into one result.

One function, :func:`merge_detections`, used by every multi-scale /
multi-chip test model (``SnipTTAModel``, ``AutoFocusTTAModel``,
``SlicedTTAModel``), configured by their ``tta_cfg``:

.. code-block:: python

    tta_cfg = dict(
        nms=dict(type='nms', iou_threshold=0.5),  # or type='soft_nms'
        box_voting=dict(iou_threshold=0.8),       # optional
        class_agnostic=False,                     # optional
        max_per_img=100)

See ``docs/merge.md`` for when to use which.
"""
import dataclasses
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from mmcv.ops import batched_nms
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.utils.checks import UserInputError, is_integer, is_number

# The keys each ``nms.type`` accepts (mmcv's ``nms`` / ``soft_nms``
# arguments that matter for merging) and their defaults.
NMS_KEYS = {
    'nms': dict(iou_threshold=None, score_threshold=0.0),
    'soft_nms': dict(iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                     method='linear'),
}
SOFT_NMS_METHODS = ('linear', 'gaussian', 'naive')
VOTING_SCORES = ('keep', 'mean')
MERGE_KEYS = ('nms', 'box_voting', 'class_agnostic', 'max_per_img')

# Masks of the kept detections: a list of per-part ``(N_i, H, W)`` tensors
# in ORIGINAL pixels, or a callable from kept indices to their masks.
MaskSource = Union[Sequence[Tensor], Callable[[Tensor], Tensor]]


def _check_fraction(where: str, name: str, value, low_open=False) -> float:
    if not is_number(value) or not (0 < value <= 1 if low_open else
                                     0 <= value <= 1):
        interval = '(0, 1]' if low_open else '[0, 1]'
        raise UserInputError(f'tta_cfg.{where}.{name} must be a number in '
                             f'{interval}, got {value!r}')
    return float(value)


@dataclasses.dataclass(frozen=True)
class BoxVoting:
    """Box voting (weighted merging) after NMS.

    Each kept box is replaced by the score-weighted mean of every input
    box of its class (any class if ``class_agnostic``) whose IoU with it is
    at least ``iou_threshold``, itself included; weights are the input
    scores (before any soft-NMS decay). Like Detectron's ``BBOX_VOTE``.

    Example: kept ``[0, 0, 10, 10]`` (score 0.9) and a suppressed
    ``[0, 0, 10, 12]`` (score 0.6, IoU 0.83) with ``iou_threshold=0.8``
    give ``[0, 0, 10, 10.8]`` (= (0.9 * 10 + 0.6 * 12) / 1.5).

    Args:
        iou_threshold (float): Minimum IoU of a voter, in (0, 1].
        scoring (str): ``'keep'`` (the kept box's own score after NMS) or
            ``'mean'`` (mean input score of its voters).
    """
    iou_threshold: float = 0.8
    scoring: str = 'keep'

    def __post_init__(self):
        _check_fraction('box_voting', 'iou_threshold', self.iou_threshold,
                        low_open=True)
        if self.scoring not in VOTING_SCORES:
            raise UserInputError(f'tta_cfg.box_voting.scoring must be one of '
                                 f'{VOTING_SCORES}, got {self.scoring!r}')


@dataclasses.dataclass(frozen=True)
class MergeConfig:
    """A validated ``tta_cfg``: how detections of all views are merged.

    Args:
        nms (dict): mmcv NMS settings: ``type='nms'`` with
            ``iou_threshold`` (required) and ``score_threshold``, or
            ``type='soft_nms'`` with ``iou_threshold``, ``sigma``,
            ``min_score`` and ``method`` (``'linear'``, ``'gaussian'``,
            ``'naive'``). ``class_agnostic`` is accepted here too (mmcv's
            spelling).
        max_per_img (int): Detections kept per image (> 0).
        class_agnostic (bool): Suppress and vote across classes.
        box_voting (BoxVoting, optional): Weighted merging after NMS.
    """
    nms: dict
    max_per_img: int = 100
    class_agnostic: bool = False
    box_voting: Optional[BoxVoting] = None

    @classmethod
    def from_dict(cls, cfg, owner: Optional[str] = None) -> 'MergeConfig':
        """Validate a ``tta_cfg`` dict; errors name the offending key
        (``tta_cfg.nms.iou_threshold``), as a config entry of ``owner``
        (``'{owner}: tta_model.tta_cfg...'``) when a test-time model
        passes its name."""
        try:
            return cls._validated(cfg)
        except UserInputError as e:
            if owner is None:
                raise
            raise UserInputError(f'{owner}: tta_model.{e}') from None

    @classmethod
    def _validated(cls, cfg) -> 'MergeConfig':
        if isinstance(cfg, MergeConfig):
            return cfg
        if cfg is None:
            cfg = dict(nms=dict(type='nms', iou_threshold=0.5),
                       max_per_img=100)
        cfg = dict(cfg)
        unknown = sorted(set(cfg) - set(MERGE_KEYS))
        if unknown:
            raise UserInputError(f'tta_cfg: unknown key(s) {unknown}; '
                                 f'expected some of {list(MERGE_KEYS)}')
        if not isinstance(cfg.get('nms'), dict):
            raise UserInputError('tta_cfg.nms must be a dict like dict(type='
                                 f"'nms', iou_threshold=0.5), got "
                                 f'{cfg.get("nms")!r}')
        nms = dict(cfg['nms'])
        kind = nms.pop('type', 'nms')
        if kind not in NMS_KEYS:
            raise UserInputError(f'tta_cfg.nms.type must be one of '
                                 f'{sorted(NMS_KEYS)}, got {kind!r}')
        agnostic = cfg.get('class_agnostic', None)
        if 'class_agnostic' in nms:
            alias = nms.pop('class_agnostic')
            if agnostic is not None and bool(agnostic) != bool(alias):
                raise UserInputError(
                    'tta_cfg.class_agnostic and tta_cfg.nms.class_agnostic '
                    f'disagree ({agnostic} vs {alias}); set one of them')
            agnostic = alias
        unknown = sorted(set(nms) - set(NMS_KEYS[kind]))
        if unknown:
            raise UserInputError(
                f'tta_cfg.nms (type={kind!r}): unknown key(s) {unknown}; '
                f'expected some of {sorted(NMS_KEYS[kind])}')
        nms = dict(NMS_KEYS[kind], **nms)
        if nms['iou_threshold'] is None:
            raise UserInputError(
                "tta_cfg.nms (type='nms') needs iou_threshold")
        nms['iou_threshold'] = _check_fraction('nms', 'iou_threshold',
                                               nms['iou_threshold'])
        if kind == 'nms':
            nms['score_threshold'] = _check_fraction(
                'nms', 'score_threshold', nms['score_threshold'])
        else:
            if nms['method'] not in SOFT_NMS_METHODS:
                raise UserInputError(
                    f'tta_cfg.nms.method must be one of {SOFT_NMS_METHODS}, '
                    f'got {nms["method"]!r}')
            sigma = nms['sigma']
            if not is_number(sigma, finite=False) or not sigma > 0:
                raise UserInputError(
                    f'tta_cfg.nms.sigma must be a number > 0, got {sigma!r}')
            nms['min_score'] = _check_fraction('nms', 'min_score',
                                               nms['min_score'])
        max_per_img = cfg.get('max_per_img', 100)
        if not is_integer(max_per_img) or max_per_img <= 0:
            raise UserInputError('tta_cfg.max_per_img must be an int > 0, got '
                                 f'{max_per_img!r}')
        voting = cfg.get('box_voting')
        if voting is not None and not isinstance(voting, BoxVoting):
            if not isinstance(voting, dict):
                raise UserInputError(
                    'tta_cfg.box_voting must be a dict like '
                    f'dict(iou_threshold=0.8), got {voting!r}')
            fields = {f.name for f in dataclasses.fields(BoxVoting)}
            unknown = sorted(set(voting) - fields)
            if unknown:
                raise UserInputError(f'tta_cfg.box_voting: unknown key(s) '
                                     f'{unknown}; expected some of '
                                     f'{sorted(fields)}')
            voting = BoxVoting(**voting)
        return cls(nms=dict(nms, type=kind), max_per_img=int(max_per_img),
                   class_agnostic=bool(agnostic), box_voting=voting)


def part_rows(sizes: Sequence[int], inds: Tensor):
    """Split indices into a concatenation of parts, part by part.

    Args:
        sizes (list[int]): Length of each part.
        inds (Tensor): ``(K,)`` indices into the concatenation.

    Yields:
        tuple: ``(part, pos, local)``: ``inds[pos]`` are the rows ``local``
        of part ``part`` (``pos`` and ``local`` are CPU long tensors); only
        parts with rows are yielded.
    """
    starts = torch.tensor([0] + list(sizes)).cumsum(0)
    inds = inds.to('cpu', torch.long)
    if len(inds) and (inds.min() < 0 or inds.max() >= starts[-1]):
        raise IndexError(f'index out of range for {int(starts[-1])} rows '
                         f'in {len(sizes)} parts')
    part = torch.bucketize(inds, starts[1:], right=True)
    for i in part.unique().tolist():  # a loop over parts, not rows
        pos = (part == i).nonzero()[:, 0]
        yield i, pos, inds[pos] - starts[i]


def gather_rows(parts: Sequence[Tensor], inds: Tensor) -> Tensor:
    """``torch.cat(parts)[inds]`` without concatenating all of ``parts``.

    Args:
        parts (list[Tensor]): ``(N_i, ...)`` tensors, same trailing shape.
        inds (Tensor): ``(K,)`` indices into their concatenation.

    Returns:
        Tensor: ``(K, ...)`` rows in the order of ``inds``.
    """
    out = parts[0].new_empty((len(inds), ) + tuple(parts[0].shape[1:]))
    for i, pos, local in part_rows([len(p) for p in parts], inds):
        out[pos.to(out.device)] = parts[i][local.to(parts[i].device)]
    return out


def vote_boxes(kept: Tensor, kept_labels: Tensor, boxes: Tensor,
               scores: Tensor, labels: Tensor, voting: BoxVoting,
               class_agnostic: bool) -> Tuple[Tensor, Tensor]:
    """Box voting: the score-weighted mean of each kept box's voters.

    Args:
        kept (Tensor): ``(K, 4)`` kept boxes, xyxy.
        kept_labels (Tensor): ``(K,)`` their labels.
        boxes, scores, labels (Tensor): ``(N, 4)``, ``(N,)``, ``(N,)`` all
            input detections (the voters), same frame as ``kept``.
        voting (BoxVoting): Threshold and scoring.
        class_agnostic (bool): Let boxes of other classes vote.

    Returns:
        tuple: ``(K, 4)`` voted boxes and ``(K,)`` mean voter scores.
    """
    iou = bbox_overlaps(kept.float(), boxes.float())  # (K, N)
    voter = iou >= voting.iou_threshold
    if not class_agnostic:
        voter &= kept_labels[:, None] == labels[None, :]
    weights = voter * scores.float()[None, :]
    total = weights.sum(1, keepdim=True)
    voted = (weights @ boxes.float()) / total.clamp_min(1e-12)
    voted = torch.where(total > 0, voted, kept.float()).to(kept.dtype)
    mean = total[:, 0] / voter.sum(1).clamp_min(1)
    return voted, mean.to(scores.dtype)


def merge_detections(boxes: Sequence[Tensor],
                     scores: Sequence[Tensor],
                     labels: Sequence[Tensor],
                     tta_cfg,
                     masks: Optional[MaskSource] = None) -> InstanceData:
    """Merge the detections of several views/chips of one image.

    Steps: concatenate; NMS or soft-NMS (``batched_nms``: class-wise by
    label, or across classes if ``class_agnostic``); keep the
    ``max_per_img`` best; optionally box voting. Masks follow their
    detections: the kept detections keep their own masks (box voting moves
    the box, not the mask).

    Args:
        boxes (list[Tensor]): Per part ``(N_i, 4)`` xyxy, ORIGINAL pixels.
        scores (list[Tensor]): Per part ``(N_i,)``.
        labels (list[Tensor]): Per part ``(N_i,)`` long.
        tta_cfg (dict | MergeConfig): See :class:`MergeConfig`.
        masks (list[Tensor] | callable, optional): Per part ``(N_i, H, W)``
            masks in ORIGINAL pixels, or a callable mapping the kept
            indices (``(K,)`` into the concatenation of the parts) to their
            ``(K, H, W)`` masks, so that only kept detections are pasted.

    Returns:
        InstanceData: ``bboxes (K, 4)``, ``scores (K,)``, ``labels (K,)``
        sorted by score, and ``masks (K, H, W)`` if ``masks`` was given.
    """
    cfg = MergeConfig.from_dict(tta_cfg)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f'merge_detections: {len(boxes)} box, '
                         f'{len(scores)} score and {len(labels)} label parts')
    if masks is not None and not callable(masks) and \
            len(masks) != len(boxes):
        raise ValueError(f'merge_detections: {len(masks)} mask parts for '
                         f'{len(boxes)} box parts')
    for i, (b, s, lb) in enumerate(zip(boxes, scores, labels)):
        if b.dim() != 2 or b.shape[1] != 4 or not len(b) == len(s) == len(
                lb) or (masks is not None and not callable(masks)
                        and len(masks[i]) != len(b)):
            raise ValueError(
                f'merge_detections: part {i} has boxes {tuple(b.shape)}, '
                f'scores {tuple(s.shape)}, labels {tuple(lb.shape)}' +
                ('' if masks is None or callable(masks) else
                 f', masks {tuple(masks[i].shape)}') +
                '; expected (N, 4), (N,), (N,)')
    all_boxes = torch.cat(list(boxes)) if len(boxes) else torch.zeros((0, 4))
    all_scores = torch.cat(list(scores)) if len(scores) else torch.zeros(0)
    all_labels = torch.cat(list(labels)) if len(labels) else \
        torch.zeros(0, dtype=torch.long)
    if len(all_boxes):
        nms = dict(cfg.nms, class_agnostic=cfg.class_agnostic)
        dets, keep = batched_nms(all_boxes, all_scores, all_labels, nms)
        keep = keep[:cfg.max_per_img]
        out_boxes = dets[:cfg.max_per_img, :4]
        out_scores = dets[:cfg.max_per_img, 4]
    else:
        keep = torch.zeros(0, dtype=torch.long, device=all_boxes.device)
        out_boxes, out_scores = all_boxes.reshape(0, 4), all_scores
    out_labels = all_labels[keep]
    if cfg.box_voting is not None and len(keep):
        out_boxes, mean = vote_boxes(out_boxes, out_labels, all_boxes,
                                     all_scores, all_labels, cfg.box_voting,
                                     cfg.class_agnostic)
        if cfg.box_voting.scoring == 'mean':
            out_scores, order = mean.sort(descending=True, stable=True)
            keep, out_boxes = keep[order], out_boxes[order]
            out_labels = out_labels[order]
    out = InstanceData(bboxes=out_boxes, scores=out_scores, labels=out_labels)
    if masks is not None:
        if callable(masks):
            out.masks = masks(keep)
            if len(out.masks) != len(keep):
                raise ValueError(f'merge_detections: the mask callable gave '
                                 f'{len(out.masks)} masks for {len(keep)} '
                                 'detections')
        elif len(masks):  # no parts: no mask shape to give
            out.masks = gather_rows(masks, keep)
    return out


# --------------------------------------------------------------------------
# Masks of the parts (chips, tiles, views) of one image
# --------------------------------------------------------------------------
# ``flip_direction`` of a view -> the mask dims to flip back.
FLIP_DIMS = {None: (), 'horizontal': (-1, ), 'vertical': (-2, ),
             'diagonal': (-2, -1)}


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
