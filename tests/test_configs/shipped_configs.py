# Copyright (c) mmsnip contributors. All rights reserved.
"""The shipped SNIPER-for-any-detector configs, shrunk for CPU tests."""
import copy
import glob
import os.path as osp
import re

from conftest import REPO_ROOT

DEMO_CLASSES = ('disc', 'square', 'triangle', 'cross', 'ring')
# Every `sniper_*_coco.py` that inherits an `mmdet::` detector config (not
# only mmdet's `_base_` pieces, as the paper's recipe does).
SHIPPED = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs/sniper/*_coco.py'))
    if re.search(r"'mmdet::(?!_base_/)", open(p).read()))
# Small test pyramid (short, max) with the paper's ranges.
TINY_TEST_SCALES = [
    dict(short_max=(96, 160), valid_range=(120, None)),
    dict(short_max=(160, 256), valid_range=(32, 150)),
    dict(short_max=(256, 400), valid_range=(0, 80)),
]


def mmdet_child(base: str, folder) -> str:
    """Path of ``folder/child.py``, a config that only inherits
    ``mmdet::<base>`` (a user's config of an mmdet detector)."""
    path = osp.join(str(folder), 'child.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = 'mmdet::{base}'\n")
    return path


def _no_pretrained(node) -> None:
    """Drop ``init_cfg=dict(type='Pretrained', ...)`` (no internet)."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            _no_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _no_pretrained(value)


# Box budgets of a tiny test: proposals kept (RPN ``max_per_img``, also
# ``nms_pre``) and regions sampled per image (``sampler.num``). mmcv's CPU
# RoIAlign costs most of a two-stage test at COCO budgets (2000 proposals
# and 512 regions per image, 1000 per view at test): 15 s per iteration of
# Cascade R-CNN on two 256 px chips. The full-pyramid test keeps every
# detection of a view (``view_max_per_img=-1``): Mask R-CNN's mask head
# runs on up to proposals x classes boxes per view, 7.5 s per image at 64
# proposals, 2.4 s at 16.
TINY_BOX_BUDGET = 16


def _shrink_box_budgets(node) -> None:
    """Cap every ``max_per_img``, ``nms_pre`` and sampler ``num`` of a
    model's ``train_cfg``/``test_cfg`` at :data:`TINY_BOX_BUDGET`."""
    if isinstance(node, dict):
        for key in ('max_per_img', 'nms_pre'):
            if isinstance(node.get(key), int):
                node[key] = min(node[key], TINY_BOX_BUDGET)
        sampler = node.get('sampler')
        if isinstance(sampler, dict) and isinstance(sampler.get('num'), int):
            sampler['num'] = min(sampler['num'], TINY_BOX_BUDGET)
        for value in node.values():
            _shrink_box_budgets(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _shrink_box_budgets(value)


def _set_num_classes(node, num_classes: int) -> None:
    """Every ``num_classes`` of a model config (heads, stages, masks)."""
    if isinstance(node, dict):
        if 'num_classes' in node:
            node['num_classes'] = num_classes
        for value in node.values():
            _set_num_classes(value, num_classes)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_num_classes(value, num_classes)


def tiny_sniper_config(shipped: str, data_root: str, work_dir: str,
                       out_path: str, iters: int = 2) -> str:
    """A shipped config on the tiny demo data: 256 px chips, ``iters``
    iterations of batch 2 with a checkpoint at the end, the test pyramid
    of :data:`TINY_TEST_SCALES`, the demo's 5 classes, no pretrained
    weights, box budgets of :data:`TINY_BOX_BUDGET`; detector, labels and
    runner otherwise unchanged."""
    from mmengine.config import Config
    cfg = Config.fromfile(shipped)
    root = data_root.rstrip('/') + '/'
    _no_pretrained(cfg.model)
    _set_num_classes(cfg.model, len(DEMO_CLASSES))
    for key in ('train_cfg', 'test_cfg'):
        _shrink_box_budgets(cfg.model.get(key))
    if 'num_queries' in cfg.model:
        # DINO picks 900 encoder tokens as queries; the tiny test pyramid's
        # coarsest image (96 x 160 px) has 321.
        cfg.model.num_queries = 100
    loader = cfg.train_dataloader
    loader.update(batch_size=2, num_workers=0, persistent_workers=False)
    loader.pop('pin_memory', None)
    chips = loader.dataset
    chips.cache_dir = ''
    chips.chip_cfg.chip_size = 256
    chips.chip_cfg.scales[0] = dict(max_side=256, valid_range=(120, None))
    if 'chip_cfg' in cfg:  # one chip_cfg (SnipRunner refuses two)
        cfg.chip_cfg = copy.deepcopy(chips.chip_cfg)
    chips.dataset.update(
        data_root=root, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=DEMO_CLASSES))
    test = cfg.test_dataloader
    test.update(batch_size=1, num_workers=0, persistent_workers=False)
    test.dataset.update(
        data_root=root, ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'), metainfo=dict(classes=DEMO_CLASSES))
    cfg.test_evaluator = dict(
        type='CocoMetric', metric='bbox',
        ann_file=root + 'annotations/instances_val.json')
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.tta_model.scales = TINY_TEST_SCALES
    cfg.tta_pipeline[1].transforms[0] = [
        dict(type='mmsnip.ResizeToScale', scale=s) for s in TINY_TEST_SCALES
    ]
    cfg.work_dir = work_dir
    cfg.dump(out_path)
    return out_path
