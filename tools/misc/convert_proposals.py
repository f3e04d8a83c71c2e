# Copyright (c) mmsnip contributors. All rights reserved.
"""Rewrite a proposal file in the compact format (memory-mapped, version 3).

    python tools/misc/convert_proposals.py old.pkl new.npz [--top-n 300] \
        [--box-dtype auto|float16|float32] [--score-dtype uint8|float16] \
        [--drop-scales]

Reads a legacy pickle (``tools/mine_proposals.py`` before the compact
format) or a compact file (version 2 or 3) and writes a compact one
(:mod:`mmsnip.datasets.proposals`): 9 bytes per proposal instead of 20
(float16 boxes, 8-bit scores, rows of each image and scale by descending
score), opened without reading it whole. ``--score-dtype float16`` writes
version 2 (10 bytes per proposal, rows in input order) for readers older
than version 3. ``--top-n`` keeps the highest-scoring proposals per image
and scale. The record of the chip scales the proposals were mined for
(files of ``tools/mine_proposals.py``) is kept; ``--drop-scales`` leaves
it out, so that a chip config of other scales reads the file (at your
risk: each scale's rows were mined at the recorded scale). Training
reads every format, so converting is optional; it saves memory and start
time on large datasets. A bad input file (not a proposal file, damaged,
rows of another shape than ``(P, 5)`` / ``(P, 4)``) is one ``error:``
line naming it and exit status 2.
"""
from mmsnip.datasets.proposals import convert_proposals
from mmsnip.utils.cli import ArgumentParser, positive_int
from mmsnip.utils.fileio import check_output_file, checked_write
from mmsnip.utils.preflight import UserInputError, run_cli


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='proposal file to read (any format)')
    parser.add_argument('dst', help='compact proposal file to write')
    parser.add_argument('--top-n', type=positive_int, default=None,
                        help='keep at most this many proposals per image '
                        'and scale (highest scores)')
    parser.add_argument('--box-dtype', default='auto',
                        choices=['auto', 'float16', 'float32'],
                        help='auto: float16 unless a coordinate exceeds '
                        '2048 px')
    parser.add_argument('--score-dtype', default='uint8',
                        choices=['uint8', 'float16'],
                        help='uint8: version 3 (default); float16: version '
                        '2, for older readers')
    parser.add_argument('--drop-scales', action='store_true',
                        help='leave out the record of the chip scales the '
                        'proposals were mined for')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_output_file(args.dst, 'dst')
    try:
        with checked_write(args.dst):
            info = convert_proposals(args.src, args.dst, top_n=args.top_n,
                                     box_dtype=args.box_dtype,
                                     score_dtype=args.score_dtype,
                                     drop_scales=args.drop_scales)
    except (ValueError, FileNotFoundError) as e:
        if isinstance(e, UserInputError):
            raise
        raise UserInputError(str(e)) from None
    print(f'{args.dst}: {info["images"]} images, {info["proposals"]} '
          f'proposals, {info["bytes_out"] / 2**20:.1f} MiB (from '
          f'{info["bytes_in"] / 2**20:.1f} MiB), format version '
          f'{info["version"]}')
    return 0


if __name__ == '__main__':
    run_cli(main)
