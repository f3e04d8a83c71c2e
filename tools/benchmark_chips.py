# Copyright (c) mmsnip contributors. All rights reserved.
"""Benchmark chip generation (ms per image) on synthetic COCO-like boxes.

    OMP_NUM_THREADS=1 python tools/benchmark_chips.py [--num-images 5000] \
        [--proposals 1000] [--large-images 20] [--seed 0] \
        [--out work_dirs/benchmark_chips.json]

Images are 640x480-ish with Poisson(7) boxes whose sqrt(area) is
log-normal (median 40 px) clipped to 5-500 px and to the image, aspect
ratios log-normal around 1 (COCO-like); the paper's chip settings (3
scales 512/max(h, w), 1.667, 3; K = 512, d = 32). Positive chips are timed
on every image; negative chips with ``--proposals`` random proposals for
each of the 3 scales; and positive chips of a few 20000 x 15000 images with
2000 scattered boxes. One process, pure numpy (no BLAS): one core. Prints a
Markdown table (mean, median and p99 ms per image) and writes JSON.
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
    parser.add_argument('--large-images', type=int, default=20,
                        help='also time this many 20000x15000 images with '
                        '2000 boxes each (0: skip)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args()


def synthetic_images(num: int, seed: int):
    """Yield ``(h, w, boxes)``: boxes ``(N, 4)`` xyxy, ORIGINAL pixels."""
    rng = np.random.default_rng(seed)
    for _ in range(num):
        w = int(rng.choice([640, 612, 500, 427]))
        h = int(rng.choice([480, 427, 375, 640]))
        n = int(rng.poisson(7))
        size = np.clip(np.exp(rng.normal(np.log(40), 1.1, n)), 5, 500)
        aspect = np.exp(rng.normal(0, 0.5, n))
        bw = np.minimum(size * np.sqrt(aspect), w - 1)
        bh = np.minimum(size / np.sqrt(aspect), h - 1)
        x = rng.uniform(0, w - bw)
        y = rng.uniform(0, h - bh)
        yield h, w, np.stack([x, y, x + bw, y + bh], axis=1)


def large_images(num: int, seed: int):
    """Yield 20000 x 15000 images with 2000 scattered 5-60 px boxes (an
    aerial-like case: a 60000 x 45000 canvas at factor 3)."""
    rng = np.random.default_rng(seed)
    for _ in range(num):
        xy = rng.uniform(0, [19900, 14900], (2000, 2))
        yield 15000, 20000, np.c_[xy, xy + rng.uniform(5, 60, (2000, 2))]


def random_proposals(rng, h: int, w: int, num: int) -> np.ndarray:
    """``(num, 5)`` ``[x1, y1, x2, y2, score]``, ORIGINAL pixels."""
    xy = rng.uniform(0, 1, (num, 2)) * [w, h]
    wh = np.exp(rng.normal(np.log(60), 0.9, (num, 2)))
    boxes = np.clip(np.c_[xy, xy + wh], 0, [w, h, w, h])
    return np.c_[boxes, rng.uniform(0, 1, num)]


def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def timed(fn, items):
    """Results of ``fn(*item)`` and per-item seconds, ``(n,)`` float64."""
    results, seconds = [], np.empty(len(items))
    for i, item in enumerate(items):
        start = time.perf_counter()
        results.append(fn(*item))
        seconds[i] = time.perf_counter() - start
    return results, seconds


def row(what: str, seconds: np.ndarray, chips: float) -> dict:
    ms = 1e3 * seconds
    return dict(what=what, mean_ms=float(ms.mean()),
                median_ms=float(np.median(ms)),
                p99_ms=float(np.percentile(ms, 99)), chips_per_image=chips)


def main():
    args = parse_args()
    cfg = ChipConfig.paper_coco()
    images = list(synthetic_images(args.num_images, args.seed))
    rng = np.random.default_rng(args.seed + 1)
    proposals = [[random_proposals(rng, h, w, args.proposals)
                  for _ in cfg.scales] for h, w, _ in images]

    pos_results, pos_s = timed(
        lambda h, w, b: generate_positive_chips(b, h, w, cfg),
        [(h, w, b) for h, w, b in images])
    positives = [r.chips for r in pos_results]
    negatives, neg_s = timed(
        lambda h, w, p, pos: generate_negative_chips(p, h, w, cfg, pos),
        [(h, w, p, pos)
         for (h, w, _), p, pos in zip(images, proposals, positives)])

    large = list(large_images(args.large_images, args.seed))
    large_results, large_s = timed(
        lambda h, w, b: generate_positive_chips(b, h, w, cfg), large)

    boxes = float(np.mean([len(b) for _, _, b in images]))
    rows = [
        row(f'positive chips, 3 scales, {boxes:.1f} boxes', pos_s,
            float(np.mean([len(p) for p in positives]))),
        row(f'negative chips, {args.proposals} proposals x 3 scales', neg_s,
            float(np.mean([len(n) for n in negatives]))),
    ]
    if large:
        rows.append(row('positive chips, 20000x15000 image, 2000 boxes',
                        large_s, float(np.mean([len(r.chips)
                                                for r in large_results]))))
    result = dict(
        num_images=len(images), boxes_per_image=boxes,
        proposals_per_scale=args.proposals, seed=args.seed,
        positive_ms_per_image=rows[0]['mean_ms'],
        negative_ms_per_image=rows[1]['mean_ms'],
        positive_chips_per_image=rows[0]['chips_per_image'],
        negative_pool_per_image=rows[1]['chips_per_image'], rows=rows,
        uncoverable_per_image=float(np.mean(
            [r.uncoverable.sum() for r in pos_results])),
        cpu=cpu_name(), python=platform.python_version(),
        numpy=np.__version__, date=time.strftime('%Y-%m-%d'))
    print('| what | mean ms / image | median | p99 | chips / image |')
    print('| --- | --- | --- | --- | --- |')
    for r in rows:
        print(f'| {r["what"]} | {r["mean_ms"]:.3f} | {r["median_ms"]:.3f} | '
              f'{r["p99_ms"]:.3f} | {r["chips_per_image"]:.2f} |')
    print(f'({len(images)} images, {result["cpu"]}, Python '
          f'{result["python"]}, numpy {np.__version__}, {result["date"]})')
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
