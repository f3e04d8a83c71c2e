# Copyright (c) mmsnip contributors. All rights reserved.
"""Bad input gives a one-line `error:` naming the thing, exit status 2."""
import os.path as osp
import shutil

from conftest import run_tool, tiny_config


def _single_error_line(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    return errors[0]


def test_missing_config():
    proc = run_tool(['tools/train.py', 'configs/nope.py'], check=False)
    assert 'configs/nope.py' in _single_error_line(proc)


def test_config_with_syntax_error(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('model = dict(\n')
    proc = run_tool(['tools/train.py', str(bad)], check=False)
    assert 'bad.py' in _single_error_line(proc)


def test_missing_dataset_path(tmp_path):
    cfg = tiny_config(str(tmp_path / 'no_such_root'), str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'))
    proc = run_tool(['tools/train.py', cfg], check=False)
    line = _single_error_line(proc)
    assert 'train_dataloader.dataset.ann_file' in line
    assert 'no_such_root' in line


def test_corrupt_annotation_file(tiny_demo_root, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(tiny_demo_root, root)
    ann = root / 'annotations' / 'instances_train.json'
    ann.write_text(ann.read_text()[:200])  # truncated json
    cfg = tiny_config(str(root), str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'))
    proc = run_tool(['tools/train.py', cfg], check=False)
    line = _single_error_line(proc)
    assert 'instances_train.json' in line and 'not valid JSON' in line


def test_missing_checkpoint(tiny_demo_root, tmp_path):
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'))
    proc = run_tool(['tools/test.py', cfg, str(tmp_path / 'none.pth')],
                    check=False)
    assert 'none.pth' in _single_error_line(proc)
    assert not osp.exists(tmp_path / 'none.pth')


SNIPER_DEMO = osp.join('configs', 'sniper',
                       'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


def test_bad_chip_cfg_values_are_one_error_line(tiny_demo_root, tmp_path):
    """--cfg-options values ChipConfig cannot use: one `error:` line naming
    the entry, the scale and the field (was: a TypeError traceback, or a
    string such as 'flase' read as True)."""
    from conftest import REPO_ROOT
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'),
                      base=osp.join(REPO_ROOT, SNIPER_DEMO))
    entry = 'train_dataloader.dataset.chip_cfg'
    for option, want in (
            (f'{entry}.scales.0.valid_range=None',
             'scales[0]: ScaleSpec.valid_range must be (min, max)'),
            (f'{entry}.off_grid=flase',
             'ChipConfig.off_grid must be True or False')):
        proc = run_tool(['tools/train.py', cfg, '--cfg-options', option],
                        check=False)
        line = _single_error_line(proc)
        assert f'{entry}: ' in line and want in line, line


SLICED_DEMO = osp.join('configs', 'autofocus',
                       'sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py')


def test_bad_test_time_model_settings_are_one_error_line(tiny_demo_root,
                                                         tmp_path):
    """tools/test.py --tta with test-time model settings the model refuses,
    when it is built (tta_cfg, batch_size) and at the first image (a
    whole-image view under one pixel): one `error:` line each (was: a
    traceback ending in the same message). A runner that would not check
    the test-time model's inputs (MMEngine's Runner) is refused too."""
    from conftest import REPO_ROOT, tiny_checkpoint
    cfg, ckpt = tiny_checkpoint(tiny_demo_root, tmp_path,
                                osp.join(REPO_ROOT, SLICED_DEMO))
    for option, want in (
            ('tta_model.tta_cfg.nms.iou_threshold=2',
             'SlicedTTAModel: tta_model.tta_cfg.nms.iou_threshold must be '
             'a number in [0, 1]'),
            ('tta_model.batch_size=0',
             'tta_model.batch_size must be an integer >= 1'),
            ('tta_model.full_image_factor=0.0001',
             'to under one pixel per side'),
            ('runner_type=Runner',
             "tests SlicedTTAModel (tta_model) but runner_type is 'Runner'")):
        proc = run_tool(['tools/test.py', cfg, ckpt, '--tta',
                         '--work-dir', str(tmp_path / 'w'),
                         '--cfg-options', option], check=False)
        line = _single_error_line(proc)
        assert want in line, line
