# Copyright (c) mmsnip contributors. All rights reserved.
"""Generate the synthetic multi-scale demo dataset (COCO format).

    python tools/make_demo_dataset.py data/demo                  # COCO-like
    python tools/make_demo_dataset.py data/aerial --preset aerial

Writes ``OUT/annotations/instances_{train,val}.json`` and
``OUT/{train,val}/*.jpg``. Deterministic from ``--seed`` (val uses
``--val-seed``, by default a different stream). A split that exists with
the same parameters is skipped; ``--force`` regenerates it.
"""
import argparse
import dataclasses
import time

from mmsnip.utils.demo_data import (DEFAULT_COUNTS, PRESETS, generate_split,
                                    summarize)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='output folder (the data_root)')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='coco')
    parser.add_argument('--num-train', type=int, help='training images')
    parser.add_argument('--num-val', type=int, help='validation images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--val-seed', type=int, help='default: seed + 1000003')
    for field in ('min_side', 'max_side', 'min_objects', 'max_objects',
                  'jpeg_quality'):
        parser.add_argument('--' + field.replace('_', '-'), type=int)
    for field in ('min_obj', 'max_obj', 'empty_frac', 'crowd_frac',
                  'cluster'):
        parser.add_argument('--' + field.replace('_', '-'), type=float)
    parser.add_argument('--force', action='store_true')
    return parser.parse_args()


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
        raise SystemExit(f'error: {e}')
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
    main()
