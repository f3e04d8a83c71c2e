# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus: FocusPixel labels, FocusChips and focus stacking (pure numpy).

* :func:`focus_pixel_labels`: the training target of the FocusPixel head on
  a chip's stride-``s`` grid (Sec. 3.4.1).
* :func:`focus_chips`: Algorithm 2, FocusChips from a predicted map
  (Sec. 3.4.2); :func:`oracle_focus_chips` builds them from ground truth
  (the upper bound of Sec. 4.4.1).
* :func:`focus_stack_keep_mask`: which detections of a chip survive focus
  stacking (Sec. 3.4.3).

The paper's values (the constants below) are the defaults here and of
the cascade's settings, :class:`~mmsnip.chips.focus_plan.FocusLabelRule`
and :class:`~mmsnip.chips.focus_plan.FocusScale`, which also hold the
planner (these functions applied across a scale's chips).
"""
from typing import Optional, Tuple

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .boxes import (FIT_EPS, as_boxes, box_sizes, boxes_overlap,
                    in_range, rectangle_counts)
# FocusPixel labels (Sec. 3.4.1).
IGNORE = -1
BACKGROUND = 0
FOCUS = 1

# Defaults (Sec. 3.4): the paper's label sizes a, b, c in CHIP pixels and
# map stride s (conv5 / C4) and Algorithm 2's dilation d = 3 (map cells,
# Sec. 4.4.1). The paper sets no t (it trades speed for accuracy) and
# sweeps k: k = 256 px is the original code's after the coarsest scale, t =
# 0.5 an even split of the softmax (the original code: 0.02).
PAPER_LABEL_SIZES = (5.0, 64.0, 90.0)
PAPER_STRIDE = 16
PAPER_THRESHOLD = 0.5
PAPER_DILATION = 3
PAPER_MIN_SIZE = 256.0


def _cell_runs(boxes: np.ndarray, stride: float, shape: Tuple[int, int]):
    """Per xyxy box (CHIP pixels), the cells ``[x0, x1) x [y0, y1)`` it
    overlaps with positive area on a stride grid of ``shape = (rows,
    cols)``: cell ``j`` spans ``[j * s, (j + 1) * s]``, so a box from ``u``
    to ``v`` covers cells ``floor(u / s)`` to ``ceil(v / s) - 1`` (clipped
    to the grid); a box of positive extent covers at least one cell even
    where ``v / s`` rounds down to ``u / s`` (sub-normal extents, or ``v``
    just past a cell border); only the part of the box on the grid counts
    (a box touching the grid from outside covers no cell, however its
    coordinates round). Returns four ``(N,)`` intp arrays."""
    grid = np.array([shape[1], shape[0]], np.float64) * stride  # (w, h)
    lo = np.clip(boxes[:, :2], 0, grid)
    hi = np.clip(boxes[:, 2:], 0, grid)
    start = np.floor(lo / stride)
    end = np.ceil(hi / stride)
    end = np.where(hi > lo, np.maximum(end, start + 1), end)
    x0, y0 = (np.clip(start[:, i], 0, shape[1 - i]).astype(np.intp)
              for i in (0, 1))
    x1, y1 = (np.clip(end[:, i], 0, shape[1 - i]).astype(np.intp)
              for i in (0, 1))
    return x0, y0, x1, y1


def focus_pixel_labels(boxes_chip, chip_hw: Tuple[int, int],
                       stride: int = PAPER_STRIDE,
                       a: float = PAPER_LABEL_SIZES[0],
                       b: float = PAPER_LABEL_SIZES[1],
                       c: float = PAPER_LABEL_SIZES[2],
                       boundary_ignore: bool = True,
                       sizes=None) -> np.ndarray:
    """FocusPixel labels of a chip (Sec. 3.4.1).

    A cell of the stride-``s`` grid (``s x s`` chip pixels; the last row and
    column may be partial) gets

    * ``FOCUS`` (1) if a box with ``a < size < b`` overlaps it,
    * else ``IGNORE`` (-1) if a box with ``size <= a`` or
      ``b <= size < c`` overlaps it,
    * else ``BACKGROUND`` (0),

    where ``size = sqrt(area)`` of the box in CHIP pixels and "overlaps"
    means a positive-area intersection (the paper's IoU > 0). 1 wins over
    -1 wins over 0 ("FocusPixels are given precedence"; the original code
    let the last box win). Boundaries follow the paper's text ("objects
    ... <= 5x5 pixels are marked invalid", "between 64x64 and 90x90 ...
    invalid"): sizes exactly ``a`` or ``b`` are ignored, ``size >= c`` is
    large (background). ``boundary_ignore=False`` is mmsnip's earlier rule
    (the formula's strict inequalities only: sizes exactly ``a`` or ``b``
    match no case and label background), kept for the demo and aerial
    configs whose published numbers were trained with it.

    Example:
        With ``s = 16`` and defaults (5, 64, 90), a 20 px box makes its
        cells 1, a 3 px box -1, a 70 px box -1, a 100 px box 0; where the
        20 px and 70 px boxes overlap the cell is 1. Boxes of exactly 5,
        64 and 90 px give -1, -1, 0 (0, 0, 0 with
        ``boundary_ignore=False``).

    Args:
        boxes_chip (array): ``(N, 4)`` float xyxy in CHIP pixels (they may
            extend beyond the chip; boxes with zero area or a NaN
            coordinate are ignored).
        chip_hw (tuple[int, int]): Chip ``(h, w)`` in pixels, > 0.
        stride (int): ``s``, the feature stride of the FocusPixel head.
        a, b, c (float): Size thresholds in CHIP pixels,
            ``0 <= a < b <= c``.
        boundary_ignore (bool): Sizes exactly ``a`` or ``b`` are ignored
            (the paper's text, default) instead of background.
        sizes (array, optional): ``(N,)`` sqrt(area) in CHIP pixels to
            classify each box by, e.g. of the whole re-scaled ground-truth
            box when ``boxes_chip`` were clipped to the chip (the paper
            labels from the re-scaled box); the cells painted are still
            those ``boxes_chip`` cover. Default: the sizes of
            ``boxes_chip``.

    Returns:
        np.ndarray: ``(ceil(h / s), ceil(w / s))`` int8 labels.
    """
    if not (0 <= a < b <= c):
        raise ValueError(f'focus thresholds need 0 <= a < b <= c, got '
                         f'{(a, b, c)}')
    if not (stride > 0 and chip_hw[0] > 0 and chip_hw[1] > 0):
        raise ValueError(f'need stride > 0 and a positive chip size, got '
                         f'stride {stride}, chip (h, w) {tuple(chip_hw)}')
    shape = (-(-int(chip_hw[0]) // stride), -(-int(chip_hw[1]) // stride))
    boxes = as_boxes(boxes_chip, 'boxes_chip')
    extent = box_sizes(boxes)
    real = (extent > 0) & np.isfinite(boxes).all(axis=1)
    if sizes is None:
        sizes = extent
    else:
        sizes = np.asarray(sizes, np.float64).reshape(-1)
        if len(sizes) != len(boxes):
            raise ValueError(f'focus_pixel_labels: {len(sizes)} sizes for '
                             f'{len(boxes)} boxes')
        real &= np.isfinite(sizes)
    # Sec. 3.4.1: 1 for a < size < b; -1 for size <= a or b <= size < c
    # (strict at a and b without boundary_ignore).
    focus = real & (sizes > a) & (sizes < b)
    if boundary_ignore:
        ignore = real & ((sizes <= a) | ((sizes >= b) & (sizes < c)))
    else:
        ignore = real & ((sizes < a) | ((sizes > b) & (sizes < c)))
    x0, y0, x1, y1 = _cell_runs(np.where(real[:, None], boxes, 0), stride,
                                shape)
    labels = np.zeros(shape, np.int8)
    for rule, value in ((ignore, IGNORE), (focus, FOCUS)):
        # Sec. 3.4.1: FOCUS is painted last: FocusPixels take precedence.
        cover = rectangle_counts(shape, y0[rule], y1[rule], x0[rule],
                                 x1[rule])
        labels[cover > 0] = value
    return labels


def merge_overlapping(boxes: np.ndarray) -> np.ndarray:
    """Replace overlapping boxes by their enclosing box until none overlap.

    Each round joins every group of transitively overlapping boxes (a
    connected component of the pairwise overlap graph) into its enclosing
    box; the enclosing boxes may overlap again, so rounds repeat until
    stable. Boxes that only touch do not overlap and are not merged.

    Args:
        boxes (np.ndarray): ``(N, 4)`` float xyxy, any frame.

    Returns:
        np.ndarray: ``(M, 4)`` float64 pairwise non-overlapping boxes in the
        same frame, each the enclosing box of some inputs, sorted by
        ``(y1, x1)``.
    """
    boxes = as_boxes(boxes)
    while len(boxes) > 1:
        adj = boxes_overlap(boxes, boxes)
        np.fill_diagonal(adj, False)
        if not adj.any():
            break
        n, comp = connected_components(coo_matrix(adj), directed=False)
        merged = np.empty((n, 4))
        merged[:, :2] = np.inf
        merged[:, 2:] = -np.inf
        np.minimum.at(merged[:, 0], comp, boxes[:, 0])
        np.minimum.at(merged[:, 1], comp, boxes[:, 1])
        np.maximum.at(merged[:, 2], comp, boxes[:, 2])
        np.maximum.at(merged[:, 3], comp, boxes[:, 3])
        boxes = merged
    return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def grow_to_min_size(boxes: np.ndarray, min_size: float,
                     canvas_hw: Tuple[float, float]) -> np.ndarray:
    """Grow boxes symmetrically to at least ``min_size`` per side.

    A grown box crossing the canvas border is shifted back inside (so it
    keeps ``min_size``); a canvas side shorter than ``min_size`` gives a box
    spanning that side. Boxes already larger are unchanged.

    Args:
        boxes (np.ndarray): ``(N, 4)`` float xyxy inside the canvas.
        min_size (float): ``k``, in the canvas' pixels.
        canvas_hw (tuple): ``(h, w)`` of the canvas.

    Returns:
        np.ndarray: ``(N, 4)`` float64 xyxy inside the canvas.
    """
    out = as_boxes(boxes).copy()
    for lo, hi, side in ((0, 2, canvas_hw[1]), (1, 3, canvas_hw[0])):
        length = np.minimum(np.maximum(out[:, hi] - out[:, lo], min_size),
                            side)
        center = (out[:, lo] + out[:, hi]) / 2
        start = np.clip(center - length / 2, 0, side - length)
        out[:, lo], out[:, hi] = start, start + length
    return out


def focus_chips(prob_map: np.ndarray, threshold: float = PAPER_THRESHOLD,
                dilation: int = PAPER_DILATION,
                min_size: float = PAPER_MIN_SIZE,
                stride: float = PAPER_STRIDE,
                canvas_hw: Optional[Tuple[int, int]] = None,
                factor: float = 1.0,
                inclusive: bool = False
                ) -> Tuple[np.ndarray, np.ndarray]:
    """FocusChips from a FocusPixel probability map (Algorithm 2).

    1. FocusPixels: ``prob > threshold`` (the paper's "greater than t";
       ``prob >= threshold`` with ``inclusive``, as the original code).
    2. Dilate with a ``dilation x dilation`` square (1: no dilation).
    3. Connected components (8-connectivity, OpenCV).
    4. Their enclosing boxes in the scale's pixels (cells times
       ``stride``), clipped to the canvas, grown to at least ``min_size``
       (:func:`grow_to_min_size`).
    5. Merge overlapping chips until none overlap
       (:func:`merge_overlapping`); merging only enlarges, so chips stay
       at least ``min_size`` where the canvas allows.

    Args:
        prob_map (np.ndarray): ``(H', W')`` float foreground probability on
            the stride grid of the scale the map was predicted at.
        threshold (float): ``t``.
        dilation (int): ``d``, in map cells, >= 1.
        min_size (float): ``k``, minimum chip side in that scale's pixels.
        stride (float): Feature stride of the map, in that scale's pixels.
        canvas_hw (tuple[int, int]): That scale's image ``(h, w)`` in its
            pixels; default ``(H' * stride, W' * stride)``.
        factor (float): That scale's factor (its pixels / ORIGINAL pixels).
        inclusive (bool): Threshold with ``>=`` instead of ``>``.

    Returns:
        tuple: ``(chips_scaled, chips_orig)``: ``(C, 4)`` float64 xyxy in
        the map's scale pixels and in ORIGINAL-image pixels, pairwise
        non-overlapping, sorted by ``(y1, x1)``.
    """
    prob = np.asarray(prob_map, np.float32)
    if prob.ndim != 2:
        raise ValueError(f'prob_map must be 2-D, got shape {prob.shape}')
    if not (int(dilation) == dilation and dilation >= 1 and stride > 0
            and min_size >= 0 and factor > 0):
        raise ValueError(
            'focus_chips needs an integer dilation >= 1, stride > 0, '
            f'min_size >= 0 and factor > 0, got dilation {dilation}, stride '
            f'{stride}, min_size {min_size}, factor {factor}')
    if canvas_hw is None:
        canvas_hw = (prob.shape[0] * stride, prob.shape[1] * stride)
    h, w = canvas_hw
    empty = np.zeros((0, 4))
    if prob.size == 0:
        return empty, empty
    # Sec. 3.4.2, Algorithm 2 line 1: FocusPixels are the cells above t.
    binary = (prob >= threshold if inclusive else prob > threshold)
    binary = binary.astype(np.uint8)
    if dilation > 1:
        # Sec. 3.4.2, Algorithm 2 line 2: dilate with a d x d filter.
        binary = cv2.dilate(binary, np.ones((dilation, dilation), np.uint8))
    # Sec. 3.4.2, Algorithm 2 line 3: connected components.
    num, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if num <= 1:
        return empty, empty
    stats = stats[1:]  # label 0 is the background
    cells = np.stack([
        stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP],
        stats[:, cv2.CC_STAT_LEFT] + stats[:, cv2.CC_STAT_WIDTH],
        stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT]
    ], axis=1).astype(np.float64)
    chips = np.clip(cells * stride, 0, [w, h, w, h])
    # Sec. 3.4.2, Algorithm 2 lines 4-5: chips >= k, merged if overlapping.
    chips = merge_overlapping(grow_to_min_size(chips, min_size, (h, w)))
    return chips, chips / factor


def oracle_focus_chips(gt_boxes, img_h: int, img_w: int, factor: float,
                       stride: int = PAPER_STRIDE,
                       a: float = PAPER_LABEL_SIZES[0],
                       b: float = PAPER_LABEL_SIZES[1],
                       c: float = PAPER_LABEL_SIZES[2],
                       dilation: int = PAPER_DILATION,
                       min_size: float = PAPER_MIN_SIZE
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """FocusChips from ground truth: perfect FocusPixels (Sec. 4.4.1).

    Labels the whole SCALED image (``factor`` times the original) with
    :func:`focus_pixel_labels` and runs :func:`focus_chips` on its
    ``FOCUS`` cells (ignored cells are not FocusPixels): the upper bound on
    AutoFocus's savings for given ``(d, k)``. Costs
    ``O(canvas pixels / stride^2)`` memory for the label map.

    Args:
        gt_boxes (array): ``(N, 4)`` float xyxy in ORIGINAL-image pixels.
        img_h, img_w (int): ORIGINAL image size, > 0.
        factor (float): Scale at which FocusPixels are predicted.
        stride, a, b, c: As :func:`focus_pixel_labels` (``a, b, c`` in the
            SCALED pixels of ``factor``).
        dilation, min_size: As :func:`focus_chips` (``min_size`` in SCALED
            pixels).

    Returns:
        tuple: ``(chips_scaled, chips_orig)`` as :func:`focus_chips`.
    """
    if not (img_h > 0 and img_w > 0 and factor > 0):
        raise ValueError(f'need a positive image size and factor, got '
                         f'{img_h}x{img_w}, factor {factor}')
    canvas = (max(int(round(img_h * factor)), 1),
              max(int(round(img_w * factor)), 1))
    labels = focus_pixel_labels(as_boxes(gt_boxes) * factor, canvas, stride,
                                a, b, c)
    return focus_chips((labels == FOCUS).astype(np.float32), 0.5, dilation,
                       min_size, stride, canvas, factor)


def focus_stack_keep_mask(dets, chip, img_hw: Tuple[float, float],
                          valid_range: Tuple[float, float],
                          border_tol: float = 0.0) -> np.ndarray:
    """Which detections of a chip survive focus stacking (Sec. 3.4.3).

    A detection is dropped when it touches a side of the chip that is not
    on the image border: it may be a cropped large object. Each of the four
    sides is checked on its own, which gives the paper's corner cases:

    * chip side on the image border: a detection touching it is kept if
      its other sides are inside the chip;
    * chip sharing both sides of an axis (or all four) with the image: a
      detection touching those sides is kept;
    * a detection touching an inner chip side is dropped, whatever else.

    "Touching" means within ``border_tol`` of the chip side (plus 1e-6 px
    for rounding; detections beyond the side also touch). A chip side is
    on the image border only within those 1e-6 px, whatever
    ``border_tol``: a side a few pixels inside the image is an inner side.
    A detection is also dropped when its size is outside the scale's
    valid range.

    Example:
        For a chip ``[0, 200, 200, 400]`` of a 1000 x 1000 image, whose left
        side is the image border, ``[0, 250, 50, 300]`` is kept and
        ``[0, 250, 200, 300]`` (touching the inner right side) dropped.

    Args:
        dets (array): ``(N, 4)`` float xyxy detections in ORIGINAL-image
            pixels (projected from the chip).
        chip (array): ``(4,)`` float xyxy, the chip in ORIGINAL pixels.
        img_hw (tuple): ORIGINAL image ``(h, w)``.
        valid_range (tuple): The scale's ``(min, max)`` size, ORIGINAL px,
            strict as everywhere (Sec. 3.2.1).
        border_tol (float): Touching tolerance in ORIGINAL pixels, >= 0
            (the paper: 0; the original code: 10).

    Returns:
        np.ndarray: ``(N,)`` bool keep mask.
    """
    if border_tol < 0:
        raise ValueError(f'border_tol must be >= 0, got {border_tol}')
    dets = as_boxes(dets, 'dets')
    chip = np.asarray(chip, np.float64).reshape(4)
    h, w = img_hw
    tol = border_tol + FIT_EPS
    # A side is on the image border up to float rounding only: border_tol
    # widens "touching", never the image border (a chip side 5 px inside
    # the image is an inner side; the released code: 0.5 px on its integer
    # chips).
    on_image = np.array([chip[0] <= FIT_EPS, chip[1] <= FIT_EPS,
                         chip[2] >= w - FIT_EPS, chip[3] >= h - FIT_EPS])
    touches = np.concatenate([dets[:, :2] <= chip[:2] + tol,
                              dets[:, 2:] >= chip[2:] - tol], axis=1)
    # Sec. 3.4.3: drop detections at a chip border that is not the image's.
    at_inner_border = (touches & ~on_image).any(axis=1)
    # Sec. 3.4.3: keep only detections inside the scale's valid range.
    return ~at_inner_border & in_range(box_sizes(dets), valid_range)
