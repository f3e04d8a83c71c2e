# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP label assignment inside real MMDetection detectors (CPU, tiny).

Each detector is mmdet's own config (``mmengine.hub.get_config``), made
tiny (ResNet-18 with 16 base channels, 32-channel FPN) and switched to the
mmsnip assigners / sampler / head by config fields only, as a user would.
"""

import os.path as osp

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmsnip.models import (ScaleAwareFCOSHead, ScaleAwareMaxIoUAssigner,
                           ScaleAwareRandomSampler, ScaleAwareRoIAssigner)
from mmsnip.models.utils import scale_valid_mask, valid_range_of
from mmsnip.registry import MODELS

SIZE = 128
VALID_RANGE = (16.0, 96.0)  # sqrt(area), network-input pixels
# The RPN assigner the two-stage configs state (its one home).
RPN_ASSIGNER = Config.fromfile(
    osp.join(REPO_ROOT, 'configs/_base_/sniper/two_stage_labels.py')
).snip_rpn_assigner.to_dict()
ROI_SAMPLER = dict(
    type='mmsnip.ScaleAwareRandomSampler', num=64, pos_fraction=0.25)


def _roi_assigner(iou):
    return dict(
        type='mmsnip.ScaleAwareRoIAssigner',
        pos_iou_thr=iou,
        neg_iou_thr=iou,
        min_pos_iou=iou,
        match_low_quality=False)


def _tiny(model):
    model.backbone.update(depth=18, base_channels=16, init_cfg=None)
    model.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    if 'rpn_head' in model:
        model.rpn_head.update(in_channels=32, feat_channels=32)
        model.train_cfg.rpn.assigner = RPN_ASSIGNER
        model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    return model


def faster_rcnn():
    model = _tiny(
        get_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py').model)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    model.roi_head.bbox_head.update(
        in_channels=32, fc_out_channels=64, num_classes=3)
    model.train_cfg.rcnn.update(
        assigner=_roi_assigner(0.5), sampler=ROI_SAMPLER)
    return model


def mask_rcnn():
    model = _tiny(
        get_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py').model)
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        model.roi_head[key].out_channels = 32
    model.roi_head.bbox_head.update(
        in_channels=32, fc_out_channels=64, num_classes=3)
    model.roi_head.mask_head.update(
        in_channels=32, conv_out_channels=32, num_convs=1, num_classes=3)
    model.train_cfg.rcnn.update(
        assigner=_roi_assigner(0.5), sampler=ROI_SAMPLER)
    return model


def cascade_rcnn():
    model = _tiny(
        get_config(
            'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py').model)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    for head in model.roi_head.bbox_head:
        head.update(in_channels=32, fc_out_channels=64, num_classes=3)
    for stage, iou in zip(model.train_cfg.rcnn, (0.5, 0.6, 0.7)):
        stage.update(assigner=_roi_assigner(iou), sampler=ROI_SAMPLER)
    return model


def retinanet():
    model = _tiny(
        get_config('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py').model)
    model.neck.update(start_level=1, num_outs=5)
    model.bbox_head.update(
        in_channels=32, feat_channels=32, num_classes=3, stacked_convs=1)
    model.train_cfg.assigner = dict(
        RPN_ASSIGNER,
        pos_iou_thr=0.5,
        neg_iou_thr=0.4,
        min_pos_iou=0,
        match_low_quality=True)
    return model


def tridentnet(test_branch_idx: int = 1):
    """mmdet's TridentNet (C4, three branches sharing their weights; R-50
    at 128 px: its shared head has no narrower setting), small box
    budgets, every detection kept at test. ``test_branch_idx=-1`` tests
    with all branches merged, else with that branch only."""
    model = get_config(
        'mmdet::tridentnet/tridentnet_r50-caffe_1x_coco.py').model
    # No pretrained weights here; mmdet's TridentConv is not an nn.Conv2d,
    # so ResNet's own Kaiming init (layer='Conv2d') leaves its weights
    # uninitialised memory (NaN in some processes): name it.
    model.backbone.update(
        init_cfg=[dict(type='Kaiming', layer=['Conv2d', 'TridentConv']),
                  dict(type='Constant', val=1, layer='_BatchNorm')],
        test_branch_idx=test_branch_idx)
    model.roi_head.shared_head.init_cfg = None
    model.roi_head.update(test_branch_idx=test_branch_idx)
    model.roi_head.bbox_head.num_classes = 3
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=64)
    model.test_cfg.rcnn.score_thr = 0.0
    return model


def fcos():
    model = _tiny(
        get_config('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py').model)
    model.backbone.update(style='pytorch', norm_cfg=dict(type='BN'))
    model.data_preprocessor.update(mean=[0, 0, 0], std=[1, 1, 1])
    model.neck.update(start_level=1, num_outs=5)
    model.bbox_head.update(
        type='mmsnip.ScaleAwareFCOSHead',
        in_channels=32,
        feat_channels=32,
        num_classes=3,
        stacked_convs=1)
    return model


DETECTORS = dict(
    faster_rcnn=faster_rcnn,
    mask_rcnn=mask_rcnn,
    cascade_rcnn=cascade_rcnn,
    retinanet=retinanet,
    fcos=fcos)


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return MODELS.build(ConfigDict(cfg))


@pytest.fixture(scope='module')
def models():
    """Build each tiny detector once for all tests of this module."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = _build(DETECTORS[name]()).train()
        return cache[name]

    return get


def _sample(boxes, valid, labels, with_mask):
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(SIZE, SIZE),
            ori_shape=(SIZE, SIZE),
            pad_shape=(SIZE, SIZE),
            scale_factor=(1.0, 1.0)))
    gt = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        scale_valid=torch.tensor(valid, dtype=torch.bool))
    gt.set_metainfo(dict(valid_range=VALID_RANGE))
    if with_mask:
        masks = np.zeros((len(boxes), SIZE, SIZE), np.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, np.array(boxes, int)):
            m[y1:y2, x1:x2] = 1
        gt.masks = BitmapMasks(masks, SIZE, SIZE)
    sample.gt_instances = gt
    sample.ignored_instances = InstanceData(
        bboxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=torch.long))
    return sample


MIXED = [  # (boxes, scale_valid, labels) per image
    ([[10, 10, 50, 50], [0, 0, 128, 128],
      [70, 70, 80, 80]], [True, False, False], [0, 1, 2]),
    ([[60, 20, 110, 90], [5, 70, 45, 120]], [True, False], [2, 1]),
]
EMPTY = ([], [], [])
ONLY_INVALID = ([[0, 0, 120, 100], [40, 40, 50, 50]], [False, False], [1, 0])


def _loss(model, name, images):
    samples = [_sample(*img, with_mask=name == 'mask_rcnn') for img in images]
    torch.manual_seed(0)
    inputs = list(torch.rand(len(images), 3, SIZE, SIZE) * 255)
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), True)
    return model.loss(data['inputs'], data['data_samples'])


def _flat(losses):
    """``{name: tensor}`` of the loss terms (Cascade gives per-stage
    ``s0.loss_cls``...; RPN/RetinaNet give per-level lists)."""
    out = {}
    for key, value in losses.items():
        if 'loss' in key:
            out[key] = sum(value) if isinstance(value, list) else value
    return out


def _uses_mmsnip(model):
    if hasattr(model, 'rpn_head'):
        assert isinstance(model.rpn_head.assigner, ScaleAwareMaxIoUAssigner)
        samplers = model.roi_head.bbox_sampler
        assigners = model.roi_head.bbox_assigner
        for smp, asg in zip(
                *
            [x if isinstance(x, list) else [x]
             for x in (samplers, assigners)]):
            assert isinstance(smp, ScaleAwareRandomSampler)
            assert isinstance(asg, ScaleAwareRoIAssigner)
    elif isinstance(model.bbox_head, ScaleAwareFCOSHead):
        pass
    else:
        assert isinstance(model.bbox_head.assigner, ScaleAwareMaxIoUAssigner)


@pytest.mark.parametrize('name', sorted(DETECTORS))
def test_losses_with_mixed_validity(name, models):
    model = models(name)
    _uses_mmsnip(model)
    losses = _flat(_loss(model, name, MIXED))
    assert all(torch.isfinite(v).all() for v in losses.values()), losses
    sum(losses.values()).backward()


@pytest.mark.parametrize('name', sorted(DETECTORS))
def test_empty_and_only_invalid_targets(name, models):
    """torchvision-style: no boxes, or only invalid ones, train without
    error; with no valid box the dense heads have no box loss."""
    model = models(name)
    two_stage = hasattr(model, 'rpn_head')
    # dense box losses, zero when no box is valid
    dense = ['loss_rpn_bbox'] if two_stage else ['loss_bbox']
    if name == 'fcos':
        dense.append('loss_centerness')
    # batches of two: BatchNorm on FCOS's 1x1 top level needs two values
    for images in ([EMPTY, ONLY_INVALID], [EMPTY] * 2):
        losses = _flat(_loss(model, name, images))
        assert all(torch.isfinite(v).all() for v in losses.values())
        for key in dense:
            assert losses[key] == 0, (images, key)
        if two_stage and images == [EMPTY] * 2:  # no box at all: RoI too
            for key in losses:
                if key.endswith('loss_bbox') or key.endswith('loss_mask'):
                    assert losses[key] == 0, key


def test_contract_reaches_the_assigners(models):
    """``scale_valid`` and ``metainfo['valid_range']`` survive the data
    preprocessor, TwoStageDetector's deep copy for the RPN and the RoI
    head, so the assigners see them."""
    model = models('faster_rcnn')
    seen = []

    def spy(assigner, tag):
        original = assigner.assign

        def assign(pred, gt, *args, **kwargs):
            seen.append(
                (tag, scale_valid_mask(gt).tolist(), valid_range_of(gt)))
            return original(pred, gt, *args, **kwargs)

        return assign

    model.rpn_head.assigner.assign = spy(model.rpn_head.assigner, 'rpn')
    model.roi_head.bbox_assigner.assign = spy(model.roi_head.bbox_assigner,
                                              'rcnn')
    try:
        _loss(model, 'faster_rcnn', MIXED)
    finally:
        del model.rpn_head.assigner.assign, model.roi_head.bbox_assigner.assign
    expected = [img[1] for img in MIXED]
    for tag in ('rpn', 'rcnn'):
        got = [s for s in seen if s[0] == tag]
        assert [s[1] for s in got] == expected
        assert all(s[2] == VALID_RANGE for s in got)


DOC_CONFIG = """
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
model = dict(
    train_cfg=dict(
        rpn=dict(assigner=dict(type='mmsnip.ScaleAwareMaxIoUAssigner',
                               invalid_iou_thr=0.3)),
        rcnn=dict(assigner=dict(type='mmsnip.ScaleAwareRoIAssigner'),
                  sampler=dict(type='mmsnip.ScaleAwareRandomSampler'))))
"""


def test_documented_config_diff(tmp_path):
    """The diff of docs/snip_assignment.md over an ``mmdet::`` base: the
    ``mmsnip.`` types resolve and mmdet's other fields are kept."""
    path = tmp_path / 'snip_faster-rcnn.py'
    path.write_text(DOC_CONFIG)
    cfg = Config.fromfile(str(path)).model
    assert cfg.train_cfg.rpn.assigner.pos_iou_thr == 0.7  # inherited
    assert cfg.train_cfg.rcnn.sampler.num == 512
    cfg.backbone.update(depth=18, base_channels=16, init_cfg=None)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.rpn_head.update(in_channels=32, feat_channels=32)
    cfg.roi_head.bbox_roi_extractor.out_channels = 32
    cfg.roi_head.bbox_head.update(in_channels=32, fc_out_channels=64)
    model = _build(cfg)
    assert type(model.rpn_head.assigner) is ScaleAwareMaxIoUAssigner
    assert model.rpn_head.assigner.invalid_iou_thr == 0.3
    assert type(model.roi_head.bbox_assigner) is ScaleAwareRoIAssigner
    assert model.roi_head.bbox_assigner.pos_iou_thr == 0.5
    assert type(model.roi_head.bbox_sampler) is ScaleAwareRandomSampler
    assert model.roi_head.bbox_sampler.num == 512


def test_plain_data_trains_as_mmdet(models):
    """No SNIP fields (plain MMDetection data): no error, same code path."""
    model = models('cascade_rcnn')
    samples = [_sample(*img, with_mask=False) for img in MIXED]
    for sample in samples:  # no scale_valid, no valid_range
        sample.gt_instances = InstanceData(
            bboxes=sample.gt_instances.bboxes,
            labels=sample.gt_instances.labels)
    data = model.data_preprocessor(
        dict(
            inputs=list(torch.rand(2, 3, SIZE, SIZE) * 255),
            data_samples=samples), True)
    losses = _flat(model.loss(data['inputs'], data['data_samples']))
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_tridentnet_every_branch_follows_each_chips_validity():
    """TridentNet (mmdet's config, rewritten as SnipRunner does) repeats the
    batch's data samples once per branch, branch-major like its features:
    each of the 3 x 2 assigner calls sees its own chip's boxes,
    ``scale_valid`` and ``valid_range``, and applies the rule: in the RPN
    no anchor is positive for an invalid box and every anchor with IoU >
    0.3 with one is ignored, alike in every branch; in the RoI head every
    proposal outside the valid range is ignored (in range, it takes the
    label of any box: Sec. 3.3.4)."""
    from mmdet.structures.bbox import bbox_overlaps

    from mmsnip.chips import box_sizes, in_range
    from mmsnip.models.snip_labels import (make_scale_aware_cfg,
                                           scale_aware_problems)
    cfg, changes = make_scale_aware_cfg(tridentnet())
    assert len(changes) == 2  # the RPN and R-CNN assigners
    torch.manual_seed(0)
    model = _build(cfg)
    model.init_weights()  # TridentConv's too (tridentnet()'s init_cfg)
    model.train()
    assert scale_aware_problems(model) == []
    seen = {'rpn': [], 'rcnn': []}

    def spy(assigner, tag):
        original = assigner.assign

        def assign(pred, gt, *args, **kwargs):
            result = original(pred, gt, *args, **kwargs)
            seen[tag].append((pred.priors.detach(), gt, result.gt_inds))
            return result

        return assign

    rpn, rcnn = model.rpn_head.assigner, model.roi_head.bbox_assigner
    rpn.assign, rcnn.assign = spy(rpn, 'rpn'), spy(rcnn, 'rcnn')
    _loss(model, 'tridentnet', MIXED)
    for tag in ('rpn', 'rcnn'):
        assert len(seen[tag]) == 6  # 3 branches x 2 chips
        for k, (priors, gt, inds) in enumerate(seen[tag]):
            boxes, valid, _ = MIXED[k % 2]
            assert gt.bboxes.tolist() == boxes
            assert scale_valid_mask(gt).tolist() == valid
            assert valid_range_of(gt) == VALID_RANGE
            invalid = torch.tensor(valid).logical_not().nonzero()[:, 0]
            if tag == 'rpn':
                assert not torch.isin(inds - 1, invalid).any()
                iou = bbox_overlaps(priors, gt.bboxes[invalid])
                assert (inds[(iou > 0.3).any(1)] == -1).all()
            else:
                sizes = box_sizes(priors.double().numpy())
                outside = ~in_range(sizes, VALID_RANGE)
                assert (inds[torch.from_numpy(outside)] == -1).all()
    for k in range(2):  # the branches of a chip: the same anchors, labels
        assert torch.equal(seen['rpn'][k][2], seen['rpn'][k + 2][2])
        assert torch.equal(seen['rpn'][k][2], seen['rpn'][k + 4][2])
