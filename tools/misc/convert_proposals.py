# Copyright (c) mmsnip contributors. All rights reserved.
"""Rewrite a proposal file in the compact format (float16, memory-mapped).

    python tools/misc/convert_proposals.py old.pkl new.npz [--top-n 300] \
        [--box-dtype auto|float16|float32]

Reads a legacy pickle (``tools/mine_proposals.py`` before the compact
format) or a compact file and writes a compact one
(:mod:`mmsnip.datasets.proposals`): 10 bytes per proposal instead of 20,
opened without reading it whole. ``--top-n`` keeps the highest-scoring
proposals per image and scale. Training reads both formats, so converting
is optional; it saves memory and start time on large datasets.
"""
import sys

from mmsnip.datasets.proposals import convert_proposals
from mmsnip.utils.cli import ArgumentParser, positive_int


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='proposal file to read (either format)')
    parser.add_argument('dst', help='compact proposal file to write')
    parser.add_argument('--top-n', type=positive_int, default=None,
                        help='keep at most this many proposals per image '
                        'and scale (highest scores)')
    parser.add_argument('--box-dtype', default='auto',
                        choices=['auto', 'float16', 'float32'],
                        help='auto: float16 unless a coordinate exceeds '
                        '2048 px')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        info = convert_proposals(args.src, args.dst, top_n=args.top_n,
                                 box_dtype=args.box_dtype)
    except (ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{args.dst}: {info["images"]} images, {info["proposals"]} '
          f'proposals, {info["bytes_out"] / 2**20:.1f} MiB (from '
          f'{info["bytes_in"] / 2**20:.1f} MiB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
