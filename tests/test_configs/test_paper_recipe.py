# Copyright (c) mmsnip contributors. All rights reserved.
"""The COCO SNIPER recipe's R-CNN sampling against the paper (Sec. 3.3.4)
and the released code, on a hand-made chip."""
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmsnip.models import ScaleAwareRoIAssigner
from mmsnip.registry import TASK_UTILS
from mmsnip.utils import register_all_modules

register_all_modules()

PAPER_RECIPES = [
    'configs/sniper/sniper_faster-rcnn_r50_fpn_7e_coco.py',
    'configs/sniper/sniper_faster-rcnn_r101_fpn_7e_coco.py',
    'configs/sniper/sniper_faster-rcnn_r50_fpn_2e-pos_coco.py',
]


@pytest.mark.parametrize('path', PAPER_RECIPES)
def test_rcnn_trains_on_every_proposal_of_the_chip(path):
    # Sec. 3.3.4: "we generate 300 proposals per chip. We do not constrain
    # any fraction of these proposals for re-sampling as positives, as
    # it's done in Fast-RCNN"; the released code: BATCH_ROIS -1 (every
    # RoI), in-range ground truth appended. A chip whose 300 proposals are
    # 200 positives and 100 negatives, with 50 valid boxes: every one of
    # them is sampled (mmdet's 512 x 25% would keep 128 positives).
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    train_cfg = cfg.model.train_cfg
    assert train_cfg.rpn_proposal.max_per_img == 300
    with DefaultScope.overwrite_default_scope('mmsnip'):
        sampler = TASK_UTILS.build(train_cfg.rcnn.sampler)
        assigner = TASK_UTILS.build(train_cfg.rcnn.assigner)
    assert isinstance(assigner, ScaleAwareRoIAssigner)
    gt_boxes = torch.tensor([[i * 10.0, 0, i * 10.0 + 50, 50]
                             for i in range(50)])
    gt = InstanceData(bboxes=gt_boxes,
                      labels=torch.zeros(50, dtype=torch.long),
                      scale_valid=torch.ones(50, dtype=torch.bool))
    gt.set_metainfo(dict(valid_range=(0.0, float('inf'))))
    pos = gt_boxes.repeat(4, 1) + torch.tensor([1.0, 1, 1, 1])  # IoU > .9
    neg = torch.tensor([[1000.0 + i, 1000, 1040 + i, 1040]
                        for i in range(100)])
    proposals = InstanceData(priors=torch.cat([pos, neg]))
    torch.manual_seed(0)
    res = sampler.sample(assigner.assign(proposals, gt), proposals, gt)
    assert len(res.pos_inds) == 200 + 50
    assert len(res.neg_inds) == 100
