# Copyright (c) mmsnip contributors. All rights reserved.
"""The `make demo` pipeline: generate data, train, test, print a table.

Every step is the command a user would type (tools/make_demo_dataset.py,
tools/train.py, tools/test.py), run as a subprocess, so the demo exercises
the real entry points. Steps whose outputs exist are skipped, so a second
`make demo` only prints the table (`--force` re-runs everything).

    python tools/demo.py [--force] [--full]

The data goes to ``data/demo`` (the ``data_root`` of the demo configs), the
work dirs to ``work_dirs/demo/<config name>`` (the stage-2 SNIPER config
loads its stage-1 weights from there).
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATA_ROOT = 'data/demo'
WORK_DIR = 'work_dirs/demo'

SNIPER_STAGE1 = 'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'
PROPOSALS = 'data/demo/proposals/stage1_train.pkl'
SNIPER_STAGE2 = 'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo.py'
SLICED = 'configs/autofocus/sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py'
# Test-only rows: the config whose trained weights they test.
TEST_ONLY = {SLICED: SNIPER_STAGE2}
# (row name, config, extra test.py arguments, notes, preparation command:
# run before training unless its output file (the last argument) exists).
EXPERIMENTS = [
    ('single-scale baseline',
     'configs/baseline/faster-rcnn_r18-w16_fpn_12e_demo.py', [],
     'train and test: longer side 800 px', None),
    ('SNIPER, positive chips (stage 1)', SNIPER_STAGE1, ['--tta'],
     'train: 256 px chips at 3 scales; test: SNIP full pyramid', None),
    ('SNIPER + negative chips (stage 2)', SNIPER_STAGE2,
     ['--tta'], 'stage 1 + 4 epochs with mined negatives; test: SNIP full '
     'pyramid', [
         'tools/mine_proposals.py', SNIPER_STAGE1,
         osp.join(WORK_DIR, osp.splitext(osp.basename(SNIPER_STAGE1))[0],
                  'epoch_12.pth'), '--out', PROPOSALS
     ]),
    ('uniform tiling (SAHI-style)', SLICED, ['--tta'],
     'stage-2 detector, not trained again; test: 256 px tiles at x2 + '
     'the whole image at 0.32x', None),
    ('AutoFocus',
     'configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py',
     ['--tta'], 'stage 2 + FocusPixel head, 2 epochs; test: coarse to fine',
     None),
]
# Rows added by --full (slow on a CPU).
FULL_EXPERIMENTS = [
    ('SNIP full pyramid (same training pixels)',
     'configs/snip/snip_faster-rcnn_r18-w16_fpn_1e_demo.py', ['--tta'],
     'train: whole images at 3 scales, 1 epoch; test: SNIP full pyramid',
     None),
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--force', action='store_true', help='re-run steps that are done')
    parser.add_argument(
        '--full', action='store_true',
        help='also train SNIP on the full pyramid (slow on a CPU)')
    return parser.parse_args()


def run(cmd, log_path=None):
    """Run ``cmd`` from the repository root; stream or log its output."""
    print('$ ' + ' '.join(cmd), flush=True)
    start = time.time()
    if log_path is None:
        subprocess.run(cmd, cwd=ROOT, check=True)
    else:
        with open(log_path, 'w') as log:
            proc = subprocess.run(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            with open(log_path) as log:
                sys.stdout.write(''.join(log.readlines()[-40:]))
            raise SystemExit(
                f'step failed (exit {proc.returncode}); log: {log_path}')
    print(f'  done in {time.time() - start:.0f} s', flush=True)


def latest_metrics(work_dir):
    """The metrics dict of the newest test run logged under ``work_dir``."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*', '*.json')):
        if osp.basename(osp.dirname(path)) + '.json' != osp.basename(path):
            continue  # only mmengine's <timestamp>/<timestamp>.json logs
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        for record in lines:
            if 'coco/bbox_mAP' in record:
                found.append((osp.getmtime(path), record))
    return max(found, key=lambda x: x[0])[1] if found else None


def main():
    args = parse_args()
    os.chdir(ROOT)
    py = sys.executable
    data_cmd = [py, 'tools/make_demo_dataset.py', DATA_ROOT]
    run(data_cmd + (['--force'] if args.force else []))

    rows = []
    experiments = EXPERIMENTS + (FULL_EXPERIMENTS if args.full else [])
    for name, config, test_args, notes, prepare in experiments:
        work_dir = osp.join(WORK_DIR, _stem(config))
        os.makedirs(work_dir, exist_ok=True)
        # Train unless the last epoch's checkpoint exists; an interrupted
        # run resumes from its latest checkpoint (--resume).
        trained = TEST_ONLY.get(config, config)
        max_epochs = Config.fromfile(trained).train_cfg.max_epochs
        final = osp.join(WORK_DIR, _stem(trained), f'epoch_{max_epochs}.pth')
        if prepare and (args.force or not osp.isfile(prepare[-1])):
            print(f'[{name}] preparing (log: {work_dir}/prepare.log)')
            run([py] + prepare, osp.join(work_dir, 'prepare.log'))
        if config not in TEST_ONLY and (args.force or not osp.isfile(final)):
            print(f'[{name}] training (log: {work_dir}/train.log)')
            # --resume only for an interrupted run: it replaces load_from
            # (the stage-2 and AutoFocus configs start from other weights).
            resume = ['--resume'] if osp.isfile(
                osp.join(work_dir, 'last_checkpoint')) else []
            run([py, 'tools/train.py', config, '--work-dir', work_dir] +
                resume, osp.join(work_dir, 'train.log'))
        checkpoint = final
        test_dir = osp.join(work_dir, 'test')
        if args.force or latest_metrics(test_dir) is None:
            print(f'[{name}] testing (log: {work_dir}/test.log)')
            run([py, 'tools/test.py', config, checkpoint, '--work-dir',
                 test_dir] + test_args,
                osp.join(work_dir, 'test.log'))
        metrics = latest_metrics(test_dir)
        mpix = train_mpix_per_epoch(
            osp.join(WORK_DIR, _stem(trained), 'train.log'), DATA_ROOT)
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


def train_mpix_per_epoch(train_log, data_root, max_side=800):
    """Training pixels per epoch: from the SniperDataset summary in the
    log, or for whole-image training the images resized to ``max_side``."""
    if osp.isfile(train_log):
        with open(train_log) as f:
            for line in f:
                match = re.search(r'([\d.]+) MPix per epoch vs ([\d.]+) '
                                  r'MPix for the full pyramid', line)
                if match:
                    return (f'{match.group(1)} (pyramid: '
                            f'{match.group(2)})')
    with open(osp.join(data_root, 'annotations', 'instances_train.json')) as f:
        images = json.load(f)['images']
    total = sum(i['width'] * i['height'] *
                min(max_side / i['width'], max_side / i['height'])**2
                for i in images)
    return f'{total / 1e6:.1f}'


if __name__ == '__main__':
    main()
