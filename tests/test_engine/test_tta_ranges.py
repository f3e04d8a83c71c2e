# Copyright (c) mmsnip contributors. All rights reserved.
"""The test pyramid's valid ranges against the chips' (SnipRunner)."""
import glob
import os.path as osp

import pytest
from conftest import REPO_ROOT, run_tool, tiny_config
from mmengine.config import Config

from mmsnip.engine.runner import tta_range_problem

SNIPER_DEMO = osp.join(REPO_ROOT, 'configs/sniper',
                       'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
AUTOFOCUS_DEMO = osp.join(REPO_ROOT, 'configs/autofocus',
                          'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
SHIPPED = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs/**/*.py'),
                         recursive=True) if '/_base_/' not in p)
# The pattern of docs/custom_dataset.md: the child replaces chip_cfg with
# other ranges (the demo base tests with (100, inf), (32, 160), (0, 48)).
CHILD_CHIPS = """
chip_cfg = dict(
    _delete_=True,
    chip_size=256,
    chip_stride=32,
    scales=[
        dict(max_side=512, valid_range=(64, None)),
        dict(factor=1.0, valid_range=(24, 128)),
        dict(factor=2.0, valid_range=(0, 40)),
    ])
train_dataloader = dict(dataset=dict(chip_cfg=chip_cfg))
"""
FIX = {
    'SnipTTAModel': "tta_model = dict(scales=chip_cfg['scales'])\n",
    # AutoFocus: the new ranges with the base's focus settings (a list
    # replaces the base's whole)
    'AutoFocusTTAModel': """
tta_model = dict(scales=[
    dict(max_side=512, valid_range=(64, None), threshold=0.02,
         dilation=3, min_size=128, border_tol=1.0),
    dict(factor=1.0, valid_range=(24, 128), threshold=0.05, dilation=3,
         min_size=128, border_tol=1.0),
    dict(factor=2.0, valid_range=(0, 40), border_tol=1.0),
])
"""}


def _child(tmp_path, base, body=CHILD_CHIPS, name='child.py') -> str:
    path = tmp_path / name
    path.write_text(f'_base_ = {str(base)!r}\n{body}')
    return str(path)


@pytest.mark.parametrize('path', SHIPPED,
                         ids=[osp.relpath(p, REPO_ROOT) for p in SHIPPED])
def test_shipped_configs_test_with_their_training_ranges(path):
    """Or say they do not on purpose: the COCO AutoFocus config tests with
    the original code's AutoFocus ranges (docs/autofocus.md)."""
    cfg = Config.fromfile(path)
    on_purpose = (cfg.get('snip_test') or {}).get('allow_other_ranges')
    assert (tta_range_problem(cfg) is None) != bool(on_purpose)
    assert not on_purpose or path.endswith(
        'autofocus_faster-rcnn_r50_fpn_7e_coco.py')


@pytest.mark.parametrize('base, model', [(SNIPER_DEMO, 'SnipTTAModel'),
                                         (AUTOFOCUS_DEMO,
                                          'AutoFocusTTAModel')])
def test_child_replacing_chip_cfg_must_set_the_test_scales(
        base, model, tmp_path):
    problem = tta_range_problem(Config.fromfile(_child(tmp_path, base)))
    assert problem.startswith(
        f'tta_model.scales ({model}) has the valid ranges [(100, inf), '
        '(32, 160), (0, 48)] but the chips train with '
        'train_dataloader.dataset.chip_cfg.scales [(64, inf), (24, 128), '
        '(0, 40)] (sqrt(area), ORIGINAL pixels); [(100, inf), (32, 160), '
        '(0, 48)] not among them')
    assert f'for {model} ' in problem
    assert "tta_model = dict(scales=chip_cfg['scales'])" in problem
    assert 'snip_test = dict(allow_other_ranges=True)' in problem
    fixed = Config.fromfile(
        _child(tmp_path, base, CHILD_CHIPS + FIX[model], 'fixed.py'))
    assert tta_range_problem(fixed) is None
    if model == 'AutoFocusTTAModel':  # the focus settings are kept
        assert fixed.tta_model.scales[1]['threshold'] == 0.05


def test_what_may_differ_and_what_may_not(tmp_path):
    """Other factor rules and a subset of the training scales are fine
    (Sec. 4.4.5 tests the lower two scales alone); one range off is not;
    without a chip dataset there is nothing to compare."""
    cfg = Config.fromfile(SNIPER_DEMO)
    cfg.tta_model.scales = [
        dict(short_max=(800, 1200), valid_range=(32, 160)),
        dict(factor=2.5, valid_range=(0, 48)),
    ]
    assert tta_range_problem(cfg) is None
    cfg.tta_model.scales[1]['valid_range'] = (0, 50)
    assert '; [(0, 50)] not among them' in tta_range_problem(cfg)
    # tools/test.py --tta: the model is the TTA model; named once
    cfg.model = dict(cfg.tta_model, module=cfg.model)
    assert tta_range_problem(cfg).startswith('tta_model.scales')
    cfg.tta_model = None
    assert tta_range_problem(cfg).startswith('model.scales')
    cfg.train_dataloader.dataset = cfg.train_dataloader.dataset.dataset
    assert tta_range_problem(cfg) is None
    # the chips inside a wrapper are named where they are
    wrapped = Config.fromfile(_child(tmp_path, SNIPER_DEMO))
    wrapped.train_dataloader.dataset = dict(
        type='ConcatDataset', datasets=[wrapped.train_dataloader.dataset])
    assert 'train_dataloader.dataset.datasets[0].chip_cfg.scales' in \
        tta_range_problem(wrapped)


def test_test_refuses_training_warns_and_the_opt_out_logs(
        tiny_demo_root, tmp_path):
    """Refused where the pyramid runs (tools/test.py --tta); a warning
    when training, which does not use tta_model; the opt-out (other
    ranges on purpose) is logged."""
    base = tiny_config(tiny_demo_root, str(tmp_path / 'work'),
                       str(tmp_path / 'base.py'), base=SNIPER_DEMO)
    child = _child(tmp_path, base)
    ckpt = tmp_path / 'any.pth'
    ckpt.write_bytes(b'')  # refused before it is read
    proc = run_tool(['tools/test.py', child, str(ckpt), '--tta'],
                    check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert 'model.scales (SnipTTAModel)' in errors[0]
    assert 'allow_other_ranges=True' in errors[0]
    from mmsnip.engine import SnipRunner
    from mmsnip.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    def log_of(cfg):
        return open(SnipRunner.from_cfg(cfg).logger.log_file).read()

    # training: the runner builds and warns
    log = log_of(Config.fromfile(child))
    assert 'WARNING - SnipRunner: tta_model.scales (SnipTTAModel)' in log
    # the opt-out, also for the pyramid itself: logged, not refused
    opt_out = Config.fromfile(_child(
        tmp_path, base,
        CHILD_CHIPS + 'snip_test = dict(allow_other_ranges=True)\n',
        'opt_out.py'))
    opt_out.model = dict(opt_out.tta_model, module=opt_out.model)
    log = log_of(opt_out)
    assert 'INFO - SnipRunner: tta_model.scales (SnipTTAModel)' in log
    assert 'allowed by snip_test.allow_other_ranges' in log


def test_the_walkthrough_snippet_tests_with_its_own_ranges(tmp_path):
    """The config snippet of docs/custom_dataset.md (step 1), as a child
    of the demo SNIPER config: its test pyramid has its chips' ranges, and
    its chips are those of the aerial config it documents."""
    text = open(osp.join(REPO_ROOT, 'docs', 'custom_dataset.md')).read()
    end = text.index('**Replacing `chip_cfg` means setting the test scales')
    start = text.rindex('```python\n', 0, end) + len('```python\n')
    snippet = text[start:text.index('```', start)]
    assert "tta_model = dict(scales=chip_cfg['scales'])" in snippet
    cfg = Config.fromfile(_child(tmp_path, SNIPER_DEMO, snippet))
    assert tta_range_problem(cfg) is None
    aerial = Config.fromfile(osp.join(
        REPO_ROOT, 'configs', 'aerial',
        'sniper_faster-rcnn_r18-w16_fpn_8e_aerial.py'))
    assert cfg.train_dataloader.dataset.chip_cfg == \
        aerial.train_dataloader.dataset.chip_cfg
    assert cfg.tta_model.scales == aerial.tta_model.scales


def test_training_a_plain_detector_under_an_autofocus_tta_model_warns(
        tiny_demo_root, tmp_path):
    """A config whose tta_model is AutoFocusTTAModel but whose model is
    not AutoFocus (a later ``model = dict(...)`` in the same file replaced
    the AutoFocus one, or only tta_model was swapped) trains the detector
    without a FocusPixel head, which only tools/test.py --tta refused, at
    the end. The runner says so when training starts; tools/test.py --tta
    refuses it from the config (test_preflight.py)."""
    from mmsnip.engine import SnipRunner
    from mmsnip.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                                      str(tmp_path / 'cfg.py'),
                                      base=SNIPER_DEMO))
    cfg.tta_model = dict(type='mmsnip.AutoFocusTTAModel',
                         scales=cfg.tta_model.scales)
    log = open(SnipRunner.from_cfg(cfg).logger.log_file).read()
    assert ('WARNING - SnipRunner: tta_model (AutoFocusTTAModel) runs the '
            'cascade of an AutoFocus model (a detector with a FocusPixel '
            'head), but model is a FasterRCNN') in log
    assert 'this training has no FocusPixel head' in log
