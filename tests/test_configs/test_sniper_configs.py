# Copyright (c) mmsnip contributors. All rights reserved.
"""The shipped SNIPER configs of every detector family: a short delta on
the `mmdet::` config, labels made scale-aware at build time, two training
iterations through tools/train.py and a full-pyramid test through
tools/test.py --tta."""
import os.path as osp

import pytest
from conftest import REPO_ROOT, run_tool
from mmengine.config import Config
from shipped_configs import (DEMO_CLASSES, SHIPPED, mmdet_child,
                             tiny_sniper_config)

from mmsnip.engine.runner import chip_training_problems, trains_on_chips
from mmsnip.models.snip_labels import make_scale_aware_cfg

NAMES = [osp.basename(p) for p in SHIPPED]

# What SnipRunner rewrites in each shipped config (and nothing else).
EXPECTED_CHANGES = {
    'sniper_atss_r50_fpn_1x_coco.py': [
        'model.train_cfg.assigner: ATSSAssigner -> ScaleValidAssigner'
    ],
    'sniper_cascade-rcnn_r50_fpn_1x_coco.py': [
        'model.train_cfg.rpn.assigner: MaxIoUAssigner -> '
        'ScaleAwareMaxIoUAssigner',
    ] + [
        f'model.train_cfg.rcnn[{i}].assigner: MaxIoUAssigner -> '
        'ScaleAwareRoIAssigner' for i in range(3)
    ],
    'sniper_dino-4scale_r50_12e_coco.py': [
        'model: DINO -> ScaleAwareDINO',
        'model.bbox_head: DINOHead -> ScaleAwareDINOHead'
    ],
    'sniper_faster-rcnn_r50_fpn_1x_coco.py': [
        'model.train_cfg.rpn.assigner: MaxIoUAssigner -> '
        'ScaleAwareMaxIoUAssigner',
        'model.train_cfg.rcnn.assigner: MaxIoUAssigner -> '
        'ScaleAwareRoIAssigner'
    ],
    'sniper_fcos_r50-caffe_fpn_gn-head_1x_coco.py': [
        'model.bbox_head: FCOSHead -> ScaleAwareFCOSHead'
    ],
    'sniper_gfl_r50_fpn_1x_coco.py': [
        'model.train_cfg.assigner: ATSSAssigner -> ScaleValidAssigner'
    ],
    'sniper_mask-rcnn_r50_fpn_1x_coco.py': [
        'model.train_cfg.rpn.assigner: MaxIoUAssigner -> '
        'ScaleAwareMaxIoUAssigner',
        'model.train_cfg.rcnn.assigner: MaxIoUAssigner -> '
        'ScaleAwareRoIAssigner'
    ],
    'sniper_retinanet_r50_fpn_1x_coco.py': [
        'model.train_cfg.assigner: MaxIoUAssigner -> '
        'ScaleAwareMaxIoUAssigner'
    ],
    'sniper_rtmdet_tiny_300e_coco.py': [
        'model.train_cfg.assigner: DynamicSoftLabelAssigner -> '
        'ScaleValidAssigner'
    ],
    'sniper_yolact_r50_1xb8-55e_coco.py': [
        'model.mask_head: YOLACTProtonet -> ScaleAwareYOLACTProtonet',
        'model.train_cfg.assigner: MaxIoUAssigner -> '
        'ScaleAwareMaxIoUAssigner'
    ],
    'sniper_yolox_s_300e_coco.py': [
        'model.bbox_head: YOLOXHead -> ScaleAwareYOLOXHead',
        'model.train_cfg.assigner: SimOTAAssigner -> ScaleValidAssigner'
    ],
}


def test_every_family_is_shipped():
    families = ('faster-rcnn', 'cascade-rcnn', 'mask-rcnn', 'retinanet',
                'fcos', 'atss', 'gfl', 'rtmdet', 'yolox', 'dino', 'yolact')
    for family in families:
        assert any(n.startswith(f'sniper_{family}') for n in NAMES), family


@pytest.mark.parametrize('name', sorted(EXPECTED_CHANGES))
def test_rewrite(name):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/sniper', name))
    assert trains_on_chips(cfg)
    assert cfg.runner_type == 'mmsnip.engine.SnipRunner'
    assert chip_training_problems(cfg) == []
    new, changes = make_scale_aware_cfg(cfg.model)
    assert changes == EXPECTED_CHANGES[name]
    # The user's assigner settings are kept.
    again, more = make_scale_aware_cfg(new)
    assert more == [] and again == new
    # The full-pyramid test is exactly the base's (no leftover of an
    # inherited DetTTAModel), its views built from the same scales.
    tta = cfg.tta_model.to_dict()
    tta.pop('_scope_', None)
    # the released order: range filter first, tta_cfg caps after the merge;
    # DINO keeps its 900 best query scores per view (of 900 x 80)
    cap = tta.pop('view_max_per_img')
    assert cap == (900 if 'dino' in name else -1)
    base = dict(cfg.snip_tta_model.to_dict())
    assert base.pop('view_max_per_img') == -1
    assert tta == base
    views = cfg.tta_pipeline[1].transforms[0]
    assert [v['scale'] for v in views] == list(cfg.tta_model.scales)


def test_delta_is_short():
    """Each shipped config adds a few lines to its mmdet config (code
    lines, comments not counted; docs/sniper.md publishes the counts)."""
    for path in SHIPPED:
        code = [
            line for line in open(path).read().splitlines()
            if line.strip() and not line.lstrip().startswith('#')
        ]
        assert len(code) <= 30, (path, len(code))


@pytest.mark.parametrize('name', NAMES)
def test_train_two_iterations_and_test_pyramid(name, tiny_demo_root,
                                               tmp_path):
    cfg = tiny_sniper_config(
        osp.join(REPO_ROOT, 'configs/sniper', name), tiny_demo_root,
        str(tmp_path / 'work'), str(tmp_path / name))
    train = run_tool(['tools/train.py', cfg], timeout=900)
    log = train.stdout + train.stderr
    assert 'SnipRunner: model.' in log
    assert 'SnipRunner: custom_hooks: + SamplerResumeHook' in log
    # Every family's heads call their scale-aware assigners (FCOS and DINO
    # have none: their scale-aware heads apply the rule).
    assert 'SnipRunner: custom_hooks: + SnipLabelCheckHook' in log
    assert ('SnipLabelCheckHook: the scale-aware assigners were called by'
            in log) != name.startswith(('sniper_fcos', 'sniper_dino'))
    ckpt = tmp_path / 'work' / 'iter_2.pth'
    assert ckpt.exists()
    test = run_tool(['tools/test.py', cfg, str(ckpt), '--tta'], timeout=900)
    out = test.stdout + test.stderr
    # Two iterations from random weights rarely score above the test
    # threshold; the pyramid ran over every image and reached the metric.
    assert 'Epoch(test) [3/3]' in out
    assert 'coco/bbox_mAP' in out or 'whole dataset is empty' in out


def test_switch_hooks_and_batch_resize_refused(tiny_demo_root, tmp_path):
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_yolox_s_300e_coco.py')
    cfg = Config.fromfile(path)
    cfg.custom_hooks.append(dict(type='YOLOXModeSwitchHook'))
    cfg.model.data_preprocessor.batch_augments = [
        dict(type='BatchSyncRandomResize', random_size_range=(480, 800))
    ]
    problems = chip_training_problems(cfg)
    assert len(problems) == 2
    assert 'YOLOXModeSwitchHook' in problems[0]
    assert 'batch_augments=None' in problems[1]
    # Through tools/train.py: one error line, exit 2.
    tiny = tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                              str(tmp_path / 'yolox.py'))
    proc = run_tool([
        'tools/train.py', tiny, '--cfg-options',
        'custom_hooks.0.type=PipelineSwitchHook'
    ], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'error:' in proc.stderr and 'PipelineSwitchHook' in proc.stderr


@pytest.mark.parametrize('base, problem', [
    ('htc/htc_r50_fpn_1x_coco.py',
     'model.roi_head.semantic_head (FusedSemanticHead) trains on semantic '
     'segmentation maps'),
    ('scnet/scnet_r50_fpn_1x_coco.py',
     'model.roi_head.semantic_head (SCNetSemanticHead) trains on semantic '
     'segmentation maps'),
    ('panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py',
     'model.semantic_head (PanopticFPNHead) trains on semantic '
     'segmentation maps'),
    ('htc/htc-without-semantic_r50_fpn_1x_coco.py', None),
])
def test_semantic_heads_refused(base, problem, tmp_path):
    _assert_one_problem(_mmdet_child(base, tmp_path), problem)


def _mmdet_child(base: str, tmp_path) -> Config:
    return Config.fromfile(mmdet_child(base, tmp_path))


def _assert_one_problem(cfg: Config, problem) -> list:
    """``chip_training_problems(cfg)``: none if ``problem`` is None, else
    one starting with it."""
    problems = chip_training_problems(cfg)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem)
    return problems


@pytest.mark.parametrize('base, problem', [
    ('fast_rcnn/fast-rcnn_r50_fpn_1x_coco.py', 'model (FastRCNN) has a '
     'roi_head and no rpn_head, so it reads precomputed proposals'),
    ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', None),
])
def test_detectors_of_precomputed_proposals_refused(base, problem,
                                                     tmp_path):
    """Fast R-CNN reads proposals from its data (mmdet's loss asserts
    they are there); chips carry none."""
    problems = _assert_one_problem(_mmdet_child(base, tmp_path), problem)
    assert all('give it an rpn_head' in p for p in problems)
    # The same detector inside an AutoFocus wrapper.
    cfg = _mmdet_child(base, tmp_path)
    cfg.model = dict(type='mmsnip.AutoFocus', detector=cfg.model)
    wrapped = chip_training_problems(cfg)
    assert [p.replace('model.detector ', 'model ', 1)
            for p in wrapped] == problems


def test_other_samplers_and_wrappers_refused(tiny_demo_root, tmp_path):
    """A chip dataset's epoch is SniperSampler's: another sampler or a
    batch sampler over it, or a wrapper around a dataset with negatives,
    would train the whole table every epoch."""
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
    cfg = Config.fromfile(path)
    assert chip_training_problems(cfg) == []
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=True)
    cfg.train_dataloader.batch_sampler = dict(
        type='mmdet.AspectRatioBatchSampler')
    problems = chip_training_problems(cfg)
    assert len(problems) == 2
    assert problems[0].startswith(
        'train_dataloader.sampler: DefaultSampler over a SniperDataset')
    assert "type='SniperSampler'" in problems[0]
    assert problems[1].startswith(
        'train_dataloader.batch_sampler: AspectRatioBatchSampler')
    assert 'batch_sampler=None' in problems[1]
    # the sampler named with a scope or given as a class
    from mmsnip.datasets import SniperSampler
    for sampler in ('mmsnip.SniperSampler', SniperSampler):
        cfg = Config.fromfile(path)
        cfg.train_dataloader.sampler.type = sampler
        assert chip_training_problems(cfg) == []
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler')
    assert chip_training_problems(cfg)[0].startswith(
        'train_dataloader.sampler: InfiniteSampler over a SniperDataset')
    # SnipDataset (no negatives): only the resume reason
    snip = Config.fromfile(path)
    snip.train_dataloader.dataset.type = 'SnipDataset'
    snip.train_dataloader.sampler = dict(type='DefaultSampler')
    problems = chip_training_problems(snip)
    assert len(problems) == 1 and problems[0].startswith(
        'train_dataloader.sampler: DefaultSampler over a SnipDataset cannot '
        'resume mid-epoch')
    wrapped = Config.fromfile(path)
    inner = wrapped.train_dataloader.dataset
    wrapped.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2,
        dataset=dict(inner, negatives=True, proposal_file='p.pkl'))
    problems = chip_training_problems(wrapped)
    assert len(problems) == 1 and problems[0].startswith(
        'train_dataloader.dataset: a SniperDataset with negatives=True '
        'inside RepeatDataset')
    wrapped.train_dataloader.dataset.dataset.negatives = False
    assert chip_training_problems(wrapped) == []
    # Through tools/train.py: one error line, exit 2.
    tiny = tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                              str(tmp_path / 'demo.py'))
    proc = run_tool(['tools/train.py', tiny, '--cfg-options',
                     'train_dataloader.sampler.type=DefaultSampler'],
                    check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'error:' in proc.stderr and 'DefaultSampler over a ' \
        'SniperDataset' in proc.stderr


def test_chip_training_without_snip_runner_refused(tiny_demo_root,
                                                   tmp_path):
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_retinanet_r50_fpn_1x_coco.py')
    tiny = tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                              str(tmp_path / 'retina.py'))
    proc = run_tool(
        ['tools/train.py', tiny, '--cfg-options', 'runner_type=Runner'],
        check=False)
    assert proc.returncode == 2
    assert "runner_type = 'mmsnip.engine.SnipRunner'" in proc.stderr


def test_unaware_detector_refused_and_opt_out(tiny_demo_root, tmp_path):
    """A head mmsnip cannot make scale-aware: an error naming it; the
    explicit opt-out trains and says so in the log."""
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_retinanet_r50_fpn_1x_coco.py')
    tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                       str(tmp_path / 'retina.py'))  # the child's base
    child = tmp_path / 'unaware.py'
    child.write_text(
        "_base_ = './retina.py'\n"
        "model = dict(train_cfg=dict(assigner=dict(\n"
        "    _delete_=True, type='mmdet.PointAssigner')))\n")
    proc = run_tool(['tools/train.py', str(child)], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'model.bbox_head.assigner (PointAssigner)' in proc.stderr
    assert 'allow_unaware=True' in proc.stderr
    # Opt-out: PointAssigner cannot label RetinaNet anchors either, so
    # check the opt-out on the check itself (the runner calls it).
    from mmsnip.models.snip_labels import check_scale_aware, SnipLabelError
    from mmdet.models.task_modules.assigners import PointAssigner
    from torch import nn

    class Head(nn.Module):

        def __init__(self):
            super().__init__()
            self.assigner = PointAssigner()

    model = nn.Module()
    model.bbox_head = Head()
    with pytest.raises(SnipLabelError, match='model.bbox_head.assigner'):
        check_scale_aware(model)
    messages = []

    class Logger:

        def warning(self, msg):
            messages.append(msg)

    check_scale_aware(model, allow_unaware=True, logger=Logger())
    assert 'allow_unaware=True' in messages[0]


def test_docs_quote_the_real_config():
    """docs/sniper.md shows the RetinaNet delta verbatim and the line
    count of every shipped config."""
    doc = open(osp.join(REPO_ROOT, 'docs/sniper.md')).read()
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_retinanet_r50_fpn_1x_coco.py')
    assert '```python\n' + open(path).read() + '```' in doc
    for path in SHIPPED:
        code = [
            line for line in open(path).read().splitlines()
            if line.strip() and not line.lstrip().startswith('#')
        ]
        name = osp.basename(path)
        assert f'`configs/sniper/{name}` | {len(code)} |' in doc, name


def test_paper_recipe_is_built_on_the_shared_chip_base(tiny_demo_root,
                                                      tmp_path):
    """The COCO recipe of the paper (and the SNIP and AutoFocus configs on
    it) reads the chips, test pyramid and TTA from coco_chips.py, the same
    home as every family config, and trains through tools/train.py."""
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_faster-rcnn_r50_fpn_7e_coco.py')
    cfg = Config.fromfile(path)
    family = Config.fromfile(SHIPPED[NAMES.index(
        'sniper_faster-rcnn_r50_fpn_1x_coco.py')])
    for key in ('chip_cfg', 'snip_tta_model', 'snip_tta_pipeline'):
        assert cfg[key] == family[key], key
    assert cfg.train_dataloader.dataset.chip_cfg == family.chip_cfg
    assert cfg.tta_model == family.tta_model
    assert cfg.train_dataloader.dataset.negatives
    # Images without objects stay: they give negative chips.
    assert not cfg.train_dataloader.dataset.dataset.filter_cfg[
        'filter_empty_gt']
    snip = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/snip/snip_faster-rcnn_r50_fpn_1x_coco.py'))
    assert snip.train_dataloader.dataset.chip_cfg.scales == \
        family.snip_train_scales
    # Two iterations on the tiny data (positive chips: it has no mined
    # proposals) and the pyramid test.
    tiny = Config.fromfile(tiny_sniper_config(
        path, tiny_demo_root, str(tmp_path / 'work'),
        str(tmp_path / 'paper.py')))
    tiny.train_dataloader.dataset.update(negatives=False, proposal_file=None)
    tiny.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    tiny.optim_wrapper.pop('loss_scale')
    tiny.dump(str(tmp_path / 'paper.py'))
    train = run_tool(['tools/train.py', str(tmp_path / 'paper.py')],
                     timeout=900)
    assert 'SnipRunner: custom_hooks: + SamplerResumeHook' in \
        train.stdout + train.stderr
    ckpt = tmp_path / 'work' / 'iter_2.pth'
    test = run_tool(['tools/test.py', str(tmp_path / 'paper.py'),
                     str(ckpt), '--tta'], timeout=900)
    assert 'Epoch(test) [3/3]' in test.stdout + test.stderr


def _top_level_names(path):
    """Names a classic config file assigns at its top level."""
    import ast
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            names.update(n.id for n in ast.walk(target)
                         if isinstance(n, ast.Name))
    return names


@pytest.mark.parametrize('delta', ['sniper/coco_chips.py',
                                   'autofocus/chip_test.py'])
def test_deltas_share_no_key_with_any_mmdet_config(delta):
    """MMEngine refuses a key defined by two bases of one config: the
    bases a child lists beside an `mmdet::` config (the SNIPER delta, the
    AutoFocus chip test) must define no key that any mmdet config (or its
    bases) defines, e.g. `custom_imports` of mmdet's ConvNeXt, timm and
    RTMDet-ImageNet configs."""
    import glob

    import mmdet
    ours = _top_level_names(osp.join(REPO_ROOT, 'configs', '_base_', delta))
    assert ours
    mmdet_dir = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
    clashes = {}
    paths = glob.glob(osp.join(mmdet_dir, '**', '*.py'), recursive=True)
    assert len(paths) > 500, mmdet_dir
    for path in paths:
        shared = ours & (_top_level_names(path) - {'_base_'})
        if shared:
            clashes[osp.relpath(path, mmdet_dir)] = sorted(shared)
    assert not clashes, clashes


def test_coco_chips_beside_an_mmdet_config_with_custom_imports(tmp_path):
    """The clash the rule above prevents, end to end: a ConvNeXt Mask
    R-CNN child with the chips base loads (was: MMEngine's "Duplicate
    key is not allowed among bases")."""
    child = tmp_path / 'child.py'
    chips = osp.join(REPO_ROOT, 'configs', '_base_', 'sniper',
                     'coco_chips.py')
    child.write_text(
        "_base_ = ['mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_"
        f"amp-ms-crop-3x_coco.py', {chips!r}]\n")
    cfg = Config.fromfile(str(child), import_custom_modules=False)
    assert cfg.custom_imports.imports == ['mmpretrain.models']
    assert cfg.runner_type == 'mmsnip.engine.SnipRunner'


SOFT_TEACHER_CHIPS = """
_base_ = [
    'mmdet::soft_teacher/'
    'soft-teacher_faster-rcnn_r50-caffe_fpn_180k_semi-0.1-coco.py',
    '{sniper_base}'
]
root = '{root}/'
classes = {classes!r}
lab = _base_.labeled_dataset
lab.update(data_root=root, ann_file='annotations/instances_train.json',
           data_prefix=dict(img='train/'), metainfo=dict(classes=classes))
unlabeled = _base_.unlabeled_dataset
unlabeled.update(data_root=root, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), metainfo=dict(classes=classes))
model = dict(detector=dict(roi_head=dict(bbox_head=dict(
    num_classes=len(classes)))))
labeled = dict(
    type='mmsnip.SniperDataset', chip_cfg=_base_.chip_cfg, dataset=lab,
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='mmsnip.CropChip'),
        dict(type='MultiBranch', branch_field=_base_.branch_field,
             sup=dict(type='mmsnip.PackChipInputs'))])
train_dataloader = dict(dataset=dict(datasets=[labeled, unlabeled]))
val_cfg = None
val_dataloader = None
val_evaluator = None
"""


def test_semi_supervised_detectors_refused(tiny_demo_root, tmp_path):
    """SoftTeacher with SNIPER chips in its labeled branch (a user's config
    on mmdet's): its unlabeled branch trains the student on pseudo-boxes
    of whole images, which carry no scale validity (every one would train
    as valid); refused as the one problem, naming the model and the fix
    (was: the pipeline's MultiBranch refused as a missing PackChipInputs,
    and with PackChipInputs last, AttributeError: 'list' object has no
    attribute 'keys' at the first iteration)."""
    path = tmp_path / 'soft_teacher_chips.py'
    path.write_text(SOFT_TEACHER_CHIPS.format(
        sniper_base=osp.join(REPO_ROOT, 'configs/_base_/sniper/'
                             'coco_chips.py'), root=tiny_demo_root,
        classes=DEMO_CLASSES))
    cfg = Config.fromfile(str(path))
    assert trains_on_chips(cfg)
    problem = ('model (SoftTeacher) is a semi-supervised detector (mmdet\'s '
               'SemiBaseDetector)')
    problems = _assert_one_problem(cfg, problem)
    assert 'pseudo-boxes' in problems[0] and 'model.detector' in problems[0]
    # The chip pipeline ending with PackChipInputs: the same one problem.
    cfg.train_dataloader.dataset.datasets[0].pipeline[-1] = dict(
        type='mmsnip.PackChipInputs')
    _assert_one_problem(cfg, problem)
    # Inside an AutoFocus wrapper.
    cfg.model = dict(type='mmsnip.AutoFocus', detector=cfg.model)
    _assert_one_problem(cfg, problem.replace('model ', 'model.detector ', 1))
    # Through tools/train.py: one error line, exit 2, before training.
    proc = run_tool(['tools/train.py', str(path), '--work-dir',
                     str(tmp_path / 'w')], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'error:' in proc.stderr and problem in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_autofocus_inside_a_semi_supervised_detector_refused(tmp_path):
    """SoftTeacher with an AutoFocus detector (no chips needed to reach
    it): SoftTeacher asks its teacher for rpn_head / roi_head, which
    AutoFocus wraps (was: ``AssertionError: Bbox head must be
    implemented.`` at the first iteration); SnipRunner refuses it from the
    config, naming the entry and the fix."""
    from mmsnip.engine import SnipRunner
    from mmsnip.engine.runner import autofocus_in_semi_problem
    from mmsnip.utils.preflight import UserInputError
    cfg = _mmdet_child('soft_teacher/soft-teacher_faster-rcnn_r50-caffe_'
                       'fpn_180k_semi-0.1-coco.py', tmp_path)
    assert autofocus_in_semi_problem(cfg) is None
    cfg.model.detector = dict(type='mmsnip.AutoFocus',
                              detector=cfg.model.detector)
    cfg.work_dir = str(tmp_path / 'w')
    with pytest.raises(UserInputError) as e:
        SnipRunner.from_cfg(cfg)
    assert 'model.detector (AutoFocus) inside model (SoftTeacher)' in str(
        e.value)
