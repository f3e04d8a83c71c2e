# Copyright (c) mmsnip contributors. All rights reserved.
"""`mim train/test mmsnip CONFIG_NAME` find mmsnip's configs and tools."""
import os.path as osp
import shutil
import sys

import pytest

from conftest import run_tool

MIM = osp.join(osp.dirname(sys.executable), 'mim')
CONFIG_NAME = 'faster-rcnn_r18-w16_fpn_12e_demo.py'


@pytest.mark.skipif(
    not osp.exists(MIM) and shutil.which('mim') is None,
    reason='openmim is not installed')
def test_mim_train_and_test_by_config_name(tiny_demo_root, tmp_path):
    mim = MIM if osp.exists(MIM) else shutil.which('mim')
    root = tiny_demo_root.rstrip('/') + '/'
    ann_val = root + 'annotations/instances_val.json'
    common = [
        f'train_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_evaluator.ann_file={ann_val}',
        f'val_evaluator.ann_file={ann_val}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
    ]
    work_dir = str(tmp_path / 'work')
    # Run from an unrelated folder: the config is found by name inside the
    # installed package (mmsnip/.mim/configs), not relative to the cwd.
    run_tool([
        mim, 'train', 'mmsnip', CONFIG_NAME, '--work-dir', work_dir,
        '--cfg-options'
    ] + common, cwd=str(tmp_path))
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    proc = run_tool([
        mim, 'test', 'mmsnip', CONFIG_NAME, '--checkpoint', ckpt,
        '--work-dir', str(tmp_path / 'test'), '--cfg-options'
    ] + common, cwd=str(tmp_path))
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
