# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's label rule in every shipped detector family, built the way
SnipRunner builds it (its config rewritten by make_scale_aware_cfg), with
random weights: a chip whose only object is out of range gives exactly
zero in every positive-only loss, one with an in-range object does not;
detectors mmsnip cannot make scale-aware are refused by name."""
import os.path as osp
import sys

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmsnip.models.snip_labels import (check_scale_aware,
                                       make_scale_aware_cfg,
                                       scale_aware_problems)
from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)),
                            'test_configs'))
from shipped_configs import (SHIPPED, _no_pretrained,  # noqa: E402
                             mmdet_child)

# Losses that only positives (matched objects) produce.
POSITIVE_ONLY = ('bbox', 'iou', 'dfl', 'centerness', 'mask', 'l1')
SIZE = 128
# One 40 x 40 px object; valid ranges in chip pixels (sqrt(area) = 40).
BOX = [40.0, 40.0, 80.0, 80.0]
OUT_OF_RANGE = (0.0, 20.0)
IN_RANGE = (0.0, 1000.0)


def _build(path: str):
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(path)
    _no_pretrained(cfg.model)
    if 'num_queries' in cfg.model:
        cfg.model.num_queries = 50  # 128 px input: few encoder tokens
    model_cfg, _ = make_scale_aware_cfg(cfg.model)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _chip(valid_range, with_mask: bool) -> DetDataSample:
    lo, hi = valid_range
    valid = lo < 40.0 < hi
    sample = DetDataSample(metainfo=dict(
        img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), scale_factor=(1., 1.),
        pad_shape=(SIZE, SIZE)))
    gt = InstanceData(metainfo=dict(valid_range=valid_range))
    gt.bboxes = torch.tensor([BOX])
    gt.labels = torch.tensor([0])
    gt.scale_valid = torch.tensor([valid])
    if with_mask:
        mask = torch.zeros(1, SIZE, SIZE, dtype=torch.uint8)
        mask[:, 40:80, 40:80] = 1
        gt.masks = BitmapMasks(mask.numpy(), SIZE, SIZE)
    sample.gt_instances = gt
    sample.ignored_instances = InstanceData(
        bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    return sample


def _chip_losses(model, valid_range) -> dict:
    """The model's training losses on one chip holding :data:`BOX`."""
    with_mask = getattr(model, 'with_mask', False) or getattr(
        getattr(model, 'roi_head', None), 'with_mask', False) or hasattr(
            getattr(model, 'bbox_head', None), 'loss_mask')  # RTMDet-Ins
    torch.manual_seed(1)
    img = torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[img], data_samples=[_chip(valid_range, with_mask)]),
        training=True)
    model.train()
    return model.loss(data['inputs'], data['data_samples'])


def _positive_only_loss(model, valid_range) -> torch.Tensor:
    losses = _chip_losses(model, valid_range)
    total = torch.zeros(())
    names = []
    for name, value in losses.items():
        if any(k in name for k in POSITIVE_ONLY) and 'cls' not in name:
            names.append(name)
            values = value if isinstance(value, (list, tuple)) else [value]
            total = total + sum(v.detach().float().sum() for v in values)
    assert names, f'no positive-only loss among {sorted(losses)}'
    return total


@pytest.mark.parametrize('path', SHIPPED, ids=osp.basename)
def test_out_of_range_object_trains_no_positive(path):
    model = _build(path)
    assert scale_aware_problems(model) == []
    assert _positive_only_loss(model, OUT_OF_RANGE).item() == 0.0
    assert _positive_only_loss(model, IN_RANGE).item() > 0.0


@pytest.mark.parametrize('base', [
    'double_heads/dh-faster-rcnn_r50_fpn_1x_coco.py',
    'grid_rcnn/grid-rcnn_r50_fpn_gn-head_2x_coco.py',
    'ms_rcnn/ms-rcnn_r50-caffe_fpn_1x_coco.py',
    'htc/htc-without-semantic_r50_fpn_1x_coco.py',
    'sabl/sabl-faster-rcnn_r50_fpn_1x_coco.py',
    'libra_rcnn/libra-faster-rcnn_r50_fpn_1x_coco.py',
    'rpn/rpn_r50_fpn_1x_coco.py',
    'dynamic_rcnn/dynamic-rcnn_r50_fpn_1x_coco.py',
    'ghm/retinanet_r50_fpn_ghm-1x_coco.py',
    'pisa/retinanet-r50_fpn_pisa_1x_coco.py',
    # the encoder's proposals are matched and trained too (enc_loss_*)
    'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    # its box head learns the masks of its positives
    'rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py',
])
def test_other_mmdet_families_follow_the_rule(base, tmp_path):
    """mmdet families without a shipped config that SnipRunner accepts
    (their assigners rewritten, nothing refused) follow the rule too."""
    model = _build(mmdet_child(base, tmp_path))
    assert scale_aware_problems(model) == []
    assert _positive_only_loss(model, OUT_OF_RANGE).item() == 0.0
    assert _positive_only_loss(model, IN_RANGE).item() > 0.0


@pytest.mark.parametrize('base, module', [
    ('yolof/yolof_r50-c5_8xb8-1x_coco.py', 'model.bbox_head.assigner'),
    ('yolo/yolov3_d53_8xb8-320-273e_coco.py', 'model.bbox_head.assigner'),
    ('fsaf/fsaf_r50_fpn_1x_coco.py', 'model.bbox_head.assigner'),
    ('sabl/sabl-retinanet_r50_fpn_1x_coco.py',
     'model.bbox_head.assigner (ApproxMaxIoUAssigner)'),
    ('guided_anchoring/ga-retinanet_r50_fpn_1x_coco.py',
     'model.bbox_head.ga_assigner (ApproxMaxIoUAssigner)'),
    ('cascade_rpn/cascade-rpn_faster-rcnn_r50-caffe_fpn_1x_coco.py',
     'model.rpn_head (CascadeRPNHead)'),
    # FCOS's head with another tower: FCOS's rule needs its own subclass.
    ('nas_fcos/nas-fcos_r50-caffe_fpn_nashead-gn-head_4xb4-1x_coco.py',
     'model.bbox_head (NASFCOSHead)'),
    ('centernet/centernet_r18_8xb16-crop512-140e_coco.py',
     'model.bbox_head (CenterNetHead)'),
    # Mask heads that assign grid cells to objects themselves.
    ('solo/solo_r50_fpn_1x_coco.py', 'model.mask_head (SOLOHead)'),
    ('solov2/solov2_r50_fpn_1x_coco.py', 'model.mask_head (SOLOV2Head)'),
    # Heads that assign priors to objects themselves.
    ('foveabox/fovea_r50_fpn_4xb4-1x_coco.py', 'model.bbox_head (FoveaHead)'),
    ('centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py',
     'model.bbox_head (CenterNetUpdateHead)'),
    ('cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py',
     'model.bbox_head (CornerHead)'),
    # FCOSHead subclasses mmsnip has no scale-aware version of.
    ('autoassign/autoassign_r50-caffe_fpn_1x_coco.py',
     'model.bbox_head (AutoAssignHead)'),
    ('condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py',
     'model.bbox_head (CondInstBboxHead)'),
    # Assigners mmsnip has no rewrite for.
    ('reppoints/reppoints-moment_r50_fpn-gn_head-gn_1x_coco.py',
     'model.bbox_head.init_assigner (PointAssigner)'),
    ('guided_anchoring/ga-faster-rcnn_r50_fpn_1x_coco.py',
     'model.rpn_head.ga_assigner (ApproxMaxIoUAssigner)'),
    ('crowddet/crowddet-rcnn_r50_fpn_8xb2-30e_crowdhuman.py',
     'model.roi_head.bbox_assigner (MultiInstanceAssigner)'),
    # One-to-one matching without a scale-aware version.
    ('sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py',
     'model.roi_head.bbox_assigner[0] (HungarianAssigner)'),
    ('mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
     'model.panoptic_head.assigner (HungarianAssigner)'),
    ('ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py', 'model (DDQDETR)'),
])
def test_unaware_detectors_refused_by_name(base, module, tmp_path):
    model = _build(mmdet_child(base, tmp_path))
    problems = scale_aware_problems(model)
    assert any(p.startswith(module) for p in problems), problems
    with pytest.raises(ValueError, match='allow_unaware=True'):
        check_scale_aware(model, source=base)


def test_point_rend_trains_on_a_batch_without_a_valid_object(tmp_path):
    """A batch without a valid object (negative chips) has no positive
    RoI: mmdet's PointRend head stops on it; the rewritten head gives
    loss_point 0 with a (zero) gradient for every point-head parameter,
    and trains as before when an object is valid."""
    child = mmdet_child('point_rend/point-rend_r50-caffe_fpn_ms-1x_coco.py',
                        tmp_path)
    model = _build(child)
    assert type(model.roi_head).__name__ == 'ScaleAwarePointRendRoIHead'
    assert scale_aware_problems(model) == []
    losses = _chip_losses(model, OUT_OF_RANGE)
    assert losses['loss_point'].item() == 0.0
    assert _positive_only_loss(model, OUT_OF_RANGE).item() == 0.0
    model.zero_grad()
    sum(v if isinstance(v, torch.Tensor) else sum(v)
        for k, v in losses.items() if 'loss' in k).backward()
    for name, param in model.roi_head.point_head.named_parameters():
        assert param.grad is not None and not param.grad.any(), name
    assert _chip_losses(model, IN_RANGE)['loss_point'].item() > 0.0
    # mmdet's head: named before training, and it fails on such a batch.
    new, _ = make_scale_aware_cfg(Config.fromfile(child).model)
    new.roi_head.type = 'mmdet.PointRendRoIHead'
    with DefaultScope.overwrite_default_scope('mmdet'):
        plain = MODELS.build(new)
    (problem, ) = scale_aware_problems(plain)
    assert problem.startswith(
        'model.roi_head (PointRendRoIHead) fails on a batch without a valid '
        'object') and 'type="mmsnip.ScaleAwarePointRendRoIHead"' in problem
    with pytest.raises(AssertionError, match='RoI is a empty tensor'):
        _chip_losses(plain, OUT_OF_RANGE)


def test_subclass_of_a_rewritten_head_is_refused():
    """A user's subclass of YOLOXHead keeps YOLOX's objectness loss on
    every prior: refused, naming the scale-aware head to start from."""
    from mmdet.models.dense_heads import YOLOXHead
    from torch import nn

    class MyYOLOXHead(YOLOXHead):
        pass

    model = nn.Module()
    model.bbox_head = MyYOLOXHead(num_classes=2, in_channels=8,
                                  feat_channels=8, stacked_convs=1,
                                  strides=(8, ))
    problems = scale_aware_problems(model)
    assert len(problems) == 1
    assert problems[0].startswith('model.bbox_head (MyYOLOXHead)')
    # not "use ScaleAwareYOLOXHead": that would drop what the subclass
    # adds (CondInst's head given ScaleAwareFCOSHead fails to build)
    assert 'mmsnip has no scale-aware version of this YOLOXHead subclass; ' \
        'write one as mmsnip.ScaleAwareYOLOXHead does for YOLOXHead' in \
        problems[0]


def test_yolact_is_made_scale_aware(tmp_path):
    """Its box head's assigner and its semantic branch (the mask head)
    are rewritten; the semantic rule itself is tested with the head."""
    model = _build(mmdet_child('yolact/yolact_r50_1xb8-55e_coco.py', tmp_path))
    assert type(model.mask_head).__name__ == 'ScaleAwareYOLACTProtonet'
    assert scale_aware_problems(model) == []
    assert _positive_only_loss(model, OUT_OF_RANGE).item() == 0.0
    assert _positive_only_loss(model, IN_RANGE).item() > 0.0


def _losses(model, valid_range, empty=False) -> dict:
    torch.manual_seed(1)
    img = torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8)
    sample = _chip(valid_range, False)
    if empty:
        sample.gt_instances = sample.gt_instances[:0]
    data = model.data_preprocessor(
        dict(inputs=[img], data_samples=[sample]), training=True)
    model.train()
    losses = model.loss(data['inputs'], data['data_samples'])
    return {k: float(v.detach()) for k, v in losses.items()}


def test_free_anchor_bags_follow_the_rule(tmp_path):
    """FreeAnchor never calls its assigner: its scale-aware head gives only
    valid objects a positive bag, and an anchor on an invalid object is not
    pushed to background (less negative loss than on an empty chip)."""
    model = _build(
        mmdet_child('free_anchor/freeanchor_r50_fpn_1x_coco.py', tmp_path))
    assert type(model.bbox_head).__name__ == \
        'ScaleAwareFreeAnchorRetinaHead'
    assert scale_aware_problems(model) == []
    out, inside = _losses(model, OUT_OF_RANGE), _losses(model, IN_RANGE)
    empty = _losses(model, IN_RANGE, empty=True)
    assert out['positive_bag_loss'] == 0.0 < inside['positive_bag_loss']
    assert out['negative_bag_loss'] < empty['negative_bag_loss']
    # With every object valid it is mmdet's head (same weights: the class
    # swapped for one call).
    from mmdet.models.dense_heads import FreeAnchorRetinaHead
    aware = model.bbox_head
    model.bbox_head.__class__ = FreeAnchorRetinaHead
    plain = _losses(model, IN_RANGE)
    model.bbox_head.__class__ = type(aware)
    assert plain == inside


def test_assigner_calls_counts_per_holding_module():
    from mmdet.models.dense_heads import RetinaHead
    from torch import nn

    from mmsnip.models.snip_labels import AssignerCalls
    from mmsnip.models.task_modules.assigners import ScaleAwareMaxIoUAssigner

    model = nn.Module()
    model.bbox_head = RetinaHead(
        num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                              scales_per_octave=1, ratios=[1.0],
                              strides=[8]),
        train_cfg=dict(assigner=dict(type='mmsnip.ScaleAwareMaxIoUAssigner',
                                     pos_iou_thr=0.5, neg_iou_thr=0.4),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1,
                       pos_weight=-1, debug=False))
    assigner = model.bbox_head.assigner
    assert isinstance(assigner, ScaleAwareMaxIoUAssigner)
    calls = AssignerCalls(model)
    assert calls.uncalled() == ['model.bbox_head (RetinaHead)']
    priors = InstanceData(priors=torch.tensor([[0., 0., 10., 10.]]))
    gt = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]),
                      labels=torch.tensor([1]))
    result = assigner.assign(priors, gt)
    assert result.gt_inds.tolist() == [1]
    assert calls.uncalled() == []
    calls.reset()
    assert calls.uncalled() == ['model.bbox_head (RetinaHead)']
    calls.restore()
    assert 'assign' not in vars(assigner)
    assigner.assign(priors, gt)
    assert calls.uncalled() == ['model.bbox_head (RetinaHead)']


def test_assigner_calls_shared_assigner_counts_for_every_holder():
    from torch import nn

    from mmsnip.models.snip_labels import AssignerCalls
    from mmsnip.models.task_modules.assigners import ScaleAwareMaxIoUAssigner

    shared = ScaleAwareMaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4)
    model = nn.Module()
    model.a, model.b = nn.Module(), nn.Module()
    model.a.assigner = model.b.assigner = shared
    calls = AssignerCalls(model)
    assert calls.uncalled() == ['model.a (Module)', 'model.b (Module)']
    shared.assign(InstanceData(priors=torch.tensor([[0., 0., 10., 10.]])),
                  InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]),
                               labels=torch.tensor([0])))
    assert calls.uncalled() == []
    calls.restore()
    assert 'assign' not in vars(shared)


def test_one_to_one_matching_is_not_offered_the_generic_wrapper():
    """A Hungarian assigner mmsnip has no rewrite for (Sparse R-CNN,
    QueryInst, MaskFormer): refused without the ScaleValidAssigner advice,
    which would pass every check and change nothing there."""
    from mmdet.models.task_modules.assigners import (HungarianAssigner,
                                                     MaxIoUAssigner)
    from torch import nn
    model = nn.Module()
    model.roi_head = nn.Module()
    model.roi_head.assigner = HungarianAssigner(
        match_costs=[dict(type='FocalLossCost', weight=2.0)])
    model.bbox_head = nn.Module()
    model.bbox_head.assigner = MaxIoUAssigner(0.5, 0.4)
    problems = {p.split(' ')[0]: p for p in scale_aware_problems(model)}
    hungarian = problems['model.roi_head.assigner']
    assert 'one-to-one matching' in hungarian
    assert 'ScaleValidAssigner", assigner' not in hungarian
    assert 'ScaleValidAssigner", assigner' in problems[
        'model.bbox_head.assigner']


def test_invalid_threshold_is_at_most_the_assigners_positive_one(tmp_path):
    """PAA takes anchors of IoU >= 0.1 as candidates: those of an invalid
    object up to 0.3 are ignored too, not trained as background; RetinaNet
    (positive from 0.5) keeps the paper's 0.3."""
    def assigner(base):
        new, _ = make_scale_aware_cfg(
            Config.fromfile(mmdet_child(base, tmp_path)).model)
        return new.train_cfg.assigner

    paa = assigner('paa/paa_r50_fpn_1x_coco.py')
    assert paa.type == 'mmsnip.ScaleAwareMaxIoUAssigner'
    assert paa.pos_iou_thr == 0.1 and paa.invalid_iou_thr == 0.1
    retina = assigner('retinanet/retinanet_r50_fpn_1x_coco.py')
    assert retina.invalid_iou_thr == 0.3
