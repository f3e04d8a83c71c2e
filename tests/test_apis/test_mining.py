# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/mine_proposals.py on the tiny demo data: output, resume, errors."""
import errno
import os
import os.path as osp
import pickle
import sys

import numpy as np
import pytest
from mmengine.config import Config

from conftest import (REPO_ROOT, free_port, run_tool, tiny_checkpoint,
                      tiny_config)
from mmsnip.apis.mining import (_shards, merge_shards, mining_settings,
                                prepare_parts, settings_differences)
from mmsnip.datasets import SniperDataset
from mmsnip.datasets.proposal_pool import pool_proposals
from mmsnip.datasets.proposals import ProposalFile, load_proposals

STAGE1 = osp.join(REPO_ROOT,
                  'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
STAGE2 = osp.join(
    REPO_ROOT, 'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo.py')


@pytest.fixture(scope='module')
def stage1(tiny_demo_root, tmp_path_factory):
    """A tiny stage-1 config and a (randomly initialised) checkpoint."""
    return tiny_checkpoint(tiny_demo_root, tmp_path_factory.mktemp('stage1'),
                           STAGE1, 'stage1')


def _image_ids(cfg_path):
    cfg = Config.fromfile(cfg_path)
    ds = SniperDataset(**{k: v for k, v in cfg.train_dataloader.dataset.items()
                          if k != 'type'})
    return [ds.dataset.get_data_info(i)['img_id']
            for i in range(len(ds.dataset))]


def test_mining_writes_proposals_for_every_image_and_scale(stage1, tmp_path):
    cfg_path, ckpt = stage1
    out = str(tmp_path / 'props.pkl')
    run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out', out,
              '--num-per-scale', '20', '--shard-size', '2'])
    ids = _image_ids(cfg_path)
    props = load_proposals(out, ids, num_scales=3)
    for i in ids:
        for p in props[i]:
            assert p.shape[1] == 5 and len(p) <= 20
    assert not osp.exists(out + '.parts')
    # each image's name is recorded: the image folder's name, then
    # img_path relative to data_prefix.img
    ds_cfg = Config.fromfile(cfg_path).train_dataloader.dataset
    inner = SniperDataset(**{k: v for k, v in ds_cfg.items()
                             if k != 'type'}).dataset
    folder = osp.basename(inner.data_prefix['img'].rstrip('/'))
    for k in range(len(inner)):
        info = inner.get_data_info(k)
        assert props.name(info['img_id']) == osp.join(folder, osp.relpath(
            info['img_path'], inner.data_prefix['img']))

    # The proposals feed stage 2's negative chips.
    cfg = Config.fromfile(cfg_path)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(negatives=True, proposal_file=out)
    ds = SniperDataset(**{k: v for k, v in ds_cfg.items() if k != 'type'})
    assert len(ds) >= ds.num_positive


def test_mining_resumes_from_existing_shards(stage1, tmp_path):
    cfg_path, ckpt = stage1
    out = str(tmp_path / 'props.pkl')
    ids = _image_ids(cfg_path)
    # the record of an interrupted run with the same settings (a resume
    # needs them: mmsnip.apis.mining.mining_settings)
    ds = SniperDataset(**{
        k: v for k, v in Config.fromfile(cfg_path).train_dataloader.dataset
        .items() if k != 'type'})
    images = [(i, osp.basename(ds.dataset.get_data_info(n)['img_path']))
              for n, i in enumerate(ids)]
    prepare_parts(out + '.parts',
                  mining_settings(ckpt, ds.chip_cfg, images, 5, 0.7))
    sentinel = [np.full((1, 5), 7.0, np.float32)] * 3
    with open(osp.join(out + '.parts', 'rank0-00000000.pkl'), 'wb') as f:
        pickle.dump({ids[0]: sentinel}, f)
    proc = run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out',
                     out, '--num-per-scale', '5'])
    assert f'{len(ids) - 1} of its {len(ids)} images left' in \
        proc.stdout + proc.stderr
    props = load_proposals(out, ids, num_scales=3)
    assert (props[ids[0]][0] == 7).all()  # taken from the shard


def test_mining_with_two_processes(stage1, tmp_path):
    cfg_path, ckpt = stage1
    out = str(tmp_path / 'dist.pkl')
    run_tool(['bash', 'tools/dist_mine.sh', cfg_path, ckpt, '2', '--out', out,
              '--num-per-scale', '5'],
             env=dict(PORT=str(free_port()), PYTHON=sys.executable,
                      OMP_NUM_THREADS='1'))
    load_proposals(out, _image_ids(cfg_path), num_scales=3)


def test_mining_bad_input(stage1, tmp_path):
    cfg_path, ckpt = stage1
    proc = run_tool(['tools/mine_proposals.py', cfg_path,
                     str(tmp_path / 'x.pth'), '--out',
                     str(tmp_path / 'p.pkl')], check=False)
    assert proc.returncode == 2 and 'x.pth' in proc.stderr
    # a config without chips (here the single-scale baseline)
    plain = tiny_config(
        Config.fromfile(cfg_path).train_dataloader.dataset.dataset.data_root,
        str(tmp_path / 'w'), str(tmp_path / 'plain.py'), base=osp.join(
            REPO_ROOT,
            'configs/baseline/faster-rcnn_r18-w16_fpn_12e_demo.py'))
    proc = run_tool(['tools/mine_proposals.py', plain, ckpt, '--out',
                     str(tmp_path / 'p.pkl')], check=False)
    assert proc.returncode == 2 and 'SniperDataset' in proc.stderr


def test_mining_a_scope_prefixed_chip_dataset(stage1, tmp_path):
    """Configs inheriting mmdet:: bases write type='mmsnip.SniperDataset'
    (the paper's COCO recipe does): mined like 'SniperDataset' (was:
    "needs a SniperDataset, got mmsnip.SniperDataset")."""
    cfg_path, ckpt = stage1
    out = str(tmp_path / 'props.pkl')
    run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out', out,
              '--num-per-scale', '5', '--cfg-options',
              'train_dataloader.dataset.type=mmsnip.SniperDataset'])
    ids = _image_ids(cfg_path)
    assert sorted(load_proposals(out, ids, num_scales=3)) == sorted(ids)


def test_mining_refuses_a_snip_config(tmp_path):
    """SnipDataset subclasses SniperDataset but trains whole canvases with
    no negatives: nothing to mine proposals for."""
    from mmsnip.apis import mine_proposals
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/snip/snip_faster-rcnn_r18-w16_fpn_1e_demo.py'))
    with pytest.raises(ValueError, match='is a SniperDataset, got '
                       'SnipDataset'):
        mine_proposals(cfg, str(tmp_path / 'x.pth'), str(tmp_path / 'p.pkl'))


def test_stage2_config_refuses_missing_proposals(tiny_demo_root, tmp_path):
    cfg_path = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                           str(tmp_path / 's2.py'), base=STAGE2)
    cfg = Config.fromfile(cfg_path)
    cfg.train_dataloader.dataset.proposal_file = str(tmp_path / 'none.pkl')
    cfg.dump(cfg_path)
    proc = run_tool(['tools/train.py', cfg_path], check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'train_dataloader.dataset.proposal_file' in proc.stderr
    assert 'none.pkl' in proc.stderr and 'mine_proposals' in proc.stderr


def test_shards_merge_one_at_a_time_and_an_image_mined_twice_once(tmp_path):
    """The merge reads shard by shard; an image id in two shards (a
    dataset that lists an image twice) keeps its first shard's rows."""
    rows = [np.array([[1, 2, 30, 40, 0.5]], np.float32)] * 2
    later = [np.array([[5, 5, 9, 9, 0.25]], np.float32)] * 2
    for name, shard in (('rank0-00000000.pkl', {1: rows, 2: rows}),
                        ('rank1-00000001.pkl', {2: later, 3: later})):
        with open(tmp_path / name, 'wb') as f:
            pickle.dump(shard, f)
    assert [sorted(s) for s in _shards(str(tmp_path))] == [[1, 2], [3]]
    out = str(tmp_path / 'p.npz')
    assert merge_shards(str(tmp_path), out, [1, 2, 3], 2) == 3 * 2
    got = load_proposals(out, [1, 2, 3], 2)
    np.testing.assert_array_equal(got[2][0], rows[0])
    np.testing.assert_array_equal(got[3][1], later[1])
    with pytest.raises(RuntimeError, match=r'mining finished without '
                       r'proposals for 1 images \(e.g. \[4\]\)'):
        merge_shards(str(tmp_path), out, [1, 2, 3, 4], 2)


def test_mining_pools_the_scales_when_asked(stage1, tmp_path):
    """``--pool-scales``: each image's proposals of all scales through one
    NMS at 0.7, stored once per image (version 4, recording the IoU and
    the scales); default: per scale, as before."""
    cfg_path, ckpt = stage1
    ids = _image_ids(cfg_path)
    scales, pooled = str(tmp_path / 'scales.pkl'), str(tmp_path / 'pool.pkl')
    run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out', scales,
              '--num-per-scale', '20'])
    proc = run_tool(['tools/mine_proposals.py', cfg_path, ckpt, '--out',
                     pooled, '--num-per-scale', '20', '--pool-scales'])
    assert 'pooled over the 3 scales (one NMS at IoU 0.7 per image' in \
        proc.stdout + proc.stderr
    per_scale, pool = ProposalFile(scales), load_proposals(pooled, ids, 3)
    assert (per_scale.version, per_scale.pool_iou) == (3, None)
    assert (pool.version, pool.pool_iou, pool.runs_per_image) == (4, 0.7, 1)
    assert pool.scales == per_scale.scales
    for i in ids:
        rows = pool[i][0]
        union = np.concatenate(per_scale[i])
        assert 0 < len(rows) <= len(union)
        # the pool's rows are mined rows (float16 boxes: within 0.5 px) ...
        near = np.abs(rows[:, None, :4] - union[None, :, :4]).max(-1)
        assert (near.min(axis=1) <= 0.5).all()
        # ... that overlap no kept row beyond the IoU (float16 slack), and
        # pooling them again keeps them all
        assert len(pool_proposals([rows], 0.72)) == len(rows)


def test_settings_record_the_pooling_and_old_records_still_resume(tmp_path):
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'weights')
    from mmsnip.chips import ChipConfig
    cfg = ChipConfig.from_dict(dict(scales=[dict(factor=1.0)]))
    per_scale = mining_settings(str(ckpt), cfg, [(1, 'a.jpg')], 5, 0.7)
    pooled = mining_settings(str(ckpt), cfg, [(1, 'a.jpg')], 5, 0.7, 0.7)
    assert (per_scale['pool_iou'], pooled['pool_iou']) == (None, 0.7)
    assert settings_differences(per_scale, pooled) == [
        'pool_iou (None before, 0.7 now)']
    # a record of an mmsnip before pooling: per scale, resumable
    old = {k: v for k, v in per_scale.items() if k != 'pool_iou'}
    assert settings_differences(old, per_scale) == []


def test_pooled_shards_merge_once_per_image(tmp_path):
    pool = np.array([[1, 2, 30, 40, 0.5], [5, 5, 9, 9, 0.25]], np.float32)
    with open(tmp_path / 'rank0-00000000.pkl', 'wb') as f:
        pickle.dump({1: [pool] * 3, 2: [pool[:1]] * 3}, f)
    out = str(tmp_path / 'p.npz')
    assert merge_shards(str(tmp_path), out, [1, 2], 3, pool_iou=0.7) == 3
    got = load_proposals(out, [1, 2], 3)
    assert (got.version, got.pool_iou) == (4, 0.7)
    for rows in got[1]:
        np.testing.assert_allclose(rows, pool, atol=0.002)


def _demo_copy(tiny_demo_root, root, exif: int = 0) -> tuple:
    """A copy of the tiny demo data whose first training image is re-saved
    (quality 95), with ``exif`` tagged with that EXIF orientation (the same
    stored pixels, so its annotation is of the stored frame). Returns
    ``(root, img_id)``."""
    import json
    import shutil

    from PIL import Image
    shutil.copytree(tiny_demo_root, root)
    ann = json.load(open(osp.join(root, 'annotations/instances_train.json')))
    first = ann['images'][0]
    assert first['width'] != first['height']  # a rotation changes the size
    path = osp.join(root, 'train', first['file_name'])
    tags = Image.Exif()
    if exif:
        tags[0x0112] = exif
    Image.open(path).save(path, exif=tags.tobytes(), quality=95)
    return str(root), first['id']


def test_mining_decodes_the_images_as_training_does(stage1, tiny_demo_root,
                                                     tmp_path):
    """Mining loads each image with the chip dataset's own loader (was:
    always LoadImageFromFile(color_type='color'), which applies EXIF
    orientation: with a training loader that ignores it, the proposals of
    a rotated camera photo were mined on other pixels, in a frame of
    swapped width and height, and trained as negatives silently)."""
    from mmsnip.apis import mine_proposals
    from mmsnip.utils import register_all_modules
    register_all_modules()
    cfg_path, ckpt = stage1
    plain, img_id = _demo_copy(tiny_demo_root, tmp_path / 'plain')
    rotated, _ = _demo_copy(tiny_demo_root, tmp_path / 'rotated', exif=6)
    mined = {}
    for name, root in (('plain', plain), ('rotated', rotated)):
        cfg = Config.fromfile(cfg_path)
        sniper = cfg.train_dataloader.dataset
        sniper.dataset.data_root = root + '/'
        sniper.pipeline[0].color_type = 'color_ignore_orientation'
        out = str(tmp_path / f'{name}.pkl')
        mine_proposals(cfg, ckpt, out, num_per_scale=10, device='cpu')
        mined[name] = load_proposals(out, [img_id], num_scales=3)[img_id]
    for a, b in zip(mined['plain'], mined['rotated']):
        np.testing.assert_array_equal(a, b)
    # The default loader applies the orientation: the image decodes with
    # width and height swapped, which training refuses too (CropChip).
    cfg = Config.fromfile(cfg_path)
    cfg.train_dataloader.dataset.dataset.data_root = rotated + '/'
    with pytest.raises(ValueError, match=r'mine_proposals: .*img_id '
                       f'{img_id}' r'\): the image decodes to .* EXIF'):
        mine_proposals(cfg, ckpt, str(tmp_path / 'p.pkl'), num_per_scale=10,
                       device='cpu')


def test_a_full_disk_while_mining_is_one_error_and_a_rerun_resumes(
        stage1, tmp_path):
    """A shard that cannot be written (a full disk; here a file-size
    limit, EFBIG): one ``error:`` line naming the shard, exit 2, no
    temporary file; the same command resumes once there is room."""
    cfg_path, ckpt = stage1
    out = str(tmp_path / 'props.pkl')
    cmd = [sys.executable, 'tools/mine_proposals.py', cfg_path, ckpt,
           '--out', out, '--num-per-scale', '300', '--shard-size', '6']
    # 20 KiB: the config mmengine copies fits, a shard of 6 images not
    proc = run_tool(['bash', '-c', 'ulimit -f 20 && exec "$@"', 'bash'] +
                    cmd, check=False)
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, \
        proc.stderr[-3000:]
    assert len(errors) == 1 and 'File too large' in errors[0]
    assert osp.join(out + '.parts', 'rank0-') in errors[0]
    assert sorted(os.listdir(out + '.parts')) == ['settings.json']
    run_tool(cmd[1:])
    assert len(ProposalFile(out)) == len(_image_ids(cfg_path))
    assert not osp.exists(out + '.parts')


def test_failed_writes_of_the_miner_name_the_file(tmp_path, monkeypatch):
    """The settings record, a shard and the merged file: a write that
    fails (ENOSPC at fsync, as a full network disk reports it) is a
    ``UserInputError`` naming the file; nothing is left behind."""
    from mmsnip.apis.mining import _write_shard
    from mmsnip.utils import fileio
    from mmsnip.utils.checks import UserInputError
    parts = str(tmp_path / 'p.pkl.parts')
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'weights')
    from mmsnip.chips import ChipConfig
    cfg = ChipConfig.from_dict(dict(scales=[dict(factor=1.0)]))
    settings = mining_settings(str(ckpt), cfg, [(1, 'a.jpg')], 5, 0.7)
    rows = [np.array([[1, 2, 30, 40, 0.5]], np.float32)]

    def full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    with monkeypatch.context() as m:
        m.setattr(fileio.os, 'fsync', full)
        with pytest.raises(UserInputError, match='cannot write ".*'
                           'settings.json": No space left on device'):
            prepare_parts(parts, settings)
    assert os.listdir(parts) == []
    prepare_parts(parts, settings)
    with monkeypatch.context() as m:
        m.setattr(fileio.os, 'fsync', full)
        with pytest.raises(UserInputError, match='cannot write ".*'
                           'rank0-00000000.pkl": No space left on device'):
            _write_shard(parts, 0, 0, {1: rows})
    _write_shard(parts, 0, 0, {1: rows})
    out = str(tmp_path / 'p.pkl')
    with monkeypatch.context() as m:
        m.setattr(fileio.os, 'fsync', full)
        with pytest.raises(UserInputError, match=r'cannot write ".*p\.pkl"'
                           ': No space left on device'):
            merge_shards(parts, out, [1], 1)
    assert sorted(os.listdir(tmp_path)) == ['c.pth', 'p.pkl.parts']
    assert sorted(os.listdir(parts)) == ['rank0-00000000.pkl',
                                         'settings.json']
