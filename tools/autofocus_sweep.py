# Copyright (c) mmsnip contributors. All rights reserved.
"""Sweep AutoFocus's (t, d, k) on a val subset: AP against pixels.

    python tools/autofocus_sweep.py CONFIG CKPT --out-dir sweep/ \
        [--thresholds 0.1 0.3 0.5] [--dilations 3] [--min-sizes 64 128] \
        [--transition 0] [--num-images 100]

Each setting (t, d, k) is applied to one transition of the cascade
(``--transition i``: the chips scale ``i`` hands to scale ``i + 1``; the
others keep the config's values), as the paper tunes the finest transition
first (Sec. 4.4.5). Also runs the full pyramid (every pixel selected) and
the oracle FocusChips from ground truth (the upper bound) with each
(d, k). Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` (AP vs
average pixels per image).
"""
import copy
import itertools
import os.path as osp

from mmsnip.apis import evaluate_cascade, load_autofocus
from mmsnip.chips import EVERY_PIXEL
from mmsnip.utils import register_all_modules
from mmsnip.utils.cli import (ArgumentParser, non_negative_int, positive_float,
                              positive_int, unit_interval)
from mmsnip.utils.fileio import (check_output_dir, save_figure, write_json,
                                 write_text)
from mmsnip.utils.preflight import (UserInputError, check_data_paths,
                                    load_config, run_cli)


def parse_args():
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--thresholds', type=unit_interval, nargs='+',
                        default=[0.1, 0.3, 0.5])
    parser.add_argument('--dilations', type=positive_int, nargs='+',
                        default=[3])
    parser.add_argument('--min-sizes', type=positive_float, nargs='+',
                        default=[64, 128])
    parser.add_argument('--transition', type=non_negative_int, default=0,
                        help='which scale hands on chips (0: the coarsest)')
    parser.add_argument('--num-images', type=positive_int, default=100)
    return parser.parse_args()


def settings(base_scales, transition, t, d, k):
    scales = copy.deepcopy(base_scales)
    scales[transition].update(threshold=t, dilation=d, min_size=k)
    return scales


def main():
    args = parse_args()
    register_all_modules()
    cfg = load_config(args.config)
    if cfg.get('tta_model', {}).get('type') != 'AutoFocusTTAModel':
        raise UserInputError(f'config "{args.config}" has no AutoFocusTTAModel'
                             ' tta_model')
    if not osp.isfile(args.checkpoint):
        raise UserInputError(f'checkpoint "{args.checkpoint}" does not exist')
    base = [dict(s) for s in cfg.tta_model.scales]
    if not 0 <= args.transition < len(base) - 1:
        raise UserInputError(f'--transition must be in [0, {len(base) - 2}]')
    check_data_paths(cfg, ['test_dataloader'])
    check_output_dir(args.out_dir)
    model = load_autofocus(cfg, args.checkpoint)
    rows = []

    def run(name, scales, oracle=False, **params):
        metrics = evaluate_cascade(model, cfg, scales, args.num_images,
                                   oracle=oracle)
        rows.append(dict(name=name, **params, **metrics))
        print(f'{name} {params}: AP {100 * metrics["AP"]:.1f} AP_s '
              f'{100 * metrics["AP_s"]:.1f} pixels '
              f'{metrics["pixels"] / 1e6:.3f} M img/s '
              f'{metrics["img_per_s"]:.2f}', flush=True)

    tr = args.transition
    run('full pyramid', [dict(s, **EVERY_PIXEL) for s in base])
    for t, d, k in itertools.product(args.thresholds, args.dilations,
                                     args.min_sizes):
        run('autofocus', settings(base, tr, t, d, k), t=t, d=d, k=k)
    for d, k in itertools.product(args.dilations, args.min_sizes):
        run('oracle', settings(base, tr, 0.5, d, k), oracle=True, d=d, k=k)

    write_json(osp.join(args.out_dir, 'sweep.json'),
               dict(config=args.config, checkpoint=args.checkpoint,
                    transition=tr, num_images=args.num_images, rows=rows),
               indent=2)
    lines = ['| setting | t | d | k | AP | AP_small | pixels/img (M) | '
             'img/s |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in rows:
        lines.append(
            f'| {r["name"]} | {r.get("t", "-")} | {r.get("d", "-")} | '
            f'{r.get("k", "-")} | {100 * r["AP"]:.1f} | '
            f'{100 * r["AP_s"]:.1f} | {r["pixels"] / 1e6:.3f} | '
            f'{r["img_per_s"]:.2f} |')
    write_text(osp.join(args.out_dir, 'sweep.md'), '\n'.join(lines) + '\n')
    print('\n'.join(lines))

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, marker in (('autofocus', 'o'), ('oracle', '^'),
                         ('full pyramid', 's')):
        sel = [r for r in rows if r['name'] == name]
        ax.scatter([r['pixels'] / 1e6 for r in sel],
                   [100 * r['AP'] for r in sel], marker=marker, label=name)
    ax.set_xlabel('pixels processed per image (M)')
    ax.set_ylabel('COCO AP')
    ax.set_title(f'AutoFocus sweep, transition {tr}')
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, osp.join(args.out_dir, 'sweep.png'), dpi=100)
    finally:
        plt.close(fig)


if __name__ == '__main__':
    run_cli(main)
