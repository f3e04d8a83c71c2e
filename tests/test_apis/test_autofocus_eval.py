# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.apis.autofocus: the evaluation scores the images it runs."""
import pytest
from mmengine.config import Config

from mmsnip.apis.autofocus import coco_metric_for
from mmsnip.utils.preflight import UserInputError


class _Dataset:
    """The parts of a test dataset ``coco_metric_for`` reads."""
    metainfo = dict(classes=('a', ))

    def __init__(self, ann_file):
        self.ann_file = ann_file

    def get_data_info(self, idx):
        return dict(img_id=idx)


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
