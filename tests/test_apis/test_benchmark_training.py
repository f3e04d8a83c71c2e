# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.apis.benchmark.measure_training: the timed training is the one
tools/train.py runs (the config's runner_type)."""
import os.path as osp

from mmengine.config import Config

from conftest import REPO_ROOT, tiny_config
from mmsnip.apis.benchmark import measure_training
from mmsnip.engine import build_runner
from mmsnip.utils import register_all_modules

SNIPER = osp.join(REPO_ROOT, 'configs/sniper/'
                  'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


def _rpn_assigner(runner) -> str:
    model = runner.model.module if hasattr(runner.model, 'module') else \
        runner.model
    return type(model.rpn_head.assigner).__name__


def test_measure_training_builds_the_configs_runner(tiny_demo_root,
                                                    tmp_path):
    register_all_modules()
    cfg = Config.fromfile(tiny_config(
        tiny_demo_root, str(tmp_path / 'w'), str(tmp_path / 'sniper.py'),
        base=SNIPER))
    assert cfg.runner_type == 'mmsnip.engine.SnipRunner'
    # MMDetection's own assigner: SnipRunner makes it scale-aware, as in
    # tools/train.py; MMEngine's Runner would train it as it is.
    cfg.model.train_cfg.rpn.assigner = dict(
        type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
        min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1)
    runner = build_runner(cfg.copy())
    assert type(runner).__name__ == 'SnipRunner'
    assert _rpn_assigner(runner) == 'ScaleAwareMaxIoUAssigner'
    row = measure_training(cfg.copy(), num_iters=1, warmup=0)
    assert row['runner'] == 'SnipRunner'
    assert row['collate_fn'] == 'mmsnip.pseudo_collate_by_value'
    assert row['num_workers'] == 0 and row['samples_per_s'] > 0

    plain = cfg.copy()
    plain.pop('runner_type')
    runner = build_runner(plain)
    assert type(runner).__name__ == 'Runner'
    assert _rpn_assigner(runner) == 'MaxIoUAssigner'
