# Copyright (c) mmsnip contributors. All rights reserved.
"""Sweep AutoFocus's (t, d, k) on a val subset: AP against pixels.

    python tools/autofocus_sweep.py CONFIG CKPT --out-dir sweep/ \
        [--thresholds 0.1 0.3 0.5] [--dilations 3] [--min-sizes 64 128] \
        [--transition 0] [--num-images 100]

Calibration (``--target-ap-drop X`` or ``--target-pixels P``): picks every
transition's (t, d, k) for a target, greedily from the finest transition
to the coarsest (:func:`mmsnip.chips.calibrate_greedy`), and writes
``calibration.json`` and the config snippet ``calibration.py``::

    python tools/autofocus_sweep.py CONFIG CKPT --out-dir calib/ \
        --target-ap-drop 1.0 [--transitions 1 0] [--passes 2] \
        [--thresholds ...] [--dilations ...] [--min-sizes ...] \
        [--num-images 100]

Each setting (t, d, k) is applied to one transition of the cascade
(``--transition i``: the chips scale ``i`` hands to scale ``i + 1``; the
others keep the config's values), as the paper tunes the finest transition
first (Sec. 4.4.5). Also runs the full pyramid (every pixel selected) and
the oracle FocusChips from ground truth (the upper bound) with each
(d, k). Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` (AP vs
average pixels per image).

Both modes evaluate the config's own ``tta_model`` (its ``max_chips``,
``tta_cfg``, RPN budget...) with only the scales' (t, d, k) changed, as
``tools/test.py --tta`` runs it, on the config's test split
(``--cfg-options`` can point it to a validation split).
"""
import copy
import itertools
import os.path as osp

from mmengine.config import DictAction

from mmsnip.apis import evaluate_cascade, load_autofocus
from mmsnip.chips import (CalibrationError, Reference, Target,
                          apply_setting, calibrate_greedy, config_snippet,
                          format_focus_recall, format_setting,
                          full_pyramid_scales, setting_of)
from mmsnip.utils import register_all_modules
from mmsnip.utils.cli import (ArgumentParser, non_negative_float,
                              non_negative_int, positive_float, positive_int,
                              unit_interval)
from mmsnip.utils.config_tree import type_in
from mmsnip.utils.fileio import (check_input_file, check_output_dir,
                                 save_figure, write_json, write_text)
from mmsnip.utils.preflight import (UserInputError, check_data_paths,
                                    load_config, run_cli)


def parse_args(argv=None):
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
    parser.add_argument('--transition', type=non_negative_int, default=None,
                        help='sweep: which scale hands on chips (0: the '
                        'coarsest; default 0)')
    parser.add_argument('--num-images', type=positive_int, default=100)
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        '--target-ap-drop', type=non_negative_float, metavar='X',
        help='calibrate: the fewest pixels with COCO AP (points, 0-100) at '
        'most X below the full pyramid\'s')
    target.add_argument(
        '--target-pixels', type=positive_float, metavar='P',
        help='calibrate: the highest AP with at most P mean pixels per image')
    parser.add_argument(
        '--transitions', type=non_negative_int, nargs='+', default=None,
        help='calibrate: the transitions to calibrate, in this order '
        '(default: all, finest first); the grid of --thresholds, '
        '--dilations, --min-sizes is searched on each')
    parser.add_argument(
        '--passes', type=positive_int, default=1,
        help='calibrate: rounds over the transitions (a transition '
        'searched early is searched again with the later ones at their '
        'best; stops after a round that changed nothing)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. to evaluate on a validation '
        'split: test_dataloader.dataset.ann_file=... (not written into '
        'the calibration snippet)')
    args = parser.parse_args(argv)
    calibrating = args.target_ap_drop is not None or \
        args.target_pixels is not None
    if calibrating and args.transition is not None:
        parser.error('--transition is for the sweep; with --target-ap-drop/'
                     '--target-pixels use --transitions')
    if not calibrating and args.transitions is not None:
        parser.error('--transitions needs --target-ap-drop or '
                     '--target-pixels')
    if not calibrating and args.passes != 1:
        parser.error('--passes needs --target-ap-drop or --target-pixels')
    return args


def settings(base_scales, transition, t, d, k):
    scales = copy.deepcopy(base_scales)
    scales[transition].update(threshold=t, dilation=d, min_size=k)
    return scales


def main():
    args = parse_args()
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    if not type_in(cfg.get('tta_model') or {}, ('AutoFocusTTAModel', ),
                   'MODELS'):
        raise UserInputError(f'config "{args.config}" has no AutoFocusTTAModel'
                             ' tta_model')
    check_input_file(args.checkpoint, 'checkpoint')
    base = [dict(s) for s in cfg.tta_model.scales]
    if args.target_ap_drop is not None or args.target_pixels is not None:
        return calibrate(args, cfg, base)
    if args.transition is None:
        args.transition = 0
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
              f'{metrics["img_per_s"]:.2f} focus recall '
              f'{format_focus_recall(metrics.get("focus_recall"))}',
              flush=True)

    tr = args.transition
    run('full pyramid', full_pyramid_scales(base))
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
             'img/s | focus recall |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in rows:
        lines.append(
            f'| {r["name"]} | {r.get("t", "-")} | {r.get("d", "-")} | '
            f'{r.get("k", "-")} | {100 * r["AP"]:.1f} | '
            f'{100 * r["AP_s"]:.1f} | {r["pixels"] / 1e6:.3f} | '
            f'{r["img_per_s"]:.2f} | '
            f'{format_focus_recall(r.get("focus_recall"))} |')
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


def calibrate(args, cfg, base):
    """Greedy calibration for the target; writes calibration.json and, when
    the target is reached, calibration.py (see the module docstring)."""
    if len(base) < 2:
        raise UserInputError(f'config "{args.config}": tta_model.scales has '
                             'one scale, so no transition to calibrate')
    order = tuple(args.transitions) if args.transitions else None
    if order is not None and (len(set(order)) != len(order) or
                              max(order) > len(base) - 2):
        raise UserInputError(f'--transitions must be distinct, in [0, '
                             f'{len(base) - 2}], got {list(order)}')
    try:
        start = setting_of(base, where=f'{args.config}: tta_model.scales')
    except ValueError as e:
        raise UserInputError(str(e)) from e
    target = Target(max_ap_drop=args.target_ap_drop,
                    max_pixels=args.target_pixels)
    grid = list(itertools.product(args.thresholds, args.dilations,
                                  args.min_sizes))
    check_data_paths(cfg, ['test_dataloader'])
    check_output_dir(args.out_dir)
    model = load_autofocus(cfg, args.checkpoint)
    metrics = {}

    def measure(scales):
        m = evaluate_cascade(model, cfg, scales, args.num_images)
        return m, 100 * m['AP']

    ref_metrics, ref_ap = measure(full_pyramid_scales(base))
    reference = Reference(ref_ap, ref_metrics['pixels'])
    print(f'full pyramid: AP {ref_ap:.1f} pixels '
          f'{reference.pixels / 1e6:.3f} M; target: '
          f'{target.describe(reference)}', flush=True)

    def evaluate(setting):
        metrics[setting], ap = measure(apply_setting(base, setting))
        return ap, metrics[setting]['pixels']

    def report(index, point, varied):
        what = 'config' if varied is None else f'transition {varied}'
        print(f'[{index}] {what}: (t, d, k) per transition '
              f'{format_setting(point.setting, " ")}: AP {point.ap:.1f} '
              f'pixels {point.pixels / 1e6:.3f} M', flush=True)

    error = None
    try:
        result = calibrate_greedy(evaluate, start, grid, target, reference,
                                  order=order, report=report,
                                  passes=args.passes)
    except CalibrationError as e:
        result, error = e.result, e
    record = dict(
        config=args.config, checkpoint=args.checkpoint,
        num_images=args.num_images, passes=args.passes,
        ap_unit='COCO AP points: 100 x the AP of metrics',
        grid=[list(g) for g in grid], **result.to_dict())
    record['reference']['metrics'] = ref_metrics
    for point, p in zip(record['points'], result.points):
        point['metrics'] = metrics[p.setting]
    snippet = osp.join(args.out_dir, 'calibration.py')
    record['snippet'] = None if error else snippet
    write_json(osp.join(args.out_dir, 'calibration.json'), record, indent=2)
    if error is not None:
        raise UserInputError(f'{error} (every evaluated setting: '
                             f'{osp.join(args.out_dir, "calibration.json")})')
    pick = result.picked
    scales = apply_setting(base, pick.setting)
    base_path = osp.relpath(osp.abspath(args.config),
                            osp.abspath(args.out_dir))
    comment = [
        'AutoFocus (t, d, k) calibrated by tools/autofocus_sweep.py',
        f'target: {target.describe(reference)}',
        f'config: {args.config}', f'checkpoint: {args.checkpoint}',
        f'on the first {args.num_images} test images: AP {pick.ap:.1f} at '
        f'{pick.pixels / 1e6:.3f} M pixels per image',
        f'(full pyramid: AP {reference.ap:.1f} at '
        f'{reference.pixels / 1e6:.3f} M); every evaluated setting: '
        'calibration.json.',
        'Use this file as the config (it inherits _base_ and replaces only',
        "tta_model.scales) or paste the scales into the config's tta_model.",
        '']
    write_text(snippet, config_snippet(scales, base=base_path,
                                       comment=comment))
    print(f'picked [{result.pick}] (t, d, k) per transition '
          f'{format_setting(pick.setting, " ")}: AP {pick.ap:.1f} pixels '
          f'{pick.pixels / 1e6:.3f} M (full pyramid: AP {reference.ap:.1f} '
          f'pixels {reference.pixels / 1e6:.3f} M); wrote {snippet}')


if __name__ == '__main__':
    run_cli(main)
