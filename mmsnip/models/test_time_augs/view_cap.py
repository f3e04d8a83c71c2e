# Copyright (c) mmsnip contributors. All rights reserved.
"""The detector's own per-image cap during a pyramid's views or chips.

SNIP keeps a view's detections only inside the view's valid range (Sec.
3.2.2), and the released SNIPER code caps the number of detections once,
after merging all views. An mmdet detector caps its detections in its own
post-processing (``max_per_img``), BEFORE a TTA model's range filter can
run: at the finest view, out-of-range large objects can take every slot and
be discarded afterwards, and the valid small objects are lost.
:func:`view_cap` replaces that cap while the views or chips run (the range
filter then comes first, the merge's ``tta_cfg.max_per_img`` caps once) and
restores it afterwards. One home for the rule: ``SnipTTAModel`` and
``AutoFocusTTAModel`` (``view_max_per_img``) both use it.

Where mmdet keeps the cap (of the detector, or the one inside an
``AutoFocus``):

- two-stage (Faster/Mask/Cascade R-CNN, HTC, ...): ``roi_head.test_cfg``
  (``test_cfg.rcnn`` of the config; the RPN's ``max_per_img``, its
  proposals, is not a detection cap and stays);
- one-stage dense heads: ``bbox_head.test_cfg`` (and ``mask_head.test_cfg``
  of instance segmentors such as SOLO, YOLACT);
- DETR family: ``bbox_head.test_cfg``, used as ``topk`` over ``num_queries
  * num_classes`` scores (sigmoid classifiers) or ``num_queries`` (softmax;
  Grounding DINO, whose classes come from the prompt); Sparse R-CNN's
  ``roi_head.test_cfg``, a ``topk`` over ``num_proposals * num_classes``.
  A cap over that size (``-1`` included) is clamped to it: ``torch.topk``
  cannot return more.

YOLOX's head has no cap (it keeps every detection after NMS): -1 holds
as it is, an int cannot be imposed (an error). Other pre-NMS limits
(``nms_pre``, CenterNet's ``topk``, the RPN's) stay.
"""
from contextlib import contextmanager
from typing import List, Optional, Tuple

from mmdet.models.dense_heads import (DETRHead, GroundingDINOHead,
                                     YOLOXHead)
from mmdet.models.roi_heads import SparseRoIHead

from mmsnip.utils.checks import UserInputError

NO_CAP = -1
# What "no cap" becomes where the cap slices a list: dense heads take
# ``results[:max_per_img]``, so -1 itself would drop the last detection.
_UNCAPPED = 2**31 - 1
_HOLDERS = ('roi_head', 'bbox_head', 'mask_head')
# Heads whose post-processing keeps every detection after NMS (no cap):
# "no cap" (-1) holds for them as they are.
_NEVER_CAPPED = (YOLOXHead, )


def inner_detector(module):
    """The detector that predicts: the one inside an ``AutoFocus``
    wrapper, a semi-supervised detector's (mmdet's ``SemiBaseDetector``,
    SoftTeacher: its ``semi_test_cfg.predict_on``, the teacher by
    default), else ``module``."""
    if hasattr(module, 'detector'):
        return module.detector
    semi = getattr(module, 'semi_test_cfg', None)
    if isinstance(semi, dict) and hasattr(module, 'teacher'):
        return getattr(module, semi.get('predict_on', 'teacher'))
    return module


def _topk_size(detector, name: str, head) -> Optional[int]:
    """How many scores the head's ``topk`` ranks, or ``None`` if its cap
    is no ``topk``."""
    if isinstance(head, DETRHead) and name == 'bbox_head':
        queries = getattr(detector, 'num_queries', None)
        if queries is None:
            raise TypeError(
                f'{type(detector).__name__} has a {type(head).__name__} '
                'but no num_queries: the size of its topk cap is unknown; '
                'set view_max_per_img=None (the detector\'s own cap)')
        queries = int(queries)
        if isinstance(head, GroundingDINOHead) or \
                not head.loss_cls.use_sigmoid:
            return queries
        return queries * int(head.num_classes)
    if isinstance(head, SparseRoIHead):
        return int(detector.rpn_head.num_proposals) * int(
            head.bbox_head[-1].num_classes)
    return None


def detection_caps(module) -> List[Tuple[str, dict, Optional[int]]]:
    """The per-image detection caps of a detector (or the one inside an
    ``AutoFocus``): ``(where, test_cfg, topk_size)`` per head whose
    ``test_cfg`` holds ``max_per_img`` (a DETR head's even without it: its
    default is ``num_queries``); ``topk_size`` is ``None`` where the cap
    is no ``topk``. Empty if none is found."""
    detector = inner_detector(module)
    caps = []
    for name in _HOLDERS:
        head = getattr(detector, name, None)
        cfg = getattr(head, 'test_cfg', None)
        if head is None or cfg is None:
            continue
        size = _topk_size(detector, name, head)
        if 'max_per_img' in cfg or size is not None:
            caps.append((f'{name}.test_cfg', cfg, size))
    return caps


def check_view_cap(module, max_per_img: Optional[int],
                   owner: str) -> List[Tuple[str, dict, Optional[int]]]:
    """A clear error for a bad ``view_max_per_img`` (an int >= 1, -1 for
    no cap, or ``None``) or a detector where :func:`detection_caps` finds
    no cap to replace (never a silent no-op). Returns those caps (empty
    for ``None``, or for -1 on a head that has none)."""
    if max_per_img is None:
        return []
    if isinstance(max_per_img, bool) or not isinstance(max_per_img, int) \
            or not (max_per_img >= 1 or max_per_img == NO_CAP):
        raise UserInputError(
            f'{owner}: view_max_per_img must be an int >= 1, -1 (no cap) '
            f'or None (the detector\'s own cap), got {max_per_img!r}')
    caps = detection_caps(module)
    if not caps:
        detector = inner_detector(module)
        never = [type(getattr(detector, name)).__name__ for name in _HOLDERS
                 if isinstance(getattr(detector, name, None),
                               _NEVER_CAPPED)]
        if never and max_per_img == NO_CAP:
            return caps  # nothing to lift
        if never:
            raise UserInputError(
                f'{owner}: view_max_per_img={max_per_img}, but '
                f'{never[0]} has no per-image cap to replace (it keeps '
                'every detection after NMS): set view_max_per_img=-1 or '
                'None (the same for it)')
        raise TypeError(
            f'{owner}: view_max_per_img={max_per_img} found no per-image '
            f'detection cap in {type(detector).__name__} (looked for '
            'max_per_img in roi_head.test_cfg, bbox_head.test_cfg, '
            'mask_head.test_cfg): give the detector a test_cfg with '
            'max_per_img, or set view_max_per_img=None (the detector\'s '
            'own cap, applied before the valid-range filter)')
    return caps


@contextmanager
def view_cap(module, max_per_img: Optional[int], owner: str = 'view_cap'):
    """Replace the detector's per-image cap by ``max_per_img`` while the
    block runs, and restore it afterwards (also on an exception).

    Args:
        module: The detector, or an ``AutoFocus`` wrapping one.
        max_per_img (int, optional): Detections a view or chip may keep:
            an int >= 1, or -1 for no cap; a ``topk`` cap (DETR family,
            Sparse R-CNN) is clamped to the number of scores it ranks.
            ``None`` changes nothing (the detector's own cap).
        owner (str): Named in errors (:func:`check_view_cap`).
    """
    if max_per_img is None:
        yield
        return
    caps = check_view_cap(module, max_per_img, owner)
    # saved before any change: two heads may share one test_cfg
    saved = [(cfg, 'max_per_img' in cfg, cfg.get('max_per_img'))
             for _, cfg, _ in caps]
    try:
        for _, cfg, size in caps:
            value = _UNCAPPED if max_per_img == NO_CAP else max_per_img
            cfg['max_per_img'] = value if size is None else min(value, size)
        yield
    finally:
        for cfg, present, value in reversed(saved):
            if present:
                cfg['max_per_img'] = value
            else:
                cfg.pop('max_per_img', None)
