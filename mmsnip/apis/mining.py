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

A resume is only safe with the same inputs, so ``<out>.parts/settings.json``
records them when the folder is made (:func:`mining_settings`): the
checkpoint's size and sha256, ``num_per_scale``, the NMS IoU, the pooling
IoU (or None), the chip scales and the image list. A run whose settings
differ refuses to mix its proposals with the old shards
(:class:`MiningResumeError`, naming each setting that differs) unless it
is told to start over (``restart=True``, ``--restart``), which deletes
the folder first.

With ``pool_iou`` (``--pool-scales``; default off) each image's proposals
of all scales go through one more NMS on the device
(:func:`~mmsnip.datasets.proposal_pool.pool_proposals`, the released
code's pooling) and the pool is written once per image (version 4,
recording ``pool_iou``): every scale's negatives then come from the
pool's proposals in its valid range.
"""
import dataclasses
import glob
import hashlib
import json
import os
import os.path as osp
import pickle
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar

from mmsnip.chips import ChipConfig
from mmsnip.engine.checkpoint import check_checkpoint_fits
from mmsnip.datasets.proposal_pool import check_pool_iou, pool_proposals
from mmsnip.datasets.proposals import (MissingProposalsError, ProposalFile,
                                       check_image_ids, image_name,
                                       image_prefix, write_proposal_groups)
from mmsnip.datasets.transforms import ImageSizeError, check_decoded_size
from mmsnip.registry import DATASETS, MODELS
from mmsnip.utils.config_tree import type_in
from mmsnip.utils.fileio import (atomic_open, checked_write, remove_folder,
                                 write_json)

SETTINGS_FILE = 'settings.json'


def _train_dataset_cfg(cfg: Config) -> dict:
    """The image dataset inside the SNIPER train dataloader."""
    ds = cfg.train_dataloader.dataset
    # SnipDataset subclasses SniperDataset (whole canvases, no negatives)
    if type_in(ds, ('SnipDataset', 'SniperDataset'),
               'DATASETS') != 'SniperDataset':
        raise ValueError('mine_proposals needs a config whose '
                         'train_dataloader.dataset is a SniperDataset, got '
                         f'{ds.get("type")}')
    return ds


class MiningResumeError(ValueError):
    """``<out>.parts`` holds shards mined with other settings."""


def _image_loader(sniper: dict) -> LoadImageFromFile:
    """The image loader of the chip dataset's pipeline (its first
    ``LoadImageFromFile`` or subclass), built: mining must see the pixels
    training sees, in the frame of the annotation (a loader that ignores
    EXIF orientation, another ``color_type`` or decoding backend).

    Raises:
        ValueError: The pipeline has no ``LoadImageFromFile``.
    """
    for transform in Compose(sniper.get('pipeline') or []).transforms:
        if isinstance(transform, LoadImageFromFile):
            return transform
    raise ValueError(
        'mine_proposals: train_dataloader.dataset.pipeline has no '
        'LoadImageFromFile (or subclass), and mining decodes the images '
        'with the loader training uses; put LoadImageFromFile first in '
        'that pipeline')


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def mining_settings(checkpoint: str, chip_cfg: ChipConfig, images: list,
                    num_per_scale: int, nms_iou: float,
                    pool_iou: Optional[float] = None) -> dict:
    """What the proposals of a mining run depend on (JSON-ready).

    Args:
        checkpoint (str): Stage-1 weights: recorded by size and sha256 of
            the file, so a moved copy still matches and a retrained one
            does not.
        chip_cfg (ChipConfig): Its scales are recorded.
        images (list): ``(img_id, file name)`` of every image, in order.
        num_per_scale (int): Proposals kept per image and scale.
        nms_iou (float): RPN NMS IoU.
        pool_iou (float, optional): IoU of the NMS pooling the scales, or
            None (per scale; also what a record without it means).

    Returns:
        dict: ``checkpoint``, ``num_per_scale``, ``nms_iou``,
        ``pool_iou``, ``scales``, ``images`` (count and sha256 of the
        list).
    """
    image_list = json.dumps([[int(i), str(f)] for i, f in images])
    settings = dict(
        checkpoint=dict(file=osp.basename(checkpoint),
                        size=osp.getsize(checkpoint),
                        sha256=_sha256(checkpoint)),
        num_per_scale=int(num_per_scale),
        nms_iou=float(nms_iou),
        pool_iou=None if pool_iou is None else float(pool_iou),
        scales=[dataclasses.asdict(spec) for spec in chip_cfg.scales],
        images=dict(count=len(images),
                    sha256=hashlib.sha256(image_list.encode()).hexdigest()))
    # as read back from settings.json (tuples become lists, inf stays)
    return json.loads(json.dumps(settings))


def settings_differences(old: dict, new: dict) -> List[str]:
    """``'num_per_scale (300 before, 20 now)'``-style lines, one per
    setting of :func:`mining_settings` that differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == 'checkpoint' and isinstance(a, dict) and \
                isinstance(b, dict):
            out.append(f'checkpoint (content differs: {a.get("file")}, '
                       f'{a.get("size")} bytes before; {b.get("file")}, '
                       f'{b.get("size")} bytes now)')
        elif key == 'images' and isinstance(a, dict) and isinstance(b, dict):
            out.append(f'images ({a.get("count")} before, {b.get("count")} '
                       'now, or other ids/files)')
        else:
            out.append(f'{key} ({a} before, {b} now)')
    return out


def prepare_parts(parts: str, settings: dict, restart: bool = False) -> None:
    """Make ``parts`` for a run with ``settings`` (rank 0 only).

    Records ``settings`` in a new folder; checks them against an existing
    one; with ``restart`` deletes an existing folder first.

    Raises:
        MiningResumeError: The folder holds shards of other settings, or
            shards without a settings record (an older mmsnip).
    """
    if restart:  # as a whole: an interruption leaves no half folder
        remove_folder(parts)
    os.makedirs(parts, exist_ok=True)
    record = osp.join(parts, SETTINGS_FILE)
    if not osp.isfile(record):
        if glob.glob(osp.join(parts, 'rank*-*.pkl')):
            raise MiningResumeError(
                f'"{parts}" holds proposal shards without a settings record '
                f'({SETTINGS_FILE}), so they may come from another '
                'checkpoint or settings; rerun with --restart (restart=True) '
                'to discard them, or delete the folder')
        write_json(record, settings, indent=1)
    check_parts(parts, settings)


def check_parts(parts: str, settings: dict) -> None:
    """Raise :class:`MiningResumeError` if ``parts`` was made for other
    settings (every rank checks, after rank 0 made the folder)."""
    record = osp.join(parts, SETTINGS_FILE)
    try:
        with open(record, encoding='utf-8') as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise MiningResumeError(
            f'"{record}" cannot be read ({e}); rerun with --restart '
            '(restart=True) to start over, or delete the folder') from None
    diff = settings_differences(old, settings)
    if diff:
        raise MiningResumeError(
            f'"{parts}" holds proposals mined with other settings: '
            f'{"; ".join(diff)}. Mixing them would give a proposal file of '
            'two models or settings: rerun with --restart (restart=True) '
            'to discard them and start over, or rerun with the earlier '
            'settings to resume')


# Said when a shard or the merged file cannot be written (a full disk).
RESUME_ADVICE = ('the shards written so far are kept: make room and run '
                 'the same command again to resume')


def _write_shard(folder: str, rank: int, first: int, data: dict) -> None:
    """Write a shard atomically; ``UserInputError`` naming it if it cannot
    be written (:func:`~mmsnip.utils.fileio.checked_write`)."""
    path = osp.join(folder, f'rank{rank}-{first:08d}.pkl')
    with checked_write(path, RESUME_ADVICE), atomic_open(path) as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)


def _shards(folder: str) -> Iterator[dict]:
    """The shards' ``img_id -> [ (P, 5) per scale ]`` dicts, one at a
    time (all of train2017's would be about 2 GB). An id mined twice (a
    dataset listing an image twice) keeps its first shard's rows."""
    seen = set()
    for path in sorted(glob.glob(osp.join(folder, 'rank*-*.pkl'))):
        with open(path, 'rb') as f:
            shard = pickle.load(f)
        shard = {k: v for k, v in shard.items() if k not in seen}
        seen.update(shard)
        yield shard


def _mined_ids(folder: str) -> set:
    return {img_id for shard in _shards(folder) for img_id in shard}


def merge_shards(folder: str, out_file: str, img_ids: Sequence,
                 num_scales: int, scales: Optional[Sequence] = None,
                 pool_iou: Optional[float] = None,
                 img_names: Optional[Sequence[str]] = None) -> int:
    """Write the proposal file of a miner's shards (``folder``), shard by
    shard (:func:`~mmsnip.datasets.proposals.write_proposal_groups`): it
    holds the file's arrays (9 bytes per proposal; only the scores, 1
    byte, when the shards give the images in the file's order, ids
    sorted) and one shard, not every shard at once.

    Args:
        folder (str): The shards (``rank<r>-<first>.pkl``).
        out_file (str): The proposal file to write.
        img_ids (Sequence): The dataset's image ids, distinct.
        num_scales (int): Scales of the chip config.
        scales (Sequence[ScaleSpec], optional): Those scales, recorded in
            the file (readers refuse a config of other scales).
        pool_iou (float, optional): The shards hold pooled proposals (one
            array object for every scale of an image), pooled at this IoU:
            written once per image (version 4) with ``pool_iou`` recorded.
        img_names (Sequence[str], optional): The name of each image of
            ``img_ids`` (:func:`~mmsnip.datasets.proposals.image_name`),
            recorded in the file so that readers refuse a dataset of other
            images with these ids.

    Returns:
        int: Proposals written (all images and scales).

    Raises:
        RuntimeError: An image of ``img_ids`` that no shard holds (found
            in the writer's first pass over the shards; nothing written).
        UserInputError: ``out_file`` cannot be written (a full disk),
            naming it; nothing is left at ``out_file``.
    """
    try:
        with checked_write(out_file, RESUME_ADVICE):
            write_proposal_groups(out_file, img_ids, num_scales,
                                  lambda: _shards(folder), scales=scales,
                                  shared_scales=pool_iou is not None,
                                  pool_iou=pool_iou, img_names=img_names)
    except MissingProposalsError as e:
        absent = set(e.missing)
        missing = [i for i in img_ids if i in absent]  # the dataset's order
        raise RuntimeError(f'mining finished without proposals for '
                           f'{len(missing)} images (e.g. {missing[:5]})'
                           ) from None
    return int(ProposalFile(out_file).offsets[-1])


@torch.no_grad()
def mine_proposals(cfg: Config,
                   checkpoint: str,
                   out_file: str,
                   num_per_scale: int = 300,
                   nms_iou: float = 0.7,
                   shard_size: int = 50,
                   device: Optional[str] = None,
                   restart: bool = False,
                   pool_iou: Optional[float] = None) -> Optional[str]:
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
        restart (bool): Discard shards of an earlier run instead of
            resuming from them (a resume needs the same settings, see
            :func:`mining_settings`).
        pool_iou (float, optional): Pool each image's proposals of all
            scales through one NMS at this IoU (the released code's
            negative proposals, 0.7:
            :data:`~mmsnip.datasets.proposal_pool.POOL_IOU`) and write
            the pool once per image. None (default): per scale.

    Returns:
        str | None: ``out_file`` on rank 0, None elsewhere.

    Raises:
        MiningResumeError: ``<out_file>.parts`` holds shards of other
            settings and ``restart`` is False.
        ValueError: Two different images (paths) with one ``img_id``
            (:func:`~mmsnip.datasets.proposals.check_image_ids`), before
            anything is mined.
        UserInputError: A shard, the settings record or ``out_file``
            cannot be written (a full disk), naming the file; the shards
            written so far are kept, so the same call resumes.
    """
    rank, world_size = get_dist_info()
    if pool_iou is not None:
        pool_iou = check_pool_iou(pool_iou, 'mine_proposals')
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    sniper = _train_dataset_cfg(cfg)
    chip_cfg = ChipConfig.from_dict(dict(sniper.chip_cfg))
    dataset = DATASETS.build(sniper.dataset)
    dataset.full_init()
    ids, paths = [], []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        ids.append(info['img_id'])
        paths.append(info['img_path'])
    # One entry per img_id: two images of one id would share it.
    check_image_ids(ids, paths, 'mine_proposals')
    # the chip dataset's own loader (EXIF orientation, colour type and
    # backend as in training)
    load = _image_loader(sniper)

    model = MODELS.build(cfg.model)
    if getattr(model, 'rpn_head', None) is None:
        raise ValueError('mine_proposals needs a model with an rpn_head '
                         f'(two-stage detector), got {type(model).__name__}')
    parts = out_file + '.parts'
    images = [(i, osp.basename(p)) for i, p in zip(ids, paths)]
    _prepare_parts_on_all_ranks(parts, mining_settings(
        checkpoint, chip_cfg, images, num_per_scale, nms_iou, pool_iou),
        restart)
    _load_rpn(model, checkpoint, num_per_scale, nms_iou)
    model.to(device).eval()

    done = _mined_ids(parts)
    mine = [i for i in range(rank, len(dataset), world_size)]
    todo = [i for i in mine
            if dataset.get_data_info(i)['img_id'] not in done]
    print_log(f'mining proposals: {len(dataset)} images x '
              f'{len(chip_cfg.scales)} scales; rank {rank} has {len(todo)} '
              f'of its {len(mine)} images left', logger='current')
    if pool_iou is not None:
        print_log(f'mining proposals: pooled over the '
                  f'{len(chip_cfg.scales)} scales (one NMS at IoU '
                  f'{pool_iou:g} per image, the released code\'s rule): '
                  'every scale\'s negatives will come from the pool\'s '
                  'proposals in its valid range', logger='current')
    # each image decoded once by `load`, then resized to every scale
    pipelines = [
        Compose([
            dict(type='ResizeToScale', scale=dataclasses.asdict(spec)),
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                            'scale_factor'))
        ]) for spec in chip_cfg.scales
    ]
    bar = ProgressBar(len(todo)) if rank == 0 else None
    shard: Dict[Union[int, str], List[np.ndarray]] = {}
    first = None
    for n, idx in enumerate(todo):
        first = idx if first is None else first
        info = dataset.get_data_info(idx)
        shard[info['img_id']] = _image_proposals(
            model, _decoded(load, info), pipelines, pool_iou)
        if len(shard) == shard_size or n == len(todo) - 1:
            _write_shard(parts, rank, first, shard)
            shard, first = {}, None
        if bar is not None:
            bar.update()
    barrier()
    if rank != 0:
        return None
    # One entry per image id (a list file may name an image twice), with
    # its name (the readers check it against their dataset's)
    prefix = image_prefix(getattr(dataset, 'data_prefix', None))
    names = dict(zip(ids, (image_name(p, prefix) for p in paths)))
    ids = list(names)
    rows = merge_shards(parts, out_file, ids, len(chip_cfg.scales),
                        scales=chip_cfg.scales, pool_iou=pool_iou,
                        img_names=list(names.values()))
    remove_folder(parts)
    print_log(f'wrote {out_file}: {len(ids)} images, '
              f'{rows / max(len(ids), 1):.0f} proposals per image '
              '(all scales)', logger='current')
    return out_file


def _prepare_parts_on_all_ranks(parts: str, settings: dict,
                                restart: bool) -> None:
    """Rank 0 prepares the shard folder (:func:`prepare_parts`), then every
    other rank checks it (:func:`check_parts`); a
    :class:`MiningResumeError` is raised on the rank that found it, after
    the barrier (no rank waits for ever)."""
    rank, _ = get_dist_info()
    error = None
    if rank == 0:
        try:
            prepare_parts(parts, settings, restart)
        except MiningResumeError as e:
            error = e
    barrier()
    if rank != 0:
        try:
            check_parts(parts, settings)
        except MiningResumeError as e:
            error = e
    if error is not None:
        raise error


def _load_rpn(model: torch.nn.Module, checkpoint: str, num_per_scale: int,
              nms_iou: float) -> None:
    """Load the stage-1 weights into ``model``, checked on what mining runs
    (backbone, neck and RPN head; of the detector inside an AutoFocus: its
    keys keep their ``detector.``), and set the RPN to keep
    ``num_per_scale`` proposals after an NMS at ``nms_iou``."""
    loaded = load_checkpoint(model, checkpoint, map_location='cpu',
                             logger='current')
    inner = getattr(model, 'detector', model)
    used = torch.nn.ModuleDict({
        name: getattr(inner, name) for name in ('backbone', 'neck',
                                                'rpn_head')
        if isinstance(getattr(inner, name, None), torch.nn.Module)})
    if inner is not model:
        used = torch.nn.ModuleDict(dict(detector=used))
    check_checkpoint_fits(used, loaded, checkpoint,
                          name=f'{type(inner).__name__} backbone, neck and '
                          'RPN head')
    rpn_cfg = model.rpn_head.test_cfg
    rpn_cfg.max_per_img = num_per_scale
    rpn_cfg.nms = dict(type='nms', iou_threshold=nms_iou)


def _decoded(load, info: dict) -> dict:
    """The image of data info ``info`` decoded by ``load`` (the chip
    pipeline's loader), its size checked against the annotated one."""
    loaded = load(dict(info))
    if loaded is None:  # LoadImageFromFile(ignore_empty=True)
        raise ValueError(
            f'mine_proposals: {info["img_path"]} (img_id '
            f'{info["img_id"]}) could not be loaded (the loader '
            'returned nothing: a missing or empty file); every image '
            'needs proposals: fix or remove it')
    try:
        check_decoded_size(loaded)
    except ImageSizeError as e:
        raise ValueError(f'mine_proposals: {e}') from None
    return loaded


def _image_proposals(model: torch.nn.Module, loaded: dict,
                     pipelines: List[Compose],
                     pool_iou: Optional[float]) -> List[np.ndarray]:
    """The RPN's proposals of one decoded image at every scale (one
    pipeline per scale): ``(P, 5)`` float32 ``[x1, y1, x2, y2, score]``
    arrays in ORIGINAL pixels, one per scale; with ``pool_iou``, each
    scale's entry is the same pooled array."""
    per_scale = []
    for pipeline in pipelines:
        data = model.data_preprocessor(
            pseudo_collate([pipeline(dict(loaded))]), False)
        feats = model.extract_feat(data['inputs'])
        result = model.rpn_head.predict(
            feats, data['data_samples'], rescale=True)[0]
        per_scale.append(torch.cat(
            [result.bboxes, result.scores[:, None]], dim=1).float())
    if pool_iou is None:
        return [p.cpu().numpy() for p in per_scale]
    # one array object for every scale
    return [pool_proposals(per_scale, pool_iou).cpu().numpy()
            ] * len(per_scale)
