# Copyright (c) mmsnip contributors. All rights reserved.
"""The paper's chip rules, one hand-computed example each.

A reviewer's check of ``mmsnip/chips`` against the paper (Sec. 3.2-3.4)
and the released SNIPER code: every expected number below is worked out
by hand in the comment next to it, not read back from the code.
"""
import numpy as np
import pytest

from mmsnip.chips import (BACKGROUND, FOCUS, IGNORE, ChipConfig, ScaleSpec,
                          chip_ground_truth, chip_starts, focus_chips,
                          focus_pixel_labels, focus_stack_keep_mask,
                          generate_negative_chips, generate_positive_chips,
                          sample_negative_chips)


def _one_scale(valid_range=(0, None), factor=1.0, **negative):
    return ChipConfig.from_dict(dict(
        chip_size=512, chip_stride=32,
        scales=[dict(factor=factor, valid_range=valid_range)],
        negative=dict(negative)))


def _sorted(chips):
    chips = np.asarray(chips, np.float64).reshape(-1, 4)
    return chips[np.lexsort(chips.T[::-1])]


# ------------------------------------------------ rule 1: ranges and scales


def test_paper_coco_defaults():
    # Sec. 3.3.1 / 3.3.5 / 4.1: K = 512, d = 32; scales 512 / max(h, w),
    # 1.667, 3 paired with (120, inf), (32, 150), (0, 80).
    cfg = ChipConfig.paper_coco()
    assert (cfg.chip_size, cfg.chip_stride) == (512, 32)
    # a 640 x 480 image: 512 / 640 = 0.8
    factors = [f for f, _ in cfg.geometry(480, 640)]
    assert factors == pytest.approx([0.8, 1.667, 3.0])
    assert cfg.valid_ranges.tolist() == [[120, np.inf], [32, 150], [0, 80]]


def test_validity_is_strict_sqrt_area_in_original_pixels():
    # Sec. 3.2.1: valid iff s_i < size < e_i; size = sqrt(area) of the box
    # in ORIGINAL pixels (the released code sizes r['boxes'] unscaled).
    cfg = ChipConfig.paper_coco()
    sides = [32, 60, 80, 120, 121, 150]
    corners = [(0, 0), (100, 0), (200, 0), (300, 0), (0, 200), (200, 200)]
    boxes = [[x, y, x + s, y + s] for s, (x, y) in zip(sides, corners)]
    valid = generate_positive_chips(boxes, 480, 640, cfg).valid
    # rows: coarse (120, inf), middle (32, 150), fine (0, 80)
    assert valid.tolist() == [
        # 32     60     80     120    121    150
        [False, False, False, False, True, True],
        [False, True, True, True, True, False],
        # 60 px is 180 SCALED px at x3 and still valid there: ORIGINAL px
        [True, True, False, False, False, False],
    ]


def test_range_of_a_non_square_box_is_its_sqrt_area():
    # Sec. 3.2.1 "pixel area": a 200 x 20 box has size sqrt(4000) = 63.2,
    # valid in (0, 80) although its long side is 200.
    cfg = _one_scale((0, 80))
    assert generate_positive_chips([[0, 0, 200, 20]], 600, 600,
                                   cfg).valid.tolist() == [[True]]
    cfg = _one_scale((64, None))
    assert generate_positive_chips([[0, 0, 200, 20]], 600, 600,
                                   cfg).valid.tolist() == [[False]]


# ------------------------------------------------ rule 2: positive chips


def test_chip_grid_starts():
    # Sec. 3.3.1: starts every d = 32 px, plus the chip at the border:
    # 600 - 512 = 88.
    assert chip_starts(600, 512, 32).tolist() == [0, 32, 64, 88]
    assert chip_starts(512, 512, 32).tolist() == [0]


def test_greedy_cover_two_far_boxes_need_two_chips():
    # Algorithm 1 on a 600 x 600 canvas (factor 1): A = [10, 10, 50, 50]
    # fits only chips starting at 0 (s <= 10); B = [500, 500, 590, 590]
    # only those starting at 88 (s >= 590 - 512 = 78): two chips.
    cfg = _one_scale()
    res = generate_positive_chips([[10, 10, 50, 50], [500, 500, 590, 590]],
                                  600, 600, cfg)
    assert _sorted(res.chips.boxes).tolist() == [[0, 0, 512, 512],
                                                 [88, 88, 600, 600]]


def test_covered_means_fully_inside():
    # Sec. 3.3.2: "covered if it is completely enclosed inside a chip". A
    # = [10, 10, 50, 50] needs x start 0; C = [480, 10, 530, 50] needs x
    # start >= 18: no chip encloses both although [0, 0, 512, 512]
    # overlaps C, so a second chip is picked for C.
    cfg = _one_scale()
    res = generate_positive_chips([[10, 10, 50, 50], [480, 10, 530, 50]],
                                  600, 600, cfg)
    chips = res.chips.boxes
    assert len(chips) == 2
    for box in ([10, 10, 50, 50], [480, 10, 530, 50]):
        inside = ((chips[:, :2] <= box[:2]).all(1) &
                  (chips[:, 2:] >= box[2:]).all(1))
        assert inside.sum() == 1


def test_chips_are_clipped_at_the_image_border():
    # Sec. 3.3.1: chips lie in the canvas. A 400 x 300 canvas (<= K on
    # both sides) gets one chip spanning it, not a padded 512 x 512 one.
    cfg = _one_scale()
    res = generate_positive_chips([[10, 10, 50, 50]], 300, 400, cfg)
    assert res.chips.boxes.tolist() == [[0, 0, 400, 300]]
    # at factor 2 the canvas is 800 x 600: the chip is K x K SCALED px,
    # [0, 0, 256, 256] ORIGINAL.
    res = generate_positive_chips([[10, 10, 50, 50]], 300, 400,
                                  _one_scale(factor=2.0))
    assert res.chips.boxes_scaled.tolist() == [[0, 0, 512, 512]]
    assert res.chips.boxes.tolist() == [[0, 0, 256, 256]]


def test_chip_ground_truth_crops_and_keeps_invalid_boxes():
    # Sec. 3.3.2: boxes with IoU > 0 are cropped and retained, valid or
    # not; validity by the whole box. Chip [0, 0, 256, 256] ORIGINAL at
    # factor 2, range (0, 150) ORIGINAL.
    boxes = [
        [200, 50, 350, 100],  # partly inside: whole size sqrt(150 * 50)
        #                       = 86.6 -> valid; crop [200, 50, 256, 100]
        [100, 100, 300, 300],  # size 200 -> invalid, kept, cropped
        [256, 0, 300, 40],  # touches the right side: no overlap, left out
        [10, 10, 20, 20],  # fully inside, size 10 -> valid
    ]
    gt = chip_ground_truth([0, 0, 256, 256], 2.0, np.array(boxes, float),
                           (0, 150))
    assert gt.indices.tolist() == [0, 1, 3]
    # CHIP pixels = (ORIGINAL - chip origin) * 2
    assert gt.boxes.tolist() == [[400, 100, 512, 200], [200, 200, 512, 512],
                                 [20, 20, 40, 40]]
    assert gt.valid.tolist() == [True, False, True]
    assert gt.covered.tolist() == [False, False, True]
    # a box valid by its whole size stays valid however little is inside:
    # [250, 0, 330, 80] is size 80 (valid), 6 px wide in the chip
    gt = chip_ground_truth([0, 0, 256, 256], 2.0,
                           np.array([[250, 0, 330, 80]], float), (0, 150))
    assert gt.valid.tolist() == [True]


# ------------------------------------------------ rule 3: negative chips


def _negatives(proposals, **negative):
    cfg = _one_scale((0, 100), **negative)
    # one positive chip [0, 0, 512, 512] for the box [10, 10, 50, 50]
    positive = generate_positive_chips([[10, 10, 50, 50]], 1000, 1000,
                                       cfg).chips
    assert positive.boxes.tolist() == [[0, 0, 512, 512]]
    return generate_negative_chips(np.array(proposals, float), 1000, 1000,
                                   cfg, positive)


# three 40 px proposals inside the positive chip, three in a cluster
# far from it, and one 200 px proposal around the cluster
COVERED = [[100, 100, 140, 140], [160, 100, 200, 140], [100, 160, 140, 200]]
CLUSTER = [[700, 700, 740, 740], [760, 700, 800, 740], [700, 760, 740, 800]]
LARGE = [[650, 650, 850, 850]]


def test_negatives_drop_proposals_covered_by_positive_chips():
    # Sec. 3.3.3: "remove all the proposals covered in C_pos": with M = 3
    # the three covered proposals give no chip, the cluster gives one.
    neg = _negatives(COVERED + CLUSTER, min_proposals=3)
    assert len(neg) == 1
    chip = neg.boxes[0]
    assert (chip[:2] <= 700).all() and (chip[2:] >= 800).all()
    assert not neg.is_positive.any()


def test_negatives_need_at_least_m_proposals_in_range():
    # Sec. 3.3.3: chips "that cover at least M proposals in R_i". The
    # cluster holds 3 proposals in (0, 100) and the 200 px one out of it.
    assert len(_negatives(CLUSTER + LARGE, min_proposals=3)) == 1
    assert len(_negatives(CLUSTER + LARGE, min_proposals=4)) == 0
    # without the range filter the 200 px proposal counts: 4 in one chip
    assert len(_negatives(CLUSTER + LARGE, min_proposals=4,
                          filter_range=False)) == 1


def test_negatives_top_n_proposals_by_score():
    # released code: 300 proposals per scale; here max_proposals = 3 keeps
    # the 3 best-scoring rows, the three covered ones: no negative chip.
    rows = [p + [0.9] for p in COVERED] + [p + [0.1] for p in CLUSTER]
    assert len(_negatives(rows, min_proposals=3, max_proposals=3)) == 0
    assert len(_negatives(rows, min_proposals=3, max_proposals=6)) == 1


def test_negative_sampling_per_image_and_epoch():
    # Sec. 3.3.3: a fixed number per image per epoch, drawn from the pool
    # (2 in the released code); the whole pool when it is smaller.
    drawn = sample_negative_chips(5, 2, seed=0, epoch=0, image_key=7)
    assert len(drawn) == 2 and len(set(np.asarray(drawn).tolist())) == 2
    assert set(np.asarray(drawn).tolist()) <= set(range(5))
    assert sorted(np.asarray(
        sample_negative_chips(1, 2, seed=0, epoch=0,
                              image_key=7)).tolist()) == [0]


# ------------------------------------------------ rule 5: AutoFocus


def test_focus_pixel_labels_hand_map():
    # Sec. 3.4.1 on a 40 x 40 chip, s = 16: a ceil(40 / 16) = 3 x 3 map.
    boxes = [
        [0, 0, 20, 20],  # size 20: FOCUS on cells x, y in {0, 1}
        [33, 33, 40, 40],  # size 7: FOCUS on cell (2, 2)
        [17, 33, 20, 36],  # size 3 <= a = 5: IGNORE on cell (row 2, col 1)
    ]
    labels = focus_pixel_labels(np.array(boxes, float), (40, 40), 16)
    assert labels.tolist() == [[FOCUS, FOCUS, BACKGROUND],
                               [FOCUS, FOCUS, BACKGROUND],
                               [BACKGROUND, IGNORE, FOCUS]]


def test_focus_pixel_labels_size_bands():
    # Sec. 3.4.1: a = 5, b = 64, c = 90 CHIP px; one 100 x 100 chip box
    # per size, all over a 1 x 1 map (s = 128): what the cell becomes.
    def label(side):
        return int(focus_pixel_labels(np.array([[0, 0, side, side]], float),
                                      (128, 128), 128)[0, 0])
    assert [label(s) for s in (4, 5, 6, 63, 64, 70, 89, 90, 100)] == [
        IGNORE, IGNORE, FOCUS, FOCUS, IGNORE, IGNORE, IGNORE, BACKGROUND,
        BACKGROUND]


def test_focus_chips_algorithm_2_by_hand():
    # Algorithm 2 on an 8 x 8 map, s = 16 (a 128 x 128 canvas).
    prob = np.zeros((8, 8), np.float32)
    prob[2, 2] = 0.9
    # t = 0.5, d = 3: cells 1..3 -> [16, 16, 64, 64]; k = 0
    chips, _ = focus_chips(prob, 0.5, 3, 0, 16)
    assert chips.tolist() == [[16, 16, 64, 64]]
    # k = 64: grown around the centre 40 -> [8, 8, 72, 72]
    chips, _ = focus_chips(prob, 0.5, 3, 64, 16)
    assert chips.tolist() == [[8, 8, 72, 72]]
    # "greater than t": 0.9 is not > 0.9 (the released code: >=)
    assert len(focus_chips(prob, 0.9, 3, 0, 16)[0]) == 0
    assert len(focus_chips(prob, 0.9, 3, 0, 16, inclusive=True)[0]) == 1
    # two cells (1, 1), (1, 5): dilated to columns 0..2 and 4..6, apart
    prob = np.zeros((8, 8), np.float32)
    prob[1, 1] = prob[1, 5] = 0.9
    chips, orig = focus_chips(prob, 0.5, 3, 0, 16, factor=2.0)
    assert chips.tolist() == [[0, 0, 48, 48], [64, 0, 112, 48]]
    assert orig.tolist() == [[0, 0, 24, 24], [32, 0, 56, 24]]
    # k = 80: [0, 0, 80, 80] and [48, 0, 128, 80] overlap -> merged
    chips, _ = focus_chips(prob, 0.5, 3, 80, 16)
    assert chips.tolist() == [[0, 0, 128, 80]]


def test_focus_stacking_border_and_range_by_hand():
    # Sec. 3.4.3: chip [100, 0, 300, 200] of a 1000 x 1000 image; its top
    # side is the image border, the other three are inner sides.
    chip = [100, 0, 300, 200]
    dets = np.array([
        [150, 50, 200, 100],  # inside, size 50: kept
        [100, 50, 150, 100],  # touches the inner left side: dropped
        [150, 0, 200, 50],  # touches the top = image border: kept
        [150, 150, 200, 200],  # touches the inner bottom side: dropped
        [150, 50, 152, 52],  # size 2, out of range (5, 100): dropped
    ], float)
    keep = focus_stack_keep_mask(dets, chip, (1000, 1000), (5, 100))
    assert keep.tolist() == [True, False, True, False, False]
    # the released code's 10 px tolerance also drops a detection 5 px
    # from an inner side
    near = np.array([[105, 50, 150, 100]], float)
    assert focus_stack_keep_mask(near, chip, (1000, 1000), (5, 100)).all()
    assert not focus_stack_keep_mask(near, chip, (1000, 1000), (5, 100),
                                     border_tol=10).any()


def test_scale_spec_range_in_scaled_pixels():
    # Sec. 3.2: the range (32, 150) ORIGINAL at factor 3 is (96, 450) in
    # SCALED = CHIP pixels, what the RCNN proposal filter compares with.
    spec = ScaleSpec(factor=3.0, valid_range=(32, 150))
    assert spec.valid_range_scaled(3.0) == (96.0, 450.0)


def test_stacking_tolerance_does_not_move_the_image_border():
    # Sec. 3.4.3: only a chip side ON the image border spares a detection
    # touching it. With border_tol = 10 (the released code's delta) the
    # chip [5, 200, 300, 400] of a 1000 x 1000 image has an inner left
    # side at x = 5: a detection starting there may be a cropped object
    # reaching x = 0, and is dropped (the released check_valid: cx1 = 5 >=
    # 0.5 and |dx1 - cx1| < 10). The tolerance widens "touching", not the
    # image border.
    dets = np.array([[5, 250, 100, 300], [12, 250, 100, 300],
                     [20, 250, 100, 300]], float)
    keep = focus_stack_keep_mask(dets, [5, 200, 300, 400], (1000, 1000),
                                 (0, 1000), border_tol=10)
    assert keep.tolist() == [False, False, True]
    # the same detections in a chip that does start at the image border
    keep = focus_stack_keep_mask(dets, [0, 200, 300, 400], (1000, 1000),
                                 (0, 1000), border_tol=10)
    assert keep.tolist() == [True, True, True]
    # right / bottom: a chip ending 4 px before the image's right side
    keep = focus_stack_keep_mask(np.array([[900, 250, 996, 300]], float),
                                 [700, 200, 996, 400], (1000, 1000),
                                 (0, 1000), border_tol=10)
    assert keep.tolist() == [False]


def test_training_table_paths_follow_the_same_hand_examples():
    # The chip table builds chips with the batched functions: the hand
    # examples above through them (two images in one batch).
    from mmsnip.chips.negative import negative_chips_batch
    from mmsnip.chips.positive import positive_chips_batch
    boxes = np.array([[10, 10, 50, 50], [500, 500, 590, 590],
                      [10, 10, 50, 50]], float)
    chips, counts = positive_chips_batch(boxes, [0, 2, 3], [600, 300],
                                         [600, 400], _one_scale())
    assert counts.tolist() == [2, 1]
    assert _sorted(chips.boxes[:2]).tolist() == [[0, 0, 512, 512],
                                                 [88, 88, 600, 600]]
    assert chips.boxes[2].tolist() == [0, 0, 400, 300]
    # negatives: image 0 holds the cluster and the 200 px proposal, image
    # 1 the three proposals its positive chip covers; range (0, 100)
    for m, filter_range, expected in ((3, True, [1, 0]), (4, True, [0, 0]),
                                      (4, False, [1, 0])):
        cfg = _one_scale((0, 100), min_proposals=m,
                         filter_range=filter_range)
        pos, pos_counts = positive_chips_batch(
            np.array([[10, 10, 50, 50]] * 2, float), [0, 1, 2],
            [1000, 1000], [1000, 1000], cfg)
        rows = np.array([p + [1.0] for p in CLUSTER + LARGE + COVERED])
        _, neg_counts = negative_chips_batch(
            rows, np.array([0, 4, 7]), np.array([1000, 1000]),
            np.array([1000, 1000]), cfg, pos,
            np.concatenate([[0], np.cumsum(pos_counts)]))
        assert neg_counts.tolist() == expected, (m, filter_range)


def test_pooled_proposals_follow_the_same_negative_example():
    # Proposals shared by all scales (a pooled file): two scales, factor 1
    # with range (0, 100) and factor 0.5 with range (100, inf). At the
    # first the cluster counts (3 in range), at the second only the 200 px
    # proposal: with M = 3 a chip at the first scale only.
    from mmsnip.chips.negative import negative_chips_batch
    from mmsnip.chips.positive import positive_chips_batch
    cfg = ChipConfig.from_dict(dict(
        chip_size=512, chip_stride=32,
        scales=[dict(factor=1.0, valid_range=(0, 100)),
                dict(factor=0.5, valid_range=(100, None))],
        negative=dict(min_proposals=3)))
    pos, pos_counts = positive_chips_batch(
        np.array([[10, 10, 50, 50]], float), [0, 1], [1000], [1000], cfg)
    rows = np.array([p + [1.0] for p in CLUSTER + LARGE + COVERED])
    chips, counts = negative_chips_batch(
        rows, np.array([0, 7]), np.array([1000]), np.array([1000]), cfg,
        pos, np.array([0, len(pos)]), shared_scales=True)
    assert counts.tolist() == [1]
    assert chips.scale_index.tolist() == [0]
    single = generate_negative_chips(rows, 1000, 1000, cfg, pos)
    assert single.boxes.tolist() == chips.boxes.tolist()
