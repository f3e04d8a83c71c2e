# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmsnip.chips import (BACKGROUND, FOCUS, IGNORE, boxes_overlap,
                          focus_chips, focus_pixel_labels,
                          focus_stack_keep_mask, grow_to_min_size,
                          inside_matrix, merge_overlapping, oracle_focus_chips)


def test_constants():
    assert (IGNORE, BACKGROUND, FOCUS) == (-1, 0, 1)


def test_paper_defaults():
    from mmsnip.chips import focus
    # Sec. 3.4.1: a, b, c = 5, 64, 90; Sec. 4.4.1: d = 3; the original
    # code's k = 256 after the coarsest scale; t = 0.5; stride 16
    assert focus.PAPER_LABEL_SIZES == (5.0, 64.0, 90.0)
    assert (focus.PAPER_STRIDE, focus.PAPER_THRESHOLD, focus.PAPER_DILATION,
            focus.PAPER_MIN_SIZE) == (16, 0.5, 3, 256.0)


def test_focus_pixel_labels_rules():
    boxes = np.array([
        [0, 0, 20, 20],      # 20 px: FOCUS
        [64, 0, 67, 3],      # 3 px: IGNORE (< a)
        [0, 32, 70, 102],    # 70 px: IGNORE (b < size < c)
        [64, 32, 164, 132],  # 100 px: BACKGROUND (>= c)
    ], float)
    labels = focus_pixel_labels(boxes, (128, 192), stride=16)
    assert labels.shape == (8, 12) and labels.dtype == np.int8
    # the 20 px box covers cells 0 and 1 (it ends inside cell 1)
    assert (labels[:2, :2] == FOCUS).all() and labels[2, 2] == IGNORE
    assert labels[0, 4] == IGNORE and labels[0, 5] == BACKGROUND
    assert labels[2, 0] == IGNORE and labels[6, 4] == IGNORE
    assert labels[6, 8] == BACKGROUND
    assert labels[7, 11] == BACKGROUND


def test_focus_wins_and_boundary_sizes():
    boxes = np.array([[0, 0, 70, 70], [0, 0, 30, 30], [100, 0, 105, 5]],
                     float)
    labels = focus_pixel_labels(boxes, (80, 128), stride=16)
    assert (labels[:2, :2] == FOCUS).all()  # 1 wins over the 70 px ignore
    assert labels[3, 3] == IGNORE
    assert labels[0, 6] == IGNORE  # exactly a = 5: the paper's "<= 5x5"
    strict = focus_pixel_labels(boxes, (80, 128), stride=16,
                                boundary_ignore=False)
    assert strict[0, 6] == BACKGROUND
    changed = strict != labels
    assert changed.sum() == 1 and changed[0, 6]
    # size: (paper text, default), (boundary_ignore=False: earlier rule)
    for size, label, old in ((5, IGNORE, BACKGROUND), (64, IGNORE, BACKGROUND),
                             (90, BACKGROUND, BACKGROUND),
                             (4.99, IGNORE, IGNORE), (5.01, FOCUS, FOCUS),
                             (63.9, FOCUS, FOCUS), (64.1, IGNORE, IGNORE),
                             (89.9, IGNORE, IGNORE), (90.1, BACKGROUND,
                                                      BACKGROUND)):
        box = [[0, 0, size, size]]
        out = focus_pixel_labels(box, (96, 96), stride=16)
        assert out[0, 0] == label, size
        out = focus_pixel_labels(box, (96, 96), stride=16,
                                 boundary_ignore=False)
        assert out[0, 0] == old, size
    # A 5 px box and a 20 px box on the same cell: FOCUS still wins.
    out = focus_pixel_labels([[0, 0, 5, 5], [0, 0, 20, 20]], (32, 32),
                             stride=16)
    assert out[0, 0] == FOCUS
    with pytest.raises(ValueError, match='a < b <= c'):
        focus_pixel_labels(boxes, (80, 128), a=10, b=5)
    with pytest.raises(ValueError, match='stride > 0'):
        focus_pixel_labels(boxes, (0, 128))


def test_focus_labels_on_a_stride_1_map():
    # Sec. 3.4.1 at s = 1: a 2 px box (<= a = 5) ignores its 2 x 2 cells
    labels = focus_pixel_labels([[0, 0, 2, 2]], (3, 4), stride=1)
    np.testing.assert_array_equal(labels, [[-1, -1, 0, 0],
                                           [-1, -1, 0, 0],
                                           [0, 0, 0, 0]])


def test_focus_labels_cells_edges_and_degenerate_boxes():
    # A box ending exactly on a cell border does not touch the next cell;
    # partial last cells; boxes beyond the chip are clipped to the grid.
    labels = focus_pixel_labels([[16, 16, 32, 32], [40, 40, 60, 60]],
                                (50, 50), stride=16)
    assert labels.shape == (4, 4)
    expected = np.zeros((4, 4), np.int8)
    expected[1, 1] = FOCUS
    expected[2:4, 2:4] = FOCUS
    np.testing.assert_array_equal(labels, expected)
    # zero-area and NaN boxes label nothing (not even IGNORE)
    labels = focus_pixel_labels([[8, 8, 8, 40], [np.nan, 0, 4, 4]], (64, 64))
    assert (labels == BACKGROUND).all()
    assert focus_pixel_labels(np.zeros((0, 4)), (33, 17)).shape == (3, 2)


def _reference_labels(boxes, hw, s, a, b, c, boundary_ignore=True):
    """Per-cell loops: the paper's definition, written plainly (sizes
    exactly ``a`` or ``b`` ignored; with ``boundary_ignore=False``,
    background)."""
    rows, cols = -(-hw[0] // s), -(-hw[1] // s)
    out = np.zeros((rows, cols), np.int8)
    for i in range(rows):
        for j in range(cols):
            cell = (j * s, i * s, (j + 1) * s, (i + 1) * s)
            for x1, y1, x2, y2 in boxes:
                iw = min(x2, cell[2]) - max(x1, cell[0])
                ih = min(y2, cell[3]) - max(y1, cell[1])
                size = np.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0))
                if iw <= 0 or ih <= 0 or size == 0:
                    continue
                if a < size < b:
                    out[i, j] = FOCUS
                elif boundary_ignore and (size <= a or b <= size < c) or \
                        not boundary_ignore and (size < a or b < size < c):
                    if out[i, j] != FOCUS:
                        out[i, j] = IGNORE
    return out


@settings(max_examples=100, deadline=None)
@example([(0.0, 0.0, 1.0, 5e-324)], (128, 128), 8)  # sub-normal height
@example([(-5e-324, 0.0, 5e-324, 1.0)], (128, 128), 8)  # left of the grid
# sizes exactly a = 5 and b = 40
@example([(0.0, 0.0, 5.0, 5.0), (60.0, 0.0, 40.0, 40.0)], (128, 128), 8)
@given(st.lists(st.tuples(st.floats(-20, 130), st.floats(-20, 130),
                          st.floats(0, 110), st.floats(0, 110)),
                max_size=12),
       st.sampled_from([(128, 128), (100, 60), (17, 129)]),
       st.sampled_from([8, 16]))
def test_focus_labels_match_the_definition(raw, hw, stride):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in raw]).reshape(
        -1, 4)
    for boundary_ignore in (True, False):
        np.testing.assert_array_equal(
            focus_pixel_labels(boxes, hw, stride, 5, 40, 60,
                               boundary_ignore=boundary_ignore),
            _reference_labels(boxes, hw, stride, 5, 40, 60,
                              boundary_ignore=boundary_ignore))


def test_focus_chips_two_blobs_far_apart_and_merged_when_close():
    prob = np.zeros((40, 40), np.float32)
    prob[2, 2] = prob[35, 35] = 0.9
    chips, orig = focus_chips(prob, 0.5, 3, 64, 16, (640, 640), factor=2.0)
    # cells 1-3 after dilation -> [16, 64] grown to 64 around its centre
    np.testing.assert_array_equal(chips, [[8, 8, 72, 72],
                                          [536, 536, 600, 600]])
    np.testing.assert_allclose(orig, chips / 2)
    prob[2, 6] = 0.9  # cells 5-7 -> [72, 136]: touches [8, 72], apart
    assert len(focus_chips(prob, 0.5, 3, 64, 16, (640, 640))[0]) == 3
    prob[2, 5] = 0.9  # dilation joins the blobs: one component, cells 1-7
    chips, _ = focus_chips(prob, 0.5, 3, 64, 16, (640, 640))
    np.testing.assert_array_equal(chips, [[16, 8, 128, 72],
                                          [536, 536, 600, 600]])


def test_focus_chips_merge_overlapping_grown_chips():
    prob = np.zeros((40, 40), np.float32)
    prob[10, 10] = prob[10, 14] = 0.9  # 4 cells apart: two components
    chips, _ = focus_chips(prob, 0.5, 1, 128, 16, (640, 640))
    # grown to 128 around 168 and 232: [104, 232] and [168, 296] overlap
    np.testing.assert_array_equal(chips, [[104, 104, 296, 232]])


def test_focus_chips_threshold_semantics_and_min_size_at_borders():
    prob = np.full((4, 4), 0.5, np.float32)
    assert len(focus_chips(prob, 0.5, 1, 64, 16, (64, 64))[0]) == 0
    chips, _ = focus_chips(prob, 0.5, 1, 16, 16, (64, 64), inclusive=True)
    np.testing.assert_array_equal(chips, [[0, 0, 64, 64]])
    prob[0, 0] = 0.6
    # canvas (64 x 100) smaller than k = 128: the chip spans the canvas
    chips, _ = focus_chips(prob, 0.5, 1, 128, 16, (64, 100))
    np.testing.assert_array_equal(chips, [[0, 0, 100, 64]])
    # at the border, grown chips are shifted inward and keep k
    prob = np.zeros((40, 40), np.float32)
    prob[0, 39] = 1
    chips, _ = focus_chips(prob, 0.5, 1, 96, 16, (640, 640))
    np.testing.assert_array_equal(chips, [[544, 0, 640, 96]])
    # a canvas not a multiple of the stride clips the last cells
    chips, _ = focus_chips(prob, 0.5, 1, 0, 16, (630, 630))
    np.testing.assert_array_equal(chips, [[624, 0, 630, 16]])
    chips, _ = focus_chips(prob, 0.5, 1, 8, 16, (630, 630))
    np.testing.assert_array_equal(chips, [[622, 0, 630, 16]])


def test_focus_chips_empty_and_bad_input():
    empty, orig = focus_chips(np.zeros((5, 5)), 0.5, 3, 64, 16)
    assert empty.shape == (0, 4) and orig.shape == (0, 4)
    assert focus_chips(np.zeros((0, 0)), 0.5, 3, 64, 16)[0].shape == (0, 4)
    with pytest.raises(ValueError, match='2-D'):
        focus_chips(np.zeros(5), 0.5, 3, 64, 16)
    with pytest.raises(ValueError, match='dilation >= 1'):
        focus_chips(np.zeros((5, 5)), 0.5, 0, 64, 16)
    for kw in (dict(stride=0), dict(factor=0.0), dict(min_size=-1)):
        with pytest.raises(ValueError, match='dilation >= 1'):
            focus_chips(np.zeros((5, 5)), **kw)
    # a stride-1 map: cells are pixels
    prob = np.zeros((4, 4), np.float32)
    prob[1, 2] = 1
    chips, _ = focus_chips(prob, 0.5, 1, 0, stride=1)
    np.testing.assert_array_equal(chips, [[2, 1, 3, 2]])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1, 2, 3, 5]),
       st.sampled_from([0, 32, 100, 300]))
def test_focus_chips_cover_focus_pixels_and_never_overlap(seed, d, k):
    rng = np.random.default_rng(seed)
    prob = (rng.random((24, 31)) ** 6).astype(np.float32)
    canvas = (24 * 16 - 5, 31 * 16 - 9)
    chips, _ = focus_chips(prob, 0.5, d, k, 16, canvas)
    adj = boxes_overlap(chips, chips)
    np.fill_diagonal(adj, False)
    assert not adj.any()
    assert (chips[:, :2] >= 0).all() and (chips[:, 2] <= canvas[1]).all() \
        and (chips[:, 3] <= canvas[0]).all()
    sides = chips[:, 2:] - chips[:, :2]
    assert (sides >= np.minimum(k, canvas[::-1]) - 1e-9).all()
    ys, xs = np.nonzero(prob > 0.5)
    cells = np.minimum(np.c_[xs, ys, xs + 1, ys + 1] * 16.0,
                       [canvas[1], canvas[0]] * 2)
    assert inside_matrix(cells, chips).any(0).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 900), st.floats(0, 900),
                          st.floats(1, 200), st.floats(1, 200)),
                max_size=30))
def test_merged_chips_never_overlap_and_cover_inputs(raw):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in raw]).reshape(
        -1, 4)
    merged = merge_overlapping(boxes)
    adj = boxes_overlap(merged, merged)
    np.fill_diagonal(adj, False)
    assert not adj.any()
    if len(boxes):
        assert inside_matrix(boxes, merged).any(0).all()


def test_grow_to_min_size():
    boxes = np.array([[10, 10, 20, 20], [0, 0, 300, 50], [590, 90, 600, 100]],
                     float)
    out = grow_to_min_size(boxes, 64, (100, 600))
    np.testing.assert_array_equal(out, [[0, 0, 64, 64], [0, 0, 300, 64],
                                        [536, 36, 600, 100]])


def test_oracle_focus_chips_from_ground_truth():
    gt = np.array([[100, 100, 110, 110], [900, 700, 915, 712],
                   [0, 0, 400, 400]], float)
    chips, orig = oracle_focus_chips(gt, 800, 1000, factor=1.0,
                                     min_size=128)
    assert len(chips) == 2  # the 400 px object is background
    assert inside_matrix(gt[:2], orig).any(0).all()
    # at factor 8 the 10 px object is 80 px: ignored, not a FocusPixel
    chips, orig = oracle_focus_chips(gt[:1], 800, 1000, factor=8.0,
                                     min_size=128)
    assert len(chips) == 0
    # factor 0.5: 5 px objects are exactly a: background
    chips, orig = oracle_focus_chips(gt[:1], 800, 1000, factor=0.5)
    assert len(chips) == 0
    chips, orig = oracle_focus_chips(gt[1:2], 800, 1000, factor=2.0,
                                     min_size=128)
    np.testing.assert_allclose(orig, chips / 2)
    assert inside_matrix(gt[1:2], orig).all()


# -- focus stacking (Sec. 3.4.3) ---------------------------------------------
IMG = (1000, 1000)
INNER = np.array([200, 200, 400, 400], float)


@pytest.mark.parametrize('det, keep', [
    ([250, 250, 300, 300], True),    # inside
    ([200, 250, 250, 300], False),   # touches the inner left side
    ([250, 200, 300, 250], False),   # ... top
    ([350, 250, 400, 300], False),   # ... right
    ([250, 350, 300, 400], False),   # ... bottom
    ([200, 200, 400, 400], False),   # fills the chip
    ([190, 250, 250, 300], False),   # crosses the left side
    ([250, 250, 252, 252], False),   # 2 px: outside the range (5, 100)
])
def test_focus_stack_inner_chip(det, keep):
    assert focus_stack_keep_mask([det], INNER, IMG, (5, 100))[0] == keep


@pytest.mark.parametrize('chip, det, keep', [
    # chip on the image's left border: touching that side is fine if the
    # other sides are inside; touching the inner right side is not
    ([0, 200, 200, 400], [0, 250, 50, 300], True),
    ([0, 200, 200, 400], [0, 250, 200, 300], False),
    # top, right, bottom borders, each on its own
    ([200, 0, 400, 200], [250, 0, 300, 50], True),
    ([200, 0, 400, 200], [250, 0, 300, 200], False),
    ([800, 200, 1000, 400], [950, 250, 1000, 300], True),
    ([800, 200, 1000, 400], [800, 250, 1000, 300], False),
    ([200, 800, 400, 1000], [250, 950, 300, 1000], True),
    ([200, 800, 400, 1000], [250, 950, 300, 1000.5], True),
    ([200, 800, 400, 1000], [200, 950, 300, 1000], False),
    # corner chip: a detection in the corner touches two image sides
    ([0, 0, 200, 200], [0, 0, 50, 50], True),
    ([0, 0, 200, 200], [0, 0, 50, 200], False),
    # the chip spans the image's width: a detection spanning it is kept
    ([0, 200, 1000, 400], [0, 250, 1000, 300], True),
    ([0, 200, 1000, 400], [0, 250, 1000, 400], False),
    # the chip is the image: everything in range is kept
    ([0, 0, 1000, 1000], [0, 0, 1000, 1000], True),
])
def test_focus_stack_image_border_corner_cases(chip, det, keep):
    assert focus_stack_keep_mask([det], chip, IMG, (0, 2000))[0] == keep


def test_focus_stack_tolerance_and_shapes():
    dets = np.array([[203, 250, 250, 300], [250, 250, 300, 300]], float)
    np.testing.assert_array_equal(
        focus_stack_keep_mask(dets, INNER, IMG, (0, 1000)), [True, True])
    np.testing.assert_array_equal(
        focus_stack_keep_mask(dets, INNER, IMG, (0, 1000), border_tol=5),
        [False, True])
    # projected coordinates carry rounding: 1e-9 off still touches
    assert not focus_stack_keep_mask([[200 + 1e-9, 250, 250, 300]], INNER,
                                     IMG, (0, 1000))[0]
    assert focus_stack_keep_mask(np.zeros((0, 4)), INNER, IMG,
                                 (0, 10)).shape == (0,)
    with pytest.raises(ValueError, match='border_tol'):
        focus_stack_keep_mask(dets, INNER, IMG, (0, 10), border_tol=-1)


def test_labels_from_whole_box_sizes():
    """A box cut by the chip border: 10 x 100 px inside the chip (size 31.6,
    a FocusPixel by itself) of a 100 x 100 px object (size 100 >= c: large,
    background), as in the paper's labels from the re-scaled box."""
    from mmsnip.chips import focus_pixel_labels
    clipped = np.array([[0, 0, 10, 100]], float)
    by_extent = focus_pixel_labels(clipped, (128, 128), 16)
    assert (by_extent[:7, 0] == 1).all() and (by_extent[:, 1:] == 0).all()
    by_whole = focus_pixel_labels(clipped, (128, 128), 16, sizes=[100.0])
    assert (by_whole == 0).all()
    # a whole size in (b, c) ignores the same cells; NaN sizes are skipped
    mid = focus_pixel_labels(clipped, (128, 128), 16, sizes=[70.0])
    assert (mid[:7, 0] == -1).all() and (mid[:, 1:] == 0).all()
    assert (focus_pixel_labels(clipped, (128, 128), 16,
                               sizes=[np.nan]) == 0).all()
    with pytest.raises(ValueError, match='2 sizes for 1 boxes'):
        focus_pixel_labels(clipped, (128, 128), 16, sizes=[1.0, 2.0])


def test_merged_chips_are_sorted_by_y1_then_x1():
    boxes = np.array([[0, 50, 10, 60], [20, 0, 30, 10], [0, 0, 10, 10]])
    np.testing.assert_array_equal(merge_overlapping(boxes), [
        [0, 0, 10, 10], [20, 0, 30, 10], [0, 50, 10, 60]])


def test_default_canvas_of_a_wide_map_is_its_own_shape():
    # Algorithm 2 on a 2 x 4 map, s = 16: canvas (32, 64). The blob cell
    # [48, 16, 64, 32] grown to k = 48 is clipped to the 32 px height.
    prob = np.zeros((2, 4), np.float32)
    prob[1, 3] = 1
    chips, _ = focus_chips(prob, 0.5, 1, 48, 16)
    np.testing.assert_array_equal(chips, [[16, 0, 64, 32]])


def test_stacking_is_exact_at_inner_sides_by_default():
    # Sec. 3.4.3 (border_tol 0): 0.05 px short of the inner right side of
    # chip [100, 0, 300, 200] is not touching it: kept
    det = [[150, 50, 299.95, 100]]
    chip = [100, 0, 300, 200]
    assert focus_stack_keep_mask(det, chip, (1000, 1000),
                                 (0, np.inf)).tolist() == [True]
    assert focus_stack_keep_mask(det, chip, (1000, 1000), (0, np.inf),
                                 border_tol=0.1).tolist() == [False]


@pytest.mark.parametrize('h, w, factor', [(0, 10, 1.0), (10, -1, 1.0),
                                          (10, 10, 0.0)])
def test_oracle_refuses_a_bad_image_size_or_factor(h, w, factor):
    with pytest.raises(ValueError, match='positive image size and factor'):
        oracle_focus_chips(np.zeros((0, 4)), h, w, factor)


def test_oracle_of_a_one_pixel_image():
    chips, _ = oracle_focus_chips(np.zeros((0, 4)), 1, 1, 1.0)
    assert chips.shape == (0, 4)
    # a 10 px image at factor 0.04: its canvas is 1 x 1 px (round(0.4)
    # = 0, at least 1), so its FocusChip (a = 0) is that pixel
    chips, orig = oracle_focus_chips([[0, 0, 10, 10]], 10, 10, 0.04, a=0)
    np.testing.assert_array_equal(chips, [[0, 0, 1, 1]])
    np.testing.assert_allclose(orig, [[0, 0, 25, 25]])


@pytest.mark.parametrize('chip_hw', [(0, 10), (10, 0)])
def test_focus_labels_refuse_an_empty_chip(chip_hw):
    with pytest.raises(ValueError, match='positive chip size'):
        focus_pixel_labels(np.zeros((0, 4)), chip_hw)
