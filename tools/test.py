# Copyright (c) mmsnip contributors. All rights reserved.
"""Test (and evaluate) a detector; MMDetection 3.3's tools/test.py interface.

    python tools/test.py CONFIG CHECKPOINT [--tta] [--out results.pkl]
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [...]
    mim test mmsnip CONFIG --checkpoint CHECKPOINT [...]

``--tta`` wraps the model in the config's ``tta_model`` (for mmsnip configs
a multi-scale model such as SNIP's full pyramid or AutoFocus) and runs the
test set through ``tta_pipeline``.
"""
import argparse
import os

from mmengine import ConfigDict
from mmengine.config import DictAction

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmsnip.engine import (build_runner, refuse_chip_eval,
                           require_snip_runner)
from mmsnip.utils import register_all_modules
from mmsnip.utils.dist import (setup_cpu_distributed,
                               warn_show_dir_rank0_only)
from mmsnip.utils.fileio import check_input_file, check_output_file
from mmsnip.utils.preflight import (check_chip_cfgs, check_data_paths,
                                    check_num_classes, check_run_settings,
                                    check_tta_config, explain_failure,
                                    input_files, load_config, merge_options,
                                    run_cli, set_work_dir)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='MMSNIP test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
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
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test with the config\'s `tta_model` (multi-scale inference)')
    # torch.distributed.launch passes `--local-rank` (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_tta(cfg) -> None:
    """Wrap ``cfg.model`` in ``cfg.tta_model`` and test with
    ``cfg.tta_pipeline``, as mmdet's test.py does; both must be set
    (``check_tta_config``: no silent flip test in their place)."""
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main():
    args = parse_args()
    setup_cache_size_limit_of_dynamo()
    register_all_modules(init_default_scope=False)

    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    merge_options(cfg, args.cfg_options)

    # work_dir: CLI > segment in file > filename; checked writable
    set_work_dir(cfg, args.work_dir, args.config)

    if '://' not in args.checkpoint:
        check_input_file(args.checkpoint, 'checkpoint file')
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        from mmdet.engine.hooks.utils import trigger_visualization_hook
        cfg = trigger_visualization_hook(cfg, args)

    keys = ['test_dataloader']
    # entries named as the config writes them, before --tta wraps the model
    check_run_settings(cfg, keys)
    check_chip_cfgs(cfg, keys)
    refuse_chip_eval(cfg, keys)
    check_num_classes(cfg, keys)
    if args.tta:
        check_tta_config(cfg)
        apply_tta(cfg)
    require_snip_runner(cfg, test=True)

    if args.out is not None:
        # before the test, not after it: a bad --out fails in a second
        check_output_file(
            args.out, '--out', ('.pkl', '.pickle'),
            inputs=dict(CONFIG=args.config, CHECKPOINT=args.checkpoint,
                        **input_files(cfg, keys)))
    check_data_paths(cfg, keys)
    setup_cpu_distributed(cfg)
    try:
        runner = build_runner(cfg)
        warn_show_dir_rank0_only(cfg, runner.world_size)
        if args.out is not None:
            # mmdet's, written atomically (no partial file at --out)
            from mmsnip.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        runner.test()
    except Exception:
        explain_failure(cfg, keys)
        raise


if __name__ == '__main__':
    run_cli(main)
