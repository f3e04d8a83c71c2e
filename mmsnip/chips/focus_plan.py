# Copyright (c) mmsnip contributors. All rights reserved.
"""The AutoFocus cascade's settings and planner (pure numpy, Sec. 3.4).

The cascade runs scale ``s`` on some windows (chips) of the ORIGINAL
image, gets per window a FocusPixel map and detections, and must decide
(1) which detections of scale ``s`` survive focus stacking and (2) which
windows scale ``s + 1`` runs on. Both decisions are pure array work and
live here; running the network on the windows is the torch chip runner's
job (``mmsnip.models.test_time_augs.chip_runner``) and the loop that
alternates the two is ``AutoFocusTTAModel``.

Settings have one home each:

* :class:`FocusLabelRule`: ``(a, b, c)`` and the map stride ``s``, shared
  by the FocusPixel head (its training labels) and the oracle (labels of
  the ground truth at test time).
* :class:`FocusScale`: one scale of the cascade and the transition it
  hands on: ``t, d, k`` (Algorithm 2) and the stacking tolerance of its own
  chips. ``k`` (``min_size``) is in the NEXT scale's pixels by default
  (the network input the chip becomes: Sec. 3.4.2 sets ``k`` for context
  and batching of the chips processed next); ``min_size_frame='current'``
  counts it in this scale's pixels, as the original code (chips about
  ``next_factor / factor`` times larger per side). Converted once, in
  :func:`min_size_here`.

Frames: ORIGINAL pixels (the input image), SCALED pixels of a scale
(ORIGINAL times its factor), CROP pixels (SCALED, relative to a window's
top-left corner; the network input). Boxes are xyxy.
"""
import dataclasses
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mmsnip.utils.checks import UserInputError, check_integer, check_number
from .focus import (PAPER_DILATION, PAPER_LABEL_SIZES, PAPER_MIN_SIZE,
                    PAPER_STRIDE, PAPER_THRESHOLD, focus_chips,
                    focus_stack_keep_mask, merge_overlapping,
                    oracle_focus_chips)
from .boxes import box_sizes, in_range
from .scales import (ScaleSpec, check_coarse_to_fine, check_range_order,
                     check_some_scales)

# The FocusChip keys of a scale dict (``AutoFocusTTAModel.scales``).
TRANSITION_KEYS = ('threshold', 'dilation', 'min_size', 'min_size_frame',
                   'inclusive_threshold', 'border_tol')

# Frames ``k`` (``min_size``) can be counted in: the NEXT scale's pixels
# (default) or this scale's (the original code).
MIN_SIZE_FRAMES = ('next', 'current')

# FocusChip settings that select every cell (every chip the whole window:
# the cascade is then the full pyramid) and none (only the coarsest scale).
EVERY_PIXEL = dict(threshold=0.0, inclusive_threshold=True)
NO_PIXEL = dict(threshold=1.0, inclusive_threshold=False)


def full_pyramid_scales(scales: Sequence[dict]) -> List[dict]:
    """``AutoFocusTTAModel.scales`` that make the cascade the full
    pyramid: :data:`EVERY_PIXEL` on every scale that plans the next
    one's chips, the finest scale as it is (FocusChip settings there have
    no effect, and the model warns about them as the user's).

    Args:
        scales (Sequence[dict]): Scale dicts, coarse to fine.

    Returns:
        list[dict]: New dicts; ``scales`` is not changed.
    """
    return [dict(s, **EVERY_PIXEL) if i + 1 < len(scales) else dict(s)
            for i, s in enumerate(scales)]


def cascade_limits(max_chips: Optional[int], border_tol: float,
                   owner: str = 'AutoFocusTTAModel'
                   ) -> Tuple[Optional[int], float]:
    """The cascade-wide settings, validated: ``max_chips`` (FocusChips per
    scale and image, an integer >= 1, or ``None``: no cap, the paper) and
    ``border_tol`` (the default stacking tolerance, ORIGINAL px, finite
    and >= 0)."""
    if max_chips is not None:
        max_chips = check_integer(max_chips, f'{owner}.max_chips')
    return max_chips, check_number(border_tol, f'{owner}.border_tol', 0)


@dataclasses.dataclass(frozen=True)
class FocusLabelRule:
    """The FocusPixel label rule (Sec. 3.4.1): sizes ``a, b, c`` in CHIP
    (network-input) pixels and the stride ``s`` of the map.

    Shared by :class:`~mmsnip.models.FocusPixelHead` (training labels) and
    the oracle FocusChips (ground truth labelled at test time), so both
    always use the same rule. Validation: ``0 <= a < b <= c`` (``c`` may be
    ``inf``), no NaN, ``stride`` an integer >= 1. ``boundary_ignore``:
    sizes exactly ``a`` or ``b`` are ignored (the paper's text, default)
    rather than background (mmsnip's earlier rule; see
    :func:`~mmsnip.chips.focus_pixel_labels`).

    Example:
        ``FocusLabelRule(5, 64, 90)``: a 20 px object is a FocusPixel, a
        3 px, 5 px, 64 px or 70 px one is ignored, a 90 px or 100 px one is
        background (5 px and 64 px background with
        ``boundary_ignore=False``).
    """
    a: float = PAPER_LABEL_SIZES[0]
    b: float = PAPER_LABEL_SIZES[1]
    c: float = PAPER_LABEL_SIZES[2]
    stride: int = PAPER_STRIDE
    boundary_ignore: bool = True
    where: str = dataclasses.field(default='focus thresholds', compare=False)

    def __post_init__(self):
        for name in 'abc':
            check_number(getattr(self, name), f'{self.where}: {name}', 0,
                         finite=name == 'a')
        if not self.a < self.b <= self.c:
            raise UserInputError(f'{self.where} need 0 <= a < b <= c, got '
                                 f'(a, b, c) = {(self.a, self.b, self.c)}')
        check_integer(self.stride, f'{self.where}: stride')
        if not isinstance(self.boundary_ignore, bool):
            raise UserInputError(f'{self.where}: boundary_ignore must be a '
                                 f'bool, got {self.boundary_ignore!r}')

    @property
    def thresholds(self) -> Tuple[float, float, float]:
        return (self.a, self.b, self.c)


@dataclasses.dataclass(frozen=True)
class FocusScale:
    """A scale of the cascade and the FocusChip settings it hands on.

    ``threshold``/``dilation``/``min_size`` (``t``, ``d``, ``k``) turn this
    scale's FocusPixel maps into the chips of the NEXT scale (Algorithm 2);
    the last scale's are unused. ``border_tol`` is the focus-stacking
    tolerance of this scale's own chips (``None``: the cascade's
    ``border_tol``).

    Args:
        spec (ScaleSpec): Factor rule and valid range (ORIGINAL pixels).
        threshold (float): ``t`` in [0, 1]: FocusPixels are cells with
            probability ``> t`` (``>= t`` with ``inclusive_threshold``, as
            the original code). ``t = 0`` inclusive selects every cell;
            ``t = 1`` exclusive none.
        dilation (int): ``d``, in map cells, >= 1.
        min_size (float): ``k``, minimum FocusChip side, finite and >= 0,
            in the pixels of ``min_size_frame``.
        inclusive_threshold (bool): ``>= t`` instead of the paper's ``> t``.
        border_tol (float, optional): Stacking tolerance, ORIGINAL px, >= 0.
        min_size_frame (str): ``'next'`` (default): ``k`` in the NEXT
            scale's pixels; ``'current'``: in this scale's pixels, as the
            original code. Example: factors 0.5 then 1.0 and ``k = 128``
            give chips of at least 128 ORIGINAL px (``'next'``) or 256
            (``'current'``).
    """
    spec: ScaleSpec
    threshold: float = PAPER_THRESHOLD
    dilation: int = PAPER_DILATION
    min_size: float = PAPER_MIN_SIZE
    inclusive_threshold: bool = False
    border_tol: Optional[float] = None
    min_size_frame: str = 'next'
    where: str = dataclasses.field(default='scale', compare=False)

    def __post_init__(self):
        check_number(self.threshold, f'{self.where}.threshold', 0, 1)
        check_integer(self.dilation, f'{self.where}.dilation')
        check_number(self.min_size, f'{self.where}.min_size', 0)
        if self.min_size_frame not in MIN_SIZE_FRAMES:
            raise UserInputError(
                f'{self.where}.min_size_frame must be one of '
                f'{MIN_SIZE_FRAMES}, got {self.min_size_frame!r}')
        if not isinstance(self.inclusive_threshold, bool):
            raise UserInputError(
                f'{self.where}.inclusive_threshold must be a bool, got '
                f'{self.inclusive_threshold!r}')
        if self.border_tol is not None:
            check_number(self.border_tol, f'{self.where}.border_tol', 0)

    @property
    def selects_every_pixel(self) -> bool:
        """``t = 0`` inclusive: every cell is a FocusPixel whatever the
        map (:data:`EVERY_PIXEL`), so the next chips need no map."""
        return self.threshold == 0 and self.inclusive_threshold

    @classmethod
    def from_dict(cls, cfg: dict, where: str = 'scale') -> 'FocusScale':
        """Build from a scale dict: :class:`ScaleSpec` fields plus
        :data:`TRANSITION_KEYS`; errors name ``where`` and the field."""
        if isinstance(cfg, cls):
            return cfg
        cfg = dict(cfg)
        focus = {k: cfg.pop(k) for k in TRANSITION_KEYS if k in cfg}
        try:
            spec = ScaleSpec.from_dict(cfg)
        except (ValueError, TypeError) as e:
            raise UserInputError(f'{where}: {e} (FocusChip keys: '
                                 f'{", ".join(TRANSITION_KEYS)})') from e
        return cls(spec, where=where, **focus)

    def min_size_here(self, factor: float, next_factor: float) -> float:
        """``k`` in this scale's (SCALED) pixels: ``k * factor /
        next_factor`` for ``min_size_frame='next'``, ``k`` for
        ``'current'``.

        Example:
            ``k = 128``, factors 0.5 then 1.0: 64 (``'next'``) or 128
            (``'current'``) px of this scale.
        """
        if self.min_size_frame == 'current':
            return float(self.min_size)
        return self.min_size * factor / next_factor


def focus_scales(scales: Sequence[dict],
                 owner: str = 'AutoFocusTTAModel') -> List[FocusScale]:
    """Validated :class:`FocusScale` list from config dicts, coarse to
    fine (:func:`~mmsnip.chips.scales.check_coarse_to_fine`) with finer
    scales taking smaller objects
    (:func:`~mmsnip.chips.scales.check_range_order`); errors name
    ``owner.scales[i]``."""
    check_some_scales(scales, f'{owner}.scales')
    out = [FocusScale.from_dict(s, f'{owner}.scales[{i}]')
           for i, s in enumerate(scales)]
    specs = [s.spec for s in out]
    check_coarse_to_fine(specs, f'{owner}.scales')
    check_range_order(specs, f'{owner}.scales')
    return out


class Windows(NamedTuple):
    """Where a scale's crops came from, per crop ``i`` of ``C``.

    Attributes:
        origins (np.ndarray): ``(C, 2)`` top-left ``(x0, y0)``, ORIGINAL px.
        factors (np.ndarray): ``(C, 2)`` exact ``(fx, fy)``: CROP px per
            ORIGINAL px.
        shapes (np.ndarray): ``(C, 2)`` int crop ``(h, w)`` in CROP px.
    """
    origins: np.ndarray
    factors: np.ndarray
    shapes: np.ndarray


def cap_chips(chips: np.ndarray, max_chips: Optional[int]) -> np.ndarray:
    """At most ``max_chips`` chips: all of them (order unchanged) if they
    fit or ``max_chips`` is ``None``, else the ``max_chips`` largest by
    area, largest first (ties in input order).

    Example:
        Areas ``[4, 9, 1]`` with ``max_chips=2`` give chips 1, 0.
    """
    if max_chips is None or len(chips) <= max_chips:
        return chips
    area = (chips[:, 2] - chips[:, 0]) * (chips[:, 3] - chips[:, 1])
    return chips[np.argsort(-area, kind='stable')[:max_chips]]


def plan_next_chips(maps: Sequence[np.ndarray], windows: Windows,
                    scale: FocusScale, factor: float, next_factor: float,
                    stride: int, img_hw: Tuple[int, int],
                    max_chips: Optional[int] = None) -> np.ndarray:
    """FocusChips of the next scale from one image's maps (Algorithm 2).

    Per crop, :func:`~mmsnip.chips.focus_chips` with ``t, d`` and
    ``k'`` = :meth:`FocusScale.min_size_here` (``k`` in this scale's
    pixels) on the crop's map, in CROP pixels; the chips of
    all crops are mapped to ORIGINAL pixels (divided by the crop's exact
    factors, shifted by its origin), clipped to the image, merged until
    none overlap (:func:`~mmsnip.chips.merge_overlapping`) and capped to
    the ``max_chips`` largest (:func:`cap_chips`).

    Example:
        Scale factors 0.5 then 1.0, ``k = 128``: chips are grown to 64 px
        of this scale, i.e. 128 ORIGINAL px = 128 px of the next scale.

    Args:
        maps (list[np.ndarray]): Per crop the ``(ceil(h / stride),
            ceil(w / stride))`` FocusPixel probabilities (padding dropped).
        windows (Windows): The crops' origins, factors and shapes.
        scale (FocusScale): This scale (``t, d, k``).
        factor, next_factor (float): This and the next scale's factors.
        stride (int): Map stride, CROP px.
        img_hw (tuple): ORIGINAL ``(h, w)``.
        max_chips (int, optional): Cap; ``None``: every chip.

    Returns:
        np.ndarray: ``(C', 4)`` float64 xyxy ORIGINAL px, pairwise
        non-overlapping.
    """
    img_h, img_w = img_hw
    min_size = scale.min_size_here(factor, next_factor)
    found = [np.zeros((0, 4))]
    for prob, (x0, y0), (fx, fy), (h, w) in zip(maps, windows.origins,
                                                windows.factors,
                                                windows.shapes):
        scaled, _ = focus_chips(prob, scale.threshold, scale.dilation,
                                min_size, stride, (int(h), int(w)), factor,
                                inclusive=scale.inclusive_threshold)
        found.append(scaled / [fx, fy, fx, fy] + [x0, y0, x0, y0])
    merged = merge_overlapping(np.clip(
        np.concatenate(found), 0, [img_w, img_h, img_w, img_h]))
    return cap_chips(merged, max_chips)


def plan_oracle_chips(gt_boxes: np.ndarray, scale: FocusScale,
                      factor: float, next_factor: float,
                      rule: FocusLabelRule, img_hw: Tuple[int, int],
                      max_chips: Optional[int] = None) -> np.ndarray:
    """FocusChips of the next scale from perfect FocusPixels (Sec. 4.4.1):
    the ground truth labelled at this scale with ``rule``
    (:func:`~mmsnip.chips.oracle_focus_chips`, ``d`` and ``k`` as
    :func:`plan_next_chips`), capped as there (:func:`cap_chips`).

    Returns:
        np.ndarray: ``(C', 4)`` float64 xyxy ORIGINAL px.
    """
    img_h, img_w = img_hw
    _, orig = oracle_focus_chips(
        gt_boxes, img_h, img_w, factor, rule.stride, rule.a, rule.b, rule.c,
        scale.dilation, scale.min_size_here(factor, next_factor))
    return cap_chips(orig, max_chips)


def stack_keep_masks(dets: Sequence[np.ndarray], chips: np.ndarray,
                     img_hw: Tuple[int, int],
                     valid_range: Tuple[float, float],
                     border_tol: float) -> List[np.ndarray]:
    """Per chip, the bool keep mask of focus stacking (Sec. 3.4.3,
    :func:`~mmsnip.chips.focus_stack_keep_mask`) of its ``(N_i, 4)``
    ORIGINAL-px detections."""
    return [focus_stack_keep_mask(b, chip, img_hw, valid_range, border_tol)
            for b, chip in zip(dets, chips)]


def focus_recall(gt_boxes: np.ndarray,
                 chips_per_scale: Sequence[np.ndarray],
                 valid_ranges: Sequence[Tuple[float, Optional[float]]]
                 ) -> np.ndarray:
    """How many objects each transition of the cascade had to hand on, and
    how many it did.

    Transition ``i`` (scale ``i`` to ``i + 1``) *needs* the objects that
    only scale ``i + 1`` or a finer one may detect: valid at scale ``i + 1``
    and at no coarser scale (:func:`~mmsnip.chips.boxes.in_range` of
    ``sqrt(area)`` in ORIGINAL px, the valid ranges' frame). It *covered*
    those lying wholly inside a chip run at scale ``i + 1``; any other one
    that scale cannot find whole (focus stacking prunes detections cut by
    a chip side). The oracle's FocusChips cover nearly all by construction;
    the learned ones show which transition loses objects.

    Args:
        gt_boxes (np.ndarray): ``(N, 4)`` xyxy ORIGINAL px.
        chips_per_scale (list[np.ndarray]): Per scale, coarse to fine, the
            ``(C_s, 4)`` chips (xyxy ORIGINAL px) run there; empty or
            missing for scales that did not run.
        valid_ranges (list[tuple]): Per scale ``(lo, hi)``, ORIGINAL px;
            ``hi`` may be ``None`` (no upper bound).

    Returns:
        np.ndarray: ``(S - 1, 2)`` int64, per transition ``(needed,
        covered)``.
    """
    boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    sizes = box_sizes(boxes)
    valid = np.stack([
        in_range(sizes, (lo, math.inf if hi is None else hi))
        for lo, hi in valid_ranges
    ]) if len(valid_ranges) else np.zeros((0, len(boxes)), bool)
    out = np.zeros((max(len(valid_ranges) - 1, 0), 2), np.int64)
    for i in range(len(out)):
        needed = valid[i + 1] & ~valid[:i + 1].any(0)
        chips = np.asarray(chips_per_scale[i + 1], np.float64).reshape(
            -1, 4) if i + 1 < len(chips_per_scale) else np.zeros((0, 4))
        inside = ((boxes[:, None, :2] >= chips[None, :, :2]) &
                  (boxes[:, None, 2:] <= chips[None, :, 2:])).all(2).any(1)
        out[i] = needed.sum(), (needed & inside).sum()
    return out


def _intersect(intervals: List[Tuple[float, float]], lo: float,
               hi: float) -> List[Tuple[float, float]]:
    """The parts of disjoint ``(lo, hi)`` intervals inside ``(lo, hi)``."""
    out = [(max(a, lo), min(b, hi)) for a, b in intervals]
    return [(a, b) for a, b in out if a < b]


class SizeGap(NamedTuple):
    """Object sizes ``(lo, hi)`` (sqrt(area), ORIGINAL px) a cascade
    loses, and ``scale``: the finest scale that reaches all of them (its
    valid range could keep them)."""
    lo: float
    hi: float
    scale: int


def cascade_size_gaps(factors: Sequence[float],
                      valid_ranges: Sequence[Tuple[float, Optional[float]]],
                      rule: FocusLabelRule) -> List[SizeGap]:
    """Object sizes an AutoFocus cascade neither keeps nor zooms into.

    Scale ``s`` keeps detections of sizes in its valid range ``[lo_s,
    hi_s)``; it hands on to scale ``s + 1`` (guaranteed, by FocusPixels)
    the objects of sizes ``(a / f_s, b / f_s)`` (the label rule's small
    objects, :class:`FocusLabelRule`, CHIP px, over the scale's factor).
    The coarsest scale sees every size. A size no scale both reaches and
    keeps is lost whatever the maps predict (oracle FocusChips included),
    except by the context of a chip made for a smaller neighbour. Example:
    the COCO training ranges at test, a 640 px image (factors 0.8, 1.667,
    3), ``(5, 64, 90)``: the coarsest scale keeps from 120 px on, its
    FocusPixels reach sizes under 64 / 0.8 = 80 px, so objects of 80-120
    px are lost; the released code tests with ``(75, inf)`` there.

    Args:
        factors (Sequence[float]): Per scale, coarse to fine, the factor
            of this image (``ScaleSpec.factor_for``).
        valid_ranges (Sequence[tuple]): Per scale ``(lo, hi)``, sqrt(area)
            in ORIGINAL px (``hi`` None or inf: no upper bound).
        rule (FocusLabelRule): ``a`` and ``b`` in CHIP px.

    Returns:
        list[SizeGap]: The lost size intervals, ORIGINAL px, ascending,
        above ``a / f_0`` (sizes the coarsest scale's FocusPixels ignore as
        too small: the paper's choice, not a gap); empty if none. Single
        sizes (touching ranges) are not gaps.
    """
    if len(factors) != len(valid_ranges) or not len(factors):
        raise ValueError(f'cascade_size_gaps: {len(factors)} factors for '
                         f'{len(valid_ranges)} valid ranges')
    reached = [[(0.0, math.inf)]]
    kept: List[Tuple[float, float]] = []
    for s, (f, (lo, hi)) in enumerate(zip(factors, valid_ranges)):
        kept += _intersect(reached[s], lo, math.inf if hi is None else hi)
        if s + 1 < len(factors):
            reached.append(_intersect(reached[s], rule.a / f, rule.b / f))

    def finest_reaching(lo: float, hi: float) -> int:
        return max(s for s, parts in enumerate(reached)
                   if any(a <= lo and hi <= b for a, b in parts))

    gaps, start = [], rule.a / factors[0]
    for a, b in sorted(kept) + [(math.inf, math.inf)]:
        if a > start:
            gaps.append(SizeGap(start, a, finest_reaching(start, a)))
        start = max(start, b)
    return gaps


@dataclasses.dataclass
class ScaleTrace:
    """What one scale of the cascade processed and produced, one image.

    Boxes are xyxy in ORIGINAL-image pixels; ``C`` is the number of chips.

    Attributes:
        factor (float): The scale's factor for this image.
        chips (np.ndarray): ``(C, 4)`` float chips run at this scale (the
            whole image at the coarsest).
        origins, factors, crop_hw (np.ndarray): The crops' :class:`Windows`
            (``crop_hw`` = ``shapes``: network input, padding excluded).
        focus (list[np.ndarray]): Per chip the ``(ceil(h / stride),
            ceil(w / stride))`` FocusPixel probability (empty list when
            the maps were not read: oracle chips or the last scale).
        dets (list[tuple]): Per chip ``(boxes (N, 4), scores (N,), labels
            (N,))`` numpy detections before focus stacking.
        keep (list[np.ndarray]): Per chip the ``(N,)`` bool stacking mask.
        next_chips (np.ndarray, optional): ``(C', 4)`` FocusChips this scale
            hands to the next; ``None`` at the last scale.
    """
    factor: float
    chips: np.ndarray
    origins: np.ndarray
    factors: np.ndarray
    crop_hw: np.ndarray
    focus: List[np.ndarray]
    dets: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]
    keep: List[np.ndarray] = dataclasses.field(default_factory=list)
    next_chips: Optional[np.ndarray] = None

    def kept(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes, scores, labels)`` that focus stacking kept, the
        chips' detections concatenated."""
        parts = [tuple(v[k] for v in d) for d, k in zip(self.dets,
                                                          self.keep)]
        if not parts:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), \
                np.zeros(0, np.int64)
        return tuple(np.concatenate(p) for p in zip(*parts))


@dataclasses.dataclass
class CascadeTrace:
    """One image through the cascade: the ORIGINAL ``(h, w)``, the map
    ``stride``, whether chips came from the ground truth (``oracle``), one
    :class:`ScaleTrace` per scale that ran (coarse to fine; scales after
    one without FocusChips do not run) and the returned prediction
    (``result``, a ``DetDataSample``)."""
    img_hw: Tuple[int, int]
    stride: int
    oracle: bool = False
    scales: List[ScaleTrace] = dataclasses.field(default_factory=list)
    result: object = None
