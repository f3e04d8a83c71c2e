# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIPER chips: the chip grid, the greedy cover and positive chips.

Algorithm 1 of the paper (Sec. 3.3.2): per scale, ``K x K`` candidate chips
lie on a stride-``d`` grid over the SCALED canvas; chips are picked
greedily, each time the one that fully encloses the most not-yet-covered
valid boxes, until every valid box is covered.

The cover never materialises the candidates: along one axis the chips that
can enclose a box ``[b1, b2]`` are those with start ``s`` in ``[b2 - K, b1]``,
a contiguous run of grid indices, so "chip (ix, iy) encloses box n" is a
rectangle in index space. Boxes whose rectangles do not meet are split into
independent groups; per group, counts per candidate are a 2-D difference
array over the rectangles' distinct borders (coordinate compression),
updated locally after each pick. Cost depends on the boxes, not on the
canvas (a 60000 px canvas costs nothing).

Three implementations of the same greedy loop, picked by size (each
property-tested against the others and against a dense enumeration): up to
``_SMALL`` boxes, plain Python on bit masks (:func:`_cover_lists`; a
COCO image has about 7, where numpy's per-call cost would dominate; such an
image's :func:`generate_positive_chips` stays in Python from the box
clean-up to one array conversion at the end, :func:`_positive_small`); small
index grids, the whole count grid as one matrix product
(:func:`_greedy_small_grid`); large ones, compressed grids updated in the
picked window (:func:`_greedy_group`). A canvas no larger than a chip has a
single candidate, tested directly (:func:`_cover_one_candidate`).
:func:`positive_chips_batch` covers many images at once (the chip table's
path): annotation clean-up and validity for all boxes in one go, then the
Python path per image. The chip table's negative chips run the covers of
many canvases together instead (:mod:`mmsnip.chips.cover_batch`).
"""
import bisect
import dataclasses
import functools
import itertools
import math
import operator
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .boxes import (FIT_EPS, as_boxes, broadcast_sizes, box_sizes, in_range,
                    rectangle_counts, sanitize_box_rows, sanitize_boxes)
from .scales import ChipConfig

# Split boxes into independent groups only when one count grid would have
# more cells than this; buckets with more boxes are joined whole.
_MAX_CELLS = 1 << 16
_DENSE_BUCKET = 32
# Up to this many boxes, greedy_cover runs in plain Python on bit masks
# (_greedy_cover_small): for a handful of boxes numpy's per-call cost
# dominates. The result is the same (property-tested).
_SMALL = 24
# Count grids up to this many cells are re-integrated whole after each pick
# (_greedy_small_grid); larger ones are updated in the picked window.
_SMALL_GRID = 4096
# Run masks of grids up to this many rows or columns are built from cached
# step tables (one per side length: 6 MiB for all of them).
_STEP_TABLE = 128
_BIG = 1 << 62


@dataclasses.dataclass
class ChipSet:
    """Chips of one or more images and scales, as parallel arrays.

    Attributes:
        boxes (np.ndarray): ``(C, 4)`` float64 xyxy in ORIGINAL-image
            pixels (the SCALED chip divided by the factor, inside the
            image).
        boxes_scaled (np.ndarray): ``(C, 4)`` float64 xyxy in the chip's
            SCALED canvas; side ``min(K, canvas side)``; integer-valued
            (grid chips, and off-grid chips whenever an integer position
            encloses their box).
        scale_index (np.ndarray): ``(C,)`` int64, index into the scales.
        scale_factor (np.ndarray): ``(C,)`` float64, SCALED / ORIGINAL.
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
        """No chips, with the documented shapes and dtypes."""
        return cls(np.zeros((0, 4)), np.zeros((0, 4)),
                   np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))

    @classmethod
    def concat(cls, sets: Sequence['ChipSet']) -> 'ChipSet':
        """All chips of ``sets``, in order (empty sets are skipped)."""
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
    canvas side ``<= K`` gets the single start 0: the chip is clipped to the
    canvas (its side is ``length``, never padded beyond it).

    Args:
        length (int): Canvas side in SCALED pixels.
        chip_size (int): ``K``.
        stride (int): ``d``.

    Returns:
        np.ndarray: ``(S,)`` float64 starts in SCALED pixels, sorted, unique.

    Example:
        >>> chip_starts(600, 512, 32)
        array([ 0., 32., 64., 88.])
    """
    if length <= chip_size:
        return np.zeros(1)
    # Sec. 3.3.1: K x K chips placed at equal intervals of d pixels.
    starts = np.arange(0, length - chip_size, stride, dtype=np.float64)
    return np.append(starts, float(length - chip_size))


@functools.lru_cache(maxsize=4096)
def _cached_starts(length: int, chip_size: int, stride: int) -> np.ndarray:
    """:func:`chip_starts`, read-only and cached (images of a dataset share
    a few canvas sizes)."""
    starts = chip_starts(length, chip_size, stride)
    starts.flags.writeable = False
    return starts


@functools.lru_cache(maxsize=4096)
def _cached_start_list(length: int, chip_size: int, stride: int) -> tuple:
    """:func:`chip_starts` as a tuple of Python floats, cached (the plain
    Python cover of a few boxes)."""
    return tuple(_cached_starts(length, chip_size, stride).tolist())


def _feasible_runs(lo_edge: np.ndarray, hi_edge: np.ndarray,
                   starts: np.ndarray, extent: float
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Per box, the index run ``[first, last)`` of chips enclosing it.

    Along one axis a chip ``[s, s + extent]`` encloses ``[lo, hi]`` iff
    ``hi - extent <= s <= lo``: a contiguous run of the sorted ``starts``.
    """
    # (ndarray methods: np.searchsorted's dispatch costs as much as the
    # search itself for a few hundred boxes)
    first = starts.searchsorted(hi_edge - extent - FIT_EPS, side='left')
    last = starts.searchsorted(lo_edge + FIT_EPS, side='right')
    return first, last


def grid_runs(lo_edge: np.ndarray, hi_edge: np.ndarray, length,
              chip_size: int, stride: int
              ) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`_feasible_runs` on the grid of :func:`chip_starts`, for boxes
    of many canvases at once (one canvas side per box), without a search.

    Grid starts are integers, so "starts below ``v``" are the starts
    ``<= ceil(v) - 1`` and "starts up to ``u``" those ``<= floor(u)``;
    the count of starts ``<= t`` for an integer ``t`` is arithmetic: the
    stride multiples ``0, d, ..`` below ``L - K`` up to ``t``, plus the
    border start ``L - K`` if ``<= t`` (or just ``0 <= t`` when ``L <=
    K``). The same integers as ``searchsorted`` on the starts
    (property-tested), for grid starts only: boxes that need an off-grid
    start (``first >= last`` but short enough) must go through
    :func:`axis_candidates` or :func:`~mmsnip.chips.cover_batch.axis_runs`.

    Args:
        lo_edge, hi_edge (np.ndarray): ``(N,)`` float box edges along one
            axis, SCALED pixels.
        length (np.ndarray): ``(N,)`` int canvas side of each box's canvas.
        chip_size (int): ``K``.
        stride (int): ``d``.

    Returns:
        tuple: ``(first (N,), last (N,))`` int64: box ``n`` fits in the
        chips of start indices ``first[n]:last[n]``.
    """
    length = np.asarray(length, np.int64)
    extent = np.minimum(length, chip_size)
    return tuple(grid_counts(t, length, chip_size, stride)
                 for t in run_thresholds(lo_edge, hi_edge, extent))


def grid_counts(upto: np.ndarray, length: np.ndarray, chip_size: int,
                stride: int) -> np.ndarray:
    """``(N,)`` int64: how many starts of the grid of :func:`chip_starts`
    on a side ``length[n]`` are ``<= upto[n]`` (``(N,)`` int64 each,
    SCALED pixels; :func:`grid_runs`)."""
    span = length - chip_size  # > 0: the border start L - K exists
    grid = np.clip(upto // stride + 1, 0, -(-span // stride))
    return np.where(span > 0, grid + (span <= upto), upto >= 0)


def run_thresholds(lo_edge: np.ndarray, hi_edge: np.ndarray,
                   extent) -> Tuple[np.ndarray, np.ndarray]:
    """A box's run among integer starts along one axis, as thresholds.

    The starts ``s`` of chips enclosing ``[lo, hi]`` are those with ``hi
    - extent - FIT_EPS <= s <= lo + FIT_EPS`` (:func:`_feasible_runs`); for
    integer starts, those with ``upto_first < s <= upto_last``, so the
    run is ``[count(s <= upto_first), count(s <= upto_last))``.

    Returns:
        tuple: ``(upto_first, upto_last)``, ``(N,)`` int64.
    """
    return ((np.ceil(hi_edge - extent - FIT_EPS) - 1).astype(np.int64),
            np.floor(lo_edge + FIT_EPS).astype(np.int64))


def off_grid_starts(lo_edge: np.ndarray, hi_edge: np.ndarray, length,
                    extent) -> np.ndarray:
    """The extra candidate start of boxes that fit in a chip but in no chip
    of the stride grid (``ChipConfig.off_grid``), along one axis: the
    integer nearest the middle of the box's feasible interval ``[hi -
    extent, lo]`` (clipped to the canvas), or the interval's start if it
    holds no integer.

    Args:
        lo_edge, hi_edge (np.ndarray): ``(N,)`` float box edges, SCALED
            pixels.
        length, extent (int | np.ndarray): Canvas side and chip side
            (``min(K, length)``), one for all boxes or ``(N,)``.

    Returns:
        np.ndarray: ``(N,)`` float64 starts, SCALED pixels.
    """
    lo = np.maximum(hi_edge - extent, 0.0)
    hi = np.minimum(lo_edge, length - extent)
    lo_int, hi_int = np.ceil(lo), np.floor(hi)
    return np.where(lo_int <= hi_int,
                    np.clip(np.round((lo + hi) / 2), lo_int, hi_int), lo)


def axis_candidates(lo_edge: np.ndarray, hi_edge: np.ndarray, length: int,
                     chip_size: int, stride: int, off_grid: bool):
    """Candidate starts along one axis and every box's run in them.

    With ``off_grid``, a box that fits in a chip (``hi - lo <= extent``) but
    whose run on the stride grid is empty gets one extra start
    (:func:`off_grid_starts`).

    Returns:
        tuple: ``(starts (S,) float64, extent, first (N,), last (N,))``.
    """
    extent = min(chip_size, length)
    starts = _cached_starts(length, chip_size, stride)
    first, last = _feasible_runs(lo_edge, hi_edge, starts, extent)
    if not off_grid:
        return starts, extent, first, last
    stuck = first >= last
    if stuck.any():
        stuck &= hi_edge - lo_edge <= extent + FIT_EPS
    if stuck.any():
        starts = np.union1d(starts, off_grid_starts(
            lo_edge[stuck], hi_edge[stuck], length, extent))
        first, last = _feasible_runs(lo_edge, hi_edge, starts, extent)
    return starts, extent, first, last


def _independent_groups(lo_x: np.ndarray, hi_x: np.ndarray,
                        lo_y: np.ndarray, hi_y: np.ndarray
                        ) -> Tuple[np.ndarray, int]:
    """Split boxes into groups that no chip can mix.

    Box ``n`` fits in the chips of the index rectangle ``[lo_x, hi_x) x
    [lo_y, hi_y)``; two boxes can share a chip only if their rectangles
    intersect. Groups are the connected components of that intersection
    graph, found without testing all pairs: the index plane is cut into
    buckets as large as the widest rectangle (so each touches at most
    2 x 2 buckets) and only rectangles sharing a bucket are tested. A
    bucket holding more than ``_DENSE_BUCKET`` rectangles joins them all
    (a coarser partition, still independent: the greedy result does not
    depend on how finely the groups are cut).

    Returns:
        tuple: ``(group (N,) int64, number of groups)``.
    """
    n = len(lo_x)
    if n < 2:
        return np.zeros(n, np.int64), n
    width_x = max(int((hi_x - lo_x).max()), 1)
    width_y = max(int((hi_y - lo_y).max()), 1)
    bx0, bx1 = lo_x // width_x, (hi_x - 1) // width_x
    by0, by1 = lo_y // width_y, (hi_y - 1) // width_y
    rows = int(by1.max()) + 1
    key = np.concatenate([bx0 * rows + by0, bx1 * rows + by0,
                          bx0 * rows + by1, bx1 * rows + by1])
    # Unique (bucket, box) rows, sorted by bucket.
    key, owner = np.unique(
        np.stack([key, np.tile(np.arange(n), 4)], axis=1), axis=0).T
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    dense = counts > _DENSE_BUCKET
    # Dense buckets: a star from each bucket's first box.
    in_dense = np.repeat(dense, counts)
    heads = np.repeat(owner[starts], counts)[in_dense]
    edges = [(heads, owner[in_dense])]
    # Sparse buckets: every pair of boxes, kept where the rectangles meet.
    m, s0 = counts[~dense], starts[~dense]
    sq = m * m
    k = np.arange(sq.sum()) - np.repeat(np.cumsum(sq) - sq, sq)
    mm, base = np.repeat(m, sq), np.repeat(s0, sq)
    a, b = owner[base + k // mm], owner[base + k % mm]
    meet = (a < b) & (lo_x[a] < hi_x[b]) & (lo_x[b] < hi_x[a]) & \
        (lo_y[a] < hi_y[b]) & (lo_y[b] < hi_y[a])
    edges.append((a[meet], b[meet]))
    i = np.concatenate([e[0] for e in edges])
    j = np.concatenate([e[1] for e in edges])
    graph = coo_matrix((np.ones(len(i), bool), (i, j)), shape=(n, n))
    num, group = connected_components(graph, directed=False)
    return group.astype(np.int64), int(num)


def _greedy_group(lo_x: np.ndarray, hi_x: np.ndarray, lo_y: np.ndarray,
                  hi_y: np.ndarray, min_count: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy cover of one group of index rectangles.

    The index plane is compressed to the rectangles' distinct borders; the
    number of remaining boxes each compressed cell encloses is painted once
    and, after each pick, the picked boxes' rectangles are subtracted in
    the window they span (with the per-row maxima of that window), so a
    pick costs about the size of its neighbourhood, not of the grid. The
    first best position in row-major order selects the boxes ``S`` to
    enclose; the chip goes to the middle of the positions enclosing ``S``
    (the intersection of their rectangles, where no other remaining box
    fits, since the count is maximal there).

    Returns:
        tuple: ``(picks, covered)``: ``(P, 5)`` int64 rows ``(ix, iy,
        boxes newly enclosed, iy, ix of the first best position)``;
        ``(N,)`` bool.
    """
    remaining = np.ones(len(lo_x), bool)
    picks = []
    if len(lo_x) < min_count:
        return np.zeros((0, 5), np.int64), ~remaining
    rows, cols = int(hi_y.max()), int(hi_x.max())
    if rows * cols <= _SMALL_GRID:
        # The uncompressed index grid is small: use it as it is (its first
        # best cell in row-major order starts where the compressed one's
        # does, so the picks are the same).
        return _greedy_small_grid(lo_x, hi_x, lo_y, hi_y, np.arange(cols),
                                  np.arange(rows), lo_x, hi_x, lo_y, hi_y,
                                  min_count)
    xs = np.unique(np.concatenate([lo_x, hi_x]))
    ys = np.unique(np.concatenate([lo_y, hi_y]))
    cx0, cx1 = np.searchsorted(xs, lo_x), np.searchsorted(xs, hi_x)
    cy0, cy1 = np.searchsorted(ys, lo_y), np.searchsorted(ys, hi_y)
    if len(ys) * len(xs) <= _SMALL_GRID:
        return _greedy_small_grid(lo_x, hi_x, lo_y, hi_y, xs, ys, cx0, cx1,
                                  cy0, cy1, min_count)
    counts = rectangle_counts((len(ys), len(xs)), cy0, cy1, cx0, cx1)
    row_max = counts.max(axis=1)
    # Sec. 3.3.2, Algorithm 1 lines 8-12: pick the chip covering the most
    # uncovered boxes (fully enclosed), until none is left.
    while True:
        by = int(np.argmax(row_max))
        count = int(row_max[by])
        if count < min_count:
            break
        bx = int(np.argmax(counts[by]))
        hit = remaining & (cx0 <= bx) & (bx < cx1) & (cy0 <= by) & \
            (by < cy1)
        ix = (lo_x[hit].max() + hi_x[hit].min() - 1) // 2
        iy = (lo_y[hit].max() + hi_y[hit].min() - 1) // 2
        picks.append((ix, iy, count, ys[by], xs[bx]))
        remaining &= ~hit
        if np.count_nonzero(remaining) < min_count:
            break
        r0, r1 = cy0[hit].min(), cy1[hit].max()
        c0, c1 = cx0[hit].min(), cx1[hit].max()
        counts[r0:r1, c0:c1] -= rectangle_counts(
            (r1 - r0, c1 - c0), cy0[hit] - r0, cy1[hit] - r0, cx0[hit] - c0,
            cx1[hit] - c0)
        row_max[r0:r1] = counts[r0:r1].max(axis=1)
    return np.array(picks, np.int64).reshape(-1, 5), ~remaining


@functools.lru_cache(maxsize=None)
def _step_rows(length: int) -> np.ndarray:
    """``(length + 1, length)`` float64, read-only: row ``k`` is 1.0 from
    column ``k`` on (0.0 before)."""
    steps = (np.arange(length) >= np.arange(length + 1)[:, None]).astype(
        np.float64)
    steps.flags.writeable = False
    return steps


def _run_matrix(first: np.ndarray, last: np.ndarray,
                length: int) -> np.ndarray:
    """``(N, length)`` float64: 1.0 where ``first[n] <= j < last[n]``.

    Args:
        first, last (np.ndarray): ``(N,)`` int, ``0 <= first, last <=
            length``.
        length (int): Number of columns.
    """
    if length <= _STEP_TABLE:
        steps = _step_rows(length)
        return steps.take(first, 0) - steps.take(last, 0)
    col = np.arange(length)
    return ((first[:, None] <= col) & (col < last[:, None])).astype(
        np.float64)


def _greedy_small_grid(lo_x, hi_x, lo_y, hi_y, xs, ys, cx0, cx1, cy0, cy1,
                       min_count: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`_greedy_group` on a small compressed grid (at most
    ``_SMALL_GRID`` cells): fewer numpy calls per pick.

    With ``R[r, n]`` (box ``n``'s rectangle spans row ``r``) and ``C[c,
    n]`` (it spans column ``c``), the count grid of the remaining boxes is
    ``R[:, rem] @ C[:, rem].T``; a pick subtracts the same product over the
    picked boxes. Counts and masks are small integers, exact in float64.
    Same picks, same order as :func:`_greedy_group`. A pick's chip
    position (the middle of the positions enclosing its boxes) comes from
    its boxes' largest lower and smallest upper run borders.
    """
    n = len(lo_x)
    cols = len(xs)
    # Box-major: ``row_f[n, r]`` = R[r, n]; gathering the picked boxes'
    # rows is then a contiguous copy.
    row_f = _run_matrix(cy0, cy1, len(ys))
    col_f = _run_matrix(cx0, cx1, cols)
    counts = row_f.T @ col_f
    # Per box, the run borders whose max over a pick's boxes places its
    # chip: (max lo) and -(min hi) per axis.
    borders = np.stack([lo_x, lo_y, -hi_x, -hi_y])
    remaining = np.ones(n)
    left = n
    cells, extremes = [], []
    while True:
        flat = int(counts.argmax())
        count = int(round(counts.item(flat)))
        if count < min_count:
            break
        by, bx = divmod(flat, cols)
        hit = row_f[:, by] * col_f[:, bx]
        hit *= remaining
        idx = hit.nonzero()[0]
        cells.append((count, int(ys[by]), int(xs[bx])))
        extremes.append(borders.take(idx, 1).max(axis=1))
        remaining -= hit  # hit is a subset of remaining
        left -= count
        if left < min_count:
            break
        counts -= row_f.take(idx, 0).T @ col_f.take(idx, 0)
    covered = remaining == 0
    if not cells:
        return np.zeros((0, 5), np.int64), covered
    # Each pick's chip: ((max lo) + (min hi) - 1) // 2 per axis.
    ext = np.array(extremes)
    picks = np.empty((len(cells), 5), np.int64)
    picks[:, :2] = (ext[:, :2] - ext[:, 2:] - 1) // 2
    picks[:, 2:] = cells
    return picks, covered


def greedy_cover(boxes_scaled: np.ndarray, canvas_hw: Tuple[int, int],
                 chip_size: int, chip_stride: int, min_count: int = 1,
                 off_grid: bool = True
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedily cover boxes with chips of the stride grid (Algorithm 1).

    Each step picks the candidate chip that fully encloses the most boxes
    not yet covered; it stops when every coverable box is covered, or when
    the best chip would enclose fewer than ``min_count`` boxes (negative
    chips, Sec. 3.3.3). Ties: the first best position in row-major order
    (top to bottom, then left to right) decides WHICH boxes ``S`` the chip
    encloses; the chip goes to the middle of all positions enclosing
    ``S``, so boxes sit away from chip borders. The result does not depend
    on the order of the boxes.

    A box is *uncoverable* when no candidate can enclose it: a side longer
    than the chip (``min(K, canvas side)``), or, with ``off_grid=False``, a
    side longer than ``K - d`` that falls between grid positions. It never
    makes the loop spin: it is left out of the cover and reported.

    The candidates are never materialised: along an axis the chips that
    enclose a box form a contiguous run of start indices, so "chip
    ``(ix, iy)`` encloses box ``n``" is a rectangle in index space. Boxes
    are split into groups no chip can mix (their rectangles do not meet);
    a lone box gets the chip in the middle of its runs, larger groups run
    the greedy loop of :func:`_greedy_group`. Memory and time depend on
    the boxes, not on the canvas. Picks in different groups never
    interact, so sorting all picks by (boxes newly enclosed, descending;
    then row-major first best position) gives the order of one global
    greedy loop; the result equals a plain loop over every candidate
    (property-tested).

    Args:
        boxes_scaled (np.ndarray): ``(N, 4)`` float xyxy in SCALED pixels,
            inside the canvas.
        canvas_hw (tuple[int, int]): SCALED canvas ``(h, w)``.
        chip_size (int): ``K``.
        chip_stride (int): ``d``.
        min_count (int): Smallest number of boxes a chip must enclose.
        off_grid (bool): Add a candidate for each box that fits in a chip
            but falls between grid positions (see ``ChipConfig.off_grid``).

    Returns:
        tuple: ``(chips, covered, coverable)``: ``(C, 4)`` float64 chips,
        xyxy in SCALED pixels, in greedy order; ``(N,)`` bool, box enclosed
        by a picked chip; ``(N,)`` bool, box fits in some candidate.

    Raises:
        ValueError: A box with a NaN or infinite coordinate (sanitise
            first: :func:`~mmsnip.chips.boxes.sanitize_boxes`).
    """
    boxes_scaled = as_boxes(boxes_scaled, 'boxes_scaled')
    finite = np.isfinite(boxes_scaled).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(
            f'greedy_cover: boxes_scaled[{i}] = {boxes_scaled[i].tolist()} '
            'is not finite; sanitise boxes first (sanitize_boxes drops '
            'such rows)')
    min_count = max(int(min_count), 1)
    h, w = canvas_hw
    if len(boxes_scaled) <= _SMALL:
        return _greedy_cover_small(boxes_scaled, canvas_hw, chip_size,
                                   chip_stride, min_count, off_grid)
    if h <= chip_size and w <= chip_size:
        return _cover_one_candidate(boxes_scaled, h, w, min_count)
    starts_x, ext_x, lo_x, hi_x = axis_candidates(
        boxes_scaled[:, 0], boxes_scaled[:, 2], w, chip_size, chip_stride,
        off_grid)
    starts_y, ext_y, lo_y, hi_y = axis_candidates(
        boxes_scaled[:, 1], boxes_scaled[:, 3], h, chip_size, chip_stride,
        off_grid)
    coverable = (lo_x < hi_x) & (lo_y < hi_y)
    if coverable.all():  # the usual case: no copies
        idx = slice(None)
        runs = lo_x, hi_x, lo_y, hi_y
    else:
        idx = np.flatnonzero(coverable)
        runs = lo_x[idx], hi_x[idx], lo_y[idx], hi_y[idx]
    num = len(runs[0])
    covered = np.zeros(len(boxes_scaled), bool)
    cells = min(2 * num, len(starts_x) + 1) * \
        min(2 * num, len(starts_y) + 1)
    if cells <= _MAX_CELLS:
        picks, covered[idx] = _greedy_group(*runs, min_count)
    else:
        # Large canvas and many boxes: independent groups keep the count
        # grids small (the result is the same, only cheaper).
        picks, covered[idx] = _cover_groups(runs, min_count)
    ix, iy = picks[:, 0], picks[:, 1]
    chips = np.stack([
        starts_x[ix], starts_y[iy], starts_x[ix] + ext_x, starts_y[iy] + ext_y
    ], axis=1)
    return chips, covered, coverable


def _cover_one_candidate(boxes_scaled: np.ndarray, h: int, w: int,
                         min_count: int):
    """:func:`greedy_cover` on a canvas no larger than a chip: the single
    candidate is the whole canvas (start 0 on both axes, no off-grid start
    can differ from 0), so the cover is that chip if it encloses at least
    ``min_count`` boxes. The run tests of :func:`_feasible_runs` with
    ``starts = [0]``, written out."""
    b = boxes_scaled
    coverable = (b[:, 2] - w - FIT_EPS <= 0) & (b[:, 0] + FIT_EPS >= 0) & \
        (b[:, 3] - h - FIT_EPS <= 0) & (b[:, 1] + FIT_EPS >= 0)
    if np.count_nonzero(coverable) < min_count:
        return np.zeros((0, 4)), np.zeros(len(b), bool), coverable
    return np.array([[0.0, 0.0, float(w), float(h)]]), coverable.copy(), \
        coverable


def _runs_small(lo_edges, hi_edges, length: int, chip_size: int,
                stride: int, off_grid: bool):
    """:func:`axis_candidates` on Python floats (a few boxes).

    Returns:
        tuple: ``(starts (sequence of float), extent, first (list[int]),
        last (list[int]))``, the same numbers as :func:`axis_candidates`.
    """
    extent = min(chip_size, length)
    starts = _cached_start_list(length, chip_size, stride)
    shift = extent + FIT_EPS
    first = [bisect.bisect_left(starts, hi - shift) for hi in hi_edges]
    last = [bisect.bisect_right(starts, lo + FIT_EPS) for lo in lo_edges]
    if off_grid and not all(map(operator.lt, first, last)):
        extra = []
        for lo_e, hi_e, a, b in zip(lo_edges, hi_edges, first, last):
            if a < b or hi_e - lo_e > extent + FIT_EPS:
                continue
            lo = max(hi_e - extent, 0.0)
            hi = min(lo_e, float(length - extent))
            lo_int, hi_int = math.ceil(lo), math.floor(hi)
            # np.round and round() both round half to even.
            extra.append(float(min(max(round((lo + hi) / 2), lo_int),
                                   hi_int)) if lo_int <= hi_int else lo)
        if extra:
            starts = sorted(set(starts).union(extra))
            first = [bisect.bisect_left(starts, hi - shift)
                     for hi in hi_edges]
            last = [bisect.bisect_right(starts, lo + FIT_EPS)
                    for lo in lo_edges]
    return starts, extent, first, last


def _greedy_cover_small(boxes_scaled: np.ndarray, canvas_hw, chip_size: int,
                        chip_stride: int, min_count: int, off_grid: bool):
    """:func:`greedy_cover` for a few boxes, in plain Python (see
    :func:`_cover_lists`)."""
    n = len(boxes_scaled)
    cols = boxes_scaled.T.tolist() if n else ([], [], [], [])
    chips, covered, coverable = _cover_lists(*cols, canvas_hw, chip_size,
                                             chip_stride, min_count,
                                             off_grid)
    return (np.array(chips, np.float64).reshape(-1, 4),
            np.array(covered, bool).reshape(n),
            np.array(coverable, bool).reshape(n))


def _cover_lists(x1, y1, x2, y2, canvas_hw, chip_size: int, chip_stride: int,
                 min_count: int, off_grid: bool):
    """The greedy cover of a few boxes given as coordinate lists (SCALED
    pixels), in plain Python.

    The same picks as :func:`_greedy_group`, found without the count grid:
    the first best cell in row-major order always starts at the lower
    border of a remaining box's rectangle on both axes (a cell above or to
    the left of it would be enclosed by the same boxes and come first), so
    only those ``(lo_y, lo_x)`` pairs are scored, each as the popcount of
    two bit masks (boxes whose run holds ``lo_y`` / ``lo_x``). A canvas no
    larger than a chip has one candidate: the whole canvas.

    Returns:
        tuple: ``(chips, covered, coverable)``: a list of ``(x1, y1, x2,
        y2)`` float tuples in greedy order; two lists of ``N`` bools.
    """
    h, w = canvas_hw
    n = len(x1)
    if h <= chip_size and w <= chip_size and n and min(x1) >= 0 and \
            min(y1) >= 0 and max(x2) <= w and max(y2) <= h:
        # One candidate, the canvas, encloses every box (Algorithm 1 picks
        # it once if there are enough boxes).
        if n >= min_count:
            return [(0.0, 0.0, float(w), float(h))], [True] * n, [True] * n
        return [], [False] * n, [True] * n
    starts_x, ext_x, lo_x, hi_x = _runs_small(x1, x2, w, chip_size,
                                              chip_stride, off_grid)
    starts_y, ext_y, lo_y, hi_y = _runs_small(y1, y2, h, chip_size,
                                              chip_stride, off_grid)
    coverable = [a < b and c < d
                 for a, b, c, d in zip(lo_x, hi_x, lo_y, hi_y)]
    if all(coverable):
        idx = range(n)
        lx, hx, ly, hy = lo_x, hi_x, lo_y, hi_y
    else:
        idx = [i for i in range(n) if coverable[i]]
        lx = [lo_x[i] for i in idx]
        hx = [hi_x[i] for i in idx]
        ly = [lo_y[i] for i in idx]
        hy = [hi_y[i] for i in idx]
    m = len(idx)
    chips = []
    covered_bits = 0
    if m == 1 and min_count <= 1:
        # One box: the chip in the middle of its runs (the loop's pick).
        ix, iy = (lx[0] + hx[0] - 1) // 2, (ly[0] + hy[0] - 1) // 2
        chips.append((starts_x[ix], starts_y[iy], starts_x[ix] + ext_x,
                      starts_y[iy] + ext_y))
        covered_bits = 1
    elif m >= min_count:
        mask_y = _border_masks(ly, hy)
        mask_x = _border_masks(lx, hx)
        remaining = (1 << m) - 1
        while True:
            best, hit = 0, 0
            for my in mask_y:
                my &= remaining
                row = my.bit_count()
                if row <= best:
                    continue
                for mx in mask_x:
                    c = (my & mx).bit_count()
                    if c > best:
                        best, hit = c, my & mx
                        if c == row:
                            break  # no later cell of this row has more
            if best < min_count:
                break
            # The middle of the members' common runs [left, right) and
            # [top, bottom) (grid indices).
            left = top = -1
            right = bottom = _BIG
            rest = hit
            while rest:
                low = rest & -rest
                rest ^= low
                b = low.bit_length() - 1
                if lx[b] > left:
                    left = lx[b]
                if hx[b] < right:
                    right = hx[b]
                if ly[b] > top:
                    top = ly[b]
                if hy[b] < bottom:
                    bottom = hy[b]
            ix, iy = (left + right - 1) // 2, (top + bottom - 1) // 2
            chips.append((starts_x[ix], starts_y[iy], starts_x[ix] + ext_x,
                          starts_y[iy] + ext_y))
            remaining &= ~hit
            covered_bits |= hit
            if remaining.bit_count() < min_count:
                break
    if min_count <= 1:
        # The loop only stops when no coverable box is left uncovered.
        return chips, coverable[:], coverable
    covered = [False] * n
    for b, i in enumerate(idx):
        covered[i] = bool(covered_bits >> b & 1)
    return chips, covered, coverable


def _border_masks(lo, hi) -> list:
    """For each distinct lower border ``v`` of the runs ``[lo[b], hi[b])``
    (ascending), the bit mask of the runs holding ``v`` (bit ``b``: run
    ``b``). Runs are non-empty."""
    runs = tuple(zip(lo, hi, _bits(len(lo))))
    masks = []
    for v in sorted(set(lo)):
        mask = 0
        for lo_b, hi_b, bit in runs:
            if lo_b <= v < hi_b:
                mask |= bit
        masks.append(mask)
    return masks


@functools.lru_cache(maxsize=None)
def _bits(n: int) -> tuple:
    """``(1, 2, 4, ..., 1 << (n - 1))``."""
    return tuple(1 << b for b in range(n))


def _cover_groups(runs, min_count: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`_greedy_group` per independent group, merged in the order of
    one global greedy loop: most boxes first, ties in row-major order of
    the first best position (within a group this is its own pick order).

    Args:
        runs (tuple): ``(lo_x, hi_x, lo_y, hi_y)``, ``(N,)`` int runs.
        min_count (int): Smallest number of boxes a chip must enclose.

    Returns:
        tuple: ``(picks (P, 5) int64, covered (N,) bool)`` as
        :func:`_greedy_group`.
    """
    group, num = _independent_groups(*runs)
    sizes = np.bincount(group, minlength=num)
    covered = np.zeros(len(group), bool)
    picks = [np.zeros((0, 5), np.int64)]
    alone = sizes[group] == 1
    if min_count == 1:
        # A lone box: the chip in the middle of its runs (what the greedy
        # loop would pick, without the loop).
        lx, hx, ly, hy = (r[alone] for r in runs)
        picks.append(np.stack([(lx + hx - 1) // 2, (ly + hy - 1) // 2,
                               np.ones(len(lx), np.int64), ly, lx], axis=1))
        covered[alone] = True
    # A loop over groups of two or more boxes (each yields a chip when it
    # holds min_count boxes).
    order = np.argsort(group, kind='stable')
    for members in np.split(order, np.cumsum(sizes)[:-1]):
        if len(members) >= max(min_count, 2):
            found, covered[members] = _greedy_group(
                *(r[members] for r in runs), min_count)
            picks.append(found)
    picks = np.concatenate(picks)
    order = np.lexsort((picks[:, 4], picks[:, 3], -picks[:, 2]))
    return picks[order], covered


@dataclasses.dataclass
class PositiveChipResult:
    """Positive chips of an image and per-scale bookkeeping.

    Attributes:
        chips (ChipSet): The positive chips of all scales, scale by scale.
        valid (np.ndarray): ``(S, N)`` bool, box n is in ``G_i`` of scale s:
            size in the scale's range, not crowd, not dropped by
            :func:`~mmsnip.chips.boxes.sanitize_boxes`.
        uncoverable (np.ndarray): ``(S, N)`` bool, valid at scale s but no
            candidate chip can enclose it (a side longer than the chip
            there; see :func:`greedy_cover`). Such a box still appears,
            cropped, in every chip it overlaps (:func:`chip_ground_truth`).
    """
    chips: ChipSet
    valid: np.ndarray
    uncoverable: np.ndarray


def _crowd_flags(iscrowd, num_boxes: int) -> Optional[np.ndarray]:
    """``iscrowd`` as ``(N,)`` bool (None stays None).

    Raises:
        ValueError: Not one flag per box.
    """
    if iscrowd is None:
        return None
    crowd = np.asarray(iscrowd, bool).reshape(-1)
    if len(crowd) != num_boxes:
        raise ValueError(f'iscrowd has {len(crowd)} entries for '
                         f'{num_boxes} boxes')
    return crowd


def generate_positive_chips(gt_boxes, img_h: int, img_w: int,
                            cfg: ChipConfig,
                            iscrowd: Optional[np.ndarray] = None,
                            cover: Optional[Callable] = None
                            ) -> PositiveChipResult:
    """Positive chips of one image at every scale (Algorithm 1, Sec. 3.3.2).

    Args:
        gt_boxes (array): ``(N, 4)`` float xyxy in ORIGINAL-image pixels.
            Sanitised first (:func:`~mmsnip.chips.boxes.sanitize_boxes`:
            clipped to the image; NaN/inf or empty boxes are never valid).
        img_h, img_w (int): ORIGINAL image size, > 0.
        cfg (ChipConfig): Scales, chip size, stride, ``off_grid``.
        iscrowd (array, optional): ``(N,)`` bool; crowd boxes never need
            covering (they are not in ``G_i``).
        cover (callable, optional): The greedy cover of one scale, called
            and returning like :func:`greedy_cover` (the default). Another
            one (a reference implementation to compare with, as
            ``tools/benchmark_chips.py`` runs the released generator's)
            covers every image on the array path.

    Returns:
        PositiveChipResult: chips in ORIGINAL and SCALED pixels, indices of
        ``valid`` / ``uncoverable`` aligned with ``gt_boxes``.

    Raises:
        ValueError: On a non-positive image size or mis-shaped inputs.
    """
    arr = as_boxes(gt_boxes)
    crowd = _crowd_flags(iscrowd, len(arr))
    if cover is None and len(arr) <= _SMALL:
        # A few boxes: plain Python from the clean-up on, one array at the
        # end (numpy's per-call cost would dominate).
        return _positive_small(arr, crowd, img_h, img_w, cfg)
    cover = cover or greedy_cover
    boxes, keep = sanitize_boxes(arr, img_h, img_w)
    if crowd is not None:
        keep &= ~crowd
    sizes = box_sizes(boxes)
    ranges = cfg.valid_ranges
    # Sec. 3.3.2: G_i = non-crowd ground truth whose size lies in R_i (the
    # strict test of in_range, for all scales at once).
    valid = keep & (sizes > ranges[:, :1]) & (sizes < ranges[:, 1:])
    uncoverable = np.zeros_like(valid)
    chips, rows = [], []
    for s, (factor, canvas) in enumerate(cfg.geometry(img_h, img_w)):
        idx = np.flatnonzero(valid[s])
        if not len(idx):
            continue
        scaled = to_canvas(boxes[idx], factor, canvas)
        found, _, coverable = cover(scaled, canvas, cfg.chip_size,
                                    cfg.chip_stride, off_grid=cfg.off_grid)
        uncoverable[s, idx] = ~coverable
        chips.append(found)
        rows.append((len(found), s, factor, canvas))
    if not chips:
        return PositiveChipResult(ChipSet.empty(), valid, uncoverable)
    # One make_chip_set for all scales (per-row factor and canvas).
    num, index, factor, canvas = zip(*rows)
    return PositiveChipResult(
        chip_set_from_rows(
            np.concatenate(chips), np.repeat(index, num),
            np.repeat(factor, num),
            np.repeat(np.array(canvas, np.float64), num, axis=0), img_h,
            img_w, True), valid, uncoverable)


def _canvas_columns(box_list, idx, factor: float, canvas_hw):
    """:func:`to_canvas` on Python floats: boxes ``idx`` of ``box_list``
    (ORIGINAL px, inside the image) times ``factor``, clipped to the
    canvas ``(h, w)``, as four coordinate lists ``x1, y1, x2, y2``
    (SCALED px)."""
    ch, cw = canvas_hw
    x1, y1, x2, y2 = [], [], [], []
    for i in idx:
        a, b, c, d = box_list[i]
        a, b, c, d = a * factor, b * factor, c * factor, d * factor
        x1.append(a if a <= cw else cw)
        y1.append(b if b <= ch else ch)
        x2.append(c if c <= cw else cw)
        y2.append(d if d <= ch else ch)
    return x1, y1, x2, y2


def _small_image_covers(box_list, members, img_h, img_w,
                        cfg: ChipConfig):
    """The greedy cover of one image's few boxes, scale by scale, on Python
    floats (the numbers of :func:`to_canvas` and :func:`greedy_cover`).

    Args:
        box_list (list): Rows ``[x1, y1, x2, y2]``, ORIGINAL px, inside
            the image (sanitised).
        members (list[list[int]]): Per scale, the rows valid there.
        img_h, img_w: ORIGINAL image size.
        cfg (ChipConfig): The chip settings.

    Yields:
        tuple: ``(s, factor, canvas, idx, chips, coverable)`` for each
        scale with members: ``chips`` a list of SCALED ``(x1, y1, x2,
        y2)``, ``coverable`` one bool per row of ``idx``.
    """
    for s, (factor, canvas) in enumerate(cfg.geometry(img_h, img_w)):
        idx = members[s]
        if idx and canvas[0] <= cfg.chip_size and \
                canvas[1] <= cfg.chip_size:
            # One candidate, the canvas, which encloses every box of the
            # image (the first case of _cover_lists, without the columns).
            yield (s, factor, canvas, idx,
                   [(0.0, 0.0, float(canvas[1]), float(canvas[0]))],
                   [True] * len(idx))
        elif idx:
            cols = _canvas_columns(box_list, idx, factor, canvas)
            found, _, coverable = _cover_lists(*cols, canvas, cfg.chip_size,
                                               cfg.chip_stride, 1,
                                               cfg.off_grid)
            yield s, factor, canvas, idx, found, coverable


def _positive_small(boxes: np.ndarray, crowd: Optional[np.ndarray],
                    img_h, img_w, cfg: ChipConfig) -> PositiveChipResult:
    """:func:`generate_positive_chips` of an image with a few boxes (``<=
    _SMALL``, ``(N, 4)`` float64) on Python floats: the clean-up
    (:func:`~mmsnip.chips.boxes.sanitize_box_rows`), the validity rule,
    :func:`_small_image_covers` and :func:`_append_chip_rows`; the same
    numbers as the numpy path (tested)."""
    box_list, keep = sanitize_box_rows(boxes.tolist(), img_h, img_w)
    if crowd is not None:
        keep = [k and not c for k, c in zip(keep, crowd.tolist())]
    # Sec. 3.3.2: G_i = kept boxes with lo < sqrt(area) < hi (box_sizes and
    # the strict test of in_range).
    sizes = [math.sqrt((x2 - x1) * (y2 - y1))
             for x1, y1, x2, y2 in box_list]
    valid_rows = [[k and lo < z < hi for k, z in zip(keep, sizes)]
                  for lo, hi in cfg.valid_ranges.tolist()]
    valid = np.array(valid_rows, bool).reshape(len(valid_rows), len(sizes))
    uncoverable = np.zeros_like(valid)
    members = [list(itertools.compress(range(len(sizes)), row))
               for row in valid_rows]
    table = []
    for s, factor, canvas, idx, found, coverable in _small_image_covers(
            box_list, members, img_h, img_w, cfg):
        if not all(coverable):
            uncoverable[s, idx] = [not c for c in coverable]
        _append_chip_rows(table, found, s, factor, canvas, img_h, img_w)
    return PositiveChipResult(_positive_chip_set(table), valid, uncoverable)


def _append_chip_rows(table: list, chips_scaled, scale_index: int,
                      factor: float, canvas_hw, img_h, img_w) -> None:
    """Append one row per chip to ``table``: ORIGINAL ``x1, y1, x2, y2``,
    SCALED ``x1, y1, x2, y2``, the scale index and factor (the rule of
    :func:`chip_set_from_rows` on Python floats, for a few chips).

    Args:
        table (list): The rows so far (of earlier scales).
        chips_scaled (list): ``(x1, y1, x2, y2)`` SCALED chips of one
            scale of one image.
        scale_index (int), factor (float), canvas_hw (tuple): The scale.
        img_h, img_w: ORIGINAL image size.
    """
    ch, cw = canvas_hw
    for x1, y1, x2, y2 in chips_scaled:
        table.append((
            min(max(x1 / factor, 0.0), img_w),
            min(max(y1 / factor, 0.0), img_h),
            img_w if x2 >= cw else min(max(x2 / factor, 0.0), img_w),
            img_h if y2 >= ch else min(max(y2 / factor, 0.0), img_h),
            x1, y1, x2, y2, scale_index, factor))


def _positive_chip_set(table: list) -> ChipSet:
    """Positive chips from :func:`_append_chip_rows` rows (one array
    conversion for every column)."""
    if not table:
        return ChipSet.empty()
    rows = np.array(table, np.float64)
    return ChipSet(rows[:, :4], rows[:, 4:8], rows[:, 8].astype(np.int64),
                   rows[:, 9], np.ones(len(rows), bool))


def positive_chips_batch(boxes, box_start, heights, widths, cfg: ChipConfig,
                         crowd: Optional[np.ndarray] = None
                         ) -> Tuple[ChipSet, np.ndarray]:
    """Positive chips of many images at once: the concatenation of
    :func:`generate_positive_chips` over the images, cheaper per image.

    The annotation clean-up, sizes and validity of all boxes are computed
    in one go; each image with at most ``_SMALL`` boxes is then covered in
    plain Python, larger ones by :func:`generate_positive_chips`.

    Args:
        boxes (np.ndarray): ``(M, 4)`` float xyxy, ORIGINAL pixels, the
            boxes of all images one image after the other.
        box_start (np.ndarray): ``(N + 1,)`` int: image ``n``'s boxes are
            rows ``box_start[n]:box_start[n + 1]``.
        heights, widths (np.ndarray): ``(N,)`` ORIGINAL image sizes, > 0.
        cfg (ChipConfig): The chip settings.
        crowd (np.ndarray, optional): ``(M,)`` bool crowd flags.

    Returns:
        tuple: ``(chips, counts)``: the chips of image 0, then image 1, ...
        (each scale by scale, as :func:`generate_positive_chips`) and
        ``(N,)`` int64 chips per image.

    Raises:
        ValueError: Mis-shaped boxes, ``box_start`` not running from 0 to
            ``M``, not one size per image or one crowd flag per box, an
            image size not positive and finite.
    """
    boxes = as_boxes(boxes)
    box_start = np.asarray(box_start, np.int64).reshape(-1)
    n = len(box_start) - 1
    per_image = np.diff(box_start)
    if n < 0 or box_start[0] != 0 or box_start[-1] != len(boxes) or \
            (per_image < 0).any():
        raise ValueError(
            f'box_start must run from 0 to the {len(boxes)} boxes, never '
            f'decreasing; got {len(box_start)} entries from '
            f'{box_start[:1].tolist()} to {box_start[-1:].tolist()}')
    img = np.repeat(np.arange(n), per_image)
    heights = np.asarray(heights).reshape(-1)
    widths = np.asarray(widths).reshape(-1)
    if len(heights) != n or len(widths) != n:
        raise ValueError(f'{len(heights)} heights and {len(widths)} widths '
                         f'for {n} images (box_start)')
    broadcast_sizes(heights, widths, n)  # ValueError on a bad size
    clipped, keep = sanitize_boxes(boxes, heights[img], widths[img])
    crowd = _crowd_flags(crowd, len(boxes))
    if crowd is None:
        crowd = np.zeros(len(boxes), bool)
    sizes = box_sizes(clipped)
    ranges = cfg.valid_ranges
    valid = (keep & ~crowd) & (sizes > ranges[:, :1]) & \
        (sizes < ranges[:, 1:])
    box_list = clipped.tolist()
    valid_t = valid.T.tolist()
    h_list, w_list = heights.tolist(), widths.tolist()
    starts = box_start.tolist()
    num_scales = len(cfg.scales)
    sets, counts = [], np.zeros(n, np.int64)
    chips, index, factors, canvases = [], [], [], []
    for k in range(n):
        a, b = starts[k], starts[k + 1]
        img_h, img_w = h_list[k], w_list[k]
        if b - a > _SMALL:
            if chips:
                sets.append(chip_set_from_lists(chips, index, factors,
                                                canvases, True))
                chips, index, factors, canvases = [], [], [], []
            res = generate_positive_chips(boxes[a:b], img_h, img_w, cfg,
                                          crowd[a:b]).chips
            sets.append(res)
            counts[k] = len(res)
            continue
        before = len(chips)
        members = [[i for i in range(a, b) if valid_t[i][s]]
                   for s in range(num_scales)]
        for s, factor, canvas, _, found, _ in _small_image_covers(
                box_list, members, img_h, img_w, cfg):
            chips.extend(found)
            index.extend([s] * len(found))
            factors.extend([factor] * len(found))
            canvases.extend([(*canvas, img_h, img_w)] * len(found))
        counts[k] = len(chips) - before
    if chips:
        sets.append(chip_set_from_lists(chips, index, factors, canvases,
                                        True))
    return ChipSet.concat(sets), counts


def chip_set_from_lists(chips, index, factors, geometry,
                        positive: bool) -> ChipSet:
    """:func:`chip_set_from_rows` for rows of several images, from lists:
    ``geometry`` is ``(canvas h, canvas w, image h, image w)`` per row."""
    geo = np.array(geometry, np.float64).reshape(-1, 4)
    return chip_set_from_rows(np.array(chips, np.float64).reshape(-1, 4),
                              np.array(index, np.int64),
                              np.array(factors, np.float64), geo[:, :2],
                              geo[:, 2], geo[:, 3], positive)


def to_canvas(boxes: np.ndarray, factor, canvas_hw) -> np.ndarray:
    """ORIGINAL-image boxes to SCALED pixels, clipped to the canvas.

    Args:
        boxes (np.ndarray): ``(N, 4)`` float xyxy, ORIGINAL pixels, inside
            the image.
        factor (float | np.ndarray): The scale's factor, or ``(N, 1)``
            float64 factors, one per box (boxes of several scales at once).
        canvas_hw (tuple[int, int] | np.ndarray): SCALED canvas ``(h, w)``
            (rounded, so ``side * factor`` may exceed it by under half a
            pixel), or ``(N, 2)`` float64 canvases, one per box.

    Returns:
        np.ndarray: ``(N, 4)`` float64 xyxy, SCALED pixels.
    """
    # the product in the inputs' dtype, then float64 (the same values as
    # np.minimum(boxes * factor, limit)); (x, y) corner pairs clipped to
    # (w, h) in place, without a gathered (N, 4) limit
    scaled = np.asarray(boxes * factor, np.float64)
    if np.ndim(canvas_hw) == 2:
        limit = np.asarray(canvas_hw, np.float64)[:, None, ::-1]
    else:
        h, w = canvas_hw
        limit = np.array([w, h], np.float64)
    corners = scaled.reshape(-1, 2, 2)
    np.minimum(corners, limit, out=corners)
    return scaled


def make_chip_set(chips_scaled: np.ndarray, scale_index: int, factor: float,
                  canvas_hw: Tuple[int, int], img_h: int, img_w: int,
                  positive: bool) -> ChipSet:
    """A :class:`ChipSet` of one scale from chips in SCALED pixels.

    ORIGINAL boxes are ``chips_scaled / factor`` clipped to the image; a
    chip side on the canvas border is put exactly on the image border (the
    canvas is rounded, so ``canvas / factor`` can fall short of the image
    by a fraction of a pixel).

    Args:
        chips_scaled (np.ndarray): ``(C, 4)`` float xyxy, SCALED pixels.
        scale_index (int): Index of the scale in the config.
        factor (float): The scale's factor.
        canvas_hw (tuple[int, int]): SCALED canvas ``(h, w)``.
        img_h, img_w (int): ORIGINAL image size.
        positive (bool): Positive or negative chips.

    Returns:
        ChipSet: ``C`` chips.
    """
    n = len(chips_scaled)
    return chip_set_from_rows(
        np.asarray(chips_scaled), np.full(n, scale_index, np.int64),
        np.full(n, float(factor)),
        np.tile(np.array(canvas_hw, np.float64), (n, 1)), img_h, img_w,
        positive)


def chip_set_from_rows(chips_scaled: np.ndarray, scale_index: np.ndarray,
                       factor: np.ndarray, canvas_hw: np.ndarray, img_h,
                       img_w, positive: bool) -> ChipSet:
    """:func:`make_chip_set` with a scale per row: ``(C,)`` indices and
    factors, ``(C, 2)`` canvas ``(h, w)``; the ORIGINAL image size one
    for all rows or ``(C,)`` per row (chips of several images). The same
    rule on Python floats, for the few chips of one image:
    :func:`_append_chip_rows`."""
    n = len(chips_scaled)
    if isinstance(img_h, np.ndarray) and img_h.ndim:
        size = np.stack([img_w, img_h, img_w, img_h], axis=1)
    else:
        size = np.array([img_w, img_h, img_w, img_h], np.float64)
    orig = np.minimum(np.maximum(chips_scaled / factor[:, None], 0), size)
    at_far_border = chips_scaled[:, 2:] >= canvas_hw[:, ::-1]
    orig[:, 2:] = np.where(at_far_border, size[..., 2:], orig[:, 2:])
    return ChipSet(orig, np.asarray(chips_scaled, np.float64),
                   np.asarray(scale_index, np.int64),
                   np.asarray(factor, np.float64),
                   (np.ones if positive else np.zeros)(n, bool))


@dataclasses.dataclass
class ChipGroundTruth:
    """The ground truth seen by one chip.

    Attributes:
        indices (np.ndarray): ``(M,)`` int64 indices into the image's boxes
            of every box overlapping the chip (positive-area intersection),
            ascending.
        boxes (np.ndarray): ``(M, 4)`` float64 xyxy, those boxes clipped to
            the chip, in CHIP pixels (SCALED, relative to the chip's
            top-left corner).
        valid (np.ndarray): ``(M,)`` bool, the UNCLIPPED box's size lies in
            the chip scale's valid range (cropped boxes keep the validity
            of the whole object, Sec. 3.3.2 / 3.3.4).
        crowd (np.ndarray): ``(M,)`` bool crowd flags.
        covered (np.ndarray): ``(M,)`` bool, the box lies fully inside the
            chip.
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
        chip_box (array): ``(4,)`` xyxy, the chip (or the exact pixel
            window cut for it) in ORIGINAL-image pixels.
        factor (float | tuple[float, float]): ORIGINAL to CHIP pixels: one
            factor or ``(fx, fy)`` (a crop resized to integer sides).
        gt_boxes (array): ``(N, 4)`` float xyxy, ORIGINAL pixels
            (sanitised).
        valid_range (tuple[float, float]): The scale's range, ORIGINAL
            pixels (the same test as the unclipped SCALED size against the
            scaled range).
        iscrowd (array, optional): ``(N,)`` bool.

    Returns:
        ChipGroundTruth: boxes in CHIP pixels. "Fully inside" tolerates
        ``1e-6`` ORIGINAL pixels of rounding.
    """
    boxes = as_boxes(gt_boxes, 'gt_boxes')
    chip = np.asarray(chip_box, np.float64).reshape(4)
    crowd = _crowd_flags(iscrowd, len(boxes))
    if crowd is None:
        crowd = np.zeros(len(boxes), bool)
    lt = np.maximum(boxes[:, :2], chip[:2])
    rb = np.minimum(boxes[:, 2:], chip[2:])
    # Sec. 3.3.2: boxes partly inside a chip (IoU > 0) are cropped, kept.
    overlap = ((rb - lt) > 0).all(axis=1)
    idx = np.flatnonzero(overlap)
    fx, fy = np.broadcast_to(np.asarray(factor, np.float64), (2,))
    clipped = (np.concatenate([lt[idx], rb[idx]], axis=1) -
               np.tile(chip[:2], 2)) * [fx, fy, fx, fy]
    inside = (boxes[idx, :2] >= chip[:2] - FIT_EPS).all(1) & \
        (boxes[idx, 2:] <= chip[2:] + FIT_EPS).all(1)
    return ChipGroundTruth(
        indices=idx.astype(np.int64),
        boxes=clipped,
        # Sec. 3.3.2: validity is decided by the whole object's size.
        valid=in_range(box_sizes(boxes[idx]), valid_range),
        crowd=crowd[idx],
        covered=inside)
