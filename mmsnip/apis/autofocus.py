# Copyright (c) mmsnip contributors. All rights reserved.
"""Run and evaluate AutoFocus cascades outside the Runner (sweeps)."""
import copy
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from mmsnip.registry import DATASETS, METRICS, MODELS


def load_autofocus(cfg: Config, checkpoint: str,
                   device: Optional[str] = None):
    """The config's ``AutoFocus`` model with its weights, in eval mode."""
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
    return model.to(device).eval()


def test_subset(cfg: Config, num_images: Optional[int]):
    """The test dataset (annotations loaded) with ``tta_pipeline``."""
    ds_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    ds_cfg.pipeline = []
    with DefaultScope.overwrite_default_scope('mmsnip'):
        dataset = DATASETS.build(ds_cfg)
        pipeline = Compose(cfg.tta_pipeline)
    count = len(dataset) if num_images is None else min(num_images,
                                                         len(dataset))
    return dataset, pipeline, list(range(count))


@torch.no_grad()
def evaluate_cascade(model, cfg: Config, scales: Sequence[dict],
                     num_images: Optional[int] = None, oracle: bool = False,
                     max_chips: int = 32) -> Dict[str, float]:
    """COCO AP, pixels per image and speed of one cascade setting.

    Args:
        model: An ``AutoFocus`` model (:func:`load_autofocus`).
        cfg (Config): Its config (test dataset, ``tta_pipeline``,
            ``test_evaluator``'s COCO annotation file).
        scales (list[dict]): ``AutoFocusTTAModel`` scales (t, d, k).
        num_images (int, optional): The first images of the test set.
        oracle (bool): FocusChips from ground truth.

    Returns:
        dict: ``AP``, ``AP50``, ``AP_s``, ``pixels`` (mean per image),
        ``img_per_s``.
    """
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(type='AutoFocusTTAModel', module=model,
                                scales=scales, oracle=oracle,
                                max_chips=max_chips))
        evaluators = cfg.test_evaluator if isinstance(
            cfg.test_evaluator, list) else [cfg.test_evaluator]
        coco_cfg = next(e for e in evaluators if e['type'] == 'CocoMetric')
        metric = METRICS.build(dict(coco_cfg, format_only=False))
    dataset, pipeline, indices = test_subset(cfg, num_images)
    metric.dataset_meta = dataset.metainfo
    # COCO evaluation restricted to the images of the subset.
    metric.img_ids = [dataset.get_data_info(i)['img_id'] for i in indices]
    pixels: List[int] = []
    start = time.perf_counter()
    for idx in indices:
        data = pseudo_collate([pipeline(dataset.get_data_info(idx))])
        result = tta.test_step(data)[0]
        pixels.append(result.metainfo['pixels'])
        metric.process({}, [result.to_dict()])
    elapsed = time.perf_counter() - start
    coco = metric.compute_metrics(metric.results)
    return dict(AP=coco.get('bbox_mAP', 0.0),
                AP50=coco.get('bbox_mAP_50', 0.0),
                AP_s=coco.get('bbox_mAP_s', 0.0),
                pixels=float(np.mean(pixels)),
                img_per_s=len(indices) / elapsed)
