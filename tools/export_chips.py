# Copyright (c) mmsnip contributors. All rights reserved.
"""Export the SNIPER chips of a COCO annotation file, with statistics.

    python tools/export_chips.py ANN.json --config CFG --out chips.json \
        [--proposals proposals.pkl] [--scales 0 2] [--seed 0 --epoch 0] \
        [--strict]
    python tools/export_chips.py ANN.json --paper-defaults --out chips.json

The chip settings are the config's ``chip_cfg`` (top level, or the one of
``train_dataloader.dataset``), or the paper's COCO settings. For every image
it writes its chips: ``box`` [x1, y1, x2, y2] in ORIGINAL pixels,
``box_scaled`` in the scale's pixels, ``scale_index`` (into the config's
scales), ``scale_factor``, ``positive``, ``sampled`` (positives, and the
negatives drawn for ``--epoch``, keyed by the image id: the distribution
of a training epoch, whose draw keys images by dataset index) and
``covers``: the ids of the annotations fully inside the chip. The file is
written atomically.

It prints chips per image, pixels per image per epoch for SNIPER (positive
+ sampled negative chips, ``K x K`` each, batch padding included) against
the full pyramid (SNIP: every scale's whole canvas), and coverage: the
fraction of valid annotations fully inside a positive chip of a scale where
they are valid. Coverage is 1.0 by construction; annotations larger than a
chip at a scale where they are valid cannot be enclosed and are listed
apart.

With ``--config``, annotations of categories outside the classes its
training dataset keeps (``metainfo.classes``, or the dataset type's
default classes) are left out and counted, as ``CocoDataset`` drops them
(``mmsnip.datasets.coco_file.coco_for_config``).
Annotations are read and checked by ``mmsnip.datasets.coco_file.load_coco``
(the dataset audit's checks): a ``bbox`` that is not four finite numbers,
an image size that is not positive, an annotation of an image the file
lacks, duplicate ids are errors naming the file and entry. Boxes of zero
area inside the image (negative width or height included) or outside it
are dropped and reported (``mmsnip.chips.sanitize_boxes``), or an error
with ``--strict``.
``--proposals`` takes a proposal file of ``tools/mine_proposals.py``
(``mmsnip.datasets.proposals``: per image id, one ``(P, 5)`` array
``[x1, y1, x2, y2, score]`` in ORIGINAL pixels per scale); a file for other
images or another number of scales is refused.
"""
import dataclasses
from collections import defaultdict
from typing import List, Mapping, Optional, Sequence

import numpy as np

from mmsnip.chips import (ChipConfig, ChipSet, box_sizes,
                          generate_negative_chips, generate_positive_chips,
                          inside_matrix, sample_negative_chips, sanitize_boxes)
from mmsnip.datasets.coco_file import (annotations_by_image, coco_boxes,
                                       coco_for_config, left_out_by_classes,
                                       load_coco_proposals, training_source)
from mmsnip.utils.cli import ArgumentParser, non_negative_int
from mmsnip.utils.fileio import check_output_file, write_json
from mmsnip.utils.preflight import (UserInputError, chip_config_of,
                                    load_config, run_cli)

# Chips snap to whole pixels of the scale; ORIGINAL coordinates carry the
# rounding of the division by the factor.
_TOL = 1e-6


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='COCO-format annotation json')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--config', help='config with a `chip_cfg`')
    source.add_argument('--paper-defaults', action='store_true',
                        help="the paper's COCO chip settings")
    parser.add_argument('--out', required=True, help='output json')
    parser.add_argument('--proposals', help='proposal file for negatives')
    parser.add_argument('--scales', type=non_negative_int, nargs='+',
                        help='export only these scale indices of the config')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='seed of the negative-chip sampling')
    parser.add_argument('--epoch', type=non_negative_int, default=0,
                        help='epoch whose negatives are marked sampled')
    parser.add_argument('--strict', action='store_true',
                        help='fail on boxes of zero area or outside the '
                        'image instead of dropping them')
    return parser.parse_args(argv)


def select_scales(cfg: ChipConfig, indices: Sequence[int]) -> ChipConfig:
    """The config restricted to some scales (gaps between them allowed)."""
    bad = [i for i in indices if not 0 <= i < len(cfg.scales)]
    if bad or len(set(indices)) != len(indices):
        raise UserInputError(
            f'--scales {list(indices)}: the config has scales 0..'
            f'{len(cfg.scales) - 1}, each may be given once')
    m = cfg.negative.min_proposals
    negative = dataclasses.replace(
        cfg.negative, min_proposals=tuple(m[i] for i in indices)
        if isinstance(m, tuple) else m)
    return dataclasses.replace(cfg, scales=tuple(cfg.scales[i]
                                                 for i in indices),
                               negative=negative, allow_range_gaps=True)


def _chip_records(chips: ChipSet, scale_ids: np.ndarray,
                  sampled: np.ndarray, inside: np.ndarray,
                  ann_ids: List) -> List[dict]:
    return [dict(box=[round(float(v), 3) for v in chips.boxes[c]],
                 box_scaled=[round(float(v), 3)
                             for v in chips.boxes_scaled[c]],
                 scale_index=int(scale_ids[chips.scale_index[c]]),
                 scale_factor=float(chips.scale_factor[c]),
                 positive=bool(chips.is_positive[c]),
                 sampled=bool(sampled[c]),
                 covers=[ann_ids[j] for j in np.flatnonzero(inside[c])])
            for c in range(len(chips))]


def main():
    args = parse_args()
    check_output_file(args.out, '--out', inputs={
        'ANN_FILE': args.ann_file, '--config': args.config,
        '--proposals': args.proposals})
    config = None if args.paper_defaults else load_config(args.config)
    cfg = ChipConfig.paper_coco() if config is None else \
        chip_config_of(config)
    full_cfg = cfg
    scale_ids = np.arange(len(cfg.scales))
    if args.scales:
        cfg = select_scales(cfg, args.scales)
        scale_ids = np.array(args.scales)
    # the classes training keeps: other categories give no chip
    coco, classes = coco_for_config(
        args.ann_file, None if config is None else training_source(config))
    proposals: Optional[Mapping] = load_coco_proposals(
        args.proposals, coco, len(full_cfg.scales),
        scales=full_cfg.scales) if args.proposals else None
    by_image = annotations_by_image(coco, classes)
    num_other, other_ids = left_out_by_classes(coco, classes)
    k2 = float(cfg.chip_size)**2
    out, stats = [], defaultdict(float)
    uncoverable, dropped = [], []
    for img in coco['images']:
        h, w = img['height'], img['width']
        anns = by_image[img['id']]
        ann_ids = [a.get('id') for a in anns]
        boxes, crowd = coco_boxes(anns)
        boxes, keep = sanitize_boxes(boxes, h, w)
        for j in np.flatnonzero(~keep):
            if args.strict:
                raise UserInputError(
                    f'{args.ann_file}: annotation {ann_ids[j]} (image '
                    f'{img["id"]}, {w}x{h}): bbox {anns[j]["bbox"]} has '
                    'zero area inside the image')
            dropped.append((img['id'], ann_ids[j]))
        res = generate_positive_chips(boxes, h, w, cfg, crowd)
        chips = res.chips
        sampled = np.ones(len(chips), bool)
        if proposals is not None:
            props = [proposals[img['id']][i] for i in scale_ids]
            neg = generate_negative_chips(props, h, w, cfg, chips)
            picked = np.zeros(len(neg), bool)
            picked[sample_negative_chips(len(neg), cfg.neg_per_image,
                                         args.seed, args.epoch,
                                         img['id'])] = True
            stats['negative_pool'] += len(neg)
            stats['negative_sampled'] += int(picked.sum())
            chips = ChipSet.concat([chips, neg])
            sampled = np.concatenate([sampled, picked])
        tol = np.array([-_TOL, -_TOL, _TOL, _TOL])
        inside = inside_matrix(boxes, chips.boxes + tol) & keep
        sizes = box_sizes(boxes)
        for s in range(len(cfg.scales)):
            need = res.valid[s] & ~res.uncoverable[s]
            mine = chips.is_positive & (chips.scale_index == s)
            stats['valid'] += int(need.sum())
            stats['covered'] += int((inside[mine][:, need]).any(0).sum())
            for j in np.flatnonzero(res.uncoverable[s]):
                uncoverable.append((img['id'], ann_ids[j], int(scale_ids[s]),
                                    round(float(sizes[j]), 1)))
        num_sampled = int(sampled.sum())
        wh = chips.boxes_scaled[sampled, 2:] - chips.boxes_scaled[sampled, :2]
        stats['positive'] += int(chips.is_positive.sum())
        stats['sniper_pixels'] += num_sampled * k2
        stats['sniper_pixels_unpadded'] += float((wh[:, 0] * wh[:, 1]).sum())
        stats['pyramid_pixels'] += sum(
            np.prod(spec.scaled_shape(h, w)) for spec in cfg.scales)
        out.append(dict(image_id=img['id'], file_name=img.get('file_name'),
                        width=w, height=h,
                        chips=_chip_records(chips, scale_ids, sampled, inside,
                                            ann_ids)))

    n = max(len(coco['images']), 1)
    coverage = stats['covered'] / stats['valid'] if stats['valid'] else 1.0
    summary = dict(
        images=len(coco['images']),
        positive_chips_per_image=stats['positive'] / n,
        negative_pool_per_image=stats['negative_pool'] / n,
        negative_sampled_per_image=stats['negative_sampled'] / n,
        sniper_mpix_per_image=stats['sniper_pixels'] / n / 1e6,
        sniper_mpix_per_image_unpadded=(stats['sniper_pixels_unpadded'] / n /
                                        1e6),
        pyramid_mpix_per_image=stats['pyramid_pixels'] / n / 1e6,
        coverage=coverage, valid_annotations=int(stats['valid']),
        other_categories=num_other,
        uncoverable=[dict(image_id=i, ann_id=a, scale_index=s, size=z)
                     for i, a, s, z in uncoverable],
        dropped=[dict(image_id=i, ann_id=a) for i, a in dropped])
    write_json(args.out, dict(chip_cfg=repr(full_cfg),
                               scales=[int(s) for s in scale_ids],
                               summary=summary, images=out))

    print(f'{len(coco["images"])} images -> {args.out}')
    if num_other:
        print(f'{num_other} annotations of category ids {other_ids} left '
              f'out: not among the {len(classes)} classes the config '
              'trains on (CocoDataset drops them)')
    print('positive chips per image: '
          f'{summary["positive_chips_per_image"]:.2f}')
    if proposals is not None:
        print(f'negative pool per image: '
              f'{summary["negative_pool_per_image"]:.2f} '
              f'({cfg.neg_per_image} sampled per image per epoch: '
              f'{summary["negative_sampled_per_image"]:.2f} on average)')
    ratio = stats['pyramid_pixels'] / max(stats['sniper_pixels'], 1)
    print(f'pixels per image per epoch: SNIPER '
          f'{summary["sniper_mpix_per_image"]:.3f} MPix '
          f'({summary["sniper_mpix_per_image_unpadded"]:.3f} without padding)'
          f' vs full pyramid {summary["pyramid_mpix_per_image"]:.3f} MPix '
          f'({ratio:.2f}x fewer)')
    print(f'coverage of valid annotations: {coverage:.4f} '
          f'({int(stats["covered"])}/{int(stats["valid"])})')
    if uncoverable:
        print(f'{len(uncoverable)} valid annotations are larger than a chip '
              'at a scale where they are valid and are only seen cropped '
              f'there (image, ann, scale, size): {uncoverable[:10]}')
    if dropped:
        print(f'{len(dropped)} boxes dropped (zero area inside the image; '
              f'--strict makes this an error) (image, ann): {dropped[:10]}')


if __name__ == '__main__':
    run_cli(main)
