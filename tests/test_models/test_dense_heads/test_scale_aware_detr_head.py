# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's rule on DETR-family heads (DETR, Deformable DETR incl. two-stage,
Conditional DETR, DAB-DETR): hand cases and loss-level checks."""
import pytest
import torch
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmsnip.models.dense_heads import ScaleAwareDETRHead, queries_on_invalid
from mmsnip.registry import MODELS

NUM_CLASSES = 3
IMG = 100  # the hand cases' image is IMG x IMG
META = dict(img_shape=(IMG, IMG), batch_input_shape=(IMG, IMG))
A = [0., 0., 40., 40.]  # valid in the hand case
B = [50., 50., 100., 100.]  # invalid
C = [50., 50., 90., 90.]  # IoU(B, C) = 0.64

# predicted boxes (xyxy px) and their IoU with B
Q_NEAR_A = [2., 2., 42., 42.]  # 0
Q_C = C  # 0.64
Q_SMALL = [50., 50., 70., 70.]  # 0.16
Q_DUP_A = [0., 0., 20., 20.]  # 0 (a duplicate of A)
Q_HALF = [50., 50., 100., 75.]  # 0.5 exactly: not above the threshold
Q_B = B  # 1.0


def _cxcywh(boxes_xyxy):
    return bbox_xyxy_to_cxcywh(torch.tensor(boxes_xyxy) / IMG)


def _gt(boxes, labels, valid=None):
    gt = InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor(labels))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid)
    return gt


def _ce_head(**train_cfg):
    return ScaleAwareDETRHead(
        num_classes=NUM_CLASSES,
        embed_dims=16,
        loss_cls=dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        train_cfg=dict(
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='ClassificationCost', weight=1.),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ]),
            **train_cfg))


def _targets(head, preds_xyxy, gt):
    bbox_pred = _cxcywh(preds_xyxy)
    cls_score = torch.zeros(len(preds_xyxy), head.cls_out_channels)
    return head._get_targets_single(cls_score, bbox_pred, gt, META)


def test_queries_on_invalid_threshold_is_strict():
    preds = _cxcywh([Q_B, Q_C, Q_HALF, Q_SMALL])  # IoU 1, .64, .5, .16
    hit = queries_on_invalid(preds, (IMG, IMG), torch.tensor([B]), 0.5)
    assert hit.tolist() == [True, True, False, False]
    none = queries_on_invalid(preds, (IMG, IMG), torch.zeros(0, 4), 0.5)
    assert none.tolist() == [False] * 4


def test_hand_case_valid_match_and_ignore_on_invalid():
    # docstring example of ScaleAwareDETRMixin, plus the IoU = 0.5 query
    head = _ce_head()
    labels, weights, bbox_targets, bbox_weights, pos, neg = _targets(
        head, [Q_NEAR_A, Q_C, Q_SMALL, Q_DUP_A, Q_HALF],
        _gt([A, B], [0, 2], [True, False]))
    bg = NUM_CLASSES
    assert labels.tolist() == [0, bg, bg, bg, bg]  # label 2 (B) nowhere
    assert weights.tolist() == [1., 0., 1., 1., 1.]
    assert pos.tolist() == [0] and neg.tolist() == [2, 3, 4]
    assert torch.allclose(bbox_targets[0], _cxcywh([A])[0])
    assert bbox_weights.sum(1).tolist() == [4., 0., 0., 0., 0.]


def test_positive_of_a_valid_box_is_never_ignored():
    # C is valid and overlaps the invalid B at IoU 0.64: the query matched
    # to C stays positive; the query sitting on B is ignored.
    head = _ce_head()
    labels, weights, _, _, pos, neg = _targets(
        head, [Q_C, Q_B, Q_HALF], _gt([C, B], [1, 2], [True, False]))
    assert labels.tolist() == [1, NUM_CLASSES, NUM_CLASSES]
    assert weights.tolist() == [1., 0., 1.]
    assert pos.tolist() == [0] and neg.tolist() == [2]


def test_threshold_from_train_cfg():
    gt = _gt([A, B], [0, 2], [True, False])
    preds = [Q_NEAR_A, Q_C, Q_B]  # IoU with B: 0, 0.64, 1
    _, weights, *_ = _targets(_ce_head(invalid_iou_thr=0.7), preds, gt)
    assert weights.tolist() == [1., 1., 0.]
    with pytest.raises(ValueError, match='train_cfg.invalid_iou_thr'):
        _targets(_ce_head(invalid_iou_thr=1.5), preds, gt)


def test_all_valid_targets_are_mmdets():
    head = _ce_head()
    preds = [Q_NEAR_A, Q_C, Q_SMALL, Q_B]
    for valid in ([True, True], None):
        ours = _targets(head, preds, _gt([A, B], [0, 2], valid))
        ref = _targets(head, preds, _gt([A, B], [0, 2]))
        for a, b in zip(ours, ref):
            assert torch.equal(a, b)
    # what mmdet does with the invalid box: a positive for it
    labels, *_ = _targets(head, preds, _gt([A, B], [0, 2]))
    assert 2 in labels.tolist()


# --- loss level, every DETR-family head ------------------------------------

NQ, LAYERS, SIZE = 20, 2, 64
SIGMOID_HEAD = dict(
    loss_cls=dict(
        type='FocalLoss',
        use_sigmoid=True,
        gamma=2.0,
        alpha=0.25,
        loss_weight=2.0),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])))
HEADS = {
    'DETRHead': dict(),  # its defaults: softmax CE, bg_cls_weight 0.1
    'DeformableDETRHead': dict(as_two_stage=True, **SIGMOID_HEAD),
    'ConditionalDETRHead': SIGMOID_HEAD,
    'DABDETRHead': SIGMOID_HEAD,
}
VALID_BOX = [4., 4., 24., 24.]
INVALID_BOX = [20., 16., 60., 56.]
ON_INVALID = (3, 7, 11)  # queries planted on the invalid box


def _build(name, aware):
    cfg = dict(
        type=('ScaleAwareDETRHead' if name == 'DETRHead' else 'ScaleAware' +
              name) if aware else name,
        num_classes=NUM_CLASSES,
        embed_dims=16)
    if name == 'DETRHead':  # fresh dicts: DETRHead rewrites loss_cls
        cfg['loss_cls'] = dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0)
    cfg.update(ConfigDict(HEADS[name]).to_dict())
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return MODELS.build(cfg)


def _inputs(head, seed=0):
    """(layers, 1, NQ, C) scores, (layers, 1, NQ, 4) boxes (cxcywh in
    [0, 1]): small random boxes (at most 10 px, IoU < 0.07 with the invalid
    box), query 0 on the valid box, queries ``ON_INVALID`` on the invalid
    box (IoU > 0.8)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(LAYERS, 1, NQ, head.cls_out_channels, generator=g)
    boxes = torch.rand(LAYERS, 1, NQ, 4, generator=g)
    boxes[..., :2] = boxes[..., :2] * 0.8 + 0.1
    boxes[..., 2:] = boxes[..., 2:] * 0.1 + 0.05
    for idx, box in ((0, VALID_BOX), (list(ON_INVALID), INVALID_BOX)):
        target = bbox_xyxy_to_cxcywh(torch.tensor(box) / SIZE)
        noise = torch.rand(boxes[:, :, idx].shape, generator=g) * 0.02
        boxes[:, :, idx] = target + noise
    return scores, boxes


def _loss(head, boxes_xyxy, valid, labels=None):
    scores, boxes = _inputs(head)
    gt = _gt(boxes_xyxy, labels or [1] * len(boxes_xyxy), valid)
    metas = [dict(img_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE))]
    if hasattr(head, 'as_two_stage') and head.as_two_stage:
        return head.loss_by_feat(scores, boxes, scores[0], boxes[0], [gt],
                                 metas)
    return head.loss_by_feat(scores, boxes, [gt], metas)


def _box_losses(losses):
    return {k: v for k, v in losses.items() if 'bbox' in k or 'iou' in k}


@pytest.mark.parametrize('name', list(HEADS))
def test_only_invalid_box_gives_zero_box_losses(name):
    head = _build(name, aware=True)
    losses = _loss(head, [INVALID_BOX], [False])
    box = _box_losses(losses)
    assert len(box) == 2 * (LAYERS + ('enc_loss_cls' in losses))
    assert all(float(v) == 0 for v in box.values()), box
    assert all(
        torch.isfinite(v) and v > 0 for k, v in losses.items() if 'cls' in k)


@pytest.mark.parametrize('name', list(HEADS))
def test_queries_on_the_invalid_box_get_weight_zero(name):
    head = _build(name, aware=True)
    scores, boxes = _inputs(head)
    gt = _gt([VALID_BOX, INVALID_BOX], [0, 1], [True, False])
    labels, weights, _, _, n_pos, n_neg = head.get_targets(
        list(scores[-1]), list(boxes[-1]), [gt],
        [META | dict(img_shape=(SIZE, SIZE))])
    expected = torch.ones(NQ)
    expected[list(ON_INVALID)] = 0
    assert torch.equal(weights[0], expected)
    assert (labels[0] != 1).all()  # the invalid box's label: no positive
    assert n_pos == 1 and n_neg == NQ - 1 - len(ON_INVALID)


@pytest.mark.parametrize('name', list(HEADS))
def test_one_valid_box_gives_box_losses(name):
    head = _build(name, aware=True)
    losses = _loss(head, [VALID_BOX, INVALID_BOX], [True, False])
    assert all(float(v) > 0 for v in _box_losses(losses).values())


@pytest.mark.parametrize('name', list(HEADS))
def test_all_valid_equals_mmdet(name):
    ours, ref = _build(name, aware=True), _build(name, aware=False)
    assert type(ref).__name__ == name and isinstance(ours, type(ref))
    boxes = [VALID_BOX, INVALID_BOX]
    expected = _loss(ref, boxes, None)
    for valid in ([True, True], None):
        got = _loss(ours, boxes, valid)
        assert got.keys() == expected.keys()
        for k in got:
            assert torch.equal(got[k], expected[k]), k


@pytest.mark.parametrize('name', list(HEADS))
def test_ignored_queries_leave_the_classification_loss(name):
    # only an invalid box: the classification loss is mmdet's on an image
    # without objects, computed over the queries not on the invalid box
    ours, ref = _build(name, aware=True), _build(name, aware=False)
    scores, boxes = _inputs(ours)
    keep = [i for i in range(NQ) if i not in ON_INVALID]
    metas = [dict(img_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE))]
    got = ours.loss_by_feat_single(scores[-1], boxes[-1],
                                   [_gt([INVALID_BOX], [1], [False])], metas)
    empty = InstanceData(
        bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    expected = ref.loss_by_feat_single(scores[-1][:, keep], boxes[-1][:, keep],
                                       [empty], metas)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-6, atol=0)
    full = ref.loss_by_feat_single(scores[-1], boxes[-1], [empty], metas)
    assert not torch.allclose(got[0], full[0])  # mmdet: on it = background
