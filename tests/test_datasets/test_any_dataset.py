# Copyright (c) mmsnip contributors. All rights reserved.
"""SniperDataset over any MMDetection dataset type; the class count always
comes from the inner dataset's metainfo."""
import json
import os

import cv2
import numpy as np

from mmsnip.datasets import SniperDataset, save_proposals
from mmsnip.utils import register_all_modules

register_all_modules()

CHIP_CFG = dict(chip_size=128, chip_stride=32,
                scales=[dict(factor=1.0, valid_range=(20, None)),
                        dict(factor=2.0, valid_range=(0, 30))])
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CropChip'),
    dict(type='PackChipInputs')
]


def _write_image(path, h=160, w=200):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.full((h, w, 3), 90, np.uint8)
    assert cv2.imwrite(str(path), img)


def _labels_of_every_chip(ds):
    labels = [ds[i]['data_samples'].gt_instances.labels
              for i in range(len(ds))]
    return np.concatenate([lb.numpy() for lb in labels])


def test_coco_with_custom_classes_and_odd_file_names(tmp_path):
    names = ['sub dir/my image 1.png', 'sub dir/deeper/IMG_2.PNG',
             'third.jpeg']
    for name in names:
        _write_image(tmp_path / 'imgs' / name)
    # non-contiguous category ids, listed out of order
    categories = [dict(id=17, name='dog house'), dict(id=3, name='cat'),
                  dict(id=5, name='zebra crossing')]
    annotations = [
        dict(id=1, image_id=10, category_id=17, bbox=[10, 10, 40, 30],
             area=1200, iscrowd=0),
        dict(id=2, image_id=10, category_id=3, bbox=[100, 60, 12, 12],
             area=144, iscrowd=0),
        dict(id=3, image_id=20, category_id=5, bbox=[50, 50, 60, 50],
             area=3000, iscrowd=0),
    ]
    images = [dict(id=10 * (i + 1), file_name=n, height=160, width=200)
              for i, n in enumerate(names)]
    ann = tmp_path / 'my annotations.json'
    ann.write_text(json.dumps(dict(images=images, annotations=annotations,
                                   categories=categories)))
    classes = ('dog house', 'cat', 'zebra crossing')  # the file's order
    ds = SniperDataset(
        dataset=dict(type='CocoDataset', data_root=str(tmp_path),
                     ann_file='my annotations.json',
                     data_prefix=dict(img='imgs/'),
                     metainfo=dict(classes=classes),
                     filter_cfg=dict(filter_empty_gt=False), pipeline=[]),
        chip_cfg=CHIP_CFG, pipeline=PIPELINE, cache_dir='')
    assert ds.metainfo['classes'] == classes
    assert len(ds.dataset) == 3 and len(ds) > 0
    labels = _labels_of_every_chip(ds)
    # 'dog house' (id 17) -> 0, 'cat' (id 3) -> 1, 'zebra crossing' -> 2
    assert set(labels.tolist()) == {0, 1, 2}
    paths = {ds.get_data_info(i)['img_path'] for i in range(len(ds))}
    assert str(tmp_path / 'imgs' / names[0]) in paths


def _voc_xml(name, w, h, objects):
    objs = ''.join(
        f'<object><name>{cls}</name><difficult>{diff}</difficult>'
        f'<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>'
        f'<ymax>{y2}</ymax></bndbox></object>'
        for cls, diff, (x1, y1, x2, y2) in objects)
    return (f'<annotation><filename>{name}.jpg</filename><size><width>{w}'
            f'</width><height>{h}</height><depth>3</depth></size>{objs}'
            '</annotation>')


def _voc_dataset(tmp_path, objects, year='VOC2007'):
    """A VOCDataset config over ``objects``: ``{stem: [(name, difficult,
    (x1, y1, x2, y2)), ...]}``, images written."""
    root = tmp_path / 'VOCdevkit' / year
    for stem, objs in objects.items():
        _write_image(root / 'JPEGImages' / f'{stem}.jpg')
        (root / 'Annotations').mkdir(parents=True, exist_ok=True)
        (root / 'Annotations' / f'{stem}.xml').write_text(
            _voc_xml(stem, 200, 160, objs))
    (root / 'ImageSets' / 'Main').mkdir(parents=True)
    (root / 'ImageSets' / 'Main' / 'train.txt').write_text(
        '\n'.join(objects) + '\n')
    return dict(type='VOCDataset', data_root=str(tmp_path / 'VOCdevkit'),
                ann_file=f'{year}/ImageSets/Main/train.txt',
                data_prefix=dict(sub_data_root=f'{year}/'),
                filter_cfg=dict(filter_empty_gt=False), pipeline=[])


def test_voc_dataset(tmp_path):
    objects = {
        '000001': [('dog', 0, (11, 21, 60, 80)), ('person', 1,
                                                  (100, 30, 140, 90))],
        '000002': [('car', 0, (20, 20, 45, 44))],
        '000003': [],
    }
    ds = SniperDataset(dataset=_voc_dataset(tmp_path, objects),
                       chip_cfg=CHIP_CFG, pipeline=PIPELINE, cache_dir='')
    classes = ds.metainfo['classes']
    assert len(classes) == 20 and classes == ds.dataset.metainfo['classes']
    assert len(ds.dataset) == 3
    # 'difficult' objects are ignore regions (crowd): never a chip target
    assert ds.annotation_report['empty_images'] == 1
    labels = _labels_of_every_chip(ds)
    assert set(labels.tolist()) <= {classes.index('dog'),
                                    classes.index('car'),
                                    classes.index('person')}
    assert classes.index('dog') in labels and classes.index('car') in labels
    # the chips of image 000001 cover the dog, not the difficult person
    info = ds.dataset.get_data_info(0)
    assert [i['ignore_flag'] for i in info['instances']] == [0, 1]


def test_voc_string_ids_get_negative_chips(tmp_path):
    """VOC-format image ids are the file stems, strings ('2008_000001', or
    'IMG_0042' from a labelling tool): the proposal file keeps them
    (mine_proposals writes the dataset's ids; was: ValueError from int()
    after the whole mining run), and the negative pools are built from
    it."""
    objects = {
        '2008_000001': [('dog', 0, (11, 21, 60, 80))],
        'IMG_0042': [('car', 0, (20, 20, 45, 44))],
    }
    inner = _voc_dataset(tmp_path, objects, year='VOC2012')
    positives = SniperDataset(dataset=inner, chip_cfg=CHIP_CFG,
                              pipeline=PIPELINE, cache_dir='')
    ids = [positives.dataset.get_data_info(i)['img_id'] for i in range(2)]
    assert ids == list(objects)
    rng = np.random.default_rng(0)
    xy = rng.uniform(60, 150, (20, 2))
    rows = np.c_[xy, xy + rng.uniform(10, 25, (20, 2)), rng.uniform(size=20)]
    path = str(tmp_path / 'proposals.npz')
    save_proposals(path, {i: [rows, rows] for i in ids}, num_scales=2)
    ds = SniperDataset(dataset=inner, chip_cfg=dict(
        CHIP_CFG, neg_min_proposals=2, neg_per_image=1),
        pipeline=PIPELINE, cache_dir=str(tmp_path / 'cache'),
        negatives=True, proposal_file=path)
    assert ds.num_positive == positives.num_positive
    assert len(ds.chips) > ds.num_positive  # negative pools exist
    assert set(ds.chip_img[ds.num_positive:].tolist()) == {0, 1}
    item = ds[int(ds.epoch_indices(0)[-1])]
    assert not item['data_samples'].metainfo['chip_is_positive']


def test_many_empty_images(tmp_path):
    images = [dict(id=i, file_name=f'{i}.jpg', height=160, width=200)
              for i in range(40)]
    for i in (0, 17, 39):
        _write_image(tmp_path / f'{i}.jpg')
    annotations = [dict(id=i, image_id=i, category_id=1,
                        bbox=[30, 30, 25, 25], area=625, iscrowd=0)
                   for i in (0, 17, 39)]
    (tmp_path / 'a.json').write_text(json.dumps(dict(
        images=images, annotations=annotations,
        categories=[dict(id=1, name='thing')])))
    ds = SniperDataset(
        dataset=dict(type='CocoDataset', ann_file=str(tmp_path / 'a.json'),
                     data_prefix=dict(img=str(tmp_path) + '/'),
                     metainfo=dict(classes=('thing', )),
                     filter_cfg=dict(filter_empty_gt=False), pipeline=[]),
        chip_cfg=CHIP_CFG, pipeline=PIPELINE, cache_dir='')
    assert len(ds.dataset) == 40
    assert ds.annotation_report['empty_images'] == 37
    assert sorted(set(ds.chip_img.tolist())) == [0, 17, 39]
    assert ds.epoch_size() == len(ds) == ds.num_positive
    assert '37 images without boxes' in ds.summary()
    assert (_labels_of_every_chip(ds) == 0).all()
    # every epoch index is a real chip of a non-empty image
    np.testing.assert_array_equal(ds.epoch_indices(3), np.arange(len(ds)))
