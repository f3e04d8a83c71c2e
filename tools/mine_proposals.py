# Copyright (c) mmsnip contributors. All rights reserved.
"""Mine RPN proposals for SNIPER negative chips (stage 1 -> stage 2).

    python tools/mine_proposals.py STAGE1_CONFIG STAGE1_CKPT --out props.pkl
    bash tools/dist_mine.sh STAGE1_CONFIG STAGE1_CKPT NUM_PROCS --out props.pkl

Runs the stage-1 model's RPN over every training image of the config's
``SniperDataset`` at every chip scale and writes the top ``--num-per-scale``
proposals per scale in ORIGINAL pixels. Resumable: re-running the same
command continues from the shards in ``<out>.parts/``; a run with another
checkpoint, ``--num-per-scale``, ``--nms-iou``, ``--pool-scales``, chip
scales or image list refuses to mix them (``--restart`` discards them and
starts over).

``--pool-scales [IOU]`` (off by default) pools each image's proposals of
all scales through one NMS at IoU 0.7 (or ``IOU``), as the released
SNIPER code does, and writes the pool once per image; every scale's
negatives then come from the pool's proposals in its valid range
(:mod:`mmsnip.datasets.proposal_pool`).
"""
import os

from mmengine.config import DictAction
from mmengine.dist import init_dist

from mmsnip.apis import mine_proposals
from mmsnip.datasets.proposal_pool import POOL_IOU, pool_scales_option
from mmsnip.utils import register_all_modules
from mmsnip.utils.cli import ArgumentParser, number, positive_int
from mmsnip.utils.dist import setup_cpu_distributed
from mmsnip.utils.fileio import check_input_file, check_output_file
from mmsnip.utils.preflight import (UserInputError, check_data_paths,
                                    input_files, load_config, run_cli)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='stage-1 SNIPER config')
    parser.add_argument('checkpoint', help='stage-1 checkpoint')
    parser.add_argument('--out', required=True, help='proposal file (.pkl)')
    parser.add_argument('--num-per-scale', type=positive_int, default=300)
    parser.add_argument('--nms-iou', type=number(float, 0, 1, low_open=True),
                        default=0.7)
    parser.add_argument('--pool-scales', **pool_scales_option(
        'pool the proposals of all scales through one NMS at IoU '
        f'{POOL_IOU} (or IOU), as the released code does; default: per '
        'scale'))
    parser.add_argument('--shard-size', type=positive_int, default=50,
                        help='images per resumable shard')
    parser.add_argument('--restart', action='store_true',
                        help='discard the shards of an earlier run in '
                        '<out>.parts instead of resuming from them')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    # not the dataset's proposal_file: the miner never reads it, and
    # mining again into the file a stage-2 config names is its purpose
    check_output_file(args.out, '--out', suffixes=('.pkl', ), inputs=dict(
        CONFIG=args.config, CHECKPOINT=args.checkpoint,
        **input_files(cfg, ['train_dataloader'], fields=('ann_file', ))))
    check_input_file(args.checkpoint, 'checkpoint file')
    check_data_paths(cfg, ['train_dataloader'])
    cfg.launcher = args.launcher
    if args.launcher != 'none' and not setup_cpu_distributed(cfg):
        init_dist(args.launcher)
    try:
        mine_proposals(cfg, args.checkpoint, args.out,
                       num_per_scale=args.num_per_scale,
                       nms_iou=args.nms_iou, shard_size=args.shard_size,
                       restart=args.restart,
                       pool_iou=args.pool_scales)
    except ValueError as e:
        raise UserInputError(str(e)) from e
    except OSError as e:
        if not e.filename:
            raise
        raise UserInputError(
            f'cannot write "{e.filename}": {e.strerror}') from None


if __name__ == '__main__':
    run_cli(main)
