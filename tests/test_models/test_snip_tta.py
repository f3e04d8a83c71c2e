# Copyright (c) mmsnip contributors. All rights reserved.
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmsnip.models import SnipTTAModel

SCALES = [dict(max_side=512, valid_range=(100, None)),
          dict(factor=1.0, valid_range=(32, 160)),
          dict(factor=2.0, valid_range=(0, 48))]


def _view(factor, boxes, scores, labels=None, ori=(1000, 800)):
    sample = DetDataSample(metainfo=dict(
        ori_shape=ori, img_shape=(int(ori[0] * factor), int(ori[1] * factor)),
        scale_factor=(factor, factor), img_path='x.jpg'))
    n = len(boxes)
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.zeros(n, dtype=torch.long) if labels is None else
        torch.tensor(labels))
    return sample


class _Detector(torch.nn.Module):
    """Stands in for the wrapped detector; merging never calls it."""

    def test_step(self, data):
        raise AssertionError('not used')


def _model():
    return SnipTTAModel(
        scales=SCALES, module=_Detector(),
        tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                     max_per_img=10))


def test_each_view_keeps_only_its_valid_range_then_nms():
    model = _model()
    views = [
        # coarse (512/1000): keeps the 200 px box, drops the 20 px one
        _view(0.512, [[0, 0, 200, 200], [10, 10, 30, 30]], [0.9, 0.8]),
        # 1x: keeps 50 px, drops 200 px
        _view(1.0, [[300, 300, 350, 350], [0, 0, 200, 200]], [0.7, 0.95]),
        # 2x: keeps the 20 px box (duplicates merge by NMS)
        _view(2.0, [[10, 10, 30, 30], [11, 11, 30, 30]], [0.6, 0.5]),
    ]
    merged = model._merge_single_sample(views)
    boxes = merged.pred_instances.bboxes.tolist()
    assert sorted(map(tuple, boxes)) == [(0, 0, 200, 200), (10, 10, 30, 30),
                                         (300, 300, 350, 350)]
    assert merged.pred_instances.scores.tolist() == pytest.approx(
        [0.9, 0.7, 0.6])
    assert merged.metainfo['pixels_per_scale'] == [512 * 409, 800000,
                                                   3200000]
    assert merged.metainfo['pixels'] == sum(
        merged.metainfo['pixels_per_scale'])


def test_view_from_another_scale_is_an_error():
    with pytest.raises(ValueError, match='tta_pipeline'):
        _model()._merge_single_sample([_view(1.3, [[0, 0, 50, 50]], [0.5])])


def test_no_detections():
    merged = _model()._merge_single_sample([_view(1.0, [], [])])
    assert merged.pred_instances.bboxes.shape == (0, 4)
