# Copyright (c) mmsnip contributors. All rights reserved.
"""Suggest SNIPER chip settings (scales, valid ranges, chip size) for a
COCO-format annotation file.

    python tools/analysis/suggest_params.py ANN.json [--chip-size 512] \
        [--num-scales 3] [--target 30 500] [--max-images 500] \
        [--out-config chips.py] [--plot sizes.png] [--out-json stats.json]

Reads the size (sqrt(w * h), ORIGINAL pixels) of every object training
sees (crowd boxes and what MMDetection's CocoDataset drops left out: a
true "ignore", a width or height under 1 pixel, "area" <= 0, no overlap
with the image) and proposes fixed-factor
scales whose valid ranges overlap and bring each object to ``--target``
pixels at some scale (:func:`mmsnip.chips.suggest_params`). It then runs
the real chip generator on (a sample of ``--max-images``) images and
prints positive chips per image, pixels per epoch against the full
pyramid (every scale's whole canvas, SNIP) and the fraction of objects
valid at no scale (:func:`mmsnip.chips.chip_statistics`).

``--out-config`` writes a config snippet (``chip_cfg`` as
``SniperDataset`` and the TTA models take it) to paste into a config that
inherits a SNIPER one; ``--plot`` draws the size histogram with each
scale's valid range. Bad input (missing file, not COCO JSON, no usable
annotation) prints one ``error:`` line and exits with status 2.
"""
import dataclasses
import sys
import textwrap
import time

import numpy as np

from mmsnip.chips import (chip_statistics, object_sizes, sample_images,
                          scale_table, suggest_params)
from mmsnip.chips.params import (DEFAULT_MAX_FACTOR, DEFAULT_OVERLAP,
                                 DEFAULT_TARGET)
from mmsnip.datasets.coco_file import (annotations_by_image, coco_boxes,
                                       load_coco)
from mmsnip.utils.cli import (ArgumentParser, non_negative_int, number,
                              positive_float, positive_int)
from mmsnip.utils.fileio import (check_output_file, save_figure, write_json,
                                 write_text)
from mmsnip.utils.preflight import UserInputError, run_cli

# Print progress when measuring more images than this.
PROGRESS_MIN_IMAGES = 200


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='COCO-format annotation json')
    parser.add_argument('--chip-size', type=positive_int, default=512,
                        help='K, chip side in scaled pixels')
    parser.add_argument('--chip-stride', type=positive_int, default=32,
                        help='d, chip grid step in scaled pixels')
    parser.add_argument('--num-scales', type=positive_int, default=3)
    parser.add_argument('--target', type=positive_float, nargs=2,
                        default=list(DEFAULT_TARGET), metavar=('MIN', 'MAX'),
                        help='object size (sqrt(area)) wanted at a valid '
                        'scale, scaled pixels')
    parser.add_argument('--overlap', type=number(float, 1, low_open=True),
                        default=DEFAULT_OVERLAP,
                        help='ratio by which neighbouring ranges overlap')
    parser.add_argument('--max-factor', type=positive_float,
                        default=DEFAULT_MAX_FACTOR,
                        help='largest up-sampling factor')
    parser.add_argument('--closed-ends', action='store_true',
                        help='bound the finest range below and the coarsest '
                        'above (default: 0 and inf, as the paper)')
    parser.add_argument('--max-images', type=positive_int,
                        help='measure chips on a fixed-seed sample of this '
                        'many images (sizes always use every image)')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='seed of the image sample')
    parser.add_argument('--out-config', help='write a config snippet (.py)')
    parser.add_argument('--plot', help='write the size histogram (.png)')
    parser.add_argument('--out-json', help='write suggestion + statistics')
    return parser.parse_args(argv)


def read_annotations(path: str):
    """Boxes, image index, crowd flags and image shapes of a COCO file.

    The boxes are those training reads (:func:`annotations_by_image`
    leaves out what ``CocoDataset`` drops: ``"ignore"``, under 1 pixel,
    ``"area"`` <= 0, outside the image), image by image in the file's
    order.
    """
    coco = load_coco(path)  # a file without images is refused there
    by_image = annotations_by_image(coco)
    anns = [ann for img in coco['images'] for ann in by_image[img['id']]]
    if not anns:
        raise UserInputError(
            f'annotation file "{path}" has no annotations'
            + (' that training reads (CocoDataset drops them all: a true '
               '"ignore", a width or height under 1 pixel, "area" <= 0 or '
               'no overlap with the image)'
               if coco['annotations'] else '')
            + ': nothing to measure object sizes on')
    shapes = np.array([[img['height'], img['width']]
                       for img in coco['images']], np.float64)
    img_index = np.repeat(
        np.arange(len(coco['images'])),
        [len(by_image[img['id']]) for img in coco['images']])
    boxes, crowd = coco_boxes(anns)
    return boxes, img_index, crowd, shapes


def _progress(start: float):
    def report(done: int, total: int):
        if done == total or done % max(total // 10, 1) == 0:
            print(f'  [{done}/{total} images, {time.time() - start:.0f} s]',
                  file=sys.stderr, flush=True)
    return report


def write_snippet(path: str, suggestion, ann_file: str, summary: str):
    """A config snippet: ``chip_cfg`` and where it goes."""
    cfg = suggestion.chip_cfg()
    scales = ''.join(f'        dict(factor={s["factor"]!r}, valid_range='
                     f'({s["valid_range"][0]!r}, {s["valid_range"][1]!r})),\n'
                     for s in cfg['scales'])
    resize = ''.join(f"#         dict(type='ResizeToScale', scale=dict("
                     f'factor={s["factor"]!r})),\n' for s in cfg['scales'])
    text = (
        f'# Chip settings suggested by tools/analysis/suggest_params.py for\n'
        f'# {ann_file}\n'
        + ''.join(f'# {line}\n' for line in textwrap.wrap(summary, 76)) +
        '# Paste into a config that inherits a SNIPER config, e.g.\n'
        "# _base_ = '../sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'.\n"
        '# Valid ranges: sqrt(area) in ORIGINAL pixels; scales coarse to '
        'fine.\n'
        'chip_cfg = dict(\n'
        f'    chip_size={cfg["chip_size"]},\n'
        f'    chip_stride={cfg["chip_stride"]},\n'
        '    scales=[\n' + scales + '    ])\n'
        'train_dataloader = dict(dataset=dict(chip_cfg=chip_cfg))\n'
        "# The base's test pyramid read the base's chip_cfg: test with\n"
        "# these valid ranges too (SnipTTAModel; for AutoFocusTTAModel,\n"
        "# write each scale with its valid_range and the base's focus\n"
        "# settings: this list replaces the base's whole)\n"
        "tta_model = dict(scales=chip_cfg['scales'])\n"
        '# and resize to these scales in tta_pipeline: TestTimeAug\n'
        '# transforms=[[\n' + resize + '#     ], ...]\n')
    write_text(path, text)


def plot_sizes(path: str, sizes: np.ndarray, suggestion) -> None:
    """Histogram of object sizes (log x) with each scale's valid range."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    lo, hi = max(sizes.min() / 1.5, 0.5), sizes.max() * 1.5
    bins = np.geomspace(lo, hi, 50)
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(8, 5),
        gridspec_kw=dict(height_ratios=[3, 1.4]))
    top.hist(sizes, bins=bins, color='0.45')
    top.set_xscale('log')
    top.set_ylabel('objects (dashed: range ends)')
    top.set_title(f'{len(sizes)} objects: size histogram and suggested '
                  'valid ranges')
    colors = plt.get_cmap('tab10')
    t0, t1 = suggestion.target
    for i, s in enumerate(suggestion.scales):
        a, b = s.valid_range
        c = colors(i % 10)
        for end in (a, b):
            if lo < end < hi:
                top.axvline(end, color=c, ls='--', lw=1)
        bottom.plot([max(a, lo), min(b, hi)], [i, i], color=c, lw=2,
                    label=f'factor {s.factor:g}: ({a:g}, {b:g}) px')
        # the part of the range that is on target at this scale
        on = (max(a, t0 / s.factor, lo), min(b, t1 / s.factor, hi))
        bottom.plot(on, [i, i], color=c, lw=7, solid_capstyle='butt')
    bottom.xaxis.set_major_locator(
        matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    bottom.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'))
    bottom.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bottom.set_yticks(range(len(suggestion.scales)))
    bottom.set_yticklabels([f'{s.factor:g}x' for s in suggestion.scales])
    bottom.set_ylim(-0.7, len(suggestion.scales) - 0.3)
    bottom.set_xlabel('object size sqrt(w * h), original pixels (thick: '
                      f'{t0:g}-{t1:g} px at that scale)')
    bottom.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    inputs = {'ANN_FILE': args.ann_file}
    if args.out_config:
        check_output_file(args.out_config, '--out-config', ('.py', ),
                          inputs)
    if args.plot:
        check_output_file(args.plot, '--plot', inputs=inputs)
    if args.out_json:
        check_output_file(args.out_json, '--out-json', inputs=inputs)
    boxes, img_index, crowd, shapes = read_annotations(args.ann_file)
    sizes = object_sizes(boxes, img_index, shapes, crowd)
    if not len(sizes):
        raise UserInputError(
            f'annotation file "{args.ann_file}": no annotation is a '
            'non-crowd box with positive area inside its image')
    try:
        suggestion = suggest_params(
            sizes, num_scales=args.num_scales, chip_size=args.chip_size,
            chip_stride=args.chip_stride, target=tuple(args.target),
            overlap=args.overlap, max_factor=args.max_factor,
            open_ends=not args.closed_ends)
    except ValueError as e:
        raise UserInputError(str(e)) from e
    m = len(shapes)
    try:
        picked = sample_images(m, args.max_images, args.seed)
    except ValueError as e:
        raise UserInputError(f'--max-images: {e}') from e
    # boxes of the sampled images, image indices renumbered
    row = np.full(m, -1, np.int64)
    row[picked] = np.arange(len(picked))
    mine = row[img_index] >= 0
    total = len(picked)
    stats = chip_statistics(
        suggestion.chip_config(), boxes[mine], row[img_index[mine]],
        shapes[picked], crowd[mine], target=suggestion.target,
        progress=_progress(start) if total > PROGRESS_MIN_IMAGES else None)

    q = np.quantile(sizes, [0, 0.05, 0.5, 0.95, 1])
    side = shapes.max(axis=1)
    summary = (
        f'{m} images (longer side {side.min():.0f}-{side.max():.0f} px), '
        f'{len(sizes)} objects, {int(crowd.sum())} crowd; object size '
        f'min/5%/50%/95%/max: ' + '/'.join(f'{v:.1f}' for v in q) + ' px')
    lines = [summary, '', f'suggested chip_size={suggestion.chip_size}, '
             f'chip_stride={suggestion.chip_stride}, scales coarse to fine '
             f'(target {suggestion.target[0]:g}-{suggestion.target[1]:g} px '
             'at a valid scale):']
    lines += ['  ' + ln for ln in scale_table(suggestion.chip_config())]
    lines.append(f'  objects {suggestion.span[0]:g}-{suggestion.span[1]:g} '
                 'px (original) are on target at some scale')
    lines += [f'  note: {n}' for n in suggestion.notes]
    sampled = '' if total == m else f' (sample of {total} images)'
    per_scale = ', '.join(f'{v:.2f}' for v in stats.chips_per_scale)
    lines += [
        '', f'expected on {total} images{sampled}:',
        f'  positive chips per image: {stats.chips_per_image:.2f} '
        f'(per scale, coarse to fine: {per_scale})',
        f'  pixels per epoch (positive chips, {suggestion.chip_size}^2 '
        f'each): {stats.chip_pixels_per_image * m / 1e6:.1f} MPix vs full '
        f'pyramid {stats.pyramid_pixels_per_image * m / 1e6:.1f} MPix '
        f'({stats.pyramid_ratio:.2f}x fewer; negative chips add more)',
        f'  objects valid at no scale: {stats.frac_valid_nowhere:.2%}; '
        f'valid only off target: {stats.frac_off_target:.2%}; larger than '
        f'a chip where valid: {stats.frac_uncoverable:.2%}; valid at '
        f'{stats.valid_scales_per_object:.2f} scales on average']
    print('\n'.join(lines))

    if args.out_config:
        write_snippet(args.out_config, suggestion, args.ann_file, summary)
        print(f'config snippet -> {args.out_config}')
    if args.plot:
        plot_sizes(args.plot, sizes, suggestion)
        print(f'size histogram -> {args.plot}')
    if args.out_json:
        write_json(args.out_json, dict(
            ann_file=args.ann_file, num_images=m, num_objects=len(sizes),
            sampled_images=total,
            size_quantiles=dict(zip(['min', 'p5', 'p50', 'p95', 'max'],
                                    q.tolist())),
            chip_cfg=suggestion.chip_cfg(), target=suggestion.target,
            span=suggestion.span, notes=list(suggestion.notes),
            statistics=dict(dataclasses.asdict(stats),
                            pyramid_ratio=stats.pyramid_ratio,
                            chip_mpix_per_epoch=stats.chip_pixels_per_image *
                            m / 1e6,
                            pyramid_mpix_per_epoch=(
                                stats.pyramid_pixels_per_image * m / 1e6))))
        print(f'suggestion and statistics -> {args.out_json}')


if __name__ == '__main__':
    run_cli(main)
