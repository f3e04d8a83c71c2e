# Copyright (c) mmsnip contributors. All rights reserved.
"""The greedy cover of many canvases at once against greedy_cover canvas by
canvas."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsnip.chips import cover_batch, greedy_cover
from mmsnip.chips.cover_batch import axis_runs, greedy_cover_runs
from mmsnip.chips.positive import axis_candidates

# (canvas h, canvas w, boxes: x, y, width, height as fractions)
canvases = st.lists(st.tuples(
    st.integers(60, 1500), st.integers(60, 1500),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1),
                       st.floats(0.001, 0.6), st.floats(0.001, 0.6)),
             max_size=40)), min_size=1, max_size=8)


def _boxes(h, w, raw):
    b = np.array([[x * w, y * h, x * w + bw * w, y * h + bh * h]
                  for x, y, bw, bh in raw]).reshape(-1, 4)
    return np.minimum(b, [w, h, w, h])


def _flat(cases):
    boxes = [_boxes(h, w, raw) for h, w, raw in cases]
    canvas = np.repeat(np.arange(len(cases)), [len(b) for b in boxes])
    sides = np.array([(h, w) for h, w, _ in cases]).reshape(-1, 2)
    return np.concatenate(boxes), canvas, sides[canvas]


@settings(max_examples=150, deadline=None)
@given(canvases, st.sampled_from([(256, 32), (128, 64), (512, 32)]),
       st.lists(st.integers(1, 6), min_size=8, max_size=8),
       st.booleans())
def test_greedy_cover_runs_equals_greedy_cover(cases, k_d, min_count,
                                               tiny_chunks):
    # Picks of every canvas (and their order), covered boxes; with tiny
    # chunks every canvas runs in a chunk of its own.
    k, d = k_d
    boxes, canvas, side = _flat(cases)
    runs = [axis_runs(boxes[:, a], boxes[:, a + 2], canvas, side[:, 1 - a],
                      k, d, off_grid=True) for a in (0, 1)]
    fits = (runs[0].first < runs[0].last) & (runs[1].first < runs[1].last)
    min_count = np.array(min_count[:len(cases)])
    chunk = 1 if tiny_chunks else cover_batch.CHUNK_CELLS
    with mock.patch.object(cover_batch, 'CHUNK_CELLS', chunk):
        picks, covered = greedy_cover_runs(
            runs[0].first[fits], runs[0].last[fits], runs[1].first[fits],
            runs[1].last[fits], canvas[fits], min_count)
    for c, (h, w, _) in enumerate(cases):
        mine = picks[:, 0] == c
        x1, y1 = (runs[a].starts(picks[mine, 1 + a], picks[mine, 0],
                                 np.full(mine.sum(), (w, h)[a]), k, d)
                  for a in (0, 1))
        got = np.stack([x1, y1, x1 + min(k, w), y1 + min(k, h)], axis=1)
        want, want_covered, coverable = greedy_cover(
            boxes[canvas == c], (h, w), k, d, min_count=int(min_count[c]))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(fits[canvas == c], coverable)
        got_covered = np.zeros(len(fits), bool)
        got_covered[np.flatnonzero(fits)] = covered
        np.testing.assert_array_equal(got_covered[canvas == c],
                                      want_covered)


@settings(max_examples=150, deadline=None)
@given(canvases, st.sampled_from([(256, 32), (128, 64), (100, 30)]),
       st.lists(st.sampled_from([0.0, 0.4, 1.0, 1.7]), min_size=40,
                max_size=40))
def test_axis_runs_equal_the_search_per_canvas(cases, k_d, near_chip):
    # Boxes between grid positions get off-grid starts; sides within a
    # pixel of the chip's make fractional ones.
    k, d = k_d
    boxes, canvas, side = _flat(cases)
    for a in (0, 1):
        length = side[:, 1 - a]
        lo, hi = boxes[:, a].copy(), boxes[:, a + 2].copy()
        extent = np.minimum(length, k)
        grow = np.resize(near_chip, len(lo))
        shift = grow > 0
        # a side of extent - grow: a box that barely fits
        lo[shift] = np.minimum(lo[shift], length[shift] - extent[shift])
        hi[shift] = lo[shift] + extent[shift] - grow[shift]
        got = axis_runs(lo, hi, canvas, length, k, d, off_grid=True)
        for c in range(len(cases)):
            mine = canvas == c
            if not mine.any():
                continue
            starts, _, first, last = axis_candidates(
                lo[mine], hi[mine], int(length[mine][0]), k, d, True)
            # canvases with a fractional start are searched, the others
            # counted in keys
            assert (c in got.searched) == (starts != np.floor(starts)).any()
            np.testing.assert_array_equal(got.first[mine], first)
            np.testing.assert_array_equal(got.last[mine], last)
            index = np.arange(len(starts))
            np.testing.assert_array_equal(
                got.starts(index, np.full(len(index), c),
                           np.full(len(index), length[mine][0]), k, d),
                starts)


def test_no_canvas_or_too_few_boxes_give_no_picks():
    picks, covered = greedy_cover_runs(
        np.array([0, 1]), np.array([2, 3]), np.array([0, 0]),
        np.array([1, 1]), np.array([1, 1]), np.array([1, 3, 1]))
    assert picks.shape == (0, 4) and not covered.any()
    picks, covered = greedy_cover_runs(*[np.zeros(0, np.int64)] * 5,
                                       np.array([1]))
    assert picks.shape == (0, 4) and covered.shape == (0, )


@pytest.mark.parametrize('shape', [(3, 2, 2), (5, 8, 8), (4, 31, 46),
                                   (2, 7, 50), (2, 129, 9), (1, 140, 130)])
def test_integrate_is_two_cumsums(shape):
    # Both ways (triangular products for moderate grids, cumsum else).
    diff = np.random.default_rng(0).integers(-3, 4, shape).astype(np.float32)
    out = np.empty_like(diff)
    cover_batch._integrate(diff, out)
    np.testing.assert_array_equal(out, diff.cumsum(1).cumsum(2))
