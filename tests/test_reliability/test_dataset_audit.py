# Copyright (c) mmsnip contributors. All rights reserved.
"""The dataset audit (mmsnip.utils.dataset_audit): one problem per bad entry,
naming the file and the entry (docs/reliability.md)."""
import contextlib
import io
import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from mmsnip.utils.dataset_audit import (
    ANN_ID_TYPE, BAD_BBOX, BAD_FILE, BAD_ISCROWD, BAD_SEGMENTATION,
    BBOX_FORMAT, CATEGORY_ID, CLASS_MISSING, CLASS_ORDER, CLASSWISE_ID_TYPE,
    CLASSWISE_ORDER,
    DROPPED_BOXES, DUPLICATE_ANN_ID, DUPLICATE_IMAGE_ID, ERROR, IGNORE_FLAG,
    IMAGE_FILE, IMAGE_SIZE, IMAGES_SKIPPED, MISSING_CATEGORY, MISSING_IMAGE,
    NO_GROUND_TRUTH, NO_IMAGES, SEGMENTATION_POLYGONS, UNREAD_IGNORE_FIELD,
    WARNING, ZERO_ANN_ID, AnnSource,
    audit_config, audit_sources, errors, image_size, label_names,
    sources_from_config, unchecked_loaders)
from mmsnip.utils.preflight import UserInputError, check_annotations

CLASSES = ('disc', 'square', 'triangle', 'cross', 'ring')


@pytest.fixture
def demo(tiny_demo_root, tmp_path):
    """A private copy of the tiny demo data (train: 6 images, val: 3)."""
    root = tmp_path / 'data'
    shutil.copytree(tiny_demo_root, root)
    return root


def read(root, split='train'):
    return json.loads(
        (root / 'annotations' / f'instances_{split}.json').read_text())


def write(root, coco, split='train'):
    path = root / 'annotations' / f'instances_{split}.json'
    path.write_text(json.dumps(coco))
    return str(path)


def source(root, split='train', **kwargs):
    kwargs.setdefault('classes', CLASSES)
    kwargs.setdefault('explicit_classes', True)
    return AnnSource(
        ann_file=str(root / 'annotations' / f'instances_{split}.json'),
        source=f'{split}_dataloader.dataset',
        img_prefix=str(root / split),
        **kwargs)


def audit(root, splits=('train', ), **kwargs):
    return audit_sources([source(root, s) for s in splits], **kwargs)


def only(problems, kind):
    """The single problem of ``kind``; fails if there are others."""
    assert [p.kind for p in problems] == [kind], [str(p) for p in problems]
    return problems[0]


def dup(coco):
    """Give image 5 (and its annotations) the id 2 of another image."""
    coco['images'][4]['id'] = 2
    for ann in coco['annotations']:
        if ann['image_id'] == 5:
            ann['image_id'] = 2


def cfg_of(root, train_classes=CLASSES, val_classes=CLASSES):
    """A dataloader + evaluator config over ``root`` (plain dicts)."""

    def ds(split, classes):
        return dict(
            type='CocoDataset',
            data_root=str(root) + '/',
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'),
            metainfo=dict(classes=classes),
            pipeline=[])

    return dict(
        train_dataloader=dict(
            dataset=dict(
                type='SniperDataset',
                dataset=dict(
                    type='RepeatDataset',
                    times=2,
                    dataset=ds('train', train_classes)))),
        val_dataloader=dict(dataset=ds('val', val_classes)),
        val_evaluator=[
            dict(
                type='CocoMetric',
                ann_file=str(root / 'annotations' / 'instances_val.json')),
            dict(type='PixelMetric')
        ])


def test_clean_demo_has_no_problem(demo):
    assert audit(demo, ('train', 'val')) == []
    assert audit_config(cfg_of(demo)) == []


def test_sources_unwrap_datasets_and_evaluators(demo):
    sources = sources_from_config(cfg_of(demo))
    assert [s.source for s in sources] == [
        'train_dataloader.dataset.dataset.dataset', 'val_dataloader.dataset',
        'val_evaluator[0]'
    ]
    assert sources[0].img_prefix == str(demo) + '/train/'
    assert sources[2].img_prefix is None and sources[2].classes == CLASSES


def test_duplicate_image_id(demo):
    coco = read(demo)
    dup(coco)
    path = write(demo, coco)
    p = only(audit(demo), DUPLICATE_IMAGE_ID)
    assert p.file == path and p.severity == ERROR
    assert p.entry == 'image 2 ("train_000004.jpg")'
    assert 'images[1] (image 2 ("train_000001.jpg"))' in p.message
    assert 'give every image its own id' in p.message


def test_duplicate_annotation_id(demo):
    coco = read(demo)
    coco['annotations'][3]['id'] = coco['annotations'][0]['id']
    path = write(demo, coco)
    p = only(audit(demo), DUPLICATE_ANN_ID)
    img = coco['annotations'][3]['image_id']
    assert (p.file, p.entry) == (path, f'annotation 1 (image {img})')
    assert 'annotations[0]' in p.message


def test_annotation_of_a_missing_image(demo):
    coco = read(demo)
    coco['annotations'][2]['image_id'] = 99
    coco['annotations'][5]['image_id'] = 99
    path = write(demo, coco)
    p = only(audit(demo), MISSING_IMAGE)
    assert (p.file, p.entry) == (path, 'image 99')
    assert '2 annotation(s) refer to it (annotation 3 (image 99), ' \
        'annotation 6 (image 99))' in p.message


def test_annotation_of_a_missing_category(demo):
    coco = read(demo)
    coco['annotations'][0]['category_id'] = 42
    path = write(demo, coco)
    p = only(audit(demo), MISSING_CATEGORY)
    assert (p.file, p.entry) == (path, 'category 42')
    assert 'annotation 1 (image 1)' in p.message


@pytest.mark.parametrize(
    'bbox',
    [
        ['10', '10', '20', '20'],  # strings: CocoDataset's TypeError
        [10, 10, 20],  # three numbers
        [10, 10, None, 20],  # null
        [10, 10, float('nan'), 20],  # NaN (json.dumps writes NaN)
        [10, 10, True, 20],  # a bool is not a number
        '10 10 20 20',
    ])
def test_bad_bbox(demo, bbox):
    coco = read(demo)
    coco['annotations'][1]['bbox'] = bbox
    path = write(demo, coco)
    p = only(audit(demo), BAD_BBOX)
    assert (p.file, p.entry) == (path, 'annotation 2 (image 1)')
    assert 'four finite numbers' in p.message


def test_boxes_mmdet_drops_are_warnings(demo):
    coco = read(demo)
    coco['annotations'][0]['bbox'] = [5, 5, 0.5, 10]  # w < 1
    coco['annotations'][1]['bbox'] = [5000, 5, 10, 10]  # outside
    write(demo, coco)
    problems = audit(demo)
    assert [(p.kind, p.severity, p.entry) for p in problems
            ] == [(DROPPED_BOXES, WARNING, 'annotation 1 (image 1)'),
                  (DROPPED_BOXES, WARNING, 'annotation 2 (image 1)')]
    assert errors(problems) == []


def _as_corners(coco):
    """Every bbox rewritten as [x1, y1, x2, y2] (the conversion mistake)."""
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        ann['bbox'] = [x, y, x + w, y + h]
    return coco


def test_boxes_written_as_corners_are_an_error(demo):
    coco = _as_corners(read(demo))
    path = write(demo, coco)
    p = only(audit(demo), BBOX_FORMAT)
    assert (p.file, p.entry, p.severity) == (path, 'annotations', ERROR)
    assert "read as COCO's [x, y, width, height]" in p.message
    assert 'read as corners [x1, y1, x2, y2]' in p.message
    assert 'audit_datasets = False' in p.message
    # The example names a box that runs past its image read as COCO's.
    boxes = {f'annotation {a["id"]} (image {a["image_id"]})': a
             for a in coco['annotations']}
    sizes = {i['id']: (i['width'], i['height']) for i in coco['images']}
    entry = p.message.split('(e.g. ')[1].split(' has bbox')[0]
    x, y, w, h = boxes[entry]['bbox']
    img_w, img_h = sizes[boxes[entry]['image_id']]
    assert x + w > img_w + 1 or y + h > img_h + 1


def test_some_boxes_past_the_border_are_not_corners(demo):
    """Boxes that run past the image (amodal annotations) without the
    corner pattern: no format error."""
    coco = read(demo)
    sizes = {i['id']: (i['width'], i['height']) for i in coco['images']}
    for ann in coco['annotations'][::3]:
        x, y, w, h = ann['bbox']
        img_w, _ = sizes[ann['image_id']]
        ann['bbox'] = [x, y, w + img_w, h]  # past the right border
    write(demo, coco)
    assert [p for p in audit(demo) if p.kind == BBOX_FORMAT] == []


def test_file_without_images(demo):
    coco = read(demo)
    coco['images'], coco['annotations'] = [], []
    path = write(demo, coco)
    p = only(audit(demo), NO_IMAGES)
    assert (p.file, p.entry) == (path, 'file')


def test_class_order_differs_between_train_and_val(demo):
    val = read(demo, 'val')
    val['categories'] = val['categories'][::-1]  # ids stay, order reversed
    path = write(demo, val, 'val')
    problems = audit(demo, ('train', 'val'), images=False)
    kinds = sorted(p.kind for p in problems)
    assert kinds == [CLASS_ORDER], [str(p) for p in problems]
    p = problems[0]
    assert p.file == path and p.source == 'val_dataloader.dataset'
    # names both files, both orders, and the fix
    assert str(demo / 'annotations' / 'instances_train.json') in p.message
    assert f'as {list(CLASSES[::-1])} (label 0 first)' in p.message
    assert f'numbers them as {list(CLASSES)}' in p.message
    assert f'reorder "categories" in {path} to {list(CLASSES)}' \
        in p.message


def test_class_order_of_the_evaluator_file(demo):
    # the val dataset agrees with train but the metric reads another file
    val = read(demo, 'val')
    val['categories'] = val['categories'][1:] + val['categories'][:1]
    other = demo / 'annotations' / 'metric.json'
    other.write_text(json.dumps(val))
    cfg = cfg_of(demo)
    cfg['val_evaluator'][0]['ann_file'] = str(other)
    (p, ) = audit_config(cfg, images=False)
    assert (p.kind, p.file, p.source) == (CLASS_ORDER, str(other),
                                          'val_evaluator[0]')


def test_classes_in_another_order_than_the_files(demo):
    # both files agree, but metainfo.classes names the labels wrongly
    shuffled = ('square', 'disc', 'triangle', 'cross', 'ring')
    problems = audit_config(cfg_of(demo, shuffled, shuffled), images=False)
    files = {p.file for p in problems}
    assert {p.kind for p in problems} == {CLASS_ORDER}
    assert files == {
        str(demo / 'annotations' / f'instances_{s}.json')
        for s in ('train', 'val')
    }
    assert f'set metainfo.classes to {CLASSES}' in problems[0].message


def test_class_missing_from_a_file(demo):
    problems = audit_config(
        cfg_of(demo, CLASSES + ('rnig', ), CLASSES + ('rnig', )), images=False)
    assert {(p.kind, p.entry)
            for p in problems} == {(CLASS_MISSING, 'categories')}
    assert "has no category named ['rnig']" in problems[0].message


def test_same_name_other_id_is_a_warning(demo):
    val = read(demo, 'val')
    for cat in val['categories']:
        cat['id'] += 10
    for ann in val['annotations']:
        ann['category_id'] += 10
    path = write(demo, val, 'val')
    problems = audit(demo, ('train', 'val'), images=False)
    assert {(p.kind, p.severity, p.file)
            for p in problems} == {(CATEGORY_ID, WARNING, path)}
    assert problems[0].entry == 'category 11 ("disc")'


def test_label_names_follow_the_file_order():
    coco = dict(categories=[
        dict(id=3, name='bird'),
        dict(id=1, name='cat'),
        dict(id=2, name='dog')
    ])
    assert label_names(coco, ('cat', 'dog', 'bird')) == ['bird', 'cat', 'dog']
    assert label_names(coco, ('dog', )) == ['dog']


def test_image_size_differs_from_annotation(demo):
    coco = read(demo)
    img = coco['images'][2]
    w, h = img['width'], img['height']
    img['width'] += 40  # the file is smaller than annotated
    path = write(demo, coco)
    p = only(audit(demo), IMAGE_SIZE)
    assert (p.file, p.entry) == (path, 'image 3 ("train_000002.jpg")')
    assert f'is {w}x{h} (width x height) but the annotation says ' \
        f'width={w + 40}, height={h}' in p.message


def test_exif_rotation_counts_as_mmcv_loads_it(tmp_path):
    path = str(tmp_path / 'rot.jpg')
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: mmcv's loader swaps width and height
    Image.fromarray(np.zeros((40, 100, 3), np.uint8)).save(path, exif=exif)
    loaded = cv2.imread(path, cv2.IMREAD_COLOR).shape
    assert image_size(path) == ((loaded[1], loaded[0]), '') == ((40, 100), '')
    assert image_size(path, apply_orientation=False) == ((100, 40), '')


def test_huge_images_are_not_decompression_bombs(tmp_path, monkeypatch):
    path = str(tmp_path / 'big.png')
    Image.fromarray(np.zeros((40, 100), np.uint8)).save(path)
    # as if the image had 4x PIL's limit (a 20000 x 15000 aerial image)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    assert image_size(path, full_decode=True) == ((100, 40), '')
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


def test_missing_and_unreadable_image_files(demo):
    (demo / 'train' / 'train_000001.jpg').unlink()
    (demo / 'train' / 'train_000003.jpg').write_bytes(b'not an image')
    problems = audit(demo)
    assert [(p.kind, p.entry) for p in problems
            ] == [(IMAGE_FILE, 'image 2 ("train_000001.jpg")'),
                  (IMAGE_FILE, 'image 4 ("train_000003.jpg")')]
    assert 'train_000001.jpg" does not exist' in problems[0].message
    assert 'cannot be read' in problems[1].message


def test_truncated_jpeg_only_found_by_full_decode(demo):
    jpg = demo / 'train' / 'train_000005.jpg'
    data = jpg.read_bytes()
    jpg.write_bytes(data[:len(data) // 2])
    assert audit(demo) == []  # the header is intact
    p = only(audit(demo, full_decode=True), IMAGE_FILE)
    assert p.entry == 'image 6 ("train_000005.jpg")'
    assert 'truncated' in p.message


def test_image_reads_in_a_process_pool_agree(demo):
    coco = read(demo)
    coco['images'] = [
        dict(
            img,
            id=i + 1 + 100 * k,
            height=img['height'] + (k == 3 and i == 0)) for k in range(12)
        for i, img in enumerate(coco['images'])
    ]
    coco['annotations'] = []
    write(demo, coco)
    serial = errors(audit(demo))  # and duplicate_file_name warnings
    assert [p.entry for p in serial] == ['image 301 ("train_000000.jpg")']
    assert errors(audit(demo, workers=2)) == serial


def test_image_reads_skipped_above_max_images(demo):
    p = only(audit(demo, max_images=5), IMAGES_SKIPPED)
    assert p.severity == WARNING and '6 images' in p.message


def test_preflight_raises_one_error_naming_the_file_and_entry(demo):
    coco = read(demo)
    dup(coco)
    path = write(demo, coco)
    from mmengine.config import Config
    with pytest.raises(UserInputError) as e:
        check_annotations(Config(cfg_of(demo)))
    first = str(e.value).splitlines()[0]
    assert first.startswith(f'{path}: image 2 ("train_000004.jpg"): ')
    assert 'tools/check_dataset.py' in str(e.value)


def test_worked_example_of_the_module_docstring(tmp_path):

    def coco(cats):
        return dict(
            images=[dict(id=1, file_name='a.jpg', width=10, height=10)],
            annotations=[],
            categories=[dict(id=i, name=n) for i, n in cats])

    train, val = tmp_path / 'train.json', tmp_path / 'val.json'
    train.write_text(json.dumps(coco([(1, 'cat'), (2, 'dog'), (3, 'bird')])))
    val.write_text(json.dumps(coco([(3, 'bird'), (1, 'cat'), (2, 'dog')])))
    classes = ('cat', 'dog', 'bird')
    (p, ) = audit_sources([
        AnnSource(
            str(train),
            'train_dataloader.dataset',
            classes=classes,
            explicit_classes=True),
        AnnSource(
            str(val),
            'val_dataloader.dataset',
            classes=classes,
            explicit_classes=True)
    ])
    assert str(p) == (
        f"{val}: categories: numbers the classes as ['bird', 'cat', 'dog'] "
        f"(label 0 first) but {train} (train_dataloader.dataset) numbers "
        "them as ['cat', 'dog', 'bird']: CocoDataset and CocoMetric number "
        "the classes by each file's own \"categories\" order, so the same "
        'class gets another label in each file and training or evaluation '
        f'is wrong; reorder "categories" in {val} to [\'cat\', \'dog\', '
        "'bird'] (ids and annotations may stay as they are)")


def test_default_classes_none_in_the_file_is_an_error(demo):
    coco80 = tuple(f'coco{i}' for i in range(80))
    (p, ) = audit_sources(
        [source(demo, classes=coco80, explicit_classes=False)], images=False)
    assert (p.kind, p.entry) == (CLASS_MISSING, 'categories')
    assert f'set metainfo=dict(classes={CLASSES})' in p.message


@pytest.fixture
def coco_lookalikes():
    """Registered for one test: ``MyCocoStyleDataset``, a
    ``BaseDetDataset`` with its own label rule and "Coco" in its name
    (mmdet's registry, as a project registers), and ``FieldPhotos``, a
    ``CocoDataset`` subclass (mmsnip's registry: ``'mmsnip.X'``)."""
    from mmdet.datasets import BaseDetDataset, CocoDataset
    from mmdet.registry import DATASETS as MMDET_DATASETS

    from mmsnip.registry import DATASETS

    class MyCocoStyleDataset(BaseDetDataset):
        pass

    class FieldPhotos(CocoDataset):
        pass

    MMDET_DATASETS.register_module(module=MyCocoStyleDataset)
    DATASETS.register_module(module=FieldPhotos)
    yield
    MMDET_DATASETS._module_dict.pop('MyCocoStyleDataset')
    DATASETS._module_dict.pop('FieldPhotos')


def test_coco_readers_by_class_not_by_name(coco_lookalikes):
    """A type reads COCO json with mmdet's label rule iff its class is
    CocoDataset / CocoMetric or a subclass, LVIS and panoptic excepted
    (they subclass them), whatever its name and scope prefix."""
    from mmsnip.utils import register_all_modules
    from mmsnip.utils.config_tree import reads_coco
    from mmsnip.utils.preflight import registry_classes
    register_all_modules(init_default_scope=False)

    def dataset(kind):
        return reads_coco(dict(type=kind), 'DATASETS')

    for kind in ('CocoDataset', 'mmdet.CocoDataset', 'Objects365V1Dataset',
                 'FieldPhotos', 'mmsnip.FieldPhotos', 'ADE20KInstanceDataset'):
        assert dataset(kind), kind
    for kind in ('MyCocoStyleDataset', 'mmdet.MyCocoStyleDataset',
                 'RefCocoDataset', 'CocoCaptionDataset', 'VOCDataset',
                 'LVISV05Dataset', 'LVISV1Dataset', 'CocoPanopticDataset',
                 'ADE20KPanopticDataset', 'NoSuchDataset', 'SniperDataset'):
        assert not dataset(kind), kind
    for kind in ('CocoMetric', 'mmdet.CocoMetric',
                 'CocoOccludedSeparatedMetric'):
        assert reads_coco(dict(type=kind), 'METRICS'), kind
    for kind in ('LVISMetric', 'CocoPanopticMetric', 'DODCocoMetric',
                 'VOCMetric'):
        assert not reads_coco(dict(type=kind), 'METRICS'), kind
    with pytest.raises(ValueError, match='must be one of'):
        reads_coco(dict(type='CocoDataset'), 'MODELS')
    classes = registry_classes('CocoDataset')
    assert len(classes) == 80 and classes[:2] == ('person', 'bicycle')


def test_a_coco_name_is_not_audited_a_coco_class_is(demo, coco_lookalikes):
    """MyCocoStyleDataset labels its boxes its own way: its file is not
    held to CocoDataset's rule (the name rule audited it, and a category
    order it does not care about was an error); a CocoDataset subclass of
    any name is."""
    cfg = cfg_of(demo, val_classes=('square', 'disc', 'triangle', 'cross',
                                    'ring'))
    cfg['val_evaluator'] = []
    val = cfg['val_dataloader']['dataset']
    for kind in ('MyCocoStyleDataset', 'mmdet.MyCocoStyleDataset'):
        val['type'] = kind
        assert [s.source for s in sources_from_config(cfg)] == [
            'train_dataloader.dataset.dataset.dataset']
        assert audit_config(cfg, images=False) == []
        assert unchecked_loaders(cfg, ('val_dataloader', )) == {
            'val_dataloader': 'has no COCO annotation file (no ann_file of '
            'a COCO dataset type)'}
    for kind in ('FieldPhotos', 'mmsnip.FieldPhotos'):
        val['type'] = kind
        (p, ) = audit_config(cfg, images=False)
        assert (p.kind, p.source) == (CLASS_ORDER, 'val_dataloader.dataset')


def test_duplicate_category_name_and_id(demo):
    coco = read(demo)
    coco['categories'][3]['name'] = 'disc'  # names: disc, ..., disc, ring
    coco['categories'][4]['id'] = 1
    path = write(demo, coco)
    # (also: annotations of category 5 and the class 'cross' now missing)
    problems = [p for p in audit(demo, images=False)
                if p.kind == 'bad_category']
    assert [(p.file, p.entry, p.kind) for p in problems] == [
        (path, 'category 4 ("disc")', 'bad_category'),
        (path, 'category 1 ("ring")', 'bad_category')]
    assert 'the name is also used by categories[0]' in problems[0].message
    assert 'the id is also used by categories[0]' in problems[1].message


def test_evaluator_file_without_the_dataset_images(demo):
    # the metric reads the train file while the val dataset serves val
    cfg = cfg_of(demo)
    train = str(demo / 'annotations' / 'instances_train.json')
    cfg['val_evaluator'][0]['ann_file'] = train
    (p, ) = audit_config(cfg, images=False)
    assert (p.kind, p.file, p.entry, p.source) == (
        'evaluator_images', train, 'images', 'val_evaluator[0]')
    assert p.message.startswith(
        'has other files under 3 image id(s) of '
        f'{demo / "annotations" / "instances_val.json"} '
        '(val_dataloader.dataset), which val_evaluator[0] scores (image 1 '
        '("val_000000.jpg") is "train_000000.jpg" there, ')


def test_default_classes_in_another_order_is_a_warning(demo):
    # metainfo.classes not set: labels are named by the type's defaults
    defaults = ('square', 'disc', 'triangle', 'cross', 'ring', 'other')
    (p, ) = audit_sources([source(demo, classes=defaults,
                                  explicit_classes=False)], images=False)
    assert (p.kind, p.severity) == (CLASS_ORDER, WARNING)
    assert f'set metainfo.classes to {CLASSES}' in p.message
    # a file in the defaults' order (COCO's own files): nothing to say
    assert audit_sources([source(demo, classes=CLASSES + ('other', ),
                                 explicit_classes=False)],
                         images=False) == []


def test_area_of_zero_under_a_real_box(demo):
    """CocoDataset reads "area": a box with area 0 is dropped; the message
    says it is the "area" field, and most boxes so is an error."""
    coco = read(demo)
    coco['annotations'][0]['area'] = 0
    write(demo, coco)
    p = only(audit(demo), DROPPED_BOXES)
    assert p.severity == WARNING
    assert '1 annotation(s) have "area" <= 0 although their bbox is not ' \
        'empty' in p.message
    assert 'area 0' in p.message and 'write each box' in p.message
    # half of a tiny file is not yet "unfilled": too few boxes to tell
    tiny = dict(coco, annotations=coco['annotations'][:2])
    write(demo, tiny)
    assert only(audit(demo), DROPPED_BOXES).severity == WARNING
    for ann in coco['annotations']:
        ann['area'] = 0
    write(demo, coco)
    p = only(audit(demo), DROPPED_BOXES)
    n = len(coco['annotations'])
    assert p.severity == ERROR
    assert f"({n} of the file's {n} boxes: the file's \"area\" values " \
        'look unfilled)' in p.message
    # the box tools read the bbox, not "area": no error there
    from mmsnip.datasets.coco_file import load_coco
    assert len(load_coco(write(demo, coco))['annotations']) == n


def test_ignore_flag_is_a_warning(demo):
    """mmdet drops "ignore" boxes, COCOeval scores them unless crowd."""
    coco = read(demo)
    coco['annotations'][2]['ignore'] = 1
    coco['annotations'][3]['ignore'] = True
    coco['annotations'][3]['iscrowd'] = 1
    coco['annotations'][4]['ignore'] = 0
    write(demo, coco)
    p = only(audit(demo), IGNORE_FLAG)
    assert p.severity == WARNING and p.entry == 'annotation 3 (image 1)'
    assert p.message.startswith('2 annotation(s) have a true "ignore" '
                                '(annotation 3 (image 1), annotation 4')
    assert 'set "iscrowd": 1 and remove "ignore"' in p.message


def test_unread_ignore_fields_are_a_warning(demo):
    """A true "ignore_flag" (MMDetection's internal field name, written by
    converters from its data lists) or "difficult" (VOC's, in a converted
    file) is read by neither CocoDataset nor COCOeval: the box trains and
    is scored as an object. Was: nothing. A crowd box or a true "ignore"
    is ignored anyway (no word), and so is a false flag."""
    coco = read(demo)
    anns = coco['annotations']
    anns[1]['ignore_flag'] = 1
    anns[2]['difficult'] = True
    anns[3]['ignore_flag'] = 1
    anns[3]['iscrowd'] = 1  # a crowd region: ignored anyway
    anns[4]['difficult'] = 0
    write(demo, coco)
    p = only(audit(demo), UNREAD_IGNORE_FIELD)
    assert (p.severity, p.entry) == (WARNING, 'annotation 2 (image 1)')
    assert p.message.startswith(
        '2 annotation(s) have a true "ignore_flag" or "difficult" '
        '(annotation 2 (image 1) "ignore_flag", annotation 3 (image 1) '
        '"difficult"), which neither CocoDataset nor COCOeval reads: they '
        'train and are scored as objects'), p.message
    assert 'set "iscrowd": 1' in p.message


def test_annotation_id_zero_in_a_scored_file(demo):
    """pycocotools' COCOeval never matches annotation 0: an error for the
    evaluator's file, not for a file only trained on."""
    for split in ('train', 'val'):
        coco = read(demo, split)
        for ann in coco['annotations']:
            ann['id'] -= 1
        write(demo, coco, split)
    (p, ) = audit_config(cfg_of(demo), images=False)
    assert (p.kind, p.severity, p.source) == (ZERO_ANN_ID, WARNING,
                                              'val_evaluator[0]')
    assert p.file.endswith('instances_val.json')
    assert p.entry == 'annotation 0 (image 1)'
    assert 'number the annotations from 1' in p.message
    # a crowd box, or one of a category outside the classes, is never a
    # true positive anyway
    coco = read(demo, 'val')
    coco['annotations'][0]['iscrowd'] = 1
    write(demo, coco, 'val')
    assert audit_config(cfg_of(demo), images=False) == []
    coco['annotations'][0]['iscrowd'] = 0
    write(demo, coco, 'val')
    names = {c['id']: c['name'] for c in coco['categories']}
    others = tuple(c for c in CLASSES
                   if c != names[coco['annotations'][0]['category_id']])
    cfg = cfg_of(demo, train_classes=others, val_classes=others)
    assert ZERO_ANN_ID not in [p.kind for p in audit_config(
        cfg, images=False)]


def test_a_scored_file_without_ground_truth(demo):
    """COCOeval reports AP -1 for every metric on a file without a
    non-crowd box of the classes (a test-dev split): a warning naming the
    evaluator and format_only; none with format_only=True."""
    original = read(demo, 'val')
    coco = dict(original, annotations=[
        dict(a, iscrowd=1) for a in original['annotations'][:1]])
    write(demo, coco, 'val')
    cfg = cfg_of(demo)
    p = only(audit_config(cfg, images=False), NO_GROUND_TRUTH)
    assert (p.severity, p.source, p.entry) == (
        WARNING, 'val_evaluator[0]', 'annotations')
    assert p.file.endswith('instances_val.json')
    assert 'has no annotation of the classes (crowd regions aside)' in \
        p.message and 'AP -1' in p.message
    assert 'set format_only=True and outfile_prefix in val_evaluator[0]' \
        in p.message
    cfg['val_evaluator'][0]['format_only'] = True
    assert audit_config(cfg, images=False) == []
    # boxes of a category outside the classes are not scored either
    names = {c['id']: c['name'] for c in original['categories']}
    kept = names[original['annotations'][0]['category_id']]
    write(demo, dict(original, annotations=[
        a for a in original['annotations']
        if names[a['category_id']] == kept]), 'val')
    others = tuple(c for c in CLASSES if c != kept)
    assert [p.kind for p in audit_config(
        cfg_of(demo, val_classes=others), images=False)
            if p.source == 'val_evaluator[0]'] == [NO_GROUND_TRUTH]
    assert NO_GROUND_TRUTH not in [p.kind for p in audit_config(
        cfg_of(demo), images=False)]


def test_annotation_id_zero_really_loses_a_match():
    """The reason for the rule above, on pycocotools itself: a perfect
    detection of the only box scores AP 1 when the box is annotation 1
    and not when it is annotation 0."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def ap(ann_id):
        gt = COCO()
        gt.dataset = dict(
            images=[dict(id=1, width=100, height=100)],
            categories=[dict(id=1, name='a')],
            annotations=[dict(id=ann_id, image_id=1, category_id=1,
                              bbox=[10, 10, 40, 40], area=1600,
                              iscrowd=0)])
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes([dict(image_id=1, category_id=1,
                                  bbox=[10, 10, 40, 40], score=0.9)])
            ev = COCOeval(gt, dt, 'bbox')
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev.stats[0]

    assert ap(1) == pytest.approx(1.0)
    assert ap(0) < 0.5


def renumber_categories(demo, new_id: dict) -> None:
    """Give the categories (and their annotations) of both demo files the
    ids ``new_id[old id]``."""
    for split in ('train', 'val'):
        coco = read(demo, split)
        for cat in coco['categories']:
            cat['id'] = new_id[cat['id']]
        for ann in coco['annotations']:
            ann['category_id'] = new_id[ann['category_id']]
        write(demo, coco, split)


def test_classwise_ap_needs_ascending_category_ids(demo):
    """CocoMetric(classwise=True) prints COCOeval's per-class AP (sorted
    ids) under the file's class order: refused when they differ."""
    renumber_categories(demo, {1: 9, 2: 3, 3: 4, 4: 5, 5: 6})  # disc last
    cfg = cfg_of(demo)
    assert audit_config(cfg, images=False) == []  # no per-class table
    cfg['val_evaluator'][0]['classwise'] = True
    (p, ) = audit_config(cfg, images=False)
    assert (p.kind, p.severity, p.source, p.entry) == (
        CLASSWISE_ORDER, ERROR, 'val_evaluator[0]', 'categories')
    assert 'ids in the order [disc (9), square (3), triangle (4)' \
        in p.message
    assert 'or set classwise=False' in p.message


def test_classwise_ap_needs_integer_category_ids(demo):
    """CocoMetric(classwise=True) looks each category id up with
    pycocotools' loadCats, which iterates a string id's characters (a
    KeyError after the whole test): refused; without the table, not."""
    renumber_categories(demo, {1: '7', 2: '42', 3: '1000', 4: '8', 5: '9'})
    cfg = cfg_of(demo)
    assert audit_config(cfg, images=False) == []  # no per-class table
    cfg['val_evaluator'][0]['classwise'] = True
    p = only(audit_config(cfg, images=False), CLASSWISE_ID_TYPE)
    assert (p.severity, p.source, p.entry) == (
        ERROR, 'val_evaluator[0]', 'categories')
    assert "a string (" in p.message and "'42'" in p.message
    assert 'or set classwise=False' in p.message
    # the crash it prevents, as mmdet's CocoMetric meets it
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(cfg['val_evaluator'][0]['ann_file'])
    with pytest.raises(KeyError):
        api.loadCats('42')


@pytest.mark.parametrize('value', ['0', '1', None, 2, 0.5, [0]])
def test_iscrowd_not_0_or_1(demo, value):
    """mmdet makes any true "iscrowd" (the string '0' too) a crowd box;
    COCOeval takes int() of it (None fails after the whole test)."""
    coco = read(demo)
    coco['annotations'][1]['iscrowd'] = value
    coco['annotations'][3]['iscrowd'] = value
    write(demo, coco)
    p = only(audit(demo), BAD_ISCROWD)
    assert p.severity == ERROR and p.entry == 'annotation 2 (image 1)'
    assert p.message.startswith(
        f'2 annotation(s) have an "iscrowd" that is not 0 or 1 '
        f'(annotation 2 (image 1) iscrowd={json.dumps(value)}, ')
    assert 'write 0 (an object) or 1 (a crowd region)' in p.message


def test_iscrowd_booleans_and_missing_are_fine_for_training(demo):
    """true / false read as 1 / 0 in both mmdet and pycocotools."""
    coco = read(demo)
    coco['annotations'][1]['iscrowd'] = True
    coco['annotations'][2]['iscrowd'] = False
    del coco['annotations'][3]['iscrowd']
    write(demo, coco)
    assert audit(demo) == []


def test_scored_file_needs_integer_ids_and_iscrowd(demo):
    """COCOeval stores matched ids in a float array ('x' fails once a
    detection matches) and reads int(gt['iscrowd'])."""
    coco = read(demo, 'val')
    coco['annotations'][1]['id'] = 'x'
    del coco['annotations'][2]['iscrowd']
    write(demo, coco, 'val')
    problems = audit_config(cfg_of(demo), images=False)
    assert sorted(p.kind for p in problems) == [ANN_ID_TYPE, BAD_ISCROWD]
    for p in problems:
        assert (p.severity, p.source) == (ERROR, 'val_evaluator[0]')
    p = next(p for p in problems if p.kind == ANN_ID_TYPE)
    assert p.entry == 'annotations[1]'
    assert p.message.startswith(
        "1 annotation(s) have an id that is not an integer (annotations[1] "
        "(id 'x')), in a file that val_evaluator[0] scores")
    p = next(p for p in problems if p.kind == BAD_ISCROWD)
    assert 'have no "iscrowd"' in p.message and 'KeyError' in p.message
    # only the scored file: the same in a file only trained on passes
    cfg = cfg_of(demo)
    del cfg['val_evaluator']
    assert audit_config(cfg, images=False) == []


def test_string_annotation_id_really_fails_in_cocoeval():
    """The reason for the rule above, on pycocotools itself."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = dict(
        images=[dict(id=1, width=100, height=100)],
        categories=[dict(id=1, name='a')],
        annotations=[dict(id='x', image_id=1, category_id=1,
                          bbox=[10, 10, 40, 40], area=1600, iscrowd=0)])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([dict(image_id=1, category_id=1,
                              bbox=[10, 10, 40, 40], score=0.9)])
        ev = COCOeval(gt, dt, 'bbox')
        with pytest.raises(ValueError):
            ev.evaluate()


def _with_mask(cfg):
    cfg['train_dataloader']['dataset']['pipeline'] = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
    return cfg


def test_segmentations_audited_when_masks_are_loaded(demo):
    coco = read(demo)
    anns = coco['annotations']
    h, w = coco['images'][0]['height'], coco['images'][0]['width']
    assert anns[0]['image_id'] == 1
    anns[0]['segmentation'] = [[1, 2, 3, 4]]  # 2 points: box ignored
    anns[1]['segmentation'] = []  # KeyError 'mask'
    del anns[2]['segmentation']
    anns[3]['segmentation'] = dict(counts=[0, 10], size=[h + 1, w])
    anns[4]['segmentation'] = [[1, 2, 3, 4], [1, 1, 9, 1, 9, 9]]
    write(demo, coco)
    cfg = cfg_of(demo)
    assert audit_config(cfg, images=False) == []  # masks not loaded
    assert not sources_from_config(cfg)[0].with_mask
    problems = audit_config(_with_mask(cfg), images=False)
    assert sources_from_config(cfg)[0].with_mask
    msgs = {p.message.split(' (')[0]: p for p in problems}
    assert sorted((p.kind, p.severity) for p in problems) == [
        (BAD_SEGMENTATION, ERROR)] * 3 + [(SEGMENTATION_POLYGONS, WARNING)]
    src = 'train_dataloader.dataset.dataset.dataset'
    for p in problems:
        assert p.source == src and p.file.endswith('instances_train.json')
        assert f'{src} loads masks (LoadAnnotations(with_mask=True))' \
            in p.message
    p = msgs['1 annotation(s) have no polygon of at least 3 points']
    assert p.entry == 'annotation 1 (image 1)'
    assert 'annotation 1 (image 1) segmentation=[[1, 2, 3, 4]]' \
        in p.message
    assert 'silently turns the object into an ignored box' in p.message
    p = msgs['2 annotation(s) have no "segmentation"']
    assert 'annotation 2 (image 1) segmentation=[], annotation 3' \
        in p.message
    assert "KeyError: 'mask'" in p.message
    p = next(p for p in problems if 'have an RLE' in p.message)
    assert p.entry == 'annotation 4 (image 1)'
    assert f'size [{h + 1}, {w}] in a {h} x {w} image' in p.message
    p = next(p for p in problems if p.kind == SEGMENTATION_POLYGONS)
    assert p.entry == 'annotation 5 (image 1)'


def test_rle_with_poly2mask_false(demo):
    """LoadAnnotations(poly2mask=False) keeps polygons only: mmdet turns
    an RLE's object into an ignored box, silently."""
    coco = read(demo)
    h, w = coco['images'][0]['height'], coco['images'][0]['width']
    coco['annotations'][0]['segmentation'] = dict(counts=[0, 10],
                                                  size=[h, w])
    write(demo, coco)
    cfg = _with_mask(cfg_of(demo))
    assert audit_config(cfg, images=False) == []  # poly2mask=True
    cfg['train_dataloader']['dataset']['pipeline'][1]['poly2mask'] = False
    p = only(audit_config(cfg, images=False), BAD_SEGMENTATION)
    assert p.entry == 'annotation 1 (image 1)'
    assert p.message.startswith('1 annotation(s) have an RLE "segmentation"'
                                ' (annotation 1 (image 1))')
    assert 'with poly2mask=False, mmdet keeps polygons only' in p.message
    # a crowd box (COCO writes every one as an RLE) is ignored either way:
    # mmdet's own poly2mask=False COCO configs pass
    coco['annotations'][0]['iscrowd'] = 1
    write(demo, coco)
    assert not [p for p in audit_config(cfg, images=False)
                if p.kind == BAD_SEGMENTATION]


def test_ann_file_that_is_a_directory(demo):
    cfg = cfg_of(demo)
    cfg['val_dataloader']['dataset']['ann_file'] = 'annotations'
    problems = audit_config(cfg, images=False)
    p = only([p for p in problems if p.kind == BAD_FILE], BAD_FILE)
    assert (p.severity, p.entry, p.source) == (
        ERROR, 'file', 'val_dataloader.dataset')
    assert p.message.startswith(
        'is a directory, not a COCO json file: set '
        'val_dataloader.dataset.ann_file to the annotation .json file (it '
        'holds instances_train.json, instances_val.json)')
    with pytest.raises(UserInputError, match='is a directory'):
        check_annotations(cfg)


def test_unchecked_loaders_are_named(demo):
    cfg = cfg_of(demo)
    cfg['test_dataloader'] = None
    assert unchecked_loaders(cfg, ('train_dataloader', 'val_dataloader',
                                   'test_dataloader')) == {
        'test_dataloader': 'is None in the config'}
    cfg['val_dataloader']['dataset']['type'] = 'VOCDataset'
    assert 'val_dataloader' not in unchecked_loaders(  # its evaluator's file
        cfg, ('val_dataloader', ))
    del cfg['val_evaluator']
    assert unchecked_loaders(cfg, ('val_dataloader', ))[
        'val_dataloader'].startswith('has no COCO annotation file')
