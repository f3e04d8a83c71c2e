# Copyright (c) mmsnip contributors. All rights reserved.
"""Config checks of SnipRunner that keep SNIP's label rule on: the chip
pipeline, one chip_cfg, no chip dataset at evaluation."""
import copy
import glob
import os.path as osp

import pytest
from conftest import REPO_ROOT, run_tool, tiny_config
from mmengine.config import Config

from mmdet.datasets.transforms import LoadAnnotations

from mmsnip.datasets import SniperDataset
from mmsnip.datasets.transforms import CropChip, PackChipInputs
from mmsnip.engine import SnipRunner
from mmsnip.engine.runner import (chip_eval_problems, chip_training_problems,
                                  require_snip_runner, trains_on_chips)
from mmsnip.utils.dataset_audit import sources_from_config
from mmsnip.utils.preflight import UserInputError

SNIPER_DEMO = osp.join(REPO_ROOT, 'configs/sniper',
                       'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
SHIPPED = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs/**/*.py'),
                         recursive=True) if '/_base_/' not in p)
PIPELINE_ENTRY = 'train_dataloader.dataset.pipeline (SniperDataset)'


class MyCrop(CropChip):
    pass


class MyPack(PackChipInputs):
    pass


def _with_pipeline(steps) -> Config:
    cfg = Config.fromfile(SNIPER_DEMO)
    cfg.train_dataloader.dataset.pipeline = steps
    return cfg


LOAD = [dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True)]


@pytest.mark.parametrize('steps, missing', [
    (LOAD + [dict(type='Resize', scale=(256, 256)),
             dict(type='PackDetInputs')],
     ['has no CropChip', 'does not end with PackChipInputs']),
    (LOAD + [dict(type='mmsnip.CropChip'), dict(type='PackDetInputs')],
     ['does not end with PackChipInputs']),
    (LOAD + [dict(type='CropChip'), dict(type='PackChipInputs'),
             dict(type='RandomFlip', prob=0.5)],
     ['does not end with PackChipInputs']),
    ([LOAD[0], dict(type='CropChip'), dict(type='PackChipInputs')],
     ['has no LoadAnnotations before CropChip']),
    ([LOAD[0], dict(type='CropChip'), LOAD[1],
      dict(type='PackChipInputs')],
     ['has no LoadAnnotations before CropChip']),
])
def test_chip_pipeline_must_crop_and_pack_scale_validity(steps, missing):
    """Without CropChip, LoadAnnotations before it or PackChipInputs last,
    no box carries scale_valid and every box trained as valid, silently
    (was: training ran)."""
    problems = [p for p in chip_training_problems(_with_pipeline(steps))
                if p.startswith(PIPELINE_ENTRY)]
    assert len(problems) == 1, problems
    for what in missing:
        assert what in problems[0]
    assert "SNIP's label rule is off" in problems[0]
    assert 'PackChipInputs last' in problems[0]
    # the pipeline it points to is in the file it names
    import re
    path, name = re.search(r"\(as (\S+)'s (\w+)\)", problems[0]).groups()
    assert name in Config.fromfile(osp.join(REPO_ROOT, path))


@pytest.mark.parametrize('steps', [
    LOAD + [dict(type='CropChip'), dict(type='RandomFlip', prob=0.5),
            dict(type='PackChipInputs')],
    LOAD + [dict(type='mmsnip.CropChip'), dict(type='mmsnip.PackChipInputs')],
    LOAD + [dict(type=MyCrop), dict(type=MyPack)],
    [LOAD[0], dict(type='mmdet.LoadAnnotations', with_bbox=True),
     CropChip(), MyPack()],
])
def test_chip_pipeline_subclasses_and_scopes_are_accepted(steps):
    assert not [p for p in chip_training_problems(_with_pipeline(steps))
                if p.startswith(PIPELINE_ENTRY)]


def test_train_tool_refuses_a_chip_pipeline_without_pack(tiny_demo_root,
                                                         tmp_path):
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'), base=SNIPER_DEMO)
    proc = run_tool(['tools/train.py', cfg, '--cfg-options',
                     'train_dataloader.dataset.pipeline.4.type='
                     'PackDetInputs'], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr
    assert PIPELINE_ENTRY in errors[0]
    assert 'does not end with PackChipInputs' in errors[0]


def _chip_cfg_problems(cfg):
    return [p for p in chip_training_problems(cfg)
            if p.startswith('chip_cfg (top level)')]


def test_top_level_chip_cfg_must_be_the_chips(tmp_path):
    """A chip_cfg changed at the top level only (a child config,
    --cfg-options chip_cfg.chip_size=128) changed nothing the chips use
    (was: ignored, silently)."""
    cfg = Config.fromfile(SNIPER_DEMO)
    assert not _chip_cfg_problems(cfg)
    cfg.merge_from_dict({'chip_cfg.chip_size': 128})
    problem, = _chip_cfg_problems(cfg)
    assert 'train_dataloader.dataset.chip_cfg' in problem
    assert 'train_dataloader = dict(dataset=dict(chip_cfg=chip_cfg))' in \
        problem
    child = tmp_path / 'child.py'
    body = ("chip_cfg = dict(chip_size=128)\n")
    child.write_text(f'_base_ = {SNIPER_DEMO!r}\n{body}')
    assert _chip_cfg_problems(Config.fromfile(str(child)))
    child.write_text(f'_base_ = {SNIPER_DEMO!r}\n{body}'
                     'train_dataloader = dict(dataset=dict('
                     'chip_cfg=chip_cfg))\n')
    assert not _chip_cfg_problems(Config.fromfile(str(child)))
    # --cfg-options: the message's advice (both keys) passes
    assert 'give both chip_cfg.X=V and train_dataloader.dataset.' \
        'chip_cfg.X=V' in problem
    cfg = Config.fromfile(SNIPER_DEMO)
    cfg.merge_from_dict({'chip_cfg.chip_size': 128,
                         'train_dataloader.dataset.chip_cfg.chip_size': 128})
    assert not _chip_cfg_problems(cfg)
    # the same settings written another way are the same chip_cfg
    cfg = Config.fromfile(SNIPER_DEMO)
    scales = copy.deepcopy(cfg.chip_cfg.scales)
    scales[1]['factor'] = int(scales[1]['factor'])
    cfg.chip_cfg.scales = scales
    assert not _chip_cfg_problems(cfg)


def test_a_chip_cfg_with_delete_in_a_replaced_dataset_passes(tmp_path):
    """The SNIPER template replaces the dataset (``_delete_=True``); a
    child's own ``chip_cfg = dict(_delete_=True, ...)`` given to it keeps
    MMEngine's ``_delete_``: accepted, and equal to the top-level one
    (was: ``error: ... train_dataloader.dataset.chip_cfg: unknown
    ChipConfig field(s) ['_delete_']``)."""
    from mmsnip.utils.preflight import check_chip_cfgs
    child = tmp_path / 'child.py'
    child.write_text(
        f'_base_ = {SNIPER_DEMO!r}\n'
        'chip_cfg = dict(_delete_=True, chip_size=128, scales=[\n'
        '    dict(factor=1.0, valid_range=(0, None))])\n'
        'train_dataloader = dict(dataset=dict(\n'
        '    _delete_=True, type=\'SniperDataset\', chip_cfg=chip_cfg,\n'
        '    pipeline={{_base_.sniper_train_pipeline}},\n'
        '    dataset={{_base_.train_dataloader.dataset.dataset}}))\n')
    cfg = Config.fromfile(str(child))
    assert cfg.train_dataloader.dataset.chip_cfg.get('_delete_')
    check_chip_cfgs(cfg)
    assert not _chip_cfg_problems(cfg)


@pytest.mark.parametrize('path', SHIPPED,
                         ids=[osp.relpath(p, REPO_ROOT) for p in SHIPPED])
def test_shipped_configs_pass_the_chip_config_checks(path):
    cfg = Config.fromfile(path)
    assert not chip_training_problems(cfg)
    assert not chip_eval_problems(cfg)


@pytest.mark.parametrize('key', ['val_dataloader', 'test_dataloader'])
def test_chip_dataset_at_evaluation_is_refused(key):
    """Its items are chips, scored as images (was: a test that ran)."""
    cfg = Config.fromfile(SNIPER_DEMO)
    cfg[key] = dict(batch_size=1, dataset=copy.deepcopy(
        cfg.train_dataloader.dataset))
    problem, = chip_eval_problems(cfg)
    assert problem.startswith(f'{key}.dataset is a SniperDataset')
    assert 'tools/test.py --tta' in problem
    # only loaders that run: validation with val_cfg (SnipRunner,
    # tools/train.py), the test loader in tools/test.py
    assert not chip_eval_problems(cfg, ['train_dataloader'])
    if key == 'val_dataloader':
        cfg.val_cfg = dict(type='ValLoop')  # validation runs
        with pytest.raises(UserInputError, match=f'{key}.dataset is a '):
            SnipRunner.from_cfg(cfg)


def test_mask_branch_needs_a_pipeline_that_loads_masks():
    """Mask R-CNN on chips of a box-only pipeline (the RetinaNet template's
    chip_pipeline) failed at the first iteration; refused first, naming
    mask_chip_pipeline. The shipped mask config passes."""
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/sniper/sniper_mask-rcnn_r18-w16_fpn_12e_demo.py'))
    assert not [p for p in chip_training_problems(cfg) if 'masks' in p]
    for step in cfg.train_dataloader.dataset.pipeline:
        step.pop('with_mask', None)
    (problem, ) = [p for p in chip_training_problems(cfg) if 'masks' in p]
    assert problem.startswith(
        'train_dataloader.dataset.pipeline loads no masks (LoadAnnotations '
        'without with_mask=True) but model.roi_head.mask_head learns them: '
        'use mask_chip_pipeline')


class MyChips(SniperDataset):
    pass


class MyMaskLoader(LoadAnnotations):
    pass


def test_a_subclass_of_the_chip_dataset_gets_every_check():
    """A user's SniperDataset subclass, or the scope-prefixed name, is a
    chip dataset for every refusal (was: by the type's name, so a
    subclass trained with no check at all)."""
    for kind in (MyChips, 'mmsnip.SniperDataset'):
        cfg = _with_pipeline(LOAD + [dict(type='PackDetInputs')])
        cfg.train_dataloader.dataset.type = kind
        cfg.train_dataloader.sampler = dict(type='DefaultSampler')
        assert trains_on_chips(cfg)
        problems = chip_training_problems(cfg)
        assert any('has no CropChip' in p for p in problems), problems
        assert any(p.startswith('train_dataloader.sampler: DefaultSampler')
                   for p in problems), problems
        cfg.runner_type = 'Runner'
        with pytest.raises(UserInputError, match='runner_type'):
            require_snip_runner(cfg)


def test_a_subclass_of_load_annotations_loads_masks():
    """The mask-branch check and the audit share one rule: a renamed
    LoadAnnotations subclass with with_mask=True loads masks (was: refused
    by the check, its segmentations not audited)."""
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/sniper/sniper_mask-rcnn_r18-w16_fpn_12e_demo.py'))
    for step in cfg.train_dataloader.dataset.pipeline:
        if 'LoadAnnotations' in step['type']:
            step['type'] = MyMaskLoader
    assert not [p for p in chip_training_problems(cfg) if 'masks' in p]
    (source, ) = [s for s in sources_from_config(cfg, ['train_dataloader'])]
    assert source.with_mask


MASK_DEMO = osp.join(REPO_ROOT, 'configs/sniper',
                     'sniper_mask-rcnn_r18-w16_fpn_12e_demo.py')


def _rtmdet_ins_model(pad_mask: bool):
    """mmdet's RTMDet-Ins tiny model config (its preprocessor does not pad
    masks: its own pipeline pads every image to 640 x 640)."""
    from mmengine.hub import get_config
    model = get_config('mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'
                       ).model
    model.backbone.init_cfg = None
    model.bbox_head.num_classes = 5
    assert not model.data_preprocessor.get('pad_mask')
    model.data_preprocessor.pad_mask = pad_mask
    return model


def _mask_padding_problems(cfg):
    return [p for p in chip_training_problems(cfg) if 'pad_mask' in p]


def test_masks_learned_from_chips_need_pad_mask():
    """Chips come in several sizes; a head whose targets are the
    image-sized masks fails on unpadded masks (RTMDet-Ins: torch.cat) or
    misplaces them (YOLACT). Refused with the fix, mmdet's setting: a
    mask_head outside a roi_head (YOLACT), RTMDet-Ins's bbox_head, inside
    a TTA wrapper too. RoI mask heads (Mask R-CNN) crop each target from
    its own mask: not refused."""
    from mmengine.hub import get_config
    cfg = Config.fromfile(MASK_DEMO)
    assert cfg.model.data_preprocessor.pad_mask  # mmdet's Mask R-CNN base
    assert not _mask_padding_problems(cfg)
    cfg.model.data_preprocessor.pad_mask = False
    assert not _mask_padding_problems(cfg)  # RoI targets: not refused

    cfg.model = get_config('mmdet::yolact/yolact_r50_1xb8-55e_coco.py').model
    assert cfg.model.data_preprocessor.pad_mask  # mmdet's YOLACT config
    assert not _mask_padding_problems(cfg)
    tta = copy.deepcopy(cfg)  # as tools/test.py --tta wraps it
    tta.model = dict(type='SnipTTAModel', module=tta.model)
    assert not _mask_padding_problems(tta)
    cfg.model.data_preprocessor.pad_mask = False
    (problem, ) = _mask_padding_problems(cfg)
    assert problem.startswith(
        'model.data_preprocessor.pad_mask is not True but '
        'model.mask_head learns masks from the chips of '
        'train_dataloader.dataset, which come in several sizes')
    assert problem.endswith('set model.data_preprocessor.pad_mask=True, the '
                            "setting of mmdet's Mask R-CNN, SOLO, CondInst "
                            'and YOLACT configs (it pads each mask with '
                            "zeros to the batch's padded size: harmless)")
    with pytest.raises(UserInputError, match='pad_mask is not True'):
        SnipRunner.from_cfg(cfg)
    # BatchFixedSizePad(pad_mask=True) leaves the masks of a batch that
    # already has its size unpadded: not a substitute
    cfg.model.data_preprocessor.batch_augments = [
        dict(type='BatchFixedSizePad', size=(256, 256), pad_mask=True)]
    assert _mask_padding_problems(cfg)

    cfg = Config.fromfile(MASK_DEMO)
    cfg.model = _rtmdet_ins_model(pad_mask=False)
    (problem, ) = _mask_padding_problems(cfg)
    assert 'but model.bbox_head (RTMDetInsSepBNHead) learns masks' in problem
    cfg.model.data_preprocessor.pad_mask = True
    assert not _mask_padding_problems(cfg)
    # without masks in the pipeline, RTMDet-Ins is named by the older check
    for step in cfg.train_dataloader.dataset.pipeline:
        step.pop('with_mask', None)
    assert any('but model.bbox_head (RTMDetInsSepBNHead) learns them' in p
               for p in chip_training_problems(cfg))

    # inside AutoFocus: the detector's preprocessor and head
    cfg = Config.fromfile(MASK_DEMO)
    cfg.model = dict(type='mmsnip.AutoFocus',
                     detector=_rtmdet_ins_model(pad_mask=False))
    (problem, ) = _mask_padding_problems(cfg)
    assert problem.startswith('model.detector.data_preprocessor.pad_mask is '
                              'not True but model.detector.bbox_head '
                              '(RTMDetInsSepBNHead)')


def test_rtmdet_ins_on_chips_of_two_sizes_needs_pad_mask():
    """The failure the check prevents, on mmdet's RTMDet-Ins: a batch of a
    256 x 256 chip and a 256 x 192 one (a chip at an image border) fails
    in torch.cat without pad_mask, and trains with it."""
    import torch
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import DefaultScope

    from mmsnip.registry import MODELS
    torch.manual_seed(0)
    for pad_mask in (False, True):
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(_rtmdet_ins_model(pad_mask)).train()
        packed = demo_mm_inputs(2, image_shapes=[(3, 256, 256),
                                                 (3, 192, 256)],
                                num_items=[2, 2], num_classes=5,
                                with_mask=True)
        data = model.data_preprocessor(packed, True)
        if not pad_mask:
            with pytest.raises(RuntimeError, match='Sizes of tensors must '
                               'match'):
                model.loss(data['inputs'], data['data_samples'])
        else:
            losses = model.loss(data['inputs'], data['data_samples'])
            assert torch.isfinite(losses['loss_mask'])


def test_autofocus_preprocessor_is_checked_as_built():
    """AutoFocus merges its own data_preprocessor over the detector's; the
    chip checks read the same merge: a partial one on the wrapper
    (``pad_size_divisor=32``) leaves the detector's resizing batch
    augment in place, so it is still refused, naming the entry that
    turns it off (was: the wrapper's partial dict alone was checked, and
    YOLOX's BatchSyncRandomResize trained on the chips unseen)."""
    from mmengine.hub import get_config
    detector = get_config('mmdet::yolox/yolox_s_8xb8-300e_coco.py').model
    assert detector.data_preprocessor.batch_augments
    cfg = Config.fromfile(SNIPER_DEMO)
    cfg.model = dict(type='mmsnip.AutoFocus', detector=detector,
                     data_preprocessor=dict(pad_size_divisor=32))
    problems = [p for p in chip_training_problems(cfg)
                if 'batch_augments' in p]
    assert problems == [
        'model.data_preprocessor.batch_augments: BatchSyncRandomResize '
        'rescales chips and their boxes but not their valid range; chips '
        'are already at their scale: set '
        'model.data_preprocessor.batch_augments=None']
    cfg.model.data_preprocessor.batch_augments = None  # the fix named
    assert not [p for p in chip_training_problems(cfg)
                if 'batch_augments' in p]
    cfg.model.pop('data_preprocessor')  # the detector's own
    (problem, ) = [p for p in chip_training_problems(cfg)
                   if 'batch_augments' in p]
    assert problem.startswith('model.detector.data_preprocessor.'
                              'batch_augments: BatchSyncRandomResize')


def test_uneven_shards_are_a_problem_only_on_several_processes():
    """round_up=False (SniperSampler, mmengine's DefaultSampler) can give
    one rank a batch more than another: refused for DDP training."""
    from types import SimpleNamespace

    from mmsnip.engine.runner import uneven_shards_problem
    even, uneven = SimpleNamespace(round_up=True), \
        SimpleNamespace(round_up=False)
    assert uneven_shards_problem(uneven, 1) is None
    assert uneven_shards_problem(even, 2) is None
    assert uneven_shards_problem(object(), 2) is None  # no such option
    assert uneven_shards_problem(uneven, 2).startswith(
        'train_dataloader.sampler.round_up=False on 2 processes')
