# Copyright (c) mmsnip contributors. All rights reserved.
"""The detector's ``num_classes`` against the dataset's classes."""
import glob
import logging
import os.path as osp

import pytest
from conftest import (REPO_ROOT, logged_messages, run_in_process, run_tool,
                      tiny_config)
from mmengine.config import Config

from mmsnip.utils import register_all_modules
from mmsnip.utils.preflight import (UserInputError, check_num_classes,
                                    dataset_classes, num_classes_entries)

SNIPER_DEMO = osp.join(REPO_ROOT, 'configs/sniper',
                       'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
SHIPPED = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs/**/*.py'),
                         recursive=True) if '/_base_/' not in p)
TRAIN = ('train_dataloader', 'val_dataloader')
TEST = ('test_dataloader', )


@pytest.fixture(autouse=True, scope='module')
def _registered():
    register_all_modules(init_default_scope=False)


def _mmdet(base: str, folder) -> Config:
    """A config that only inherits ``mmdet::<base>``."""
    path = folder / (osp.basename(base))
    path.write_text(f"_base_ = 'mmdet::{base}'\n")
    return Config.fromfile(str(path))


@pytest.mark.parametrize('path', SHIPPED,
                         ids=[osp.relpath(p, REPO_ROOT) for p in SHIPPED])
def test_shipped_configs_pass(path):
    cfg = Config.fromfile(path)
    check_num_classes(cfg, TRAIN)
    check_num_classes(cfg, TEST)


def test_entries_are_the_dataset_class_heads(tmp_path):
    """Every stage of a cascade and the mask heads; not the RPN (one
    class), not HTC's semantic head (stuff and things), not GLIP (text
    tokens)."""
    def entries(base):
        return dict(num_classes_entries(_mmdet(base, tmp_path).model))

    assert entries('cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py') == {
        'model.roi_head.bbox_head[0].num_classes': 80,
        'model.roi_head.bbox_head[1].num_classes': 80,
        'model.roi_head.bbox_head[2].num_classes': 80,
        'model.roi_head.mask_head.num_classes': 80,
    }
    htc = entries('htc/htc_r50_fpn_1x_coco.py')
    assert len(htc) == 6 and not any('semantic' in k for k in htc)
    assert entries('glip/glip_atss_swin-t_a_fpn_dyhead_16xb2_ms-2x_funtune_'
                   'coco.py') == {}
    wrapped = dict(type='AutoFocus', detector=dict(
        rpn_head=dict(num_classes=1),
        roi_head=dict(bbox_head=dict(num_classes=5))))
    assert list(num_classes_entries(dict(type='SnipTTAModel',
                                         module=wrapped))) == [
        ('model.module.detector.roi_head.bbox_head.num_classes', 5)]


def test_dataset_classes():
    assert dataset_classes(dict(type='CocoDataset',
                                metainfo=dict(classes=('a', 'b')))) == \
        ('a', 'b')
    # a type's defaults label only what the file holds: not compared (a
    # person-only COCO file without metainfo trains num_classes=1)
    assert dataset_classes(dict(type='CocoDataset')) is None
    # panoptic: the thing classes have boxes
    assert dataset_classes(dict(type='CocoPanopticDataset', metainfo=dict(
        thing_classes=('a', ), classes=('a', 'sky')))) == ('a', )
    assert dataset_classes(dict(type='CocoPanopticDataset',
                                metainfo=dict(classes=('a', 'sky')))) is None
    assert dataset_classes(dict(type='MOTChallengeDataset')) is None
    assert dataset_classes(dict(type='MOTChallengeDataset', metainfo=dict(
        classes=('pedestrian', )))) == ('pedestrian', )
    assert dataset_classes(dict(type='NoSuchDataset')) is None


def test_a_subset_of_the_default_classes_is_not_refused(tmp_path):
    """mmdet's CocoDataset without metainfo labels the COCO classes its
    file holds: a person-only file trains with num_classes=1."""
    cfg = _mmdet('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', tmp_path)
    cfg.model.roi_head.bbox_head.num_classes = 1
    check_num_classes(cfg, TRAIN)


def test_fewer_is_an_error_more_a_warning(tmp_path):
    cfg = Config.fromfile(SNIPER_DEMO)
    check_num_classes(cfg, TRAIN)
    cfg.model.roi_head.bbox_head.num_classes = 3
    with pytest.raises(UserInputError) as info:
        check_num_classes(cfg, TRAIN)
    assert str(info.value).endswith(
        'model.roi_head.bbox_head.num_classes=3 but '
        'train_dataloader.dataset.dataset has 5 classes: MMDetection trains '
        "label 3 and above as background, so 'cross', 'ring' would never "
        'be detected; set model.roi_head.bbox_head.num_classes=5')
    with pytest.raises(UserInputError, match='test_dataloader.dataset has '
                       '5 classes'):
        check_num_classes(cfg, TEST)
    cfg.model.roi_head.bbox_head.num_classes = 7
    with logged_messages(logging.WARNING) as messages:
        check_num_classes(cfg, TRAIN)
    assert messages == [
        'model.roi_head.bbox_head.num_classes=7: more than the 5 classes of '
        'train_dataloader.dataset.dataset; the outputs from 5 on never see '
        'an object of their class (set num_classes=5 to drop them)']
    # a COCO config that names its classes
    coco = _mmdet('retinanet/retinanet_r50_fpn_1x_coco.py', tmp_path)
    coco.train_dataloader.dataset.metainfo = dict(
        classes=tuple(f'c{i}' for i in range(80)))
    coco.model.bbox_head.num_classes = 20
    with pytest.raises(UserInputError, match='has 80 classes'):
        check_num_classes(coco, TRAIN)


def test_train_and_test_refuse(tiny_demo_root, tmp_path, monkeypatch,
                               capsys):
    """tools/train.py as a process, tools/test.py's run_cli(main) in this
    one: the same one error line."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'work'),
                      str(tmp_path / 'cfg.py'), base=SNIPER_DEMO)
    ckpt = tmp_path / 'any.pth'
    ckpt.write_bytes(b'')  # refused before it is read
    option = ['--cfg-options', 'model.roi_head.bbox_head.num_classes=4']
    for args in (['tools/train.py', cfg], ['tools/test.py', cfg, str(ckpt)]):
        if args[0] == 'tools/train.py':
            proc = run_tool(args + option, check=False)
        else:
            proc = run_in_process(args + option, monkeypatch, capsys)
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines()
                  if line.startswith('error:')]
        assert len(errors) == 1, proc.stderr[-2000:]
        assert errors[0].endswith(
            'model.roi_head.bbox_head.num_classes=4 but '
            f'{"train" if "train" in args[0] else "test"}_dataloader.'
            f'dataset{".dataset" if "train" in args[0] else ""} has 5 '
            "classes: MMDetection trains label 4 and above as background, "
            "so 'ring' would never be detected; set "
            'model.roi_head.bbox_head.num_classes=5')
