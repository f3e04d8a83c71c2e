# Copyright (c) mmsnip contributors. All rights reserved.
"""``SniperDataset``: any MMDetection detection dataset, one item per chip.

The wrapper asks the chip engine (:mod:`mmsnip.chips`) for every image's
positive chips and, given a proposal file, its negative-chip pool, caches
them on disk, and serves chip ``i`` as the inner dataset's data info of the
chip's image plus a ``chip`` dict; its own pipeline (typically
``LoadImageFromFile`` -> ``LoadAnnotations`` -> ``CropChip`` -> ``RandomFlip``
-> ``PackChipInputs``) cuts and resizes the chip.

Index layout: ``[0, P)`` are the positive chips, ``[P, P + N)`` the whole
negative pool. Which negatives an epoch uses is decided by
:class:`~mmsnip.datasets.samplers.SniperSampler` from ``(seed, epoch)``
(:meth:`SniperDataset.epoch_indices`), so the choice reaches dataloader
workers without any state in the dataset.

Annotation checks (``docs/custom_dataset.md``): boxes are sanitised with
:func:`~mmsnip.chips.sanitize_boxes` both for the chip table and for the
boxes served to the pipeline (clipped to the image; zero-area, negative-size
and wholly-outside boxes dropped), and one summary warning per dataset
counts what was dropped or clipped; non-finite boxes and images without a
size are errors naming the image. When the inner dataset cannot even be
built (a COCO file lacking ``height``, ``file_name``, ``area``, ...), the
error names the file, the image or annotation and the field.
"""
import copy
import hashlib
import json
import os
import os.path as osp
import logging
import tempfile
from typing import List, Optional, Union

import numpy as np
from mmengine.dataset import BaseDataset, Compose, force_full_init
from mmengine.logging import print_log

from mmsnip.chips import (ChipConfig, ChipSet, box_issues,
                          generate_negative_chips, generate_positive_chips,
                          sample_negative_chips, sanitize_boxes)
from mmsnip.registry import DATASETS
from mmsnip.utils.preflight import coco_problem
from .proposals import load_proposals

CACHE_VERSION = 1


@DATASETS.register_module()
class SniperDataset:
    """A dataset wrapper whose items are SNIPER chips (Sec. 3.3).

    Args:
        dataset (dict | BaseDataset): Any MMDetection detection dataset
            (``CocoDataset``, ``VOCDataset``, ...). Its own pipeline is not
            used; its data infos must hold ``height``, ``width`` and
            ``instances`` (``bbox`` xyxy in original pixels,
            ``bbox_label``, ``ignore_flag``).
        chip_cfg (dict): :class:`~mmsnip.chips.ChipConfig` fields: ``scales``
            (list of ``dict(factor=|max_side=|short_max=, valid_range=)``),
            ``chip_size``, ``chip_stride``, ``neg_min_proposals``,
            ``neg_per_image``.
        pipeline (list[dict]): Transforms applied to each chip.
        negatives (bool): Train with negative chips. Requires
            ``proposal_file``; ``False`` trains on positive chips only (the
            paper's stage 1 and its "no negatives" ablation). There is no
            silent fallback: ``negatives=True`` without proposals is an error.
        proposal_file (str, optional): Proposals for negative mining
            (:mod:`mmsnip.datasets.proposals`, written by
            ``tools/mine_proposals.py``).
        cache_dir (str, optional): Where chip tables are cached, keyed by the
            annotations, the chip settings and the proposals. Defaults to
            ``~/.cache/mmsnip/chips``. ``None``-like ``''`` disables caching.
        seed (int): Seed of the per-epoch negative sampling.
        max_refetch (int): Retries with another chip when the pipeline
            returns None.
        lazy_init (bool): Defer building the chip table to first use.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 chip_cfg: dict,
                 pipeline: List[dict],
                 negatives: bool = False,
                 proposal_file: Optional[str] = None,
                 cache_dir: Optional[str] = None,
                 seed: int = 0,
                 max_refetch: int = 15,
                 lazy_init: bool = False):
        self.dataset = _build_inner(dataset) if isinstance(dataset, dict) \
            else dataset
        self.chip_cfg = chip_cfg if isinstance(chip_cfg, ChipConfig) else \
            ChipConfig.from_dict(dict(chip_cfg))
        if negatives and not proposal_file:
            raise ValueError(
                'SniperDataset: negatives=True needs a proposal_file (mine '
                'one with tools/mine_proposals.py); set negatives=False to '
                'train on positive chips only')
        if proposal_file and not negatives:
            raise ValueError('SniperDataset: proposal_file is set but '
                             'negatives=False; drop one of the two')
        if seed < 0:
            raise ValueError(f'SniperDataset: seed must be >= 0, got {seed}')
        self.negatives = negatives
        self.proposal_file = proposal_file
        self.cache_dir = osp.expanduser(
            '~/.cache/mmsnip/chips' if cache_dir is None else cache_dir)
        self.seed = seed
        self.max_refetch = max_refetch
        self.pipeline = Compose(pipeline)
        self._metainfo = self.dataset.metainfo
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        """Build (or load from the cache) the chip table."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        _check_classes(self.dataset)
        self.annotation_report = self._audit()
        key = self._cache_key()
        table = self._load_cache(key)
        if table is None:
            table = self._build_table()
            self._save_cache(key, table)
        self.chips = ChipSet(*(table[f] for f in (
            'boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
            'is_positive')))
        self.chip_img = table['img_index']
        # The table lists all positive chips first, then the negative pools
        # image by image (see _build_table).
        self.num_positive = int(self.chips.is_positive.sum())
        # Negative pool of image i: rows neg_start[i]:neg_start[i + 1].
        neg_img = self.chip_img[self.num_positive:]
        self.neg_start = self.num_positive + np.searchsorted(
            neg_img, np.arange(len(self.dataset) + 1))
        self._fully_initialized = True
        print_log(self.summary(), logger='current')

    # -- chip table -----------------------------------------------------
    def _where(self, info: dict) -> str:
        """``ann_file: image <id> (<path>)`` for messages."""
        ann = getattr(self.dataset, 'ann_file', None) or \
            type(self.dataset).__name__
        return (f'{ann}: image {info.get("img_id")} '
                f'({info.get("img_path")})')

    def _image_arrays(self, idx: int):
        """Data info, ORIGINAL size and raw ``(N, 4)`` xyxy boxes and
        ``(N,)`` crowd (``ignore_flag``) flags of image ``idx``."""
        info = self.dataset.get_data_info(idx)
        h, w = info.get('height'), info.get('width')
        if not _positive_number(h) or not _positive_number(w):
            raise ValueError(
                f'SniperDataset: {self._where(info)} has height={h!r}, '
                f'width={w!r}; chips need its size in the annotations')
        inst = info.get('instances', [])
        try:
            boxes = np.array([i['bbox'] for i in inst],
                             np.float64).reshape(-1, 4)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f'SniperDataset: {self._where(info)}: an '
                             'instance has no [x1, y1, x2, y2] bbox of '
                             f'numbers ({type(e).__name__}: {e})') from e
        crowd = np.array([i.get('ignore_flag', 0) for i in inst], bool)
        return info, h, w, boxes, crowd

    def _audit(self) -> dict:
        """Check every image's boxes once; one summary warning.

        Returns:
            dict: Counts: ``images``, ``empty_images`` (no box), and
            ``crowd_only_images`` (only crowd / ignore boxes): both get no
            positive chip; ``boxes`` and the :func:`~mmsnip.chips.box_issues`
            classes ``clipped``, ``empty``, ``outside`` (dropped),
            ``examples``: the first offending image per class.

        Raises:
            ValueError: A box with a NaN/inf coordinate, naming the image.
        """
        counts = dict(images=len(self.dataset), empty_images=0,
                      crowd_only_images=0, boxes=0, clipped=0, empty=0,
                      outside=0)
        examples = {}
        for i in range(len(self.dataset)):
            info, h, w, boxes, crowd = self._image_arrays(i)
            issues = box_issues(boxes, h, w)
            if issues['not_finite'].any():
                j = int(np.flatnonzero(issues['not_finite'])[0])
                raise ValueError(
                    f'SniperDataset: {self._where(info)}: instance {j} has '
                    f'a non-finite bbox {boxes[j].tolist()}')
            counts['boxes'] += len(boxes)
            for name in ('clipped', 'empty', 'outside'):
                num = int(issues[name].sum())
                counts[name] += num
                if num and name not in examples:
                    j = int(np.flatnonzero(issues[name])[0])
                    examples[name] = (f'{self._where(info)}, bbox '
                                      f'{boxes[j].tolist()} in {w}x{h}')
            usable = ~(issues['empty'] | issues['outside'])
            if not usable.any():
                counts['empty_images'] += 1
            elif crowd[usable].all():
                counts['crowd_only_images'] += 1
        parts = []
        if counts['empty']:
            parts.append(f'{counts["empty"]} boxes of zero or negative size '
                         f'dropped (first: {examples["empty"]})')
        if counts['outside']:
            parts.append(f'{counts["outside"]} boxes wholly outside their '
                         f'image dropped (first: {examples["outside"]})')
        if counts['clipped']:
            parts.append(f'{counts["clipped"]} boxes partly outside their '
                         f'image clipped to it (first: {examples["clipped"]})')
        if parts:
            print_log(f'SniperDataset: of {counts["boxes"]} boxes, ' +
                      '; '.join(parts), logger='current',
                      level=logging.WARNING)
        counts['examples'] = examples
        return counts

    def _build_table(self) -> dict:
        cfg = self.chip_cfg
        proposals = None
        if self.negatives:
            proposals = load_proposals(
                self.proposal_file, [
                    self.dataset.get_data_info(i)['img_id']
                    for i in range(len(self.dataset))
                ], num_scales=len(cfg.scales))
        pos_sets, neg_sets, pos_img, neg_img = [], [], [], []
        for i in range(len(self.dataset)):
            info, h, w, boxes, crowd = self._image_arrays(i)
            result = generate_positive_chips(boxes, h, w, cfg, crowd)
            pos_sets.append(result.chips)
            pos_img.append(np.full(len(result.chips), i))
            if proposals is not None:
                neg = generate_negative_chips(proposals[info['img_id']], h, w,
                                              cfg, result.chips)
                neg_sets.append(neg)
                neg_img.append(np.full(len(neg), i))
        chips = ChipSet.concat(pos_sets + neg_sets)
        img_index = np.concatenate(pos_img + neg_img + [np.zeros(0)])
        return dict(boxes=chips.boxes, boxes_scaled=chips.boxes_scaled,
                    scale_index=chips.scale_index,
                    scale_factor=chips.scale_factor,
                    is_positive=chips.is_positive,
                    img_index=img_index.astype(np.int64))

    def _cache_key(self) -> str:
        digest = hashlib.sha256()

        def add(obj):
            digest.update(
                json.dumps(obj, sort_keys=True, default=str).encode())

        add([CACHE_VERSION, repr(self.chip_cfg)])
        for i in range(len(self.dataset)):
            info = self.dataset.get_data_info(i)
            add([
                info.get('img_id'), info.get('img_path'), info.get('height'),
                info.get('width'),
                [(x['bbox'], x.get('ignore_flag', 0))
                 for x in info.get('instances', [])]
            ])
        if self.negatives:
            with open(self.proposal_file, 'rb') as f:
                for block in iter(lambda: f.read(1 << 20), b''):
                    digest.update(block)
        return digest.hexdigest()[:24]

    def _cache_path(self, key: str) -> Optional[str]:
        if not self.cache_dir:
            return None
        return osp.join(self.cache_dir, f'chips-{key}.npz')

    def _load_cache(self, key: str) -> Optional[dict]:
        path = self._cache_path(key)
        if path is None or not osp.isfile(path):
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as e:
            print_log(f'ignoring unreadable chip cache {path}: {e}',
                      logger='current')
            return None

    def _save_cache(self, key: str, table: dict) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        os.makedirs(self.cache_dir, exist_ok=True)
        # Write to a temporary file in the same folder, then rename: readers
        # (other ranks, later runs) never see a partial file.
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix='.npz.tmp')
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **table)
        os.replace(tmp, path)

    # -- epochs -----------------------------------------------------------
    @force_full_init
    def epoch_indices(self, epoch: int) -> np.ndarray:
        """Chips of an epoch: every positive plus this epoch's negatives.

        ``neg_per_image`` negatives per image, drawn from the image's pool
        by :func:`~mmsnip.chips.sample_negative_chips` from ``(seed, epoch,
        image index)``. Sorted ascending; shuffling is the sampler's job.
        """
        picks = [np.arange(self.num_positive)]
        sizes = np.diff(self.neg_start)
        for img in np.flatnonzero(sizes):
            local = sample_negative_chips(int(sizes[img]),
                                          self.chip_cfg.neg_per_image,
                                          self.seed, epoch, int(img))
            picks.append(self.neg_start[img] + local)
        return np.concatenate(picks).astype(np.int64)

    @force_full_init
    def epoch_size(self) -> int:
        """Number of chips in every epoch (the same for all epochs)."""
        sizes = np.diff(self.neg_start)
        return self.num_positive + int(
            np.minimum(sizes, self.chip_cfg.neg_per_image).sum())

    @force_full_init
    def epoch_pixels(self, epoch: int = 0) -> float:
        """Network-input pixels of an epoch's chips: their areas at their
        scale (a chip clipped to a small canvas counts what it holds;
        batch padding is not counted)."""
        boxes = self.chips.boxes_scaled[self.epoch_indices(epoch)]
        return float(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1).sum())

    @force_full_init
    def summary(self) -> str:
        """Chips per epoch and pixels per epoch against the full pyramid.

        Pixels are the chips' areas at their scale (a chip clipped to a
        small canvas counts what it holds; batch padding is not counted),
        for the chips of epoch 0.
        """
        pyramid = 0.0
        for i in range(len(self.dataset)):
            info = self.dataset.get_data_info(i)
            for spec in self.chip_cfg.scales:
                sh, sw = spec.scaled_shape(info['height'], info['width'])
                pyramid += sh * sw
        epoch = self.epoch_indices(0)
        pixels = self.epoch_pixels(0)
        negatives = len(epoch) - self.num_positive
        report = getattr(self, 'annotation_report', None) or {}
        no_pos = report.get('empty_images', 0) + \
            report.get('crowd_only_images', 0)
        extra = (f'; {report.get("empty_images", 0)} images without boxes '
                 f'and {report.get("crowd_only_images", 0)} with only crowd '
                 'boxes have no positive chip') if no_pos else ''
        return (f'{type(self).__name__}: {len(self.dataset)} images, '
                f'{self.num_positive} positive chips, '
                f'{len(self) - self.num_positive} negatives in the pool, '
                f'{len(epoch)} chips per epoch ({self.num_positive} pos + '
                f'{negatives} neg, '
                f'{len(epoch) / max(len(self.dataset), 1):.2f} per image); '
                f'{pixels / 1e6:.1f} MPix per epoch vs '
                f'{pyramid / 1e6:.1f} MPix for the full pyramid '
                f'({pyramid / max(pixels, 1):.2f}x fewer){extra}')

    # -- items ------------------------------------------------------------
    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """The image's data info plus the chip of index ``idx``."""
        img = int(self.chip_img[idx])
        info = _sanitize_instances(self.dataset.get_data_info(img))
        s = int(self.chips.scale_index[idx])
        info['chip'] = dict(
            index=int(idx),
            box=self.chips.boxes[idx].copy(),
            box_scaled=self.chips.boxes_scaled[idx].copy(),
            scale_index=s,
            scale_factor=float(self.chips.scale_factor[idx]),
            valid_range=self.chip_cfg.scales[s].valid_range,
            chip_size=self.chip_cfg.chip_size,
            is_positive=bool(self.chips.is_positive[idx]))
        return info

    @force_full_init
    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, idx: int) -> dict:
        for _ in range(self.max_refetch + 1):
            data = self.pipeline(self.get_data_info(idx))
            if data is not None:
                return data
            idx = int(np.random.randint(0, len(self)))
        raise RuntimeError(
            f'SniperDataset: the pipeline returned None for '
            f'{self.max_refetch + 1} chips in a row')


@DATASETS.register_module()
class SnipDataset(SniperDataset):
    """SNIP's full-pyramid training: every image at every scale (Sec. 3.2).

    The baseline SNIPER is measured against: one item per (image, scale),
    the whole image resized to that scale, with the same valid ranges and
    the same transforms as ``SniperDataset`` (``CropChip`` then cuts the
    whole image; its size is not capped by ``chip_size``). ``chip_size``
    and ``chip_stride`` of ``chip_cfg`` are unused; there are no negatives.
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get('negatives') or kwargs.get('proposal_file'):
            raise ValueError('SnipDataset trains on whole images: it takes '
                             'no negatives or proposal_file')
        super().__init__(*args, **kwargs)

    def _build_table(self) -> dict:
        boxes, scaled, scale_index, factors, img_index = [], [], [], [], []
        for i in range(len(self.dataset)):
            _, h, w, _, _ = self._image_arrays(i)
            for s, spec in enumerate(self.chip_cfg.scales):
                sh, sw = spec.scaled_shape(h, w)
                boxes.append([0, 0, w, h])
                scaled.append([0, 0, sw, sh])
                scale_index.append(s)
                factors.append(spec.factor_for(h, w))
                img_index.append(i)
        n = len(boxes)
        return dict(boxes=np.array(boxes, np.float64).reshape(n, 4),
                    boxes_scaled=np.array(scaled, np.float64).reshape(n, 4),
                    scale_index=np.array(scale_index, np.int64),
                    scale_factor=np.array(factors, np.float64),
                    is_positive=np.ones(n, bool),
                    img_index=np.array(img_index, np.int64))

    def _cache_path(self, key: str) -> Optional[str]:
        return None  # one row per (image, scale): cheaper than a cache read

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        scaled = self.chips.boxes_scaled[idx]
        info['chip']['chip_size'] = int(max(scaled[2], scaled[3]))
        return info


def _positive_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool) and bool(np.isfinite(value)) and value > 0


def _sanitize_instances(info: dict) -> dict:
    """``info`` with its instances' boxes as the chip table saw them:
    clipped to the image, zero-area ones dropped
    (:func:`~mmsnip.chips.sanitize_boxes`)."""
    inst = info.get('instances') or []
    if not inst:
        return info
    boxes = np.array([i['bbox'] for i in inst], np.float64).reshape(-1, 4)
    clipped, keep = sanitize_boxes(boxes, info['height'], info['width'])
    info['instances'] = [dict(inst[j], bbox=clipped[j].tolist())
                         for j in np.flatnonzero(keep)]
    return info


def _build_inner(cfg: dict):
    """Build the wrapped dataset; explain a failure on a bad COCO file.

    MMDetection's ``CocoDataset`` fails with a bare ``KeyError('height')``
    (or ``'file_name'``, ``'area'``, ``'bbox'``, ``'categories'``) on a file
    lacking a field; this re-raises it as a ``ValueError`` naming the file,
    the image or annotation and the field.
    """
    try:
        return DATASETS.build(cfg)
    except (KeyError, TypeError, IndexError) as e:
        ann = cfg.get('ann_file')
        if ann and not osp.isabs(ann) and cfg.get('data_root'):
            ann = osp.join(cfg['data_root'], ann)
        problem = None
        if ann and str(ann).endswith('.json') and osp.isfile(ann):
            with open(ann, encoding='utf-8') as f:
                problem = coco_problem(json.load(f))
        if problem is None:
            raise
        raise ValueError(f'SniperDataset: {ann}: {problem} (MMDetection: '
                         f'{type(e).__name__}: {e})') from e


def _check_classes(dataset) -> None:
    """Class names and category ids of a COCO-style dataset agree.

    ``CocoDataset`` keeps the categories whose name is in
    ``metainfo['classes']`` and silently drops annotations of any other
    category id. A class name not in the file's ``categories`` would shift
    every label: an error. Annotations of category ids outside the classes
    (missing from ``categories``, or left out of ``classes`` on purpose):
    one warning with their count.
    """
    cat_ids = getattr(dataset, 'cat_ids', None)
    if cat_ids is None:
        return
    classes = dataset.metainfo.get('classes') or ()
    ann = getattr(dataset, 'ann_file', '')
    if len(cat_ids) != len(classes):
        raise ValueError(
            f'SniperDataset: {ann}: metainfo classes has {len(classes)} '
            f'names but only {len(cat_ids)} of them are in the file\'s '
            '"categories"; check the spelling of the classes')
    img_map = getattr(dataset, 'cat_img_map', None) or {}
    kept = set(cat_ids)
    dropped = {c: len(v) for c, v in img_map.items() if c not in kept and v}
    if dropped:
        print_log(
            f'SniperDataset: {ann}: {sum(dropped.values())} annotations of '
            f'category ids {sorted(dropped)} are not among the '
            f'{len(classes)} classes (not in "categories", or not in '
            'metainfo classes) and were dropped by CocoDataset',
            logger='current', level=logging.WARNING)
