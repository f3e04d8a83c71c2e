# Copyright (c) mmsnip contributors. All rights reserved.
"""End-to-end runs of tools/train.py, tools/test.py and dist_train.sh on a
tiny demo dataset (CPU, a few iterations each)."""
import glob
import json
import os.path as osp

import sys

import torch

from conftest import (BASELINE_CONFIG as BASELINE, REPO_ROOT, free_port,
                      run_tool, tiny_config)


def _metrics(work_dir):
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'coco/bbox_mAP' in record:
                    return record
    return None


def test_train_save_resume_test(tiny_demo_root, tmp_path):
    work_dir = str(tmp_path / 'work')
    cfg1 = tiny_config(tiny_demo_root, work_dir, str(tmp_path / 'e1.py'),
                       max_epochs=1)
    run_tool(['tools/train.py', cfg1])
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))

    # Resume from the epoch-1 checkpoint (numpy scalars in `meta`: needs the
    # torch >= 2.6 loader) and train one more epoch.
    cfg2 = tiny_config(tiny_demo_root, work_dir, str(tmp_path / 'e2.py'),
                       max_epochs=2)
    proc = run_tool(['tools/train.py', cfg2, '--resume'])
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1' in log, log[-3000:]
    ckpt = torch.load(
        osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
        weights_only=False)
    assert ckpt['meta']['epoch'] == 2

    test_dir = str(tmp_path / 'test')
    out = str(tmp_path / 'preds.pkl')
    run_tool([
        'tools/test.py', cfg2,
        osp.join(work_dir, 'epoch_2.pth'), '--work-dir', test_dir, '--out',
        out
    ])
    metrics = _metrics(test_dir)
    assert metrics is not None, 'no COCO metrics logged'
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
    assert osp.getsize(out) > 0


def test_dist_train_two_cpu_processes(tiny_demo_root, tmp_path):
    work_dir = str(tmp_path / 'dist')
    cfg = tiny_config(tiny_demo_root, work_dir, str(tmp_path / 'dist.py'),
                      max_epochs=1)
    proc = run_tool(
        ['bash', 'tools/dist_train.sh', cfg, '2'],
        env=dict(PORT=str(free_port()), PYTHON=sys.executable,
                 OMP_NUM_THREADS='1'))
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log, log[-3000:]
    assert 'GPU number: 2' in log, log[-3000:]  # mmengine's world size
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_dist_train_refuses_a_sampler_without_round_up(tiny_demo_root,
                                                       tmp_path):
    """round_up=False on 2 processes: 27 chips in batches of 13 give rank
    0 two batches and rank 1 one, and DDP's all-reduce of rank 0's second
    batch failed ('Connection closed by peer'; NCCL hangs). Refused on
    every rank before the first iteration, naming the setting."""
    cfg = tiny_config(
        tiny_demo_root, str(tmp_path / 'work'), str(tmp_path / 'ru.py'),
        base=osp.join(REPO_ROOT, 'configs/sniper/'
                      'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'))
    proc = run_tool(
        ['bash', 'tools/dist_train.sh', cfg, '2', '--cfg-options',
         'train_dataloader.sampler.round_up=False',
         'train_dataloader.batch_size=13'],
        env=dict(PORT=str(free_port()), PYTHON=sys.executable,
                 OMP_NUM_THREADS='1'), check=False)
    assert proc.returncode != 0
    # one error per rank (their lines may interleave), no gloo failure
    message = 'ru.py: train_dataloader.sampler.round_up=False on 2 processes'
    assert proc.stderr.count('error: ') == 2, proc.stderr[-3000:]
    assert proc.stderr.count(message) == 2, proc.stderr[-3000:]
    assert 'pair.cc' not in proc.stderr


def test_sniper_train_then_full_pyramid_tta_test(tiny_demo_root, tmp_path):
    work_dir = str(tmp_path / 'sniper')
    cfg = tiny_config(
        tiny_demo_root, work_dir, str(tmp_path / 'sniper.py'), max_epochs=1,
        base=osp.join(REPO_ROOT, 'configs/sniper/'
                      'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'))
    proc = run_tool(['tools/train.py', cfg])
    assert 'positive chips' in proc.stdout + proc.stderr  # chip summary
    test_dir = str(tmp_path / 'test')
    run_tool([
        'tools/test.py', cfg,
        osp.join(work_dir, 'epoch_1.pth'), '--tta', '--work-dir', test_dir
    ])
    assert _metrics(test_dir) is not None


def test_dist_test_two_cpu_processes_equals_one(tiny_demo_root, tmp_path):
    """dist_test.sh on 2 processes, 3 images (one rank pads its share with
    a repeat): every image once in --out, the predictions and mAP of one
    process; --show-dir says that only rank 0 paints."""
    import pickle

    from conftest import tiny_checkpoint
    cfg, ckpt = tiny_checkpoint(tiny_demo_root, tmp_path, BASELINE)
    outs = {}
    for procs in (1, 2):
        out = str(tmp_path / f'p{procs}.pkl')
        work = str(tmp_path / f'test{procs}')
        if procs == 1:
            run_tool(['tools/test.py', cfg, ckpt, '--out', out,
                      '--work-dir', work])
        else:
            proc = run_tool(
                ['bash', 'tools/dist_test.sh', cfg, ckpt, '2', '--out', out,
                 '--work-dir', work, '--show-dir', 'vis'],
                env=dict(PORT=str(free_port()), PYTHON=sys.executable,
                         OMP_NUM_THREADS='1'))
            log = proc.stdout + proc.stderr
            assert '--show-dir "vis": only rank 0 paints' in log, log[-3000:]
        with open(out, 'rb') as f:
            outs[procs] = {r['img_id']: r['pred_instances'] for r in
                           pickle.load(f)}
        outs[procs, 'mAP'] = _metrics(work)['coco/bbox_mAP_50']
    assert sorted(outs[2]) == sorted(outs[1]) == [1, 2, 3]
    for img_id, one in outs[1].items():
        assert torch.allclose(outs[2][img_id]['bboxes'], one['bboxes'])
        assert torch.equal(outs[2][img_id]['labels'], one['labels'])
    assert outs[2, 'mAP'] == outs[1, 'mAP']
