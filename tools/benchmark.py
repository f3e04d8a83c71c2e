# Copyright (c) mmsnip contributors. All rights reserved.
"""Benchmark training and inference: SNIPER/AutoFocus vs the full pyramid,
tiling (ours and SAHI) and single scale, side by side in one run.

    # training: the same detector on chips, on the full pyramid, single scale
    python tools/benchmark.py train CFG [CFG ...] --out-dir DIR \
        [--iters 20] [--warmup 3] [--amp] [--timeout 300] \
        [--append docs/benchmarks.md]

    # data loading: what the training process waits per batch at a GPU step
    python tools/benchmark.py loader CFG [CFG ...] --out-dir DIR \
        [--batches 40] [--step-seconds 0.3] [--append docs/benchmarks.md]

    # inference: one trained AutoFocus model, every method on the same images
    python tools/benchmark.py infer AUTOFOCUS_CFG CKPT --out-dir DIR \
        [--methods single pyramid autofocus oracle tiling sahi] \
        [--thresholds 0.05 0.3] [--single-scale factor=1.0] \
        [--tile-size 512] [--tile-overlap 64] [--tile-factor 1.0] \
        [--num-images 100] [--warmup N] [--amp] \
        [--append docs/benchmarks.md]

Writes ``train.json``/``train.md``, ``loader.json``/``loader.md`` or
``infer.json``/``infer.md``/
``infer.png`` (AP vs pixels per image) to ``--out-dir``; ``train`` and
``infer`` rewrite their json/md after every config or method (a run cut
short keeps the rows it measured; ``failed`` and ``not_run`` in the json
say what is missing). ``--append``
adds a dated section (command, machine, versions, table) to a Markdown file.
Training runs every config in its own process (clean peak memory; each
under ``--timeout`` seconds if given) with the runner ``tools/train.py``
builds (the config's ``runner_type``). A config or method that fails is
reported and the others are still measured and tabled; the exit status is
then an error naming it. ``infer --methods sahi`` needs the optional
``sahi`` package (checked before any measurement).
``infer`` also measures the limit: the detector alone on whole images of
the pyramid's sizes (megapixels per second), and reports each method's
megapixels per second as a fraction of it (on a GPU not a bound: see
docs/benchmarks.md). No GPU needed; on a CUDA machine everything runs on
the GPU and synchronises before timing; ``--amp`` (CUDA only) trains with
``AmpOptimWrapper`` and runs inference under fp16 autocast.
"""
import argparse
import contextlib
import copy
import importlib
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import traceback

from mmengine.config import DictAction

from mmsnip.utils import register_all_modules
from mmsnip.utils.cli import (ArgumentParser, finite_float,
                              non_negative_float, non_negative_int,
                              positive_float, positive_int)
from mmsnip.utils.config_tree import type_in
from mmsnip.utils.fileio import (check_input_file, check_output_dir,
                                 check_output_file, checked_write,
                                 write_json, write_text)
from mmsnip.utils.preflight import (UserInputError, check_data_paths,
                                    load_config, run_cli)

METHODS = ('single', 'pyramid', 'autofocus', 'oracle', 'tiling', 'sahi')


def _configs_command(sub, name: str, summary: str):
    """A subcommand over several configs: one table row each."""
    command = sub.add_parser(name, help=summary)
    command.add_argument('configs', nargs='+')
    command.add_argument('--labels', nargs='+',
                         help='row names (default: config file names)')
    command.add_argument('--out-dir', required=True)
    command.add_argument('--append',
                         help='Markdown file to append a section')
    command.add_argument('--cfg-options', nargs='+', action=DictAction,
                         help='overrides applied to every config')
    return command


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)

    train = _configs_command(sub, 'train', 'training throughput per config')
    train.add_argument('--iters', type=positive_int, default=20,
                       help='measured iterations per config')
    train.add_argument('--warmup', type=non_negative_int, default=3)
    train.add_argument('--amp', action='store_true',
                       help='mixed precision (AmpOptimWrapper, fp16 '
                       'autocast); needs a CUDA device')
    train.add_argument('--timeout', type=positive_float,
                       help='seconds each config\'s process may run '
                       '(default: no limit); one that runs longer is '
                       'killed and reported as failed, the others are '
                       'still measured')

    loader = _configs_command(
        sub, 'loader', 'what the training process waits per batch when a '
        'GPU step lasts --step-seconds')
    loader.add_argument('--batches', type=positive_int, default=40,
                        help='measured batches per config')
    loader.add_argument('--warmup', type=non_negative_int, default=3)
    loader.add_argument('--step-seconds', type=non_negative_float,
                        default=0.3, help='the GPU step the training '
                        'process waits on between batches (0: the '
                        'loader\'s throughput)')
    loader.add_argument('--collate', nargs='+', metavar='TYPE',
                        help='measure each config with each of these '
                        'collate_fn types, e.g. pseudo_collate '
                        'mmsnip.pseudo_collate_by_value (default: the '
                        'config\'s own)')

    one = sub.add_parser('train-one', help=argparse.SUPPRESS)
    one.add_argument('config')
    one.add_argument('--iters', type=positive_int, default=20)
    one.add_argument('--warmup', type=non_negative_int, default=3)
    one.add_argument('--json', required=True)
    one.add_argument('--amp', action='store_true')
    one.add_argument('--cfg-options', nargs='+', action=DictAction)

    infer = sub.add_parser('infer', help='inference methods on one model')
    infer.add_argument('config', help='an AutoFocus config (tta_model: '
                       'AutoFocusTTAModel)')
    infer.add_argument('checkpoint')
    infer.add_argument('--methods', nargs='+', choices=METHODS,
                       default=list(METHODS))
    infer.add_argument('--thresholds', type=finite_float, nargs='+',
                       help='AutoFocus thresholds t (every transition); '
                       'default: the config\'s values')
    infer.add_argument('--single-scale', nargs='+', action=DictAction,
                       default=None, help='ScaleSpec rule of the single-'
                       'scale run, e.g. factor=1.0 or max_side=800 '
                       '(default: factor=1.0)')
    infer.add_argument('--tile-size', type=positive_int, default=512,
                       help='tiles and SAHI slices, ORIGINAL px')
    infer.add_argument('--tile-overlap', type=non_negative_int, default=64)
    infer.add_argument('--tile-factor', type=positive_float, default=1.0,
                       help='resize factor of the tiles')
    infer.add_argument('--full-image-factor', type=positive_float, default=1.0,
                       help='resize factor of the whole-image pass of '
                       'tiling and SAHI')
    infer.add_argument('--no-full-image', action='store_true',
                       help='tiling and SAHI without the whole-image pass')
    infer.add_argument('--rpn-proposals-per-mpix', type=positive_float,
                       help='the same RPN budget rule for every method '
                       '(two-stage detectors; default: the config\'s '
                       'tta_model value, else the detector\'s test_cfg)')
    infer.add_argument('--num-images', type=positive_int, default=100)
    infer.add_argument('--warmup', type=non_negative_int,
                       help='images run untimed before the limit and '
                       'before each method (default: every measured '
                       'image, --num-images, on CUDA, so that each input '
                       'shape is set up before it is timed; 1 on CPU)')
    infer.add_argument('--amp', action='store_true',
                       help='run the models under fp16 autocast; needs a '
                       'CUDA device')
    infer.add_argument('--out-dir', required=True)
    infer.add_argument('--append', help='Markdown file to append a section')
    infer.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _command_line() -> str:
    return 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)


def _write(out_dir: str, name: str, payload: dict, table: str) -> None:
    write_json(osp.join(out_dir, f'{name}.json'), payload, indent=2)
    write_text(osp.join(out_dir, f'{name}.md'), table)


def _check_amp(args) -> None:
    import torch
    if args.amp and not torch.cuda.is_available():
        raise UserInputError('--amp needs a CUDA device (fp16 autocast); '
                             'this machine has none: drop --amp')


def _autocast(amp: bool):
    """fp16 autocast on CUDA for ``--amp``, else no change."""
    import torch
    return torch.autocast('cuda', dtype=torch.float16) if amp else \
        contextlib.nullcontext()


def _check_outputs(args) -> None:
    """Fail before any measurement if an output cannot be written."""
    check_output_dir(args.out_dir)
    if args.append:
        check_output_file(args.append, '--append', ('.md', ))


def append_section(path: str, title: str, payload: dict, table: str,
                   extra: str = '') -> None:
    """Append a dated section (command, device, versions, table) for a
    run's ``payload`` (``command`` and ``machine`` of its JSON)."""
    machine = payload['machine']
    device = machine['gpu'] if machine['gpu'] != 'none' else \
        f'CPU only: {machine["cpu"]} ({machine["cpu_count"]} cores)'
    versions = ', '.join(f'{k} {machine[k]}' for k in (
        'python', 'torch', 'mmcv', 'mmdet', 'mmengine', 'mmsnip', 'sahi')
        if k in machine)
    with checked_write(path), open(path, 'a', encoding='utf-8') as f:
        f.write(f'\n### {title} ({machine["date"]})\n\n```bash\n'
                f'{payload["command"]}\n```\n\nDevice: {device}. '
                f'{versions}.\n\n{table}{extra}')


# -- training ---------------------------------------------------------------
TRAIN_COLUMNS = [
    ('config', 'label', '{}'),
    ('precision', 'precision', '{}'),
    ('batch', 'batch_size', '{}'),
    ('workers', 'num_workers', '{}'),
    ('collate_fn', 'collate_fn', '{}'),
    ('samples/s', 'samples_per_s', '{:.2f}'),
    ('MPix/s', 'mpix_per_s', '{:.2f}'),
    ('data s/iter', 'data_s', '{:.3f}'),
    ('step s/iter', 'step_s', '{:.3f}'),
    ('data wait', 'data_wait', lambda v: f'{100 * v:.0f}%'),
    ('steady data wait', 'data_wait_steady', lambda v: f'{100 * v:.0f}%'),
    ('epoch starts', 'epoch_starts', '{}'),
    ('peak memory (MB)', 'peak_mem_mb', '{:.0f}'),
    ('samples/epoch', 'epoch_samples', '{}'),
    ('MPix/epoch', 'epoch_mpix', '{:.1f}'),
    ('x fewest', 'epoch_mpix_ratio', '{:.2f}'),
]
TRAIN_NOTE = ('\nPeak memory: CUDA max allocated, or the peak RSS of the '
              'process on CPU. MPix: network-input pixels of the samples, '
              'batch padding excluded; MPix/epoch is exact for chip '
              'datasets and estimated from the measured mean otherwise.\n')


def _check_train_config(cfg) -> None:
    """What ``tools/train.py`` refuses before building its runner."""
    from mmsnip.engine import require_snip_runner
    check_data_paths(cfg, ['train_dataloader'])
    require_snip_runner(cfg)


def train_one(args) -> None:
    from mmsnip.apis.benchmark import measure_training
    _check_amp(args)
    cfg = load_config(args.config, args.cfg_options)
    _check_train_config(cfg)
    check_output_file(args.json, '--json', inputs={'CONFIG': args.config})
    row = measure_training(cfg, args.iters, args.warmup, amp=args.amp)
    write_json(args.json, row)


def _pct(value) -> str:
    return '-' if value is None else f'{100 * value:.0f}%'


def _train_table(rows: list) -> str:
    from mmsnip.apis.benchmark import format_markdown
    smallest = min(r['epoch_mpix'] for r in rows)
    for row in rows:
        row['epoch_mpix_ratio'] = row['epoch_mpix'] / max(smallest, 1e-9)
    return format_markdown(rows, TRAIN_COLUMNS)


def train(args) -> None:
    from mmsnip.apis.benchmark import machine_info
    _check_amp(args)
    labels = args.labels or [osp.splitext(osp.basename(c))[0]
                             for c in args.configs]
    if len(labels) != len(args.configs):
        raise UserInputError('--labels needs one name per config')
    for path in args.configs:
        cfg = load_config(path, args.cfg_options)  # fail fast, before any run
        _check_train_config(cfg)
    _check_outputs(args)
    machine = machine_info()
    rows, failed, children = [], [], []
    for at, (label, path) in enumerate(zip(labels, args.configs)):
        out = osp.join(args.out_dir, f'train_{at}.json')
        cmd = [sys.executable, osp.abspath(__file__), 'train-one', path,
               '--iters', str(args.iters), '--warmup', str(args.warmup),
               '--json', out] + (['--amp'] if args.amp else [])
        if args.cfg_options:
            cmd += ['--cfg-options'] + [f'{k}={v}' for k, v in
                                        args.cfg_options.items()]
        print(f'[train] {label}: {args.warmup} + {args.iters} iterations',
              flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=args.timeout)
        except subprocess.TimeoutExpired as e:
            stderr = e.stderr or ''
            sys.stderr.write((stderr if isinstance(stderr, str) else
                              stderr.decode(errors='replace'))[-4000:])
            failed.append(f'{label} ({path}, timed out after '
                          f'{args.timeout:g} s: --timeout)')
            print(f'[train] {label}: TIMED OUT after {args.timeout:g} s',
                  flush=True)
        else:
            if proc.returncode:
                # The other configs are still measured and tabled (one that
                # runs out of memory does not lose them); the exit is an
                # error.
                sys.stderr.write(proc.stderr[-4000:])
                failed.append(f'{label} ({path}, exit {proc.returncode})')
                print(f'[train] {label}: FAILED, see above', flush=True)
            else:
                children.append(out)
                with open(out) as f:
                    row = dict(config=path, label=label, **json.load(f))
                rows.append(row)
                print(f'[train] {label}: {row["samples_per_s"]:.2f} '
                      f'samples/s, {row["mpix_per_s"]:.2f} MPix/s, data '
                      f'wait {_pct(row["data_wait"])} (steady '
                      f'{_pct(row["data_wait_steady"])}), peak '
                      f'{row["peak_mem_mb"]:.0f} MB, '
                      f'{row["epoch_mpix"]:.1f} MPix/epoch', flush=True)
        if rows:
            # The table so far, rewritten after every config: a run cut
            # short (a time limit, a crash) keeps the rows it measured.
            payload = dict(command=_command_line(), machine=machine,
                           rows=rows, failed=failed,
                           not_run=labels[at + 1:])
            _write(args.out_dir, 'train', payload, _train_table(rows))
    if not rows:
        raise SystemExit('error: every config failed: '
                         + '; '.join(failed))
    for child in children:
        os.remove(child)
    table = _train_table(rows)
    print(table)
    if args.append:
        append_section(args.append, 'Training throughput', payload, table,
                       TRAIN_NOTE)
    _fail_after_table('train', failed, args.out_dir)


def _fail_after_table(what: str, failed: list, out_dir: str) -> None:
    """Exit with an error naming the ``failed`` configs or methods, after
    the table of the others was written (their measurements are kept)."""
    if failed:
        raise SystemExit(f'error: {len(failed)} {what} run(s) failed: '
                         + '; '.join(failed) + f'. The table in {out_dir} '
                         'holds the others')


def loader(args) -> None:
    from mmengine.registry import FUNCTIONS

    from mmsnip.apis.benchmark import (collate_name, format_markdown,
                                       machine_info, measure_loader)
    labels = args.labels or [osp.splitext(osp.basename(c))[0]
                             for c in args.configs]
    if len(labels) != len(args.configs):
        raise UserInputError('--labels needs one name per config')
    runs = []  # (label, path, cfg)
    for label, path in zip(labels, args.configs):
        cfg = load_config(path, args.cfg_options)  # fail fast, before any run
        check_data_paths(cfg, ['train_dataloader'])
        for collate in args.collate or [None]:
            if collate is None:
                runs.append((label, path, cfg))
                continue
            if FUNCTIONS.get(collate) is None:
                raise UserInputError(
                    f'--collate {collate}: no such function in MMEngine\'s '
                    'FUNCTIONS registry (mmsnip\'s are named mmsnip.X)')
            variant = copy.deepcopy(cfg)
            variant.train_dataloader.collate_fn = dict(type=collate)
            runs.append((label, path, variant))
    _check_outputs(args)
    rows = []
    for label, path, cfg in runs:
        print(f'[loader] {label}: {args.warmup} + {args.batches} batches, '
              f'{args.step_seconds} s per step', flush=True)
        row = dict(config=path, label=label,
                   collate=collate_name(cfg.train_dataloader),
                   **measure_loader(cfg, args.batches, args.warmup,
                                    args.step_seconds))
        rows.append(row)
        print(f'[loader] {label}: {_ms(row["receive_ms"])} ms per batch, '
              f'epoch start {_ms(row["epoch_start_ms"])} ms', flush=True)
    table = format_markdown(rows, [
        ('config', 'label', '{}'),
        ('collate_fn', 'collate', '{}'),
        ('batch', 'batch_size', '{}'),
        ('workers', 'num_workers', '{}'),
        ('ms per batch (median)', 'receive_ms', _ms),
        ('p90', 'receive_p90_ms', _ms),
        ('epoch start ms', 'epoch_start_ms', _ms),
        ('epoch starts', 'epoch_starts', '{}'),
        ('batches/epoch', 'batches_per_epoch', '{}'),
        ('data wait', 'data_wait', lambda v: f'{100 * v:.1f}%'),
        ('steady data wait', 'data_wait_steady',
         lambda v: f'{100 * v:.1f}%'),
    ])
    payload = dict(command=_command_line(), machine=machine_info(),
                   step_seconds=args.step_seconds, rows=rows)
    _write(args.out_dir, 'loader', payload, table)
    print(table)
    if args.append:
        append_section(args.append, 'Data loading at a GPU step', payload,
                       table, f'\nThe training process slept '
                       f'{args.step_seconds} s before each batch (a GPU '
                       'step); "ms per batch" is the time it then waited.\n')


def _ms(value) -> str:
    return '-' if value is None else f'{value:.1f}'


# -- inference --------------------------------------------------------------
INFER_COLUMNS = [
    ('method', 'method', '{}'), ('setting', 'setting', '{}'),
    ('AP', 'AP', lambda v: f'{100 * v:.1f}'),
    ('AP_small', 'AP_s', lambda v: f'{100 * v:.1f}'),
    ('MPix/img', 'pixels', lambda v: f'{v / 1e6:.3f}'),
    ('x fewer than pyramid', 'pixel_ratio', '{:.2f}'),
    ('img/s', 'img_per_s', '{:.2f}'),
    ('x pyramid img/s', 'speedup', '{:.2f}'),
    ('MPix/s', 'mpix_per_s', '{:.2f}'),
    ('of limit', 'limit_fraction', lambda v: f'{100 * v:.0f}%'),
    ('focus recall', 'focus_recall', None),  # format_focus_recall
    ('time split', 'time_split', '{}'),
]


def _check_sahi(methods) -> None:
    """``sahi`` among the methods needs the optional package: refused
    before any measurement."""
    if 'sahi' not in methods:
        return
    try:
        importlib.import_module('sahi')
    except ImportError:
        raise UserInputError(
            '--methods sahi needs the optional `sahi` package, which is '
            'not importable here: pip install -r requirements/optional.txt'
            ', or drop sahi from --methods')


def _warmup_images(args) -> int:
    """``--warmup``, by default every measured image on CUDA (each input
    shape a method meets is then set up before it is timed) and 1 on
    CPU."""
    import torch
    if args.warmup is not None:
        return args.warmup
    return args.num_images if torch.cuda.is_available() else 1


def _infer_table(rows: list, limit: dict, budget, args,
                 warmup: int) -> str:
    """Derived columns (ratios to the pyramid row, time split) and the
    table of ``rows`` with its notes."""
    from mmsnip.apis.benchmark import format_markdown
    from mmsnip.chips import format_focus_recall
    pyramid = next((r for r in rows if r['method'] == 'pyramid'), None)
    for row in rows:
        if pyramid:
            row['pixel_ratio'] = pyramid['pixels'] / max(row['pixels'], 1)
            row['speedup'] = row['img_per_s'] / max(pyramid['img_per_s'],
                                                    1e-9)
        stages = row['stage_seconds']
        total = sum(stages.values())
        row['time_split'] = ', '.join(
            f'{k} {100 * v / total:.0f}%' for k, v in stages.items()) \
            if total > 0 else None
        row['setting'] = ' '.join(
            f'{k}={v}' for k, v in row['params'].items()) or '-'
    columns = [(h, k, format_focus_recall if f is None else f)
               for h, k, f in INFER_COLUMNS]
    return format_markdown(rows, columns) + (
        f'\nLimit (detector alone on whole images of the pyramid\'s '
        f'sizes): {limit["mpix_per_s"]:.2f} MPix/s. RPN proposals: '
        + (f'{budget:g} per MPix of input (at most the detector\'s '
           'test_cfg)' if budget else 'the detector\'s test_cfg for '
           'every input') + '. Precision: '
        + ('fp16 autocast (--amp)' if args.amp else 'fp32')
        + f'. Warm-up: {warmup} untimed image(s) before the limit and '
        'before each method. MPix: network-input pixels, batch padding '
        'excluded. The pyramid row is the cascade selecting every pixel '
        '(SnipTTAModel\'s detections, no FocusPixel head: the cascade runs '
        'it only where its maps plan chips).\n')


def infer(args) -> None:
    from mmengine.registry import DefaultScope

    from mmsnip.apis import evaluate_tta, load_autofocus
    from mmsnip.apis.benchmark import (detector_throughput,
                                       inference_methods, machine_info,
                                       plot_ap_vs_pixels)
    from mmsnip.registry import MODELS
    _check_amp(args)
    _check_sahi(args.methods)
    cfg = load_config(args.config, args.cfg_options)
    if not type_in(cfg.get('tta_model') or {}, ('AutoFocusTTAModel', ),
                   'MODELS'):
        raise UserInputError(f'config "{args.config}" has no '
                             'AutoFocusTTAModel tta_model')
    check_input_file(args.checkpoint, 'checkpoint')
    check_data_paths(cfg, ['test_dataloader'])
    _check_outputs(args)
    single = dict(args.single_scale or dict(factor=1.0))
    tile = dict(tile_size=args.tile_size, overlap=args.tile_overlap,
                factor=args.tile_factor, full_image=not args.no_full_image,
                full_image_factor=args.full_image_factor)
    try:
        methods = inference_methods(cfg, args.methods,
                                    args.thresholds or [None], single, tile,
                                    args.rpn_proposals_per_mpix)
    except ValueError as e:
        raise UserInputError(str(e))
    model = load_autofocus(
        cfg, args.checkpoint,
        need_focus_head=any(name == 'autofocus' for name, _, _ in methods))
    num = args.num_images
    warmup = _warmup_images(args)
    machine = machine_info()
    budget = methods[0][2].get('rpn_proposals_per_mpix') if methods else None

    print(f'[infer] limit: the detector alone on whole images ({warmup} '
          'warm-up)', flush=True)
    with _autocast(args.amp):
        limit = detector_throughput(model, cfg, cfg.tta_model.scales, num,
                                    warmup)
    rows, failed = [], []
    for at, (name, params, tta_cfg) in enumerate(methods):
        try:
            if name == 'sahi':
                from mmsnip.apis.sahi_peer import SahiSlicedModel
                tta = SahiSlicedModel(model, **{
                    k: v for k, v in tta_cfg.items() if k != 'type'})
            else:
                with DefaultScope.overwrite_default_scope('mmsnip'):
                    tta = MODELS.build(dict(tta_cfg, module=model))
            with _autocast(args.amp):
                metrics = evaluate_tta(tta, cfg, num, warmup=warmup)
        except Exception as e:  # noqa: BLE001 - reported, the rest go on
            # One failing method (e.g. out of GPU memory) does not lose
            # the others' measurements: reported, and the exit is an error.
            traceback.print_exc()
            failed.append(f'{name} {params} ({type(e).__name__}: {e})')
            print(f'[infer] {name} {params}: FAILED, see above', flush=True)
        else:
            row = dict(method=name, params=params, **metrics)
            row['limit_fraction'] = row['mpix_per_s'] / max(
                limit['mpix_per_s'], 1e-9)
            rows.append(row)
            print(f'[infer] {name} {params}: AP {100 * row["AP"]:.1f} AP_s '
                  f'{100 * row["AP_s"]:.1f} {row["pixels"] / 1e6:.3f} '
                  f'MPix/img {row["img_per_s"]:.2f} img/s', flush=True)
        # The table so far, rewritten after every method: a run cut short
        # (a time limit, a crash) keeps the rows it measured.
        table = _infer_table(rows, limit, budget, args, warmup)
        payload = dict(command=_command_line(), machine=machine,
                       limit=limit, num_images=num, warmup=warmup,
                       amp=args.amp, rows=rows, failed=failed,
                       not_run=[f'{n} {p}' for n, p, _ in methods[at + 1:]])
        _write(args.out_dir, 'infer', payload, table)
    if not rows:
        raise SystemExit('error: every method failed: ' + '; '.join(failed))
    plot = osp.join(args.out_dir, 'infer.png')
    with checked_write(plot):
        plot_ap_vs_pixels(rows, plot, f'{osp.basename(args.config)}, '
                          f'{num} images')
    print(table)
    if args.append:
        append_section(args.append, 'Inference: AutoFocus vs full '
                       'pyramid, tiling, SAHI, single scale', payload, table)
    _fail_after_table('infer', failed, args.out_dir)


def main(argv=None):
    args = parse_args(argv)
    register_all_modules()
    commands = {'train': train, 'train-one': train_one, 'loader': loader,
                'infer': infer}
    commands[args.command](args)


if __name__ == '__main__':
    run_cli(main)
