# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's rule through whole dense heads: ATSS, GFL, TOOD, RTMDet, DDOD,
YOLOX, VFNet, RetinaNet.

Each head is mmdet's config shrunk (8 channels, 3 classes, one conv),
with its assigner(s) wrapped in ``ScaleValidAssigner`` (YOLOX's and
VFNet's heads replaced by ``ScaleAwareYOLOXHead`` / ``ScaleAwareVFNetHead``;
RetinaNet's max-IoU assigner becomes ``ScaleAwareMaxIoUAssigner``), on a
64 x 64 input with one 32 px object:

- out of range: every positive-only loss is exactly 0, and the priors the
  plain head would make positive get classification / objectness weight 0
  (ignored), not background; the other priors stay negatives;
- in range: the losses are the plain head's, positive-only ones non-zero.
"""
import contextlib
import copy
import functools

import pytest
import torch
from mmdet.models.dense_heads import VFNetHead, YOLOXHead
from mmdet.structures.bbox import bbox_overlaps
from mmengine.hub import get_config
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData
from torch import nn

from mmsnip.models import ScaleValidAssigner
from mmsnip.registry import MODELS

SIZE = 64
OBJ = [8., 8., 40., 40.]  # 32 px
NUM_CLASSES = 3
META = [
    dict(
        img_shape=(SIZE, SIZE),
        pad_shape=(SIZE, SIZE),
        batch_input_shape=(SIZE, SIZE),
        scale_factor=(1.0, 1.0))
]
GN = dict(type='GN', num_groups=4, requires_grad=True)
# name: mmdet config, head overrides, losses that only positives produce
HEADS = {
    'atss': [
        'atss/atss_r50_fpn_1x_coco.py',
        dict(norm_cfg=GN), ['loss_bbox', 'loss_centerness']
    ],
    'gfl': [
        'gfl/gfl_r50_fpn_1x_coco.py',
        dict(norm_cfg=GN), ['loss_bbox', 'loss_dfl']
    ],
    'tood': ['tood/tood_r50_fpn_1x_coco.py',
             dict(norm_cfg=GN), ['loss_bbox']],
    # exp_on_reg (as RTMDet-m/l/x): random weights then predict boxes that
    # overlap the object, so the IoU-weighted box loss is not 0 anyway
    'rtmdet': [
        'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
        dict(norm_cfg=dict(type='BN'), exp_on_reg=True), ['loss_bbox']
    ],
    'yolox': [
        'yolox/yolox_tiny_8xb8-300e_coco.py',
        dict(type='mmsnip.ScaleAwareYOLOXHead'),
        ['loss_cls', 'loss_bbox', 'loss_l1']
    ],
    'retina': ['retinanet/retinanet_r50_fpn_1x_coco.py', {}, ['loss_bbox']],
    # two ATSS assigners (alpha-weighted costs): classification and boxes;
    # no DCN (mmcv's CPU deform conv refuses the 1 x 1 maps of 64 px)
    'ddod': [
        'ddod/ddod_r50_fpn_1x_coco.py',
        dict(norm_cfg=GN, use_dcn=False), ['loss_bbox', 'loss_iou']
    ],
    'vfnet': [
        'vfnet/vfnet_r50_fpn_1x_coco.py',
        dict(type='mmsnip.ScaleAwareVFNetHead', norm_cfg=GN),
        ['loss_bbox', 'loss_bbox_rf']
    ],
}
# TOOD has an initial assigner, DDOD one for boxes
ASSIGNER_KEYS = ('assigner', 'initial_assigner', 'reg_assigner')


@functools.lru_cache()
def _mmdet_model(name):
    return get_config('mmdet::' + HEADS[name][0]).model


def _build(name, wrap=True):
    """The shrunk head, assigners wrapped (``wrap``) or mmdet's own."""
    model = copy.deepcopy(_mmdet_model(name))
    cfg = model.bbox_head
    cfg.update(
        num_classes=NUM_CLASSES,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1)
    overrides = dict(HEADS[name][1])
    if not wrap:
        overrides.pop('type', None)  # mmdet's head
    cfg.update(overrides)
    train_cfg = model.train_cfg
    if wrap:  # the rewrite the build-time tool applies
        for key in ASSIGNER_KEYS:
            if key not in train_cfg:
                continue
            if train_cfg[key].type == 'MaxIoUAssigner':
                train_cfg[key].type = 'mmsnip.ScaleAwareMaxIoUAssigner'
            else:
                train_cfg[key] = dict(
                    type='mmsnip.ScaleValidAssigner', assigner=train_cfg[key])
    head = MODELS.build(
        dict(cfg, train_cfg=train_cfg, test_cfg=model.test_cfg))
    # eval: BN statistics fixed; VFNet predicts its initial boxes only in
    # training mode (and has GN only)
    head.train(name == 'vfnet')
    if name == 'yolox':
        head.use_l1 = True  # as after YOLOXModeSwitchHook
    return head


def _pair(name):
    """(wrapped head, same weights with mmdet's assigners / YOLOXHead)."""
    torch.manual_seed(0)
    head, ref = _build(name), _build(name, wrap=False)
    ref.load_state_dict(head.state_dict(), strict=True)
    return head, ref


def _feats(head):
    torch.manual_seed(1)
    strides = [s[0] for s in head.prior_generator.strides]
    return [torch.rand(1, 8, -(-SIZE // s), -(-SIZE // s)) for s in strides]


def _gt(valid=None):
    gt = InstanceData(bboxes=torch.tensor([OBJ]), labels=torch.tensor([1]))
    if valid is not None:
        gt.scale_valid = torch.tensor([valid])
    return gt


def _total(value):
    return sum(value) if isinstance(value, (list, tuple)) else value


class _Spy(nn.Module):
    """Record the weight and target each classification loss call gets."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss
        self.weights, self.labels = [], []

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('loss'), name)

    def forward(self, pred, target, weight=None, **kwargs):
        self.weights.append(weight.detach().reshape(-1).clone())
        labels = target[0] if isinstance(target, tuple) else target
        self.labels.append(labels.reshape(-1).clone())
        return self.loss(pred, target, weight, **kwargs)


def _cls_weights_and_labels(head, gt):
    """Per-prior classification weights and labels, all levels, as the
    classification loss receives them."""
    names = [n for n in ('loss_cls', 'initial_loss_cls') if hasattr(head, n)]
    spies = {n: _Spy(getattr(head, n)) for n in names}
    for n, spy in spies.items():
        setattr(head, n, spy)
    try:
        losses = head.loss_by_feat(*head(_feats(head)), [gt], META)
    finally:
        for n, spy in spies.items():
            setattr(head, n, spy.loss)
    used = [s for s in spies.values() if s.weights]
    assert len(used) == 1
    return (torch.cat(used[0].weights), torch.cat(used[0].labels), losses)


@contextlib.contextmanager
def _epoch(epoch):
    """TOOD assigns with ATSS before ``initial_epoch`` (4) and task-aligned
    after, reading the epoch from the message hub."""
    hub = MessageHub.get_current_instance()
    old = hub.get_info('epoch')
    hub.update_info('epoch', epoch)
    try:
        yield
    finally:
        hub.update_info('epoch', old)


# (head, epoch): TOOD in both stages, both of its assigners wrapped
CASES = [('atss', 0), ('gfl', 0), ('tood', 0), ('tood', 4), ('rtmdet', 0),
         ('ddod', 0)]
IDS = ['atss', 'gfl', 'tood-atss', 'tood-aligned', 'rtmdet', 'ddod']


def test_tood_assigners_are_both_wrapped():
    head = _build('tood')
    assert isinstance(head.initial_assigner, ScaleValidAssigner)
    assert isinstance(head.alignment_assigner, ScaleValidAssigner)
    assert head.assigner is head.initial_assigner


@pytest.mark.parametrize('name,epoch', CASES, ids=IDS)
def test_out_of_range_object_is_ignored(name, epoch):
    head, ref = _pair(name)
    with _epoch(epoch):
        weights, labels, losses = _cls_weights_and_labels(head, _gt(False))
        ref_weights, ref_labels, _ = _cls_weights_and_labels(ref, _gt())
    would_be_pos = ref_labels < NUM_CLASSES
    assert would_be_pos.sum() > 0
    # ignored: weight 0; everything else a negative of weight 1
    assert (weights[would_be_pos] == 0).all()
    assert (weights[~would_be_pos] == 1).all()
    assert (labels == NUM_CLASSES).all()
    assert torch.equal(ref_weights, torch.ones_like(ref_weights))
    for key in HEADS[name][2]:
        assert _total(losses[key]) == 0, key
    assert torch.isfinite(_total(losses['loss_cls']))


@pytest.mark.parametrize(
    'name,epoch',
    CASES + [('yolox', 0), ('retina', 0), ('vfnet', 0)],
    ids=IDS + ['yolox', 'retina', 'vfnet'])
def test_in_range_object_trains_as_mmdet(name, epoch):
    head, ref = _pair(name)
    with _epoch(epoch):
        losses = head.loss_by_feat(*head(_feats(head)), [_gt(True)], META)
        ref_losses = ref.loss_by_feat(*ref(_feats(ref)), [_gt()], META)
    assert losses.keys() == ref_losses.keys()
    for key in losses:
        assert torch.allclose(_total(losses[key]), _total(ref_losses[key]))
    for key in HEADS[name][2]:
        assert _total(losses[key]) > 0, key


def _yolox_targets(head, gt):
    """``_get_targets_single`` outputs and the loss dict."""
    calls = []
    inner = head._get_targets_single

    def spy(*args, **kwargs):
        calls.append(inner(*args, **kwargs))
        return calls[-1]

    head._get_targets_single = spy
    try:
        losses = head.loss_by_feat(*head(_feats(head)), [gt], META)
    finally:
        del head._get_targets_single
    (pos_mask, _, obj_target, _, _, num_pos), = calls
    return pos_mask, obj_target.reshape(-1), num_pos, losses


def test_yolox_out_of_range_object_is_ignored_by_objectness():
    head, ref = _pair('yolox')
    pos_mask, obj_target, num_pos, losses = _yolox_targets(head, _gt(False))
    ref_pos, ref_obj, ref_num_pos, _ = _yolox_targets(ref, _gt())
    assert ref_num_pos > 0 and num_pos == 0 and not pos_mask.any()
    # mmdet's YOLOX: 1 for its positives, 0 (background) for all others
    assert torch.equal(ref_obj, ref_pos.float())
    # here its would-be positives are ignored (-1), the rest background
    assert (obj_target[ref_pos] == -1).all()
    assert (obj_target[~ref_pos] == 0).all()
    for key in HEADS['yolox'][2]:
        assert losses[key] == 0, key
    # the objectness loss sees only the non-ignored priors: their BCE
    # against 0, summed, over max(num_pos, 1) = 1
    objectness = torch.cat(
        [o.permute(0, 2, 3, 1).reshape(-1) for o in head(_feats(head))[2]])
    expected = nn.functional.binary_cross_entropy_with_logits(
        objectness[~ref_pos],
        torch.zeros(int((~ref_pos).sum())),
        reduction='sum')
    assert torch.allclose(losses['loss_obj'], expected)


@pytest.mark.parametrize('name,mmdet_head', [('yolox', YOLOXHead),
                                             ('vfnet', VFNetHead)])
def test_scale_aware_head_has_mmdet_parameters(name, mmdet_head):
    """mmdet checkpoints load unchanged: same keys and shapes."""
    torch.manual_seed(0)
    head, ref = _build(name), _build(name, wrap=False)
    assert type(ref) is mmdet_head and isinstance(head, mmdet_head)
    assert type(head).__name__ == 'ScaleAware' + mmdet_head.__name__
    ours, theirs = head.state_dict(), ref.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_retina_with_scale_aware_max_iou_assigner():
    """RetinaHead (``AnchorHead``) gives the priors that
    ``ScaleAwareMaxIoUAssigner`` ignores (IoU > 0.3 with an invalid box)
    classification weight 0 and no box loss."""
    head, _ = _pair('retina')
    weights, labels, losses = _cls_weights_and_labels(head, _gt(False))
    sizes = [f.shape[-2:] for f in _feats(head)]
    anchors = torch.cat(head.prior_generator.grid_priors(sizes, device='cpu'))
    hit = bbox_overlaps(anchors, torch.tensor([OBJ]))[:, 0] > 0.3
    assert hit.sum() > 0
    assert (weights[hit] == 0).all() and (weights[~hit] == 1).all()
    assert (labels == NUM_CLASSES).all()
    assert _total(losses['loss_bbox']) == 0


class _RowSpy(nn.Module):
    """Record the rows (predictions, targets) a loss is called on."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss
        self.calls = []

    def forward(self, pred, target, *args, **kwargs):
        self.calls.append((pred.detach().clone(), target.clone()))
        return self.loss(pred, target, *args, **kwargs)


def _vfl_rows(head, gt):
    spy = head.loss_cls = _RowSpy(head.loss_cls)
    try:
        losses = head.loss_by_feat(*head(_feats(head)), [gt], META)
    finally:
        head.loss_cls = spy.loss
    (pred, target), = spy.calls
    return pred, target, losses


def test_vfnet_out_of_range_object_is_not_background():
    """VFNet's varifocal loss takes every point with no weight: with
    ``VFNetHead`` even the wrapped assigner's ignored points are trained
    as background; ``ScaleAwareVFNetHead`` leaves them out."""
    head, ref = _pair('vfnet')
    ref_pred, ref_target, _ = _vfl_rows(ref, _gt())
    would_be_pos = ref_target.max(1).values > 0
    assert would_be_pos.sum() > 0
    # mmdet's head, wrapped assigner: every point, all background targets
    ref.assigner = head.assigner
    pred, target, _ = _vfl_rows(ref, _gt(False))
    assert len(pred) == len(ref_pred) and (target == 0).all()
    # mmsnip's: the would-be positives are not in the loss at all
    pred, target, losses = _vfl_rows(head, _gt(False))
    assert torch.equal(pred, ref_pred[~would_be_pos])
    assert (target == 0).all()
    for key in HEADS['vfnet'][2]:
        assert losses[key] == 0, key


def test_vfnet_needs_atss():
    with pytest.raises(ValueError, match='use_atss=True'):
        MODELS.build(
            dict(
                type='mmsnip.ScaleAwareVFNetHead',
                num_classes=3,
                in_channels=8,
                feat_channels=8,
                stacked_convs=1,
                norm_cfg=GN,
                use_atss=False))
