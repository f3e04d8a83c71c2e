# Copyright (c) mmsnip contributors. All rights reserved.
"""Suggest chip parameters for a dataset, and measure what they cost.

Bring-your-own-data helper (pure numpy): from the object sizes of a dataset
(sqrt(w * h) in ORIGINAL-image pixels, the paper's size) propose scales and
valid ranges so that every object is seen, at some scale, at a size the
detector handles well (``target``, 30-500 px in SCALED = chip pixels by
default), with overlapping ranges between neighbouring scales (SNIP,
Sec. 3.2; SNIPER, Sec. 3.3). :func:`chip_statistics` then runs the real
:func:`~mmsnip.chips.generate_positive_chips` on (a sample of) the images
to report chips per image and pixels against the full pyramid.

Worked example: ``suggest_params([6, 400], trim=0)`` (target 30-500 px,
overlap 2, 3 scales)::

    finest factor   30 / 6    = 5, capped at max_factor -> 4.0
    coarsest factor 500 / 400                           -> 1.25
    geometric steps (1.79 each)                         -> 4.0, 2.24, 1.25
    centres sqrt(30 * 500) / f    = 30.6, 54.7, 98.0 px (ORIGINAL)
    boundaries (geometric means)  = 40.9, 73.2 px, widened by sqrt(2) each way
    valid ranges (ORIGINAL px)    = (0, 57.8) @ 4.0, (29, 103) @ 2.24,
                                    (51.8, inf) @ 1.25
    span: sizes 7.5-400 px are 30-500 px at a scale where they are valid

Everything is deterministic (sampling uses a fixed seed).
"""
import dataclasses
import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from mmsnip.utils.checks import check_integer
from .boxes import as_boxes, box_sizes, in_range, sanitize_boxes
from .positive import generate_positive_chips
from .scales import INF, ChipConfig, ScaleSpec, range_gap

# Defaults of the suggestion (SCALED pixels unless noted).
DEFAULT_TARGET = (30.0, 500.0)
DEFAULT_OVERLAP = 2.0
DEFAULT_MAX_FACTOR = 4.0
# Ignore this fraction of the smallest and of the largest objects when
# placing the scales (one outlier must not stretch the whole pyramid).
DEFAULT_TRIM = 0.001
# Neighbouring factors are at least this ratio apart (closer scales add
# chips without adding scale coverage).
MIN_STEP = 1.5


@dataclasses.dataclass(frozen=True)
class ParamSuggestion:
    """Suggested chip settings.

    Attributes:
        scales (tuple[ScaleSpec, ...]): Coarse to fine (the order
            ``AutoFocusTTAModel`` needs), fixed factors, valid ranges in
            ORIGINAL pixels.
        chip_size (int): ``K`` in SCALED pixels.
        chip_stride (int): ``d`` in SCALED pixels.
        target (tuple[float, float]): Object sizes, SCALED pixels, every
            bounded valid range maps into (``target[1]`` may have been
            lowered to ``chip_size``).
        span (tuple[float, float]): ORIGINAL sizes ``(lo, hi)``: an object
            with ``lo < size < hi`` is valid at some scale where its SCALED
            size lies inside ``target``.
        notes (tuple[str, ...]): Human-readable remarks (caps hit, objects
            the scales cannot bring into ``target``).
    """
    scales: Tuple[ScaleSpec, ...]
    chip_size: int
    chip_stride: int
    target: Tuple[float, float]
    span: Tuple[float, float]
    notes: Tuple[str, ...] = ()

    def chip_cfg(self) -> dict:
        """The plain ``chip_cfg`` dict of a config (``None`` for inf)."""
        return dict(
            chip_size=self.chip_size,
            chip_stride=self.chip_stride,
            scales=[dict(factor=s.factor,
                         valid_range=(s.valid_range[0], None if math.isinf(
                             s.valid_range[1]) else s.valid_range[1]))
                    for s in self.scales])

    def chip_config(self) -> ChipConfig:
        """The suggestion as a validated :class:`ChipConfig`."""
        return ChipConfig.from_dict(self.chip_cfg())


@dataclasses.dataclass(frozen=True)
class ChipStatistics:
    """What a chip config costs on a set of images (ORIGINAL sizes).

    Attributes:
        num_images (int): Images measured.
        num_objects (int): Non-crowd boxes with positive area in the image.
        chips_per_image (float): Mean positive chips per image.
        chips_per_scale (tuple[float, ...]): Mean per image, per scale (the
            config's order).
        chip_pixels_per_image (float): ``K * K`` per positive chip (what a
            padded batch processes), mean per image.
        chip_pixels_per_image_unpadded (float): The chips' own areas (a
            chip clipped to a small canvas counts what it holds).
        pyramid_pixels_per_image (float): Every scale's whole canvas (SNIP).
        frac_valid_nowhere (float): Objects valid at no scale.
        frac_off_target (float): Objects valid somewhere but, at every
            scale where they are valid, outside ``target`` (SCALED pixels).
        frac_uncoverable (float): Objects valid at some scale but larger
            than a chip at every scale where they are valid.
        valid_scales_per_object (float): Mean number of scales an object is
            valid at (overlap costs chips).
    """
    num_images: int
    num_objects: int
    chips_per_image: float
    chips_per_scale: Tuple[float, ...]
    chip_pixels_per_image: float
    chip_pixels_per_image_unpadded: float
    pyramid_pixels_per_image: float
    frac_valid_nowhere: float
    frac_off_target: float
    frac_uncoverable: float
    valid_scales_per_object: float

    @property
    def pyramid_ratio(self) -> float:
        """Full-pyramid pixels / chip pixels (padded), ``inf`` if no
        chips."""
        if self.chip_pixels_per_image <= 0:
            return INF
        return self.pyramid_pixels_per_image / self.chip_pixels_per_image


def _round_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f'{x:.{digits}g}')


def _round_range_value(x: float, up: bool) -> float:
    """A valid-range end made readable: 3 significant digits below 100 px,
    whole pixels above (steps of at least 0.01 px), rounded towards the
    inside of the range (``up`` for a minimum) so the range never leaves
    the target."""
    if x <= 0 or math.isinf(x):
        return float(x)
    step = min(max(10.0**(math.floor(math.log10(x)) - 2), 0.01), 1.0)
    q = x / step
    q = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
    return round(q * step, 2)


def _check_sizes(sizes) -> np.ndarray:
    arr = np.asarray(sizes, np.float64).reshape(-1)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if not len(arr):
        raise ValueError('suggest_params: no object with a positive finite '
                         'size (sqrt(w * h)) to place the scales on')
    return np.sort(arr)


def _best_window(log_sizes: np.ndarray, width: float, lowest: float
                 ) -> float:
    """Start (log px) of the window ``[s, s + width]`` holding the most
    sorted ``log_sizes``, with ``s >= lowest``; ties: the smallest ``s``."""
    starts = np.maximum(log_sizes, lowest)
    counts = np.searchsorted(log_sizes, starts + width, side='right') - \
        np.searchsorted(log_sizes, starts, side='left')
    return float(starts[int(np.argmax(counts))])


def suggest_params(sizes,
                   num_scales: int = 3,
                   chip_size: int = 512,
                   chip_stride: int = 32,
                   target: Tuple[float, float] = DEFAULT_TARGET,
                   overlap: float = DEFAULT_OVERLAP,
                   max_factor: float = DEFAULT_MAX_FACTOR,
                   trim: float = DEFAULT_TRIM,
                   open_ends: bool = True) -> ParamSuggestion:
    """Propose scales and valid ranges from object sizes.

    Scale rule: every scale is a fixed ``factor``. Valid ranges are in
    ORIGINAL pixels; a fixed factor maps a range to the same SCALED span in
    every image, so "each object is ``target`` px at some scale" holds
    whatever the mix of image sizes. (``max_side`` / ``short_max``, the
    paper's rules for COCO, where all images are about 640 px, would make
    an object's SCALED size depend on its image's size; they remain
    available by editing the written config.)

    Placement, in log space: the finest factor brings the smallest objects
    (``trim`` quantile) to ``target[0]``, capped at ``max_factor``; the
    coarsest brings the largest (``1 - trim`` quantile) to ``target[1]``;
    factors in between are geometric. Neighbouring factors are at least
    ``MIN_STEP`` apart and at most ``target[1] / target[0] / overlap`` (so
    that neighbouring ranges overlap by the ratio ``overlap``); when
    ``num_scales`` cannot span all sizes, the window holding the most
    objects wins and a note says what is left out.

    Ranges: scale ``i`` owns sizes around its centre ``sqrt(t0 * t1) /
    f_i``; the boundary between neighbours is the geometric mean of their
    centres, widened by ``sqrt(overlap)`` each way and clipped to
    ``(t0 / f_i, t1 / f_i)`` so that a valid object is inside ``target``
    at that scale. With ``open_ends`` (the paper's choice: (0, 80) and
    (120, inf) on COCO) the finest range starts at 0 and the coarsest
    ends at inf: every object is valid somewhere; the ones outside
    ``span`` are then smaller or larger than ``target`` there.

    Args:
        sizes (array): ``(N,)`` object sizes, sqrt(w * h), ORIGINAL
            pixels; non-finite and non-positive entries are ignored.
        num_scales (int): Number of scales, >= 1.
        chip_size (int): ``K``, SCALED pixels.
        chip_stride (int): ``d``, SCALED pixels, divides ``chip_size``.
        target (tuple[float, float]): Wanted object sizes at a valid
            scale, SCALED pixels; ``target[1]`` is lowered to ``K - d`` so
            a valid object fits in a chip.
        overlap (float): Ratio ``hi_i / lo_{i+1}`` by which neighbouring
            ranges overlap, > 1.
        max_factor (float): Largest up-sampling factor.
        trim (float): Fraction of objects ignored at each end, in [0, 0.5).
        open_ends (bool): Finest range from 0, coarsest to inf.

    Returns:
        ParamSuggestion: Scales coarse to fine, factors rounded to 3
        significant digits, range ends to 3 significant digits (whole
        pixels from 100 px).

    Raises:
        ValueError: No positive size; bad ``num_scales``, ``target``,
            ``overlap``, ``trim`` or chip settings (from
            :class:`ChipConfig`).
    """
    log_sizes = np.log(_check_sizes(sizes))
    n = check_integer(num_scales, 'num_scales')
    ChipConfig(scales=(ScaleSpec(factor=1.0),), chip_size=chip_size,
               chip_stride=chip_stride)  # validates K and d
    t0, t1 = (float(v) for v in target)
    notes = []
    if t1 > chip_size:
        notes.append(f'target max {t1:g} px lowered to chip_size = '
                     f'{chip_size} px so that a valid object fits in a chip')
        t1 = float(chip_size)
    if not (0 < t0 < t1):
        raise ValueError(f'target must be (min, max) with 0 < min < max '
                         f'(SCALED px), got {(t0, t1)}')
    if not overlap > 1:
        raise ValueError(f'overlap must be > 1, got {overlap!r}')
    if not 0 <= trim < 0.5:
        raise ValueError(f'trim must be in [0, 0.5), got {trim!r}')
    if not max_factor > 0:
        raise ValueError(f'max_factor must be > 0, got {max_factor!r}')
    ratio = t1 / t0
    max_step = ratio / overlap
    if n > 1 and max_step <= MIN_STEP:
        raise ValueError(
            f'target {t0:g}-{t1:g} px is too narrow for {n} scales with '
            f'overlap {overlap:g}: widen it or lower overlap')

    lo, hi = np.quantile(log_sizes, [trim, 1 - trim])
    log_fmax = math.log(max_factor)
    log_t0, log_t1 = math.log(t0), math.log(t1)
    # log factors, finest first; ``width``: the widest span of ORIGINAL
    # log sizes that n scales can bring into the target
    step = math.log(max_step) if n > 1 else 0.0
    width = log_t1 - log_t0 + (n - 1) * step
    if hi - lo > width:
        # 1% margins keep the window's edge objects inside after rounding
        start = _best_window(log_sizes, width - 0.02,
                             log_t0 - log_fmax + 0.01)
        fine = log_t0 - (start - 0.01)
        notes.append(
            f'{n} scale(s) cannot bring all sizes into {t0:g}-{t1:g} px '
            f'with overlap {overlap:g}; try more scales')
    elif n == 1:
        fine = min((log_t0 + log_t1 - lo - hi) / 2, log_fmax)
    else:
        fine = min(log_t0 - lo, log_fmax)
        step = (fine - (log_t1 - hi)) / (n - 1)
        if step < math.log(MIN_STEP):
            # Sizes fit in fewer scales: spread the scales MIN_STEP apart
            # around the middle, below max_factor.
            middle = (fine + log_t1 - hi) / 2
            step = math.log(MIN_STEP)
            fine = min(middle + step * (n - 1) / 2, log_fmax)
    log_f = fine - step * np.arange(n)
    if math.isclose(fine, log_fmax) and log_t0 - lo > log_fmax:
        notes.append(f'finest factor capped at max_factor {max_factor:g}: '
                     f'objects under {t0 / max_factor:.3g} px are smaller '
                     f'than {t0:g} px at every scale')
    factors = np.array([_round_sig(math.exp(v)) for v in log_f])
    centre = math.sqrt(t0 * t1) / factors
    bound = np.sqrt(centre[:-1] * centre[1:])  # between i and i + 1
    half = math.sqrt(overlap)
    lows = np.maximum(np.r_[0.0, bound / half], t0 / factors)
    highs = np.minimum(np.r_[bound * half, INF], t1 / factors)
    lows = [_round_range_value(v, up=True) for v in lows]
    highs = [_round_range_value(v, up=False) for v in highs]
    span = (lows[0], highs[-1])
    sizes = np.exp(log_sizes)
    below, above = np.mean(sizes <= span[0]), np.mean(sizes >= span[1])
    if below or above:
        notes.append(
            f'{below:.1%} of the objects are at most {span[0]:g} px and '
            f'{above:.1%} at least {span[1]:g} px: no scale brings them '
            f'into {t0:g}-{t1:g} px' + (' (they stay valid at the finest / '
                                        'coarsest scale)' if open_ends
                                        else ' (valid at no scale)'))
    if open_ends:
        lows[0], highs[-1] = 0.0, INF
    scales = tuple(ScaleSpec(factor=float(f), valid_range=(a, b))
                   for f, a, b in zip(factors, lows, highs))[::-1]
    assert range_gap([s.valid_range for s in scales]) is None
    return ParamSuggestion(scales, int(chip_size), int(chip_stride),
                           (t0, t1), span, tuple(notes))


def sample_images(num_images: int, max_images: Optional[int],
                  seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_images`` of ``num_images`` images.

    Returns:
        np.ndarray: ``(k,)`` int64 sorted indices; all images when
        ``max_images`` is None or not smaller; a fixed-seed sample else.
    """
    if max_images is None or max_images >= num_images:
        return np.arange(num_images, dtype=np.int64)
    if max_images < 1:
        raise ValueError(f'max_images must be >= 1, got {max_images}')
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_images, max_images, replace=False)
                   ).astype(np.int64)


def chip_statistics(cfg: ChipConfig,
                    boxes,
                    img_index,
                    image_shapes,
                    iscrowd=None,
                    target: Optional[Tuple[float, float]] = DEFAULT_TARGET,
                    progress: Optional[Callable[[int, int], None]] = None
                    ) -> ChipStatistics:
    """Chips, pixels and object coverage of ``cfg`` on some images.

    Args:
        cfg (ChipConfig): Any chip config (suggested or from a config file).
        boxes (array): ``(N, 4)`` xyxy, ORIGINAL pixels, all images.
        img_index (array): ``(N,)`` int, the image (row of
            ``image_shapes``) of each box.
        image_shapes (array): ``(M, 2)`` ORIGINAL ``(height, width)``.
        iscrowd (array, optional): ``(N,)`` bool; crowd boxes are ignore
            regions (never counted as objects, never covered).
        target (tuple[float, float], optional): SCALED sizes for
            ``frac_off_target``; None: every valid object is on target.
        progress (callable, optional): Called as ``progress(done, total)``
            after each image.

    Returns:
        ChipStatistics: Means per image over the ``M`` images. Boxes are
        sanitised first (:func:`~mmsnip.chips.sanitize_boxes`).
    """
    boxes = as_boxes(boxes)
    img_index = np.asarray(img_index, np.int64).reshape(-1)
    shapes = np.asarray(image_shapes, np.float64).reshape(-1, 2)
    crowd = np.zeros(len(boxes), bool) if iscrowd is None else \
        np.asarray(iscrowd, bool).reshape(-1)
    if not (len(img_index) == len(crowd) == len(boxes)):
        raise ValueError(f'{len(boxes)} boxes, {len(img_index)} image '
                         f'indices and {len(crowd)} crowd flags')
    m, num_s = len(shapes), len(cfg.scales)
    if len(img_index) and not (0 <= img_index.min() and
                               img_index.max() < m):
        raise ValueError(f'img_index must be in [0, {m}), got '
                         f'{img_index.min()}..{img_index.max()}')
    # One factor and canvas per (image, scale): a loop over images.
    factor = np.array([[s.factor_for(h, w) for s in cfg.scales]
                       for h, w in shapes]).reshape(m, num_s)
    canvas = np.array([[np.prod(s.scaled_shape(h, w)) for s in cfg.scales]
                       for h, w in shapes], np.float64).reshape(m, num_s)
    clipped, keep = sanitize_boxes(boxes, shapes[img_index, 0],
                                   shapes[img_index, 1])
    sizes = box_sizes(clipped)
    objects = keep & ~crowd
    valid = np.stack([in_range(sizes, s.valid_range) for s in cfg.scales],
                     axis=1) & objects[:, None]  # (N, S)
    scaled = sizes[:, None] * factor[img_index]
    on_target = valid if target is None else \
        valid & (scaled >= target[0]) & (scaled <= target[1])

    chips = np.zeros((m, num_s))
    unpadded = np.zeros(m)
    fits = np.zeros(len(boxes), bool)  # valid and coverable at some scale
    order = np.argsort(img_index, kind='stable')
    split = np.searchsorted(img_index[order], np.arange(1, m))
    for i, members in enumerate(np.split(order, split)):
        h, w = shapes[i]
        res = generate_positive_chips(boxes[members], h, w, cfg,
                                      crowd[members])
        chips[i] = np.bincount(res.chips.scale_index, minlength=num_s)
        wh = res.chips.boxes_scaled[:, 2:] - res.chips.boxes_scaled[:, :2]
        unpadded[i] = float((wh[:, 0] * wh[:, 1]).sum())
        fits[members] = (res.valid & ~res.uncoverable).any(0)
        if progress is not None:
            progress(i + 1, m)
    num_obj = int(objects.sum())
    denom = max(num_obj, 1)
    anywhere = valid.any(1)
    per_img = max(m, 1)
    return ChipStatistics(
        num_images=m,
        num_objects=num_obj,
        chips_per_image=float(chips.sum() / per_img),
        chips_per_scale=tuple(float(v) for v in chips.sum(0) / per_img),
        chip_pixels_per_image=float(chips.sum() * cfg.chip_size**2 /
                                    per_img),
        chip_pixels_per_image_unpadded=float(unpadded.sum() / per_img),
        pyramid_pixels_per_image=float(canvas.sum() / per_img),
        frac_valid_nowhere=float((objects & ~anywhere).sum() / denom),
        frac_off_target=float((anywhere & ~on_target.any(1)).sum() / denom),
        frac_uncoverable=float((anywhere & ~fits).sum() / denom),
        valid_scales_per_object=float(valid.sum() / denom))


def object_sizes(boxes, img_index, image_shapes, iscrowd=None
                 ) -> np.ndarray:
    """Sizes of the usable non-crowd objects (what the suggestion uses).

    Args:
        boxes (array): ``(N, 4)`` xyxy, ORIGINAL pixels.
        img_index (array): ``(N,)`` row of ``image_shapes`` per box.
        image_shapes (array): ``(M, 2)`` ``(height, width)``.
        iscrowd (array, optional): ``(N,)`` bool.

    Returns:
        np.ndarray: ``(K,)`` float64 sqrt(w * h) after clipping to the
        image, ORIGINAL pixels; crowd and zero-area boxes left out.
    """
    boxes = as_boxes(boxes)
    shapes = np.asarray(image_shapes, np.float64).reshape(-1, 2)
    idx = np.asarray(img_index, np.int64).reshape(-1)
    clipped, keep = sanitize_boxes(boxes, shapes[idx, 0], shapes[idx, 1])
    if iscrowd is not None:
        keep &= ~np.asarray(iscrowd, bool).reshape(-1)
    return box_sizes(clipped[keep])


def scale_table(cfg: ChipConfig) -> Sequence[str]:
    """One readable line per scale: rule, valid range (ORIGINAL px) and
    the range in SCALED px for fixed factors."""
    lines = []
    for i, s in enumerate(cfg.scales):
        lo, hi = s.valid_range
        line = (f'scale {i}: {s.rule_text}  valid '
                f'{lo:g}-{hi:g} px (original)')
        if s.factor is not None:
            slo, shi = s.valid_range_scaled(s.factor)
            line += f' = {slo:.0f}-{shi:.0f} px at the scale'
        lines.append(line)
    return lines
