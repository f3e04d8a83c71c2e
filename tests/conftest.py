# Copyright (c) mmsnip contributors. All rights reserved.
"""Shared fixtures: tiny demo datasets and configs for CPU tests."""
import contextlib
import logging
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

if os.environ.get('PYTEST_XDIST_WORKER'):
    # One torch thread per test process (and the tools it starts): `make
    # test` runs a process per core, and two processes of two threads each
    # on two cores run slower than one process after the other. Set before
    # torch is imported; an explicit setting is kept.
    for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ.setdefault(_var, '1')

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASELINE_CONFIG = osp.join(
    REPO_ROOT, 'configs/baseline/faster-rcnn_r18-w16_fpn_12e_demo.py')


def run_tool(args, cwd=REPO_ROOT, env=None, timeout=600, check=True):
    """Run ``python tools/...`` (or another command) and return the result.

    ``args[0]`` ending in ``.py`` is run with this interpreter. On failure
    with ``check=True`` the output tail is shown in the assertion message.
    """
    cmd = [sys.executable] + list(args) if args[0].endswith('.py') \
        else list(args)
    full_env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    full_env.update(env or {})
    proc = subprocess.run(
        cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(cmd)} exited {proc.returncode}\n'
            f'--- stdout ---\n{proc.stdout[-4000:]}\n'
            f'--- stderr ---\n{proc.stderr[-4000:]}')
    return proc


def load_tool(path: str):
    """The module of a tool file (``'tools/x.py'``, relative to the
    repository), imported without running its ``main``: for tests of its
    argument parser and helpers."""
    import importlib.util
    name = 'tool_' + osp.splitext(path)[0].replace('/', '_')
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def run_in_process(args, monkeypatch, capsys):
    """``python ARGS`` (a tool and its arguments) run in this process as
    its ``__main__`` does: ``run_cli(main)`` with ``sys.argv`` = ``ARGS``,
    from the repository root; for a tool that exits (a bad input's
    `error:` line, status 2). A test of several bad inputs runs one
    through a real :func:`run_tool` process and the others this way,
    saving a process start each (the same function prints the same line).

    Returns:
        subprocess.CompletedProcess: its exit status, stdout and stderr.
    """
    from mmsnip.utils.preflight import run_cli
    tool = load_tool(args[0])
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setattr(sys, 'argv', list(args))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run_cli(tool.main)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, exited.value.code, out.out,
                                       out.err)


@contextlib.contextmanager
def logged_messages(level=logging.INFO):
    """The messages of MMEngine's current logger at ``level`` or above,
    collected while the block runs (a list, filled in place)."""
    from mmengine.logging import MMLogger

    class Collect(logging.Handler):

        def emit(self, record):
            messages.append(record.getMessage())

    messages = []
    logger = MMLogger.get_current_instance()
    handler = Collect(level)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def npz_member_rows(data: bytes, member: str) -> int:
    """Offset in an uncompressed ``.npz`` file's bytes where the array data
    of ``member`` (e.g. ``'boxes'``) begins, after its ``.npy`` header."""
    magic = data.index(b'\x93NUMPY', data.index(member.encode() + b'.npy'))
    major = data[magic + 6]
    size = 2 if major == 1 else 4
    header = int.from_bytes(data[magic + 8:magic + 8 + size], 'little')
    return magic + 8 + size + header


def crowded_predictions(test_cfg, big: int = 100, small: int = 10):
    """What an mmdet detector hands back for a view or chip at a fine
    scale, all in its top-left 256 x 256 px: ``big`` confident 50 px boxes
    (on a 20 px grid, IoU < 0.5 with each other; too large for a fine
    scale's valid range) and ``small`` less confident 12 px boxes (in
    range), class 0,
    after mmdet's post-processing: ``multiclass_nms`` capped at
    ``test_cfg.max_per_img`` (``score_thr``, ``nms`` from ``test_cfg``).
    Boxes in the window's ORIGINAL pixels; an InstanceData."""
    import torch
    from mmdet.models.layers import multiclass_nms
    from mmengine.structures import InstanceData
    grid = torch.arange(11, dtype=torch.float32) * 20
    xy = torch.cartesian_prod(grid, grid)[:big]
    large = torch.cat([xy, xy + 50], 1)
    sx = torch.arange(small, dtype=torch.float32) * 24 + 4
    small_boxes = torch.stack(
        [sx, sx.new_full((small, ), 240), sx + 12, sx.new_full((small, ),
                                                                252)], 1)
    boxes = torch.cat([large, small_boxes])
    scores = torch.cat([torch.full((big, ), 0.9), torch.full((small, ),
                                                              0.5)])
    # one class and mmdet's background column
    dets, labels = multiclass_nms(
        boxes, torch.stack([scores, torch.zeros_like(scores)], 1),
        test_cfg['score_thr'], test_cfg['nms'], test_cfg['max_per_img'])
    return InstanceData(bboxes=dets[:, :4], scores=dets[:, 4],
                        labels=labels)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def tiny_demo_root(tmp_path_factory):
    """A few small demo images (COCO format), made by the real tool."""
    root = tmp_path_factory.mktemp('demo') / 'data'
    run_tool([
        'tools/make_demo_dataset.py', str(root), '--num-train', '6',
        '--num-val', '3', '--min-side', '256', '--max-side', '320',
        '--min-obj', '12', '--max-obj', '96', '--empty-frac', '0',
        '--seed', '3'
    ])
    return str(root)


def tiny_config(data_root: str, work_dir: str, out_path: str,
                max_epochs: int = 1, base: str = BASELINE_CONFIG) -> str:
    """Write a CPU-fast variant of ``base`` on ``data_root`` to ``out_path``.

    Small images (longer side 256), batch 2, no workers, ``max_epochs``
    epochs with a checkpoint (and validation, if the config has one) at the
    end. Chip datasets keep their chip settings and cache nothing.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(base)
    root = data_root.rstrip('/') + '/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        loader.num_workers = 0
        loader.persistent_workers = False
        ds = loader.dataset
        while 'dataset' in ds:
            ds = ds.dataset
        ds.data_root = root
        for step in ds.pipeline:
            if step['type'] == 'Resize':
                step['scale'] = (256, 256)
    cfg.train_dataloader.batch_size = 2
    if cfg.train_dataloader.dataset.type == 'SniperDataset':
        cfg.train_dataloader.dataset.cache_dir = ''
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(key) or []
        for evaluator in (evaluators if isinstance(evaluators, list) else
                          [evaluators]):
            if 'ann_file' in evaluator:
                evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.train_cfg.max_epochs = max_epochs
    if cfg.get('val_cfg'):
        cfg.train_cfg.val_interval = max_epochs
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1
    cfg.work_dir = work_dir
    cfg.dump(out_path)
    return out_path


def tiny_stage2_config(data_root: str, tmp_dir) -> tuple:
    """A :func:`tiny_config` of the demo's stage-2 SNIPER config (negative
    chips from a proposal file) and the ids of its training images.

    Returns:
        tuple: ``(config path, [image id, ...])``.
    """
    import json
    cfg = tiny_config(data_root, str(tmp_dir / 'w'), str(tmp_dir / 'cfg.py'),
                      base=osp.join('configs', 'sniper',
                                    'sniper_faster-rcnn_r18-w16_fpn_4e-neg_'
                                    'demo.py'))
    with open(osp.join(data_root, 'annotations',
                       'instances_train.json')) as f:
        return cfg, [img['id'] for img in json.load(f)['images']]


def tiny_checkpoint(data_root: str, tmp_dir, base: str,
                    name: str = 'model') -> tuple:
    """A :func:`tiny_config` of ``base`` and a randomly initialised
    checkpoint of its model (seeded: the same weights every run).

    Returns:
        tuple: ``(config path, checkpoint path)`` under ``tmp_dir``.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmsnip.registry import MODELS
    from mmsnip.utils import register_all_modules
    register_all_modules()
    tmp_dir = str(tmp_dir)
    cfg_path = tiny_config(data_root, osp.join(tmp_dir, 'work'),
                           osp.join(tmp_dir, f'{name}.py'), base=base)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(Config.fromfile(cfg_path).model)
    model.init_weights()
    ckpt = osp.join(tmp_dir, f'{name}.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    return cfg_path, ckpt
