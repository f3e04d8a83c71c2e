# Copyright (c) mmsnip contributors. All rights reserved.
"""Export the SNIPER chips of a COCO annotation file, with statistics.

    python tools/export_chips.py ANN.json --config CFG --out chips.json \
        [--proposals proposals.pkl] [--seed 0 --epoch 0]
    python tools/export_chips.py ANN.json --paper-defaults --out chips.json

For every image, writes its chips: ``box`` [x1, y1, x2, y2] in ORIGINAL
pixels, ``scale_index``, ``scale_factor``, ``positive``, and ``covers``, the
annotation ids fully inside the chip. Prints chips per image, training
pixels per image per epoch for SNIPER (positives + the negatives sampled
for ``--epoch``) against the full pyramid (SNIP), and coverage: the fraction
of valid annotations fully inside a chip of a scale where they are valid
(1.0 by construction, except boxes larger than a chip, listed apart).
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
from collections import defaultdict

import numpy as np

from mmsnip.chips import (ChipConfig, generate_negative_chips,
                          generate_positive_chips, inside_matrix,
                          sample_negative_chips, sanitize_boxes)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='COCO-format annotation json')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--config', help='config with a `chip_cfg`')
    source.add_argument('--paper-defaults', action='store_true',
                        help="the paper's COCO chip settings")
    parser.add_argument('--out', required=True, help='output json')
    parser.add_argument('--proposals', help='proposal file for negatives')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epoch', type=int, default=0)
    return parser.parse_args()


def fail(msg: str):
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(2)


def chip_config_from(path: str) -> ChipConfig:
    """``chip_cfg`` of a config: top level or the train dataset's."""
    from mmsnip.utils.preflight import UserInputError, load_config
    try:
        cfg = load_config(path)
    except UserInputError as e:
        fail(str(e))
    chip_cfg = cfg.get('chip_cfg')
    if chip_cfg is None:
        ds = cfg.get('train_dataloader', {}).get('dataset', {})
        chip_cfg = ds.get('chip_cfg')
    if chip_cfg is None:
        fail(f'config "{path}" has no `chip_cfg` (top level or in '
             'train_dataloader.dataset)')
    try:
        return ChipConfig.from_dict(dict(chip_cfg))
    except ValueError as e:
        fail(f'config "{path}": chip_cfg: {e}')


def load_coco(path: str) -> dict:
    """Read a COCO json; one-line errors for the usual problems."""
    if not osp.isfile(path):
        fail(f'annotation file "{path}" does not exist')
    try:
        with open(path, encoding='utf-8') as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(f'annotation file "{path}" is not valid JSON: {e}')
    for key in ('images', 'annotations'):
        if key not in coco:
            fail(f'annotation file "{path}" lacks the COCO key "{key}"')
    for i, img in enumerate(coco['images']):
        for key in ('id', 'width', 'height'):
            if key not in img:
                fail(f'{path}: images[{i}] lacks "{key}"')
        if not (img['width'] > 0 and img['height'] > 0):
            fail(f'{path}: image {img["id"]} ({img.get("file_name")}) has '
                 f'size {img["width"]}x{img["height"]}')
    ids = {img['id'] for img in coco['images']}
    for i, ann in enumerate(coco['annotations']):
        if 'bbox' not in ann or len(ann['bbox']) != 4:
            fail(f'{path}: annotations[{i}] (id {ann.get("id")}) has no '
                 '[x, y, w, h] bbox')
        if ann.get('image_id') not in ids:
            fail(f'{path}: annotation {ann.get("id")} refers to unknown '
                 f'image_id {ann.get("image_id")}')
    return coco


def atomic_json(obj, path: str) -> None:
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main():
    args = parse_args()
    cfg = ChipConfig.paper_coco() if args.paper_defaults else \
        chip_config_from(args.config)
    coco = load_coco(args.ann_file)
    proposals = None
    if args.proposals:
        from mmsnip.datasets.proposals import load_proposals
        try:
            proposals = load_proposals(
                args.proposals, [img['id'] for img in coco['images']],
                len(cfg.scales))
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))

    by_image = defaultdict(list)
    for ann in coco['annotations']:
        by_image[ann['image_id']].append(ann)
    k2 = float(cfg.chip_size)**2
    out, stats = [], defaultdict(float)
    uncoverable = []
    for img in coco['images']:
        h, w = img['height'], img['width']
        anns = by_image[img['id']]
        xywh = np.array([a['bbox'] for a in anns], np.float64).reshape(-1, 4)
        boxes = np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]
        crowd = np.array([a.get('iscrowd', 0) for a in anns], bool)
        boxes, keep = sanitize_boxes(boxes, h, w)
        stats['dropped_boxes'] += int((~keep).sum())
        res = generate_positive_chips(boxes, h, w, cfg, crowd)
        chips = res.chips
        negatives = 0
        if proposals is not None:
            neg = generate_negative_chips(proposals[img['id']], h, w, cfg,
                                          chips)
            picked = sample_negative_chips(len(neg), cfg.neg_per_image,
                                           args.seed, args.epoch, img['id'])
            negatives = len(picked)
            stats['negative_pool'] += len(neg)
            chips = type(chips).concat([chips, neg])
        inside = inside_matrix(boxes, chips.boxes + [-1e-6, -1e-6, 1e-6,
                                                     1e-6])
        for s in range(len(cfg.scales)):
            need = res.valid[s] & ~res.uncoverable[s]
            mine = chips.is_positive & (chips.scale_index == s)
            stats['valid'] += int(need.sum())
            stats['covered'] += int((inside[mine][:, need]).any(0).sum())
            for j in np.flatnonzero(res.uncoverable[s]):
                uncoverable.append((img['id'], anns[j].get('id'), s))
        num_pos = int(chips.is_positive.sum())
        stats['positive'] += num_pos
        stats['sniper_pixels'] += (num_pos + negatives) * k2
        stats['pyramid_pixels'] += sum(
            np.prod(spec.scaled_shape(h, w)) for spec in cfg.scales)
        out.append(dict(
            image_id=img['id'], file_name=img.get('file_name'),
            chips=[dict(box=[round(float(v), 2) for v in chips.boxes[c]],
                        scale_index=int(chips.scale_index[c]),
                        scale_factor=float(chips.scale_factor[c]),
                        positive=bool(chips.is_positive[c]),
                        covers=[anns[j].get('id')
                                for j in np.flatnonzero(inside[c])])
                   for c in range(len(chips))]))
    atomic_json(dict(chip_cfg=repr(cfg), images=out), args.out)

    n = max(len(coco['images']), 1)
    coverage = stats['covered'] / stats['valid'] if stats['valid'] else 1.0
    print(f'{len(coco["images"])} images -> {args.out}')
    print(f'positive chips per image: {stats["positive"] / n:.2f}')
    if proposals is not None:
        print(f'negative pool per image: {stats["negative_pool"] / n:.2f} '
              f'({cfg.neg_per_image} sampled per image per epoch)')
    print(f'pixels per image per epoch: SNIPER '
          f'{stats["sniper_pixels"] / n / 1e6:.3f} MPix vs full pyramid '
          f'{stats["pyramid_pixels"] / n / 1e6:.3f} MPix '
          f'({stats["pyramid_pixels"] / max(stats["sniper_pixels"], 1):.2f}x'
          ' fewer)')
    print(f'coverage of valid annotations: {coverage:.4f} '
          f'({int(stats["covered"])}/{int(stats["valid"])})')
    if uncoverable:
        print(f'{len(uncoverable)} valid annotations are larger than a chip '
              'at their scale and are only seen cropped (image, ann, scale):'
              f' {uncoverable[:10]}')
    if stats['dropped_boxes']:
        print(f'{int(stats["dropped_boxes"])} degenerate boxes dropped '
              '(zero size or outside the image after clipping)')


if __name__ == '__main__':
    main()
