# Copyright (c) mmsnip contributors. All rights reserved.
"""SnipLabelCheckHook: a head that holds a scale-aware assigner but labels
priors without calling it is refused at the first iteration with objects,
by name; through tools/train.py, with a head the static check cannot know.
"""
import os.path as osp
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT, free_port, run_tool
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData
from torch import nn

from mmsnip.engine.hooks import SnipLabelCheckHook
from mmsnip.models.snip_labels import SnipLabelError
from mmsnip.models.task_modules.assigners import ScaleAwareMaxIoUAssigner

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)),
                            'test_configs'))
from shipped_configs import tiny_sniper_config  # noqa: E402

PRIORS = InstanceData(priors=torch.tensor([[0., 0., 10., 10.]]))
GT = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]),
                  labels=torch.tensor([0]))


class Head(nn.Module):

    def __init__(self):
        super().__init__()
        self.assigner = ScaleAwareMaxIoUAssigner(pos_iou_thr=0.5,
                                                 neg_iou_thr=0.4)


class Logger:

    def __init__(self):
        self.warnings, self.infos = [], []

    def warning(self, msg):
        self.warnings.append(msg)

    def info(self, msg):
        self.infos.append(msg)


def _runner():
    model = nn.Module()
    model.bbox_head = Head()
    return SimpleNamespace(model=model, cfg=Config(filename=None),
                           logger=Logger())


def _batch(num_objects: int) -> dict:
    sample = DetDataSample()
    sample.gt_instances = GT[:num_objects]
    return dict(inputs=[], data_samples=[sample])


def _iteration(hook, runner, num_objects: int, calls_assigner: bool):
    batch = _batch(num_objects)
    hook.before_train_iter(runner, 0, batch)
    if calls_assigner:
        runner.model.bbox_head.assigner.assign(PRIORS, GT)
    hook.after_train_iter(runner, 0, batch)


def test_bypassing_head_refused_at_first_batch_with_objects():
    runner, hook = _runner(), SnipLabelCheckHook()
    hook.before_train(runner)
    # No objects in the batch: a head may skip its assigner (YOLOX does).
    _iteration(hook, runner, 0, calls_assigner=False)
    with pytest.raises(SnipLabelError) as error:
        _iteration(hook, runner, 1, calls_assigner=False)
    assert 'model.bbox_head (Head) holds a scale-aware assigner' in str(
        error.value)
    assert 'allow_unaware=True' in str(error.value)
    assert 'assign' not in vars(runner.model.bbox_head.assigner)


def test_head_that_calls_its_assigner_passes_and_stops_counting():
    runner, hook = _runner(), SnipLabelCheckHook()
    hook.before_train(runner)
    _iteration(hook, runner, 1, calls_assigner=True)
    assert 'assign' not in vars(runner.model.bbox_head.assigner)
    assert runner.logger.infos == [
        'SnipLabelCheckHook: the scale-aware assigners were called by '
        'model.bbox_head (Head)'
    ]
    _iteration(hook, runner, 1, calls_assigner=False)  # no longer checked


def test_training_without_objects_says_it_was_not_checked():
    runner, hook = _runner(), SnipLabelCheckHook()
    hook.before_train(runner)
    _iteration(hook, runner, 0, calls_assigner=False)
    hook.after_train(runner)
    assert runner.logger.warnings == [
        'SnipLabelCheckHook: no training batch had objects, so the '
        'scale-aware assigners of model.bbox_head (Head) were not checked'
    ]
    assert 'assign' not in vars(runner.model.bbox_head.assigner)


def test_opt_out_logs_the_problem():
    runner, hook = _runner(), SnipLabelCheckHook(allow_unaware=True)
    hook.before_train(runner)
    _iteration(hook, runner, 1, calls_assigner=False)
    assert len(runner.logger.warnings) == 1
    assert 'model.bbox_head (Head)' in runner.logger.warnings[0]


BYPASSING_HEAD = '''
from mmdet.models.dense_heads import RetinaHead
from mmdet.registry import MODELS


@MODELS.register_module()
class BypassingRetinaHead(RetinaHead):
    """Weighs its outputs by the number of objects, never calling its
    assigner (as a head with its own matching would)."""

    def loss_by_feat(self, cls_scores, bbox_preds, batch_gt_instances,
                     batch_img_metas, batch_gt_instances_ignore=None):
        objects = sum(len(gt) for gt in batch_gt_instances)
        return dict(
            loss_cls=sum(s.sigmoid().mean() for s in cls_scores) * objects,
            loss_bbox=sum(b.abs().mean() for b in bbox_preds) * objects)
'''


def _retina_configs(tiny_demo_root, tmp_path):
    """The tiny SNIPER RetinaNet and a child with the bypassing head."""
    (tmp_path / 'bypassing_head.py').write_text(BYPASSING_HEAD)
    path = osp.join(REPO_ROOT, 'configs/sniper',
                    'sniper_retinanet_r50_fpn_1x_coco.py')
    tiny = tiny_sniper_config(path, tiny_demo_root, str(tmp_path / 'w'),
                              str(tmp_path / 'retina.py'))
    child = tmp_path / 'bypassing.py'
    child.write_text(textwrap.dedent("""\
        _base_ = './retina.py'
        custom_imports = dict(imports=['bypassing_head'])
        model = dict(bbox_head=dict(type='BypassingRetinaHead'))
        """))
    return tiny, str(child)


def test_train_refuses_a_head_that_bypasses_its_assigner(
        tiny_demo_root, tmp_path):
    _, child = _retina_configs(tiny_demo_root, tmp_path)
    proc = run_tool(['tools/train.py', child], check=False,
                    env=dict(PYTHONPATH=f'{REPO_ROOT}:{tmp_path}'))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert 'SnipRunner: custom_hooks: + SnipLabelCheckHook' in out
    assert ('error: ' + child) in proc.stderr
    assert ('model.bbox_head (BypassingRetinaHead) holds a scale-aware '
            'assigner but did not call it') in proc.stderr
    assert not (tmp_path / 'w' / 'iter_2.pth').exists()


def test_two_ranks_decide_alike(tiny_demo_root, tmp_path):
    """Two CPU processes (dist_train.sh): both ranks stop on the bypassing
    head (neither waits for the other in the next iteration), and both
    pass with RetinaNet's own head."""
    tiny, child = _retina_configs(tiny_demo_root, tmp_path)
    env = dict(PORT=str(free_port()), PYTHON=sys.executable,
               OMP_NUM_THREADS='1', PYTHONPATH=f'{REPO_ROOT}:{tmp_path}')
    proc = run_tool(['bash', 'tools/dist_train.sh', child, '2'], env=env,
                    check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert out.count('model.bbox_head (BypassingRetinaHead) holds a '
                     'scale-aware assigner') >= 2, out[-3000:]
    env['PORT'] = str(free_port())
    proc = run_tool(['bash', 'tools/dist_train.sh', tiny, '2'], env=env,
                    timeout=300)
    out = proc.stdout + proc.stderr
    assert 'Distributed training: True' in out, out[-3000:]
    assert ('SnipLabelCheckHook: the scale-aware assigners were called by '
            'model.bbox_head (RetinaHead)') in out
    assert (tmp_path / 'w' / 'iter_2.pth').exists()
