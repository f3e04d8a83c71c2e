# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal mining resumes only with the same checkpoint and settings."""
import json
import os
import os.path as osp
import pickle
from unittest import mock

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


class _TwoFiles:
    """A dataset of two annotation files both numbering from 1."""

    def full_init(self):
        pass

    def __len__(self):
        return 3

    def get_data_info(self, i):
        return [dict(img_id=1, img_path='setA/1.jpg'),
                dict(img_id=2, img_path='setA/2.jpg'),
                dict(img_id=1, img_path='setB/1.jpg')][i]


def test_an_id_of_two_images_is_refused_before_mining(tmp_path):
    """Two images of one img_id would share one proposal entry: refused
    naming both paths, before the model is built or anything mined."""
    from mmsnip.apis import mining
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='SniperDataset', dataset=dict(type='X'),
        chip_cfg=dict(scales=[dict(factor=1.0)])))))
    with mock.patch.object(mining.DATASETS, 'build',
                           return_value=_TwoFiles()), \
            mock.patch.object(mining.MODELS, 'build') as build_model:
        with pytest.raises(ValueError, match=r'mine_proposals: img_id 1 '
                           r'names two different images, "setA/1.jpg" and '
                           r'"setB/1.jpg".*renumber'):
            mining.mine_proposals(cfg, str(tmp_path / 'none.pth'),
                                  str(tmp_path / 'p.pkl'))
    build_model.assert_not_called()
    assert not osp.exists(str(tmp_path / 'p.pkl.parts'))


def test_merged_file_records_the_scales(tmp_path):
    from mmsnip.apis.mining import merge_shards
    from mmsnip.datasets.proposals import ProposalFile, load_proposals
    parts = str(tmp_path / 'parts')
    os.makedirs(parts)
    _shard(parts, 1)
    scales = ChipConfig.paper_coco().scales
    out = str(tmp_path / 'p.pkl')
    merge_shards(parts, out, [1], 3, scales=scales)
    assert [s['rule'] for s in ProposalFile(out).scales] == \
        [s.rule for s in scales]
    with pytest.raises(ValueError,
                       match=r'was mined for chip_cfg.scales\[0\]'):
        load_proposals(out, [1], 3, scales=scales[::-1])


def test_restart_interrupted_while_deleting_starts_afresh(tmp_path,
                                                          monkeypatch):
    """``--restart`` (or the end of mining) interrupted while the shards
    are deleted: the folder is gone as a whole, so the next run starts
    afresh (was: shards left without settings.json, refused until rerun
    with --restart, even after a finished merge)."""
    import shutil
    parts = str(tmp_path / 'props.pkl.parts')
    prepare_parts(parts, _settings(tmp_path))
    _shard(parts)

    def interrupted(path, *a, **k):
        os.remove(osp.join(path, SETTINGS_FILE))
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(shutil, 'rmtree', interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare_parts(parts, _settings(tmp_path, num=20), restart=True)
    prepare_parts(parts, _settings(tmp_path, num=20))  # no error
    assert os.listdir(parts) == [SETTINGS_FILE]
