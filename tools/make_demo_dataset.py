# Copyright (c) mmsnip contributors. All rights reserved.
"""Generate the synthetic multi-scale demo dataset (COCO format).

    python tools/make_demo_dataset.py data/demo                  # COCO-like
    python tools/make_demo_dataset.py data/aerial --preset aerial

Writes ``OUT/annotations/instances_{train,val}.json`` and
``OUT/{train,val}/*.jpg``. Deterministic from ``--seed`` (val uses
``--val-seed``, by default a different stream). A split that exists with
the same parameters is skipped; ``--force`` regenerates it.
"""
import dataclasses
import time

from mmsnip.utils.cli import (ArgumentParser, non_negative_int, number,
                              positive_float, positive_int, unit_interval)
from mmsnip.utils.demo_data import (DEFAULT_COUNTS, PRESETS, generate_split,
                                    summarize)
from mmsnip.utils.fileio import check_output_dir
from mmsnip.utils.preflight import UserInputError, run_cli

# argparse types of the DemoDataParams fields that have an option
FIELD_TYPES = dict(
    min_side=positive_int, max_side=positive_int,
    min_objects=non_negative_int, max_objects=non_negative_int,
    jpeg_quality=number(int, 0, 100), min_obj=positive_float,
    max_obj=positive_float, empty_frac=unit_interval,
    crowd_frac=unit_interval, cluster=unit_interval)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='output folder (the data_root)')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='coco')
    parser.add_argument('--num-train', type=non_negative_int,
                        help='training images')
    parser.add_argument('--num-val', type=non_negative_int,
                        help='validation images')
    parser.add_argument('--seed', type=non_negative_int, default=0)
    parser.add_argument(
        '--val-seed', type=non_negative_int, help='default: seed + 1000003')
    for field, kind in FIELD_TYPES.items():
        parser.add_argument('--' + field.replace('_', '-'), type=kind)
    parser.add_argument('--force', action='store_true')
    return parser.parse_args(argv)


def main():
    args = parse_args()
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(PRESETS[args.preset])
        if getattr(args, f.name, None) is not None
    }
    try:
        params = dataclasses.replace(PRESETS[args.preset], **overrides)
    except ValueError as e:
        raise UserInputError(str(e)) from None
    check_output_dir(args.out_dir, 'out_dir')
    num_train, num_val = DEFAULT_COUNTS[args.preset]
    num_train = num_train if args.num_train is None else args.num_train
    num_val = num_val if args.num_val is None else args.num_val
    val_seed = args.seed + 1000003 if args.val_seed is None \
        else args.val_seed
    for split, num, seed in (('train', num_train, args.seed),
                             ('val', num_val, val_seed)):
        start = time.time()
        coco = generate_split(args.out_dir, split, num, seed, params,
                              force=args.force)
        print(f'[{split}] {args.out_dir} ({time.time() - start:.1f} s): '
              + summarize(coco).replace('\n', '\n    '))


if __name__ == '__main__':
    run_cli(main)
