# Copyright (c) mmsnip contributors. All rights reserved.
"""Draw the figures of docs/chips.md from the chip engine itself.

    python tools/misc/draw_chips_figures.py [--out-dir docs/img]

Every picture is computed by ``mmsnip.chips`` on small hand-made inputs
(fixed, no randomness beyond a seeded generator), so the figures show what
the code does, not what it should do.
"""
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mmsnip.chips import (BACKGROUND, FOCUS, IGNORE, ChipConfig,  # noqa: E402
                          ScaleSpec, box_sizes, chip_starts, focus_chips,
                          focus_pixel_labels, focus_stack_keep_mask,
                          generate_negative_chips, generate_positive_chips,
                          in_range)
from mmsnip.utils.cli import ArgumentParser, number  # noqa: E402
from mmsnip.utils.fileio import check_output_dir, save_figure  # noqa: E402
from mmsnip.utils.preflight import run_cli  # noqa: E402

VALID, INVALID, CROWD = '#2ca02c', '#9a9a9a', '#d62728'
POSITIVE, NEGATIVE = '#1f77b4', '#ff7f0e'


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='docs/img')
    parser.add_argument('--dpi', type=number(int, 10, 1200), default=80)
    return parser.parse_args(argv)


def _save(fig, out: str) -> None:
    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)


def draw_boxes(ax, boxes, color, lw=1.5, ls='-', fill=False, alpha=1.0,
               **kw):
    for x1, y1, x2, y2 in np.asarray(boxes, float).reshape(-1, 4):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=fill,
                               edgecolor=color, facecolor=color if fill
                               else 'none', lw=lw, ls=ls, alpha=alpha, **kw))


def canvas_axes(ax, w, h, title):
    ax.set_xlim(-10, w + 10)
    ax.set_ylim(h + 10, -10)
    ax.set_aspect('equal')
    ax.add_patch(Rectangle((0, 0), w, h, fill=True, facecolor='#f4f4f4',
                           edgecolor='black', lw=1))
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)


def fig_grid(out):
    """Algorithm 1 on a 1000 x 600 canvas (factor 1, K = 512, d = 32)."""
    cfg = ChipConfig(scales=(ScaleSpec(factor=1.0),))
    boxes = np.array([[10, 10, 60, 60], [400, 300, 450, 350],
                      [900, 500, 950, 550], [180, 420, 700, 560]], float)
    res = generate_positive_chips(boxes, 600, 1000, cfg)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax = axes[0]
    canvas_axes(ax, 1000, 600, 'candidate chip origins: stride d = 32, plus '
                'one anchored at the border')
    sx, sy = chip_starts(1000, 512, 32), chip_starts(600, 512, 32)
    gx, gy = np.meshgrid(sx, sy)
    ax.plot(gx.ravel(), gy.ravel(), '.', color=POSITIVE, ms=3)
    draw_boxes(ax, [[sx[0], sy[0], sx[0] + 512, sy[0] + 512],
                    [sx[-1], sy[-1], sx[-1] + 512, sy[-1] + 512]],
               POSITIVE, ls='--', lw=1)
    ax = axes[1]
    canvas_axes(ax, 1000, 600, 'greedy cover: chips (blue) fully enclose '
                'every box that fits')
    draw_boxes(ax, res.chips.boxes_scaled, POSITIVE, lw=2)
    for i, box in enumerate(boxes):
        big = res.uncoverable[0, i]
        draw_boxes(ax, box, CROWD if big else VALID, lw=2)
        if big:
            ax.text(box[0], box[3] + 30, 'wider than K: uncoverable, seen '
                    'cropped', color=CROWD, fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def demo_image():
    """A 640 x 480 image with objects from 12 to 260 px."""
    boxes = np.array([
        [30, 40, 42, 52], [60, 60, 80, 76], [90, 30, 150, 80],
        [400, 60, 430, 95], [420, 300, 460, 330], [450, 340, 470, 352],
        [200, 180, 300, 290], [330, 150, 590, 420], [20, 300, 160, 460],
        [560, 30, 575, 48],
    ], float)
    return 480, 640, boxes


def fig_scales(out):
    """Positive chips at the paper's three COCO scales."""
    h, w, boxes = demo_image()
    cfg = ChipConfig.paper_coco()
    res = generate_positive_chips(boxes, h, w, cfg)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2),
                             gridspec_kw=dict(width_ratios=[512, 1067,
                                                            1920]))
    sizes = box_sizes(boxes)
    for s, (spec, ax) in enumerate(zip(cfg.scales, axes)):
        f = spec.factor_for(h, w)
        ch, cw = spec.scaled_shape(h, w)
        lo, hi = spec.valid_range
        canvas_axes(ax, cw, ch, f'scale {s}: x{f:.3g}, valid ({lo:g}, '
                    f'{hi:g})')
        valid = in_range(sizes, spec.valid_range)
        draw_boxes(ax, boxes[~valid] * f, INVALID, lw=1)
        draw_boxes(ax, boxes[valid] * f, VALID, lw=2)
        chips = res.chips.boxes_scaled[res.chips.scale_index == s]
        draw_boxes(ax, chips, POSITIVE, lw=2.5)
        draw_boxes(ax, chips, POSITIVE, fill=True, alpha=0.08)
    fig.tight_layout()
    _save(fig, out)


def fig_negative(out):
    """Negative chips from proposals not covered by positive chips."""
    h, w, boxes = demo_image()
    cfg = ChipConfig(scales=(ScaleSpec(factor=1.667,
                                       valid_range=(0, None)),),
                     negative=dict(min_proposals=8))
    rng = np.random.default_rng(0)
    centers = np.concatenate([
        rng.normal([120, 380], 30, (30, 2)),   # near an object
        rng.normal([520, 420], 25, (25, 2)),   # background clutter
        rng.normal([250, 60], 20, (12, 2)),    # another cluster
        rng.uniform([0, 0], [w, h], (25, 2)),  # scattered
    ])
    half = rng.uniform(8, 30, (len(centers), 2))
    props = np.clip(np.c_[centers - half, centers + half], 0,
                    [w, h, w, h])
    pos = generate_positive_chips(boxes, h, w, cfg).chips
    neg = generate_negative_chips(props, h, w, cfg, pos)
    f = cfg.scales[0].factor_for(h, w)
    ch, cw = cfg.scales[0].scaled_shape(h, w)
    fig, ax = plt.subplots(figsize=(9, 5.2))
    canvas_axes(ax, cw, ch, 'x1.667: positive chips (blue), proposal '
                'centres (red),\nnegative chips with >= M = 8 uncovered '
                'proposals (orange)')
    draw_boxes(ax, boxes * f, VALID, lw=1.5)
    draw_boxes(ax, pos.boxes_scaled, POSITIVE, lw=2.5)
    draw_boxes(ax, neg.boxes_scaled, NEGATIVE, lw=2.5, ls='--')
    c = (props[:, :2] + props[:, 2:]) / 2 * f
    ax.plot(c[:, 0], c[:, 1], 'o', color=CROWD, ms=3)
    fig.tight_layout()
    _save(fig, out)


def fig_focus_labels(out):
    """FocusPixel labels of a 256 x 256 chip, stride 16."""
    boxes = np.array([[20, 20, 23, 23],      # 3 px: ignore (< a)
                      [60, 30, 90, 55],      # 27 px: focus
                      [150, 20, 220, 90],    # 70 px: ignore (b..c)
                      [20, 120, 130, 230],   # 110 px: background (>= c)
                      [100, 100, 140, 140],  # 40 px: focus, wins
                      [170, 170, 250, 250]], float)  # 80 px: ignore
    labels = focus_pixel_labels(boxes, (256, 256), stride=16)
    colors = {FOCUS: '#2ca02c', IGNORE: '#bbbbbb', BACKGROUND: '#ffffff'}
    rgb = np.zeros(labels.shape + (3,))
    for value, color in colors.items():
        rgb[labels == value] = matplotlib.colors.to_rgb(color)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.imshow(rgb, extent=(0, 256, 256, 0), interpolation='nearest')
    for k in range(0, 257, 16):
        ax.axhline(k, color='#dddddd', lw=0.5)
        ax.axvline(k, color='#dddddd', lw=0.5)
    for box, size in zip(boxes, box_sizes(boxes)):
        draw_boxes(ax, box, 'black', lw=1.5)
        ax.text(box[0], box[1] - 2, f'{size:.0f}', fontsize=8)
    ax.set_title('FocusPixels (s = 16; a, b, c = 5, 64, 90): green 1, '
                 'grey -1, white 0', fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def fig_focus_chips(out):
    """Algorithm 2 step by step on a hand-made 30 x 40 probability map."""
    prob = np.zeros((30, 40), np.float32)
    prob[4:6, 5:8] = 0.8
    prob[6, 10] = 0.7      # joins the first blob after dilation
    prob[20:23, 30:33] = 0.9
    prob[25, 2] = 0.6
    prob[24, 6] = 0.4      # below t
    stride, t, d, k = 16, 0.5, 3, 128
    canvas = (30 * stride, 40 * stride)
    chips, _ = focus_chips(prob, t, d, k, stride, canvas)
    import cv2
    binary = (prob > t).astype(np.uint8)
    dilated = cv2.dilate(binary, np.ones((d, d), np.uint8))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ext = (0, canvas[1], canvas[0], 0)
    axes[0].imshow(prob, cmap='viridis', extent=ext, vmin=0, vmax=1)
    axes[0].set_title('FocusPixel probability (stride 16)', fontsize=10)
    axes[1].imshow(binary + dilated, cmap='Greys', extent=ext, vmin=0,
                   vmax=2)
    axes[1].set_title(f'> t = {t} (black), dilated {d} x {d} (grey)',
                      fontsize=10)
    axes[2].imshow(dilated, cmap='Greys', extent=ext, vmin=0, vmax=3)
    draw_boxes(axes[2], chips, POSITIVE, lw=2)
    axes[2].set_title(f'FocusChips: components grown to k = {k}, merged',
                      fontsize=10)
    for ax in axes:
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    _save(fig, out)


def fig_stacking(out):
    """Focus-stacking pruning for a chip on the image's left border."""
    img_hw = (400, 600)
    chip = np.array([0, 100, 250, 300], float)
    dets = np.array([
        [0, 150, 40, 190],      # touches the image border only: kept
        [80, 140, 130, 200],    # inside: kept
        [200, 220, 250, 280],   # touches the inner right side: dropped
        [60, 100, 110, 130],    # touches the inner top side: dropped
        [0, 250, 60, 300],      # image border + inner bottom: dropped
        [150, 160, 153, 163],   # 3 px, outside the valid range: dropped
    ], float)
    keep = focus_stack_keep_mask(dets, chip, img_hw, (5, 200))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    canvas_axes(ax, img_hw[1], img_hw[0], 'focus stacking: kept (green), '
                'pruned (red); chip (blue) shares the left image border')
    draw_boxes(ax, chip, POSITIVE, lw=2.5)
    for det, k in zip(dets, keep):
        draw_boxes(ax, det, VALID if k else CROWD, lw=2)
    fig.tight_layout()
    _save(fig, out)


def main():
    args = parse_args()
    check_output_dir(args.out_dir)
    plt.rcParams['savefig.dpi'] = args.dpi
    for name, fn in (('grid', fig_grid), ('scales', fig_scales),
                     ('negative', fig_negative),
                     ('focus_labels', fig_focus_labels),
                     ('focus_chips', fig_focus_chips),
                     ('stacking', fig_stacking)):
        path = osp.join(args.out_dir, f'chips_{name}.png')
        fn(path)
        print(path)


if __name__ == '__main__':
    run_cli(main)
