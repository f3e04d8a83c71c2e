# Copyright (c) mmsnip contributors. All rights reserved.
"""Masks through the multi-scale test models (mmdet's TTA drops them).

A tiny Mask R-CNN inside ``AutoFocus`` (random weights; constant positive
mask logits, so that every mask fills its box, which makes "aligned with
its box" a sharp check) runs on a demo image through ``SnipTTAModel``,
``AutoFocusTTAModel`` and ``SlicedTTAModel``.
"""
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from mmsnip.chips import EVERY_PIXEL
from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules
from test_models.test_autofocus_tta import (SCALES, _autofocus_tta, _image,
                                            _run_autofocus, _run_snip)
from test_models.test_detectors_snip import mask_rcnn

register_all_modules(init_default_scope=False)
STAGES = {'focus_map', 'chip_generation', 'crop_resize', 'detector', 'merge'}


@pytest.fixture(scope='module')
def mask_autofocus():
    torch.manual_seed(0)
    cfg = ConfigDict(
        type='AutoFocus', detector=mask_rcnn(),
        focus_head=dict(type='FocusPixelHead', in_channels=32,
                        feat_channels=32, stride=16),
        focus_level=2)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():  # mask logits +10 everywhere: masks = boxes
        model.detector.roi_head.mask_head.conv_logits.weight.zero_()
        model.detector.roi_head.mask_head.conv_logits.bias.fill_(10.0)
    return model.eval()


def _assert_masks_fill_their_boxes(pred, hw):
    """Masks at ORIGINAL size, bool, each covering its box (+-1 px)."""
    masks, boxes = pred.masks, pred.bboxes
    assert masks.dtype == torch.bool
    assert tuple(masks.shape) == (len(boxes), ) + tuple(hw)
    ys = torch.arange(hw[0]).view(1, -1, 1) + 0.5
    xs = torch.arange(hw[1]).view(1, 1, -1) + 0.5
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    inner = (xs > x1 + 1) & (xs < x2 - 1) & (ys > y1 + 1) & (ys < y2 - 1)
    outer = (xs > x1 - 1) & (xs < x2 + 1) & (ys > y1 - 1) & (ys < y2 + 1)
    assert not (masks & ~outer).any(), 'mask pixels outside their box'
    assert (masks | ~inner).all(), 'box interior missing from its mask'


def test_snip_tta_keeps_masks_in_original_coordinates(mask_autofocus,
                                                      tiny_demo_root):
    info = _image(tiny_demo_root)
    result = _run_snip(mask_autofocus, info, torch_resize=True)
    pred = result.pred_instances
    assert len(pred) > 0
    _assert_masks_fill_their_boxes(pred, result.metainfo['ori_shape'])
    assert set(result.metainfo['stage_seconds']) == {'detector', 'merge'}


def test_autofocus_everywhere_equals_snip_with_masks(mask_autofocus,
                                                     tiny_demo_root):
    info = _image(tiny_demo_root)
    full = _run_snip(mask_autofocus, info, torch_resize=True)
    cascade = _run_autofocus(_autofocus_tta(mask_autofocus, EVERY_PIXEL),
                             info)
    assert cascade.metainfo['chips_per_scale'] == [1, 1, 1]
    a, b = full.pred_instances, cascade.pred_instances
    assert len(a) > 0 and len(a) == len(b)
    torch.testing.assert_close(a.bboxes, b.bboxes, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-4)
    assert torch.equal(a.labels, b.labels)
    assert a.masks.shape == b.masks.shape
    differ = (a.masks != b.masks).float().mean().item()
    assert differ < 1e-4, differ
    seconds = cascade.metainfo['stage_seconds']
    assert set(seconds) == STAGES
    assert all(v >= 0 for v in seconds.values()) and seconds['detector'] > 0


def test_autofocus_chips_paste_masks_at_their_windows(mask_autofocus,
                                                      tiny_demo_root):
    """Oracle FocusChips (around the small ground-truth objects, smaller
    than the image): masks of chip detections are pasted at the chip's
    offset, still aligned with their boxes."""
    scales = [dict(s, threshold=0.5, dilation=1, min_size=64)
              for s in SCALES]
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(type='AutoFocusTTAModel',
                                module=mask_autofocus, scales=scales,
                                oracle=True))
        pipeline = Compose([
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='mmdet.PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
        ])
        info = dict(_image(tiny_demo_root))
        info['instances'] = _instances(tiny_demo_root, 'val_000000.jpg')
        data = pseudo_collate([pipeline(info)])
    result = tta.test_step(data)[0]
    h, w = result.metainfo['ori_shape']
    assert result.metainfo['chips_per_scale'][0] == 1
    # finer scales ran on chips, not on the whole image
    assert result.metainfo['chips_per_scale'][2] > 0
    assert result.metainfo['pixels_per_scale'][2] < 4 * h * w
    pred = result.pred_instances
    assert len(pred) > 0
    _assert_masks_fill_their_boxes(pred, (h, w))


def _instances(root, file_name):
    """The COCO annotations of one demo image as mmdet ``instances``."""
    import json
    import os.path as osp
    with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
        coco = json.load(f)
    img = next(i for i in coco['images'] if i['file_name'] == file_name)
    return [dict(bbox=[a['bbox'][0], a['bbox'][1],
                       a['bbox'][0] + a['bbox'][2],
                       a['bbox'][1] + a['bbox'][3]],
                 bbox_label=0, ignore_flag=0)
            for a in coco['annotations'] if a['image_id'] == img['id']]


def test_sliced_tta_pastes_tile_masks(mask_autofocus, tiny_demo_root):
    with DefaultScope.overwrite_default_scope('mmsnip'):
        sliced = MODELS.build(dict(type='SlicedTTAModel',
                                   module=mask_autofocus, tile_size=128,
                                   overlap=32, factor=1.5))
    result = _run_autofocus(sliced, _image(tiny_demo_root))
    h, w = result.metainfo['ori_shape']
    assert result.metainfo['chips_per_scale'] == [len(sliced.tiles(h, w))]
    pred = result.pred_instances
    assert len(pred) > 0
    _assert_masks_fill_their_boxes(pred, (h, w))
    # detections away from the image's top-left tile got offset masks
    assert (pred.bboxes[:, 0] > 128).any()
    assert set(result.metainfo['stage_seconds']) == STAGES - {'focus_map'}


def test_flipped_views_bring_masks_back(mask_autofocus, tiny_demo_root):
    """A horizontally flipped view: boxes and masks both come back to the
    image frame, so they still agree."""
    scale = SCALES[1]
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(type='SnipTTAModel', module=mask_autofocus,
                                scales=[scale]))
        pipeline = Compose([
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                [dict(type='ResizeToScale', scale=scale)],
                [dict(type='RandomFlip', prob=1.0,
                      direction='horizontal')],
                [dict(type='mmdet.PackDetInputs', meta_keys=(
                    'img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction'))]])])
        data = pseudo_collate([pipeline(dict(_image(tiny_demo_root)))])
    with torch.no_grad():
        result = tta.test_step(data)[0]
    pred = result.pred_instances
    assert len(pred) > 0
    h, w = result.metainfo['ori_shape']
    _assert_masks_fill_their_boxes(pred, (h, w))
    # a box in the left half of the image (it was in the right half of the
    # flipped view the detector saw)
    assert (pred.bboxes[:, 2] < w / 2).any()
    assert np.isfinite(result.metainfo['stage_seconds']['detector'])
