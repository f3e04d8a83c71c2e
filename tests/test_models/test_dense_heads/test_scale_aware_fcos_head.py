# Copyright (c) mmsnip contributors. All rights reserved.
import torch
from mmdet.models.dense_heads import FCOSHead
from mmengine.structures import InstanceData

from mmsnip.models import ScaleAwareFCOSHead

HEAD = dict(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
            norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
            strides=[8, 16, 32, 64, 128])
META = [dict(img_shape=(128, 128), pad_shape=(128, 128),
             batch_input_shape=(128, 128), scale_factor=(1.0, 1.0))]


def _feats():
    torch.manual_seed(0)
    return [torch.rand(1, 8, 128 // s, 128 // s) for s in HEAD['strides']]


def _gt(valid=None):
    gt = InstanceData(bboxes=torch.tensor([[8., 8., 56., 56.],
                                           [60., 60., 120., 120.]]),
                      labels=torch.tensor([0, 2]))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid)
    return gt


def test_points_inside_invalid_boxes_are_ignored():
    head = ScaleAwareFCOSHead(**HEAD)
    points = head.prior_generator.grid_priors([(16, 16), (8, 8), (4, 4),
                                               (2, 2), (1, 1)], device='cpu')
    labels, _ = head.get_targets(points, [_gt([True, False])])
    labels = torch.cat(labels)
    flat = torch.cat(points)
    in_invalid = ((flat[:, 0] > 60) & (flat[:, 0] < 120) &
                  (flat[:, 1] > 60) & (flat[:, 1] < 120))
    assert (labels[in_invalid] == -1).all()
    assert (labels[~in_invalid] != -1).all()
    assert (labels == 0).any()  # the valid box still has positives
    assert not (labels == 2).any()  # the invalid box makes no positives


def test_without_validity_losses_equal_fcos():
    torch.manual_seed(1)
    ours = ScaleAwareFCOSHead(**HEAD)
    torch.manual_seed(1)
    ref = FCOSHead(**HEAD)
    outs_a, outs_b = ours(_feats()), ref(_feats())
    a = ours.loss_by_feat(*outs_a, [_gt()], META)
    b = ref.loss_by_feat(*outs_b, [_gt()], META)
    for key in b:
        assert torch.allclose(a[key], b[key]), key
    # all boxes valid: the same too
    c = ours.loss_by_feat(*outs_a, [_gt([True, True])], META)
    for key in b:
        assert torch.allclose(c[key], b[key]), key
