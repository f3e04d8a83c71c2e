# Copyright (c) mmsnip contributors. All rights reserved.
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmsnip.models import FocusPixelHead


def _sample(boxes, crowd=()):
    sample = DetDataSample()
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.zeros(len(boxes), dtype=torch.long))
    sample.ignored_instances = InstanceData(
        bboxes=torch.tensor(crowd, dtype=torch.float32).reshape(-1, 4),
        labels=torch.zeros(len(crowd), dtype=torch.long))
    return sample


def test_shapes_and_probabilities():
    head = FocusPixelHead(in_channels=8, feat_channels=16)
    x = torch.rand(2, 8, 8, 8)
    assert head(x).shape == (2, 2, 8, 8)
    prob = head.predict(x)
    assert prob.shape == (2, 8, 8) and (prob >= 0).all() and (prob <= 1).all()


def test_targets_follow_the_label_rules():
    head = FocusPixelHead(in_channels=8, feat_channels=16, stride=16)
    samples = [
        _sample([[0, 0, 20, 20], [64, 0, 67, 3], [0, 64, 100, 164]]),
        _sample([], crowd=[[32, 32, 64, 64]]),
    ]
    t = head.get_targets(samples, (8, 8))
    assert t.shape == (2, 8, 8) and t.dtype == torch.long
    assert (t[0, :2, :2] == 1).all()      # 20 px: FocusPixel
    assert t[0, 0, 4] == -1                # 3 px: ignored
    assert (t[0, 4:, :6] == 0).all()       # 100 px: background
    assert (t[1, 2:4, 2:4] == -1).all()    # crowd region: ignored
    assert (t[1] != 1).all()


def test_loss_ignores_minus_one_and_learns():
    torch.manual_seed(0)
    head = FocusPixelHead(in_channels=8, feat_channels=16)
    head.init_weights()
    x = torch.rand(1, 8, 8, 8)
    samples = [_sample([[0, 0, 40, 40], [64, 64, 67, 67]])]
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        loss = head.loss(x, samples)['loss_focus']
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    # all cells ignored: a zero loss, not NaN
    ignored = [_sample([[0, 0, 200, 200]])]  # 200 px... background, so
    assert torch.isfinite(head.loss(x, ignored)['loss_focus'])
    only_tiny = [_sample([[i * 16, j * 16, i * 16 + 3, j * 16 + 3]
                          for i in range(8) for j in range(8)])]
    assert head.loss(x, only_tiny)['loss_focus'].item() == 0
