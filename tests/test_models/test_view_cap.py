# Copyright (c) mmsnip contributors. All rights reserved.
"""view_cap: the detector's own per-image cap, found where mmdet keeps it
(mmdet's configs, random weights), replaced and restored; DETR-family
``topk`` caps clamped."""
import pytest
import torch
from mmengine.hub import get_config
from mmengine.registry import DefaultScope

from mmsnip.models.test_time_augs.view_cap import (check_view_cap,
                                                   detection_caps, view_cap)
from mmsnip.registry import MODELS

UNCAPPED = 2**31 - 1


def _build(config, **changes):
    model = get_config(f'mmdet::{config}').model
    model.backbone.init_cfg = None
    model.update(changes)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(model)


# config, where its caps are, the topk size per cap (None: a slice)
FAMILIES = [
    ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', ['roi_head'], [None]),
    ('cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py', ['roi_head'], [None]),
    ('retinanet/retinanet_r50_fpn_1x_coco.py', ['bbox_head'], [None]),
    ('solo/solo_r50_fpn_1x_coco.py', ['mask_head'], [None]),
    ('yolact/yolact_r50_1xb8-55e_coco.py', ['bbox_head', 'mask_head'],
     [None, None]),
    # softmax: one score per query
    ('detr/detr_r50_8xb2-150e_coco.py', ['bbox_head'], [100]),
    # sigmoid: num_queries * num_classes scores
    ('dino/dino-4scale_r50_8xb2-12e_coco.py', ['bbox_head'], [900 * 80]),
    ('sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py', ['roi_head'],
     [100 * 80]),
]


@pytest.mark.parametrize('config, where, sizes', FAMILIES)
def test_caps_are_found_replaced_and_restored(config, where, sizes):
    model = _build(config)
    caps = detection_caps(model)
    assert [w for w, _, _ in caps] == [f'{w}.test_cfg' for w in where]
    assert [s for _, _, s in caps] == sizes
    heads = [getattr(model, w) for w in where]
    before = [h.test_cfg.get('max_per_img') for h in heads]
    rpn = getattr(getattr(model, 'rpn_head', None), 'test_cfg', None)
    rpn_before = None if rpn is None else dict(rpn)
    for value in (-1, 7):
        with view_cap(model, value):
            for head, size in zip(heads, sizes):
                cap = UNCAPPED if value == -1 else value
                assert head.test_cfg['max_per_img'] == (
                    cap if size is None else min(cap, size))
            # the RPN's proposals are no detection cap
            assert rpn is None or dict(rpn) == rpn_before
        assert [h.test_cfg.get('max_per_img') for h in heads] == before
    with pytest.raises(KeyError), view_cap(model, 5):
        raise KeyError('in the block')
    assert [h.test_cfg.get('max_per_img') for h in heads] == before


def _dino_head():
    model = _build('dino/dino-4scale_r50_8xb2-12e_coco.py', num_queries=30)
    model.bbox_head.num_classes = 3  # the scores below have 3 columns
    return model


@pytest.mark.parametrize('value', [-1, 10**6])
def test_detr_topk_is_clamped_to_the_scores_it_ranks(value):
    """DINO ranks num_queries * num_classes sigmoid scores: a cap above
    that (no cap, or a large int) would crash torch.topk; clamped, every
    query-class pair is kept."""
    model = _dino_head()
    head = model.bbox_head
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    cls, boxes = torch.randn(30, 3), torch.rand(30, 4)
    with view_cap(model, value):
        assert head.test_cfg['max_per_img'] == 90
        out = head._predict_by_feat_single(cls, boxes, meta, rescale=False)
    assert len(out) == 90
    assert head.test_cfg['max_per_img'] == 300
    head.test_cfg['max_per_img'] = value if value > 0 else UNCAPPED
    with pytest.raises(RuntimeError):  # what the clamp prevents
        head._predict_by_feat_single(cls, boxes, meta, rescale=False)


def test_a_detr_head_without_its_key_gets_it_back_removed():
    """A DETR head's cap defaults to num_queries without the key."""
    model = _dino_head()
    del model.bbox_head.test_cfg['max_per_img']
    with view_cap(model, 50):
        assert model.bbox_head.test_cfg['max_per_img'] == 50
    assert 'max_per_img' not in model.bbox_head.test_cfg


def test_errors_name_the_module_and_the_fix():
    model = _build('retinanet/retinanet_r50_fpn_1x_coco.py')
    del model.bbox_head.test_cfg['max_per_img']
    with pytest.raises(TypeError, match=r'X: view_max_per_img=-1 found no '
                       r'.* in RetinaNet .* view_max_per_img=None'):
        check_view_cap(model, -1, 'X')
    check_view_cap(model, None, 'X')  # the detector's own: nothing to find
    with pytest.raises(ValueError, match='int >= 1, -1'):
        check_view_cap(model, 0, 'X')


def test_yolox_has_no_cap_so_only_no_cap_holds():
    """YOLOX keeps every detection after NMS: -1 holds as it is (the
    SNIPER YOLOX config), an int cannot be imposed."""
    model = _build('yolox/yolox_s_8xb8-300e_coco.py')
    assert detection_caps(model) == []
    check_view_cap(model, -1, 'X')
    with view_cap(model, -1):
        assert 'max_per_img' not in model.bbox_head.test_cfg
    with pytest.raises(ValueError, match='YOLOXHead has no per-image cap'):
        check_view_cap(model, 100, 'X')


def test_detr_head_without_num_queries_is_named():
    """A DETR-family head in a detector that says nothing of its queries
    (a user's own wrapper): the topk size is unknown, an error naming it
    (not a guess that crashes torch.topk)."""
    from torch import nn
    detr = _build('detr/detr_r50_8xb2-150e_coco.py')
    model = nn.Module()
    model.bbox_head = detr.bbox_head
    with pytest.raises(TypeError, match='Module has a DETRHead but no '
                       'num_queries: the size of its topk cap is unknown'):
        check_view_cap(model, -1, 'X')


def test_semi_supervised_caps_are_the_predicting_detectors():
    """SoftTeacher predicts with its teacher (``semi_test_cfg.predict_on``,
    or its student): the pyramid's view cap is that detector's (was:
    ``TypeError: SnipTTAModel: view_max_per_img=-1 found no per-image
    detection cap in SoftTeacher``, whose fix, a test_cfg with
    max_per_img, it already has)."""
    from mmsnip.models import SnipTTAModel
    model = get_config('mmdet::soft_teacher/soft-teacher_faster-rcnn_'
                       'r50-caffe_fpn_180k_semi-0.1-coco.py').model
    model.detector.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(model)
    for side in ('teacher', 'student'):
        model.semi_test_cfg = dict(predict_on=side)
        cfg = getattr(model, side).roi_head.test_cfg
        assert [c for _, c, _ in detection_caps(model)] == [cfg]
        with view_cap(model, 7):
            assert cfg['max_per_img'] == 7
        assert cfg['max_per_img'] == 100
    SnipTTAModel(scales=[dict(factor=1.0, valid_range=(0, None))],
                 module=model, view_max_per_img=-1)
