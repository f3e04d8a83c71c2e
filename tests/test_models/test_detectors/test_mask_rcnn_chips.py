# Copyright (c) mmsnip contributors. All rights reserved.
"""Mask R-CNN trains on SNIPER chips: polygon masks are cropped and resized
with their boxes by ``CropChip``, and the mask branch learns from them.

Uses the demo config ``sniper_mask-rcnn_r18-w16_fpn_12e_demo.py`` (the
narrow SNIPER demo detector with SNIP assignment plus the mask branch) and
its real chip pipeline, on the tiny generated demo data.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from conftest import REPO_ROOT
from mmsnip.models import ScaleAwareMaxIoUAssigner, ScaleAwareRoIAssigner
from mmsnip.registry import DATASETS, MODELS
from mmsnip.utils import register_all_modules

register_all_modules(init_default_scope=False)
# pycocotools' polygon decoding under numpy 2 (library noise)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword")
CONFIG = osp.join(REPO_ROOT,
                  'configs/sniper/sniper_mask-rcnn_r18-w16_fpn_12e_demo.py')


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(CONFIG)


@pytest.fixture(scope='module', params=[True, False],
                ids=['bitmap', 'polygon'])
def chips(cfg, tiny_demo_root, request):
    """The config's SniperDataset on the tiny demo data, no cache; masks
    loaded as bitmaps (mmdet's default) or kept as polygons."""
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.cache_dir = ''
    ds_cfg.dataset.data_root = tiny_demo_root + '/'
    load = next(t for t in ds_cfg.pipeline if t.type == 'LoadAnnotations')
    load.poly2mask = request.param
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return DATASETS.build(ds_cfg)


def _extents(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` xyxy pixel extents of ``(N, h, w)`` masks (empty: 0s)."""
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[1:]
    y1, x1 = rows.argmax(1), cols.argmax(1)
    y2 = h - rows[:, ::-1].argmax(1)
    x2 = w - cols[:, ::-1].argmax(1)
    return np.stack([x1, y1, x2, y2], 1).astype(float)


def test_chip_masks_align_with_chip_boxes(chips):
    kind = type(chips[0]['data_samples'].gt_instances.masks).__name__
    assert kind == ('BitmapMasks' if chips.pipeline.transforms[1].poly2mask
                    else 'PolygonMasks')
    np.random.seed(0)  # RandomFlip: flipped chips are checked too
    checked = uncut = 0
    flips = set()
    for i in range(0, len(chips), max(len(chips) // 40, 1)):
        sample = chips[i]['data_samples']
        gt = sample.gt_instances
        h, w = sample.metainfo['img_shape']
        masks = gt.masks.to_ndarray().astype(bool)
        boxes = gt.bboxes.numpy()
        assert masks.shape == (len(boxes), h, w)
        flips.add(bool(sample.metainfo.get('flip')))
        present = masks.any((1, 2))
        if not present.any():
            continue
        # a chip pixel is up to max(fx, fy) original pixels of rounding
        tol = 1.0 + 1.5 * max(sample.metainfo['scale_factor'])
        ext, box = _extents(masks[present]), boxes[present]
        # every mask lies inside its (clipped, scaled) box ...
        assert (ext[:, :2] >= box[:, :2] - tol).all(), (i, ext, box)
        assert (ext[:, 2:] <= box[:, 2:] + tol).all(), (i, ext, box)
        # ... and fills it when the object is not cut by the chip border
        whole = (box[:, 0] > tol) & (box[:, 1] > tol) & \
            (box[:, 2] < w - tol) & (box[:, 3] < h - tol)
        np.testing.assert_allclose(ext[whole], box[whole], atol=tol)
        checked += int(present.sum())
        uncut += int(whole.sum())
    assert checked >= 20 and uncut >= 10, (checked, uncut)
    assert flips == {False, True}


def test_a_few_iterations_give_finite_mask_loss(cfg, chips):
    torch.manual_seed(0)
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.rpn_head.assigner, ScaleAwareMaxIoUAssigner)
    assert isinstance(model.roi_head.bbox_assigner, ScaleAwareRoIAssigner)
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01,
                                         momentum=0.9))
    # chips with objects, two per batch
    items = [chips[i] for i in range(min(len(chips), 40))]
    items = [x for x in items if len(x['data_samples'].gt_instances)][:6]
    assert len(items) == 6
    seen = []
    for it in range(3):
        batch = pseudo_collate(items[2 * it:2 * it + 2])
        log = model.train_step(batch, optim)
        seen.append(log['loss_mask'].item())
        assert all(np.isfinite(v.item()) for v in log.values()), log
    assert all(v > 0 for v in seen), seen
