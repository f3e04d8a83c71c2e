# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/autofocus_sweep.py calibration (--target-*) on tiny data: the
documented rule applied to its own calibration.json gives its pick, and
the calibration.py snippet loads over the real config and builds."""
import json
import os.path as osp
import re

import pytest

from conftest import REPO_ROOT, run_tool, tiny_checkpoint

CONFIG = osp.join(REPO_ROOT, 'configs/autofocus/'
                  'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
TOOL = 'tools/autofocus_sweep.py'


@pytest.fixture(scope='module')
def autofocus_ckpt(tiny_demo_root, tmp_path_factory):
    return tiny_checkpoint(tiny_demo_root,
                           tmp_path_factory.mktemp('calibration'), CONFIG,
                           'af')


def _documented_pick(record):
    """docs/autofocus.md, 'Calibration': the rule on calibration.json."""
    ref, target, points = record['reference'], record['target'], \
        record['points']
    if 'max_ap_drop' in target:
        ok = [p for p in points
              if p['ap'] >= ref['ap'] - target['max_ap_drop']]
        key = lambda p: (p['pixels'], -p['ap'], p['index'])  # noqa: E731
    else:
        ok = [p for p in points if p['pixels'] <= target['max_pixels']]
        key = lambda p: (-p['ap'], p['pixels'], p['index'])  # noqa: E731
    return min(ok, key=key)['index'] if ok else None


def test_calibration_picks_the_documented_point_and_snippet_builds(
        autofocus_ckpt, tmp_path):
    cfg_path, ckpt = autofocus_ckpt
    out = tmp_path / 'calib'
    proc = run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(out),
                     '--target-ap-drop', '5', '--thresholds', '0.2', '0.9',
                     '--min-sizes', '64', '--num-images', '2'])
    record = json.loads((out / 'calibration.json').read_text())
    # Every transition, finest first; the config's setting, then the grid.
    assert record['order'] == [1, 0] and record['passes'] == 1
    points = record['points']
    assert points[0]['varied'] is None
    assert [p['varied'] for p in points[1:]] == sorted(
        [p['varied'] for p in points[1:]], reverse=True)
    assert {p['varied'] for p in points[1:]} == {0, 1}
    from mmengine.config import Config
    coarse = Config.fromfile(cfg_path).tta_model.scales[0]
    assert points[0]['setting'][0] == dict(  # the config's
        threshold=coarse['threshold'], dilation=coarse['dilation'],
        min_size=float(coarse['min_size']))
    for p in points:  # AP points are 100 x the measured AP
        assert p['ap'] == pytest.approx(100 * p['metrics']['AP'])
        assert p['pixels'] == p['metrics']['pixels']
    # One progress line per evaluated setting, with AP and pixels.
    lines = re.findall(r'^\[(\d+)\] .*: AP [\d.]+ pixels [\d.]+ M$',
                       proc.stdout, re.M)
    assert lines == [str(p['index']) for p in points]
    assert 'full pyramid: AP' in proc.stdout and 'picked [' in proc.stdout
    # The documented rule on the tool's own record gives its pick.
    pick = record['pick']
    assert pick is not None and pick == _documented_pick(record)
    picked = points[pick]
    assert picked['ap'] >= record['reference']['ap'] - 5

    # The snippet, over the real config: the cascade builds with the pick.
    from mmengine.registry import DefaultScope

    from mmsnip.registry import MODELS
    from mmsnip.utils import register_all_modules
    register_all_modules()
    assert record['snippet'] == str(out / 'calibration.py')
    cfg = Config.fromfile(str(out / 'calibration.py'))
    base = Config.fromfile(cfg_path)
    assert cfg.tta_model.type == 'AutoFocusTTAModel'
    for key in ('max_chips', 'rpn_proposals_per_mpix', 'tta_cfg'):
        assert cfg.tta_model[key] == base.tta_model[key]
    assert cfg.model == base.model
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(cfg.tta_model,
                                module=MODELS.build(cfg.model)))
    assert len(tta.scales) == len(base.tta_model.scales) == 3
    for scale, tr, base_scale in zip(tta.scales, picked['setting'],
                                     base.tta_model.scales):
        assert (scale.threshold, scale.dilation, scale.min_size) == (
            tr['threshold'], tr['dilation'], tr['min_size'])
        # every other field is the config's
        assert scale.spec == type(scale).from_dict(base_scale).spec
        assert scale.border_tol == base_scale['border_tol']
    assert tta.scales[2] == type(tta.scales[2]).from_dict(
        base.tta_model.scales[2])


def test_unreachable_target_is_one_error_line_and_keeps_the_points(
        autofocus_ckpt, tmp_path):
    cfg_path, ckpt = autofocus_ckpt
    out = tmp_path / 'calib'
    proc = run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(out),
                     '--target-pixels', '1', '--transitions', '1',
                     '--thresholds', '0.9', '--min-sizes', '64',
                     '--num-images', '1'], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith('error: no setting of the 2 evaluated reaches the '
                          'target "at most 1 pixels per image"')
    assert 'larger sweep' in err and 'calibration.json' in err
    record = json.loads((out / 'calibration.json').read_text())
    assert record['pick'] is None and record['snippet'] is None
    assert [p['varied'] for p in record['points']] == [None, 1]
    assert _documented_pick(record) is None
    assert not (out / 'calibration.py').exists()


@pytest.mark.parametrize('args, message', [
    (['--target-ap-drop', '1', '--target-pixels', '5'], 'not allowed with'),
    (['--target-ap-drop', '-1'], '--target-ap-drop: must be'),
    (['--target-pixels', '0'], '--target-pixels: must be'),
    (['--transitions', '0'], '--transitions needs --target'),
    (['--target-pixels', '5', '--transition', '0'], 'use --transitions'),
    (['--passes', '2'], '--passes needs --target'),
    (['--target-pixels', '5', '--passes', '0'], '--passes: must be'),
])
def test_bad_calibration_options(args, message, tmp_path):
    proc = run_tool([TOOL, 'cfg.py', 'ckpt.pth', '--out-dir',
                     str(tmp_path)] + args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith('error: ') and message in proc.stderr


def test_bad_transitions_named(autofocus_ckpt, tmp_path):
    cfg_path, ckpt = autofocus_ckpt
    proc = run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(tmp_path),
                     '--target-pixels', '5', '--transitions', '2'],
                    check=False)
    assert proc.returncode == 2
    assert 'error: --transitions must be distinct, in [0, 1]' in proc.stderr


def _docs_section():
    text = open(osp.join(REPO_ROOT, 'docs/autofocus.md')).read()
    return text.split('## Calibration', 1)[1].split('\n## ', 1)[0]


def test_docs_calibration_flags_exist():
    commands = ''.join(
        b.split('```', 1)[0] for b in _docs_section().split('```bash')[1:])
    flags = set(re.findall(r'(--[a-z][a-z-]+)', commands))
    assert {'--target-ap-drop', '--target-pixels', '--transitions'} <= flags
    help_text = run_tool([TOOL, '--help']).stdout
    missing = sorted(f for f in flags if f not in help_text)
    assert not missing, f'docs/autofocus.md Calibration names {missing}'


def test_docs_snippet_is_what_the_tool_writes_for_the_demo_config():
    from mmengine.config import Config

    from mmsnip.chips import apply_setting, config_snippet, setting_of
    block = _docs_section().split('```python\n', 1)[1].split('```', 1)[0]
    ns = {}
    exec(compile(block, 'docs', 'exec'), {'dict': dict}, ns)
    base = [dict(s) for s in Config.fromfile(CONFIG).tta_model.scales]
    setting = setting_of(ns['tta_model']['scales'])
    rel = osp.relpath(CONFIG, osp.join(REPO_ROOT, 'work_dirs/calib'))
    assert ns['_base_'] == rel
    assert block == config_snippet(apply_setting(base, setting), base=rel)


def test_cfg_options_must_move_images_and_ground_truth_together(
        autofocus_ckpt, tiny_demo_root, tmp_path):
    """--cfg-options can point the calibration to a validation split; moving
    only the images (or only the ground truth) would score predictions on
    one file against another file's boxes: refused, naming both files."""
    cfg_path, ckpt = autofocus_ckpt
    other = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    proc = run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(tmp_path / 'c'),
                     '--target-ap-drop', '100', '--thresholds', '0.5',
                     '--min-sizes', '64', '--num-images', '1',
                     '--cfg-options', f'test_dataloader.dataset.ann_file={other}'],
                    check=False)
    # (the preflight audit of the evaluator's file against the dataset's
    # catches it first here; mmsnip.apis.autofocus refuses it too, for API
    # callers: tests/test_apis/test_autofocus_eval.py)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'instances_train.json' in proc.stderr
    assert 'instances_val.json' in proc.stderr
    assert not (tmp_path / 'c' / 'calibration.json').exists()


def test_docs_measured_calibration_commands_parse():
    """The commands of 'Calibration measured on the joint demo model': each
    tool knows every flag named, and the configs named exist."""
    text = open(osp.join(REPO_ROOT, 'docs/autofocus.md')).read()
    section = text.split('## Calibration measured', 1)[1].split('\n## ')[0]
    block = section.split('```bash', 1)[1].split('```', 1)[0]
    commands = block.replace('\\\n', ' ').strip().splitlines()
    assert len(commands) == 3  # make the split, calibrate, check on all
    for command in commands:
        words = command.split()
        assert words[:2] == ['python', words[1]] and words[1].startswith(
            'tools/')
        flags = {w.split('=')[0] for w in words if w.startswith('--')}
        help_text = run_tool([words[1], '--help']).stdout
        assert not sorted(f for f in flags if f not in help_text), command
        for word in words:
            if word.startswith('configs/'):
                assert osp.isfile(osp.join(REPO_ROOT, word)), word
