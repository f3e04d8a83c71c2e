# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal mining resumes only with the same checkpoint and settings."""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
from mmengine.config import Config

from conftest import REPO_ROOT, run_tool, tiny_checkpoint
from mmsnip.apis.mining import (SETTINGS_FILE, MiningResumeError,
                                mining_settings, prepare_parts)
from mmsnip.chips import ChipConfig

STAGE1 = osp.join(REPO_ROOT,
                  'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


def _settings(tmp_path, ckpt_bytes=b'weights', num=300, iou=0.7,
              images=((1, 'a.jpg'), (2, 'b.jpg'))):
    ckpt = tmp_path / 'stage1.pth'
    ckpt.write_bytes(ckpt_bytes)
    return mining_settings(str(ckpt), ChipConfig.paper_coco(), list(images),
                           num, iou)


def _shard(parts, img_id=1):
    with open(osp.join(parts, f'rank0-{img_id:08d}.pkl'), 'wb') as f:
        pickle.dump({img_id: [np.zeros((1, 5), np.float32)] * 3}, f)


def test_same_settings_resume(tmp_path):
    parts = str(tmp_path / 'props.pkl.parts')
    prepare_parts(parts, _settings(tmp_path))
    _shard(parts)
    prepare_parts(parts, _settings(tmp_path))  # no error, shard kept
    assert osp.exists(osp.join(parts, 'rank0-00000001.pkl'))
    with open(osp.join(parts, SETTINGS_FILE)) as f:
        assert json.load(f)['num_per_scale'] == 300


@pytest.mark.parametrize('change,expected', [
    (dict(num=20), 'num_per_scale (300 before, 20 now)'),
    (dict(iou=0.5), 'nms_iou (0.7 before, 0.5 now)'),
    (dict(ckpt_bytes=b'retrained'), 'checkpoint (content differs'),
    (dict(images=((1, 'a.jpg'), )), 'images (2 before, 1 now'),
])
def test_other_settings_are_refused_naming_them(tmp_path, change, expected):
    parts = str(tmp_path / 'props.pkl.parts')
    prepare_parts(parts, _settings(tmp_path))
    _shard(parts)
    with pytest.raises(MiningResumeError) as info:
        prepare_parts(parts, _settings(tmp_path, **change))
    assert expected in str(info.value)
    assert '--restart' in str(info.value)
    assert osp.exists(osp.join(parts, 'rank0-00000001.pkl'))  # untouched


def test_restart_discards_old_shards(tmp_path):
    parts = str(tmp_path / 'props.pkl.parts')
    prepare_parts(parts, _settings(tmp_path))
    _shard(parts)
    prepare_parts(parts, _settings(tmp_path, num=20), restart=True)
    assert not osp.exists(osp.join(parts, 'rank0-00000001.pkl'))
    with open(osp.join(parts, SETTINGS_FILE)) as f:
        assert json.load(f)['num_per_scale'] == 20


def test_shards_without_a_settings_record_are_refused(tmp_path):
    parts = tmp_path / 'props.pkl.parts'
    parts.mkdir()
    _shard(str(parts))
    with pytest.raises(MiningResumeError, match='without a settings record'):
        prepare_parts(str(parts), _settings(tmp_path))


def test_tool_refuses_then_restarts(tiny_demo_root, tmp_path):
    """tools/mine_proposals.py: a second run with another --num-per-scale
    fails with one error line before any work; --restart starts over."""
    cfg_path, ckpt = tiny_checkpoint(tiny_demo_root, tmp_path, STAGE1,
                                     'stage1')
    out = str(tmp_path / 'props.pkl')
    parts = out + '.parts'
    # an interrupted run with --num-per-scale 20: its record and a shard
    cfg = Config.fromfile(cfg_path)
    from mmsnip.datasets import SniperDataset
    from mmsnip.utils import register_all_modules
    register_all_modules()
    ds_cfg = cfg.train_dataloader.dataset
    ds = SniperDataset(**{k: v for k, v in ds_cfg.items() if k != 'type'})
    inner = ds.dataset
    images = [(inner.get_data_info(i)['img_id'],
               osp.basename(inner.get_data_info(i)['img_path']))
              for i in range(len(inner))]
    prepare_parts(parts, mining_settings(ckpt, ds.chip_cfg, images,
                                         20, 0.7))
    _shard(parts, images[0][0])

    proc = run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out', out,
                     '--num-per-scale', '5'], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr
    assert 'num_per_scale (20 before, 5 now)' in errors[0]
    assert '--restart' in errors[0]

    run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out', out,
              '--num-per-scale', '5', '--restart'])
    assert not osp.exists(parts)
