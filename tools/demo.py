# Copyright (c) mmsnip contributors. All rights reserved.
"""The `make demo` pipeline: generate data, train, test, print a table.

Every step is the command a user would type (tools/make_demo_dataset.py,
tools/train.py, tools/test.py), run as a subprocess, so the demo exercises
the real entry points. Steps whose outputs exist are skipped, so a second
`make demo` only prints the table (`--force` re-runs everything, from the
start). A training counts as done when MMEngine's ``last_checkpoint``
names its last epoch (a checkpoint cut short does not count; an
interrupted training resumes), test metrics and mined proposals when they
are newer than the weights they come from.

    python tools/demo.py [--force] [--full]

Progress: every step's output goes to its log file, and its progress lines
are shown as they come: MMEngine's logger lines (``Epoch(train) [4][10/12]
... eta: 0:09:36 ...``, every 10 iterations; ``Epoch(test) [..]``) and
MMEngine's progress bar (proposal mining; at most one line every 30 s),
plus a line saying the step is still running when it has printed no
progress for a minute (building chip tables, loading).

The data goes to ``data/demo`` (the ``data_root`` of the demo configs), the
work dirs to ``work_dirs/demo/<config name>`` (the stage-2 SNIPER config
loads its stage-1 weights from there).
"""
import contextlib
import glob
import io
import json
import os
import os.path as osp
import queue
import subprocess
import sys
import threading
import time
from typing import List, NamedTuple

from mmengine.config import Config

from mmsnip.utils.cli import ArgumentParser
from mmsnip.utils.fileio import check_output_dir
from mmsnip.utils.preflight import last_checkpoint, run_cli

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATA_ROOT = 'data/demo'
WORK_DIR = 'work_dirs/demo'

SNIPER_STAGE1 = 'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'
SNIPER_STAGE1_WEIGHTS = osp.join(
    WORK_DIR, osp.splitext(osp.basename(SNIPER_STAGE1))[0], 'epoch_12.pth')
PROPOSALS = 'data/demo/proposals/stage1_train.pkl'
SNIPER_STAGE2 = 'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo.py'
SLICED = 'configs/autofocus/sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py'
# Test-only rows: the config whose trained weights they test.
TEST_ONLY = {SLICED: SNIPER_STAGE2}


class Preparation(NamedTuple):
    """A step run before a row's training: ``args`` (a tool and its
    arguments) read ``weights`` and write ``output``; skipped while
    ``output`` is newer than ``weights`` (see :func:`prepare_command`)."""
    args: List[str]
    weights: str
    output: str


# (row name, config, extra test.py arguments, notes, Preparation or None)
EXPERIMENTS = [
    ('single-scale baseline',
     'configs/baseline/faster-rcnn_r18-w16_fpn_12e_demo.py', [],
     'train and test: longer side 800 px', None),
    ('SNIPER, positive chips (stage 1)', SNIPER_STAGE1, ['--tta'],
     'train: 256 px chips at 3 scales; test: SNIP full pyramid', None),
    ('SNIPER + negative chips (stage 2)', SNIPER_STAGE2,
     ['--tta'], 'stage 1 + 4 epochs with mined negatives; test: SNIP full '
     'pyramid', Preparation(
         ['tools/mine_proposals.py', SNIPER_STAGE1, SNIPER_STAGE1_WEIGHTS,
          '--out', PROPOSALS], SNIPER_STAGE1_WEIGHTS, PROPOSALS)),
    ('uniform tiling (SAHI-style)', SLICED, ['--tta'],
     'stage-2 detector, not trained again; test: 256 px tiles at x2 + '
     'the whole image at 0.32x', None),
    ('AutoFocus',
     'configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py',
     ['--tta'], 'stage 2 + FocusPixel head, 2 epochs; test: coarse to '
     'fine, (t, d, k) calibrated for half the pyramid\'s pixels', None),
]
# Rows added by --full (slow on a CPU).
FULL_EXPERIMENTS = [
    ('SNIP full pyramid (same training pixels)',
     'configs/snip/snip_faster-rcnn_r18-w16_fpn_1e_demo.py', ['--tta'],
     'train: whole images at 3 scales, 1 epoch; test: SNIP full pyramid',
     None),
]


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--force', action='store_true', help='re-run steps that are done')
    parser.add_argument(
        '--full', action='store_true',
        help='also train SNIP on the full pyramid (slow on a CPU)')
    return parser.parse_args(argv)


# Substrings of a progress line: MMEngine's LoggerHook ("Epoch(train)
# [4][10/12]  lr: ..  eta: 0:09:36 ..", "Epoch(test) [10/16] ..") and
# ProgressBar ("[>>>  ] 10/48, 2.3 task/s, elapsed: 4s, ETA: 16s").
PROGRESS_MARKS = ('Epoch(', 'ETA:')
SHOWN_WIDTH = 110  # console characters per progress line
BAR_EVERY_S = 30  # at most one progress-bar line this often
QUIET_S = 60  # say "still running" after this long without progress


def run(cmd, log_path=None):
    """Run ``cmd`` from the repository root; stream or log its output.

    With ``log_path`` the whole output goes there and its progress lines
    (:data:`PROGRESS_MARKS`) to the console, the fields that fit in
    :data:`SHOWN_WIDTH` characters; a failed step prints its log's last 40
    lines. Any failed step ends the demo with one line, ``step failed
    (exit N); log: PATH`` (``command: CMD`` for a step without a log, whose
    output is already on the console).
    """
    print('$ ' + ' '.join(cmd), flush=True)
    start = time.time()
    if log_path is None:
        returncode = subprocess.run(cmd, cwd=ROOT).returncode
        where = 'command: ' + ' '.join(cmd)
    else:
        returncode = _run_logged(cmd, log_path, start)
        where = f'log: {log_path}'
        if returncode != 0:
            with open(log_path) as log:
                sys.stdout.write(''.join(log.readlines()[-40:]))
    if returncode != 0:
        raise SystemExit(f'step failed (exit {returncode}); {where}')
    print(f'  done in {_minutes(time.time() - start)}', flush=True)


def _run_logged(cmd, log_path, start) -> int:
    """Run ``cmd`` with its output to ``log_path``, showing progress."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        lines = queue.Queue()
        reader = threading.Thread(
            target=_split_lines, args=(proc.stdout, log, lines), daemon=True)
        reader.start()
        last_shown = last_bar = time.time()
        while True:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                line = ''
            if line is None:  # end of output
                break
            now = time.time()
            if any(mark in line for mark in PROGRESS_MARKS):
                bar = 'Epoch(' not in line
                if not bar or now - last_bar >= BAR_EVERY_S:
                    text = line.split(' - INFO - ')[-1].strip()
                    if len(text) > SHOWN_WIDTH:  # whole fields ("  " apart)
                        text = text[:SHOWN_WIDTH].rsplit('  ', 1)[0]
                    print(f'  [{_minutes(now - start)}] {text}', flush=True)
                    last_shown = now
                    last_bar = now if bar else last_bar
            elif now - last_shown >= QUIET_S:
                print(f'  [{_minutes(now - start)}] still running '
                      f'(log: {log_path})', flush=True)
                last_shown = now
        reader.join()
        return proc.wait()


def _split_lines(stream, log, lines: queue.Queue) -> None:
    """Copy ``stream`` to ``log``; put its lines (split at ``\\n`` and at
    the progress bar's ``\\r``) on ``lines``, then None."""
    pending = ''
    for chunk in iter(lambda: stream.read1(65536), b''):
        text = chunk.decode('utf-8', 'replace')
        log.write(text)
        log.flush()
        parts = (pending + text).replace('\r', '\n').split('\n')
        pending = parts.pop()
        for part in parts:
            lines.put(part)
    if pending:
        lines.put(pending)
    lines.put(None)


def _minutes(seconds: float) -> str:
    """``95.2`` -> ``'1m35s'``."""
    return f'{int(seconds // 60)}m{int(seconds % 60):02d}s'


def _mtime(path: str) -> float:
    return osp.getmtime(path) if osp.exists(path) else float('inf')


def latest_metrics(work_dir, after=None):
    """The metrics dict of the newest test run logged under ``work_dir``
    (after the file ``after`` was written, e.g. the tested checkpoint:
    metrics of older weights do not count), or None."""
    found = []
    since = 0.0 if after is None else _mtime(after)
    for path in glob.glob(osp.join(work_dir, '*', '*.json')):
        if osp.basename(osp.dirname(path)) + '.json' != osp.basename(path):
            continue  # only mmengine's <timestamp>/<timestamp>.json logs
        if osp.getmtime(path) < since:
            continue
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        for record in lines:
            if 'coco/bbox_mAP' in record:
                found.append((osp.getmtime(path), record))
    return max(found, key=lambda x: x[0])[1] if found else None


def training_done(work_dir: str, max_epochs: int) -> bool:
    """Whether the training in ``work_dir`` saved its last epoch's
    checkpoint whole: MMEngine names a checkpoint in ``last_checkpoint``
    only after saving it, so an ``epoch_N.pth`` cut short (a full disk, a
    kill while saving) does not count."""
    final = osp.join(work_dir, f'epoch_{max_epochs}.pth')
    named = last_checkpoint(work_dir)
    return named is not None and osp.isfile(final) and \
        osp.basename(named) == osp.basename(final)


def train_command(py, config, work_dir, max_epochs, force):
    """The command that trains ``config`` in ``work_dir``, or None when
    its training is done (:func:`training_done`) and not ``force``d. An
    interrupted run resumes from its latest checkpoint (``--resume``,
    which replaces ``load_from``: only for a run that saved one); with
    ``force`` it starts over."""
    if not force and training_done(work_dir, max_epochs):
        return None
    resume = ['--resume'] if not force and last_checkpoint(
        work_dir) is not None else []
    return [py, 'tools/train.py', config, '--work-dir', work_dir] + resume


def prepare_command(py, prepare: Preparation, force):
    """The preparation command (proposal mining), or None when its output
    exists, written after its weights, and not ``force``d. With ``force``
    it starts over (``--restart``: the shards of an interrupted run may be
    of other weights)."""
    if not force and osp.isfile(prepare.output) and (
            _mtime(prepare.output) >= _mtime(prepare.weights)):
        return None
    return [py] + prepare.args + (['--restart'] if force else [])


def main():
    args = parse_args()
    os.chdir(ROOT)
    check_output_dir(WORK_DIR, 'the demo work folder')
    check_output_dir(osp.dirname(DATA_ROOT), 'the demo data folder')
    py = sys.executable
    data_cmd = [py, 'tools/make_demo_dataset.py', DATA_ROOT]
    run(data_cmd + (['--force'] if args.force else []))

    rows = []
    experiments = EXPERIMENTS + (FULL_EXPERIMENTS if args.full else [])
    for name, config, test_args, notes, prepare in experiments:
        work_dir = osp.join(WORK_DIR, _stem(config))
        os.makedirs(work_dir, exist_ok=True)
        # Train unless the last epoch's checkpoint was saved; an
        # interrupted run resumes from its latest checkpoint (--resume).
        # Steps older than the weights they come from run again.
        trained = TEST_ONLY.get(config, config)
        max_epochs = Config.fromfile(trained).train_cfg.max_epochs
        final = osp.join(WORK_DIR, _stem(trained), f'epoch_{max_epochs}.pth')
        command = prepare and prepare_command(py, prepare, args.force)
        if command:
            print(f'[{name}] preparing (log: {work_dir}/prepare.log)')
            run(command, osp.join(work_dir, 'prepare.log'))
        command = config not in TEST_ONLY and train_command(
            py, config, work_dir, max_epochs, args.force)
        if command:
            print(f'[{name}] training (log: {work_dir}/train.log)')
            run(command, osp.join(work_dir, 'train.log'))
        checkpoint = final
        test_dir = osp.join(work_dir, 'test')
        if args.force or latest_metrics(test_dir, after=checkpoint) is None:
            print(f'[{name}] testing (log: {work_dir}/test.log)')
            run([py, 'tools/test.py', config, checkpoint, '--work-dir',
                 test_dir] + test_args,
                osp.join(work_dir, 'test.log'))
        metrics = latest_metrics(test_dir, after=checkpoint)
        mpix = train_mpix_per_epoch(trained, DATA_ROOT)
        rows.append((name, metrics, mpix, notes))

    print('\nmmsnip demo results (COCO bbox AP on the demo val split)\n')
    print('| method | AP | AP50 | AP_small | AP_medium | AP_large | '
          'train MPix/epoch | test pixels/img | test img/s | notes |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, m, mpix, notes in rows:
        vals = [m[f'coco/bbox_{k}'] for k in
                ('mAP', 'mAP_50', 'mAP_s', 'mAP_m', 'mAP_l')]
        pixels = m.get('pixels/mean')
        pixels = f'{pixels / 1e6:.2f} M ({m["pixels/sqrt_mean"]:.0f}^2)' \
            if pixels else '-'
        speed = f'{m["pixels/img_per_s"]:.2f}' \
            if 'pixels/img_per_s' in m else '-'
        print(f'| {name} | ' + ' | '.join(f'{100 * v:.1f}' for v in vals) +
              f' | {mpix} | {pixels} | {speed} | {notes} |')


def _stem(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def train_mpix_per_epoch(config, data_root, max_side=800):
    """Training pixels per epoch of ``config``: for chip training its
    dataset's own count (``SniperDataset.epoch_pixels`` against
    ``pyramid_pixels``; the chip table comes from the cache training
    wrote), for whole-image training the images resized to ``max_side``."""
    ds_cfg = Config.fromfile(config).train_dataloader.dataset
    if ds_cfg.type.split('.')[-1] in ('SniperDataset', 'SnipDataset'):
        from mmengine.logging import MMLogger

        from mmsnip.registry import DATASETS
        from mmsnip.utils import register_all_modules
        register_all_modules()
        # Warnings only (the training log has the dataset's summary), and
        # not pycocotools' "loading annotations" prints.
        # (once: MMEngine warns when an existing logger gets arguments)
        MMLogger.get_instance('mmsnip_demo', **(
            {} if MMLogger.check_instance_created('mmsnip_demo') else
            dict(log_level='WARNING')))
        with contextlib.redirect_stdout(io.StringIO()):
            ds = DATASETS.build(ds_cfg)
        return (f'{ds.epoch_pixels(0) / 1e6:.1f} (pyramid: '
                f'{ds.pyramid_pixels() / 1e6:.1f})')
    with open(osp.join(data_root, 'annotations', 'instances_train.json')) as f:
        images = json.load(f)['images']
    total = sum(i['width'] * i['height'] *
                min(max_side / i['width'], max_side / i['height'])**2
                for i in images)
    return f'{total / 1e6:.1f}'


if __name__ == '__main__':
    run_cli(main)
