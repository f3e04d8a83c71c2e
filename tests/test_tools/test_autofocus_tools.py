# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/autofocus_sweep.py and the AutoFocus test path on tiny data."""
import json
import os.path as osp

import pytest

from conftest import REPO_ROOT, run_tool, tiny_checkpoint

CONFIG = osp.join(REPO_ROOT, 'configs/autofocus/'
                  'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')


@pytest.fixture(scope='module')
def autofocus_ckpt(tiny_demo_root, tmp_path_factory):
    return tiny_checkpoint(tiny_demo_root,
                           tmp_path_factory.mktemp('autofocus'), CONFIG, 'af')


def test_sweep_writes_json_markdown_and_plot(autofocus_ckpt, tmp_path):
    cfg_path, ckpt = autofocus_ckpt
    out = tmp_path / 'sweep'
    proc = run_tool(['tools/autofocus_sweep.py', cfg_path, ckpt,
                     '--out-dir', str(out), '--thresholds', '0.5',
                     '--min-sizes', '64', '--num-images', '2'])
    assert 'full pyramid' in proc.stdout and 'oracle' in proc.stdout
    data = json.loads((out / 'sweep.json').read_text())
    names = [r['name'] for r in data['rows']]
    assert names == ['full pyramid', 'autofocus', 'oracle']
    full, focused = data['rows'][0], data['rows'][1]
    assert focused['pixels'] <= full['pixels']
    # focus recall per transition: the full pyramid covers every object a
    # finer scale needs, AutoFocus at most as many
    for (need, got), (need2, got2) in zip(full['focus_recall'],
                                          focused['focus_recall']):
        assert got == need == need2 and 0 <= got2 <= need2
    assert (out / 'sweep.md').read_text().startswith('| setting')
    assert 'focus recall' in (out / 'sweep.md').read_text()
    assert (out / 'sweep.png').stat().st_size > 0


def test_autofocus_tta_through_tools_test(autofocus_ckpt, tmp_path):
    cfg_path, ckpt = autofocus_ckpt
    proc = run_tool(['tools/test.py', cfg_path, ckpt, '--tta',
                     '--work-dir', str(tmp_path / 'test')])
    log = proc.stdout + proc.stderr
    assert 'coco/bbox_mAP' in log and 'pixels/mean' in log
