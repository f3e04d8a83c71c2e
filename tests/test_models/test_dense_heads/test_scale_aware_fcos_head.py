# Copyright (c) mmsnip contributors. All rights reserved.
"""ScaleAwareFCOSHead: SNIP's rule on FCOS point assignment."""
import torch
from mmdet.models.dense_heads import FCOSHead
from mmdet.models.losses import FocalLoss
from mmengine.structures import InstanceData

from mmsnip.models import ScaleAwareFCOSHead, SkipIgnoredLoss

STRIDES = [8, 16, 32, 64, 128]
SIZE = 256
HEAD = dict(
    num_classes=3,
    in_channels=8,
    feat_channels=8,
    stacked_convs=1,
    norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
    strides=STRIDES)
META = [
    dict(
        img_shape=(SIZE, SIZE),
        pad_shape=(SIZE, SIZE),
        batch_input_shape=(SIZE, SIZE),
        scale_factor=(1.0, 1.0))
]
SMALL = [20., 20., 50., 50.]  # 30 px: P3 (max regress distance <= 64)
LARGE = [0., 0., 200., 200.]  # 200 px: P4/P5 (distances 100..200)


def _feats():
    torch.manual_seed(0)
    return [torch.rand(1, 8, SIZE // s, SIZE // s) for s in STRIDES]


def _gt(valid=None):
    gt = InstanceData(
        bboxes=torch.tensor([SMALL, LARGE]), labels=torch.tensor([0, 2]))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid)
    return gt


def _targets(head, gt):
    sizes = [(SIZE // s, SIZE // s) for s in STRIDES]
    points = head.prior_generator.grid_priors(sizes, device='cpu')
    labels, _ = head.get_targets(points, [gt])
    return labels, points  # per level


def _inside(points, box):
    x, y = points[:, 0], points[:, 1]
    return (x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])


def test_points_matched_by_an_invalid_box_are_ignored():
    head = ScaleAwareFCOSHead(**HEAD)
    labels, points = _targets(head, _gt([True, False]))
    bg = HEAD['num_classes']
    # P3: the valid small box keeps its positives; points inside the large
    # invalid box but on a level too fine for it stay negatives
    p3, in_small = labels[0], _inside(points[0], SMALL)
    assert (p3[in_small] == 0).all() and (p3[~in_small] == bg).all()
    # P4, P5: the large invalid box's would-be positives are ignored
    for lvl in (1, 2):
        in_large = _inside(points[lvl], LARGE)
        assert (labels[lvl][~in_large] == bg).all()
        assert (labels[lvl][in_large] != 2).all()
    ignored = torch.cat(labels) == -1
    ref, _ = _targets(FCOSHead(**HEAD), _gt()[torch.tensor([1])])
    assert torch.equal(ignored, torch.cat(ref) != bg)  # FCOS's positives
    assert ignored.sum() > 0


def test_invalidation_overrides_positives():
    head = ScaleAwareFCOSHead(**HEAD)
    gt = InstanceData(
        bboxes=torch.tensor([SMALL, SMALL]),
        labels=torch.tensor([0, 1]),
        scale_valid=torch.tensor([True, False]))
    labels, _ = _targets(head, gt)
    labels = torch.cat(labels)
    assert (labels == -1).any() and not (labels == 0).any()


def test_without_validity_losses_equal_fcos():
    torch.manual_seed(1)
    ours = ScaleAwareFCOSHead(**HEAD)
    torch.manual_seed(1)
    ref = FCOSHead(**HEAD)
    outs_a, outs_b = ours(_feats()), ref(_feats())
    b = ref.loss_by_feat(*outs_b, [_gt()], META)
    for gt in (_gt(), _gt([True, True])):
        a = ours.loss_by_feat(*outs_a, [gt], META)
        for key in b:
            assert torch.allclose(a[key], b[key]), key


def test_ignored_points_are_not_negatives():
    head = ScaleAwareFCOSHead(**HEAD)
    outs = head(_feats())
    losses = head.loss_by_feat(*outs, [_gt([True, False])], META)
    assert all(torch.isfinite(v) for v in losses.values())
    # only invalid boxes: no positives, finite, zero box losses
    losses = head.loss_by_feat(*outs, [_gt([False, False])], META)
    assert losses['loss_bbox'] == 0 and losses['loss_centerness'] == 0
    assert torch.isfinite(losses['loss_cls'])


def test_skip_ignored_loss():
    focal = FocalLoss(use_sigmoid=True)
    loss = SkipIgnoredLoss(focal)
    pred = torch.randn(6, 3, requires_grad=True)
    target = torch.tensor([0, -1, 3, 2, -1, 3])
    keep = target != -1
    assert torch.allclose(
        loss(pred, target, avg_factor=2.),
        focal(pred[keep], target[keep], avg_factor=2.))
    assert loss.use_sigmoid  # attributes of the wrapped loss
    zero = loss(pred, torch.full((6, ), -1), avg_factor=1.)
    zero.backward()
    assert zero == 0 and pred.grad is not None
