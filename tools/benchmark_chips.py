# Copyright (c) mmsnip contributors. All rights reserved.
"""Benchmark chip generation (ms per image) on synthetic COCO-like boxes.

    python tools/benchmark_chips.py [--num-images 5000] [--proposals 1000] \
        [--out work_dirs/benchmark_chips.json]

Images are 640x480-ish with ~7 boxes whose sqrt(area) is log-normal over
roughly 5-500 px (COCO-like), the paper's chip settings (3 scales, K=512,
d=32). Positive chips are timed for all images; negative chips with
``--proposals`` random proposals per scale on every image. One core, pure
numpy: set OMP/MKL threads to 1 for a stable number.
"""
import argparse
import json
import os
import platform
import time

import numpy as np

from mmsnip.chips import (ChipConfig, generate_negative_chips,
                          generate_positive_chips)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=5000)
    parser.add_argument('--proposals', type=int, default=1000,
                        help='proposals per scale per image for negatives')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args()


def synthetic_images(num, seed):
    """(h, w, boxes) with COCO-like statistics, original pixels."""
    rng = np.random.default_rng(seed)
    for _ in range(num):
        w = int(rng.choice([640, 612, 500, 427]))
        h = int(rng.choice([480, 427, 375, 640]))
        n = int(rng.poisson(7))
        size = np.clip(np.exp(rng.normal(np.log(40), 1.1, n)), 4, 0.9 * min(
            h, w))
        aspect = np.exp(rng.normal(0, 0.5, n))
        bw = np.minimum(size * np.sqrt(aspect), w - 1)
        bh = np.minimum(size / np.sqrt(aspect), h - 1)
        x = rng.uniform(0, w - bw)
        y = rng.uniform(0, h - bh)
        yield h, w, np.stack([x, y, x + bw, y + bh], axis=1)


def random_proposals(rng, h, w, num):
    xy = rng.uniform(0, 1, (num, 2)) * [w, h]
    wh = np.exp(rng.normal(np.log(60), 0.9, (num, 2)))
    boxes = np.c_[xy, xy + wh]
    return np.clip(boxes, 0, [w, h, w, h])


def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def main():
    args = parse_args()
    cfg = ChipConfig.paper_coco()
    images = list(synthetic_images(args.num_images, args.seed))
    rng = np.random.default_rng(args.seed + 1)
    proposals = [random_proposals(rng, h, w, args.proposals)
                 for h, w, _ in images]

    start = time.perf_counter()
    positives = [generate_positive_chips(b, h, w, cfg).chips
                 for h, w, b in images]
    pos_s = time.perf_counter() - start

    start = time.perf_counter()
    negatives = [generate_negative_chips(p, h, w, cfg, pos)
                 for (h, w, _), p, pos in zip(images, proposals, positives)]
    neg_s = time.perf_counter() - start

    n = len(images)
    result = dict(
        num_images=n, boxes_per_image=float(np.mean(
            [len(b) for _, _, b in images])),
        proposals_per_scale=args.proposals,
        positive_ms_per_image=1e3 * pos_s / n,
        negative_ms_per_image=1e3 * neg_s / n,
        positive_chips_per_image=float(np.mean([len(p) for p in positives])),
        negative_pool_per_image=float(np.mean([len(p) for p in negatives])),
        cpu=cpu_name(), python=platform.python_version(),
        numpy=np.__version__, date=time.strftime('%Y-%m-%d'))
    print('| what | ms / image | chips / image |')
    print('| --- | --- | --- |')
    print(f'| positive chips, 3 scales, {result["boxes_per_image"]:.1f} boxes'
          f' | {result["positive_ms_per_image"]:.3f} | '
          f'{result["positive_chips_per_image"]:.2f} |')
    print(f'| negative chips, {args.proposals} proposals x 3 scales | '
          f'{result["negative_ms_per_image"]:.3f} | '
          f'{result["negative_pool_per_image"]:.2f} |')
    print(f'({n} images, {result["cpu"]}, numpy {np.__version__})')
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
