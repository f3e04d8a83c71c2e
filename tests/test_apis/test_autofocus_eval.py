# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.apis.autofocus: the evaluation scores the images it runs."""
import json

import pytest
from mmengine.config import Config

from mmsnip.apis.autofocus import coco_metric_for
from mmsnip.utils.preflight import UserInputError


class _Dataset:
    """The parts of a test dataset ``coco_metric_for`` reads."""
    metainfo = dict(classes=('a', ))

    def __init__(self, ann_file, objects=1):
        self.ann_file = ann_file
        self.objects = objects

    def get_data_info(self, idx):
        return dict(img_id=idx, instances=[
            dict(bbox=[0, 0, 10, 10], bbox_label=0, ignore_flag=0)
        ] * self.objects)


def test_ground_truth_must_come_from_the_dataset_file(tmp_path):
    """CocoMetric reads its ground truth from its own ann_file: another
    file than the dataset's would score predictions against the wrong
    boxes (silently wrong AP), so it is refused naming both files."""
    cfg = Config(dict(test_evaluator=[
        dict(type='CocoMetric', ann_file=str(tmp_path / 'val.json')),
        dict(type='PixelMetric')
    ]))
    with pytest.raises(UserInputError, match=r'val\.json.*calib\.json'):
        coco_metric_for(cfg, _Dataset(str(tmp_path / 'calib.json')), [0])


def test_images_without_ground_truth_are_refused(tmp_path):
    """On images without annotated objects (a test split without
    annotations) COCOeval gives AP -1 for every setting: the sweep
    ranked its settings by it and wrote a calibration, the benchmark a
    table of -100 AP. Refused, naming the file and the fix."""
    ann = str(tmp_path / 'test.json')
    with open(ann, 'w') as f:
        json.dump(dict(images=[dict(id=i, file_name=f'{i}.jpg', height=20,
                                    width=20) for i in (0, 1)],
                       annotations=[], categories=[dict(id=1, name='a')]),
                  f)
    cfg = Config(dict(test_evaluator=[dict(type='CocoMetric',
                                           ann_file=ann)]))
    with pytest.raises(UserInputError, match=(
            r'the 2 evaluated image\(s\) of .*test\.json.* have no '
            r'annotated object.*AP is -1.*split with ground truth')):
        coco_metric_for(cfg, _Dataset(ann, objects=0), [0, 1])
    from mmsnip.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    assert coco_metric_for(cfg, _Dataset(ann), [0, 1]) is not None
