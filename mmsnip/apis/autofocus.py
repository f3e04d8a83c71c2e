# Copyright (c) mmsnip contributors. All rights reserved.
"""Run and evaluate AutoFocus cascades outside the Runner (sweeps)."""
import copy
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from mmsnip.engine.checkpoint import check_checkpoint_fits
from mmsnip.registry import DATASETS, METRICS, MODELS
from mmsnip.utils.config_tree import type_in
from mmsnip.utils.preflight import UserInputError


def load_autofocus(cfg: Config, checkpoint: str,
                   device: Optional[str] = None,
                   need_focus_head: bool = False):
    """The config's ``AutoFocus`` model with its weights, in eval mode.

    Raises:
        UserInputError: With ``need_focus_head``, a checkpoint without the
            FocusPixel head's weights (a plain detector's), naming it:
            before any image runs, not in the cascade's first image.
    """
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg.model)
    check_checkpoint_fits(model, load_checkpoint(
        model, checkpoint, map_location='cpu', logger='current'), checkpoint)
    if need_focus_head and getattr(model, 'focus_head_loaded',
                                   None) is False:
        raise UserInputError(
            f'checkpoint "{checkpoint}" has no FocusPixel head weights '
            '(focus_head.*): a plain detector\'s, so the AutoFocus cascade '
            'would follow noise. Give a checkpoint trained with the '
            'AutoFocus config, or leave out the methods that need the '
            'head (autofocus)')
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


def coco_metric_for(cfg: Config, dataset, indices: Sequence[int]):
    """The config's ``CocoMetric``, restricted to the images ``indices``."""
    with DefaultScope.overwrite_default_scope('mmsnip'):
        evaluators = cfg.test_evaluator if isinstance(
            cfg.test_evaluator, list) else [cfg.test_evaluator]
        coco_cfg = next((e for e in evaluators
                         if type_in(e, ('CocoMetric', ), 'METRICS')), None)
        if coco_cfg is None:
            raise ValueError('the config\'s test_evaluator has no CocoMetric')
        metric_ann = coco_cfg.get('ann_file')
        data_ann = getattr(dataset, 'ann_file', None)
        if metric_ann and data_ann and \
                osp.abspath(metric_ann) != osp.abspath(data_ann):
            # Ground truth from one file, images from another: wrong AP.
            raise UserInputError(
                f'test_evaluator CocoMetric.ann_file "{metric_ann}" is not '
                f'the test dataset\'s annotation file "{data_ann}": set both '
                '(e.g. --cfg-options test_dataloader.dataset.ann_file=... '
                'test_evaluator.0.ann_file=...)')
        infos = [dataset.get_data_info(i) for i in indices]
        objects = sum(not instance.get('ignore_flag') for info in infos
                      for instance in info.get('instances') or [])
        if not objects:
            # COCOeval's AP is -1 without ground truth: every setting alike
            raise UserInputError(
                f'the {len(indices)} evaluated image(s) of the test dataset '
                f'("{data_ann}") have no annotated objects: COCO AP is -1 '
                'there whatever the model finds, so AP comparisons and '
                'calibrations would rank their settings by nothing; '
                'evaluate on a split with ground truth (--cfg-options '
                'test_dataloader.dataset.ann_file=... '
                'test_evaluator.0.ann_file=...)')
        metric = METRICS.build(dict(coco_cfg, format_only=False))
    metric.dataset_meta = dataset.metainfo
    metric.img_ids = [info['img_id'] for info in infos]
    return metric


def synchronize(device) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate_tta(tta, cfg: Config, num_images: Optional[int] = None,
                 warmup: int = 0) -> Dict[str, object]:
    """COCO AP, pixels per image and speed of any multi-scale test model.

    Runs ``tta.test_step`` one image at a time on the first ``num_images``
    images of the config's test set (``tta_pipeline``: the image
    unresized). Loading and decoding the image is not timed; the model is.

    Args:
        tta: An object with ``test_step(data) -> [DetDataSample]`` whose
            predictions (ORIGINAL pixels) carry ``pixels`` in their
            metainfo: ``AutoFocusTTAModel``, ``SlicedTTAModel``, or the
            SAHI peer (:class:`mmsnip.apis.sahi_peer.SahiSlicedModel`).
        cfg (Config): Test dataset, ``tta_pipeline``, ``test_evaluator``.
        num_images (int, optional): The first images of the test set.
        warmup (int): Images run once, untimed, before the measured pass.

    Returns:
        dict: ``AP``, ``AP50``, ``AP_s`` (0-1), ``pixels`` (mean network
        input pixels per image), ``img_per_s``, ``mpix_per_s`` (pixels
        processed per second of model time, millions), ``seconds`` (total
        model time), ``stage_seconds`` (mean seconds per image of each
        stage the predictions report in ``stage_seconds``; empty if none)
        and ``focus_recall`` (AutoFocus: per transition ``[needed,
        covered]`` objects summed over the images,
        :func:`mmsnip.chips.focus_recall`; ``None`` for other models).
    """
    dataset, pipeline, indices = test_subset(cfg, num_images)
    metric = coco_metric_for(cfg, dataset, indices)
    device = next(tta.parameters()).device if hasattr(
        tta, 'parameters') else 'cpu'
    for idx in indices[:warmup]:
        tta.test_step(pseudo_collate([pipeline(dataset.get_data_info(idx))]))
    pixels: List[int] = []
    stages: Dict[str, float] = {}
    recall = None
    seconds = 0.0
    for idx in indices:
        data = pseudo_collate([pipeline(dataset.get_data_info(idx))])
        synchronize(device)
        start = time.perf_counter()
        result = tta.test_step(data)[0]
        synchronize(device)
        seconds += time.perf_counter() - start
        pixels.append(result.metainfo['pixels'])
        for key, value in result.metainfo.get('stage_seconds', {}).items():
            stages[key] = stages.get(key, 0.0) + float(value)
        if 'focus_recall' in result.metainfo:
            counts = np.array(result.metainfo['focus_recall'], np.int64)
            recall = counts if recall is None else recall + counts
        metric.process({}, [result.to_dict()])
    coco = metric.compute_metrics(metric.results)
    count = max(len(indices), 1)
    return dict(AP=coco.get('bbox_mAP', 0.0),
                AP50=coco.get('bbox_mAP_50', 0.0),
                AP_s=coco.get('bbox_mAP_s', 0.0),
                pixels=float(np.mean(pixels)) if pixels else 0.0,
                img_per_s=len(indices) / max(seconds, 1e-9),
                mpix_per_s=float(np.sum(pixels)) / 1e6 / max(seconds, 1e-9),
                seconds=seconds,
                stage_seconds={k: v / count for k, v in stages.items()},
                focus_recall=None if recall is None else recall.tolist())


def evaluate_cascade(model, cfg: Config, scales: Sequence[dict],
                     num_images: Optional[int] = None,
                     oracle: bool = False) -> Dict[str, object]:
    """COCO AP, pixels per image and speed of the config's cascade with
    other ``scales`` (t, d, k per transition).

    Runs the config's own ``tta_model`` (``AutoFocusTTAModel``) with its
    ``scales`` replaced: every other setting (``max_chips``,
    ``border_tol``, ``tta_cfg``, the RPN budget, ...) as ``tools/test.py
    --tta`` runs it, so a sweep or a calibration measures what testing
    will run.

    Args:
        model: An ``AutoFocus`` model (:func:`load_autofocus`).
        cfg (Config): Its config (test dataset, ``tta_pipeline``,
            ``test_evaluator``'s COCO annotation file, ``tta_model``).
        scales (list[dict]): ``AutoFocusTTAModel`` scales, coarse to fine.
        num_images (int, optional): The first images of the test set.
        oracle (bool): FocusChips from ground truth.

    Returns:
        dict: as :func:`evaluate_tta`.
    """
    tta_cfg = copy.deepcopy(cfg.tta_model)
    tta_cfg.update(scales=[dict(s) for s in scales], oracle=oracle)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(tta_cfg, module=model))
    return evaluate_tta(tta, cfg, num_images)
