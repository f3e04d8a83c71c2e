# Copyright (c) mmsnip contributors. All rights reserved.
"""ScaleAwareDINO + ScaleAwareDINOHead: SNIP's rule on every DINO query.

mmdet's DINO-4scale config, shrunk for the CPU (ResNet-18 without
weights, 1 encoder and 2 decoder layers, 30 queries, 6 denoising queries,
64 x 64 inputs), random weights.
"""
import pytest
import torch
from mmdet.models.layers.transformer.dino_layers import CdnQueryGenerator
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmsnip.models.dense_heads import DN_BBOX_PRED, ScaleAwareDINOHead
from mmsnip.models.detectors import (DETR_FAMILY, ScaleAwareDINO,
                                     is_scale_aware_detr)
from mmsnip.registry import MODELS

SIZE = 64
NUM_CLASSES = 3
NUM_DN = 6  # dn_cfg.group_cfg.num_dn_queries (dynamic groups)
THR = 0.5  # default train_cfg.invalid_iou_thr
A = [6., 8., 30., 36.]  # boxes in network-input pixels, xyxy
B = [28., 20., 60., 60.]
C = [2., 40., 22., 62.]


def _cfg(detector='DINO', head='DINOHead'):
    m = get_config('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py').model
    m.type = detector
    m.backbone.update(depth=18, init_cfg=None)
    m.neck.in_channels = [128, 256, 512]
    m.num_queries = 30
    m.encoder.num_layers = 1
    m.decoder.num_layers = 2
    m.encoder.layer_cfg.ffn_cfg.feedforward_channels = 64
    m.decoder.layer_cfg.ffn_cfg.feedforward_channels = 64
    m.bbox_head.update(type=head, num_classes=NUM_CLASSES)
    m.dn_cfg.group_cfg.num_dn_queries = NUM_DN
    return m


def _build(detector='DINO', head='DINOHead'):
    with DefaultScope.overwrite_default_scope('mmsnip'):
        torch.manual_seed(0)
        model = MODELS.build(_cfg(detector, head))
    model.init_weights()  # DINO's level_embed is uninitialized memory
    return model.train()


@pytest.fixture(scope='module')
def models():
    plain = _build()
    aware = _build('mmsnip.ScaleAwareDINO', 'mmsnip.ScaleAwareDINOHead')
    # same parameters, same names: mmdet DINO checkpoints load unchanged
    aware.load_state_dict(plain.state_dict(), strict=True)
    return plain, aware


def _sample(boxes, labels, valid=None):
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(SIZE, SIZE),
            ori_shape=(SIZE, SIZE),
            pad_shape=(SIZE, SIZE),
            batch_input_shape=(SIZE, SIZE),
            scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long))
    if valid is not None:
        sample.gt_instances.scale_valid = torch.tensor(valid)
    return sample


def _loss(model, samples, seed=1):
    inputs = torch.rand(
        len(samples),
        3,
        SIZE,
        SIZE,
        generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)  # the denoising noise
    return model.loss(inputs, samples)


def _spy(monkeypatch, obj, name):
    """Record (args, kwargs, result) of every call of ``obj.name``."""
    calls, orig = [], getattr(obj, name)

    def wrapper(*args, **kwargs):
        out = orig(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def _spy_generator(monkeypatch):
    """The ground truth the denoising query generator is given."""
    seen, orig = [], CdnQueryGenerator.__call__

    def wrapper(self, batch_data_samples):
        seen.append([s.gt_instances for s in batch_data_samples])
        return orig(self, batch_data_samples)

    monkeypatch.setattr(CdnQueryGenerator, '__call__', wrapper)
    return seen


def _box_losses(losses):
    return {k: v for k, v in losses.items() if 'bbox' in k or 'iou' in k}


def _on_invalid(bbox_pred, gt):
    """Independent check: IoU (pixels) of each predicted box with the
    invalid boxes of ``gt`` > THR."""
    invalid = gt.bboxes[~gt.scale_valid]
    pred = bbox_cxcywh_to_xyxy(bbox_pred.detach()) * SIZE
    if not len(invalid):
        return torch.zeros(len(pred), dtype=torch.bool)
    return bbox_overlaps(pred, invalid).max(1).values > THR


def _check_weights(targets, bbox_pred, gt):
    """No query on an invalid box has a background target with weight > 0;
    every other query keeps mmdet's weight 1. Returns #ignored."""
    labels, weights, _, _, pos, neg = targets
    ignored = _on_invalid(bbox_pred, gt)
    ignored[pos] = False
    assert torch.equal(weights, (~ignored).float()), (weights, ignored)
    assert not set(neg.tolist()) & set(ignored.nonzero()[:, 0].tolist())
    invalid_labels = set(gt.labels[~gt.scale_valid].tolist())
    valid_labels = set(gt.labels[gt.scale_valid].tolist())
    assert not set(labels[pos].tolist()) & (invalid_labels - valid_labels)
    return int(ignored.sum())


def test_only_invalid_object(models, monkeypatch):
    plain, aware = models
    head = aware.bbox_head
    # run 1: find where a query of the last decoder layer predicts a box
    calls = _spy(monkeypatch, head, '_get_targets_single')
    _loss(aware, [_sample([A], [1], [False])])
    last = bbox_cxcywh_to_xyxy(calls[1][0][1].detach()) * SIZE
    clipped = last.clamp(0, SIZE)
    inside = bbox_overlaps(last, clipped, is_aligned=True)
    q = int(inside.argmax())
    invalid_box = clipped[q].tolist()
    # run 2: the same forward (no valid box, no denoising query), with the
    # only, invalid, object on that query's prediction
    calls.clear()
    dn_calls = _spy(monkeypatch, head, '_get_dn_targets_single')
    seen = _spy_generator(monkeypatch)
    sample = _sample([invalid_box], [2], [False])
    losses = _loss(aware, [sample])
    box = _box_losses(losses)
    assert len(box) == 10  # 2 decoder layers + encoder + 2 denoising, x2
    assert all(float(v) == 0 for v in box.values()), box
    assert len(seen[0][0]) == 0  # the generator saw no box
    assert len(calls) == 3  # decoder layers 0, 1, encoder top-k
    ignored = [
        _check_weights(out, args[1], sample.gt_instances)
        for args, _, out in calls
    ]
    assert float(calls[1][2][1][q]) == 0 and ignored[1] >= 1
    for _, _, out in calls + dn_calls:
        assert (out[0] == NUM_CLASSES).all()  # no positive anywhere
    # mmdet's DINO makes positives of the invalid object (its last layer
    # matches query q, which sits exactly on it: near-zero loss there)
    ref = _box_losses(_loss(plain, [sample]))
    assert sum(float(v) for v in ref.values()) > 1, ref


def test_in_range_object_trains(models, monkeypatch):
    _, aware = models
    head = aware.bbox_head
    calls = _spy(monkeypatch, head, '_get_targets_single')
    dn_calls = _spy(monkeypatch, head, '_get_dn_targets_single')
    seen = _spy_generator(monkeypatch)
    samples = [
        _sample([B, A], [2, 1], [False, True]),
        _sample([C], [0], [False])
    ]
    losses = _loss(aware, samples)
    assert all(float(v) > 0 for v in _box_losses(losses).values())
    # the denoising queries are built from A only: 6 groups of 2 queries
    (gts, ) = seen
    assert [len(g) for g in gts] == [1, 0]
    assert torch.equal(gts[0].bboxes, torch.tensor([A]))
    assert gts[0].labels.tolist() == [1]
    assert len(dn_calls) == 2 * 2  # 2 decoder layers x 2 images
    for args, kwargs, out in dn_calls:
        assert kwargs['dn_meta']['num_denoising_queries'] == 2 * NUM_DN
        _check_weights(out, args[1][DN_BBOX_PRED], args[0])
    labels, _, targets, _, pos, _ = dn_calls[0][2]
    assert pos.tolist() == [0, 2, 4, 6, 8, 10] and (labels[pos] == 1).all()
    a = bbox_xyxy_to_cxcywh(torch.tensor(A) / SIZE)
    assert torch.allclose(targets[pos], a.expand(6, 4))
    assert len(dn_calls[1][2][4]) == 0  # image 2: no positive
    for args, _, out in calls:
        _check_weights(out, args[1], args[2])
        assert len(out[4]) == int(args[2].scale_valid.sum())


def test_all_valid_equals_mmdet_bit_for_bit(models):
    plain, aware = models
    for valid in (([True, True], [True]), (None, None)):
        samples = [
            _sample([A, B], [1, 2], valid[0]),
            _sample([C], [0], valid[1])
        ]
        ours, ref = _loss(aware, samples), _loss(plain, samples)
        assert ours.keys() == ref.keys()
        for k in ref:
            assert torch.equal(ours[k], ref[k]), k


def test_denoising_hand_case(models):
    # valid A, invalid B; 2 groups of 2 queries built from A:
    # q0 (positive of A) on A, q1 (negative) on B -> ignored, q2 (positive
    # of A) predicting B stays positive, q3 (negative) small -> background
    head = models[1].bbox_head
    gt = _sample([A, B], [1, 2], [True, False]).gt_instances
    preds = torch.tensor([A, B, B, [0., 0., 4., 4.]]) / SIZE
    meta = {
        'img_shape': (SIZE, SIZE),
        DN_BBOX_PRED: bbox_xyxy_to_cxcywh(preds)
    }
    labels, weights, targets, bbox_weights, pos, neg = \
        head._get_dn_targets_single(
            gt, meta, dict(num_denoising_queries=4, num_denoising_groups=2))
    bg = NUM_CLASSES
    assert labels.tolist() == [1, bg, 1, bg]
    assert weights.tolist() == [1., 0., 1., 1.]
    assert pos.tolist() == [0, 2] and neg.tolist() == [3]
    assert bbox_weights.sum(1).tolist() == [4., 0., 4., 0.]
    assert torch.allclose(targets[2], bbox_xyxy_to_cxcywh(preds[0]))


def test_detector_and_head_must_match(models):
    plain, aware = models
    with pytest.raises(TypeError, match='mmsnip.ScaleAwareDINOHead'):
        _build('mmsnip.ScaleAwareDINO', 'DINOHead')
    mixed = _build('DINO', 'mmsnip.ScaleAwareDINOHead')
    with pytest.raises(RuntimeError, match='mmsnip.ScaleAwareDINO'):
        _loss(mixed, [_sample([A, B], [1, 2], [True, False])])
    assert isinstance(aware, ScaleAwareDINO)
    assert isinstance(aware.bbox_head, ScaleAwareDINOHead)
    for module, expected in ((plain, False), (aware, True), (mixed, False),
                             (plain.bbox_head, False), (aware.bbox_head,
                                                        True)):
        assert isinstance(module, DETR_FAMILY)
        assert is_scale_aware_detr(module) is expected
    with pytest.raises(TypeError, match='not a DETR-family'):
        is_scale_aware_detr(plain.backbone)
