# Copyright (c) mmsnip contributors. All rights reserved.
"""The greedy cover of many canvases at once, pure numpy.

Algorithm 1 (Sec. 3.3.2) as :func:`~mmsnip.chips.positive.greedy_cover`
runs it, in index space (a box fits in the chips of an index rectangle),
for many independent canvases together: the count grids of a few hundred
canvases are one array, and every step of the greedy loop picks one chip
in each canvas that still has one to pick, so the numpy calls are per
step, not per canvas and step. The chip table's negative chips use it
(:func:`~mmsnip.chips.negative.negative_chips_batch`): a COCO block of 256
images holds about 500 covers of about 160 proposals, about 6 picks each.
"""
import dataclasses
import functools
from typing import Dict, Tuple

import numpy as np

from .boxes import FIT_EPS
from .positive import (axis_candidates, grid_counts, off_grid_starts,
                       run_thresholds)

# Cells of the count grids held at once (float32: 8 MiB of difference grids
# and 8 MiB of their integration), whatever the number of canvases.
CHUNK_CELLS = 1 << 21
# Callers batch canvases whose grid has at most this many candidate chips;
# larger ones go to greedy_cover, which splits them into independent groups.
MAX_GRID_CELLS = 1 << 16
# Integer starts of many canvases as one sorted int64 array: canvas * _KEY
# + start (canvas sides and ids below 2 ** 31).
_KEY = 1 << 32


def grid_length(side, chip_size: int, stride: int) -> np.ndarray:
    """Starts of the stride grid along canvas sides
    (:func:`~mmsnip.chips.positive.chip_starts`, counted): 1 for a side
    ``<= K``, else ``ceil((side - K) / d) + 1``."""
    span = np.asarray(side, np.int64) - chip_size
    return np.where(span > 0, -(-span // stride) + 1, 1)


def grid_start(index, side, chip_size: int, stride: int) -> np.ndarray:
    """Start ``index`` of the stride grid along canvas sides ``side``
    (:func:`~mmsnip.chips.positive.chip_starts`): ``min(index * d, side -
    K)``, 0 on a side ``<= K``. int64, SCALED pixels."""
    return np.minimum(np.asarray(index, np.int64) * stride,
                      np.maximum(np.asarray(side, np.int64) - chip_size, 0))


@dataclasses.dataclass
class AxisRuns:
    """Candidate starts of many canvases along one axis, and each box's run
    in its canvas's starts (:func:`axis_runs`).

    Attributes:
        first, last (np.ndarray): ``(B,)`` int64: box ``b`` fits in the
            chips of start indices ``[first[b], last[b])`` of its canvas.
        keys (np.ndarray): Sorted int64 ``canvas * 2 ** 32 + start``: every
            start of the canvases with integer off-grid starts (the stride
            grid's and theirs); canvases in neither ``keys`` nor
            ``searched`` have the stride grid.
        searched (dict): ``{canvas: (S,) float64 starts}``, SCALED pixels,
            of the canvases with an off-grid start that is not an integer
            (rare: a box within a pixel of the chip's side), whose starts
            and runs are searched canvas by canvas
            (:func:`~mmsnip.chips.positive.axis_candidates`).
    """
    first: np.ndarray
    last: np.ndarray
    keys: np.ndarray
    searched: Dict[int, np.ndarray] = dataclasses.field(
        default_factory=dict)

    def starts(self, index: np.ndarray, canvas: np.ndarray, length,
               chip_size: int, stride: int) -> np.ndarray:
        """``(C,)`` float64 start (SCALED pixels) of start index ``index``
        in ``canvas`` of side ``length`` (``(C,)`` each)."""
        index = np.asarray(index, np.int64)
        canvas = np.asarray(canvas, np.int64)
        out = grid_start(index, length, chip_size, stride).astype(
            np.float64)
        if len(self.keys):
            listed = np.isin(canvas, np.unique(self.keys // _KEY))
            base = canvas[listed] * _KEY
            out[listed] = self.keys[self.keys.searchsorted(base) +
                                    index[listed]] - base
        for c, starts in self.searched.items():
            mine = canvas == c
            out[mine] = starts[index[mine]]
        return out


def axis_runs(lo_edge: np.ndarray, hi_edge: np.ndarray, canvas: np.ndarray,
              length: np.ndarray, chip_size: int, stride: int,
              off_grid: bool) -> AxisRuns:
    """Each box's run of candidate starts along one axis, for boxes of many
    canvases: the stride grid (:func:`~mmsnip.chips.positive.grid_runs`)
    plus, with ``off_grid``, the canvas's off-grid starts
    (:func:`~mmsnip.chips.positive.off_grid_starts` of its boxes that fit
    in a chip but in no grid chip), the runs
    :func:`~mmsnip.chips.positive.greedy_cover` finds canvas by canvas.

    Args:
        lo_edge, hi_edge (np.ndarray): ``(B,)`` float box edges, SCALED
            pixels.
        canvas (np.ndarray): ``(B,)`` int canvas id of each box, >= 0.
        length (np.ndarray): ``(B,)`` int side of each box's canvas.
        chip_size (int): ``K``.
        stride (int): ``d``.
        off_grid (bool): Add the off-grid starts.

    Returns:
        AxisRuns: The runs, and the starts of canvases that have off-grid
        ones.
    """
    length = np.asarray(length, np.int64)
    canvas = np.asarray(canvas, np.int64)
    extent = np.minimum(length, chip_size)
    upto_first, upto_last = run_thresholds(lo_edge, hi_edge, extent)
    first, last = (grid_counts(t, length, chip_size, stride)
                   for t in (upto_first, upto_last))
    none = np.zeros(0, np.int64)
    if not off_grid:
        return AxisRuns(first, last, none)
    stuck = (first >= last) & (hi_edge - lo_edge <= extent + FIT_EPS)
    if not stuck.any():
        return AxisRuns(first, last, none)
    extra = off_grid_starts(lo_edge[stuck], hi_edge[stuck], length[stuck],
                            extent[stuck])
    stuck_canvas = canvas[stuck]
    fractional = extra != np.floor(extra)
    searched_ids = np.unique(stuck_canvas[fractional])
    searched = _search_canvases(lo_edge, hi_edge, canvas, length,
                                searched_ids, chip_size, stride, first, last)
    # the integer off-grid starts of the other canvases, as keys
    listing = ~fractional & ~np.isin(stuck_canvas, searched_ids)
    owner = stuck_canvas[listing]
    if not len(owner):
        return AxisRuns(first, last, none, searched)
    # Every start of the canvases with off-grid starts, as sorted keys
    # (duplicates, such as two boxes' equal starts, once).
    listed, at = np.unique(owner, return_index=True)
    side = length[stuck][listing][at]
    count = grid_length(side, chip_size, stride)
    ends = np.cumsum(count)
    index = np.arange(ends[-1]) - np.repeat(ends - count, count)
    grid = grid_start(index, np.repeat(side, count), chip_size, stride)
    extra_keys = np.unique(owner * _KEY + extra[listing].astype(np.int64))
    keys = np.unique(np.concatenate([
        np.repeat(listed, count) * _KEY + grid, extra_keys]))
    # Their boxes' runs: the grid starts <= the thresholds (counted above)
    # plus the canvas's off-grid starts <= them, counted in the few
    # off-grid keys. No off-grid start is a grid start: it lies in its
    # stuck box's feasible interval, which holds no grid start.
    box = np.flatnonzero(np.isin(canvas, listed))
    base = canvas[box] * _KEY
    below = extra_keys.searchsorted(base)
    for runs, upto in ((first, upto_first), (last, upto_last)):
        runs[box] += extra_keys.searchsorted(
            base + np.maximum(upto[box], -1), side='right') - below
    return AxisRuns(first, last, keys, searched)


def _search_canvases(lo_edge: np.ndarray, hi_edge: np.ndarray,
                     canvas: np.ndarray, length: np.ndarray,
                     searched: np.ndarray, chip_size: int, stride: int,
                     first: np.ndarray, last: np.ndarray
                     ) -> Dict[int, np.ndarray]:
    """The starts and runs of the canvases ``searched`` (sorted ids), canvas
    by canvas (:func:`~mmsnip.chips.positive.axis_candidates`, off-grid
    starts on): their boxes' runs are written into ``first`` and ``last``;
    returns ``{canvas: (S,) float64 starts}``."""
    if not len(searched):
        return {}
    rows = np.flatnonzero(np.isin(canvas, searched))
    rows = rows[np.argsort(canvas[rows], kind='stable')]
    bounds = np.searchsorted(canvas[rows], searched[1:])
    found = {}
    for c, mine in zip(searched.tolist(), np.split(rows, bounds)):
        starts, _, first[mine], last[mine] = axis_candidates(
            lo_edge[mine], hi_edge[mine], int(length[mine[0]]), chip_size,
            stride, off_grid=True)
        found[c] = starts
    return found


def greedy_cover_runs(lo_x: np.ndarray, hi_x: np.ndarray, lo_y: np.ndarray,
                      hi_y: np.ndarray, group: np.ndarray,
                      min_count: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy covers of many canvases, in index space.

    Box ``b`` of canvas ``group[b]`` fits in the chips of start indices
    ``[lo_x[b], hi_x[b]) x [lo_y[b], hi_y[b])``. Per canvas, each step
    picks the first position in row-major order enclosing the most
    remaining boxes, while it encloses at least ``min_count`` of them;
    the chip goes to the middle of the positions enclosing the picked
    boxes, ``((max lo) + (min hi) - 1) // 2`` per axis: the picks of
    :func:`~mmsnip.chips.positive.greedy_cover` on the same runs
    (property-tested).

    Args:
        lo_x, hi_x, lo_y, hi_y (np.ndarray): ``(B,)`` int runs,
            ``0 <= lo < hi`` (coverable boxes only).
        group (np.ndarray): ``(B,)`` int canvas of each box,
            non-decreasing, in ``[0, G)``.
        min_count (np.ndarray): ``(G,)`` int >= 1, fewest boxes a chip of
            the canvas must enclose.

    Returns:
        tuple: ``(picks, covered)``: ``(P, 4)`` int64 rows ``(canvas, ix,
        iy, boxes enclosed)``, canvas by canvas, each in greedy order;
        ``(B,)`` bool, box enclosed by a pick.
    """
    runs = [np.asarray(r, np.int64) for r in (lo_x, hi_x, lo_y, hi_y)]
    group = np.asarray(group, np.int64)
    min_count = np.asarray(min_count, np.int64)
    num_groups = len(min_count)
    covered = np.zeros(len(group), bool)
    sizes = np.bincount(group, minlength=num_groups)
    first = np.cumsum(sizes) - sizes
    todo = np.flatnonzero((sizes >= min_count) & (sizes > 0))
    found = [np.zeros((0, 5), np.int64)]
    if not len(todo):
        return found[0][:, [0, 2, 3, 4]], covered
    rows = np.maximum.reduceat(runs[3], first[todo])
    cols = np.maximum.reduceat(runs[1], first[todo])
    # Canvases of similar grids share a chunk (padded to its largest grid,
    # so at most 4x the cells each needs).
    key = np.stack([_ceil_log2(rows), _ceil_log2(cols)], axis=1)
    order = np.lexsort((todo, key[:, 1], key[:, 0]))
    todo, rows, cols, key = todo[order], rows[order], cols[order], key[order]
    bounds = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]).any(1), True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        per_chunk = max(1, CHUNK_CELLS // int(
            (rows[a:b].max() + 1) * (cols[a:b].max() + 1)))
        for c in range(a, b, per_chunk):
            part = slice(c, min(c + per_chunk, b))
            chunk = todo[part]
            box = _member_rows(first[chunk], sizes[chunk])
            local = np.repeat(np.arange(len(chunk)), sizes[chunk])
            picks, hit = _greedy_chunk(
                *(r[box] for r in runs), local, min_count[chunk],
                int(rows[part].max()), int(cols[part].max()))
            covered[box[hit]] = True
            picks[:, 0] = chunk[picks[:, 0]]
            found.append(picks)
    picks = np.concatenate(found)
    # Canvas by canvas, each in its step order.
    picks = picks[np.lexsort((picks[:, 1], picks[:, 0]))]
    return picks[:, [0, 2, 3, 4]], covered


def _ceil_log2(values: np.ndarray) -> np.ndarray:
    """Per value ``v >= 1``, the smallest ``e`` with ``2 ** e >= v``."""
    return np.ceil(np.log2(np.maximum(values, 1))).astype(np.int64)


def _member_rows(first: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The rows ``first[i]:first[i] + sizes[i]`` of every ``i``,
    concatenated."""
    ends = np.cumsum(sizes)
    return np.arange(ends[-1]) + np.repeat(first - (ends - sizes), sizes)


def _corners(lo_x, hi_x, lo_y, hi_y, row, rows: int, cols: int):
    """The four corners of each box's run rectangle in the flattened
    ``(rows + 1) x (cols + 1)`` difference grids (grid ``row``), and their
    signs.

    Returns:
        tuple: ``(index (4B,) int64, sign (4B,) float32)``.
    """
    width = cols + 1
    base = row * ((rows + 1) * width)
    top, bottom = base + lo_y * width, base + hi_y * width
    return (np.concatenate([top + lo_x, top + hi_x, bottom + lo_x,
                            bottom + hi_x]),
            np.repeat(np.array([1, -1, -1, 1], np.float32), len(row)))


@functools.lru_cache(maxsize=64)
def _prefix_matrices(rows: int, cols: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(rows, rows)`` lower and ``(cols, cols)`` upper triangular float32
    matrices of ones, read-only: ``lower @ grid @ upper`` is ``grid``'s
    2-D inclusive prefix sum."""
    lower = np.tril(np.ones((rows, rows), np.float32))
    upper = np.triu(np.ones((cols, cols), np.float32))
    lower.flags.writeable = upper.flags.writeable = False
    return lower, upper


def _integrate(diff: np.ndarray, out: np.ndarray) -> None:
    """``out[g]`` = the 2-D inclusive prefix sum (along both axes) of each
    grid ``diff[g]``, ``(G, rows, cols)`` float32 of small integers.

    Two products with triangular matrices of ones where grids are of
    moderate size (BLAS: about 2x two ``cumsum`` passes there), else two
    ``cumsum`` passes. Exact either way: every partial sum is an integer
    far below 2**24.
    """
    rows, cols = diff.shape[1:]
    if min(rows, cols) >= 8 and max(rows, cols) <= 128:
        lower, upper = _prefix_matrices(rows, cols)
        np.matmul(np.matmul(lower, diff), upper, out=out)
    else:
        np.cumsum(diff, axis=1, out=out)
        np.cumsum(out, axis=2, out=out)


def _greedy_chunk(lo_x, hi_x, lo_y, hi_y, row, min_count, rows: int,
                  cols: int) -> Tuple[np.ndarray, np.ndarray]:
    """The greedy loop of one chunk of canvases (``row``: each box's
    canvas in the chunk, non-decreasing), one pick per canvas per step.

    Each canvas keeps a 2-D difference array of its remaining boxes' run
    rectangles (+1 / -1 at the corners); integrating it along both axes
    gives the count grid, whose row-major first maximum is the step's
    pick (the extra last row and column integrate to 0). Counts are small
    integers, exact in float32.

    Returns:
        tuple: ``(picks, covered)``: ``(P, 5)`` int64 rows ``(canvas,
        step, ix, iy, boxes enclosed)`` in step order; ``(B,)`` bool.
    """
    num = len(min_count)
    width = cols + 1
    cell = (rows + 1) * width
    covered = np.zeros(len(row), bool)
    index, sign = _corners(lo_x, hi_x, lo_y, hi_y, row, rows, cols)
    diff = np.bincount(index, sign, minlength=num * cell).astype(
        np.float32).reshape(num, cell)
    counts = np.empty((num, rows + 1, width), np.float32)
    left = np.bincount(row, minlength=num)
    canvas = np.arange(num)  # the canvas of each row of diff
    box = np.arange(len(row))  # boxes still to cover, of those canvases
    box_row = row
    found = []
    step = 0
    while len(canvas):
        grid = counts[:len(canvas)]
        _integrate(diff.reshape(grid.shape), grid)
        grid = grid.reshape(len(canvas), cell)
        best = grid.argmax(axis=1)
        count = grid[np.arange(len(canvas)), best].astype(np.int64)
        picking = count >= min_count[canvas]
        by, bx = np.divmod(best, width)
        r = box_row
        hit = picking[r] & (lo_y[box] <= by[r]) & (by[r] < hi_y[box]) & \
            (lo_x[box] <= bx[r]) & (bx[r] < hi_x[box])
        hit_box = box[hit]
        hit_row = r[hit]  # non-decreasing; every picking row has a box
        if len(hit_row):
            starts = np.flatnonzero(np.r_[True, hit_row[1:] != hit_row[:-1]])
            picked = hit_row[starts]
            ix = (np.maximum.reduceat(lo_x[hit_box], starts) +
                  np.minimum.reduceat(hi_x[hit_box], starts) - 1) // 2
            iy = (np.maximum.reduceat(lo_y[hit_box], starts) +
                  np.minimum.reduceat(hi_y[hit_box], starts) - 1) // 2
            found.append(np.stack([canvas[picked],
                                   np.full(len(picked), step), ix, iy,
                                   count[picked]], axis=1))
            covered[hit_box] = True
            left[canvas[picked]] -= count[picked]
        # Canvases that picked and still hold min_count boxes go on,
        # without the picked boxes.
        keep = picking & (left[canvas] >= min_count[canvas])
        new_row = np.cumsum(keep) - 1
        if not keep.all():
            diff = diff[keep]
        on_hit = keep[hit_row]
        if on_hit.any():
            sub = hit_box[on_hit]
            index, sign = _corners(lo_x[sub], hi_x[sub], lo_y[sub],
                                   hi_y[sub], new_row[hit_row[on_hit]],
                                   rows, cols)
            np.subtract.at(diff.reshape(-1), index, sign)
        stay = keep[r] & ~hit
        box, box_row = box[stay], new_row[r[stay]]
        canvas = canvas[keep]
        step += 1
    if not found:
        return np.zeros((0, 5), np.int64), covered
    return np.concatenate(found), covered
