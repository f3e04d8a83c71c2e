# Copyright (c) mmsnip contributors. All rights reserved.
"""Bad annotations: a clear error, or the documented behaviour
(docs/custom_dataset.md, "Annotation checks")."""
import copy
import json
import tracemalloc
from unittest import mock

import cv2
import numpy as np
import pytest
from mmdet.datasets import BaseDetDataset

from mmsnip.datasets import SniperDataset
from mmsnip.utils import register_all_modules
from mmsnip.utils.checks import UserInputError

register_all_modules()

CHIP_CFG = dict(chip_size=128, chip_stride=32,
                scales=[dict(factor=1.0, valid_range=(16, None)),
                        dict(factor=2.0, valid_range=(0, 24))])
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CropChip'),
    dict(type='PackChipInputs')
]
LOG = 'mmsnip.datasets.sniper_dataset.print_log'


class RawDataset(BaseDetDataset):
    """Data infos handed over as they are (no MMDet filtering), like a
    user's own dataset class or ``VOCDataset``, which keeps zero-area
    boxes."""
    METAINFO = dict(classes=('a', ))

    def __init__(self, infos, **kwargs):
        self._infos = infos
        super().__init__(ann_file='', pipeline=[], serialize_data=False,
                         **kwargs)

    def load_data_list(self):
        return copy.deepcopy(self._infos)


def info(img_id, boxes, crowd=None, h=200, w=300, path='none.jpg'):
    crowd = crowd or [0] * len(boxes)
    return dict(img_id=img_id, img_path=path, height=h, width=w,
                instances=[dict(bbox=b, bbox_label=0, ignore_flag=c)
                           for b, c in zip(boxes, crowd)])


def coco_file(tmp_path, images, annotations, categories=None):
    coco = dict(images=images, annotations=annotations,
                categories=categories or [dict(id=1, name='a')])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(coco))
    return str(path)


def coco_ds(ann, **kwargs):
    return dict(dict(type='CocoDataset', ann_file=ann,
                     data_prefix=dict(img=''), metainfo=dict(classes=('a', )),
                     pipeline=[], filter_cfg=dict(filter_empty_gt=False)),
                **kwargs)


def build(dataset, **kwargs):
    return SniperDataset(dataset=dataset, chip_cfg=CHIP_CFG,
                         pipeline=PIPELINE, cache_dir='', **kwargs)


def image(i, h=200, w=300, name=None):
    return dict(id=i, file_name=name or f'{i}.jpg', height=h, width=w)


def ann(i, img, bbox, cat=1, crowd=0):
    return dict(id=i, image_id=img, category_id=cat, bbox=bbox,
                area=float(bbox[2] * bbox[3]), iscrowd=crowd)


def warnings(log):
    return [c.args[0] for c in log.call_args_list
            if c.kwargs.get('level') is not None]


def test_bad_boxes_are_dropped_or_clipped_with_one_summary_warning():
    infos = [
        info(1, [[10, 10, 40, 40],      # fine
                 [20, 20, 20, 50],      # zero width: dropped
                 [60, 60, 50, 80],      # negative width: dropped
                 [-10, 150, 30, 230],   # partly outside: clipped
                 [400, 10, 450, 40]]),  # wholly outside: dropped
        info(2, [[5, 5, 5, 5]]),        # only a degenerate box: empty image
    ]
    with mock.patch(LOG) as log:
        ds = build(RawDataset(infos))
    (msg, ) = warnings(log)  # one line for the whole dataset
    assert 'of 6 boxes' in msg
    assert '3 boxes of zero or negative size dropped' in msg
    assert '1 boxes wholly outside their image dropped' in msg
    assert '1 boxes partly outside their image clipped' in msg
    assert 'RawDataset: image 1 (none.jpg), bbox [20.0, 20.0, 20.0, 50.0]' \
        in msg
    report = ds.annotation_report
    assert (report['empty'], report['outside'], report['clipped'],
            report['empty_images']) == (3, 1, 1, 1)
    assert 'have no positive chip' in ds.summary()
    # the chips cover the clipped box, inside the image
    assert (ds.chip_img == 0).all()
    assert (ds.chips.boxes[:, 2] <= 300).all()
    # the pipeline sees the boxes the chip table saw
    served = ds.get_data_info(0)['instances']
    np.testing.assert_array_equal([i['bbox'] for i in served],
                                  [[10, 10, 40, 40], [0, 150, 30, 200]])


def test_non_finite_box_is_an_error_naming_the_image():
    infos = [info(7, [[0, 0, 10, 10], [np.nan, 0, 5, 5]], path='x/7.jpg')]
    with pytest.raises(ValueError, match=r'image 7 \(x/7.jpg\): instance 1 '
                       'has a non-finite bbox'):
        build(RawDataset(infos))


def test_image_without_size_is_an_error_naming_it():
    infos = [info(3, [[0, 0, 10, 10]])]
    infos[0]['height'] = None
    with pytest.raises(ValueError, match=r'image 3 \(none.jpg\) has '
                       'height=None'):
        build(RawDataset(infos))


def test_crowd_only_and_empty_images_get_no_positive_chips(tmp_path):
    path = coco_file(tmp_path, [image(1), image(2), image(3)], [
        ann(1, 1, [10, 10, 30, 30]),
        ann(2, 2, [10, 10, 30, 30], crowd=1),
        ann(3, 2, [100, 10, 30, 30], crowd=1),
    ])
    ds = build(coco_ds(path))
    assert len(ds.dataset) == 3
    assert set(ds.chip_img.tolist()) == {0}
    report = ds.annotation_report
    assert report['crowd_only_images'] == 1 and report['empty_images'] == 1
    assert '1 images without boxes and 1 with only crowd' in ds.summary()
    # with MMDet's filter_empty_gt the empty image is gone; the crowd-only
    # one stays (CocoDataset counts crowd annotations)
    filtered = build(coco_ds(path, filter_cfg=dict(filter_empty_gt=True)))
    assert len(filtered.dataset) == 2


def test_coco_degenerate_boxes_are_filtered_by_mmdet_before_us(tmp_path):
    # CocoDataset drops w < 1, h < 1, area <= 0 and wholly-outside boxes
    # itself (silently); what reaches the chips is already clean, and a
    # box partly outside is clipped by us.
    path = coco_file(tmp_path, [image(1)], [
        ann(1, 1, [10, 10, 30, 30]), ann(2, 1, [10, 10, 0, 30]),
        ann(3, 1, [10, 10, -5, 30]), ann(4, 1, [500, 10, 30, 30]),
        ann(5, 1, [280, 10, 40, 30])])
    with mock.patch(LOG) as log:
        ds = build(coco_ds(path))
    assert len(ds.dataset.get_data_info(0)['instances']) == 2
    (msg, ) = warnings(log)
    assert 'of 2 boxes, 1 boxes partly outside their image clipped' in msg
    served = ds.get_data_info(0)['instances']
    assert served[1]['bbox'] == [280, 10, 300, 40]


def test_missing_category_is_warned_and_unknown_class_is_an_error(tmp_path):
    path = coco_file(tmp_path, [image(1)], [
        ann(1, 1, [10, 10, 30, 30]), ann(2, 1, [50, 50, 30, 30], cat=99),
        ann(3, 1, [90, 50, 30, 30], cat=99)])
    with mock.patch(LOG) as log:
        ds = build(coco_ds(path))
    (msg, ) = warnings(log)
    assert '2 annotations of category ids [99] are not among the 1 ' \
        'classes' in msg and 'ann.json' in msg
    assert len(ds.dataset.get_data_info(0)['instances']) == 1
    with pytest.raises(ValueError, match=r'classes has 2 names but only 1 '
                       'of them are in the file'):
        build(coco_ds(path, metainfo=dict(classes=('a', 'typo'))))


@pytest.mark.parametrize('where, field, match', [
    ('images', 'height', r'images\[1\] \(id 2, "2.jpg"\) lacks "height"'),
    ('images', 'file_name', r'images\[1\] \(id 2\) lacks "file_name"'),
    ('annotations', 'area', r'annotations\[0\] \(id 1\) lacks "area"'),
    ('annotations', 'bbox', r'annotations\[0\] \(id 1\) lacks "bbox"'),
    (None, 'categories', r'lacks the COCO list "categories"'),
])
def test_missing_coco_field_names_file_image_and_field(tmp_path, where,
                                                       field, match):
    coco = dict(images=[image(1), image(2)],
                annotations=[ann(1, 2, [10, 10, 30, 30])],
                categories=[dict(id=1, name='a')])
    if where is None:
        del coco[field]
    else:
        del coco[where][-1 if where == 'images' else 0][field]
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match='ann.json: ' + match):
        build(coco_ds(str(path)))


def test_missing_image_file_names_the_path(tmp_path):
    path = coco_file(tmp_path, [image(1, name='gone.png')],
                     [ann(1, 1, [10, 10, 30, 30])])
    ds = build(coco_ds(path))  # the chip table needs no pixels
    with pytest.raises(UserInputError,
                       match=r'image 1 \(.*gone\.png\)') as e:
        ds[0]
    assert isinstance(e.value.__cause__, FileNotFoundError)


def test_clipped_boxes_reach_the_chip_inside_the_image(tmp_path):
    cv2.imwrite(str(tmp_path / 'img.png'), np.zeros((200, 300, 3), np.uint8))
    infos = [info(1, [[250, 150, 340, 260]], path=str(tmp_path / 'img.png'))]
    with mock.patch(LOG):
        ds = build(RawDataset(infos))
    item = ds[0]
    boxes = item['data_samples'].gt_instances.bboxes.numpy()
    chip = ds.chips.boxes_scaled[0]
    assert len(boxes) == 1
    assert (boxes >= 0).all() and (boxes[:, 2] <= chip[2] - chip[0]).all()
    assert (boxes[:, 3] <= chip[3] - chip[1]).all()


def test_huge_image_builds_without_the_scaled_canvas(tmp_path):
    # 20000 x 15000, factor 2: a uint8 canvas would be 3.6 GB (1.2 Gpx)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [19900, 14900], (300, 2))
    wh = rng.uniform(5, 40, (300, 2))
    path = coco_file(tmp_path, [image(1, h=15000, w=20000, name='big.tif')],
                     [ann(i, 1, [*map(float, xy[i]), *map(float, wh[i])])
                      for i in range(300)])
    tracemalloc.start()
    ds = build(coco_ds(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(ds) > 0 and ds.chips.boxes_scaled[:, 2:].max() <= 40000
    # guards against O(canvas) regressions (memory; no timing in tests)
    assert peak < 64 << 20
