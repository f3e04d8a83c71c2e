# Copyright (c) mmsnip contributors. All rights reserved.
"""ScaleValidAssigner: SNIP's rule around ATSS / task-aligned / dynamic
soft label / SimOTA, hand-made priors and boxes with exact assignments."""
import pytest
import torch
from mmdet.models.task_modules.assigners import (AssignResult, ATSSAssigner,
                                                 BaseAssigner,
                                                 DynamicSoftLabelAssigner,
                                                 SimOTAAssigner,
                                                 TaskAlignedAssigner)
from mmengine.structures import InstanceData

from mmsnip.models import (SCALE_AWARE_ASSIGNERS, ScaleAwareMaxIoUAssigner,
                           ScaleAwareRoIAssigner, ScaleValidAssigner,
                           is_scale_aware)
from mmsnip.registry import TASK_UTILS

# Two 16 x 16 objects side by side and a far corner.
A = [0., 0., 16., 16.]
B = [32., 0., 48., 16.]
FAR = [200., 200., 216., 216.]
LABEL_A, LABEL_B = 2, 1


def _gt(boxes, labels, valid=None, dtype=torch.float32, device='cpu'):
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=dtype, device=device).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long, device=device))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid, dtype=torch.bool, device=device)
    return gt


def _box_preds(boxes, num_classes=3, score=0.5, dtype=torch.float32):
    """Box priors = predicted boxes, every class scored ``score``."""
    boxes = torch.tensor(boxes, dtype=dtype)
    return InstanceData(
        priors=boxes,
        bboxes=boxes.clone(),
        scores=torch.full((len(boxes), num_classes), score, dtype=dtype))


def _point_preds(centers, boxes, stride, num_classes=3, score=0.5):
    """Point priors ``(cx, cy, stride, stride)`` predicting ``boxes``."""
    points = torch.tensor([[x, y, stride, stride] for x, y in centers])
    return InstanceData(
        priors=points,
        bboxes=torch.tensor(boxes),
        scores=torch.full((len(points), num_classes), score))


def _assert_same(a, b):
    assert type(a) is type(b)
    assert a.num_gts == b.num_gts
    assert torch.equal(a.gt_inds, b.gt_inds)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.max_overlaps, b.max_overlaps)
    for key in ('assign_metrics', ):
        assert hasattr(a, key) == hasattr(b, key)
        if hasattr(a, key):
            assert torch.equal(getattr(a, key), getattr(b, key))


# --------------------------------------------------------- one case each
# Four priors/points: p0 on A, p1 on B, p2 and p3 far away. Each assigner,
# alone, makes p0 positive for A and p1 positive for B. With B invalid and
# listed FIRST (A is box 2 of the full list): p0 -> 2, p1 ignored.
EXPECTED = [2, -1, 0, 0]
EXPECTED_LABELS = [LABEL_A, -1, -1, -1]
GT_BA = ([B, A], [LABEL_B, LABEL_A])


def _atss_case():
    # topk=3, one level: each box's candidates have IoUs (1, 0, 0), so the
    # threshold mean + std = 1/3 + 0.577 = 0.91 keeps only the exact prior.
    inner = ATSSAssigner(topk=3)
    preds = InstanceData(
        priors=torch.tensor([A, B, FAR, [300.] * 2 + [316.] * 2]))
    return inner, (preds, [4]), {}


def _task_aligned_case():
    # topk=1: the candidate of each box is the prior predicting it exactly
    # (metric 0.5 * 1^6); the other priors have IoU 0, metric 0.
    inner = TaskAlignedAssigner(topk=1)
    preds = _box_preds([A, B, FAR, [300.] * 2 + [316.] * 2])
    return inner, (preds, ), {}


def _dynamic_soft_label_case():
    # Points at the box centers (8, 8), (40, 8), stride 8; dynamic k =
    # sum of the box's IoUs (1 + 0) = 1: the point predicting it exactly.
    inner = DynamicSoftLabelAssigner(topk=13)
    preds = _point_preds([(8, 8), (40, 8), (208, 208), (308, 308)],
                         [A, B, FAR, [300.] * 2 + [316.] * 2],
                         stride=8.,
                         score=0.)  # logits
    return inner, (preds, ), {}


def _simota_case():
    # center_radius 2.5 * stride 8 = 20 px < 32 px between the boxes'
    # centers: each point is a candidate of its own box only.
    inner = SimOTAAssigner(center_radius=2.5)
    preds = _point_preds([(8, 8), (40, 8), (208, 208), (308, 308)],
                         [A, B, FAR, [300.] * 2 + [316.] * 2],
                         stride=8.)  # probabilities
    return inner, (preds, ), {}


CASES = dict(
    atss=_atss_case,
    task_aligned=_task_aligned_case,
    dynamic_soft_label=_dynamic_soft_label_case,
    simota=_simota_case)


def _call(assigner, args, kwargs, gt):
    """ATSS takes ``num_level_priors`` before ``gt_instances``."""
    if isinstance(getattr(assigner, 'assigner', assigner), ATSSAssigner):
        return assigner.assign(args[0], args[1], gt, None, **kwargs)
    return assigner.assign(args[0], gt, None, **kwargs)


@pytest.mark.parametrize('case', CASES)
def test_inner_assigner_alone_takes_both_boxes(case):
    """The premise of the hand cases: without validity p0 -> A, p1 -> B."""
    inner, args, kwargs = CASES[case]()
    res = _call(inner, args, kwargs, _gt(*GT_BA))
    assert res.gt_inds.tolist() == [2, 1, 0, 0]


@pytest.mark.parametrize('case', CASES)
def test_invalid_box_priors_are_ignored_valid_ones_reindexed(case):
    inner, args, kwargs = CASES[case]()
    res = _call(
        ScaleValidAssigner(inner), args, kwargs,
        _gt(*GT_BA, valid=[False, True]))
    assert res.gt_inds.tolist() == EXPECTED
    assert res.labels.tolist() == EXPECTED_LABELS
    assert res.num_gts == 2
    # (a) alone: the valid box only, index 1 of the reduced list
    alone = _call(inner, args, kwargs, _gt([A], [LABEL_A]))
    assert alone.gt_inds.tolist() == [1, 0, 0, 0]
    assert torch.equal(res.max_overlaps, alone.max_overlaps)


@pytest.mark.parametrize('case', CASES)
def test_all_valid_or_no_validity_is_the_inner_result(case):
    inner, args, kwargs = CASES[case]()
    wrapped = ScaleValidAssigner(inner)
    ref = _call(inner, args, kwargs, _gt(*GT_BA))
    for valid in (None, [True, True]):
        _assert_same(
            _call(wrapped, args, kwargs, _gt(*GT_BA, valid=valid)), ref)


@pytest.mark.parametrize('case', CASES)
def test_all_invalid_ignores_every_would_be_positive(case):
    inner, args, kwargs = CASES[case]()
    res = _call(
        ScaleValidAssigner(inner), args, kwargs,
        _gt(*GT_BA, valid=[False, False]))
    assert res.gt_inds.tolist() == [-1, -1, 0, 0]
    assert res.labels.tolist() == [-1, -1, -1, -1]
    assert res.num_gts == 2


@pytest.mark.parametrize('case', CASES)
def test_zero_boxes(case):
    inner, args, kwargs = CASES[case]()
    wrapped = ScaleValidAssigner(inner)
    for valid in (None, []):
        res = _call(wrapped, args, kwargs, _gt([], [], valid=valid))
        assert res.gt_inds.tolist() == [0, 0, 0, 0]
        assert res.num_gts == 0


def test_a_valid_box_keeps_priors_an_invalid_one_would_take():
    """Rule (c) only ignores priors that (a) left negative.

    ATSS, topk 3: p0 is exactly the invalid box B2 (IoU 1) and IoU 0.91
    with the valid box A2; alone, A2 makes p0 positive (threshold 0.83);
    with both boxes, max IoU gives p0 to B2. It stays A2's positive.
    """
    a2, b2 = [0., 0., 10., 11.], [0., 0., 10., 10.]
    preds = InstanceData(
        priors=torch.tensor([b2, [100., 100., 110., 110.], FAR]))
    gt = _gt([a2, b2], [0, 1])
    assert ATSSAssigner(3).assign(preds, [3], gt).gt_inds.tolist() == [2, 0, 0]
    gt.scale_valid = torch.tensor([True, False])
    res = ScaleValidAssigner(ATSSAssigner(3)).assign(preds, [3], gt)
    assert res.gt_inds.tolist() == [1, 0, 0]
    assert res.labels.tolist() == [0, -1, -1]


# ----------------------------------------- arguments and extra properties


def test_task_aligned_alpha_beta_pass_through_and_metrics_kept():
    """TOOD calls ``assign(pred, gt, ignore, alpha, beta)`` positionally."""
    inner, (preds, ), _ = _task_aligned_case()
    gt = _gt(*GT_BA, valid=[False, True])
    res = ScaleValidAssigner(inner).assign(preds, gt, None, 2, 6)
    assert res.gt_inds.tolist() == EXPECTED
    # p0: score 0.5 ** alpha 2 * IoU 1 ** 6; ignored p1: 0 as a negative
    assert res.assign_metrics.tolist() == [0.25, 0., 0., 0.]
    res = ScaleValidAssigner(inner).assign(
        pred_instances=preds, gt_instances=gt, alpha=1, beta=6)
    assert res.assign_metrics.tolist() == [0.5, 0., 0., 0.]


class _Result(AssignResult):
    """An ``AssignResult`` subclass, as some assigners return."""


class _WithExtras(BaseAssigner):
    """ATSS plus an attribute and an extra property, both per prior."""

    def __init__(self):
        self.atss = ATSSAssigner(3)

    def assign(self,
               pred_instances,
               num_level_priors,
               gt_instances,
               gt_instances_ignore=None,
               tag=0):
        r = self.atss.assign(pred_instances, num_level_priors, gt_instances)
        out = _Result(r.num_gts, r.gt_inds, r.max_overlaps, r.labels)
        out.per_prior = r.gt_inds * 10 + tag
        out.set_extra_property('num_gts_seen',
                               torch.full_like(r.gt_inds, r.num_gts))
        return out


def test_extra_properties_and_result_type_are_kept():
    _, args, _ = _atss_case()
    gt = _gt(*GT_BA, valid=[False, True])
    res = ScaleValidAssigner(_WithExtras()).assign(*args, gt, tag=10)
    assert type(res) is _Result
    assert res.gt_inds.tolist() == EXPECTED
    # as run (a) computed them, on the one valid box (index 1 there)
    assert res.get_extra_property('num_gts_seen').tolist() == [1, 1, 1, 1]
    assert res.per_prior.tolist() == [20, 10, 10, 10]
    assert 'num_gts_seen' in res.info


def test_every_gt_field_reaches_the_inner_assigner():
    seen = []

    class Spy(BaseAssigner):

        def assign(self, pred_instances, gt_instances, **kwargs):
            seen.append(gt_instances)
            n = len(pred_instances.priors)
            return AssignResult(
                len(gt_instances), torch.zeros(n, dtype=torch.long),
                torch.zeros(n), torch.full((n, ), -1))

    gt = _gt(*GT_BA, valid=[False, True])
    gt.masks = torch.zeros(2, 4, 4)
    gt.set_metainfo(dict(valid_range=(0, 20)))
    ScaleValidAssigner(Spy()).assign(_box_preds([A]), gt)
    valid_only, full = seen
    assert set(valid_only.keys()) == set(gt.keys())
    assert valid_only.bboxes.tolist() == [A]
    assert valid_only.labels.tolist() == [LABEL_A]
    assert valid_only.masks.shape == (1, 4, 4)
    assert valid_only.metainfo['valid_range'] == (0, 20)
    assert full is gt


# --------------------------------------------------------- dtype, devices

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('case', CASES)
def test_amp_fp16_predictions_and_device(device, case):
    """Under AMP the head's outputs (``scores``, ``bboxes``) are fp16, its
    priors and the ground truth float32; the result is on the device."""
    inner, args, kwargs = CASES[case]()
    preds = InstanceData(
        **{
            k: v.to(device, torch.float16 if k != 'priors' else torch.float32)
            for k, v in args[0].items()
        })
    args = (preds, ) + args[1:]
    gt = _gt(*GT_BA, valid=[False, True], device=device)
    res = _call(ScaleValidAssigner(inner), args, kwargs, gt)
    assert res.gt_inds.device.type == device
    assert res.gt_inds.tolist() == EXPECTED
    assert res.labels.tolist() == EXPECTED_LABELS


# ----------------------------------------------------------- scale-aware

SCALE_AWARE_CFGS = [
    dict(type='ScaleAwareMaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4),
    dict(
        type='mmsnip.ScaleAwareRoIAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5),
    dict(
        type='ScaleValidAssigner', assigner=dict(type='ATSSAssigner', topk=9))
]


def test_refuses_to_wrap_a_scale_aware_assigner():
    for cfg in SCALE_AWARE_CFGS:
        with pytest.raises(TypeError, match='already scale-aware'):
            ScaleValidAssigner(cfg)
    with pytest.raises(TypeError, match='ScaleValidAssigner'):
        ScaleValidAssigner(ScaleValidAssigner(dict(type='SimOTAAssigner')))
    with pytest.raises(TypeError, match='no assign'):
        ScaleValidAssigner(object())


def test_builds_from_the_registry():
    a = TASK_UTILS.build(
        dict(
            type='mmsnip.ScaleValidAssigner',
            assigner=dict(type='TaskAlignedAssigner', topk=13)))
    assert isinstance(a.assigner, TaskAlignedAssigner)
    assert a.assigner.topk == 13


def test_is_scale_aware():
    assert set(SCALE_AWARE_ASSIGNERS) == {
        ScaleAwareMaxIoUAssigner, ScaleAwareRoIAssigner, ScaleValidAssigner
    }
    assert is_scale_aware(ScaleValidAssigner(dict(type='SimOTAAssigner')))
    assert is_scale_aware(ScaleAwareMaxIoUAssigner)
    assert is_scale_aware(dict(type='mmsnip.ScaleValidAssigner'))
    assert is_scale_aware(dict(type='ScaleAwareRoIAssigner'))
    assert is_scale_aware(dict(type=ScaleAwareRoIAssigner))
    assert not is_scale_aware(ATSSAssigner(9))
    assert not is_scale_aware(dict(type='MaxIoUAssigner'))
    assert not is_scale_aware(dict(type='DynamicSoftLabelAssigner'))
    with pytest.raises(KeyError, match='NoSuchAssigner'):
        is_scale_aware(dict(type='NoSuchAssigner'))
    with pytest.raises(KeyError, match='no `type`'):
        is_scale_aware(dict(topk=9))


class _IgnoreBandAssigner(BaseAssigner):
    """A prior equal to a box is its positive; one that only overlaps a
    box is ignored (-1: an ignore band, as YOLOv3's GridAssigner, SABL's
    ApproxMaxIoUAssigner, YOLOF's UniformAssigner); others negative."""

    def assign(self, pred_instances, gt_instances, *args, **kwargs):
        from mmdet.structures.bbox import bbox_overlaps
        priors, boxes = pred_instances.priors, gt_instances.bboxes
        gt_inds = torch.zeros(len(priors), dtype=torch.long)
        labels = torch.full((len(priors), ), -1, dtype=torch.long)
        if len(boxes):
            iou = bbox_overlaps(priors, boxes)
            best, arg = iou.max(1)
            gt_inds[best > 0] = -1
            pos = best > 0.999
            gt_inds[pos] = arg[pos] + 1
            labels[pos] = gt_instances.labels[arg[pos]]
        return AssignResult(len(boxes), gt_inds, None, labels=labels)


def test_what_the_assigner_ignores_around_an_invalid_box_stays_ignored():
    """Rule (c): a prior in the ignore band of an invalid box (ignored by
    the assigner on all boxes, negative on the valid ones) is ignored, not
    trained as background; the band of a valid box is the inner
    assigner's own."""
    near_b = [36., 0., 52., 16.]  # overlaps B only
    near_a = [4., 0., 20., 16.]  # overlaps A only
    preds = InstanceData(priors=torch.tensor([A, B, near_b, near_a, FAR]))
    gt = _gt([A, B], [LABEL_A, LABEL_B], valid=[True, False])
    res = ScaleValidAssigner(_IgnoreBandAssigner()).assign(preds, gt)
    assert res.gt_inds.tolist() == [1, -1, -1, -1, 0]
    assert res.labels.tolist() == [LABEL_A, -1, -1, -1, -1]


def test_reindexing_into_the_full_list_by_hand():
    """Step (b) with boxes [valid, invalid, valid]: the valid-only result
    numbers the valid boxes 1, 2; they are boxes 1 and 3 of the full
    list. Step (c): a prior the full assignment gives to the invalid box
    and that (a) left negative is ignored."""
    from mmsnip.models.task_modules.assigners.scale_valid_assigner import \
        merge_assign_results
    valid = torch.tensor([True, False, True])
    result = AssignResult(2, torch.tensor([1, 2, 0, 0]), None,
                          labels=torch.tensor([5, 7, -1, -1]))
    full = AssignResult(3, torch.tensor([1, 3, 2, 0]), None,
                        labels=torch.tensor([5, 7, 6, -1]))
    merged = merge_assign_results(result, full, valid)
    assert merged.num_gts == 3
    assert merged.gt_inds.tolist() == [1, 3, -1, 0]
    assert merged.labels.tolist() == [5, 7, -1, -1]
