# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/benchmark.py on tiny data: every method runs and reports."""
import json
import os.path as osp
import subprocess

import pytest
import torch

from conftest import (REPO_ROOT, load_tool, run_in_process, run_tool,
                      tiny_checkpoint, tiny_config)

AUTOFOCUS = osp.join(REPO_ROOT, 'configs/autofocus/'
                     'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
SNIPER = osp.join(REPO_ROOT, 'configs/sniper/'
                  'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
SNIP = osp.join(REPO_ROOT,
                'configs/snip/snip_faster-rcnn_r18-w16_fpn_1e_demo.py')


@pytest.fixture(scope='module')
def autofocus_ckpt(tiny_demo_root, tmp_path_factory):
    return tiny_checkpoint(tiny_demo_root, tmp_path_factory.mktemp('bench'),
                           AUTOFOCUS, 'af')


def test_infer_compares_every_method(autofocus_ckpt, tmp_path):
    cfg_path, ckpt = autofocus_ckpt
    out = tmp_path / 'infer'
    md = tmp_path / 'bench.md'
    md.write_text('# Benchmarks\n')
    proc = run_tool([
        'tools/benchmark.py', 'infer', cfg_path, ckpt, '--num-images', '2',
        '--thresholds', '0', '1', '--tile-size', '160', '--tile-overlap',
        '32', '--out-dir', str(out), '--append', str(md), '--warmup', '0',
        '--rpn-proposals-per-mpix', '2000'
    ])
    assert '[infer] sahi' in proc.stdout
    data = json.loads((out / 'infer.json').read_text())
    rows = {(r['method'], str(r['params'].get('t'))): r
            for r in data['rows']}
    assert {m for m, _ in rows} == {'single', 'pyramid', 'autofocus',
                                    'oracle', 'tiling', 'sahi'}
    pyramid = rows[('pyramid', 'None')]
    # t = 0 selects every pixel (p > 0): the cascade is the full pyramid
    assert rows[('autofocus', '0.0')]['pixels'] == pyramid['pixels']
    # t = 1 selects none (p > 1): only the coarsest scale runs
    coarse = rows[('autofocus', '1.0')]['pixels']
    assert 0 < coarse < pyramid['pixels']
    assert rows[('single', 'None')]['pixels'] < pyramid['pixels']
    # our tiling and SAHI slice the same windows at the same factor
    assert rows[('tiling', 'None')]['pixels'] == rows[('sahi',
                                                       'None')]['pixels']
    for row in data['rows']:
        assert row['img_per_s'] > 0 and 0 <= row['AP'] <= 1
        assert row['limit_fraction'] > 0
    assert data['limit']['mpix_per_s'] > 0
    assert data['failed'] == [] and data['not_run'] == []
    assert data['warmup'] == 0
    assert 'cpu' in data['machine'] and 'torch' in data['machine']
    assert (out / 'infer.png').stat().st_size > 0
    text = md.read_text()
    assert text.startswith('# Benchmarks\n') and 'tools/benchmark.py infer' \
        in text and '| method | setting |' in text and 'Limit' in text
    assert '2000 per MPix' in text


def test_train_measures_chips_pyramid_and_single_scale(
        tiny_demo_root, tmp_path):
    configs = [
        tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                    str(tmp_path / f'{name}.py'), base=base)
        for name, base in (('sniper', SNIPER), ('snip', SNIP),
                           ('single', osp.join(
                               REPO_ROOT, 'configs/baseline/'
                               'faster-rcnn_r18-w16_fpn_12e_demo.py')))
    ]
    # A config that fails in its run (not before: it loads): reported,
    # the others still measured and tabled, the exit an error.
    broken = tmp_path / 'broken.py'
    broken.write_text(f"_base_ = ['{configs[0]}']\n"
                      "optim_wrapper = dict(type='NoSuchOptimWrapper')\n")
    out = tmp_path / 'train'
    proc = run_tool(['tools/benchmark.py', 'train', configs[0], str(broken),
                     *configs[1:], '--iters', '2', '--warmup', '1',
                     '--out-dir', str(out)], check=False)
    assert proc.returncode == 1 and '[train] broken: FAILED' in proc.stdout
    assert 'error: 1 train run(s) failed: broken' in proc.stderr
    assert '[train] sniper:' in proc.stdout and 'data wait' in \
        proc.stdout and '(steady ' in proc.stdout
    data = json.loads((out / 'train.json').read_text())
    sniper, snip, single = data['rows']
    assert [r['label'] for r in data['rows']] == ['sniper', 'snip', 'single']
    assert data['failed'][0].startswith('broken') and data['not_run'] == []
    for row in data['rows']:
        assert row['samples_per_s'] > 0 and row['mpix_per_s'] > 0
        assert row['peak_mem_mb'] > 0
        assert 0 <= row['data_wait_steady'] <= 1
        assert row['epoch_starts'] >= 0 and row['batches_per_epoch'] > 0
        # the runner tools/train.py builds (runner_type), the loader's
        # workers and collate function
        assert row['runner'] == 'SnipRunner' and row['num_workers'] == 0
    assert sniper['collate_fn'] == 'mmsnip.pseudo_collate_by_value'
    assert single['collate_fn'] == 'pseudo_collate'
    assert sniper['epoch_mpix_exact'] and snip['epoch_mpix_exact']
    assert not single['epoch_mpix_exact']
    # chips hold fewer pixels than the pyramid they are cut from
    assert sniper['epoch_mpix'] < snip['epoch_mpix']
    table = (out / 'train.md').read_text()
    assert table.startswith('| config | precision | batch | workers | '
                            'collate_fn |')
    assert not list(out.glob('train_*.json'))  # the children's, removed


def test_train_writes_its_table_after_every_config(tiny_demo_root, tmp_path,
                                                   monkeypatch, capsys):
    """The rows measured so far are on disk before the next config runs;
    a config past --timeout is reported, the others are kept."""
    tool = load_tool('tools/benchmark.py')
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'sniper.py'), base=SNIPER)
    out = tmp_path / 'train'
    row = dict(samples_per_s=8.0, mpix_per_s=0.5, data_s=0.01, step_s=0.1,
               data_wait=0.09, data_wait_steady=0.05, epoch_starts=0,
               batches_per_epoch=2, batch_size=2, peak_mem_mb=100.0,
               epoch_samples=4, epoch_mpix=0.3, epoch_mpix_exact=True,
               precision='fp32', collate_fn='pseudo_collate', num_workers=0,
               runner='SnipRunner', device='cpu')
    calls, real_run = [], subprocess.run

    def fake_run(cmd, timeout=None, **kwargs):
        if 'train-one' not in cmd:  # not a config's child
            return real_run(cmd, timeout=timeout, **kwargs)
        calls.append(timeout)
        if len(calls) == 2:
            data = json.loads((out / 'train.json').read_text())
            assert [r['label'] for r in data['rows']] == ['a']
            assert data['not_run'] == ['b', 'c']
            assert '| a |' in (out / 'train.md').read_text()
            raise subprocess.TimeoutExpired(cmd, timeout, stderr=b'slow')
        with open(cmd[cmd.index('--json') + 1], 'w') as f:
            json.dump(row, f)
        return subprocess.CompletedProcess(cmd, 0, '', '')

    monkeypatch.setattr(tool.subprocess, 'run', fake_run)
    with pytest.raises(SystemExit, match='1 train run.s. failed: b '):
        tool.main(['train', cfg, cfg, cfg, '--labels', 'a', 'b', 'c',
                   '--timeout', '5', '--out-dir', str(out)])
    assert calls == [5.0] * 3
    printed = capsys.readouterr().out
    assert '[train] b: TIMED OUT after 5 s' in printed
    assert 'data wait 9% (steady 5%)' in printed
    data = json.loads((out / 'train.json').read_text())
    assert [r['label'] for r in data['rows']] == ['a', 'c']
    assert 'timed out after 5 s' in data['failed'][0]
    assert not list(out.glob('train_*.json'))


def test_loader_measures_each_collate(tiny_demo_root, tmp_path):
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'sniper.py'), base=SNIPER)
    out = tmp_path / 'loader'
    proc = run_tool([
        'tools/benchmark.py', 'loader', cfg, '--collate', 'pseudo_collate',
        'mmsnip.pseudo_collate_by_value', '--batches', '4', '--warmup', '1',
        '--step-seconds', '0.01', '--out-dir', str(out), '--cfg-options',
        'train_dataloader.num_workers=1', 'train_dataloader.batch_size=8'
    ])
    assert '[loader] sniper' in proc.stdout
    rows = json.loads((out / 'loader.json').read_text())['rows']
    assert [r['collate'] for r in rows] == [
        'pseudo_collate', 'mmsnip.pseudo_collate_by_value']
    for row in rows:
        # batches 0..4 (the first is warm-up); an epoch starts at every
        # multiple of the epoch's batches
        per_epoch = row['batches_per_epoch']
        assert row['epoch_starts'] == sum(
            i % per_epoch == 0 for i in range(1, 5))
        assert row['num_workers'] == 1
        assert (row['epoch_start_ms'] is None) == (row['epoch_starts'] == 0)
        assert row['receive_ms'] >= 0 and 0 < row['data_wait'] < 1
    assert (out / 'loader.md').read_text().startswith('| config |')
    proc = run_tool(['tools/benchmark.py', 'loader', cfg, '--collate',
                     'no_such_collate', '--out-dir', str(tmp_path / 'x')],
                    check=False)
    assert proc.returncode == 2 and 'no_such_collate' in proc.stderr
    assert not (tmp_path / 'x').exists()


def test_bad_input(autofocus_ckpt, tmp_path, monkeypatch, capsys):
    """One `error:` line, exit 2. The sahi case runs the tool as a process
    (its import path is the point); the others its ``run_cli(main)`` in
    this process (:func:`run_in_process`)."""
    cfg_path, ckpt = autofocus_ckpt
    proc = run_in_process(['tools/benchmark.py', 'infer', cfg_path,
                           str(tmp_path / 'missing.pth'), '--out-dir',
                           str(tmp_path)], monkeypatch, capsys)
    assert proc.returncode == 2 and 'missing.pth' in proc.stderr
    proc = run_in_process(['tools/benchmark.py', 'infer', SNIPER, ckpt,
                           '--out-dir', str(tmp_path)], monkeypatch, capsys)
    assert proc.returncode == 2 and 'AutoFocusTTAModel' in proc.stderr
    # sahi among the methods (the default) without the package: refused
    # before any measurement, naming the fix
    fake = tmp_path / 'no_sahi' / 'sahi'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text('raise ImportError("no sahi")\n')
    proc = run_tool(['tools/benchmark.py', 'infer', cfg_path, ckpt,
                     '--out-dir', str(tmp_path / 's')], check=False,
                    env=dict(PYTHONPATH=f'{fake.parent}:{REPO_ROOT}'))
    assert proc.returncode == 2 and 'requirements/optional.txt' in \
        proc.stderr and 'drop sahi from --methods' in proc.stderr
    assert '[infer] limit' not in proc.stdout
    assert not (tmp_path / 's').exists()
    # Weights without the FocusPixel head (a plain detector's): refused
    # before any image runs when a method needs the head.
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    state['state_dict'] = {k: v for k, v in state['state_dict'].items()
                           if not k.startswith('focus_head.')}
    plain = str(tmp_path / 'plain.pth')
    torch.save(state, plain)
    proc = run_in_process(['tools/benchmark.py', 'infer', cfg_path, plain,
                           '--methods', 'pyramid', 'autofocus', '--out-dir',
                           str(tmp_path / 'p')], monkeypatch, capsys)
    assert proc.returncode == 2 and 'plain.pth" has no FocusPixel head' \
        in proc.stderr and '[infer] limit' not in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='--amp is refused only without CUDA')
def test_amp_needs_cuda(autofocus_ckpt, tmp_path, monkeypatch, capsys):
    """infer as a process, train through run_cli(main) in this process."""
    cfg_path, ckpt = autofocus_ckpt
    for cmd in (['infer', cfg_path, ckpt], ['train', SNIPER]):
        args = ['tools/benchmark.py'] + cmd + [
            '--amp', '--out-dir', str(tmp_path / 'amp')]
        proc = run_tool(args, check=False) if cmd[0] == 'infer' else \
            run_in_process(args, monkeypatch, capsys)
        assert proc.returncode == 2, proc.stderr
        assert '--amp needs a CUDA device' in proc.stderr
        assert not (tmp_path / 'amp').exists()
