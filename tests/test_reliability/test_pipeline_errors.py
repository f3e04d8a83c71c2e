# Copyright (c) mmsnip contributors. All rights reserved.
"""A chip whose image cannot be loaded as annotated fails with an error
naming the dataset entry (docs/reliability.md)."""
import copy

import cv2
import numpy as np
import pytest
from mmdet.datasets import BaseDetDataset

from mmsnip.datasets import SniperDataset
from mmsnip.utils import register_all_modules

register_all_modules()

CHIP_CFG = dict(chip_size=128, chip_stride=32,
                scales=[dict(factor=1.0, valid_range=(0, None))])
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CropChip'),
    dict(type='PackChipInputs')
]


class OneImage(BaseDetDataset):
    METAINFO = dict(classes=('a', ))

    def __init__(self, info, **kwargs):
        self._info = info
        super().__init__(ann_file='', pipeline=[], serialize_data=False,
                         **kwargs)

    def load_data_list(self):
        return [copy.deepcopy(self._info)]


def _dataset(path, height=100, width=120):
    info = dict(img_id=7, img_path=str(path), height=height, width=width,
                instances=[dict(bbox=[10, 10, 40, 40], bbox_label=0,
                                ignore_flag=0)])
    return SniperDataset(dataset=OneImage(info), chip_cfg=CHIP_CFG,
                         pipeline=PIPELINE, cache_dir='')


def test_clean_image_loads(tmp_path):
    path = tmp_path / 'a.png'
    cv2.imwrite(str(path), np.full((100, 120, 3), 90, np.uint8))
    assert _dataset(path)[0]['inputs'].shape[-2:] == (100, 120)


def test_unreadable_image_names_the_entry(tmp_path):
    path = tmp_path / 'a.jpg'
    path.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    with pytest.raises(RuntimeError, match=r'image 7 \(.*a\.jpg\).*'
                       r'check_dataset\.py CONFIG --full-decode'):
        _dataset(path)[0]


def test_image_smaller_than_annotated_names_the_entry(tmp_path):
    path = tmp_path / 'a.png'
    cv2.imwrite(str(path), np.full((80, 120, 3), 90, np.uint8))
    with pytest.raises(RuntimeError,
                       match=r'image 7 .*decodes to 120x80 px but its '
                       r'annotation says 120x100'):
        _dataset(path)[0]
