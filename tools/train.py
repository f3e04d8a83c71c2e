# Copyright (c) mmsnip contributors. All rights reserved.
"""Train a detector; the same interface as MMDetection 3.3's tools/train.py.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--resume [CKPT]]
    bash tools/dist_train.sh CONFIG NUM_PROCS [...]
    mim train mmsnip CONFIG [...]
"""
import argparse
import os

from mmengine.config import DictAction

from mmdet.utils import setup_cache_size_limit_of_dynamo

from mmsnip.engine import (build_runner, refuse_chip_eval,
                           require_snip_runner)
from mmsnip.utils import register_all_modules
from mmsnip.utils.checks import UserInputError
from mmsnip.utils.dist import setup_cpu_distributed
from mmsnip.utils.preflight import (check_amp_device, check_chip_cfgs,
                                    check_data_paths, check_load_from,
                                    check_num_classes, check_proposal_files,
                                    check_run_settings, explain_failure,
                                    load_config, merge_options, run_cli,
                                    set_work_dir)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes `--local-rank` (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    # Reduce the number of repeated compilations and improve training speed.
    setup_cache_size_limit_of_dynamo()
    # Registers mmdet and mmsnip modules (and the torch>=2.6 checkpoint
    # loader) before the config is built.
    register_all_modules(init_default_scope=False)

    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    merge_options(cfg, args.cfg_options)

    # work_dir: CLI > segment in file > filename; checked writable
    set_work_dir(cfg, args.work_dir, args.config)

    if args.amp is True:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        scale_lr = cfg.get('auto_scale_lr')
        if not isinstance(scale_lr, dict) or \
                'base_batch_size' not in scale_lr:
            raise UserInputError(
                '--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                'base_batch_size=N) in the config (N: the total batch size '
                'the learning rate was set for, e.g. 16 for mmdet\'s '
                f'8 GPUs x 2 images); the config has {scale_lr!r}')
        scale_lr.enable = True

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    keys = ['train_dataloader']
    if cfg.get('val_cfg'):
        keys.append('val_dataloader')
    check_run_settings(cfg, keys)
    check_chip_cfgs(cfg, keys)
    check_num_classes(cfg, keys)
    check_amp_device(cfg)
    check_data_paths(cfg, keys)
    check_proposal_files(cfg, keys)
    check_load_from(cfg, '--resume' if args.resume not in (None, 'auto')
                    else None)
    require_snip_runner(cfg)
    refuse_chip_eval(cfg, keys)

    setup_cpu_distributed(cfg)
    try:
        build_runner(cfg).train()
    except Exception:
        explain_failure(cfg, keys)
        raise


if __name__ == '__main__':
    run_cli(main)
