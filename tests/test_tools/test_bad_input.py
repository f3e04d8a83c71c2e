# Copyright (c) mmsnip contributors. All rights reserved.
"""Bad input gives a one-line `error:` naming the thing, exit status 2."""
import os.path as osp
import shutil

from conftest import run_in_process, run_tool, tiny_config


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


def test_config_that_mmengine_cannot_merge(tiny_demo_root, tmp_path,
                                           monkeypatch, capsys):
    """A child config or a --cfg-options entry that sets a dict over a
    base value of another type (MMEngine's merge TypeError): one line
    naming the file or the option (was: a TypeError traceback)."""
    child = tmp_path / 'child.py'
    child.write_text("_base_ = 'mmdet::_base_/default_runtime.py'\n"
                     "log_level = dict(x=1)\n")
    line = _single_error_line(run_tool(['tools/train.py', str(child)],
                                       check=False))
    assert line.startswith(f'error: config file "{child}" could not be '
                           'loaded: TypeError: log_level=') and \
        '_delete_=True' in line, line
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'))
    for tool in (['tools/train.py', cfg],
                 ['tools/test.py', cfg, str(tmp_path / 'none.pth')]):
        proc = run_in_process(tool + ['--cfg-options', 'log_level=INFO',
                                      'model.backbone.depth.x=1'],
                              monkeypatch, capsys)
        line = _single_error_line(proc)
        assert line.startswith("error: --cfg-options "
                               "model.backbone.depth.x=1: depth={'x': 1} "
                               'in child config cannot inherit'), line


def test_config_entry_that_does_not_build(tiny_demo_root, tmp_path,
                                          monkeypatch, capsys):
    """A type no registry knows, a keyword its class does not take, a
    custom_imports module that is not importable: one line naming the
    config entry and the closest names, from every tool that loads a
    config (was: MMEngine's KeyError / TypeError / ImportError traceback
    naming no entry)."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'), base=SNIPER_DEMO)
    ckpt = tmp_path / 'any.pth'
    ckpt.write_bytes(b'')  # the model fails to build before it is read
    for tool, option, want in (
            ('train.py', 'train_dataloader.dataset.pipeline.3.type=RandmFlip',
             "error: train_dataloader.dataset.pipeline[3]: type "
             "'RandmFlip' is not in the mmsnip::transform registry; did you "
             "mean 'RandomFlip'"),
            ('test.py', 'model.backbone.dept=18',
             "error: model.backbone: ResNet takes no argument 'dept'; did "
             "you mean 'depth'"),
            ('mine_proposals.py', 'model.rpn_head.type=RPNHaed',
             "error: model.rpn_head: type 'RPNHaed' is not in the "
             "mmdet::model registry; did you mean 'RPNHead'")):
        args = [f'tools/{tool}', cfg] + {
            'test.py': [str(ckpt)],
            'mine_proposals.py': [str(ckpt), '--out',
                                  str(tmp_path / 'p.pkl')]}.get(tool, [])
        args += ['--cfg-options', option]
        line = _single_error_line(
            run_tool(args, check=False) if tool == 'train.py' else
            run_in_process(args, monkeypatch, capsys))
        assert want in line, line
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = {cfg!r}\n"
                     "custom_imports = dict(imports=['no_such_module'])\n")
    line = _single_error_line(run_in_process(
        ['tools/train.py', str(child)], monkeypatch, capsys))
    assert line == (
        f'error: config file "{child}": its custom_imports failed: Failed '
        "to import no_such_module (ModuleNotFoundError: No module named "
        "'no_such_module'); put the folder that holds the module on "
        'PYTHONPATH, or fix the name'), line


def test_bad_loader_and_schedule_settings_are_one_error_line(
        tiny_demo_root, tmp_path, monkeypatch, capsys):
    """Dataloader and schedule values PyTorch or MMEngine refuse only once
    the runner is built: one line naming the entry, before anything is
    built (was: a traceback naming no entry, e.g. `ValueError: end should
    be larger than begin` for 0 epochs)."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'))
    for option, want in (
            ('train_dataloader.batch_size=0',
             'train_dataloader.batch_size must be an integer >= 1, got 0'),
            ('train_dataloader.num_workers=-1',
             'train_dataloader.num_workers must be an integer >= 0'),
            ('train_dataloader.persistent_workers=True',
             'train_dataloader.persistent_workers=True needs worker '
             'processes'),
            ('train_cfg.max_epochs=0',
             'train_cfg.max_epochs must be an integer >= 1, got 0'),
            ('optim_wrapper.optimizer.lr=-0.1',
             'optim_wrapper.optimizer.lr must be a finite number')):
        args = ['tools/train.py', cfg, '--cfg-options', option]
        line = _single_error_line(
            run_tool(args, check=False) if option.endswith('size=0') else
            run_in_process(args, monkeypatch, capsys))
        assert line.startswith(f'error: {want}'), line
    line = _single_error_line(run_in_process(
        ['tools/train.py', cfg, '--auto-scale-lr', '--cfg-options',
         'auto_scale_lr=None'], monkeypatch, capsys))
    assert line.startswith('error: --auto-scale-lr needs auto_scale_lr = '
                           'dict(enable=False, base_batch_size=N)'), line
    ckpt = tmp_path / 'any.pth'
    ckpt.write_bytes(b'')  # refused before it is read
    line = _single_error_line(run_in_process(
        ['tools/test.py', cfg, str(ckpt), '--cfg-options',
         'test_dataloader.batch_size=0'], monkeypatch, capsys))
    assert line.startswith('error: test_dataloader.batch_size must be'), \
        line


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


def test_bad_chip_cfg_values_are_one_error_line(tiny_demo_root, tmp_path,
                                                monkeypatch, capsys):
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
        args = ['tools/train.py', cfg, '--cfg-options', option]
        proc = run_tool(args, check=False) if 'off_grid' in option else \
            run_in_process(args, monkeypatch, capsys)
        line = _single_error_line(proc)
        assert f'{entry}: ' in line and want in line, line


SLICED_DEMO = osp.join('configs', 'autofocus',
                       'sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py')


def test_bad_test_time_model_settings_are_one_error_line(tiny_demo_root,
                                                         tmp_path,
                                                         monkeypatch,
                                                         capsys):
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
        args = ['tools/test.py', cfg, ckpt, '--tta', '--work-dir',
                str(tmp_path / 'w'), '--cfg-options', option]
        proc = run_tool(args, check=False) if 'factor' in option else \
            run_in_process(args, monkeypatch, capsys)
        line = _single_error_line(proc)
        assert want in line, line


def test_missing_resume_or_load_from_checkpoint(tiny_demo_root, tmp_path):
    """A `--resume` or `load_from` checkpoint that does not exist (a typo)
    is one error line before anything is built (was: a FileNotFoundError
    traceback after the chip table and the model were built)."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'), base=SNIPER_DEMO)
    for args, what in (
            (['--resume', str(tmp_path / 'none.pth')], '--resume'),
            (['--cfg-options', f'load_from={tmp_path}'], 'load_from')):
        proc = run_tool(['tools/train.py', cfg] + args, check=False)
        line = _single_error_line(proc)
        assert line.startswith(f'error: {what} checkpoint "{tmp_path}'), \
            line
        assert 'SniperDataset:' not in proc.stdout + proc.stderr


def test_a_work_dir_that_cannot_be_made_is_one_error_line(tiny_demo_root,
                                                         tmp_path):
    """``--work-dir`` (or the config's ``work_dir``) under a file, so it
    cannot be created: one error line naming it, before anything is
    built, from tools/train.py and tools/test.py (was: MMEngine's
    NotADirectoryError traceback). The config's work_dir:
    tests/test_utils/test_preflight.py::test_set_work_dir."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'), base=SNIPER_DEMO)
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')
    for cmd in (['tools/train.py', cfg],
                ['tools/test.py', cfg, str(ckpt)]):
        proc = run_tool(cmd + ['--work-dir', str(blocker / 'w')],
                        check=False)
        line = _single_error_line(proc)
        assert line == (f'error: --work-dir "{blocker}/w": cannot create '
                        'the folder (Not a directory)'), line
        assert 'SniperDataset:' not in proc.stdout + proc.stderr


def test_proposals_of_other_scales_are_one_error_line(tiny_demo_root,
                                                      tmp_path, monkeypatch,
                                                      capsys):
    """tools/train.py on a stage-2 config whose proposal file was mined
    for other chip scales (or damaged): one error line naming the entry
    and the file, before anything is built (was: the dataset's ValueError
    as a traceback, after the annotations were parsed)."""
    import numpy as np
    from conftest import tiny_stage2_config

    from mmsnip.chips import ChipConfig
    from mmsnip.datasets import save_proposals
    cfg, ids = tiny_stage2_config(tiny_demo_root, tmp_path)
    mined = ChipConfig.from_dict(dict(scales=[
        dict(max_side=512, valid_range=(100, None)),
        dict(factor=1.5, valid_range=(32, 160)),  # the config: 1.0
        dict(factor=2.0, valid_range=(0, 48))]))
    props = str(tmp_path / 'props.pkl')
    save_proposals(props, {i: [np.array([[0, 0, 20, 20, 1.0]])] * 3
                           for i in ids}, num_scales=3, scales=mined.scales)
    ckpt = tmp_path / 'stage1.pth'
    ckpt.write_bytes(b'')
    args = ['--cfg-options', f'train_dataloader.dataset.proposal_file={props}',
            f'load_from={ckpt}']
    proc = run_tool(['tools/train.py', cfg] + args, check=False)
    line = _single_error_line(proc)
    assert line.startswith(
        'error: train_dataloader.dataset.proposal_file: proposal file '
        f'"{props}" was mined for chip_cfg.scales[1] factor=1.5, the chip '
        'config has factor=1.0'), line
    assert 'SniperDataset:' not in proc.stdout + proc.stderr
    with open(props, 'r+b') as f:  # damaged: its structure
        f.truncate(200)
    line = _single_error_line(run_in_process(
        ['tools/train.py', cfg] + args, monkeypatch, capsys))
    assert line.startswith('error: train_dataloader.dataset.proposal_file: '
                           f'proposal file "{props}" is not readable'), line


def test_dataset_refusals_are_one_error_line(tiny_demo_root, tmp_path):
    """tools/train.py on chip settings that leave no positive chip: the
    dataset's refusal (built inside the runner) is one `error:` line
    (was: a traceback ending in `ValueError: SniperDataset: ...`)."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'), base=SNIPER_DEMO)
    ranges = ['(120,None)', '(110,160)', '(100,130)']  # objects: 12-96 px
    options = [f'{entry}.scales.{i}.valid_range={r}'
               for entry in ('chip_cfg', 'train_dataloader.dataset.chip_cfg')
               for i, r in enumerate(ranges)]
    proc = run_tool(['tools/train.py', cfg, '--cfg-options', *options],
                    check=False)
    line = _single_error_line(proc)
    assert line.startswith('error: SniperDataset: ') and \
        'no positive chip' in line, line
