# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal mining for SNIPER negative chips (Sec. 3.3.3, 4.1).

An RPN trained on positive chips (stage 1) runs over every training image at
every scale of the chip config; its top proposals per scale, mapped back to
ORIGINAL pixels, go to a proposal file (:mod:`mmsnip.datasets.proposals`)
that stage 2's ``SniperDataset(negatives=True)`` turns into negative chips.

Work is split across ranks (image ``i`` goes to rank ``i % world_size``)
and written in shards ``<out>.parts/rank<r>-<first image>.pkl``, each
atomically; a restarted run skips the images already in a shard, so an
interrupted mining job resumes where it stopped. Rank 0 merges the shards
into the final file.
"""
import dataclasses
import glob
import os
import os.path as osp
import pickle
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar

from mmsnip.chips import ChipConfig
from mmsnip.datasets.proposals import save_proposals
from mmsnip.registry import DATASETS, MODELS


def _train_dataset_cfg(cfg: Config) -> dict:
    """The image dataset inside the SNIPER train dataloader."""
    ds = cfg.train_dataloader.dataset
    if ds.get('type') != 'SniperDataset':
        raise ValueError('mine_proposals needs a config whose '
                         'train_dataloader.dataset is a SniperDataset, got '
                         f'{ds.get("type")}')
    return ds


def _write_shard(folder: str, rank: int, first: int, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    with os.fdopen(fd, 'wb') as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, osp.join(folder, f'rank{rank}-{first:08d}.pkl'))


def _read_shards(folder: str) -> Dict[int, List[np.ndarray]]:
    done: Dict[int, List[np.ndarray]] = {}
    for path in sorted(glob.glob(osp.join(folder, 'rank*-*.pkl'))):
        with open(path, 'rb') as f:
            done.update(pickle.load(f))
    return done


@torch.no_grad()
def mine_proposals(cfg: Config,
                   checkpoint: str,
                   out_file: str,
                   num_per_scale: int = 300,
                   nms_iou: float = 0.7,
                   shard_size: int = 50,
                   device: Optional[str] = None) -> Optional[str]:
    """Run the stage-1 RPN over the training images at every chip scale.

    Args:
        cfg (Config): A SNIPER config (``train_dataloader.dataset`` is a
            ``SniperDataset``; its ``chip_cfg`` gives the scales) whose
            model has an ``rpn_head``.
        checkpoint (str): Stage-1 weights.
        out_file (str): The proposal file to write.
        num_per_scale (int): Proposals kept per image and scale (300).
        nms_iou (float): RPN NMS IoU (0.7).
        shard_size (int): Images per shard file (the resume granularity).
        device (str, optional): Defaults to CUDA if available.

    Returns:
        str | None: ``out_file`` on rank 0, None elsewhere.
    """
    rank, world_size = get_dist_info()
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    sniper = _train_dataset_cfg(cfg)
    chip_cfg = ChipConfig.from_dict(dict(sniper.chip_cfg))
    dataset = DATASETS.build(sniper.dataset)
    dataset.full_init()

    model = MODELS.build(cfg.model)
    if getattr(model, 'rpn_head', None) is None:
        raise ValueError('mine_proposals needs a model with an rpn_head '
                         f'(two-stage detector), got {type(model).__name__}')
    load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
    model.to(device).eval()
    rpn_cfg = model.rpn_head.test_cfg
    rpn_cfg.max_per_img = num_per_scale
    rpn_cfg.nms = dict(type='nms', iou_threshold=nms_iou)

    backend_args = sniper.dataset.get('backend_args')
    pipelines = [
        Compose([
            dict(type='LoadImageFromFile', backend_args=backend_args),
            dict(type='ResizeToScale', scale=dataclasses.asdict(spec)),
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                            'scale_factor'))
        ]) for spec in chip_cfg.scales
    ]

    parts = out_file + '.parts'
    if rank == 0:
        os.makedirs(parts, exist_ok=True)
    barrier()
    done = _read_shards(parts)
    mine = [i for i in range(rank, len(dataset), world_size)]
    todo = [i for i in mine
            if dataset.get_data_info(i)['img_id'] not in done]
    print_log(f'mining proposals: {len(dataset)} images x '
              f'{len(chip_cfg.scales)} scales; rank {rank} has {len(todo)} '
              f'of its {len(mine)} images left', logger='current')
    bar = ProgressBar(len(todo)) if rank == 0 else None
    shard: Dict[int, List[np.ndarray]] = {}
    first = None
    for n, idx in enumerate(todo):
        first = idx if first is None else first
        info = dataset.get_data_info(idx)
        per_scale = []
        for pipeline in pipelines:
            data = model.data_preprocessor(
                pseudo_collate([pipeline(dict(info))]), False)
            feats = model.extract_feat(data['inputs'])
            result = model.rpn_head.predict(
                feats, data['data_samples'], rescale=True)[0]
            per_scale.append(torch.cat(
                [result.bboxes, result.scores[:, None]],
                dim=1).float().cpu().numpy())
        shard[info['img_id']] = per_scale
        if len(shard) == shard_size or n == len(todo) - 1:
            _write_shard(parts, rank, first, shard)
            shard, first = {}, None
        if bar is not None:
            bar.update()
    barrier()
    if rank != 0:
        return None
    proposals = _read_shards(parts)
    ids = [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))]
    missing = [i for i in ids if i not in proposals]
    if missing:
        raise RuntimeError(f'mining finished without proposals for '
                           f'{len(missing)} images (e.g. {missing[:5]})')
    save_proposals(out_file, {i: proposals[i] for i in ids},
                   num_scales=len(chip_cfg.scales))
    for path in glob.glob(osp.join(parts, 'rank*-*.pkl')):
        os.remove(path)
    os.rmdir(parts)
    sizes = [sum(len(p) for p in proposals[i]) for i in ids]
    print_log(f'wrote {out_file}: {len(ids)} images, '
              f'{np.mean(sizes):.0f} proposals per image (all scales)',
              logger='current')
    return out_file
