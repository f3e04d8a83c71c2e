# Copyright (c) mmsnip contributors. All rights reserved.
"""merge_detections: NMS, soft-NMS, box voting, masks, config errors."""
import math

import pytest
import torch

from mmsnip.models import BoxVoting, MergeConfig, merge_detections
from mmsnip.models.test_time_augs.merge import MaskPaster, gather_rows

NMS = dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)


def _t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def _merge(boxes, scores, labels, cfg, masks=None):
    """One part per box, so that parts are exercised too."""
    return merge_detections([_t([b]) for b in boxes],
                            [_t([s]) for s in scores],
                            [_t([lb], torch.long) for lb in labels], cfg,
                            masks=masks)


# IoU([0, 0, 10, 10], [0, 5, 10, 15]) = 50 / 150 = 1/3
A, B = [0, 0, 10, 10], [0, 5, 10, 15]
# IoU([0, 0, 10, 10], [0, 0, 10, 12]) = 100 / 120 = 0.833
C = [0, 0, 10, 12]


def test_nms_keeps_the_best_of_two_overlapping_boxes():
    out = _merge([A, C], [0.6, 0.9], [0, 0], NMS)
    assert out.bboxes.tolist() == [C]
    assert out.scores.tolist() == pytest.approx([0.9])
    # IoU 1/3 < 0.5: both stay, sorted by score
    out = _merge([A, B], [0.6, 0.9], [0, 0], NMS)
    assert out.bboxes.tolist() == [B, A]
    assert 'masks' not in out


def test_class_wise_and_class_agnostic():
    out = _merge([A, C], [0.9, 0.6], [0, 1], NMS)
    assert len(out) == 2 and out.labels.tolist() == [0, 1]
    agnostic = _merge([A, C], [0.9, 0.6], [0, 1], dict(NMS,
                                                       class_agnostic=True))
    assert agnostic.bboxes.tolist() == [A] and agnostic.labels.tolist() == [0]
    # mmcv's spelling inside nms works too
    alias = _merge([A, C], [0.9, 0.6], [0, 1],
                   dict(NMS, nms=dict(NMS['nms'], class_agnostic=True)))
    assert len(alias) == 1


def test_soft_nms_decays_the_second_score():
    iou = 1 / 3
    linear = _merge([A, B], [0.9, 0.8], [0, 0], dict(
        nms=dict(type='soft_nms', iou_threshold=0.3, method='linear')))
    assert linear.bboxes.tolist() == [A, B]
    assert linear.scores.tolist() == pytest.approx([0.9, 0.8 * (1 - iou)],
                                                   abs=1e-5)
    gaussian = _merge([A, B], [0.9, 0.8], [0, 0], dict(
        nms=dict(type='soft_nms', sigma=0.5, method='gaussian')))
    assert gaussian.scores.tolist() == pytest.approx(
        [0.9, 0.8 * math.exp(-iou**2 / 0.5)], abs=1e-5)
    # the worked example of docs/merge.md: IoU 5/6, 0.6 x (1 - 5/6)
    doc = _merge([A, C], [0.9, 0.6], [0, 0], dict(
        nms=dict(type='soft_nms', iou_threshold=0.5)))
    assert doc.scores.tolist() == pytest.approx([0.9, 0.1], abs=1e-5)
    # min_score drops what decays below it
    pruned = _merge([A, B], [0.9, 0.8], [0, 0], dict(
        nms=dict(type='soft_nms', iou_threshold=0.3, min_score=0.6)))
    assert pruned.bboxes.tolist() == [A]


# The original SNIPER/AutoFocus code's merge (docs/merge.md): Gaussian
# soft-NMS, sigma 0.55, 200 detections per image.
ORIGINAL = dict(nms=dict(type='soft_nms', method='gaussian', sigma=0.55,
                         min_score=0.001), max_per_img=200)


def test_original_codes_gaussian_soft_nms():
    # docs/merge.md: A (0.9) and C (0.6), IoU 5/6: C decays to
    # 0.6 x exp(-(5/6)^2 / 0.55) = 0.6 x 0.2829 = 0.1698 (linear at 0.5
    # gives 0.1).
    out = _merge([A, C], [0.9, 0.6], [0, 0], ORIGINAL)
    assert out.bboxes.tolist() == [A, C]
    assert out.scores.tolist() == pytest.approx(
        [0.9, 0.6 * math.exp(-(5 / 6)**2 / 0.55)], abs=1e-5)
    assert out.scores[1].item() == pytest.approx(0.1698, abs=1e-4)
    # 250 disjoint boxes: 200 kept (the default 100 keeps 100).
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(250)]
    scores = [1 - i / 1000 for i in range(250)]
    assert len(_merge(boxes, scores, [0] * 250, ORIGINAL)) == 200
    assert len(_merge(boxes, scores, [0] * 250, dict(
        ORIGINAL, max_per_img=100))) == 100
    assert MergeConfig.from_dict(ORIGINAL).max_per_img == 200


def test_box_voting_returns_the_score_weighted_box():
    cfg = dict(NMS, box_voting=dict(iou_threshold=0.8))
    # B (IoU 1/3 with A) does not vote; another class does not vote
    out = _merge([A, C, B, C], [0.9, 0.6, 0.5, 0.7], [0, 0, 0, 1], cfg)
    assert out.labels.tolist() == [0, 1, 0]
    expected = (0.9 * torch.tensor(A) + 0.6 * torch.tensor(C)) / 1.5
    torch.testing.assert_close(out.bboxes[0], expected.float())
    assert out.bboxes[0, 3].item() == pytest.approx(10.8)
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert out.bboxes[1].tolist() == C and out.bboxes[2].tolist() == B
    # class-agnostic: the class-1 box votes too
    out = _merge([A, C, C], [0.9, 0.6, 0.6], [0, 0, 1],
                 dict(cfg, class_agnostic=True))
    assert len(out) == 1
    assert out.bboxes[0, 3].item() == pytest.approx(
        (0.9 * 10 + 1.2 * 12) / 2.1)
    # 'mean' scoring: mean input score of the voters
    out = _merge([A, C], [0.9, 0.6], [0, 0],
                 dict(NMS, box_voting=dict(iou_threshold=0.8,
                                           scoring='mean')))
    assert out.scores.tolist() == pytest.approx([0.75])


def test_box_voting_with_small_scores_and_a_lone_voter():
    cfg = dict(NMS, box_voting=dict(iou_threshold=0.8))
    # voter weights 0.5 + 0.4 = 0.9 (under 1) still move the box
    out = _merge([A, C], [0.5, 0.4], [0, 0], cfg)
    assert out.bboxes[0, 3].item() == pytest.approx((0.5 * 10 + 0.4 * 12)
                                                    / 0.9)
    # a box of score 0 has no weight to vote with: it stays as it is
    out = _merge([A], [0.0], [0], cfg)
    assert out.bboxes.tolist() == [A]
    # 'mean' scoring of a box that is its own only voter: its score
    out = _merge([A], [0.9], [0], dict(NMS, box_voting=dict(
        iou_threshold=0.8, scoring='mean')))
    assert out.scores.tolist() == pytest.approx([0.9])


def test_max_per_img():
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(5)]
    out = _merge(boxes, [0.1, 0.5, 0.3, 0.9, 0.2], [0] * 5,
                 dict(NMS, max_per_img=2))
    assert out.scores.tolist() == pytest.approx([0.9, 0.5])
    assert out.bboxes.tolist() == [boxes[3], boxes[1]]


def test_empty_input():
    for parts in ([], [torch.zeros((0, 4))]):
        n = len(parts)
        out = merge_detections(parts, [torch.zeros(0)] * n,
                               [torch.zeros(0, dtype=torch.long)] * n, NMS)
        assert out.bboxes.shape == (0, 4) and len(out.scores) == 0
    paster = MaskPaster((7, 9))
    paster.add(torch.zeros((0, 7, 9), dtype=torch.bool))
    out = merge_detections([torch.zeros((0, 4))], [torch.zeros(0)],
                           [torch.zeros(0, dtype=torch.long)],
                           dict(NMS, box_voting=dict()), masks=paster)
    assert out.masks.shape == (0, 7, 9) and out.masks.dtype == torch.bool


def _box_mask(box, hw=(20, 20)):
    m = torch.zeros(hw, dtype=torch.bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def test_masks_follow_their_boxes():
    boxes = [A, C, [12, 12, 18, 18]]
    masks = [_box_mask(b)[None] for b in boxes]
    for cfg in (NMS, dict(NMS, box_voting=dict(iou_threshold=0.8))):
        out = _merge(boxes, [0.6, 0.9, 0.7], [0, 0, 0], cfg, masks=masks)
        assert out.masks.shape == (2, 20, 20)
        # the kept detections keep their own masks (voting moves the box)
        assert torch.equal(out.masks[0], masks[1][0])
        assert torch.equal(out.masks[1], masks[2][0])
    with pytest.raises(ValueError, match='mask parts'):
        _merge(boxes, [0.6, 0.9, 0.7], [0, 0, 0], NMS, masks=masks[:2])


def test_mask_paster_pastes_windows_and_flips():
    paster = MaskPaster((6, 8))
    window = torch.zeros((2, 3, 4), dtype=torch.bool)
    window[0, 0, 0] = True  # top-left pixel of the window
    window[1, 2, 3] = True  # bottom-right
    paster.add(window, rows=torch.tensor([False, True]), origin=(4, 3))
    full = torch.zeros((1, 6, 8), dtype=torch.bool)
    full[0, 1, 1] = True
    paster.add(full, flip_direction='horizontal')
    out = paster(torch.tensor([1, 0]))  # flipped view first
    assert out.shape == (2, 6, 8)
    assert out[0].nonzero().tolist() == [[1, 6]]  # x 1 -> 8 - 1 - 1
    assert out[1].nonzero().tolist() == [[5, 7]]  # (2, 3) + origin (4, 3)
    with pytest.raises(IndexError):
        paster(torch.tensor([2]))


def test_mask_paster_flips_back_vertical_and_diagonal_views():
    # two masks of one pixel each in a 3 x 4 window, flipped per mask
    masks = torch.zeros((2, 3, 4), dtype=torch.bool)
    masks[0, 0, 1] = True
    masks[1, 2, 0] = True
    paster = MaskPaster((3, 4))
    paster.add(masks, flip_direction='vertical')
    paster.add(masks, flip_direction='diagonal')
    out = paster(torch.tensor([0, 1, 2, 3]))
    # vertical: y -> 3 - 1 - y; diagonal: also x -> 4 - 1 - x
    assert [m.nonzero().tolist() for m in out] == [
        [[2, 1]], [[0, 0]], [[2, 2]], [[0, 3]]]


def test_gather_rows_equals_cat_then_index():
    parts = [torch.arange(6).reshape(3, 2), torch.zeros((0, 2), dtype=int),
             torch.arange(10, 14).reshape(2, 2)]
    inds = torch.tensor([4, 0, 3, 2])
    assert torch.equal(gather_rows(parts, inds), torch.cat(parts)[inds])
    # indices outside the 5 rows of the concatenation are refused
    for bad in ([0, 5], [-1, 1]):
        with pytest.raises(IndexError, match='out of range for 5 rows'):
            gather_rows(parts, torch.tensor(bad))


@pytest.mark.parametrize('cfg, match', [
    (dict(nms=dict(type='nmx', iou_threshold=0.5)), "nms.type"),
    (dict(nms=dict(type='nms')), 'needs iou_threshold'),
    (dict(nms=dict(type='nms', iou_threshold=1.5)), 'iou_threshold'),
    (dict(nms=dict(type='nms', iou_threshold=0.5, sigma=0.5)), 'sigma'),
    (dict(nms=dict(type='soft_nms', method='box')), 'method'),
    (dict(nms=dict(type='soft_nms', sigma=0)), 'sigma'),
    (dict(nms=dict(type='soft_nms', min_score=-1)), 'min_score'),
    (dict(NMS, max_per_img=0), 'max_per_img'),
    (dict(NMS, max_per_img=1.5), 'max_per_img'),
    (dict(NMS, box_voting=dict(iou_threshold=0)), 'box_voting'),
    (dict(NMS, box_voting=dict(iou_threshold=1.5)), 'box_voting'),
    (dict(NMS, box_voting=dict(iou=0.8)), 'box_voting'),
    (dict(NMS, box_voting=dict(scoring='max')), 'scoring'),
    (dict(NMS, box_voting=0.8), 'box_voting'),
    (dict(NMS, nms_cfg=1), 'unknown key'),
    (dict(max_per_img=10), 'tta_cfg.nms'),
    (dict(NMS, class_agnostic=False,
          nms=dict(NMS['nms'], class_agnostic=True)), 'disagree'),
])
def test_bad_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        MergeConfig.from_dict(cfg)


def test_soft_nms_sigma_may_be_infinite():
    # gaussian decay exp(-iou^2 / sigma) with sigma = inf: no decay
    cfg = MergeConfig.from_dict(dict(nms=dict(type='soft_nms',
                                              sigma=math.inf)))
    assert cfg.nms['sigma'] == math.inf


def test_config_defaults_and_bad_parts():
    cfg = MergeConfig.from_dict(None)
    assert cfg.nms == dict(type='nms', iou_threshold=0.5,
                           score_threshold=0.0)
    assert cfg.max_per_img == 100 and cfg.box_voting is None
    assert MergeConfig.from_dict(dict(NMS, box_voting=dict())).box_voting \
        == BoxVoting(0.8, 'keep')
    with pytest.raises(ValueError, match='part 0'):
        merge_detections([torch.zeros((2, 4))], [torch.zeros(3)],
                         [torch.zeros(2, dtype=torch.long)], NMS)


def test_tta_models_reject_bad_merge_config():
    from mmsnip.models import SnipTTAModel
    with pytest.raises(ValueError, match='tta_cfg.nms.type'):
        SnipTTAModel(scales=[dict(factor=1.0)], module=torch.nn.Linear(1, 1),
                     tta_cfg=dict(nms=dict(type='wbf')))
