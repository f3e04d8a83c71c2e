# Copyright (c) mmsnip contributors. All rights reserved.
"""Distributed runs on machines without CUDA.

mmengine 0.10.7 assumes CUDA for the ``pytorch`` launcher: ``init_dist``
calls ``torch.cuda.set_device`` and the DDP wrapper gets
``device_ids=[LOCAL_RANK]``. On a CPU-only machine both fail. The tools call
:func:`setup_cpu_distributed` first: it starts a gloo process group (the
runner then skips its own ``init_dist``) and wraps the model in DDP without
device ids. On CUDA machines it does nothing. The group it starts is
destroyed when the process exits, and the garbage still holding it (the
runner's reference cycles around the DDP model) collected then: gloo's
threads still running at interpreter teardown can abort a finished run
("terminate called without an active exception", SIGABRT).
"""
import atexit
import gc
import logging
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

from mmsnip.utils.checks import UserInputError


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``cfg`` for a CPU-only distributed run, if this is one.

    Args:
        cfg (Config): The full config; ``cfg.launcher`` must be set.

    Returns:
        bool: True if a gloo process group was started here.

    Raises:
        UserInputError: Another launcher than ``pytorch`` (slurm, mpi)
            on a machine without CUDA; the ``pytorch`` launcher in a
            process not started by a launcher
            (:func:`check_pytorch_launch_env`).
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'pytorch':
        check_pytorch_launch_env()
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise UserInputError(
            f'launcher "{launcher}" on a machine without CUDA: a CPU-only '
            'distributed run needs the "pytorch" launcher (tools/'
            'dist_train.sh, dist_test.sh, dist_mine.sh); use one of those, '
            'or --launcher none for one process')
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
        atexit.register(_destroy_process_group)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    return True


LAUNCH_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def check_pytorch_launch_env() -> None:
    """Raise :class:`UserInputError` unless this process was started by a
    PyTorch launcher (``torchrun``, ``python -m torch.distributed.launch``,
    the ``dist_*.sh`` scripts), which sets :data:`LAUNCH_ENV`: ``--launcher
    pytorch`` in a process started by hand would fail in a ``KeyError``.
    """
    missing = [var for var in LAUNCH_ENV if var not in os.environ]
    if missing:
        raise UserInputError(
            f'--launcher pytorch: {", ".join(missing)} not set: this '
            'process was not started by a PyTorch launcher; start the run '
            'with tools/dist_train.sh CONFIG N (dist_test.sh, '
            'dist_mine.sh) or torchrun, or use --launcher none for one '
            'process')


def _destroy_process_group() -> None:
    """End the gloo group :func:`setup_cpu_distributed` started (at exit):
    destroy it, then free what still refers to it, so that its threads end
    before the interpreter's teardown."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
        gc.collect()


def warn_show_dir_rank0_only(cfg: Config, world_size: int) -> bool:
    """Warn that a distributed test paints only rank 0's images.

    ``tools/test.py --show-dir`` turns on the test config's
    ``default_hooks.visualization`` (``draw``, ``test_out_dir``). Every
    rank runs that hook on its share of the images, but MMEngine's
    ``Visualizer`` draws on the main process only (its drawing methods
    are ``master_only``, open-mmlab/mmengine#1081): with ``world_size``
    processes only about one image in ``world_size`` is painted, while
    the metrics and ``--out`` cover all of them.

    Args:
        cfg (Config): The test config, after ``--show-dir`` was applied.
        world_size (int): Processes of the run.

    Returns:
        bool: True if the warning was logged.
    """
    hook = (cfg.get('default_hooks') or {}).get('visualization') or {}
    if world_size < 2 or not hook.get('draw') or \
            not hook.get('test_out_dir'):
        return False
    print_log(
        f'--show-dir "{hook["test_out_dir"]}": only rank 0 paints its '
        f'images (about 1 in {world_size}): MMEngine\'s Visualizer draws '
        'on the main process only (open-mmlab/mmengine#1081); the '
        'metrics and --out cover every image. To paint every image, run '
        'tools/test.py with --show-dir in one process',
        logger='current', level=logging.WARNING)
    return True
