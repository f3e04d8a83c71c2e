# Copyright (c) mmsnip contributors. All rights reserved.
import pytest
from mmdet import registry as mmdet_registry
from mmengine import registry as mmengine_registry
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmsnip import registry
from mmsnip.utils import register_all_modules

register_all_modules(init_default_scope=False)


@pytest.mark.parametrize('name', registry.__all__)
def test_every_node_is_a_child_of_mmdets(name):
    """... or of MMEngine's where MMDetection has none (FUNCTIONS)."""
    node = getattr(registry, name)
    assert node.scope == 'mmsnip'
    assert node.parent is getattr(mmdet_registry, name,
                                  getattr(mmengine_registry, name))
    assert node.parent.children['mmsnip'] is node


def test_mmsnip_scope_resolves_mmdet_modules():
    with DefaultScope.overwrite_default_scope('mmsnip'):
        backbone = registry.MODELS.build(
            dict(type='ResNet', depth=18, base_channels=16))
        assert type(backbone).__module__.startswith('mmdet.')
        assigner = registry.TASK_UTILS.build(
            dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4))
        assert type(assigner).__name__ == 'MaxIoUAssigner'
        assert registry.HOOKS.get('DetVisualizationHook') is not None
        assert registry.METRICS.get('CocoMetric') is not None
        assert registry.VISUALIZERS.get('DetLocalVisualizer') is not None


def test_config_inheriting_mmdet_faster_rcnn_builds(tmp_path):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n"
        "default_scope = 'mmsnip'\n"
        "model = dict(backbone=dict(depth=18, init_cfg=None),\n"
        "             neck=dict(in_channels=[64, 128, 256, 512]))\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmsnip'
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.MODELS.build(cfg.model)
    assert type(model).__name__ == 'FasterRCNN'
    assert model.backbone.depth == 18


def test_repo_configs_load_and_build():
    import glob
    import os.path as osp
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    configs = [
        p for p in glob.glob(osp.join(root, 'configs/**/*.py'),
                             recursive=True) if '_base_' not in p
    ]
    assert configs, 'no configs found'
    names = [osp.basename(p) for p in configs]
    assert len(names) == len(set(names)), 'config basenames must be unique'
    for path in configs:
        cfg = Config.fromfile(path)
        # SNIPER deltas on full `mmdet::` configs (and their children) keep
        # mmdet's default scope and prefix mmsnip types; the project's own
        # configs use mmsnip's.
        assert cfg.default_scope in ('mmsnip', 'mmdet'), path
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            registry.MODELS.build(cfg.model)


def test_locations_find_everything_mmsnip_registers():
    """A process that never calls ``register_all_modules`` (a config with
    ``default_scope = 'mmsnip'`` built by plain MMEngine) finds every
    mmsnip module through the registries' ``locations``; light modules
    (COCO and proposal files) import neither torch nor mmdet."""
    import json
    import subprocess
    import sys
    listing = ('import json, sys\n'
               'from mmsnip import registry\n'
               'if sys.argv[1] == "all":\n'
               '    from mmsnip.utils import register_all_modules\n'
               '    register_all_modules()\n'
               'found = {}\n'
               'for name in registry.__all__:\n'
               '    node = getattr(registry, name)\n'
               '    node.import_from_location()\n'
               '    found[name] = sorted(node.module_dict)\n'
               'print(json.dumps(found))\n')
    runs = {how: json.loads(subprocess.run(
        [sys.executable, '-c', listing, how], capture_output=True,
        text=True, check=True).stdout) for how in ('all', 'locations')}
    assert runs['all']['DATASETS'] and runs['all']['FUNCTIONS']
    assert runs['locations'] == runs['all']
    light = subprocess.run(
        [sys.executable, '-c',
         'import sys\n'
         'import mmsnip.datasets.coco_file, mmsnip.datasets.proposals\n'
         'from mmsnip.datasets import load_coco, save_proposals\n'
         'print(sorted(m for m in ("torch", "mmdet") if m in sys.modules))'],
        capture_output=True, text=True, check=True)
    assert light.stdout.strip() == '[]'
    # every name the package exported before it imported lazily, and its
    # submodules as attributes
    names = subprocess.run(
        [sys.executable, '-c',
         'import mmsnip.datasets as d\n'
         'from mmsnip.datasets import (CropChip, SniperSampler, chip_window,'
         ' geometric_before_crop, chip_input_problem, chip_output_problem,'
         ' pseudo_collate_by_value)\n'
         'print(d.chip_table.__name__, "chip_table" in dir(d))'],
        capture_output=True, text=True, check=True)
    assert names.stdout.split() == ['mmsnip.datasets.chip_table', 'True']
