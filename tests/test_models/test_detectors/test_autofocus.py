# Copyright (c) mmsnip contributors. All rights reserved.
import copy

import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules
from test_models.test_detectors_snip import (_sample, faster_rcnn, retinanet,
                                             tridentnet)

register_all_modules(init_default_scope=False)


def _autofocus(detector_cfg, focus_level=2):
    return ConfigDict(
        type='AutoFocus', detector=detector_cfg,
        focus_head=dict(type='FocusPixelHead', in_channels=32,
                        feat_channels=32, stride=16),
        focus_level=focus_level)


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return MODELS.build(cfg)


def _batch(model):
    samples = [
        _sample([[10, 10, 50, 50], [0, 0, 128, 128]], [True, False], [0, 1],
                False),
        _sample([[60, 60, 64, 64]], [True], [2], False),
    ]
    inputs = list(torch.rand(2, 3, 128, 128) * 255)
    return model.data_preprocessor(
        dict(inputs=inputs, data_samples=copy.deepcopy(samples)), True)


def test_two_stage_and_one_stage_train_both_losses():
    # stride 16 is FPN level 2 for Faster R-CNN, level 1 for RetinaNet
    for detector, level in ((faster_rcnn(), 2), (retinanet(), 1)):
        model = _build(_autofocus(detector, level))
        data = _batch(model)
        calls = []
        original = type(model.detector).extract_feat

        def counting(self, inputs):
            calls.append(1)
            return original(self, inputs)

        type(model.detector).extract_feat = counting
        try:
            losses = model.loss(data['inputs'], data['data_samples'])
        finally:
            type(model.detector).extract_feat = original
        assert len(calls) == 1  # features extracted once, shared
        assert 'loss_focus' in losses and torch.isfinite(losses['loss_focus'])
        assert any(k.startswith('loss_') and k != 'loss_focus'
                   for k in losses)
        model.eval()
        with torch.no_grad():
            results, focus = model.predict_with_focus(
                data['inputs'], data['data_samples'])
        assert len(results) == 2 and focus.shape == (2, 8, 8)


def test_plain_detector_checkpoint_loads_and_exports():
    plain = _build(ConfigDict(faster_rcnn()))
    model = _build(_autofocus(faster_rcnn()))
    missing, unexpected = model.load_state_dict(plain.state_dict(),
                                                strict=False)
    assert not unexpected
    assert all(k.startswith('focus_head.') for k in missing)
    for key, value in plain.state_dict().items():
        assert torch.equal(model.detector.state_dict()[key], value)
    # and the wrapped detector exports as a plain detector again
    again = _build(ConfigDict(faster_rcnn()))
    again.load_state_dict(model.detector.state_dict())


def test_focus_level_of_another_stride_is_an_error():
    import pytest
    model = _build(_autofocus(retinanet(), focus_level=2))
    data = _batch(model)
    with pytest.raises(ValueError, match='focus_head.stride is 16'):
        model.loss(data['inputs'], data['data_samples'])


def test_focus_level_problems_are_found_when_the_model_is_built():
    """The runner's input check (input_size_problem, before training)
    finds a focus_level the neck lacks or of another stride, naming each
    level's stride (was: a ValueError at the first batch)."""
    from mmsnip.models.input_sizes import input_size_problem
    assert input_size_problem(_build(_autofocus(retinanet(),
                                                focus_level=1))) is None
    problem = input_size_problem(_build(_autofocus(retinanet(),
                                                   focus_level=2)))
    assert problem.startswith('AutoFocus: feature level 2 has stride 32, '
                              'but focus_head.stride is 16 (level: stride '
                              '0: 8, 1: 16, 2: 32')
    problem = input_size_problem(_build(_autofocus(retinanet(),
                                                   focus_level=9)))
    assert problem.startswith('AutoFocus.focus_level=9 but the detector has')
    assert 'set focus_level to the level of stride' in problem


def test_train_and_test_cfg_of_the_wrapper_are_errors_naming_the_fix():
    """mmdet habit: ``--cfg-options model.test_cfg.rcnn.score_thr=0.3``
    on an AutoFocus config set a ``test_cfg`` on the wrapper, which has
    none of its own (was: ``TypeError: AutoFocus.__init__() got an
    unexpected keyword argument 'test_cfg'``, a traceback)."""
    import pytest

    from mmsnip.utils.preflight import UserInputError
    for name in ('train_cfg', 'test_cfg'):
        cfg = _autofocus(faster_rcnn())
        cfg[name] = dict(rcnn=dict(score_thr=0.3))
        with pytest.raises(UserInputError) as e:
            _build(cfg)
        assert str(e.value).startswith(
            f'AutoFocus: model.{name} is not used: the wrapped detector '
            f'has its own; set model.detector.{name} instead')
        assert '\n' not in str(e.value)


def test_an_autofocus_dict_merged_into_the_detector_is_an_error():
    """The docs' AutoFocus model dict without ``_delete_=True`` merges into
    the base's detector dict: AutoFocus got its backbone, neck, heads,
    train_cfg and test_cfg (was: ``TypeError: AutoFocus.__init__() got an
    unexpected keyword argument 'backbone'``, a traceback)."""
    import pytest

    from mmsnip.utils.preflight import UserInputError
    detector = faster_rcnn()
    merged = ConfigDict(detector, **_autofocus(faster_rcnn()))
    with pytest.raises(UserInputError) as e:
        _build(merged)
    assert str(e.value) == (
        'AutoFocus: model has keys of a detector at its top level '
        '(backbone, neck, roi_head, rpn_head, test_cfg, train_cfg): the '
        "AutoFocus model dict was merged into the base config's detector; "
        "write it with _delete_=True: model = dict(_delete_=True, "
        "type='mmsnip.AutoFocus', detector={{_base_.model}}, "
        'focus_head=..., focus_level=...) (docs/autofocus.md)')


def test_a_partial_data_preprocessor_is_merged_over_the_detectors():
    """``model = dict(data_preprocessor=dict(pad_size_divisor=64))`` on an
    AutoFocus config (the fix mmsnip's input-size error names) changes
    that key of the detector's preprocessor, as MMEngine merges a child
    config (was: ``KeyError: ... must contain the key "type"``, and with
    a ``type`` the detector's mean and std were dropped silently);
    ``_delete_=True`` replaces it."""
    detector = faster_rcnn()
    inner = detector.data_preprocessor
    model = _build(ConfigDict(_autofocus(detector),
                              data_preprocessor=dict(pad_size_divisor=64)))
    pre = model.data_preprocessor
    assert pre.pad_size_divisor == 64
    assert type(pre).__name__ == 'DetDataPreprocessor'
    assert torch.allclose(pre.mean.flatten(), torch.tensor(inner.mean))
    assert torch.allclose(pre.std.flatten(), torch.tensor(inner.std))
    model = _build(ConfigDict(_autofocus(faster_rcnn()),
                              data_preprocessor=dict(
                                  _delete_=True,
                                  type='DetDataPreprocessor',
                                  pad_size_divisor=8)))
    assert model.data_preprocessor.pad_size_divisor == 8
    assert not hasattr(model.data_preprocessor, 'mean')  # replaced whole
    # left out: the detector's, as before
    model = _build(_autofocus(faster_rcnn()))
    assert model.data_preprocessor.pad_size_divisor == \
        inner.pad_size_divisor


def test_focus_head_channels_other_than_the_levels_are_an_error():
    """docs/autofocus.md's snippet has ``in_channels=256``; a neck of
    other width (YOLOX-s: 128, RTMDet-tiny: 96) failed at the first
    iteration, after the chip table was built, with ``RuntimeError: Given
    groups=1, weight of size [64, 256, 3, 3], expected input ... to have
    256 channels, but got 32``. Now the runner's input check names the
    entry and the value to set, before training."""
    import pytest

    from mmsnip.models.input_sizes import input_size_problem
    cfg = _autofocus(retinanet(), focus_level=1)
    cfg.focus_head.in_channels = 256
    model = _build(cfg)
    problem = input_size_problem(model)
    assert problem == (
        'AutoFocus: focus_head.in_channels=256 but feature level 1 '
        '(stride 16) has 32 channels; set '
        'model.focus_head.in_channels=32')
    data = _batch(model)
    with pytest.raises(ValueError, match='focus_head.in_channels=256'):
        model.loss(data['inputs'], data['data_samples'])


def test_tridentnet_focus_head_learns_and_predicts_on_its_branches():
    """TridentNet's features hold its three branches (branch-major, the
    batch repeated): the FocusPixel head trains on each branch's map of
    each chip, as TridentNet's own heads do (was: ``ValueError: Expected
    input batch_size (6) to match target batch_size (2)``), and tests on
    the branch the detector tests with, or on the mean of every branch's
    probabilities with ``test_branch_idx=-1``."""
    for idx in (1, -1):
        cfg = _autofocus(tridentnet(idx), focus_level=0)
        cfg.focus_head.in_channels = 1024  # C4: one level, stride 16
        torch.manual_seed(0)
        model = _build(cfg)
        # tridentnet()'s init_cfg names TridentConv, whose weights are
        # uninitialised memory until then (NaN in some processes)
        model.init_weights()
        data = _batch(model)
        feats = model.extract_feat(data['inputs'])
        assert feats[0].shape[0] == 6  # 3 branches x 2 chips
        samples = data['data_samples']
        targets = model.focus_head.get_targets(samples, feats[0].shape[-2:])
        losses = model.loss(data['inputs'], samples)
        logits = model.focus_head(feats[0])
        expected = torch.nn.functional.cross_entropy(
            logits, targets.repeat(3, 1, 1), ignore_index=-1,
            reduction='sum') / (targets != -1).sum().mul(3)
        assert torch.allclose(losses['loss_focus'], expected)
        model.eval()
        with torch.no_grad():
            results, focus = model.predict_with_focus(data['inputs'],
                                                      samples)
            feat = model.extract_feat(data['inputs'])[0]
            maps = model.focus_head.predict(feat)
        assert len(results) == 2 and focus.shape == (2, 8, 8)
        if idx == -1:
            assert maps.shape[0] == 6
            assert torch.allclose(focus, maps.view(3, 2, 8, 8).mean(0))
        else:
            assert torch.allclose(focus, maps)


def test_a_semi_supervised_detector_inside_is_an_error():
    """AutoFocus around SoftTeacher (mmdet's semi-supervised wrapper): its
    loss takes the labeled and unlabeled branches' batches and its
    pseudo-boxes carry no scale validity; refused when built, naming the
    entry and the fix (was: built, then a traceback at the first
    iteration)."""
    import pytest
    from mmengine.hub import get_config

    from mmsnip.utils.preflight import UserInputError
    semi = get_config('mmdet::soft_teacher/soft-teacher_faster-rcnn_'
                      'r50-caffe_fpn_180k_semi-0.1-coco.py').model
    semi.detector.backbone.init_cfg = None
    cfg = _autofocus(semi)
    cfg.focus_head.in_channels = 256
    with pytest.raises(UserInputError) as e:
        _build(cfg)
    assert str(e.value).startswith(
        'AutoFocus: model.detector (SoftTeacher) is a semi-supervised '
        'detector')
    assert 'model.detector.detector' in str(e.value)
