# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIPER chips: the chip grid, the greedy cover and positive chips.

Algorithm 1 of the paper (Sec. 3.3.2): per scale, ``K x K`` candidate chips
lie on a stride-``d`` grid over the scaled canvas; chips are picked greedily,
each time the one that fully encloses the most not-yet-covered valid boxes,
until every valid box is covered.

The cover never materialises the candidates: along one axis the chips that
can enclose a box ``[b1, b2]`` are those with start ``s`` in ``[b2 - K, b1]``,
a contiguous run of grid indices, so "chip (ix, iy) covers box n" is a
rectangle in index space. Counting boxes per candidate is then a 2-D
difference array over the few distinct rectangle borders (coordinate
compression), whatever the canvas size (a 60000 px canvas costs nothing).
"""
import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .boxes import as_boxes, box_sizes, in_range, sanitize_boxes
from .scales import ChipConfig

_EPS = 1e-6


@dataclasses.dataclass
class ChipSet:
    """Chips of one image (any scales), as arrays.

    Attributes:
        boxes (np.ndarray): ``(C, 4)`` xyxy in ORIGINAL-image pixels.
        boxes_scaled (np.ndarray): ``(C, 4)`` xyxy in the chip's SCALED
            canvas; integer-valued, side ``min(K, canvas side)``.
        scale_index (np.ndarray): ``(C,)`` int64, index into the scales.
        scale_factor (np.ndarray): ``(C,)`` float64, scaled / original.
        is_positive (np.ndarray): ``(C,)`` bool, positive or negative chip.
    """
    boxes: np.ndarray
    boxes_scaled: np.ndarray
    scale_index: np.ndarray
    scale_factor: np.ndarray
    is_positive: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> 'ChipSet':
        return cls(np.zeros((0, 4)), np.zeros((0, 4)),
                   np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))

    @classmethod
    def concat(cls, sets: Sequence['ChipSet']) -> 'ChipSet':
        sets = [s for s in sets if len(s)]
        if not sets:
            return cls.empty()
        return cls(*(np.concatenate([getattr(s, f.name) for s in sets])
                     for f in dataclasses.fields(cls)))

    def select(self, index) -> 'ChipSet':
        """Chips ``index`` (a mask or integer array)."""
        return ChipSet(*(getattr(self, f.name)[index]
                         for f in dataclasses.fields(self)))


def chip_starts(length: int, chip_size: int, stride: int) -> np.ndarray:
    """Start coordinates of the candidate chips along one canvas axis.

    Starts at 0, d, 2d, ... while the chip ends before the canvas border,
    plus one chip anchored at the border (``length - K``), so the last
    row/column of chips stays inside the canvas and reaches its edge. A
    canvas side ``<= K`` gets the single start 0 (the chip is then clipped
    to the canvas: its side is ``length``).

    Returns:
        np.ndarray: ``(S,)`` float64, sorted, unique.
    """
    if length <= chip_size:
        return np.zeros(1)
    starts = np.arange(0, length - chip_size, stride, dtype=np.float64)
    return np.append(starts, float(length - chip_size))


def _feasible_runs(lo_edge: np.ndarray, hi_edge: np.ndarray,
                   starts: np.ndarray, extent: float
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Per box, the index run ``[first, last)`` of chips enclosing it."""
    first = np.searchsorted(starts, hi_edge - extent - _EPS, side='left')
    last = np.searchsorted(starts, lo_edge + _EPS, side='right')
    return first, last


def greedy_cover(boxes_scaled: np.ndarray, canvas_hw: Tuple[int, int],
                 chip_size: int, chip_stride: int, min_count: int = 1
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedily cover boxes with chips of the stride grid (Algorithm 1).

    Each step picks the candidate chip that fully encloses the most boxes
    not yet covered (ties: the first in row-major grid order, and within the
    run of equally good positions the middle one, so boxes sit away from
    chip borders); it stops when every coverable box is covered or the best
    chip would enclose fewer than ``min_count`` boxes (negative chips, Sec.
    3.3.3). The result does not depend on the order of the boxes.

    Args:
        boxes_scaled (np.ndarray): ``(N, 4)`` xyxy in SCALED pixels, inside
            the canvas.
        canvas_hw (tuple[int, int]): Scaled canvas ``(h, w)``.
        chip_size (int): ``K``.
        chip_stride (int): ``d``.
        min_count (int): Smallest number of boxes a chip must enclose.

    Returns:
        tuple: ``(chips, covered, coverable)``: ``(C, 4)`` chips in SCALED
        pixels; ``(N,)`` bool, box enclosed by a picked chip; ``(N,)`` bool,
        box fits in a chip at all (false for boxes larger than a chip).
    """
    h, w = canvas_hw
    starts_x = chip_starts(w, chip_size, chip_stride)
    starts_y = chip_starts(h, chip_size, chip_stride)
    ext_x, ext_y = min(chip_size, w), min(chip_size, h)
    lo_x, hi_x = _feasible_runs(boxes_scaled[:, 0], boxes_scaled[:, 2],
                                starts_x, ext_x)
    lo_y, hi_y = _feasible_runs(boxes_scaled[:, 1], boxes_scaled[:, 3],
                                starts_y, ext_y)
    coverable = (lo_x < hi_x) & (lo_y < hi_y)
    remaining = coverable.copy()
    covered = np.zeros(len(boxes_scaled), bool)
    picks: List[Tuple[int, int]] = []
    while remaining.any():
        idx = np.flatnonzero(remaining)
        # Coordinate compression: borders of the index-space rectangles.
        xs = np.unique(np.concatenate([lo_x[idx], hi_x[idx]]))
        ys = np.unique(np.concatenate([lo_y[idx], hi_y[idx]]))
        cx0, cx1 = np.searchsorted(xs, lo_x[idx]), np.searchsorted(
            xs, hi_x[idx])
        cy0, cy1 = np.searchsorted(ys, lo_y[idx]), np.searchsorted(
            ys, hi_y[idx])
        nx, ny = len(xs), len(ys)
        flat = np.concatenate(
            [cy0 * nx + cx0, cy0 * nx + cx1, cy1 * nx + cx0, cy1 * nx + cx1])
        sign = np.repeat([1, -1, -1, 1], len(idx))
        diff = np.bincount(flat, weights=sign, minlength=nx * ny)
        counts = diff.reshape(ny, nx).cumsum(0).cumsum(1)
        best = int(np.argmax(counts))
        by, bx = divmod(best, nx)
        if counts[by, bx] < min_count:
            break
        ix = int((xs[bx] + xs[bx + 1] - 1) // 2)
        iy = int((ys[by] + ys[by + 1] - 1) // 2)
        hit = remaining & (lo_x <= ix) & (ix < hi_x) & (lo_y <= iy) & \
            (iy < hi_y)
        covered |= hit
        remaining &= ~hit
        picks.append((ix, iy))
    if not picks:
        return np.zeros((0, 4)), covered, coverable
    ix, iy = np.array(picks).T
    chips = np.stack([
        starts_x[ix], starts_y[iy], starts_x[ix] + ext_x, starts_y[iy] + ext_y
    ], axis=1)
    return chips, covered, coverable


@dataclasses.dataclass
class PositiveChipResult:
    """Positive chips of an image and per-scale bookkeeping.

    Attributes:
        chips (ChipSet): The positive chips of all scales.
        valid (np.ndarray): ``(S, N)`` bool, box n valid at scale s (size in
            the scale's range, not crowd, not dropped by sanitising).
        uncoverable (np.ndarray): ``(S, N)`` bool, valid at scale s but no
            chip of the grid can enclose it: larger than a chip there, or
            with a side longer than ``K - d`` that falls between grid
            positions. Such boxes still appear (cropped) in every chip they
            overlap.
    """
    chips: ChipSet
    valid: np.ndarray
    uncoverable: np.ndarray


def generate_positive_chips(gt_boxes, img_h: int, img_w: int,
                            cfg: ChipConfig,
                            iscrowd: Optional[np.ndarray] = None
                            ) -> PositiveChipResult:
    """Positive chips of one image at every scale (Algorithm 1, Sec. 3.3.2).

    Args:
        gt_boxes (array): ``(N, 4)`` xyxy in ORIGINAL-image pixels. Boxes are
            sanitised first (:func:`~mmsnip.chips.boxes.sanitize_boxes`:
            clipped to the image; NaN/inf or empty boxes dropped).
        img_h, img_w (int): Original image size.
        cfg (ChipConfig): Scales, chip size and stride.
        iscrowd (np.ndarray, optional): ``(N,)`` bool; crowd boxes never
            need covering.

    Returns:
        PositiveChipResult: chips in original and scaled pixels.
    """
    boxes, keep = sanitize_boxes(gt_boxes, img_h, img_w)
    crowd = np.zeros(len(boxes), bool) if iscrowd is None else \
        np.asarray(iscrowd, bool).reshape(-1)
    if len(crowd) != len(boxes):
        raise ValueError(f'iscrowd has {len(crowd)} entries for '
                         f'{len(boxes)} boxes')
    sizes = box_sizes(boxes)
    num_scales = len(cfg.scales)
    valid = np.zeros((num_scales, len(boxes)), bool)
    uncoverable = np.zeros_like(valid)
    sets = []
    for s, spec in enumerate(cfg.scales):
        factor = spec.factor_for(img_h, img_w)
        canvas = spec.scaled_shape(img_h, img_w)
        # Sec. 3.3.2: G_i = ground truth whose size lies in R_i.
        valid[s] = keep & ~crowd & in_range(sizes, spec.valid_range)
        idx = np.flatnonzero(valid[s])
        scaled = np.minimum(boxes[idx] * factor,
                            [canvas[1], canvas[0], canvas[1], canvas[0]])
        chips, _, coverable = greedy_cover(scaled, canvas, cfg.chip_size,
                                           cfg.chip_stride)
        uncoverable[s, idx] = ~coverable
        sets.append(_make_chip_set(chips, s, factor, img_h, img_w, True))
    return PositiveChipResult(ChipSet.concat(sets), valid, uncoverable)


def _make_chip_set(chips_scaled: np.ndarray, scale_index: int, factor: float,
                   img_h: int, img_w: int, positive: bool) -> ChipSet:
    """A ChipSet from chips in scaled pixels (original boxes clipped)."""
    n = len(chips_scaled)
    orig = np.clip(chips_scaled / factor, 0, [img_w, img_h, img_w, img_h])
    return ChipSet(orig, chips_scaled, np.full(n, scale_index, np.int64),
                   np.full(n, factor), np.full(n, positive))


@dataclasses.dataclass
class ChipGroundTruth:
    """The ground truth seen by one chip.

    Attributes:
        indices (np.ndarray): ``(M,)`` int64 indices into the image's boxes
            of every box overlapping the chip (positive-area intersection).
        boxes (np.ndarray): ``(M, 4)`` those boxes clipped to the chip, in
            CHIP pixels (scaled, relative to the chip's top-left corner).
        valid (np.ndarray): ``(M,)`` bool, the UNCLIPPED box's size lies in
            the chip scale's valid range (Sec. 3.3.2: cropped boxes keep
            the validity of the whole object).
        crowd (np.ndarray): ``(M,)`` bool crowd flags.
        covered (np.ndarray): ``(M,)`` bool, the box lies fully inside.
    """
    indices: np.ndarray
    boxes: np.ndarray
    valid: np.ndarray
    crowd: np.ndarray
    covered: np.ndarray


def chip_ground_truth(chip_box, factor, gt_boxes,
                      valid_range: Tuple[float, float],
                      iscrowd: Optional[np.ndarray] = None
                      ) -> ChipGroundTruth:
    """Every ground-truth box overlapping a chip, cropped to it.

    Args:
        chip_box (array): ``(4,)`` the chip (or the exact pixel window cut
            for it) in ORIGINAL-image pixels.
        factor (float | tuple[float, float]): ORIGINAL to CHIP pixels: one
            factor or ``(fx, fy)`` (a crop resized to integer sides).
        gt_boxes (array): ``(N, 4)`` in ORIGINAL-image pixels (sanitised).
        valid_range (tuple[float, float]): The scale's range, ORIGINAL px.
        iscrowd (np.ndarray, optional): ``(N,)`` bool.

    Returns:
        ChipGroundTruth: boxes in CHIP pixels.
    """
    boxes = as_boxes(gt_boxes, 'gt_boxes')
    chip = np.asarray(chip_box, np.float64).reshape(4)
    crowd = np.zeros(len(boxes), bool) if iscrowd is None else \
        np.asarray(iscrowd, bool).reshape(-1)
    lt = np.maximum(boxes[:, :2], chip[:2])
    rb = np.minimum(boxes[:, 2:], chip[2:])
    overlap = ((rb - lt) > 0).all(axis=1)
    idx = np.flatnonzero(overlap)
    fx, fy = np.broadcast_to(np.asarray(factor, np.float64), (2,))
    clipped = (np.concatenate([lt[idx], rb[idx]], axis=1) -
               np.tile(chip[:2], 2)) * [fx, fy, fx, fy]
    inside = (boxes[idx, :2] >= chip[:2]).all(1) & \
        (boxes[idx, 2:] <= chip[2:]).all(1)
    return ChipGroundTruth(
        indices=idx.astype(np.int64),
        boxes=clipped,
        valid=in_range(box_sizes(boxes[idx]), valid_range),
        crowd=crowd[idx],
        covered=inside)
