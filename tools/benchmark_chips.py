# Copyright (c) mmsnip contributors. All rights reserved.
"""Benchmark chip generation: per image (engine) and whole tables (table).

Engine (default): ms per image on synthetic COCO-like boxes, against the
released SNIPER generator's algorithm run on the same images::

    OMP_NUM_THREADS=1 python tools/benchmark_chips.py [--num-images 5000] \\
        [--proposals 300] [--large-images 20] [--seed 0] \\
        [--out work_dirs/benchmark_chips.json]

Images are 640x480-ish with Poisson(7) boxes whose sqrt(area) is
log-normal (median 40 px) clipped to 5-500 px and to the image, aspect
ratios log-normal around 1 (COCO-like); the paper's chip settings (3
scales 512/max(h, w), 1.667, 3; K = 512, d = 32). Positive chips are timed
on every image, one call per image and in batches (the chip table's path);
negative chips with ``--proposals`` random proposals for each of the 3
scales, one call per image and in batches (checked equal); and positive
chips of a few 20000 x 15000 images with 2000 scattered boxes. "original
algorithm" replaces the greedy cover by the released generator's (every
grid candidate materialised, a candidates x boxes inclusion matrix, the
candidate enclosing most uncovered boxes picked until none is left) and
runs every image through the numpy path (array clean-up and validity,
one cover per scale, chip arrays), the form of a numpy generator; mmsnip
keeps an image with a few boxes in plain Python instead. One process,
pure numpy: one core. Prints a Markdown table: mean, median and p99 ms
per image; the batched rows (batches of 1000 and 256 images, fewer when
``--num-images`` is smaller) time whole batches, so they give the mean
only ('-' for median and p99).

Table: a train2017-sized dataset (118,287 images, 7.3 boxes each, about
860k) with a 300-per-scale proposal file, through ``SniperDataset``::

    OMP_NUM_THREADS=1 python tools/benchmark_chips.py --mode table \\
        [--num-images 118287] [--proposals 300] [--workers N] \\
        [--work-dir work_dirs/benchmark_chip_table]

It writes the proposal file (compact format, version 3; size and time),
opens it, verifies its rows (``ProposalFile.verify``, which a cold build
also does first); with ``--pool-scales`` also pools it over the scales
(as ``--mode pool``, one fresh process with the default workers), then
builds the chip table cold (empty cache) and starts warm
(cache present), each in a fresh process, and reports wall time, CPU
seconds (the process and its build workers), the inner dataset's own load
time, and the peak resident memory of the process and of its build
workers. Its "chips" column counts the table's rows: the positive chips
plus, with negatives, every image's whole negative POOL (an epoch draws
a few of them). ``--num-images`` takes a smaller dataset of the same
distribution (profiling).

Datapath: chips per second through the demo configs' ``SniperDataset``
pipeline on generated demo images, decoding per chip against the shared
decode cache and ``SniperSampler(image_window=W)``, for the chips that
DataLoader worker 0 of ``--workers`` loads in an epoch::

    OMP_NUM_THREADS=1 python tools/benchmark_chips.py --mode datapath \\
        [--presets coco aerial] [--chips 240] [--image-window 1 4 8]

It times at most ``--chips`` chips per path, fewer when worker 0's share
of an epoch is smaller (its "chips" column; a line after the table says
so).

Table, merge and pool write their files into a new folder made inside
``--work-dir`` (``tempfile.mkdtemp``) and remove that folder at the end,
also after a failure, unless ``--keep`` (and ``--work-dir`` itself only
when the run made it and it is left empty); nothing else in
``--work-dir`` is read, changed or removed.

Pool: ``tools/misc/convert_proposals.py --pool-scales`` (each image's
proposals of all scales through one NMS, the released code's pooling) of
the table's train2017-sized per-scale proposal file, each conversion in
a fresh process (wall and CPU seconds, peak resident memory of the
process and of its pooling workers), once per ``--pool-workers`` value
(default: 1 and the usable cores); ``--baseline DIR`` first runs the
conversion of the mmsnip package in ``DIR`` (an earlier commit's, e.g.
``git archive de96184 mmsnip | tar -x -C DIR``) on the same file. Every
written file must equal the first one (its ``content_id``)::

    OMP_NUM_THREADS=1 python tools/benchmark_chips.py --mode pool \\
        [--num-images 118287] [--proposals 300] [--pool-workers 1 2] \\
        [--baseline DIR] [--work-dir work_dirs/benchmark_pool]

Merge: the last step of ``tools/mine_proposals.py`` at train2017 size,
shards of 50 images (float32 rows, pickled as the miner writes them)
merged into one compact file shard by shard, in a fresh process (time,
peak resident memory)::

    OMP_NUM_THREADS=1 python tools/benchmark_chips.py --mode merge \\
        [--num-images 118287] [--proposals 300] \\
        [--work-dir work_dirs/benchmark_merge]
"""
import contextlib
import json
import multiprocessing
import os
import os.path as osp
import pickle
import platform
import resource
import shutil
import tempfile
import time
from queue import Empty

import numpy as np

from mmsnip.chips import (ChipConfig, ChipSet, chip_starts,
                          generate_negative_chips, generate_positive_chips,
                          inside_matrix)
from mmsnip.chips.negative import negative_chips_batch
from mmsnip.chips.positive import positive_chips_batch
from mmsnip.utils.cli import ArgumentParser, non_negative_int, positive_int
from mmsnip.utils.memory import peak_rss_mb

# datapath: the demo config of each preset (--presets' choices) and its
# default number of images.
DATAPATH_CONFIGS = {
    'coco': 'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py',
    'aerial': 'configs/aerial/sniper_faster-rcnn_r18-w16_fpn_8e_aerial.py',
}
DATAPATH_IMAGES = {'coco': 48, 'aerial': 8}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mode',
                        choices=['engine', 'table', 'datapath', 'merge',
                                 'pool'],
                        default='engine')
    parser.add_argument('--num-images', type=positive_int, default=None,
                        help='engine: 5000; table and merge: 118287 '
                        '(train2017); datapath: 48 (coco), 8 (aerial)')
    parser.add_argument('--proposals', type=positive_int, default=300,
                        help='proposals per scale per image for negatives')
    parser.add_argument('--large-images', type=non_negative_int, default=20,
                        help='engine: also time this many 20000x15000 '
                        'images with 2000 boxes each (0: skip)')
    parser.add_argument('--no-original', action='store_true',
                        help='engine: skip the original algorithm')
    parser.add_argument('--workers', type=non_negative_int, default=None,
                        help='table: build processes (default: one per '
                        'core; 0: build in the process); datapath: '
                        'DataLoader workers (default 2, at least 1)')
    parser.add_argument('--work-dir', default=None,
                        help='table, merge, pool: a new folder is made '
                        'inside this one (default work_dirs/benchmark_'
                        'chip_table, work_dirs/benchmark_merge or '
                        'work_dirs/benchmark_pool) for the files (at '
                        'train2017 size about 1.1 GB for table, 3.1 GB for '
                        'merge, 2 GB for pool) and removed at the end unless '
                        '--keep, '
                        'with --work-dir itself only if this run made it '
                        'and it is left empty; nothing else in --work-dir '
                        'is touched. datapath: the generated images go to '
                        '<work-dir>/<preset> (default '
                        'work_dirs/benchmark_datapath, kept)')
    parser.add_argument('--keep', action='store_true',
                        help='table, merge, pool: keep the new folder (its '
                        'path is printed)')
    parser.add_argument('--presets', nargs='+', default=['coco', 'aerial'],
                        choices=sorted(DATAPATH_CONFIGS),
                        help='datapath: demo data presets')
    parser.add_argument('--chips', type=positive_int, default=240,
                        help='datapath: chips timed per path and preset '
                        '(at most DataLoader worker 0\'s share of an '
                        'epoch; the output says how many were timed)')
    parser.add_argument('--batch-size', type=positive_int, default=8,
                        help='datapath: chips per batch')
    parser.add_argument('--image-window', type=non_negative_int, nargs='+',
                        default=[1, 4, 8],
                        help='datapath: SniperSampler image_window values '
                        'of the shared path')
    parser.add_argument('--pool-scales', action='store_true',
                        help='table: also build the negatives from the '
                        'proposals pooled over the scales (the released '
                        'code\'s rule, mine_proposals.py --pool-scales)')
    parser.add_argument('--pool-workers', type=positive_int, nargs='+',
                        default=None,
                        help='pool: pooling processes of each conversion '
                        'timed (default: 1 and the usable cores)')
    parser.add_argument('--baseline', default=None, metavar='DIR',
                        help='pool: also time the conversion of the mmsnip '
                        'package in DIR (an earlier commit\'s)')
    parser.add_argument('--seed', type=non_negative_int, default=0)
    parser.add_argument('--out', help='write the results as JSON here')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == 'datapath' and args.workers == 0:
        parser.error('argument --workers: datapath times DataLoader worker '
                     '0\'s share, so it needs at least 1 worker, got 0')
    return args


# -- synthetic data ------------------------------------------------------
SIDES_W = np.array([640, 612, 500, 427])
SIDES_H = np.array([480, 427, 375, 640])


def synthetic_images(num: int, seed: int):
    """Yield ``(h, w, boxes)``: boxes ``(N, 4)`` xyxy, ORIGINAL pixels."""
    rng = np.random.default_rng(seed)
    for _ in range(num):
        w = int(rng.choice(SIDES_W))
        h = int(rng.choice(SIDES_H))
        n = int(rng.poisson(7))
        size = np.clip(np.exp(rng.normal(np.log(40), 1.1, n)), 5, 500)
        aspect = np.exp(rng.normal(0, 0.5, n))
        bw = np.minimum(size * np.sqrt(aspect), w - 1)
        bh = np.minimum(size / np.sqrt(aspect), h - 1)
        x = rng.uniform(0, w - bw)
        y = rng.uniform(0, h - bh)
        yield h, w, np.stack([x, y, x + bw, y + bh], axis=1)


def synthetic_dataset(num: int, seed: int, boxes_per_image: float = 7.3):
    """The same distribution as :func:`synthetic_images`, vectorized for
    train2017 sizes.

    Returns:
        dict: ``heights``, ``widths`` ``(N,)`` int64; ``box_start``
        ``(N + 1,)``; ``boxes`` ``(M, 4)`` float64 xyxy ORIGINAL pixels.
    """
    rng = np.random.default_rng(seed)
    w = rng.choice(SIDES_W, num)
    h = rng.choice(SIDES_H, num)
    count = rng.poisson(boxes_per_image, num)
    start = np.concatenate([[0], np.cumsum(count)])
    img = np.repeat(np.arange(num), count)
    m = len(img)
    size = np.clip(np.exp(rng.normal(np.log(40), 1.1, m)), 5, 500)
    aspect = np.exp(rng.normal(0, 0.5, m))
    bw = np.minimum(size * np.sqrt(aspect), w[img] - 1)
    bh = np.minimum(size / np.sqrt(aspect), h[img] - 1)
    x = rng.uniform(0, 1, m) * (w[img] - bw)
    y = rng.uniform(0, 1, m) * (h[img] - bh)
    return dict(heights=h.astype(np.int64), widths=w.astype(np.int64),
                box_start=start.astype(np.int64),
                boxes=np.stack([x, y, x + bw, y + bh], axis=1))


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


def write_synthetic_proposals(path: str, data: dict, per_scale: int,
                              num_scales: int, seed: int,
                              chunk: int = 4096) -> None:
    """A compact proposal file (version 3) with ``per_scale`` random
    proposals per image and scale (:func:`random_proposals`'
    distribution), generated in chunks straight into float16 boxes and
    float32 scores; image ``i`` is named :func:`synthetic_name` (the
    ``img_path`` of the table's dataset)."""
    from mmsnip.datasets.proposals import write_proposal_arrays
    rng = np.random.default_rng(seed)
    n = len(data['heights'])
    rows = per_scale * num_scales
    boxes = np.empty((n * rows, 4), np.float16)
    scores = np.empty(n * rows, np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        k = (b - a) * rows
        size = np.repeat(np.stack([data['widths'][a:b],
                                   data['heights'][a:b]], 1), rows, axis=0)
        xy = rng.uniform(0, 1, (k, 2)) * size
        wh = np.exp(rng.normal(np.log(60), 0.9, (k, 2)))
        boxes[a * rows:b * rows] = np.clip(np.c_[xy, xy + wh], 0,
                                           np.tile(size, 2))
        scores[a * rows:b * rows] = rng.uniform(0, 1, k)
    offsets = np.arange(n * num_scales + 1, dtype=np.int64) * per_scale
    write_proposal_arrays(path, np.arange(n), offsets, boxes, scores,
                          num_scales,
                          img_names=[synthetic_name(i) for i in range(n)])


def synthetic_name(i: int) -> str:
    """The file name of synthetic image ``i`` (COCO style)."""
    return f'{i:012d}.jpg'


# -- the released generator's algorithm ------------------------------------
def original_greedy_cover(boxes_scaled, canvas_hw, chip_size, chip_stride,
                          min_count=1, off_grid=True):
    """The released SNIPER generator's algorithm, written with numpy: every
    candidate chip of the stride grid (border-anchored last row/column), a
    ``(C, N)`` "box fully inside chip" matrix, then the candidate enclosing
    most uncovered boxes is picked until none (fewer than ``min_count``)
    is left. ``off_grid`` is ignored (the original has no such chips).
    Same return shapes as :func:`~mmsnip.chips.greedy_cover`."""
    h, w = canvas_hw
    sx = chip_starts(w, chip_size, chip_stride)
    sy = chip_starts(h, chip_size, chip_stride)
    gx, gy = np.meshgrid(sx, sy)
    gx, gy = gx.ravel(), gy.ravel()
    cand = np.stack([gx, gy, gx + min(chip_size, w), gy + min(chip_size, h)],
                    axis=1)
    boxes = np.asarray(boxes_scaled, np.float64).reshape(-1, 4)
    inside = inside_matrix(boxes, cand)
    coverable = inside.any(axis=0)
    remaining = coverable.copy()
    counts = inside.sum(axis=1)
    chips = []
    while True:
        best = int(np.argmax(counts))
        if counts[best] < max(min_count, 1):
            break
        newly = inside[best] & remaining
        chips.append(cand[best])
        remaining &= ~newly
        counts = counts - inside[:, newly].sum(axis=1)
    return (np.array(chips, np.float64).reshape(-1, 4),
            coverable & ~remaining, coverable)


# -- reporting -------------------------------------------------------------
def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def load_average() -> str:
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'unknown'


def timed(fn, items):
    """Results of ``fn(*item)`` and per-item seconds, ``(n,)`` float64."""
    results, seconds = [], np.empty(len(items))
    for i, item in enumerate(items):
        start = time.perf_counter()
        results.append(fn(*item))
        seconds[i] = time.perf_counter() - start
    return results, seconds


def row(what: str, seconds: np.ndarray, chips: float) -> dict:
    """A table row from per-image seconds, one call per image."""
    ms = 1e3 * seconds
    return dict(what=what, mean_ms=float(ms.mean()),
                median_ms=float(np.median(ms)),
                p99_ms=float(np.percentile(ms, 99)), chips_per_image=chips)


def batch_row(what: str, batch_seconds, batch_images, chips: float) -> dict:
    """A table row from whole batches: the mean ms per image only
    (``median_ms`` and ``p99_ms`` None), as no image is timed alone."""
    ms = 1e3 * float(np.sum(batch_seconds)) / float(np.sum(batch_images))
    return dict(what=what, mean_ms=ms, median_ms=None, p99_ms=None,
                chips_per_image=chips)


def _ms(value) -> str:
    return '-' if value is None else f'{value:.3f}'


def environment() -> dict:
    return dict(cpu=cpu_name(), cores=os.cpu_count(),
                python=platform.python_version(), numpy=np.__version__,
                date=time.strftime('%Y-%m-%d %H:%M'),
                load_average_before=load_average())


# -- engine ------------------------------------------------------------------
POSITIVE_BATCH = 1000  # images per positive_chips_batch call (engine mode)

def engine(args) -> dict:
    cfg = ChipConfig.paper_coco()
    num = 5000 if args.num_images is None else args.num_images
    images = list(synthetic_images(num, args.seed))
    rng = np.random.default_rng(args.seed + 1)
    proposals = [[random_proposals(rng, h, w, args.proposals)
                  for _ in cfg.scales] for h, w, _ in images]
    env = environment()

    def run_pos(cover=None):
        return timed(
            lambda h, w, b: generate_positive_chips(b, h, w, cfg,
                                                    cover=cover),
            [(h, w, b) for h, w, b in images])

    def run_neg(pos, cover=None):
        return timed(
            lambda h, w, p, c: generate_negative_chips(p, h, w, cfg, c,
                                                       cover=cover),
            [(h, w, p, c) for (h, w, _), p, c in zip(images, proposals,
                                                     pos)])

    pos_results, pos_s = run_pos()
    positives = [r.chips for r in pos_results]
    negatives, neg_s = run_neg(positives)
    # The chip table's path: positive_chips_batch over POSITIVE_BATCH
    # images at a time; per image = the batches' time / their images.
    pos_batch = min(POSITIVE_BATCH, num)
    batch_s, batch_n = [], []
    for a in range(0, num, pos_batch):
        part = images[a:a + pos_batch]
        counts = [len(b) for _, _, b in part]
        start = time.perf_counter()
        positive_chips_batch(
            np.concatenate([b for _, _, b in part]),
            np.concatenate([[0], np.cumsum(counts)]),
            np.array([h for h, _, _ in part], np.float64),
            np.array([w for _, w, _ in part], np.float64), cfg)
        batch_s.append(time.perf_counter() - start)
        batch_n.append(len(part))
    # Negatives the chip table's way: negative_chips_batch over blocks of
    # NEGATIVE_BLOCK images (flat proposal rows, as read from a proposal
    # file); checked equal to the per-image chips.
    from mmsnip.datasets.chip_table import NEGATIVE_BLOCK
    neg_batch_s, neg_batch_n, same = [], [], True
    for a in range(0, num, NEGATIVE_BLOCK):
        part = slice(a, min(a + NEGATIVE_BLOCK, num))
        flat = [p for per in proposals[part] for p in per]
        row_start = np.concatenate([[0], np.cumsum([len(p) for p in flat])])
        flat = np.concatenate(flat)
        pos_part = positives[part]
        pos_set = ChipSet.concat(pos_part)
        pos_start = np.concatenate([[0], np.cumsum([len(c)
                                                    for c in pos_part])])
        hw = np.array([(h, w) for h, w, _ in images[part]], np.float64)
        start = time.perf_counter()
        got, _ = negative_chips_batch(flat, row_start, hw[:, 0], hw[:, 1],
                                      cfg, pos_set, pos_start)
        neg_batch_s.append(time.perf_counter() - start)
        neg_batch_n.append(len(pos_part))
        same &= np.array_equal(
            got.boxes_scaled,
            ChipSet.concat(negatives[part]).boxes_scaled)
    if not same:
        raise RuntimeError('negative_chips_batch differs from '
                           'generate_negative_chips')
    rows = [
        row(f'positive chips, 3 scales, '
            f'{np.mean([len(b) for _, _, b in images]):.1f} boxes', pos_s,
            float(np.mean([len(p) for p in positives]))),
        batch_row(f'positive chips, batches of {pos_batch} images (chip '
                  'table path)', batch_s, batch_n,
                  float(np.mean([len(p) for p in positives]))),
        row(f'negative chips, {args.proposals} proposals x 3 scales', neg_s,
            float(np.mean([len(n) for n in negatives]))),
        batch_row(f'negative chips, batches of {min(NEGATIVE_BLOCK, num)} '
                  'images (chip table path)', neg_batch_s, neg_batch_n,
                  float(np.mean([len(n) for n in negatives]))),
    ]
    result = dict(num_images=num, proposals_per_scale=args.proposals,
                  seed=args.seed, positive_ms_per_image=rows[0]['mean_ms'],
                  positive_batch_ms_per_image=rows[1]['mean_ms'],
                  negative_ms_per_image=rows[2]['mean_ms'],
                  negative_batch_ms_per_image=rows[3]['mean_ms'],
                  positive_chips_per_image=rows[0]['chips_per_image'],
                  negative_pool_per_image=rows[2]['chips_per_image'],
                  uncoverable_per_image=float(np.mean(
                      [r.uncoverable.sum() for r in pos_results])))
    if not args.no_original:
        # Every image on the array path with the released generator's
        # cover (mmsnip's numpy clean-up, validity and chip arrays).
        orig_pos, orig_pos_s = run_pos(original_greedy_cover)
        orig_neg, orig_neg_s = run_neg([r.chips for r in orig_pos],
                                       original_greedy_cover)
        rows += [
            row('positive chips, original algorithm', orig_pos_s,
                float(np.mean([len(r.chips) for r in orig_pos]))),
            row('negative chips, original algorithm', orig_neg_s,
                float(np.mean([len(n) for n in orig_neg]))),
        ]
        result.update(
            positive_speedup_vs_original=float(orig_pos_s.mean() /
                                               pos_s.mean()),
            positive_batch_speedup_vs_original=float(
                orig_pos_s.mean() / (np.sum(batch_s) / num)),
            positive_median_speedup_vs_original=float(
                np.median(orig_pos_s) / np.median(pos_s)),
            negative_speedup_vs_original=float(orig_neg_s.mean() /
                                               neg_s.mean()),
            negative_median_speedup_vs_original=float(
                np.median(orig_neg_s) / np.median(neg_s)))
    large = list(large_images(args.large_images, args.seed))
    if large:
        large_results, large_s = timed(
            lambda h, w, b: generate_positive_chips(b, h, w, cfg), large)
        rows.append(row('positive chips, 20000x15000 image, 2000 boxes',
                        large_s, float(np.mean([len(r.chips)
                                                for r in large_results]))))
    result.update(rows=rows, **env, load_average_after=load_average())
    print('| what | mean ms / image | median | p99 | chips / image |')
    print('| --- | --- | --- | --- | --- |')
    for r in rows:
        print(f'| {r["what"]} | {r["mean_ms"]:.3f} | '
              f'{_ms(r["median_ms"])} | {_ms(r["p99_ms"])} | '
              f'{r["chips_per_image"]:.2f} |')
    if 'positive_speedup_vs_original' in result:
        print('speed-up vs the original algorithm (same run, means; '
              'medians in brackets): positives '
              f'{result["positive_speedup_vs_original"]:.2f}x '
              f'({result["positive_median_speedup_vs_original"]:.2f}x), '
              'positives in batches '
              f'{result["positive_batch_speedup_vs_original"]:.2f}x, '
              f'negatives {result["negative_speedup_vs_original"]:.2f}x '
              f'({result["negative_median_speedup_vs_original"]:.2f}x)')
    print(f'({num} images, {env["cpu"]}, Python {env["python"]}, numpy '
          f'{np.__version__}, {env["date"]}, load average '
          f'{env["load_average_before"]} -> {result["load_average_after"]})')
    return result


# -- table -------------------------------------------------------------------
def _peak_mb(who) -> float:
    """Peak resident memory in MB. For this process:
    :func:`~mmsnip.utils.memory.peak_rss_mb`; for its waited-for
    children: ``ru_maxrss`` (KiB on Linux)."""
    if who == resource.RUSAGE_SELF:
        return peak_rss_mb()
    return resource.getrusage(who).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its children."""
    return sum(resource.getrusage(who).ru_utime +
               resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _table_child(work: str, negatives: bool, workers, queue,
                 proposal_file: str = 'proposals.npz') -> None:
    """In a fresh process: build the inner dataset, then SniperDataset
    (negatives from ``<work>/<proposal_file>``)."""
    from mmsnip.datasets import SniperDataset
    start = time.perf_counter()
    inner = _synthetic_coco_class()(osp.join(work, 'records.npz'))
    inner.full_init()
    inner_s = time.perf_counter() - start
    start = time.perf_counter()
    cpu = _cpu_s()
    ds = SniperDataset(
        dataset=inner, pipeline=[],
        chip_cfg=dict(scales=[dict(max_side=512, valid_range=(120, None)),
                              dict(factor=1.667, valid_range=(32, 150)),
                              dict(factor=3.0, valid_range=(0, 80))]),
        negatives=negatives,
        proposal_file=osp.join(work, proposal_file) if negatives else None,
        cache_dir=osp.join(work, 'cache'), build_workers=workers)
    wrapper_s = time.perf_counter() - start
    cpu = _cpu_s() - cpu
    queue.put(dict(inner_load_s=inner_s, sniper_dataset_s=wrapper_s,
                   sniper_dataset_cpu_s=cpu,
                   chips=len(ds), positive_chips=ds.num_positive,
                   peak_rss_mb=_peak_mb(resource.RUSAGE_SELF),
                   peak_rss_workers_mb=_peak_mb(resource.RUSAGE_CHILDREN)))


def _in_fresh_process(target, *args, **kwargs) -> dict:
    """``target(*args, queue, **kwargs)`` in a spawned process; what it
    put."""
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=args + (queue, ), kwargs=kwargs)
    proc.start()
    while True:  # a child that dies puts nothing: do not wait forever
        try:
            result = queue.get(timeout=1)
            break
        except Empty:
            if not proc.is_alive() and queue.empty():
                proc.join()
                raise RuntimeError(f'benchmark child exited {proc.exitcode} '
                                   'without a result (its error is above)')
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f'benchmark child exited {proc.exitcode}')
    return result


def _synthetic_coco_class():
    from mmdet.datasets import BaseDetDataset

    class SyntheticCoco(BaseDetDataset):
        """The table benchmark's images as MMDetection data infos (what
        ``CocoDataset`` makes of a COCO file, without the JSON)."""
        METAINFO = dict(classes=('object', ))

        def __init__(self, path, **kwargs):
            self.table_file = path
            super().__init__(ann_file='', pipeline=[], **kwargs)

        def load_data_list(self):
            with np.load(self.table_file) as data:
                h, w = data['heights'].tolist(), data['widths'].tolist()
                start = data['box_start'].tolist()
                boxes = data['boxes'].tolist()
            return [dict(img_id=i, img_path=synthetic_name(i), height=h[i],
                         width=w[i], instances=[
                             dict(bbox=b, bbox_label=0, ignore_flag=0)
                             for b in boxes[start[i]:start[i + 1]]])
                    for i in range(len(h))]

    return SyntheticCoco


@contextlib.contextmanager
def _scratch_dir(parent: str, prefix: str, keep: bool):
    """A new folder inside ``parent`` (made with ``tempfile.mkdtemp``, so it
    never holds anything else) for a run's files. Unless ``keep`` it is
    removed at the end, failed runs too, and ``parent`` with it when this
    call made ``parent`` and it is left empty; nothing else is deleted."""
    from mmsnip.utils.fileio import check_output_dir
    made_parent = not osp.isdir(parent)
    check_output_dir(parent, '--work-dir')
    work = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield work
    finally:
        if keep:
            print(f'files kept in {work}')
        else:
            shutil.rmtree(work, ignore_errors=True)
            if made_parent:
                with contextlib.suppress(OSError):
                    os.rmdir(parent)  # only if empty


def table(args) -> dict:
    work_dir = args.work_dir or 'work_dirs/benchmark_chip_table'
    with _scratch_dir(work_dir, 'table-', args.keep) as work:
        return _table(args, work)


def _table(args, work: str) -> dict:
    from mmsnip.datasets.proposals import open_proposals, check_proposals
    num = 118287 if args.num_images is None else args.num_images
    env = environment()
    data = synthetic_dataset(num, args.seed)
    np.savez(osp.join(work, 'records.npz'), **data)
    prop_path = osp.join(work, 'proposals.npz')
    start = time.perf_counter()
    write_synthetic_proposals(prop_path, data, args.proposals, 3,
                              args.seed + 1)
    write_s = time.perf_counter() - start
    del data
    start = time.perf_counter()
    props, scales, _ = open_proposals(prop_path)
    check_proposals(prop_path, props, scales, list(range(num)), 3,
                    img_names=[synthetic_name(i) for i in range(num)])
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    props.verify()  # what a cold chip-table build does first
    verify_s = time.perf_counter() - start
    del props
    result = dict(num_images=num, proposals_per_scale=args.proposals,
                  work_dir=work, proposal_file_bytes=osp.getsize(prop_path),
                  proposal_write_s=write_s, proposal_open_s=open_s,
                  proposal_verify_s=verify_s,
                  workers=args.workers, **env)
    tables = [('positives', False, 'proposals.npz'),
              ('negatives', True, 'proposals.npz')]
    if args.pool_scales:
        pooled = _pool_run(prop_path, osp.join(work, 'pooled.npz'))
        result['pooled_convert_s'] = pooled['wall_s']
        result['pooled_convert_peak_rss_mb'] = pooled['peak_rss_mb']
        result['pooled_convert_workers_rss_mb'] = \
            pooled['peak_rss_workers_mb']
        result['pooled_file_bytes'] = osp.getsize(
            osp.join(work, 'pooled.npz'))
        tables.append(('negatives (pooled)', True, 'pooled.npz'))
    for name, negatives, proposal_file in tables:
        result[name] = {
            when: _in_fresh_process(_table_child, work, negatives,
                                    args.workers,
                                    proposal_file=proposal_file)
            for when in ('cold', 'warm')}
    result['load_average_after'] = load_average()
    with np.load(osp.join(work, 'records.npz')) as data:
        result['boxes'] = int(data['box_start'][-1])
    size = result['proposal_file_bytes']
    per = size / max(1, num * 3 * args.proposals)
    print(f'{num} images, {result["boxes"]} boxes; proposal file '
          f'{args.proposals} x 3 scales: {size / 1e9:.3f} GB '
          f'({size / 2 ** 30:.2f} GiB, {per:.2f} bytes per proposal), '
          f'written in {write_s:.1f} s, opened and checked in '
          f'{open_s:.2f} s, rows verified in {verify_s:.2f} s')
    print('| table | start | inner dataset s | SniperDataset s (CPU s) | '
          'chips (positives + negative pool) | peak RSS MB (process / '
          'build worker) |')
    print('| --- | --- | --- | --- | --- | --- |')
    if args.pool_scales:
        print(f'pooled over the scales (NMS 0.7 per image, '
              'tools/misc/convert_proposals.py --pool-scales) in '
              f'{result["pooled_convert_s"]:.1f} s, peak RSS '
              f'{result["pooled_convert_peak_rss_mb"]:.0f} MB (workers '
              f'{result["pooled_convert_workers_rss_mb"]:.0f} MB): '
              f'{result["pooled_file_bytes"] / 1e9:.3f} GB')
    for name, _, _ in tables:
        for when in ('cold', 'warm'):
            r = result[name][when]
            print(f'| {name} | {when} | {r["inner_load_s"]:.1f} | '
                  f'{r["sniper_dataset_s"]:.1f} '
                  f'({r["sniper_dataset_cpu_s"]:.1f}) | {r["chips"]} | '
                  f'{r["peak_rss_mb"]:.0f} / '
                  f'{r["peak_rss_workers_mb"]:.0f} |')
    print(f'({env["cpu"]}, {env["cores"]} cores, workers '
          f'{args.workers if args.workers is not None else "default"}, '
          f'{env["date"]}, load average {env["load_average_before"]} -> '
          f'{result["load_average_after"]})')
    return result


# -- datapath ----------------------------------------------------------------


def _worker_share(order, batch_size: int, workers: int, limit: int):
    """The items DataLoader worker 0 of ``workers`` runs: batches 0,
    ``workers``, 2 ``workers``, ... of ``order``; the first ``limit``."""
    batches = [order[i:i + batch_size]
               for i in range(0, len(order), batch_size)]
    share = [i for b in batches[::workers] for i in b]
    return share[:limit]


def datapath(args) -> dict:
    from mmengine.config import Config

    from mmsnip.datasets import SniperDataset, SniperSampler
    from mmsnip.utils import register_all_modules
    from mmsnip.utils.demo_data import PRESETS, generate_split
    register_all_modules()
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    result = dict(environment(), mode='datapath',
                  workers=2 if args.workers is None else args.workers,
                  batch_size=args.batch_size,
                  image_window=args.image_window, rows=[])
    workers = result['workers']
    notes = []
    print('| preset | images | path | chips | chips/s per worker | MPix/s | '
          'decodes per chip | images per batch | speed-up |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for preset in args.presets:
        data_root = osp.join(args.work_dir or 'work_dirs/benchmark_datapath',
                             preset)
        num = DATAPATH_IMAGES[preset] if args.num_images is None \
            else args.num_images
        generate_split(data_root, 'train', num, args.seed, PRESETS[preset])
        cfg = Config.fromfile(osp.join(root, DATAPATH_CONFIGS[preset]))
        ds_cfg = cfg.train_dataloader.dataset.to_dict()
        ds_cfg.pop('type')
        ds_cfg['dataset']['data_root'] = data_root + '/'
        ds_cfg['cache_dir'] = ''
        paths = {
            'per-chip decode, shuffled': (0, 0),
            'shared decode, shuffled': (None, 0),
        }
        for window in args.image_window:
            paths[f'shared decode, image_window={window}'] = (None, window)
        runs = {}
        for name, (cache_mb, window) in paths.items():
            ds = SniperDataset(**ds_cfg, decode_cache_mb=cache_mb)
            sampler = SniperSampler(ds, seed=args.seed,
                                    image_window=window)
            order = list(sampler)
            share = _worker_share(order, args.batch_size, workers,
                                  args.chips)
            img = ds.chip_img[order]
            per_batch = np.mean([
                len(np.unique(img[i:i + args.batch_size]))
                for i in range(0, len(img), args.batch_size)])
            runs[name] = dict(ds=ds, share=share, done=0, seconds=0.0,
                              pixels=0.0, per_batch=per_batch)
        block = 16
        while any(r['done'] < len(r['share']) for r in runs.values()):
            for r in runs.values():  # interleaved blocks
                todo = r['share'][r['done']:r['done'] + block]
                start = time.perf_counter()
                for idx in todo:
                    item = r['ds'][idx]
                    r['pixels'] += item['inputs'].shape[1] * \
                        item['inputs'].shape[2]
                r['seconds'] += time.perf_counter() - start
                r['done'] += len(todo)
        base = None
        for name, r in runs.items():
            cache = r['ds'].decode_cache
            decodes = cache.misses if r['ds'].decode_cache_mb else r['done']
            rate = r['done'] / r['seconds']
            base = base or rate
            row_ = dict(preset=preset, images=num, path=name,
                        chips=r['done'], chips_requested=args.chips,
                        chips_per_s=rate,
                        mpix_per_s=r['pixels'] / 1e6 / r['seconds'],
                        decodes_per_chip=decodes / r['done'],
                        images_per_batch=float(r['per_batch']),
                        speedup=rate / base)
            result['rows'].append(row_)
            print(f'| {preset} | {num} | {name} | {r["done"]} | '
                  f'{rate:.1f} | {row_["mpix_per_s"]:.2f} | '
                  f'{row_["decodes_per_chip"]:.3f} | '
                  f'{row_["images_per_batch"]:.2f} | '
                  f'{row_["speedup"]:.1f}x |', flush=True)
        short = {r['done'] for r in runs.values() if r['done'] < args.chips}
        if short:
            notes.append(
                f'{preset}: timed {"/".join(map(str, sorted(short)))} '
                f'chips per path, not --chips {args.chips}: worker 0 of '
                f'{workers} gets only that many of an epoch '
                f'(batches of {args.batch_size})')
    result['load_average_after'] = load_average()
    print(''.join(f'\n{note}' for note in notes))
    print(f'{result["cpu"]}, {result["cores"]} cores; load average '
          f'before {result["load_average_before"]}, after '
          f'{result["load_average_after"]}; worker 0 of {workers}, batch '
          f'{args.batch_size}')
    return result


# -- pool ------------------------------------------------------------------
# A conversion --pool-scales in a fresh interpreter: argv SRC DST WORKERS
# ('default': the function's default; an older convert_proposals has no
# workers argument); prints a JSON line.
POOL_CHILD = r'''
import json, resource, sys, time
from mmsnip.datasets.proposals import ProposalFile, convert_proposals
src, dst, workers = sys.argv[1:4]
kwargs = {} if workers == 'default' else dict(workers=int(workers))
usage = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
convert_proposals(src, dst, pool_iou=0.7, **kwargs)
wall = time.perf_counter() - start
done = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
with open('/proc/self/status') as f:  # VmHWM: this process, kB
    peak = [int(line.split()[1]) for line in f if line.startswith('VmHWM')]
print(json.dumps(dict(
    wall_s=wall, peak_rss_mb=peak[0] / 1024,
    cpu_s=done.ru_utime + done.ru_stime - usage.ru_utime - usage.ru_stime
    + kids.ru_utime + kids.ru_stime,
    peak_rss_workers_mb=kids.ru_maxrss / 1024,
    content_id=ProposalFile(dst).content_id,
    package=sys.modules['mmsnip'].__file__)))
'''


def _pool_run(src: str, dst: str, workers=None,
              package_dir: str = None) -> dict:
    """``convert_proposals(src, dst, pool_iou=0.7, workers=workers)`` in a
    fresh process, with the mmsnip package in ``package_dir`` (default:
    this one's): ``wall_s``, ``cpu_s`` (the call, with its workers),
    ``peak_rss_mb`` (VmHWM, imports included), ``peak_rss_workers_mb``
    (the largest worker), ``content_id`` of the written file, ``package``
    (the ``__init__.py`` of the mmsnip it ran)."""
    import subprocess
    import sys

    import mmsnip
    package_dir = package_dir or osp.dirname(osp.dirname(mmsnip.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [osp.abspath(package_dir)] + [
            p for p in [os.environ.get('PYTHONPATH')] if p]))
    # run in dst's folder: "python -c" puts the working folder first on
    # sys.path, and this one may hold another mmsnip
    proc = subprocess.run(
        [sys.executable, '-c', POOL_CHILD, osp.abspath(src),
         osp.abspath(dst), 'default' if workers is None else str(workers)],
        env=env, capture_output=True, text=True,
        cwd=osp.dirname(osp.abspath(dst)))
    if proc.returncode:
        raise RuntimeError(f'pooling child exited {proc.returncode}: '
                           f'{proc.stderr.strip()[-2000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pool(args) -> dict:
    """``convert_proposals(..., pool_iou=0.7)`` of the table's train2017-
    sized proposal file, per ``--pool-workers`` and ``--baseline``."""
    work_dir = args.work_dir or 'work_dirs/benchmark_pool'
    with _scratch_dir(work_dir, 'pool-', args.keep) as work:
        return _pool(args, work)


def _pool(args, work: str) -> dict:
    from mmsnip.utils.processes import usable_cores
    num = 118287 if args.num_images is None else args.num_images
    env = environment()
    data = synthetic_dataset(num, args.seed)
    src = osp.join(work, 'proposals.npz')
    write_synthetic_proposals(src, data, args.proposals, 3, args.seed + 1)
    del data
    runs = [('baseline', None, args.baseline)] if args.baseline else []
    for workers in args.pool_workers or sorted({1, usable_cores()}):
        runs.append((f'workers {workers}', workers, None))
    result = dict(num_images=num, proposals_per_scale=args.proposals,
                  work_dir=work, proposal_file_bytes=osp.getsize(src),
                  baseline=args.baseline, runs={}, **env)
    for name, workers, package_dir in runs:
        dst = osp.join(work, 'pooled.npz')
        result['runs'][name] = _pool_run(src, dst, workers, package_dir)
        result['pooled_file_bytes'] = osp.getsize(dst)
        os.remove(dst)
    ids = {r['content_id'] for r in result['runs'].values()}
    result['same_file'] = len(ids) == 1
    result['load_average_after'] = load_average()
    print(f'{num} images x 3 scales x {args.proposals} proposals '
          f'({result["proposal_file_bytes"] / 1e9:.3f} GB) pooled at IoU '
          f'0.7 into {result["pooled_file_bytes"] / 1e9:.3f} GB')
    print('| conversion | wall s | CPU s | peak RSS MB (process / worker) |')
    print('| --- | --- | --- | --- |')
    for name, r in result['runs'].items():
        print(f'| {name} | {r["wall_s"]:.1f} | {r["cpu_s"]:.1f} | '
              f'{r["peak_rss_mb"]:.0f} / {r["peak_rss_workers_mb"]:.0f} |')
    print(f'({env["cpu"]}, {env["cores"]} cores, {env["date"]}, load '
          f'average {env["load_average_before"]} -> '
          f'{result["load_average_after"]}); the same file every run: '
          f'{"yes" if result["same_file"] else "NO"}')
    if not result['same_file']:
        raise RuntimeError('the conversions wrote different files: '
                           f'{sorted(ids)}')
    return result


# -- merge -----------------------------------------------------------------
MERGE_SHARD = 50  # images per shard, as tools/mine_proposals.py writes


def _merge_child(work: str, num_images: int, num_scales: int,
                 queue) -> None:
    """In a fresh process: mining's final merge (``merge_shards``)."""
    from mmsnip.apis.mining import merge_shards
    start = time.perf_counter()
    merge_shards(work, osp.join(work, 'proposals.npz'),
                 list(range(num_images)), num_scales)
    queue.put(dict(merge_s=time.perf_counter() - start,
                   peak_rss_mb=_peak_mb(resource.RUSAGE_SELF)))


def merge(args) -> dict:
    """Mining's final merge at train2017 size: shards of 50 images (float32
    rows, as the miner writes them) into one compact file."""
    work_dir = args.work_dir or 'work_dirs/benchmark_merge'
    with _scratch_dir(work_dir, 'merge-', args.keep) as work:
        return _merge(args, work)


def _merge(args, work: str) -> dict:
    num = 118287 if args.num_images is None else args.num_images
    env = environment()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    shard_bytes = 0
    for first in range(0, num, MERGE_SHARD):
        shard = {i: [random_proposals(rng, 480, 640, args.proposals).astype(
            np.float32) for _ in range(3)]
            for i in range(first, min(first + MERGE_SHARD, num))}
        path = osp.join(work, f'rank0-{first:08d}.pkl')
        with open(path, 'wb') as f:
            pickle.dump(shard, f, protocol=pickle.HIGHEST_PROTOCOL)
        shard_bytes += osp.getsize(path)
    shards_s = time.perf_counter() - start
    result = dict(num_images=num, proposals_per_scale=args.proposals,
                  work_dir=work, shard_bytes=shard_bytes,
                  shards_write_s=shards_s, **env,
                  **_in_fresh_process(_merge_child, work, num, 3))
    result['file_bytes'] = osp.getsize(osp.join(work, 'proposals.npz'))
    result['load_average_after'] = load_average()
    print(f'{num} images x 3 scales x {args.proposals} proposals: shards '
          f'{shard_bytes / 1e9:.2f} GB; merged into '
          f'{result["file_bytes"] / 1e9:.3f} GB in {result["merge_s"]:.1f} '
          f's, peak RSS {result["peak_rss_mb"]:.0f} MB ({env["cpu"]}, '
          f'{env["date"]}, load average {env["load_average_before"]} -> '
          f'{result["load_average_after"]})')
    return result


def main(argv=None):
    args = parse_args(argv)
    modes = dict(engine=engine, table=table, datapath=datapath, merge=merge,
                 pool=pool)
    result = modes[args.mode](args)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        from mmsnip.utils.fileio import atomic_write_text
        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == '__main__':
    from mmsnip.utils.preflight import run_cli
    run_cli(main)
