# Copyright (c) mmsnip contributors. All rights reserved.
"""Exact resume of :class:`~mmsnip.datasets.SniperSampler` epochs.

MMEngine's ``EpochBasedTrainLoop`` resumes ``epoch`` and ``iter`` from a
checkpoint but restarts the epoch's dataloader from its first batch, and
the runner builds the sampler with the new run's seed before the
checkpoint is read. A mid-epoch resume therefore trains the epoch's first
chips twice (and ``iter`` runs past ``max_iters``: a negative ETA), and an
epoch-boundary resume with ``randomness.seed`` unset draws another order.

:class:`SamplerResumeHook` stores the sampler's state in every checkpoint
(``meta['sniper_sampler']``) and restores it on resume: the checkpoint's
seed, and the chips of the epoch already trained on, which the sampler then
skips (:meth:`SniperSampler.load_state_dict`). The resumed epoch has
exactly the iterations the interrupted one had left, so ``iter`` ends the
epoch at ``(epoch + 1) * len(dataloader)`` as an uninterrupted run does.
"""
import copy
import logging
import math
import warnings
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import BatchSampler

from mmsnip.registry import HOOKS

STATE_KEY = 'sniper_sampler'


def _sniper_sampler(runner):
    """The train dataloader's SniperSampler, or None. With a
    ``batch_sampler`` PyTorch's ``loader.sampler`` is a placeholder and
    the sampler is the batch sampler's (then refused on resume)."""
    loop = getattr(runner, '_train_loop', None)
    loader = getattr(loop, 'dataloader', None)
    for sampler in (getattr(loader, 'sampler', None),
                    getattr(getattr(loader, 'batch_sampler', None),
                            'sampler', None)):
        if hasattr(sampler, 'load_state_dict') and \
                hasattr(sampler, 'epoch_order'):
            return sampler
    return None


@HOOKS.register_module()
class SamplerResumeHook(Hook):
    """Save and restore :class:`~mmsnip.datasets.SniperSampler` state.

    Registered by mmsnip's ``configs/_base_/default_runtime.py`` as
    ``default_hooks.sampler_resume``; it does nothing for other samplers.

    Worked example: 14 chips, batch 2, 1 rank: 7 iterations per epoch. A
    checkpoint saved after iteration 10 (``iter=10``, ``epoch=1``) records
    ``consumed = (10 - 7) * 2 * 1 = 6`` chips of epoch 1. Resumed, epoch 1
    yields its chips 6..13 in the same order (4 iterations, 11..14) and
    epoch 2 starts at iteration 14 as in the uninterrupted run.

    ``consumed`` counts chips of the epoch's global order (all ranks), so
    a resume on another number of ranks or another batch size continues
    with the same chips; the loop's ``iter`` is then set so that the epoch
    still ends at ``(epoch + 1) * len(dataloader)``, and the parameter
    schedules (whose steps and converted epoch lengths counted the old
    iterations) are built again from the config and stepped to that
    iteration: the learning rate from there on is the one a run on the new
    setup from the start has (both logged).
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._epoch_start_iter = 0
        self._loaded: Optional[dict] = None
        # Per parameter group, the ``initial_*`` values of this run (after
        # ``auto_scale_lr``), before a resume loads the checkpoint's.
        self._initial: Optional[list] = None

    def before_run(self, runner) -> None:
        groups = getattr(getattr(runner, 'optim_wrapper', None),
                         'param_groups', None)
        if isinstance(groups, list):
            self._initial = [{k: v for k, v in group.items()
                              if k.startswith('initial_')}
                             for group in groups]

    def before_train_epoch(self, runner) -> None:
        self._epoch_start_iter = runner.iter

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        sampler = _sniper_sampler(runner)
        meta = checkpoint.get('meta')
        if sampler is None or meta is None:
            return
        loader = runner.train_dataloader
        consumed = 0
        if int(meta['epoch']) == sampler.epoch and isinstance(
                runner.train_loop, EpochBasedTrainLoop):
            # Saved inside the epoch (by iteration): meta['iter'] counts the
            # iterations finished so far.
            done = int(meta['iter']) - self._epoch_start_iter
            consumed = sampler.consumed_at_start + \
                done * _batch_size(loader) * runner.world_size
        # Otherwise saved at the epoch's end: meta['epoch'] is the next one.
        state = sampler.state_dict(consumed)
        state.update(epoch=int(meta['epoch']),
                     batch_size=_batch_size(loader))
        meta[STATE_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta') or {}
        self._loaded = dict(state=meta.get(STATE_KEY),
                            epoch=meta.get('epoch'), iter=meta.get('iter'),
                            seed=meta.get('seed'))

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        sampler = _sniper_sampler(runner)
        if sampler is None or loaded is None or \
                not getattr(runner, '_resume', False):
            return  # a fresh run, or weights from `load_from` only
        loop = runner.train_loop
        state = loaded['state'] or self._legacy_state(runner, loaded)
        if not isinstance(loop, EpochBasedTrainLoop):
            # IterBasedTrainLoop skips the trained batches itself: as many
            # as were trained, counted in this run's batches.
            saved = (int(state['world_size']), state.get('batch_size'))
            now = (runner.world_size, _batch_size(runner.train_dataloader))
            if saved[1] is not None and saved != now:
                raise RuntimeError(
                    f'SamplerResumeHook: {type(loop).__name__} skips the '
                    f'{loop.iter} trained batches itself, counted in batches '
                    f'of this run (world size {now[0]}, batch size '
                    f'{now[1]}), but they were trained with world size '
                    f'{saved[0]}, batch size {saved[1]}: other chips would '
                    'be skipped than were trained. Resume with the '
                    "checkpoint's world size and batch size, or train by "
                    'epochs (EpochBasedTrainLoop resumes on any)')
            sampler.seed = int(state['seed'])
            return
        loader = runner.train_dataloader
        if int(state['consumed']) and \
                type(loader.batch_sampler) is not BatchSampler:
            raise RuntimeError(
                'SamplerResumeHook: train_dataloader.batch_sampler '
                f'{type(loader.batch_sampler).__name__} regroups the '
                "sampler's chips, so the chips trained before the checkpoint "
                'are not a prefix of its order; SniperSampler configs set '
                'train_dataloader.batch_sampler=None')
        if int(state['epoch']) != runner.epoch:
            raise RuntimeError(
                "SamplerResumeHook: the checkpoint's sampler state is for "
                f'epoch {state["epoch"]}, the loop resumed epoch '
                f'{runner.epoch}')
        full_len = len(loader)
        same_setup = int(state['world_size']) == runner.world_size and \
            state.get('batch_size') in (None, _batch_size(loader))
        # Schedulers of the new epoch length, built before the sampler
        # shortens the loader (converted epoch schedules read its length).
        fresh = None if same_setup else \
            _fresh_schedulers(runner, self._initial)
        sampler.load_state_dict(state)
        # Batches the loader yields from the rest of the epoch (a
        # drop_last loader leaves out the last partial one).
        batch = _batch_size(loader)
        remaining = len(sampler) // batch if loader.drop_last \
            else math.ceil(len(sampler) / batch)
        target = (sampler.epoch + 1) * full_len - remaining
        if target != loop.iter:
            print_log(
                f'SamplerResumeHook: iteration counter {loop.iter} -> '
                f'{target} so that epoch {sampler.epoch} ends at iteration '
                f'{(sampler.epoch + 1) * full_len} (the checkpoint was saved '
                f'with world size {state["world_size"]}, batch size '
                f'{state.get("batch_size")})' + (
                    '; checkpoints saved by iteration from here reuse '
                    'iteration numbers of the interrupted run: use another '
                    'work_dir to keep its iter_*.pth files'
                    if target < loop.iter else ''),
                logger='current', level=logging.WARNING)
            loop._iter = target
        if fresh is not None:
            _step_to(fresh, target, full_len)
            runner.param_schedulers = fresh
            print_log(
                'SamplerResumeHook: parameter schedules restarted from the '
                f'config and stepped to iteration {target} of the new epoch '
                f'length {full_len} (the checkpoint\'s steps counted '
                f'iterations of world size {state["world_size"]}, batch size '
                f'{state.get("batch_size")}): lr '
                f'{_lrs(runner)}', logger='current', level=logging.WARNING)
        print_log(
            f'SamplerResumeHook: epoch {sampler.epoch} continues after '
            f'{state["consumed"]} of its {state["epoch_size"]} chips '
            f'({remaining} iterations left), seed {sampler.seed}',
            logger='current')

    @staticmethod
    def _legacy_state(runner, loaded: dict) -> dict:
        """The state of a checkpoint saved without this hook, assuming the
        same world size and batch size: ``consumed`` from its ``iter`` and
        ``epoch``, the seed the runner gave the sampler (``meta['seed']``)
        unless the config fixes ``train_dataloader.sampler.seed``."""
        sampler = _sniper_sampler(runner)
        loader = runner.train_dataloader
        epoch, it = int(loaded['epoch']), int(loaded['iter'])
        done = max(it - epoch * len(loader), 0)
        cfg_seed = (runner.cfg.get('train_dataloader') or {}).get(
            'sampler', {}).get('seed')
        seed = cfg_seed if cfg_seed is not None else loaded['seed']
        state = sampler.state_dict(done * _batch_size(loader) *
                                   runner.world_size)
        state.update(epoch=epoch,
                     seed=int(sampler.seed if seed is None else seed))
        print_log(
            'SamplerResumeHook: the checkpoint has no SniperSampler state '
            f'(saved without this hook); assuming it was trained with world '
            f'size {runner.world_size} and batch size '
            f'{_batch_size(loader)}',
            logger='current', level=logging.WARNING)
        return state


def _batch_size(loader) -> int:
    """Samples per batch of ``loader`` (its batch sampler's when it has
    one: ``loader.batch_size`` is then None)."""
    if loader.batch_size is not None:
        return loader.batch_size
    return int(getattr(loader.batch_sampler, 'batch_size', 1))


def _fresh_schedulers(runner, initial: Optional[list]) -> Optional[list]:
    """The config's parameter schedulers built anew for this run's epoch
    length, the optimizer's scheduled values reset to this run's initial
    ones first (``initial``: per group the ``initial_*`` values saved
    before the checkpoint replaced them, e.g. a learning rate
    ``auto_scale_lr`` scaled for the new batch size), as in a fresh run;
    None without schedulers.

    Raises:
        RuntimeError: Schedulers per optimizer (a dict): not handled.
    """
    if runner.param_schedulers is None or \
            runner.cfg.get('param_scheduler') is None:
        return None
    if not isinstance(runner.param_schedulers, list):
        raise RuntimeError(
            'SamplerResumeHook: a resume on another world size or batch '
            'size re-derives the parameter schedules for the new epoch '
            'length; schedulers per optimizer (a dict) are not supported: '
            'resume with the checkpoint\'s world size and batch size')
    names = {s.param_name for s in runner.param_schedulers}
    groups = runner.optim_wrapper.param_groups
    for group, saved in zip(groups, initial or [{}] * len(groups)):
        group.update(saved)
        for name in names:
            value = group.get(f'initial_{name}')
            if value is None:
                continue
            group[name] = value
            if name == 'momentum' and 'betas' in group:
                # Adam-type optimizers: mmengine's momentum schedulers
                # read and write betas[0]
                group['betas'] = (value, *group['betas'][1:])
    return runner.build_param_scheduler(
        copy.deepcopy(runner.cfg.param_scheduler))


def _step_to(schedulers: list, iters: int, epoch_len: int) -> None:
    """Step ``schedulers`` as ``ParamSchedulerHook`` does over ``iters``
    training iterations of ``epoch_len`` each: iteration-based ones after
    every iteration, epoch-based ones after every ``epoch_len``."""
    with warnings.catch_warnings():
        # "scheduler.step() before optimizer.step()": a replay, no training
        warnings.simplefilter('ignore', UserWarning)
        for i in range(iters):
            for scheduler in schedulers:
                if not scheduler.by_epoch:
                    scheduler.step()
            if (i + 1) % epoch_len == 0:
                for scheduler in schedulers:
                    if scheduler.by_epoch:
                        scheduler.step()


def _lrs(runner) -> str:
    """The optimizer's learning rates, for the log."""
    lrs = sorted({g['lr'] for g in runner.optim_wrapper.param_groups
                  if 'lr' in g})
    return ', '.join(f'{lr:.4g}' for lr in lrs)
