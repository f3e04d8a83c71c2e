# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus: FocusPixel labels, FocusChips and focus stacking (pure numpy).

* :func:`focus_pixel_labels`: the training target of the FocusPixel head on
  a chip's stride-``s`` grid (Sec. 3.4.1).
* :func:`focus_chips`: Algorithm 2, FocusChips from a predicted map
  (Sec. 3.4.2); :func:`oracle_focus_chips` builds them from ground truth
  (the upper bound of Sec. 4.4.1).
* :func:`focus_stack_keep_mask`: which detections of a chip survive focus
  stacking (Sec. 3.4.3).
"""
from typing import Tuple

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .boxes import as_boxes, box_sizes, boxes_overlap, in_range

IGNORE = -1
BACKGROUND = 0
FOCUS = 1


def _cell_runs(boxes: np.ndarray, stride: float, shape: Tuple[int, int]):
    """Per box, the cells ``[x0, x1) x [y0, y1)`` it overlaps (positive
    area) on a stride grid of ``shape = (rows, cols)``."""
    x0 = np.clip(np.floor(boxes[:, 0] / stride), 0, shape[1]).astype(int)
    y0 = np.clip(np.floor(boxes[:, 1] / stride), 0, shape[0]).astype(int)
    x1 = np.clip(np.ceil(boxes[:, 2] / stride), 0, shape[1]).astype(int)
    y1 = np.clip(np.ceil(boxes[:, 3] / stride), 0, shape[0]).astype(int)
    return x0, y0, x1, y1


def _paint_count(shape, x0, y0, x1, y1) -> np.ndarray:
    """How many of the rectangles cover each cell (2-D difference array)."""
    rows, cols = shape
    diff = np.zeros((rows + 1, cols + 1), np.int32)
    ok = (x1 > x0) & (y1 > y0)
    for ys, xs, v in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
        np.add.at(diff, (ys[ok], xs[ok]), v)
    return diff.cumsum(0).cumsum(1)[:rows, :cols]


def focus_pixel_labels(boxes_chip, chip_hw: Tuple[int, int],
                       stride: int = 16, a: float = 5, b: float = 64,
                       c: float = 90) -> np.ndarray:
    """FocusPixel labels of a chip (Sec. 3.4.1).

    A cell of the stride-``s`` grid (``s x s`` chip pixels) gets

    * ``FOCUS`` (1) if a box with ``a < size < b`` overlaps it,
    * else ``IGNORE`` (-1) if a box with ``size < a`` or ``b < size < c``
      overlaps it,
    * else ``BACKGROUND`` (0),

    where ``size = sqrt(area)`` of the box in CHIP pixels and "overlaps"
    means a positive-area intersection. 1 wins over -1 wins over 0 ("1
    wins", as in the paper; the original code let the last box win). Sizes
    exactly equal to ``a`` or ``b`` and sizes ``>= c`` are background.

    Args:
        boxes_chip (array): ``(N, 4)`` xyxy in CHIP pixels.
        chip_hw (tuple[int, int]): Chip ``(h, w)`` in pixels.
        stride (int): ``s``, the feature stride of the FocusPixel head.
        a, b, c (float): Size thresholds in CHIP pixels (5, 64, 90).

    Returns:
        np.ndarray: ``(ceil(h / s), ceil(w / s))`` int8 labels.
    """
    if not (0 <= a < b <= c):
        raise ValueError(f'focus thresholds need 0 <= a < b <= c, got '
                         f'{(a, b, c)}')
    shape = (-(-int(chip_hw[0]) // stride), -(-int(chip_hw[1]) // stride))
    boxes = as_boxes(boxes_chip, 'boxes_chip')
    sizes = box_sizes(boxes)
    focus = (sizes > a) & (sizes < b)
    ignore = (sizes < a) | ((sizes > b) & (sizes < c))
    runs = _cell_runs(boxes, stride, shape)
    labels = np.zeros(shape, np.int8)
    labels[_paint_count(shape, *(r[ignore] for r in runs)) > 0] = IGNORE
    labels[_paint_count(shape, *(r[focus] for r in runs)) > 0] = FOCUS
    return labels


def merge_overlapping(boxes: np.ndarray) -> np.ndarray:
    """Replace overlapping boxes by their enclosing box until none overlap.

    Each round joins every group of transitively overlapping boxes (a
    connected component of the overlap graph) into its enclosing box; the
    enclosing boxes may overlap again, so rounds repeat until stable.

    Args:
        boxes (np.ndarray): ``(N, 4)`` xyxy.

    Returns:
        np.ndarray: ``(M, 4)`` pairwise non-overlapping boxes, sorted by
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

    A grown box crossing the canvas border is shifted back inside; a canvas
    side shorter than ``min_size`` gives a box spanning that side.

    Args:
        boxes (np.ndarray): ``(N, 4)`` xyxy inside the canvas.
        min_size (float): ``k``, in the canvas' pixels.
        canvas_hw (tuple): ``(h, w)`` of the canvas.

    Returns:
        np.ndarray: ``(N, 4)`` xyxy inside the canvas.
    """
    out = boxes.astype(np.float64).copy()
    for lo, hi, side in ((0, 2, canvas_hw[1]), (1, 3, canvas_hw[0])):
        length = np.minimum(np.maximum(out[:, hi] - out[:, lo], min_size),
                            side)
        center = (out[:, lo] + out[:, hi]) / 2
        start = np.clip(center - length / 2, 0, side - length)
        out[:, lo], out[:, hi] = start, start + length
    return out


def focus_chips(prob_map: np.ndarray, threshold: float, dilation: int,
                min_size: float, stride: float,
                canvas_hw: Tuple[int, int], factor: float = 1.0
                ) -> Tuple[np.ndarray, np.ndarray]:
    """FocusChips from a FocusPixel probability map (Algorithm 2).

    1. FocusPixels: ``prob > threshold`` (the paper's "greater than t").
    2. Dilate with a ``dilation x dilation`` square (1: no dilation).
    3. Connected components (8-connectivity).
    4. Their enclosing boxes in the scale's pixels (cells times
       ``stride``), clipped to the canvas, grown to at least ``min_size``.
    5. Merge overlapping chips until none overlap.

    Args:
        prob_map (np.ndarray): ``(H', W')`` foreground probability on the
            stride grid of the scale the map was predicted at.
        threshold (float): ``t``.
        dilation (int): ``d``.
        min_size (float): ``k``, minimum chip side in that scale's pixels.
        stride (float): Feature stride of the map, in that scale's pixels.
        canvas_hw (tuple[int, int]): The scale's image ``(h, w)``.
        factor (float): That scale's factor (scaled / original pixels).

    Returns:
        tuple: ``(chips_scaled, chips_orig)``, ``(C, 4)`` xyxy in the map's
        scale pixels and in ORIGINAL-image pixels.
    """
    prob = np.asarray(prob_map, np.float32)
    if prob.ndim != 2:
        raise ValueError(f'prob_map must be 2-D, got shape {prob.shape}')
    binary = (prob > threshold).astype(np.uint8)
    if dilation > 1:
        binary = cv2.dilate(binary, np.ones((dilation, dilation), np.uint8))
    num, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    stats = stats[1:]  # label 0 is the background
    h, w = canvas_hw
    if num <= 1:
        empty = np.zeros((0, 4))
        return empty, empty
    cells = np.stack([
        stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP],
        stats[:, cv2.CC_STAT_LEFT] + stats[:, cv2.CC_STAT_WIDTH],
        stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT]
    ], axis=1).astype(np.float64)
    chips = np.clip(cells * stride, 0, [w, h, w, h])
    chips = merge_overlapping(grow_to_min_size(chips, min_size, (h, w)))
    return chips, chips / factor


def oracle_focus_chips(gt_boxes, img_h: int, img_w: int, factor: float,
                       stride: int = 16, a: float = 5, b: float = 64,
                       c: float = 90, dilation: int = 3,
                       min_size: float = 512
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """FocusChips from ground truth: perfect FocusPixels (Sec. 4.4.1).

    Labels the whole scaled image with :func:`focus_pixel_labels` and runs
    :func:`focus_chips` on the FOCUS cells. The upper bound on AutoFocus's
    savings for given ``(d, k)``.

    Args:
        gt_boxes (array): ``(N, 4)`` xyxy in ORIGINAL-image pixels.
        img_h, img_w (int): Original image size.
        factor (float): Scale at which FocusPixels are predicted.

    Returns:
        tuple: ``(chips_scaled, chips_orig)`` as :func:`focus_chips`.
    """
    canvas = (max(int(round(img_h * factor)), 1),
              max(int(round(img_w * factor)), 1))
    labels = focus_pixel_labels(as_boxes(gt_boxes) * factor, canvas, stride,
                                a, b, c)
    return focus_chips((labels == FOCUS).astype(np.float32), 0.5, dilation,
                       min_size, stride, canvas, factor)


def focus_stack_keep_mask(dets, chip, img_hw: Tuple[float, float],
                          valid_range: Tuple[float, float],
                          border_tol: float = 1.0) -> np.ndarray:
    """Which detections of a chip survive focus stacking (Sec. 3.4.3).

    A detection is dropped when it touches a side of the chip (within
    ``border_tol``) that is not on the image border: it may be a cropped
    large object. Each side is checked on its own, which gives the paper's
    corner cases: a chip sharing its left side with the image keeps a
    detection touching that side only if the detection's other sides are
    inside the chip. A detection is also dropped when its size is outside
    the scale's valid range.

    Args:
        dets (array): ``(N, 4)`` xyxy detections in ORIGINAL-image pixels.
        chip (array): ``(4,)`` the chip in ORIGINAL-image pixels.
        img_hw (tuple): Original image ``(h, w)``.
        valid_range (tuple): The scale's ``(min, max)`` size, ORIGINAL px.
        border_tol (float): Touching tolerance in ORIGINAL pixels (the
            original code used 10).

    Returns:
        np.ndarray: ``(N,)`` bool keep mask.
    """
    dets = as_boxes(dets, 'dets')
    chip = np.asarray(chip, np.float64).reshape(4)
    h, w = img_hw
    on_image = np.array([chip[0] <= border_tol, chip[1] <= border_tol,
                         chip[2] >= w - border_tol, chip[3] >= h - border_tol])
    touches = np.stack([
        dets[:, 0] <= chip[0] + border_tol, dets[:, 1] <= chip[1] + border_tol,
        dets[:, 2] >= chip[2] - border_tol, dets[:, 3] >= chip[3] - border_tol
    ], axis=1)
    at_inner_border = (touches & ~on_image).any(axis=1)
    return ~at_inner_border & in_range(box_sizes(dets), valid_range)
