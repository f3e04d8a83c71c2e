# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.utils.preflight: the chip settings a config trains with."""
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import REPO_ROOT
from mmsnip.utils.preflight import chip_config_of, load_config


def test_chip_config_of_reads_the_chip_datasets_settings():
    """A config whose top-level chip_cfg is not its chip dataset's (the
    AutoFocus DINO demo once inherited coco_chips.py's; SnipRunner now
    refuses it for training): the tools (export_chips, browse_chips) read
    the dataset's, the one the chips use."""
    cfg = load_config(osp.join(REPO_ROOT, 'configs', 'autofocus',
                               'autofocus_dino-4scale_r18-w16_12e_demo.py'))
    cfg.chip_cfg = load_config(osp.join(
        REPO_ROOT, 'configs', '_base_', 'sniper', 'coco_chips.py')).chip_cfg
    trained = cfg.train_dataloader.dataset.chip_cfg
    assert cfg.chip_cfg.scales != trained.scales  # the trap
    chips = chip_config_of(cfg)
    assert [s.valid_range for s in chips.scales] == [
        (lo, float('inf') if hi is None else hi)
        for lo, hi in (s['valid_range'] for s in trained.scales)]
    # a config of chip settings only: the top-level one
    cfg.train_dataloader.dataset = dict(type='CocoDataset')
    assert [s.valid_range for s in chip_config_of(cfg).scales] == [
        (lo, float('inf') if hi is None else hi)
        for lo, hi in (s['valid_range'] for s in cfg.chip_cfg.scales)]


def test_amp_without_a_gpu_is_one_error(monkeypatch):
    """--amp (AmpOptimWrapper) on a machine without CUDA: an error naming
    the entry and the fix (mmengine only asserts)."""
    import mmengine.device

    from mmsnip.utils.preflight import UserInputError, check_amp_device
    for name in ('cuda', 'npu', 'mlu', 'musa'):
        monkeypatch.setattr(mmengine.device, f'is_{name}_available',
                            lambda: False)
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper')))
    with pytest.raises(UserInputError, match=r"optim_wrapper.type is "
                       r"'AmpOptimWrapper' \(mixed precision, also set by "
                       r"--amp\), which needs a CUDA GPU \(or an NPU, "
                       r"MLU, MUSA device\).*optim_wrapper."
                       r"type=OptimWrapper"):
        check_amp_device(cfg)
    check_amp_device(Config(dict(optim_wrapper=dict(type='OptimWrapper'))))
    monkeypatch.setattr(mmengine.device, 'is_npu_available', lambda: True)
    check_amp_device(cfg)  # an NPU machine: mmengine runs AMP there


def test_tta_pipeline_without_a_resize_for_a_scale_is_an_error():
    """A scale of SnipTTAModel that no ResizeToScale of the tta_pipeline
    resizes to never runs: found from the config (tools/test.py --tta),
    before the dataset and the checkpoint load; the shipped pipelines
    pass, and a pipeline of other resizes is left to the model."""
    from mmsnip.utils.preflight import (UserInputError, check_tta_config,
                                        tta_resize_problem)
    scales = [dict(max_side=512, valid_range=(120, None)),
              dict(factor=1.667, valid_range=(32, 150)),
              dict(factor=3.0, valid_range=(0, 80))]

    def pipeline(resizes):
        return [dict(type='LoadImageFromFile'),
                dict(type='TestTimeAug', transforms=[
                    resizes, [dict(type='PackDetInputs')]])]

    def resize(scale):
        return dict(type='mmsnip.ResizeToScale', scale=scale)

    model = dict(type='mmsnip.SnipTTAModel', scales=scales)
    full = pipeline([resize(s) for s in scales])
    assert tta_resize_problem(model, full) is None
    # the resize rule counts, not the valid range written beside it
    assert tta_resize_problem(model, pipeline(
        [resize(dict(max_side=512)), resize(dict(factor=1.667)),
         resize(dict(factor=3.0))])) is None
    two = pipeline([resize(s) for s in scales[:2]])
    with pytest.raises(UserInputError, match=r'has scales\[2\] \(factor=3.0'
                       r'\), but no ResizeToScale'):
        check_tta_config(Config(dict(tta_model=model, tta_pipeline=two)))
    assert "scale=dict(factor=3.0))" in tta_resize_problem(model, two)
    # mmdet's Resize, or another TTA model: not judged here
    assert tta_resize_problem(model, pipeline(
        [dict(type='Resize', scale=(1333, 800), keep_ratio=True)])) is None
    assert tta_resize_problem(dict(type='DetTTAModel'), two) is None


def test_chip_tta_model_with_a_pipeline_of_views_is_an_error():
    """AutoFocusTTAModel / SlicedTTAModel take each image once, whole; a
    tta_pipeline with a TestTimeAug (the SNIPER base's
    snip_tta_pipeline, kept by a config that swapped only tta_model) is
    found from the config by tools/test.py --tta, before anything is
    built (was: an AttributeError deep in the cascade)."""
    from mmsnip.utils.preflight import UserInputError, check_tta_config
    views = [dict(type='LoadImageFromFile'),
             dict(type='TestTimeAug', transforms=[
                 [dict(type='mmsnip.ResizeToScale', scale=dict(factor=1.0))],
                 [dict(type='PackDetInputs')]])]
    whole = [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]
    for name in ('mmsnip.AutoFocusTTAModel', 'SlicedTTAModel'):
        model = dict(type=name, scales=[dict(factor=1.0)])
        with pytest.raises(UserInputError) as e:
            check_tta_config(Config(dict(tta_model=model,
                                         tta_pipeline=views)))
        short = name.split('.')[-1]
        assert str(e.value) == (
            f'the config: tta_model ({short}) takes each image once, whole, '
            'and resizes its chips itself, but tta_pipeline[1] is a '
            'TestTimeAug (several views of each image, e.g. '
            'snip_tta_pipeline of the SNIPER base, for SnipTTAModel): set '
            'tta_pipeline = {{_base_.chip_tta_pipeline}} '
            '(configs/_base_/autofocus/chip_test.py)')
        check_tta_config(Config(dict(tta_model=model, tta_pipeline=whole)))
    check_tta_config(Config(dict(
        tta_model=dict(type='mmsnip.SnipTTAModel',
                       scales=[dict(factor=1.0)]), tta_pipeline=views)))


def test_autofocus_tta_model_around_a_plain_detector_is_an_error():
    """tools/test.py --tta with tta_model AutoFocusTTAModel but a model
    that is not AutoFocus (a config that swapped only tta_model, or a
    later `model = dict(...)` in the same file that replaced the AutoFocus
    one): one error line from the config (was: a TypeError traceback when
    the runner built the model)."""
    from mmsnip.utils.preflight import UserInputError, check_tta_config
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]
    tta = dict(type='mmsnip.AutoFocusTTAModel', scales=[dict(factor=1.0)])
    cfg = Config(dict(model=dict(type='RTMDet'), tta_model=tta,
                      tta_pipeline=pipeline))
    with pytest.raises(UserInputError) as e:
        check_tta_config(cfg)
    assert str(e.value) == (
        'the config: tta_model (AutoFocusTTAModel) runs the cascade of an '
        'AutoFocus model (a detector with a FocusPixel head), but model is '
        "a RTMDet: wrap it, model = dict(_delete_=True, type="
        "'mmsnip.AutoFocus', detector=..., focus_head=..., focus_level=...)"
        ' (docs/autofocus.md), or test the full pyramid with SnipTTAModel')
    cfg.model = dict(type='mmsnip.AutoFocus', detector=dict(type='RTMDet'))
    check_tta_config(cfg)


def test_tta_without_a_test_time_model_is_one_error():
    """tools/test.py --tta on a config without tta_model or tta_pipeline
    (or with None): an error, not MMDetection's silent flip test."""
    from mmsnip.utils.preflight import UserInputError, check_tta_config
    pipeline = [dict(type='LoadImageFromFile')]
    for cfg, missing in [
            (dict(), 'tta_model and tta_pipeline'),
            (dict(tta_model=None, tta_pipeline=pipeline), 'tta_model'),
            (dict(tta_model=dict(type='SnipTTAModel')), 'tta_pipeline')]:
        with pytest.raises(UserInputError,
                           match=f'--tta needs {missing} in the config'):
            check_tta_config(Config(cfg))
    check_tta_config(Config(dict(tta_model=dict(type='SnipTTAModel'),
                                 tta_pipeline=pipeline)))


def test_set_work_dir(tmp_path, monkeypatch):
    """--work-dir, else the config's work_dir, else work_dirs/<name>; a
    folder that cannot be made is named with where it came from."""
    from mmsnip.utils.checks import UserInputError
    from mmsnip.utils.preflight import set_work_dir
    monkeypatch.chdir(tmp_path)
    cfg = Config(dict(work_dir=str(tmp_path / 'cfg')))
    assert set_work_dir(cfg, None, 'x/my_cfg.py') == str(tmp_path / 'cfg')
    assert set_work_dir(cfg, 'cli', 'x/my_cfg.py') == cfg.work_dir == 'cli'
    assert set_work_dir(Config(), None, 'x/my_cfg.py') == osp.join(
        './work_dirs', 'my_cfg')
    assert osp.isdir(tmp_path / 'work_dirs' / 'my_cfg')
    (tmp_path / 'a_file').write_text('x')
    with pytest.raises(UserInputError, match=r'^work_dir "a_file/w": '
                       r'cannot create the folder \(Not a directory\)$'):
        set_work_dir(Config(dict(work_dir='a_file/w')), None, 'c.py')


def test_auto_resume_from_a_checkpoint_that_is_gone(tmp_path):
    """``--resume`` without a path resumes from the checkpoint the work
    folder's ``last_checkpoint`` names. Named but gone: the one of that
    name in the work folder (the folder was moved: the file holds an
    absolute path), else one error line listing those there (was: a
    FileNotFoundError traceback after the dataset and model were
    built)."""
    from mmsnip.utils.checks import UserInputError
    from mmsnip.utils.preflight import check_load_from
    work = tmp_path / 'moved'
    work.mkdir()
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    check_load_from(cfg)  # no last_checkpoint: a fresh start
    assert cfg.load_from is None
    (work / 'last_checkpoint').write_text('/old/place/epoch_3.pth')
    for name in ('epoch_2.pth', 'epoch_3.pth', 'epoch_10.pth'):
        (work / name).write_bytes(b'PK')
    check_load_from(cfg)
    assert cfg.load_from == str(work / 'epoch_3.pth')
    cfg.load_from = None
    (work / 'epoch_3.pth').unlink()
    with pytest.raises(UserInputError, match=(
            r'^--resume: .*moved/last_checkpoint" names the checkpoint '
            r'"/old/place/epoch_3.pth", which does not exist.*--resume '
            r'.*moved/epoch_10.pth \(checkpoints there: epoch_2.pth, '
            r'epoch_10.pth\)')):
        check_load_from(cfg)


def test_last_checkpoint_reads_mmengines_record(tmp_path):
    """The one reader of a work folder's ``last_checkpoint`` (tools/demo.py
    and auto-resume): the path as written, None without a record or with
    an empty one."""
    from mmsnip.utils.preflight import last_checkpoint
    assert last_checkpoint(str(tmp_path)) is None
    (tmp_path / 'last_checkpoint').write_text('  \n')
    assert last_checkpoint(str(tmp_path)) is None
    (tmp_path / 'last_checkpoint').write_text('/w/epoch_3.pth\n')
    assert last_checkpoint(str(tmp_path)) == '/w/epoch_3.pth'
    (tmp_path / 'last_checkpoint').unlink()
    (tmp_path / 'last_checkpoint').mkdir()  # unreadable as a file
    assert last_checkpoint(str(tmp_path)) is None
