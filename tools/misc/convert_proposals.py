# Copyright (c) mmsnip contributors. All rights reserved.
"""Rewrite a proposal file in the compact format (memory-mapped, version 3).

    python tools/misc/convert_proposals.py old.pkl new.npz [--top-n 300] \
        [--box-dtype auto|float16|float32] [--score-dtype uint8|float16] \
        [--drop-scales] [--pool-scales [IOU] [--workers N]] \
        [--names-from ANN.json]
    python tools/misc/convert_proposals.py rpn_dump.pkl new.npz \
        --from-mmdet --ann-file ANN.json --img-prefix train2017/ \
        --num-scales 3 [--top-n 300]

Reads a legacy pickle (``tools/mine_proposals.py`` before the compact
format) or a compact file (version 2, 3 or 4) and writes a compact one
(:mod:`mmsnip.datasets.proposals`): 9 bytes per proposal instead of 20
(float16 boxes, 8-bit scores, rows of each image and scale by descending
score), opened without reading it whole. ``--score-dtype float16`` writes
version 2 (10 bytes per proposal, rows in input order) for readers older
than version 3. ``--top-n`` keeps the highest-scoring proposals per image
and scale. The record of the chip scales the proposals were mined for
(files of ``tools/mine_proposals.py``) is kept; ``--drop-scales`` leaves
it out, so that a chip config of other scales reads the file (at your
risk: each scale's rows were mined at the recorded scale). The images'
names (which readers compare with their dataset's) are kept;
``--names-from ANN.json`` records instead the ``file_name`` of each image
of that COCO annotation file, the one the proposals were mined for (a
file written without names: readers then refuse other images with the
same ids). Training
reads every format, so converting is optional; it saves memory and start
time on large datasets.

``--pool-scales [IOU]`` pools each image's rows of all scales through one
NMS at IoU 0.7 (or ``IOU``), as the released SNIPER code does
(``--top-n`` applies to each scale first), and stores the pool once per
image (version 4, recording the IoU): every scale's negatives then come
from the pool's proposals in its valid range
(:mod:`mmsnip.datasets.proposal_pool`). Off by default. The pooling
streams (it holds one bit per source row and the written file's scores,
1 byte per pooled row, not the pool), runs its NMS in numpy (the rows
mmcv's CPU ``nms`` keeps) over blocks of images in ``--workers``
processes (default: the usable cores; the file is the same for any
number) and shows a progress bar with ETA.

``--from-mmdet`` reads instead the pickle of MMDetection's
``DumpProposals`` metric (``{"folder/file.jpg": InstanceData(bboxes,
scores)}``, ORIGINAL pixels) and keys it by the image ids of
``--ann-file`` (COCO), each image's key made by mmdet's rule from
``--img-prefix`` (the folder mmdet read the images from,
``osp.join(data_root, data_prefix['img'])``) and its ``file_name``
(:mod:`mmsnip.datasets.mmdet_proposals`). The dump's one set of
proposals per image serves every one of ``--num-scales`` scales (the chip
config's number of scales) and is stored once (version 4; with
``--score-dtype float16``, version 2, once per scale), with no chip
scales recorded and each image's ``file_name`` as its name.

A bad input file (not a proposal file, damaged, rows of another shape
than ``(P, 5)`` / ``(P, 4)``; with ``--from-mmdet``: an mmsnip file, an
image without an entry, an entry of no image, two images of one key, bad
or non-finite rows) is one ``error:`` line naming it and exit status 2.
"""
from mmsnip.datasets.coco_file import coco_names
from mmsnip.datasets.mmdet_proposals import convert_mmdet_proposals
from mmsnip.datasets.proposal_pool import POOL_IOU, pool_scales_option
from mmsnip.datasets.proposals import convert_proposals
from mmsnip.utils.cli import ArgumentParser, positive_int
from mmsnip.utils.fileio import (check_input_file, check_output_file,
                                 checked_write)
from mmsnip.utils.preflight import UserInputError, run_cli

# Options of --from-mmdet: those it needs, in the order of the messages.
MMDET_OPTIONS = ('ann_file', 'img_prefix', 'num_scales')


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='proposal file to read (any format; '
                        'with --from-mmdet: a DumpProposals pickle)')
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
                        help='uint8 (default): version 3, or 4 where the '
                        'rows serve every scale (--from-mmdet, version-4 '
                        'sources); float16: version 2, for older readers')
    parser.add_argument('--drop-scales', action='store_true',
                        help='leave out the record of the chip scales the '
                        'proposals were mined for')
    parser.add_argument('--pool-scales', **pool_scales_option(
        'pool each image\'s rows of all scales through one NMS at IoU '
        f'{POOL_IOU} (or IOU), as the released code does; stored once per '
        'image'))
    parser.add_argument('--workers', type=positive_int, default=None,
                        help='--pool-scales: processes pooling blocks of '
                        'images (default: the usable cores; the file is '
                        'the same for any number)')
    parser.add_argument('--names-from', default=None, metavar='ANN',
                        help='COCO annotation file the proposals were mined '
                        'for: record each image\'s file_name as its name '
                        '(for a file written without names)')
    mmdet = parser.add_argument_group(
        'proposals dumped by mmdet\'s DumpProposals metric')
    mmdet.add_argument('--from-mmdet', action='store_true',
                       help='src is a DumpProposals pickle; needs '
                       '--ann-file, --img-prefix and --num-scales')
    mmdet.add_argument('--ann-file', default=None,
                       help='COCO annotation file of the dumped images '
                       '(their ids key the written file)')
    mmdet.add_argument('--img-prefix', default=None,
                       help='folder mmdet read the images from '
                       '(osp.join(data_root, data_prefix["img"]), e.g. '
                       'train2017/; only its last folder matters)')
    mmdet.add_argument('--num-scales', type=positive_int, default=None,
                       help='scales of the chip config that will read the '
                       'file (the dump\'s proposals are written for each)')
    args = parser.parse_args(argv)
    flags = {o: '--' + o.replace('_', '-') for o in MMDET_OPTIONS}
    given = [flags[o] for o in MMDET_OPTIONS if getattr(args, o) is not None]
    lacking = [f for f in flags.values() if f not in given]
    if args.from_mmdet and lacking:
        parser.error(f'--from-mmdet needs {", ".join(flags.values())} '
                     f'(missing: {", ".join(lacking)})')
    if args.from_mmdet and args.drop_scales:
        parser.error('--drop-scales: not with --from-mmdet (a converted '
                     'dump records no chip scales anyway); leave it out')
    if args.from_mmdet and args.pool_scales is not None:
        parser.error('--pool-scales: not with --from-mmdet (a dump holds '
                     'one set of proposals per image: nothing to pool); '
                     'leave it out')
    if args.from_mmdet and args.names_from is not None:
        parser.error('--names-from: not with --from-mmdet (the dump\'s '
                     'conversion records the file names of --ann-file); '
                     'leave it out')
    if args.workers is not None and args.pool_scales is None:
        parser.error('--workers: only with --pool-scales (the other '
                     'conversions run in one process); leave it out')
    if given and not args.from_mmdet:
        parser.error(f'{", ".join(given)}: only with --from-mmdet (src is '
                     'a dump of mmdet\'s DumpProposals); add it, or leave '
                     'them out for an mmsnip proposal file')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    check_input_file(args.src, 'src')
    if args.ann_file is not None:
        check_input_file(args.ann_file, '--ann-file')
    if args.names_from is not None:
        check_input_file(args.names_from, '--names-from')
    check_output_file(args.dst, 'dst', inputs={
        'src': args.src, '--ann-file': args.ann_file,
        '--names-from': args.names_from})
    try:
        with checked_write(args.dst):
            if args.from_mmdet:
                info = convert_mmdet_proposals(
                    args.src, args.dst, args.ann_file, args.img_prefix,
                    args.num_scales, top_n=args.top_n,
                    box_dtype=args.box_dtype, score_dtype=args.score_dtype)
            else:
                info = convert_proposals(
                    args.src, args.dst, top_n=args.top_n,
                    box_dtype=args.box_dtype, score_dtype=args.score_dtype,
                    drop_scales=args.drop_scales,
                    pool_iou=args.pool_scales, workers=args.workers,
                    progress=True, img_names=None if args.names_from is None
                    else coco_names(args.names_from),
                    names_from=f'--names-from "{args.names_from}"')
    except (ValueError, FileNotFoundError) as e:
        if isinstance(e, UserInputError):
            raise
        raise UserInputError(str(e)) from None
    print(f'{args.dst}: {info["images"]} images, {info["proposals"]} '
          f'proposals, {info["bytes_out"] / 2**20:.1f} MiB (from '
          f'{info["bytes_in"] / 2**20:.1f} MiB), format version '
          f'{info["version"]}' + (
              f' (pooled over the scales at IoU {args.pool_scales:g}: each '
              'image\'s pool serves every scale)'
              if args.pool_scales is not None else
              ' (each image\'s rows serve every scale)'
              if info['version'] == 4 else ''))
    return 0


if __name__ == '__main__':
    run_cli(main)
