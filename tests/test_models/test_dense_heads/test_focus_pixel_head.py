# Copyright (c) mmsnip contributors. All rights reserved.
import pytest
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


def test_head_variants_shapes_parameters_and_layers():
    # num_convs=2 (default, the paper): 3x3 + ReLU, 1x1 + ReLU, 1x1 -> 2;
    # num_convs=1 (the demo/aerial checkpoints): 3x3 + ReLU, 1x1 -> 2.
    deep = FocusPixelHead(in_channels=64, feat_channels=64)
    shallow = FocusPixelHead(in_channels=64, feat_channels=64, num_convs=1)
    assert deep.num_convs == 2
    assert sorted(deep.state_dict()) == [
        'cls.bias', 'cls.weight', 'conv.bias', 'conv.weight',
        'conv_1x1.bias', 'conv_1x1.weight']
    assert sorted(shallow.state_dict()) == [
        'cls.bias', 'cls.weight', 'conv.bias', 'conv.weight']
    assert sum(p.numel() for p in deep.parameters()) == 41218
    assert sum(p.numel() for p in shallow.parameters()) == 37058
    x = torch.rand(2, 64, 5, 7)
    for head in (deep, shallow):
        assert head(x).shape == (2, 2, 5, 7)
        assert head.predict(x).shape == (2, 5, 7)
    # The deep head's chain: conv, ReLU, conv_1x1, ReLU, cls.
    with torch.no_grad():
        expected = deep.cls(torch.relu(deep.conv_1x1(
            torch.relu(deep.conv(x)))))
    torch.testing.assert_close(deep(x), expected)
    for bad in (0, 3, True, 1.5):
        with pytest.raises(ValueError, match='FocusPixelHead.num_convs'):
            FocusPixelHead(num_convs=bad)


def test_head_variants_losses():
    # Both variants: zero weights except the classifier bias give the
    # same logits everywhere, so the loss is the hand-computed
    # cross-entropy: bias (0, log 3) -> p(focus) = 0.75; targets on an
    # 8 x 8 map from a 40 px box (cells [0:3, 0:3] focus, 9 cells) and
    # background elsewhere (55 cells): loss = (9 * -log 0.75 +
    # 55 * -log 0.25) / 64.
    import math
    sample = _sample([[0, 0, 40, 40]])
    expected = (9 * -math.log(0.75) + 55 * -math.log(0.25)) / 64
    for n in (1, 2):
        head = FocusPixelHead(in_channels=4, feat_channels=4, num_convs=n,
                              loss_weight=2.0)
        with torch.no_grad():
            for p in head.parameters():
                p.zero_()
            head.cls.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
        loss = head.loss(torch.rand(1, 4, 8, 8), [sample])['loss_focus']
        assert loss.item() == pytest.approx(2 * expected, rel=1e-6)


def test_targets_at_the_size_boundaries():
    # Exactly a = 5, b = 64 and c = 90 px, and a 5.01 px box: the paper's
    # text ignores a and b (default); boundary_ignore=False labels them
    # background (the demo/aerial configs' measured setting); c is
    # background either way, 5.01 a FocusPixel.
    boxes = [[0, 0, 5, 5], [16, 16, 21.01, 21.01], [32, 32, 96, 96],
             [0, 128, 90, 218]]
    for flag, at_a, at_b in ((True, -1, -1), (False, 0, 0)):
        head = FocusPixelHead(in_channels=4, feat_channels=4,
                              boundary_ignore=flag)
        assert head.rule.boundary_ignore is flag
        t = head.get_targets([_sample(boxes[:1])], (16, 16))
        assert t[0, 0, 0] == at_a and (t[0] != 0).sum() == (flag is True)
        t = head.get_targets([_sample(boxes[1:2])], (16, 16))
        assert t[0, 1, 1] == 1
        t = head.get_targets([_sample(boxes[2:3])], (16, 16))
        assert (t[0, 2:6, 2:6] == at_b).all() and (t[0] == at_b).sum() == \
            (16 if flag else 256)
        t = head.get_targets([_sample(boxes[3:4])], (16, 16))
        assert (t[0] == 0).all()


def test_labels_from_the_whole_box_or_its_clipped_part():
    """A box cut by the chip border, 10 x 100 px inside the chip, of an
    object 100 x 100 px at this scale (``box_sizes`` from CropChip): the
    paper's default labels it by the whole box (size 100: background), the
    'clipped' rule by its visible part (size 31.6: FocusPixels)."""
    sample = _sample([[0, 0, 10, 100]])
    sample.gt_instances.box_sizes = torch.tensor([100.0])
    whole = FocusPixelHead(in_channels=8, feat_channels=8)
    clipped = FocusPixelHead(in_channels=8, feat_channels=8,
                             labels_from='clipped')
    assert (whole.get_targets([sample], (8, 8)) == 0).all()
    t = clipped.get_targets([sample], (8, 8))[0]
    assert (t[:7, 0] == 1).all() and (t[:, 1:] == 0).all()
    # without box_sizes (plain data, boxes not clipped) both agree
    plain = _sample([[0, 0, 10, 100]])
    assert torch.equal(whole.get_targets([plain], (8, 8)),
                       clipped.get_targets([plain], (8, 8)))
    with pytest.raises(ValueError, match="labels_from must be 'whole'"):
        FocusPixelHead(labels_from='visible')
