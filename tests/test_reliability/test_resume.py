# Copyright (c) mmsnip contributors. All rights reserved.
"""Exact resume: a resumed SNIPER epoch trains exactly the chips not yet
seen, in the same order, on any number of ranks."""
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import REPO_ROOT, run_tool, tiny_config
from mmsnip.datasets import SniperDataset, SniperSampler
from mmsnip.datasets.samplers import sniper_sampler
from mmsnip.utils import register_all_modules

STAGE1 = osp.join(REPO_ROOT,
                  'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


class FakeChips:
    """An epoch of ``n`` chips: ``epoch_indices`` is ``10 * epoch + 0..n-1``
    (a different set per epoch, as negatives are)."""

    def __init__(self, n=13):
        self.n = n

    def epoch_size(self):
        return self.n

    def epoch_indices(self, epoch):
        return np.arange(self.n) + 100 * epoch


def _sampler(ds, rank, world, monkeypatch, **kw):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info',
                        lambda: (rank, world))
    return SniperSampler(ds, **kw)


def test_worked_example_two_ranks_unshuffled(monkeypatch):
    """The docstring's case: 13 chips, 2 ranks, batch 2, 3 iterations
    done: rank 0 has o12 left, rank 1 the padding o0."""
    ds = FakeChips(13)
    state = _sampler(ds, 0, 2, monkeypatch, shuffle=False,
                     seed=1).state_dict(consumed=3 * 2 * 2)
    left = []
    for rank in range(2):
        s = _sampler(ds, rank, 2, monkeypatch, shuffle=False, seed=5)
        s.load_state_dict(state)
        left.append(list(s))
        assert len(s) == 1
    assert left == [[12], [0]]


@pytest.mark.parametrize('world,round_up', [(1, True), (2, True), (2, False),
                                            (3, True)])
def test_mid_epoch_resume_yields_the_rest_per_rank(world, round_up,
                                                   monkeypatch):
    ds, bs, epoch = FakeChips(13), 2, 1
    whole = []
    for rank in range(world):
        s = _sampler(ds, rank, world, monkeypatch, seed=7, round_up=round_up)
        s.set_epoch(epoch)
        whole.append(list(s))
    iters = max(len(w) for w in whole) // bs + 1
    for done in range(iters + 1):
        saver = _sampler(ds, 0, world, monkeypatch, seed=7,
                         round_up=round_up)
        saver.set_epoch(epoch)
        state = saver.state_dict(consumed=done * bs * world)
        for rank in range(world):
            # a new run: another seed until the state is loaded
            s = _sampler(ds, rank, world, monkeypatch, seed=99,
                         round_up=round_up)
            s.load_state_dict(state)
            s.set_epoch(epoch)  # the loop does this again; no effect
            assert list(s) == whole[rank][done * bs:]
            assert len(s) == len(whole[rank][done * bs:])
            s.set_epoch(epoch + 1)  # later epochs are whole again
            assert len(list(s)) == len(s) == len(whole[rank])


def test_resume_on_another_number_of_ranks_sees_each_chip_once(monkeypatch):
    """Trained 2 iterations of batch 2 on 2 ranks, resumed on 1 rank."""
    ds = FakeChips(13)
    two = [_sampler(ds, r, 2, monkeypatch, seed=3, round_up=False)
           for r in range(2)]
    seen = sum((list(s)[:4] for s in two), [])
    state = two[0].state_dict(consumed=2 * 2 * 2)
    one = _sampler(ds, 0, 1, monkeypatch, seed=0, round_up=False)
    one.load_state_dict(state)
    rest = list(one)
    assert sorted(seen + rest) == list(range(13))
    assert rest == one.epoch_order().tolist()[8:]


def test_state_of_another_dataset_is_refused(monkeypatch):
    state = _sampler(FakeChips(13), 0, 1, monkeypatch, seed=0).state_dict(4)
    s = _sampler(FakeChips(12), 0, 1, monkeypatch, seed=0)
    with pytest.raises(ValueError, match='13 chips per epoch.*has 12'):
        s.load_state_dict(state)


RECORDER = '''
import os
import runpy
import sys

from mmsnip.datasets import SniperDataset

_get = SniperDataset.__getitem__


def _recording(self, idx):
    with open(os.environ['RECORD'], 'a') as f:
        f.write(f'{idx}\\n')
    return _get(self, idx)


SniperDataset.__getitem__ = _recording

# The logged scalars hold the learning rate; add the momentum.
from mmengine.hooks import RuntimeInfoHook

_before_iter = RuntimeInfoHook.before_train_iter


def _with_momentum(self, runner, batch_idx, data_batch=None):
    _before_iter(self, runner, batch_idx, data_batch)
    for name, value in runner.optim_wrapper.get_momentum().items():
        runner.message_hub.update_scalar(f'train/{name}', value[0])


RuntimeInfoHook.before_train_iter = _with_momentum

# STOP_AFTER=N: the run ends (exit 0) once iteration N is checkpointed,
# as an interrupted run would; a resume needs nothing after it.
from mmengine.hooks import CheckpointHook

_after_iter = CheckpointHook.after_train_iter


def _stopping(self, runner, batch_idx, data_batch=None, outputs=None):
    _after_iter(self, runner, batch_idx, data_batch, outputs)
    if runner.iter + 1 == int(os.environ.get('STOP_AFTER', 0)):
        sys.exit(0)


CheckpointHook.after_train_iter = _stopping
sys.argv = ['tools/train.py'] + sys.argv[1:]
runpy.run_path('tools/train.py', run_name='__main__')
'''


def _train(tmp_path, cfg_path, record, *args, stop_after=0):
    driver = tmp_path / 'record_train.py'
    driver.write_text(RECORDER)
    proc = run_tool([str(driver), cfg_path, *args],
                    env=dict(RECORD=str(record), OMP_NUM_THREADS='1',
                             STOP_AFTER=str(stop_after)))
    return [int(v) for v in record.read_text().split()], \
        proc.stdout + proc.stderr


def _three_images(cfg) -> None:
    """Train on 3 of the demo's 6 training images: 15 chips an epoch (an
    odd number, as the 6 images' 27: the last batch is partial)."""
    cfg.train_dataloader.dataset.dataset.indices = 3


def test_training_resumed_mid_epoch_continues_exactly(tiny_demo_root,
                                                      tmp_path):
    """tools/train.py: epoch 0 with a checkpoint every 3 iterations, then
    resumed from iteration 3 (mid-epoch 0) with 2 epochs. ``randomness.seed``
    is unset, so the new run draws another seed until the checkpoint's
    comes back."""
    work = tmp_path / 'work'
    cfg_path = tiny_config(tiny_demo_root, str(work),
                           str(tmp_path / 'cfg.py'), max_epochs=1,
                           base=STAGE1)
    cfg = Config.fromfile(cfg_path)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=3)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    _three_images(cfg)
    cfg.dump(cfg_path)

    epoch0, _ = _train(tmp_path, cfg_path, tmp_path / 'epoch0.txt')
    iters = -(-len(epoch0) // 2)  # batch 2, one rank
    assert iters > 3, 'the test needs an epoch of more than 3 iterations'
    ckpt = torch.load(str(work / 'iter_3.pth'), weights_only=False)
    state = ckpt['meta']['sniper_sampler']
    assert (state['epoch'], state['consumed']) == (0, 6)

    resumed, log = _train(tmp_path, cfg_path, tmp_path / 'resumed.txt',
                          '--resume', str(work / 'iter_3.pth'),
                          '--cfg-options', 'train_cfg.max_epochs=2')
    # Epoch 0: the chips not yet seen, in the same order.
    assert resumed[:len(epoch0) - 6] == epoch0[6:]
    assert 'continues after 6 of its' in log
    # Epoch 1: the order the checkpoint's seed gives.
    register_all_modules()
    ds_cfg = Config.fromfile(cfg_path).train_dataloader.dataset
    ds = SniperDataset(**{k: v for k, v in ds_cfg.items() if k != 'type'})
    sampler = SniperSampler(ds, seed=state['seed'])
    assert resumed[len(epoch0) - 6:] == sampler.epoch_order(1).tolist()
    # The iteration counter ends where an uninterrupted run ends.
    assert osp.exists(work / f'iter_{2 * iters}.pth')
    assert not glob.glob(str(work / f'iter_{2 * iters + 1}*.pth'))
    etas = re.findall(r'eta: (\S+)', log)
    assert etas and not any(e.startswith('-') or 'day' in e for e in etas)


def _resumed_runner(loader, loop_type):
    """The parts of a resumed one-rank runner the hook reads: a
    ``loop_type`` loop over ``loader`` after 2 iterations of epoch 0.

    Returns:
        tuple: ``(loop, runner)``.
    """
    from types import SimpleNamespace
    loop = loop_type.__new__(loop_type)
    loop.dataloader, loop._iter, loop._epoch = loader, 2, 0
    runner = SimpleNamespace(_train_loop=loop, train_loop=loop,
                             train_dataloader=loader, epoch=0, _resume=True,
                             world_size=1)
    return loop, runner


@pytest.mark.parametrize('drop_last', [False, True])
def test_resume_hook_counts_the_batches_the_loader_yields(drop_last,
                                                          monkeypatch):
    """14 chips, batch 4, one rank, resumed after iteration 2 of epoch 0:
    6 chips are left, 2 batches, or 1 when the loader drops the last
    partial one (as the uninterrupted epoch does: 3 batches, the last 2
    chips dropped). The counter stays at 2 either way."""
    from mmengine.runner import EpochBasedTrainLoop
    from torch.utils.data import DataLoader

    from mmsnip.engine.hooks import SamplerResumeHook
    sampler = _sampler(FakeChips(14), 0, 1, monkeypatch, seed=0)
    loader = DataLoader(list(range(200)), batch_size=4, sampler=sampler,
                        drop_last=drop_last)
    full = len(loader)
    loop, runner = _resumed_runner(loader, EpochBasedTrainLoop)
    hook = SamplerResumeHook()
    state = sampler.state_dict(consumed=2 * 4)
    state.update(batch_size=4)
    hook.after_load_checkpoint(runner, dict(meta=dict(
        sniper_sampler=state, epoch=0, iter=2, seed=0)))
    hook.before_train(runner)
    assert len(loader) == full - 2 == len(list(loader))
    assert loop.iter == 2


def _lr_by_iter(work) -> dict:
    """``{iteration: (lr, momentum)}`` from the run's scalars (logged every
    iteration)."""
    import json
    lrs = {}
    for path in glob.glob(str(work / '*' / 'vis_data' / 'scalars.json')):
        for line in open(path):
            row = json.loads(line)
            if 'lr' in row and 'loss' in row:
                lrs[int(row['step'])] = (row['lr'], row['momentum'])
    return lrs


def test_resume_with_another_batch_size_keeps_the_lr_schedule(
        tiny_demo_root, tmp_path):
    """Trained with batch 2 to iteration 3, resumed with batch 3: the
    learning rate and momentum of every later iteration are the ones a run
    with batch 3 from the start has at that iteration (warm-up by
    iterations, cosine by epochs converted to iterations; the rate scaled
    by auto_scale_lr for batch 3; AdamW's momentum is its betas[0]), not
    the batch-2 schedule's."""
    cfg_path = tiny_config(tiny_demo_root, str(tmp_path / 'two'),
                           str(tmp_path / 'cfg.py'), max_epochs=2,
                           base=STAGE1)
    cfg = Config.fromfile(cfg_path)
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(
        type='AdamW', lr=1e-3, weight_decay=1e-4))
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=2)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=4),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=2,
             eta_min_ratio=0.05, convert_to_iter_based=True),
        dict(type='CosineAnnealingMomentum', by_epoch=True, begin=0, end=2,
             eta_min=0.8, convert_to_iter_based=True)
    ]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=3)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    _three_images(cfg)
    cfg.dump(cfg_path)
    three = ['--cfg-options', 'train_dataloader.batch_size=3']
    _train(tmp_path, cfg_path, tmp_path / 'a.txt', stop_after=3)
    _, log = _train(tmp_path, cfg_path, tmp_path / 'b.txt', '--resume',
                    str(tmp_path / 'two' / 'iter_3.pth'), '--work-dir',
                    str(tmp_path / 'resumed'), *three)
    assert 'parameter schedules restarted from the config' in log
    _train(tmp_path, cfg_path, tmp_path / 'c.txt', '--work-dir',
           str(tmp_path / 'three'), *three)
    resumed = _lr_by_iter(tmp_path / 'resumed')
    uninterrupted = _lr_by_iter(tmp_path / 'three')
    assert len(resumed) >= 4 and set(resumed) <= set(uninterrupted)
    for step, values in resumed.items():
        assert values == pytest.approx(uninterrupted[step], rel=1e-6), step


def test_resume_hook_finds_the_sampler_behind_a_batch_sampler(monkeypatch):
    """With a batch sampler PyTorch's ``loader.sampler`` is a placeholder:
    the hook finds the SniperSampler behind the batch sampler, saves its
    state and refuses a mid-epoch resume (the config check refuses such a
    config first under SnipRunner; this guards a hand-built runner)."""
    from types import SimpleNamespace

    from mmengine.runner import EpochBasedTrainLoop
    from torch.utils.data import BatchSampler, DataLoader

    from mmsnip.engine.hooks import SamplerResumeHook

    class Regrouping(BatchSampler):
        pass

    sampler = _sampler(FakeChips(14), 0, 1, monkeypatch, seed=0)
    loader = DataLoader(list(range(200)),
                        batch_sampler=Regrouping(sampler, 4, False))
    loop, runner = _resumed_runner(loader, EpochBasedTrainLoop)
    hook = SamplerResumeHook()
    checkpoint = dict(meta=dict(epoch=0, iter=2, seed=0))
    hook.before_train_epoch(SimpleNamespace(iter=0))
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['meta']['sniper_sampler']['consumed'] == 8
    hook.after_load_checkpoint(runner, checkpoint)
    with pytest.raises(RuntimeError, match='Regrouping regroups'):
        hook.before_train(runner)
    # At an epoch boundary nothing is consumed: the resume goes on (the
    # batch size is the batch sampler's).
    state = sampler.state_dict(consumed=0)
    state.update(epoch=1, batch_size=4)
    runner.epoch, loop._iter = 1, 4
    hook.after_load_checkpoint(runner, dict(meta=dict(
        sniper_sampler=state, epoch=1, iter=4, seed=0)))
    hook.before_train(runner)
    assert loop.iter == 4


def test_iteration_loop_resume_needs_the_same_setup(monkeypatch):
    """IterBasedTrainLoop skips ``iter`` batches of the new run itself: on
    another world size or batch size those are other chips: refused."""
    from mmengine.runner import IterBasedTrainLoop
    from torch.utils.data import DataLoader

    from mmsnip.engine.hooks import SamplerResumeHook
    sampler = _sampler(FakeChips(14), 0, 1, monkeypatch, seed=0)
    loader = DataLoader(list(range(200)), batch_size=4, sampler=sampler)
    loop, runner = _resumed_runner(loader, IterBasedTrainLoop)
    hook = SamplerResumeHook()
    for batch_size, world, refused in ((4, 1, False), (2, 1, True),
                                       (4, 2, True)):
        state = sampler.state_dict(consumed=0)
        state.update(batch_size=batch_size, seed=11, world_size=world)
        hook.after_load_checkpoint(runner, dict(meta=dict(
            sniper_sampler=state, epoch=0, iter=2, seed=11)))
        if refused:
            with pytest.raises(RuntimeError, match=f'world size {world}, '
                               f'batch size {batch_size}: other chips would '
                               'be skipped'):
                hook.before_train(runner)
        else:
            hook.before_train(runner)
            assert sampler.seed == 11
