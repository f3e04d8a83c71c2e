# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP label assignment inside real MMDetection detectors (CPU, tiny)."""
import copy

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules

register_all_modules(init_default_scope=False)

RPN_ASSIGNER = dict(type='mmsnip.ScaleAwareMaxIoUAssigner', pos_iou_thr=0.7,
                    neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True,
                    invalid_iou_thr=0.3)


def _roi_assigner(iou):
    return dict(type='mmsnip.ScaleAwareRoIAssigner', pos_iou_thr=iou,
                neg_iou_thr=iou, min_pos_iou=iou, match_low_quality=False)


def _tiny(model):
    model.backbone.update(depth=18, base_channels=16, init_cfg=None)
    model.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    return model


def faster_rcnn():
    model = _tiny(get_config(
        'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py').model)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    model.roi_head.bbox_head.update(in_channels=32, fc_out_channels=64,
                                    num_classes=3)
    model.train_cfg.rpn.assigner = RPN_ASSIGNER
    model.train_cfg.rcnn.assigner = _roi_assigner(0.5)
    return model


def mask_rcnn():
    model = _tiny(get_config(
        'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py').model)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        model.roi_head[key].out_channels = 32
    model.roi_head.bbox_head.update(in_channels=32, fc_out_channels=64,
                                    num_classes=3)
    model.roi_head.mask_head.update(in_channels=32, conv_out_channels=32,
                                    num_classes=3)
    model.train_cfg.rpn.assigner = RPN_ASSIGNER
    model.train_cfg.rcnn.assigner = _roi_assigner(0.5)
    return model


def cascade_rcnn():
    model = _tiny(get_config(
        'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py').model)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    for head in model.roi_head.bbox_head:
        head.update(in_channels=32, fc_out_channels=64, num_classes=3)
    model.train_cfg.rpn.assigner = RPN_ASSIGNER
    for stage, iou in zip(model.train_cfg.rcnn, (0.5, 0.6, 0.7)):
        stage.assigner = _roi_assigner(iou)
    return model


def retinanet():
    model = _tiny(get_config(
        'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py').model)
    model.neck.update(start_level=1, num_outs=5)
    model.bbox_head.update(in_channels=32, feat_channels=32, num_classes=3,
                           stacked_convs=1)
    model.train_cfg.assigner = dict(RPN_ASSIGNER, pos_iou_thr=0.5,
                                    neg_iou_thr=0.4, min_pos_iou=0)
    return model


def fcos():
    model = _tiny(get_config(
        'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py').model)
    model.backbone.update(style='pytorch', norm_cfg=dict(type='BN'))
    model.data_preprocessor.update(mean=[0, 0, 0], std=[1, 1, 1])
    model.neck.update(start_level=1, num_outs=5)
    model.bbox_head.update(type='mmsnip.ScaleAwareFCOSHead', in_channels=32,
                           feat_channels=32, num_classes=3, stacked_convs=1)
    return model


DETECTORS = dict(faster_rcnn=faster_rcnn, mask_rcnn=mask_rcnn,
                 cascade_rcnn=cascade_rcnn, retinanet=retinanet, fcos=fcos)


def _sample(boxes, valid, labels, with_mask, size=128):
    sample = DetDataSample(metainfo=dict(
        img_shape=(size, size), ori_shape=(size, size),
        pad_shape=(size, size), scale_factor=(1.0, 1.0),
        batch_input_shape=(size, size)))
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        scale_valid=torch.tensor(valid, dtype=torch.bool))
    gt.set_metainfo(dict(valid_range=(16.0, 96.0)))
    if with_mask:
        masks = np.zeros((len(boxes), size, size), np.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, np.array(boxes, int)):
            m[y1:y2, x1:x2] = 1
        gt.masks = BitmapMasks(masks, size, size)
    sample.gt_instances = gt
    sample.ignored_instances = InstanceData(
        bboxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=torch.long))
    return sample


@pytest.mark.parametrize('name', sorted(DETECTORS))
def test_losses_with_scale_validity(name):
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(ConfigDict(DETECTORS[name]()))
    model.train()
    with_mask = name == 'mask_rcnn'
    samples = [
        _sample([[10, 10, 50, 50], [0, 0, 128, 128], [70, 70, 80, 80]],
                [True, False, False], [0, 1, 2], with_mask),
        _sample([[0, 0, 120, 100]], [False], [1], with_mask),  # only invalid
        _sample(np.zeros((0, 4)), [], [], with_mask),  # empty chip
    ]
    inputs = torch.rand(3, 3, 128, 128) * 255
    data = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=copy.deepcopy(samples)), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = 0
    for key, value in losses.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if 'loss' in key:
                assert torch.isfinite(v).all(), key
                total = total + v.sum()
    total.backward()
