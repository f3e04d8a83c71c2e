# Copyright (c) mmsnip contributors. All rights reserved.
"""Box helpers shared by the chip algorithms (pure numpy).

Conventions for the whole ``mmsnip.chips`` package:

* boxes and chips are float ``(N, 4)`` arrays ``[x1, y1, x2, y2]`` in
  continuous pixel coordinates (a box covering pixels 0..9 is ``[0, 10]``),
  width ``x2 - x1``;
* every function names the frame of its boxes: *original* image pixels,
  *scaled* pixels (the image resized by a scale's factor) or *chip* pixels
  (scaled pixels relative to a chip's top-left corner);
* a box's *size* is ``sqrt(width * height)``, the paper's sqrt(area).
"""
import math
from typing import Dict, Tuple

import numpy as np

# Image sizes given as one number (one image): checked without arrays.
_SCALARS = (int, float, np.integer, np.floating)


# Pixels (in any frame): how far a box may pass a chip's or the image's edge
# and still count as inside it or on it (float rounding of scaled
# coordinates), in the cover's and the focus stacking's tests.
FIT_EPS = 1e-6


def as_boxes(boxes, name: str = 'boxes') -> np.ndarray:
    """Return ``boxes`` as a float64 ``(N, 4)`` xyxy array, any frame.

    Args:
        boxes (array-like): ``(N, 4)`` numbers, or anything empty (then the
            result is ``(0, 4)``).
        name (str): Name used in the error message.

    Returns:
        np.ndarray: ``(N, 4)`` float64 (a copy only if a conversion was
        needed).

    Raises:
        ValueError: If the array cannot be read as ``(N, 4)``.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f'{name} must have shape (N, 4), got {arr.shape}')
    return arr


def box_sizes(boxes: np.ndarray) -> np.ndarray:
    """The paper's size, sqrt(area), of xyxy boxes (any frame).

    Args:
        boxes (np.ndarray): ``(N, 4)`` float xyxy.

    Returns:
        np.ndarray: ``(N,)`` float64 ``sqrt(w * h)`` in the boxes' frame;
        0 for boxes with ``x2 <= x1`` or ``y2 <= y1``, NaN for NaN boxes.
    """
    wh = np.maximum(boxes[:, 2:4] - boxes[:, 0:2], 0)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def in_range(sizes: np.ndarray, size_range: Tuple[float, float]) -> np.ndarray:
    """The strict valid-range test ``lo < size < hi``.

    Args:
        sizes (np.ndarray): ``(N,)`` float sizes.
        size_range (tuple[float, float]): ``(lo, hi)`` in the same frame as
            ``sizes``; ``hi`` may be ``inf``.

    Returns:
        np.ndarray: ``(N,)`` bool; False for NaN sizes.
    """
    # Sec. 3.2.1: a box is valid at a scale iff its size is inside R_i.
    lo, hi = size_range
    return (sizes > lo) & (sizes < hi)


def sanitize_boxes(boxes, img_h: float, img_w: float
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Clip original-image boxes to the image; flag the unusable ones.

    The rule used everywhere in mmsnip for annotations: a box with a NaN or
    infinite coordinate, or with zero area after clipping to the image
    (including boxes with x2 <= x1 or y2 <= y1, and boxes wholly outside the
    image), is dropped; every other box is clipped to ``[0, img_w] x
    [0, img_h]``.

    Args:
        boxes (array): ``(N, 4)`` xyxy boxes, original image pixels.
        img_h, img_w (float | array): Image size in pixels: one size for
            all boxes, or ``(N,)`` sizes (boxes of many images at once).

    Returns:
        tuple: ``(clipped, keep)``: ``(N, 4)`` float64 clipped boxes
        (ORIGINAL pixels; rows of dropped boxes are zeros) and an ``(N,)``
        bool mask of kept boxes. Rows keep their positions, so indices into
        the input stay valid.

    Raises:
        ValueError: If an image size is not positive or ``boxes`` is not
            ``(N, 4)``.
    """
    arr = as_boxes(boxes)
    img_h, img_w = _checked_sizes(img_h, img_w)
    if img_h.shape != img_w.shape:  # one scalar, one (N,) array
        img_h, img_w = np.broadcast_arrays(img_h, img_w)
    # (4,) bounds for one image (no per-box arrays on the per-image path),
    # (N, 4) for per-box sizes
    if img_h.ndim == 0:
        upper = np.array([img_w, img_h, img_w, img_h])
    else:
        upper = np.stack([img_w, img_h, img_w, img_h], -1)
    # A row's 4 flags as one 32-bit word: all finite <=> 0x01010101
    # (C order first: isfinite keeps an F-ordered input's layout).
    finite = np.ascontiguousarray(np.isfinite(arr)).view(np.uint32)[:, 0] \
        == 0x01010101
    # np.clip(arr, 0, upper) without its Python-level dispatch; rows with
    # a NaN or infinite coordinate are not kept and zeroed below.
    clipped = np.maximum(arr, 0.0)
    np.minimum(clipped, upper, out=clipped)
    keep = finite & (clipped[:, 2] > clipped[:, 0]) & \
        (clipped[:, 3] > clipped[:, 1])
    if not keep.all():
        clipped[~keep] = 0.0
    return clipped, keep


def sanitize_box_rows(rows, img_h, img_w) -> Tuple[list, list]:
    """:func:`sanitize_boxes` of one image on Python floats, for a few
    boxes (a per-image fast path; the same numbers, tested).

    Args:
        rows (list): ``N`` rows ``[x1, y1, x2, y2]`` of floats, ORIGINAL
            image pixels (``as_boxes(boxes).tolist()``).
        img_h, img_w (float): The image size in pixels, one number each.

    Returns:
        tuple: ``(clipped, keep)``: ``N`` tuples ``(x1, y1, x2, y2)``
        clipped to the image (all zeros for a dropped box) and ``N``
        bools.

    Raises:
        ValueError: If the image size is not positive.
    """
    h, w = _checked_sizes(img_h, img_w)
    h, w = float(h), float(w)
    isfinite = math.isfinite
    clipped, keep = [], []
    for x1, y1, x2, y2 in rows:
        if isfinite(x1) and isfinite(y1) and isfinite(x2) and \
                isfinite(y2):
            x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
            y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
            if x2 > x1 and y2 > y1:
                clipped.append((x1, y1, x2, y2))
                keep.append(True)
                continue
        clipped.append((0.0, 0.0, 0.0, 0.0))
        keep.append(False)
    return clipped, keep


def _checked_sizes(img_h, img_w) -> Tuple[np.ndarray, np.ndarray]:
    """float64 heights and widths as given (scalars or ``(N,)`` arrays);
    ValueError naming the first size that is not positive and finite."""
    if isinstance(img_h, _SCALARS) and isinstance(img_w, _SCALARS) and \
            0 < img_h < math.inf and 0 < img_w < math.inf:  # one image
        return np.float64(img_h), np.float64(img_w)
    h = np.asarray(img_h, np.float64)
    w = np.asarray(img_w, np.float64)
    bad = ~((h > 0) & (w > 0) & (h < np.inf) & (w < np.inf))
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), bad.shape)
        hh = h[first] if h.ndim else h
        ww = w[first] if w.ndim else w
        raise ValueError(f'image size must be positive and finite, got '
                         f'{hh:g}x{ww:g} (height x width)')
    return h, w


def broadcast_sizes(img_h, img_w, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(N,)`` float64 heights and widths from scalars or ``(N,)`` arrays
    (:func:`_checked_sizes`)."""
    h, w = _checked_sizes(img_h, img_w)
    return np.broadcast_to(h, (n, )), np.broadcast_to(w, (n, ))


def box_issues(boxes, img_h, img_w) -> Dict[str, np.ndarray]:
    """Classify annotation boxes by what :func:`sanitize_boxes` does.

    Args:
        boxes (array): ``(N, 4)`` xyxy, ORIGINAL image pixels.
        img_h, img_w (float | array): Image size, one or ``(N,)``.

    Returns:
        dict[str, np.ndarray]: ``(N,)`` bool masks, each box in exactly one
        of ``'ok'`` (inside the image, kept as is), ``'clipped'`` (partly
        outside: clipped), ``'not_finite'`` (NaN/inf: dropped), ``'empty'``
        (``x2 <= x1`` or ``y2 <= y1``: zero-area or negative size, dropped)
        and ``'outside'`` (positive size but no area inside the image:
        dropped).
    """
    arr = as_boxes(boxes)
    clipped, keep = sanitize_boxes(arr, img_h, img_w)
    finite = np.isfinite(arr).all(axis=1)
    empty = finite & ((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))
    changed = keep & (clipped != arr).any(axis=1)
    return dict(ok=keep & ~changed, clipped=changed, not_finite=~finite,
                empty=empty, outside=finite & ~empty & ~keep)


def check_boxes(boxes, img_h: float, img_w: float,
                name: str = 'boxes') -> np.ndarray:
    """Strict variant of :func:`sanitize_boxes`: raise on any bad box.

    Args:
        boxes (array): ``(N, 4)`` xyxy boxes, ORIGINAL image pixels.
        img_h, img_w (float): Image size in pixels.
        name (str): Name used in the error message.

    Returns:
        np.ndarray: ``(N, 4)`` float64, unchanged: every box is finite,
        has ``x2 > x1`` and ``y2 > y1`` and lies inside the image.

    Raises:
        ValueError: Naming the first offending index and the reason.
    """
    arr = as_boxes(boxes, name)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f'{name}[{i}] = {arr[i].tolist()} is not finite')
    empty = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise ValueError(
            f'{name}[{i}] = {arr[i].tolist()} has zero or negative size')
    outside = (arr[:, 0] < 0) | (arr[:, 1] < 0) | (arr[:, 2] > img_w) | \
        (arr[:, 3] > img_h)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(f'{name}[{i}] = {arr[i].tolist()} is outside the '
                         f'{img_w}x{img_h} image')
    return arr


def inside_matrix(boxes: np.ndarray, chips: np.ndarray,
                  tol: float = 0.0) -> np.ndarray:
    """Which boxes lie fully inside which chips (same frame, xyxy).

    Dense: ``C * N`` booleans, for the small sets of the data path (chips
    of one image); the greedy cover never builds it.

    Args:
        boxes (np.ndarray): ``(N, 4)`` float xyxy.
        chips (np.ndarray): ``(C, 4)`` float xyxy, same frame.
        tol (float): How far (pixels of that frame) a box may pass a
            chip's edge and still count as inside; :data:`FIT_EPS` for
            the cover's own test.

    Returns:
        np.ndarray: ``(C, N)`` bool, ``[c, n]`` true iff box n is inside
        chip c (touching the border counts as inside).
    """
    return ((boxes[None, :, 0] >= chips[:, None, 0] - tol) &
            (boxes[None, :, 1] >= chips[:, None, 1] - tol) &
            (boxes[None, :, 2] <= chips[:, None, 2] + tol) &
            (boxes[None, :, 3] <= chips[:, None, 3] + tol))


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which boxes intersect with positive area (same frame, xyxy).

    Args:
        a (np.ndarray): ``(A, 4)`` float xyxy.
        b (np.ndarray): ``(B, 4)`` float xyxy, same frame.

    Returns:
        np.ndarray: ``(A, B)`` bool; boxes that only touch do not overlap.
    """
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - \
        np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - \
        np.maximum(a[:, None, 1], b[None, :, 1])
    return (iw > 0) & (ih > 0)


def rectangle_counts(shape: Tuple[int, int], r0: np.ndarray, r1: np.ndarray,
                     c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """How many cell rectangles cover each cell of a grid.

    A 2-D difference array (one ``bincount``) and two cumulative sums: no
    loop over rectangles or cells.

    Args:
        shape (tuple[int, int]): ``(rows, cols)`` of the grid.
        r0, r1, c0, c1 (np.ndarray): ``(N,)`` int rectangles ``[r0, r1) x
            [c0, c1)`` in grid cells, ``0 <= r0 <= r1 <= rows`` and
            ``0 <= c0 <= c1 <= cols`` (empty rectangles add nothing).

    Returns:
        np.ndarray: ``(rows, cols)`` float64 counts (exact integers).
    """
    rows, cols = shape
    stride = cols + 1
    flat = np.concatenate([r0 * stride + c0, r0 * stride + c1,
                           r1 * stride + c0, r1 * stride + c1])
    sign = np.repeat(np.array([1.0, -1.0, -1.0, 1.0]), len(r0))
    diff = np.bincount(flat, weights=sign, minlength=(rows + 1) * stride)
    grid = diff.reshape(rows + 1, stride).cumsum(0).cumsum(1)
    return grid[:rows, :cols]
