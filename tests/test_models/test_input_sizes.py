# Copyright (c) mmsnip contributors. All rights reserved.
"""input_size_problem: a detector whose neck fails on sizes its data
preprocessor lets through is named before any data is loaded; through
tools/train.py with the shipped RTMDet config unpadded."""
import copy
import os
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import (REPO_ROOT, logged_messages, run_tool,
                      tiny_config)
from mmdet.models.data_preprocessors import DetDataPreprocessor
from torch import nn

from mmsnip.models import input_sizes
from mmsnip.models.input_sizes import _probe_sizes, input_size_problem

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)),
                            'test_configs'))
from shipped_configs import tiny_sniper_config  # noqa: E402


class UpsampleConcat(nn.Module):
    """A neck as RTMDet's: stride-2 features upsampled x2 and concatenated
    with the stride-1 ones (fails unless the size is even)."""

    def __init__(self, divisor: int, fails_always: bool = False):
        super().__init__()
        self.data_preprocessor = DetDataPreprocessor(
            pad_size_divisor=divisor)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fails_always = fails_always

    def extract_feat(self, x):
        if self.fails_always:
            raise RuntimeError('needs 640 x 640')
        low = F.interpolate(self.conv(x), scale_factor=2.0)
        return torch.cat([low, x.new_zeros(1, 4, *x.shape[-2:])], 1)


def test_probe_sizes():
    assert _probe_sizes(1) == (256, 257)
    assert _probe_sizes(32) == (256, 288)  # 288 = 9 x 32: not /64
    assert _probe_sizes(64) == (256, 320)
    assert _probe_sizes(100) == (3200, 3300)


def test_unpadded_neck_is_named_padded_one_passes():
    model = UpsampleConcat(divisor=1).train()
    problem = input_size_problem(model)
    assert problem.startswith('the backbone and neck fail on a 257 x 257 '
                              'input, a size model.data_preprocessor.'
                              'pad_size_divisor=1 lets through')
    assert 'pad_size_divisor=32' in problem
    assert model.training  # mode restored
    assert input_size_problem(UpsampleConcat(divisor=2)) is None


def test_a_network_that_fails_on_the_safe_size_is_not_judged():
    import logging
    with logged_messages(logging.WARNING) as warnings:
        assert input_size_problem(UpsampleConcat(1, fails_always=True)) \
            is None
    assert warnings == [
        'input size check not made: the backbone and neck fail on a '
        '256 x 256 input too (RuntimeError: needs 640 x 640)'
    ]


def test_train_refuses_unpadded_rtmdet(tiny_demo_root, tmp_path):
    """mmdet's RTMDet feeds 640 x 640 only; the shipped config pads to 32
    for the pyramid test and border chips. Without it: refused by name,
    before the chip table is built."""
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_rtmdet_tiny_300e_coco.py')
    cfg = tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                             str(tmp_path / 'rtmdet.py'))
    proc = run_tool([
        'tools/train.py', cfg, '--cfg-options',
        'model.data_preprocessor.pad_size_divisor=1'
    ], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert ('error: ' + cfg + ': the backbone and neck fail on a 257 x 257 '
            'input') in proc.stderr
    # The chip dataset (its summary line) was never built.
    assert 'SniperDataset: ' not in proc.stdout + proc.stderr


def test_inferencer_refuses_unpadded_rtmdet(tiny_demo_root, tmp_path):
    """The multi-scale modes of MultiScaleInferencer feed any size too;
    its single mode keeps the detector's own test pipeline."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmsnip.apis import MultiScaleInferencer
    from mmsnip.registry import MODELS
    from mmsnip.utils.preflight import UserInputError

    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_rtmdet_tiny_300e_coco.py')
    tiny = tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                              str(tmp_path / 'rtmdet.py'))
    child = tmp_path / 'unpadded.py'
    child.write_text("_base_ = './rtmdet.py'\n"
                     'model = dict(data_preprocessor=dict('
                     'pad_size_divisor=1))\n')
    cfg = Config.fromfile(tiny)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    with pytest.raises(UserInputError, match='fail on a 257 x 257 input'):
        MultiScaleInferencer(str(child), ckpt, mode='pyramid', device='cpu')
    MultiScaleInferencer(str(child), ckpt, mode='single', device='cpu')
    MultiScaleInferencer(tiny, ckpt, mode='pyramid', device='cpu')


def _mmdet_model(path: str, **changes):
    """An mmdet detector config (no pretrained weights), with a ResNet-18
    backbone if it has a ResNet-50 one (CPU-cheap), built."""
    from mmengine.hub import get_config
    from mmengine.registry import DefaultScope

    from mmsnip.registry import MODELS
    model = get_config(f'mmdet::{path}').model
    if model.backbone.get('type') == 'ResNet':
        model.backbone.update(depth=18, init_cfg=None)
        model.neck.in_channels = [64, 128, 256, 512]
    model.backbone.pop('init_cfg', None)
    model.data_preprocessor.update(changes)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(model)


PAD_512 = [dict(type='BatchFixedSizePad', size=(512, 512))]


def test_ddod_head_needs_chips_and_batches_of_288_px():
    """DDOD's deformable head convolutions fail on a P7 map under 3 x 3
    (inputs under 257 px, padded to 32: 288). The backbone-and-neck probe
    passes; the whole-network probes name the head and the fix: for
    256 px chips before any data, for smaller chips of a chip table (at
    image borders) unless every batch is padded to the chip size."""
    from mmsnip.models.input_sizes import (chip_input_problem,
                                           small_chip_problem)
    model = _mmdet_model('ddod/ddod_r50_fpn_1x_coco.py').train()
    assert input_size_problem(model) is None  # backbone and neck are fine
    problem = chip_input_problem(model, 256)
    assert problem.startswith(
        'model.bbox_head.cls_convs.0 (ConvModule), in model.bbox_head.'
        'cls_convs.0.conv (DeformConv2dPack) fails on 256 x 256 inputs, '
        'the size of the chips (chip_cfg.chip_size=256) (RuntimeError: '
        'input image is smaller than kernel); the detector takes inputs of '
        '288 px and more: set chip_cfg.chip_size=288 or more')
    assert model.training  # mode restored
    assert chip_input_problem(model, 512) is None
    # a table with a 512 x 200 chip (a border chip; batched alone: 512 x
    # 224 at pad_size_divisor=32)
    shapes = [[512, 512], [200, 512], [512, 480]]
    problem = small_chip_problem(model, shapes, 512, 'the chips')
    assert problem.startswith(
        'model.bbox_head.cls_convs.0 (ConvModule), in model.bbox_head.'
        'cls_convs.0.conv (DeformConv2dPack) fails on a 512 x 224 input '
        '(RuntimeError: input image is smaller than kernel), the size '
        '(width x height, padded) of the chips smaller than chip_cfg.'
        'chip_size=512')
    assert problem.endswith("batch_augments=[dict(type='BatchFixedSizePad'"
                            ', size=(512, 512))]')
    assert small_chip_problem(model, [[512, 512], [320, 512]], 512) is None
    padded = _mmdet_model('ddod/ddod_r50_fpn_1x_coco.py',
                          batch_augments=PAD_512)
    assert small_chip_problem(padded, shapes, 512) is None


def test_ssd_priors_are_laid_out_for_one_input_size():
    """SSD300's priors sit on strides 100 and 300 px, right only for 300 x
    300 inputs: 512 px chips (or smaller border chips) would train
    without an error and with priors beside their features."""
    from mmsnip.models.input_sizes import chip_input_problem
    model = _mmdet_model('ssd/ssd300_coco.py')
    problem = chip_input_problem(model, 512)
    assert problem.startswith(
        'model.bbox_head.prior_generator (SSDAnchorGenerator) lays out its '
        'priors for 300 x 300 inputs (centres on the strides (8, 16, 32, '
        '64, 100, 300), sizes from input_size=300), but the chips are '
        'chip_cfg.chip_size=512 px')
    assert 'set chip_cfg.chip_size=300' in problem
    assert problem.count('SSDAnchorGenerator') == 1  # two names, one object
    assert "size=(300, 300))]" in chip_input_problem(model, 300)
    padded = _mmdet_model('ssd/ssd300_coco.py', batch_augments=[
        dict(type='BatchFixedSizePad', size=(300, 300))])
    assert chip_input_problem(padded, 300) is None


def _demo_config_with_ddod(tiny_demo_root, tmp_path):
    """The tiny SNIPER demo config and mmdet's DDOD at ResNet-18 for its
    5 classes (to set as its ``model``)."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    cfg = Config.fromfile(tiny_config(
        tiny_demo_root, str(tmp_path / 'w'), str(tmp_path / 'cfg.py'),
        base=osp.join(REPO_ROOT, 'configs/sniper',
                      'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')))
    model = get_config('mmdet::ddod/ddod_r50_fpn_1x_coco.py').model
    model.backbone.update(depth=18, init_cfg=None)
    model.neck.in_channels = [64, 128, 256, 512]
    model.bbox_head.num_classes = 5
    return cfg, model


def test_snip_runner_refuses_ddod_on_small_chips(tiny_demo_root,
                                                 tmp_path):
    """Through SnipRunner: the SNIPER demo config with mmdet's DDOD as its
    detector. 256 px chips: refused when the model is built; 320 px chips:
    refused once the chip table is built (the coarse scale's canvases are
    smaller), before the first iteration; padded batches train."""
    from mmsnip.engine import SnipRunner
    from mmsnip.utils.preflight import UserInputError
    cfg, model = _demo_config_with_ddod(tiny_demo_root, tmp_path)
    cfg.model = model
    with pytest.raises(UserInputError, match=r'DeformConv2dPack\) fails on '
                       '256 x 256 inputs, the size of the chips'):
        SnipRunner.from_cfg(copy.deepcopy(cfg))
    for chip_cfg in (cfg.chip_cfg, cfg.train_dataloader.dataset.chip_cfg):
        chip_cfg.chip_size = 320
    runner = SnipRunner.from_cfg(copy.deepcopy(cfg))
    with pytest.raises(UserInputError, match=r'DeformConv2dPack\) fails on '
                       'a .* input .* of the smallest chips of '
                       'train_dataloader.dataset \\(SniperDataset\\)'):
        runner.train_loop
    # a chip table deferred (lazy_init) is checked too
    lazy = copy.deepcopy(cfg)
    lazy.train_dataloader.dataset.lazy_init = True
    runner = SnipRunner.from_cfg(lazy)
    with pytest.raises(UserInputError, match='of the smallest chips of '):
        runner.train_loop
    cfg.model.data_preprocessor.batch_augments = [
        dict(type='BatchFixedSizePad', size=(320, 320))]
    runner = SnipRunner.from_cfg(copy.deepcopy(cfg))
    assert runner.train_loop is not None


def test_snip_runner_warns_when_the_chips_are_inside_a_wrapper(
        tiny_demo_root, tmp_path):
    """A RepeatDataset around the SniperDataset (negatives=False, which
    the wrapper refusal allows) has no chip table of its own: the
    smallest chips are not probed, and the log says so instead of
    nothing (its first batch of a size the network cannot take would be
    the first sign)."""
    import logging

    from mmengine.config import Config

    from mmsnip.engine import SnipRunner
    cfg = Config.fromfile(tiny_config(
        tiny_demo_root, str(tmp_path / 'w'), str(tmp_path / 'cfg.py'),
        base=osp.join(REPO_ROOT, 'configs/sniper',
                      'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')))
    assert not cfg.train_dataloader.dataset.get('negatives')
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=1, dataset=cfg.train_dataloader.dataset)
    cfg.train_dataloader.sampler = dict(type='DefaultSampler')
    runner = SnipRunner.from_cfg(cfg)
    with logged_messages(logging.WARNING) as warnings:
        assert runner.train_loop is not None
    assert [w for w in warnings if 'smallest chips' in w] == [
        'SnipRunner: the detector was not run on the smallest chips '
        'before training: train_dataloader.dataset (RepeatDataset) has no '
        'chip table of its own (a wrapper around the SniperDataset?); a '
        'chip the network cannot take fails at its first batch']


class _Unimplemented(nn.Module):
    """A detector whose ``_forward`` is not implemented (no message)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def _forward(self, inputs, data_samples):
        raise NotImplementedError


def test_a_forward_that_is_not_implemented_is_not_judged(monkeypatch):
    """NotImplementedError subclasses RuntimeError but says nothing about
    sizes: 'cannot run on a bare input', not 'fails on 256 and larger'
    (and an empty message was an IndexError)."""
    said = []
    monkeypatch.setattr(input_sizes, '_not_judged',
                        lambda what, reason: said.append((what, reason)))
    assert input_sizes.chip_input_problem(_Unimplemented(), 256) is None
    assert said == [('the detector cannot run on a bare input',
                     'NotImplementedError: ')]


def test_pyramid_views_ddod_and_ssd():
    """The SNIP pyramid test feeds whole images resized per scale, padded
    only to pad_size_divisor: DDOD fails on views under 288 px (refused,
    naming the scale and the image), SSD's priors fit one input size
    (refused for any other view size); a Pad stage of the tta_pipeline
    to the size the detector takes passes."""
    from mmsnip.chips import ScaleSpec
    from mmsnip.models.input_sizes import pyramid_views, tta_input_problem

    def pyramid_view_problem(model, sizes, scales, images=None, pad=None):
        return tta_input_problem(model, pyramid_views(
            sizes, scales, images, pad=pad))
    scales = [ScaleSpec(max_side=512, valid_range=(0, 80)),
              ScaleSpec(factor=0.5, valid_range=(60, None))]
    sizes = [[400, 600], [200, 600]]  # (height, width) ORIGINAL
    model = _mmdet_model('ddod/ddod_r50_fpn_1x_coco.py').train()
    problem = pyramid_view_problem(model, sizes, scales, ['a.jpg', 'b.jpg'])
    assert problem == (
        'model.bbox_head.cls_convs.0 (ConvModule), in model.bbox_head.'
        'cls_convs.0.conv (DeformConv2dPack) fails on a 320 x 128 input '
        '(RuntimeError: input image is smaller than kernel), the size '
        '(width x height, padded) of a view of the SNIP pyramid test: '
        'tta_model.scales[1] (factor=0.5) resizes "b.jpg" of '
        'test_dataloader.dataset (600 x 200) to 300 x 100, so the test '
        'would stop there; the detector takes inputs of 288 px and more: '
        "pad every view to it, a stage [dict(type='Pad', size=(288, 288))]"
        " after the resizes in tta_pipeline's TestTimeAug transforms, or "
        'leave that scale out of tta_model.scales and tta_pipeline')
    assert model.training  # mode restored
    assert pyramid_view_problem(model, sizes[:1], scales[:1]) is None
    assert pyramid_view_problem(model, sizes, scales, pad=(288, 288)) \
        is None
    ssd = _mmdet_model('ssd/ssd300_coco.py')
    problem = pyramid_view_problem(ssd, [[400, 600]], [ScaleSpec(
        factor=1.0)])
    assert problem.startswith(
        'model.bbox_head.prior_generator (SSDAnchorGenerator) lays out its '
        "priors for 300 x 300 inputs, but the test pyramid's views have "
        'other sizes (tta_model.scales[0] (factor=1.0) resizes image 0 of '
        'test_dataloader.dataset (600 x 400) to 600 x 400)')
    assert problem.endswith('test this detector without --tta (its own '
                            'test pipeline resizes every image to 300 x '
                            '300)')
    assert pyramid_view_problem(ssd, [[300, 300]], [ScaleSpec(
        factor=1.0)]) is None


def test_a_pad_stage_pads_views_and_keeps_their_scale(tiny_demo_root):
    """The fix the view check names: mmdet's Pad(size=(w, h)) after the
    resizes pads a view to at least that size and keeps its
    scale_factor (SnipTTAModel matches views to scales by it); the runner
    reads it from the pipeline (pipeline_view_pad)."""
    from mmengine.dataset import Compose

    from mmsnip.models.input_sizes import \
        pipeline_view_pad as _view_pad
    from mmsnip.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='TestTimeAug', transforms=[
            [dict(type='ResizeToScale', scale=dict(factor=0.5)),
             dict(type='ResizeToScale', scale=dict(factor=1.0))],
            [dict(type='Pad', size=(288, 288))],
            [dict(type='PackDetInputs', meta_keys=(
                'img_id', 'img_path', 'ori_shape', 'img_shape',
                'scale_factor'))]])]
    assert _view_pad(pipeline) == (288, 288)
    assert _view_pad(pipeline[:1]) is None
    image = osp.join(tiny_demo_root, 'val', sorted(os.listdir(
        osp.join(tiny_demo_root, 'val')))[0])
    views = Compose(pipeline)(dict(img_path=image, img_id=0))
    unpadded = copy.deepcopy(pipeline)
    del unpadded[1]['transforms'][1]
    plain = Compose(unpadded)(dict(img_path=image, img_id=0))
    for view, alone in zip(views['inputs'], plain['inputs']):
        assert view.shape[1:] == tuple(max(v, 288)
                                       for v in alone.shape[1:])
    assert min(plain['inputs'][0].shape[1:]) < 288  # half: padded
    assert [s.scale_factor for s in views['data_samples']] == [
        s.scale_factor for s in plain['data_samples']]


def test_snip_runner_refuses_ddod_on_small_test_views(tiny_demo_root,
                                                      tmp_path, monkeypatch):
    """Through SnipRunner, as tools/test.py --tta builds it: the SNIPER
    demo config with DDOD (320 px chips, padded) and a pyramid scale that
    halves the images: refused when the test loop is built, before the
    first image; with a Pad stage to 288 px it builds."""
    import logging

    from mmengine.config import ConfigDict

    from mmsnip.engine import SnipRunner
    from mmsnip.utils.preflight import UserInputError
    cfg, model = _demo_config_with_ddod(tiny_demo_root, tmp_path)
    model.data_preprocessor.batch_augments = [
        dict(type='BatchFixedSizePad', size=(320, 320))]
    for chip_cfg in (cfg.chip_cfg, cfg.train_dataloader.dataset.chip_cfg):
        chip_cfg.chip_size = 320
    cfg.tta_model.scales[1]['factor'] = 0.5
    resizes = cfg.tta_pipeline[1].transforms[0]
    resizes[1]['scale'] = dict(factor=0.5)
    cfg.model = ConfigDict(**cfg.tta_model, module=model)  # --tta
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    runner = SnipRunner.from_cfg(copy.deepcopy(cfg))
    with pytest.raises(UserInputError, match=r'DeformConv2dPack\) fails on '
                       r'a .* input .* tta_model.scales\[1\] \(factor=0.5\) '
                       'resizes "val_'):
        runner.test_loop
    # a data list without image sizes: not checked, and the log says so
    from mmdet.datasets import CocoDataset
    full = CocoDataset.get_data_info
    monkeypatch.setattr(CocoDataset, 'get_data_info', lambda self, i: {
        k: v for k, v in full(self, i).items() if k != 'height'})
    runner = SnipRunner.from_cfg(copy.deepcopy(cfg))
    with logged_messages(logging.WARNING) as warnings:
        assert runner.test_loop is not None
    assert [w for w in warnings if 'smallest inputs' in w] == [
        'SnipRunner: the detector was not run on the smallest inputs of '
        'SnipTTAModel: test_dataloader.dataset (CocoDataset) gives no '
        'image sizes ("height" / "width" in its data list)']
    monkeypatch.undo()
    cfg.tta_pipeline[1].transforms.insert(1, [dict(type='Pad',
                                                   size=(288, 288))])
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    runner = SnipRunner.from_cfg(copy.deepcopy(cfg))
    assert runner.test_loop is not None


def _focus_scales(min_size=128, first=dict(factor=1.0)):
    from mmsnip.chips import focus_scales
    return focus_scales([
        dict(first, valid_range=(40, None), threshold=0.5, dilation=3,
             min_size=min_size),
        dict(factor=2.0, valid_range=(0, 60))], 'AutoFocusTTAModel.scales')


def test_cascade_and_tile_views_ddod_refused_others_accepted():
    """AutoFocusTTAModel feeds the detector whole images at its first
    scale and FocusChips (at least min_size, clipped to the image) at the
    later ones; SlicedTTAModel tiles (tile_size x factor, clipped to a
    smaller image) and the whole image at full_image_factor. DDOD is
    refused on each kind of view under 288 px, naming the view and the
    setting to change; Faster R-CNN and RetinaNet take them all."""
    from mmsnip.models.input_sizes import (cascade_views, tile_views,
                                           tta_input_problem)
    ddod = _mmdet_model('ddod/ddod_r50_fpn_1x_coco.py')
    # FocusChips of 128 px (min_size, in the next scale's pixels)
    views = cascade_views([[400, 600]], _focus_scales(), 16,
                          images=['a.jpg'])
    assert views.shapes.tolist() == [[400, 600], [128, 128]]
    assert tta_input_problem(ddod, views) == (
        'model.bbox_head.cls_convs.0 (ConvModule), in model.bbox_head.'
        'cls_convs.0.conv (DeformConv2dPack) fails on a 128 x 128 input '
        '(RuntimeError: input image is smaller than kernel), the size '
        '(width x height, padded) of an input of the AutoFocus cascade '
        '(AutoFocusTTAModel): a FocusChip of tta_model.scales[1] '
        '(factor=2.0) in "a.jpg" of test_dataloader.dataset (600 x 400) '
        'is 128 x 128 or less (at least scales[0].min_size=128, 128 px at '
        'that scale, clipped to the chip it is planned on and to the '
        'image), so the test would stop there; the detector takes inputs '
        'of 288 px and more: raise tta_model.scales[0].min_size to 288 or '
        "more (min_size_frame='next')")
    assert tta_input_problem(ddod, cascade_views(
        [[400, 600]], _focus_scales(288), 16)) is None
    # a panorama: the whole image at max_side=512 is 512 x 32
    panorama = cascade_views([[500, 8000]], _focus_scales(
        288, dict(max_side=512)), 16, images=['pano.jpg'])
    problem = tta_input_problem(ddod, panorama)
    assert 'fails on a 512 x 32 input' in problem
    assert ('tta_model.scales[0] (max_side=512) resizes "pano.jpg" of '
            'test_dataloader.dataset (8000 x 500) to 512 x 32 (the whole '
            'image)') in problem
    assert problem.endswith(
        'give tta_model.scales[0] a factor rule that resizes "pano.jpg" to '
        '288 px or more per side (factor >= 0.576), as the cascade pads '
        'its inputs only to pad_size_divisor')
    tiles = tile_views([[400, 600]], 128, 2.0, 0.25, ['a.jpg'])
    assert tiles.shapes.tolist() == [[256, 256], [100, 150]]
    problem = tta_input_problem(ddod, tile_views([[400, 600]], 128, 2.0,
                                                 images=['a.jpg']))
    assert ('of an input of the sliced test (SlicedTTAModel): a tile of '
            'tta_model.tile_size=128 at factor=2 of "a.jpg" of '
            'test_dataloader.dataset (600 x 400) is 256 x 256, so the test '
            'would stop there') in problem
    assert problem.endswith('set tta_model.tile_size to 144 or more (tiles '
                            'are tile_size x factor=2 px)')
    problem = tta_input_problem(ddod, tile_views([[400, 600]], 160, 2.0,
                                                 0.25, ['a.jpg']))
    assert 'tta_model.full_image_factor=0.25 resizes "a.jpg"' in problem
    assert problem.endswith('set tta_model.full_image_factor to 0.72 or '
                            'more, or full_image=False')
    assert tta_input_problem(ddod, tile_views([[400, 600]], 160, 2.0)) \
        is None
    for path in ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                 'retinanet/retinanet_r50_fpn_1x_coco.py'):
        model = _mmdet_model(path)
        assert tta_input_problem(model, views) is None, path
        assert tta_input_problem(model, panorama) is None, path
        assert tta_input_problem(model, tiles) is None, path


def test_ssd_is_refused_under_the_cascade_and_tiles():
    """SSD300's priors fit 300 x 300 inputs only: 300 px tiles of large
    images pass, a whole-image pass of another size does not."""
    from mmsnip.models.input_sizes import (cascade_views, tile_views,
                                           tta_input_problem)
    ssd = _mmdet_model('ssd/ssd300_coco.py')
    assert tta_input_problem(ssd, tile_views([[400, 600]], 300, 1.0)) \
        is None
    problem = tta_input_problem(ssd, tile_views([[400, 600]], 300, 1.0,
                                                1.0))
    assert "but the sliced test's inputs have other sizes (tta_model." \
        'full_image_factor=1 resizes image 0' in problem
    problem = tta_input_problem(ssd, cascade_views(
        [[400, 600]], _focus_scales(), 16), without="with mode='single'")
    assert "but the AutoFocus cascade's inputs have other sizes" in problem
    assert problem.endswith("test this detector with mode='single' (its "
                            'own test pipeline resizes every image to 300 '
                            'x 300)')


def _with_ddod(cfg, model, autofocus: bool):
    """``cfg`` with DDOD as its detector (inside its AutoFocus wrapper at
    the stride-16 level), chips of 320 px padded, wrapped in its
    ``tta_model`` as tools/test.py --tta does."""
    from mmengine.config import ConfigDict
    model.data_preprocessor.batch_augments = [
        dict(type='BatchFixedSizePad', size=(320, 320))]
    for chip_cfg in (cfg.chip_cfg, cfg.train_dataloader.dataset.chip_cfg):
        chip_cfg.chip_size = 320
    if autofocus:
        cfg.model.detector = model
        cfg.model.focus_head.update(in_channels=256, feat_channels=256)
        cfg.model.focus_level = 1
        cfg.tta_model.rpn_proposals_per_mpix = None  # DDOD has no RPN
        model = cfg.model
    cfg.model = ConfigDict(**cfg.tta_model, module=model)  # --tta
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg


@pytest.mark.parametrize('kind', ['autofocus', 'sliced'])
def test_snip_runner_refuses_ddod_on_small_cascade_and_tile_inputs(
        kind, tiny_demo_root, tmp_path):
    """Through SnipRunner, as tools/test.py --tta builds it: the AutoFocus
    demo config around DDOD (FocusChips of min_size=128) and the sliced
    demo config with DDOD (the whole image at 0.32x) are refused when the
    test loop is built, before the first image; the demo detector
    (Faster R-CNN) builds."""
    from mmengine.config import Config

    from mmsnip.engine import SnipRunner
    from mmsnip.utils.preflight import UserInputError
    base = {'autofocus': 'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py',
            'sliced': 'sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py'}[kind]
    _, ddod = _demo_config_with_ddod(tiny_demo_root, tmp_path)
    path = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                       str(tmp_path / f'{kind}.py'),
                       base=osp.join(REPO_ROOT, 'configs/autofocus', base))
    cfg = _with_ddod(Config.fromfile(path), ddod, kind == 'autofocus')
    runner = SnipRunner.from_cfg(copy.deepcopy(cfg))
    match = {'autofocus': r'DeformConv2dPack\) fails on a 128 x 128 input'
             r'.* a FocusChip of tta_model.scales\[1\] \(factor=1.0\) in '
             r'"val_.*raise tta_model.scales\[0\].min_size to 288',
             'sliced': r'DeformConv2dPack\) fails on a .* input .* '
             r'tta_model.full_image_factor=0.32 resizes "val_'}[kind]
    with pytest.raises(UserInputError, match=match):
        runner.test_loop
    plain = Config.fromfile(path)
    plain.model = dict(**plain.tta_model, module=plain.model)
    plain.test_dataloader.dataset.pipeline = plain.tta_pipeline
    assert SnipRunner.from_cfg(plain).test_loop is not None


def test_inferencer_refuses_ddod_on_small_inputs(tiny_demo_root, tmp_path,
                                                 monkeypatch):
    """MultiScaleInferencer's multi-scale modes run the whole network on
    the smallest inputs of each call's images before the first one: a
    40 x 30 image in pyramid mode with DDOD is refused, naming the view
    and the input; a large image is accepted, and an input already
    covered by one run before is not run again."""
    import numpy as np
    from mmengine.registry import DefaultScope

    from mmsnip.apis import MultiScaleInferencer
    from mmsnip.registry import MODELS
    from mmsnip.utils.preflight import UserInputError
    cfg, model = _demo_config_with_ddod(tiny_demo_root, tmp_path)
    cfg.model = model
    with DefaultScope.overwrite_default_scope('mmdet'):
        built = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'ddod.pth')
    torch.save(dict(state_dict=built.state_dict()), ckpt)
    infer = MultiScaleInferencer(cfg, ckpt, mode='pyramid', device='cpu')
    tiny = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(UserInputError, match=(
            r'DeformConv2dPack\) fails on a 64 x 32 input .* of a view of '
            r'the SNIP pyramid test: tta_model.scales\[1\] \(factor=1.0\) '
            r'resizes "00000000.jpg" of the inputs \(40 x 30\) to 40 x 30')):
        infer(tiny)
    runs = []
    original = input_sizes._runs
    monkeypatch.setattr(input_sizes, '_runs', lambda *a: runs.append(
        a[1:3]) or original(*a))
    large = np.zeros((320, 400, 3), np.uint8)
    assert len(infer(large)['predictions']) == 1
    assert runs  # the smallest views run once
    runs.clear()
    assert len(infer([large, large])['predictions']) == 2
    assert runs == []  # not again
