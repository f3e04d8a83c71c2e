# Copyright (c) mmsnip contributors. All rights reserved.
"""A chip whose image cannot be loaded as annotated fails with an error
naming the dataset entry (docs/reliability.md); the tools print it as one
`error:` line, also when a DataLoader worker process raised it."""
import copy

import cv2
import numpy as np
import pytest
from mmdet.datasets import BaseDetDataset

from mmsnip.datasets import SniperDataset
from mmsnip.utils import register_all_modules
from mmsnip.utils.checks import UserInputError
from mmsnip.utils.preflight import run_cli

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
    with pytest.raises(UserInputError, match=r'image 7 \(.*a\.jpg\).*'
                       r'check_dataset\.py CONFIG --full-decode'):
        _dataset(path)[0]


def test_image_smaller_than_annotated_names_the_entry(tmp_path):
    path = tmp_path / 'a.png'
    cv2.imwrite(str(path), np.full((80, 120, 3), 90, np.uint8))
    with pytest.raises(UserInputError,
                       match=r'image 7 .*decodes to 120x80 px but its '
                       r'annotation says 120x100'):
        _dataset(path)[0]


def test_worker_errors_are_one_error_line(tmp_path, capsys):
    """An image of another size than annotated, found by CropChip in a
    DataLoader worker process (after the tools' checks, which read image
    headers only up to a few thousand images): the tools print the
    dataset's message as one `error:` line and say where it was raised
    (was: PyTorch's "Caught RuntimeError in DataLoader worker process 0"
    and the worker's whole traceback)."""
    from torch.utils.data import DataLoader
    path = tmp_path / 'a.png'
    cv2.imwrite(str(path), np.full((80, 120, 3), 90, np.uint8))
    loader = DataLoader(_dataset(path), num_workers=1,
                        collate_fn=lambda batch: batch)
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: next(iter(loader)))
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: SniperDataset: chip 0 of ') and \
        'decodes to 120x80 px but its annotation says 120x100' in err, err
    assert err.splitlines()[1:] == [
        '  (raised in DataLoader worker process 0)'], err
    assert 'Traceback' not in err
