# Copyright (c) mmsnip contributors. All rights reserved.
"""ScaleAwareYOLACTProtonet: the semantic branch learns valid objects only
and ignores the pixels of out-of-range ones; with every object valid it is
mmdet's YOLACTProtonet."""
import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import YOLACTProtonet
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from mmsnip.models.dense_heads import ScaleAwareYOLACTProtonet

SIZE, SEGM = 64, 16  # image and semantic map sides (stride 4)
KWARGS = dict(num_classes=3, in_channels=8, num_protos=4,
              proto_channels=(8, 8, 8, None, 8, 4),
              proto_kernel_sizes=(3, 3, 3, -2, 3, 1))


def _gt(valid):
    """A square of label 1 top-left and one of label 2 bottom-right."""
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    masks[0, 8:24, 8:24] = 1
    masks[1, 40:56, 40:56] = 1
    gt = InstanceData(
        bboxes=torch.tensor([[8., 8., 24., 24.], [40., 40., 56., 56.]]),
        labels=torch.tensor([1, 2]),
        masks=BitmapMasks(masks.numpy(), SIZE, SIZE))
    if valid is not None:
        gt.scale_valid = torch.tensor(valid)
    return gt


def _targets(head, gt):
    no_positives = InstanceData(
        pos_assigned_gt_inds=torch.zeros(0, dtype=torch.long))
    return head._get_targets_single(
        torch.zeros(0, SEGM, SEGM), torch.zeros(3, SEGM, SEGM), gt,
        no_positives)


def test_out_of_range_object_is_ignored_not_background():
    torch.manual_seed(0)
    head = ScaleAwareYOLACTProtonet(**KWARGS)
    targets = _targets(head, _gt([True, False]))[2]
    weight = head.loss_segm.weight
    # mmdet's rule puts label L in channel L - 1: the valid square in
    # channel 0, nothing of the invalid one anywhere.
    assert targets[0, 2:6, 2:6].eq(1).all()
    assert targets.sum() == targets[0, 2:6, 2:6].sum()
    # The invalid square's pixels weigh 0 in every channel, the rest 1.
    assert weight.shape == (3, SEGM, SEGM)
    assert weight[:, 10:14, 10:14].eq(0).all()
    assert weight.sum() == 3 * (SEGM * SEGM - 16)
    # The loss reads the weight once: what loss_by_feat computes next.
    pred = torch.randn(3, SEGM, SEGM)
    loss = head.loss_segm(pred, targets, avg_factor=SEGM * SEGM)
    expected = (F.binary_cross_entropy_with_logits(
        pred, targets, reduction='none') * weight).sum() / (SEGM * SEGM)
    assert torch.allclose(loss, expected)
    assert head.loss_segm.weight is None


def test_all_valid_or_no_validity_is_mmdets_head():
    torch.manual_seed(0)
    plain = YOLACTProtonet(**KWARGS)
    torch.manual_seed(0)
    aware = ScaleAwareYOLACTProtonet(**KWARGS)
    expected = _targets(plain, _gt(None))[2]
    for valid in (None, [True, True]):
        assert torch.equal(_targets(aware, _gt(valid))[2], expected)
        assert aware.loss_segm.weight is None
    pred = torch.randn(3, SEGM, SEGM)
    assert torch.equal(aware.loss_segm(pred, expected, avg_factor=256),
                       plain.loss_segm(pred, expected, avg_factor=256))


def test_only_out_of_range_objects():
    head = ScaleAwareYOLACTProtonet(**KWARGS)
    targets = _targets(head, _gt([False, False]))[2]
    assert targets.sum() == 0
    assert head.loss_segm.weight.sum() == 3 * (SEGM * SEGM - 2 * 16)
