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

Chip tables (:mod:`mmsnip.datasets.chip_table`): the dataset is read once
into flat arrays; the table is built in processes for large datasets and
cached in ``cache_dir`` (a corrupt cache is rebuilt, an unwritable folder
means no cache, distributed ranks build once: one takes a lock, the others
wait and load). Degraded setups are refused: zero chips, identical scales
and a proposal file without a usable proposal are errors; NaN proposals and
an empty negative pool are warnings.
"""
import copy
import hashlib
import json
import logging
import os.path as osp
from typing import List, Optional, Tuple, Union

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import BaseDataset, Compose, force_full_init
from mmengine.logging import print_log

from mmsnip.chips import (ChipConfig, ChipSet, box_issues, box_sizes,
                          in_range, sample_negative_chips_batch,
                          sanitize_boxes)
from mmsnip.chips.scales import MIN_OBJECT_PX
from mmsnip.registry import DATASETS
from mmsnip.utils.checks import UserInputError, is_integer, is_number
from mmsnip.utils.preflight import coco_problem
from .chip_table import (CACHE_VERSION, ChipTableCache, ImageRecords,
                         build_chip_table)
from .decode_cache import (DecodedImageCache, TransformError,
                           check_shared_loader, run_pipeline_shared,
                           run_transforms)
from .proposals import (ProposalFile, check_proposals, image_name,
                        image_prefix, open_proposals)
from .transforms import geometric_before_crop

# Share of a proposal file's rows that may be unusable (dropped as empty,
# or reaching outside their image) with an INFO line only; more is a
# warning, more than half an error (SniperDataset._check_degraded).
FEW_BAD_PROPOSALS = 0.01
# Default decoded-image budget per process (MiB): about 9 decoded 3000 px
# aerial images, or every image of the demo datasets.
DEFAULT_DECODE_CACHE_MB = 256


def _check_setting(name: str, value, ok: bool, want: str) -> None:
    if not ok:
        raise UserInputError(f'SniperDataset: {name} must be {want}, got '
                             f'{value!r}')


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
            A corrupt cache file is rebuilt; an unwritable folder means no
            cache (a warning).
        build_workers (int, optional): Processes that build the chip table
            (0: this process; None: one per core from 2000 images on). The
            table is the same for any number.
        cache_wait_timeout (float): Seconds to wait for another process
            (rank) building the same table before an error naming its lock
            file.
        seed (int): Seed of the per-epoch negative sampling.
        max_refetch (int): Retries with another chip (a random positive
            one: positives are in every epoch) when the pipeline returns
            None.
        lazy_init (bool): Defer building the chip table to first use.
        decode_cache_mb (float, optional): Per-process (per dataloader
            worker) byte budget, in MiB, of decoded images shared by the
            chips of an image (:mod:`mmsnip.datasets.decode_cache`): the
            pipeline's first transform, which must then be
            ``LoadImageFromFile``, runs once per image while the image stays
            cached. The items are those of the per-chip path as long as
            no transform before ``CropChip`` writes into the image in place
            (``CutOut``, ``RandomErasing``: such a pipeline is refused with
            an error naming the transform and the fixes). 0
            decodes the image for every chip; None (default): 256 when the
            pipeline starts with ``LoadImageFromFile``, else 0. Hits need
            an order that visits an image's chips close together
            (``SniperSampler(image_window=...)``) or a dataset whose images
            fit in the budget (``docs/sniper.md``, "Data path").
    """

    # Whether chip tables go to ``cache_dir`` (SnipDataset: never).
    _use_cache = True

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 chip_cfg: dict,
                 pipeline: List[dict],
                 negatives: bool = False,
                 proposal_file: Optional[str] = None,
                 cache_dir: Optional[str] = None,
                 seed: int = 0,
                 max_refetch: int = 15,
                 lazy_init: bool = False,
                 build_workers: Optional[int] = None,
                 cache_wait_timeout: float = 1800.0,
                 decode_cache_mb: Optional[float] = None):
        self.dataset = _build_inner(dataset) if isinstance(dataset, dict) \
            else dataset
        self.chip_cfg = chip_cfg if isinstance(chip_cfg, ChipConfig) else \
            ChipConfig.from_dict(chip_cfg)
        if negatives and not proposal_file:
            raise UserInputError(
                'SniperDataset: negatives=True needs a proposal_file (mine '
                'one with tools/mine_proposals.py); set negatives=False to '
                'train on positive chips only')
        if proposal_file and not negatives:
            raise UserInputError('SniperDataset: proposal_file is set but '
                                 'negatives=False; drop one of the two')
        _check_setting('seed', seed, is_integer(seed) and seed >= 0,
                       'an int >= 0')
        _check_setting('max_refetch', max_refetch,
                       is_integer(max_refetch) and max_refetch >= 0,
                       'an int >= 0')
        _check_setting('build_workers', build_workers, build_workers is None
                       or is_integer(build_workers) and build_workers >= 0,
                       'None (one per core) or an int >= 0 (0: this '
                       'process)')
        _check_setting('cache_wait_timeout', cache_wait_timeout,
                       is_number(cache_wait_timeout, finite=False)
                       and cache_wait_timeout > 0, 'a number of seconds '
                       '> 0 (inf: wait for ever)')
        self._check_same_resize(self.chip_cfg.same_resize_pairs())
        self.build_workers = build_workers
        self.cache_wait_timeout = cache_wait_timeout
        self.negatives = negatives
        self.proposal_file = proposal_file
        self.cache_dir = osp.expanduser(
            '~/.cache/mmsnip/chips' if cache_dir is None else cache_dir)
        self.seed = seed
        self.max_refetch = max_refetch
        self.pipeline = Compose(pipeline)
        problem = geometric_before_crop(self.pipeline.transforms)
        if problem:
            raise UserInputError(f'{type(self).__name__}: {problem}')
        if decode_cache_mb is None:
            decode_cache_mb = DEFAULT_DECODE_CACHE_MB if isinstance(
                next(iter(self.pipeline.transforms), None),
                LoadImageFromFile) else 0
        _check_setting('decode_cache_mb', decode_cache_mb,
                       is_number(decode_cache_mb) and decode_cache_mb >= 0,
                       'a finite number >= 0 (MiB)')
        if decode_cache_mb:
            check_shared_loader(self.pipeline.transforms,
                                f'{type(self).__name__}')
        self.decode_cache_mb = decode_cache_mb
        self.decode_cache = DecodedImageCache(int(decode_cache_mb * 2**20))
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
        records = ImageRecords.from_infos(
            (self.dataset.get_data_info(i) for i in range(len(self.dataset))),
            self._where)
        self._check_same_resize(self.chip_cfg.same_resize_pairs(
            records.heights, records.widths), len(records))
        self._check_tiny_scales(records)
        self.annotation_report = self._audit(records)
        proposals, identity = self._open_proposals(records)
        key = self._cache_key(records, identity)
        # What identifies this table (SniperSampler compares it across
        # ranks: each rank builds its own from its own annotation copy).
        self.table_key = key
        cache = ChipTableCache(self.cache_dir if self._use_cache else '',
                               wait_timeout=self.cache_wait_timeout)
        table = cache.load_or_build(
            key, len(records),
            lambda: self._build_table(records, proposals))
        self.chips = ChipSet(*(table[f] for f in (
            'boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
            'is_positive')))
        self.chip_img = table['img_index']
        self._records = records
        # The table lists all positive chips first, then the negative pools
        # image by image (see build_chip_table).
        self.num_positive = int(self.chips.is_positive.sum())
        # Negative pool of image i: rows neg_start[i]:neg_start[i + 1].
        neg_img = self.chip_img[self.num_positive:]
        self.neg_start = self.num_positive + np.searchsorted(
            neg_img, np.arange(len(self.dataset) + 1))
        self._check_degraded(records, table.get('stats') or {},
                             getattr(proposals, 'runs_per_image', None))
        self._fully_initialized = True
        print_log(self.summary(), logger='current')

    def _check_same_resize(self, pairs, num_images: Optional[int] = None
                           ) -> None:
        """Refuse two scales that resize alike (``pairs`` of
        :meth:`ChipConfig.same_resize_pairs`): by their rules, or on all
        ``num_images`` images of the dataset."""
        for i, j in pairs:
            a, b = self.chip_cfg.scales[i], self.chip_cfg.scales[j]
            where = 'the same scale' if num_images is None else (
                f'the same factor on all {num_images} images of the '
                'dataset')
            raise UserInputError(
                f'SniperDataset: chip_cfg.scales[{i}] ({a.rule_text}) '
                f'and scales[{j}] ({b.rule_text}) are {where}: every chip '
                'of it would be made twice; remove one of them (give the '
                'remaining one the union of their valid ranges)')

    def _check_tiny_scales(self, records: ImageRecords) -> None:
        """A scale whose valid objects are all under ``MIN_OBJECT_PX``
        SCALED pixels (:meth:`ChipConfig.largest_valid_scaled`): on every
        image of the dataset an error (it would train on specks: chips of
        a few pixels, objects smaller than a feature cell), on some images
        a warning; each names the scale and the fix."""
        if not len(records):
            return
        largest = self.chip_cfg.largest_valid_scaled(records.heights,
                                                     records.widths)
        for s, spec in enumerate(self.chip_cfg.scales):
            tiny = largest[s] < MIN_OBJECT_PX
            if not tiny.any():
                continue
            k = int(np.argmax(largest[s] * tiny))  # the least tiny of them
            h, w = _num(records.heights[k]), _num(records.widths[k])
            canvas_h, canvas_w = spec.scaled_shape(h, w)
            lo, hi = spec.valid_range
            where = self._where(dict(img_id=records.img_ids[k],
                                     img_path=records.img_paths[k]))
            example = (f'e.g. {where}: {w}x{h} px, '
                       f'a {canvas_w}x{canvas_h} px canvas, objects of at '
                       f'most {largest[s, k]:.3g} px')
            # the factor that brings the largest possible object of the
            # dataset's largest image to MIN_OBJECT_PX
            need = MIN_OBJECT_PX / float(np.max(np.minimum(
                hi, np.sqrt(records.heights * records.widths))))
            what = (f'{type(self).__name__}: chip_cfg.scales[{s}] '
                    f'({spec.rule_text}, '
                    f'valid_range=({lo:g}, '
                    f'{hi:g}))')
            fix = (f'raise its factor (to at least {need:.3g} for '
                   'factor=, or a larger max_side / short_max) or remove '
                   'the scale')
            if tiny.all():
                raise UserInputError(
                    f'{what} makes every object valid at it smaller than '
                    f'{MIN_OBJECT_PX:g} px on all {len(records)} images '
                    f'({example}): its chips would hold specks, smaller '
                    'than a cell of the finest feature map, and the scale '
                    f'would learn nothing; {fix}')
            print_log(
                f'{what} makes every object valid at it smaller than '
                f'{MIN_OBJECT_PX:g} px on {int(tiny.sum())} of '
                f'{len(records)} images ({example}): the scale learns '
                f'nothing on them; {fix}, or accept it for these images',
                logger='current', level=logging.WARNING)

    def _open_proposals(self, records: ImageRecords):
        """``(proposals, identity)`` of the proposal file (checked against
        the dataset: its images, one image per img_id, the scales, the
        images' names where the file records them), or ``(None, None)``
        without negatives. Checked on every build, before the chip-table
        cache is looked up: a cached table never skips the checks."""
        if not self.negatives:
            return None, None
        props, file_scales, identity = open_proposals(self.proposal_file)
        prefix = image_prefix(getattr(self.dataset, 'data_prefix', None))
        check_proposals(self.proposal_file, props, file_scales,
                        records.img_ids, len(self.chip_cfg.scales),
                        img_paths=records.img_paths,
                        scales=self.chip_cfg.scales,
                        img_names=[image_name(p, prefix)
                                   for p in records.img_paths])
        for name in _datasets_dropping_empty_images(self.dataset):
            print_log(
                f'SniperDataset: negatives=True, but {name} drops its '
                'images without annotations (filter_cfg=dict('
                'filter_empty_gt=True), MMDetection\'s COCO default): they '
                'give no negative chips, while the paper mines negatives on '
                'every image; set filter_cfg=dict(filter_empty_gt=False) in '
                'the wrapped dataset to keep them (configs/sniper/'
                'sniper_faster-rcnn_r50_fpn_7e_coco.py does), or keep it to '
                'leave them out', logger='current', level=logging.WARNING)
        if not getattr(props, 'has_names', False):
            print_log(
                f'SniperDataset: proposal file "{self.proposal_file}" '
                'records no image file names (written before mmsnip '
                'recorded them, a legacy pickle, or a converted mmdet '
                'dump of an older mmsnip): it is matched to the dataset '
                'by image ids, scales and sizes only; mine it again to '
                'have the file names checked too', logger='current')
        pool_iou = getattr(props, 'pool_iou', None)
        if pool_iou is not None:
            print_log(
                f'SniperDataset: proposal file "{self.proposal_file}" is '
                f'pooled over the scales (one NMS at IoU {pool_iou:g}, the '
                'released code\'s rule): every scale\'s negatives come '
                'from the pool\'s proposals in its valid range',
                logger='current')
        return props, identity

    def _check_degraded(self, records: ImageRecords, stats: dict,
                        sets_per_image: Optional[int] = None) -> None:
        """Refuse a table nothing can be trained on, or without the
        negatives asked for; warn about proposals that were dropped.

        Raises:
            UserInputError: No positive chip (naming ``chip_cfg.scales``
                and the boxes' sizes), or ``negatives=True`` with a
                proposal file without rows for the dataset, or whose
                proposals are all NaN/inf, or mostly unusable (more than
                half NaN/inf or empty after clipping to their image, or
                more than half reaching over 1 px beyond it: xywh boxes, a
                file of another dataset), or that gives no negative chip,
                naming the file, the counts, an example image and the
                likely cause; fewer unusable rows: a warning.
        """
        where = getattr(self.dataset, 'ann_file', None) or \
            type(self.dataset).__name__
        if self.num_positive == 0:
            img = records.box_image()
            boxes, keep = sanitize_boxes(records.boxes, records.heights[img],
                                         records.widths[img])
            usable = keep & ~records.crowd
            ranges = ', '.join(
                f'scales[{i}].valid_range={s.valid_range}'
                for i, s in enumerate(self.chip_cfg.scales))
            sizes = box_sizes(boxes[usable])
            valid = np.zeros(len(sizes), bool)
            for spec in self.chip_cfg.scales:
                valid |= in_range(sizes, spec.valid_range)
            if valid.any():
                found = (f'its {int(valid.sum())} boxes inside a valid range '
                         'are all larger than a chip at their scale '
                         f'(chip_cfg.chip_size={self.chip_cfg.chip_size})')
            elif usable.any():
                found = (f'none of its {int(usable.sum())} usable boxes '
                         f'(sqrt(area) {sizes.min():.1f} to '
                         f'{sizes.max():.1f} px, ORIGINAL pixels) lies in '
                         'a valid range')
            else:
                found = (f'its {len(records)} images have no usable '
                         '(non-crowd, non-empty) box')
            raise UserInputError(
                f'SniperDataset: {where}: no positive chip: {found} '
                f'(chip_cfg {ranges}). Training would write untrained '
                'checkpoints. Fix: widen chip_cfg.scales[*].valid_range to '
                'the sizes of your objects (tools/analysis/suggest_params.py '
                'suggests ranges; a larger chip_size takes larger objects), '
                'or check ann_file / filter_cfg')
        if not self.negatives:
            return
        total = int(stats.get('proposals', 0))
        finite = int(stats.get('finite_proposals', 0))
        src = f'proposal file "{self.proposal_file}"'
        num_scales = len(self.chip_cfg.scales)
        if sets_per_image == 1 < num_scales:  # counted at every scale
            src += (f' (one set of rows per image, read at each of the '
                    f'{num_scales} scales: counts are per scale)')
        if total == 0:
            raise UserInputError(
                f'SniperDataset: negatives=True but {src} holds no '
                f'proposal for any of the dataset\'s {len(records)} images '
                '(every entry is empty): negative chips cannot be mined. '
                'Fix: mine it again with tools/mine_proposals.py (is the '
                'stage-1 RPN trained?), or set negatives=False')
        if finite == 0:
            raise UserInputError(
                f'SniperDataset: negatives=True but {src} has no usable '
                f'proposal ({total} rows, all with NaN/inf coordinates) for '
                'the dataset: negative chips cannot be mined. Fix: mine it '
                'again with tools/mine_proposals.py from a stage-1 '
                'checkpoint that did not diverge, or set negatives=False')
        # Rows sanitising drops or clips (chip_table.PROPOSAL_COUNTS).
        dropped = int(stats.get('dropped_proposals', 0))
        inverted = int(stats.get('inverted_proposals', 0))
        outside = int(stats.get('outside_proposals', 0))

        def counted(n: int) -> str:
            return f'{n} ({100 * n / total:.1f}%)'

        def example(key: str) -> str:
            n = int(stats.get(key, -1))
            return '' if not 0 <= n < len(records) else (
                f', e.g. img_id {records.img_ids[n]!r} '
                f'({records.img_paths[n]})')

        def problems(nan: bool = True) -> str:
            """The unusable rows in words: counts, an example image and
            the likely cause."""
            out = []
            if nan and finite < total:
                out.append(f'{counted(total - finite)} have NaN/inf '
                           'coordinates (a diverged stage-1 model?)')
            if dropped:
                out.append(
                    f'{counted(dropped)} are empty after clipping to their '
                    f'image and were dropped{example("dropped_example")} '
                    f'({inverted} of them with x2 <= x1 or y2 <= y1 as '
                    'written' +
                    ('; boxes [x, y, w, h] instead of [x1, y1, x2, y2]?)'
                     if 2 * inverted >= dropped and
                     dropped >= FEW_BAD_PROPOSALS * total else
                     ': zero width or height, e.g. clipped at the border '
                     'or rounded to float16; the others lie wholly '
                     'outside their image)'))
            if outside:
                out.append(
                    f'{counted(outside)} reach more than 1 px beyond their '
                    f'image{example("outside_example")} (mined for another '
                    'dataset with the same img_ids, or for other image '
                    'sizes?)')
            return '; '.join(out)

        unusable = total - finite + dropped
        if 2 * unusable > total or 2 * outside > finite:
            raise UserInputError(
                f'SniperDataset: negatives=True but {src} is mostly '
                f'unusable for this dataset: of its {total} proposals '
                f'{problems()}. Negative chips from the rest would be few, '
                'and placed by chance. Fix: '
                'mine the proposals for this dataset with '
                'tools/mine_proposals.py (rows [x1, y1, x2, y2, score] in '
                'the ORIGINAL pixels of these images), or set '
                'negatives=False')
        if finite < total:
            print_log(
                f'SniperDataset: {src}: {total - finite} of {total} '
                f'proposals ({100 * (total - finite) / total:.1f}%) have '
                'NaN/inf coordinates and were dropped; if that is many, the '
                'stage-1 model diverged: mine the proposals again',
                logger='current', level=logging.WARNING)
        if dropped or outside:
            # A mined file has a few degenerate rows (clipped at the
            # border, rounded to float16): logged; more: a warning.
            print_log(
                f'SniperDataset: {src}: of its {total} proposals '
                f'{problems(nan=False)}; the rest are used. If that is '
                'many, mine the proposals for this dataset again',
                logger='current',
                level=logging.WARNING if dropped + outside >=
                FEW_BAD_PROPOSALS * total else logging.INFO)
        if len(self.chips) == self.num_positive:
            raise UserInputError(
                f'SniperDataset: negatives=True but {src} gives no negative '
                f'chip: each of its {finite} proposals is inside a positive '
                'chip, outside its scale\'s valid range, or in a region '
                'with fewer than chip_cfg.negative.min_proposals '
                f'({self.chip_cfg.negative.min_proposals}) proposals per '
                'chip, so training would run on positive chips only. Fix: '
                'lower chip_cfg.negative.min_proposals, or set '
                'negatives=False (and drop proposal_file) to train on '
                'positive chips only')

    # -- chip table -----------------------------------------------------
    def _where(self, info: dict) -> str:
        """``ann_file: image <id> (<path>)`` for messages."""
        ann = getattr(self.dataset, 'ann_file', None) or \
            type(self.dataset).__name__
        return (f'{ann}: image {info.get("img_id")} '
                f'({info.get("img_path")})')

    def _audit(self, records: ImageRecords) -> dict:
        """Check every image's boxes once (vectorized); one summary
        warning.

        Returns:
            dict: Counts: ``images`` (as listed), ``distinct_images``
            (by path and id: a ``RepeatDataset`` lists each ``times``
            times), ``empty_images`` (no box), and ``crowd_only_images``
            (only crowd / ignore boxes): both get no positive chip, both
            of distinct images; ``boxes`` and the
            :func:`~mmsnip.chips.box_issues` classes ``clipped``,
            ``empty``, ``outside`` (dropped), ``examples``: the first
            offending image per class.

        Raises:
            ValueError: A box with a NaN/inf coordinate, naming the image.
        """
        n = len(records)
        img = records.box_image()
        issues = box_issues(records.boxes, records.heights[img],
                            records.widths[img])
        boxes = records.boxes

        def where(k):
            return self._where(dict(img_id=records.img_ids[img[k]],
                                    img_path=records.img_paths[img[k]]))

        if issues['not_finite'].any():
            k = int(np.flatnonzero(issues['not_finite'])[0])
            raise UserInputError(
                f'SniperDataset: {where(k)}: instance '
                f'{k - records.box_start[img[k]]} has a non-finite bbox '
                f'{boxes[k].tolist()}')
        counts = dict(images=n, boxes=len(boxes))
        examples = {}
        for name in ('clipped', 'empty', 'outside'):
            hits = np.flatnonzero(issues[name])
            counts[name] = len(hits)
            if len(hits):
                k = int(hits[0])
                h, w = records.heights[img[k]], records.widths[img[k]]
                examples[name] = (f'{where(k)}, bbox {boxes[k].tolist()} in '
                                  f'{_num(w)}x{_num(h)}')
        usable = ~(issues['empty'] | issues['outside'])
        num_usable = np.bincount(img[usable], minlength=n)
        num_crowd = np.bincount(img[usable & records.crowd], minlength=n)
        # an image listed more than once (RepeatDataset) counts once: by
        # its first listing, (path, img_id) as strings
        keys = np.rec.fromarrays([
            np.asarray(records.img_paths, dtype=object).astype(str),
            np.asarray(records.img_ids, dtype=object).astype(str)])
        first = np.zeros(n, bool)
        first[np.unique(keys, return_index=True)[1]] = True
        counts['distinct_images'] = int(first.sum())
        counts['empty_images'] = int((first & (num_usable == 0)).sum())
        counts['crowd_only_images'] = int(
            (first & (num_usable > 0) & (num_crowd == num_usable)).sum())
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

    def _build_table(self, records: ImageRecords, proposals=None) -> dict:
        if isinstance(proposals, ProposalFile):
            # The rows the negative pools come from are as written (the
            # cache key holds the recorded content_id, not the rows).
            proposals.verify()
        return build_chip_table(records, self.chip_cfg, proposals,
                                workers=self.build_workers)

    def _cache_key(self, records: ImageRecords,
                   proposal_identity: Optional[str]) -> str:
        """sha256 (24 hex digits) of the cache layout version, the chip
        settings, the images' records and the proposal file's content.

        The content id covers the file's image names (``names_sha256``);
        they decide no chip, only whether the file is accepted, which
        :meth:`_open_proposals` checks on every build before the cache is
        looked up, so the cache layout (``CACHE_VERSION``) is unchanged
        and a cached table never skips that check."""
        digest = hashlib.sha256()
        digest.update(json.dumps(
            [CACHE_VERSION, repr(self.chip_cfg), proposal_identity],
            default=str).encode())
        digest.update(records.digest().encode())
        return digest.hexdigest()[:24]

    # -- epochs -----------------------------------------------------------
    @force_full_init
    def epoch_indices(self, epoch: int) -> np.ndarray:
        """Chips of an epoch: every positive plus this epoch's negatives.

        ``neg_per_image`` negatives per image, drawn from the image's pool
        by :func:`~mmsnip.chips.sample_negative_chips` from ``(seed, epoch,
        image index)`` (all images at once:
        :func:`~mmsnip.chips.sample_negative_chips_batch`). Sorted
        ascending; shuffling is the sampler's job.
        """
        sizes = np.diff(self.neg_start)
        local, counts = sample_negative_chips_batch(
            sizes, self.chip_cfg.neg_per_image, self.seed, epoch,
            np.arange(len(sizes)))
        negatives = np.repeat(self.neg_start[:-1], counts) + local
        return np.concatenate([np.arange(self.num_positive),
                               negatives]).astype(np.int64)

    @force_full_init
    def chip_fingerprint(self, indices: np.ndarray) -> str:
        """sha256 (hex) of the chips ``indices``, in that order: each
        chip's image (by the dataset's image ids), scale and window
        (ORIGINAL pixels). :class:`SniperSampler` fingerprints an epoch with
        it, so that a resume never continues another epoch's chips."""
        indices = np.asarray(indices, np.int64)
        digest = hashlib.sha256(json.dumps(self._records.img_ids,
                                           default=str).encode())
        for column in (self.chip_img, self.chips.scale_index,
                       self.chips.boxes):
            digest.update(np.ascontiguousarray(
                column[indices], column.dtype.newbyteorder('<')).tobytes())
        return digest.hexdigest()

    @force_full_init
    def draws_negatives(self) -> bool:
        """Whether epochs draw from a negative pool (some image has more
        than ``neg_per_image`` negatives), so differ by epoch and by the
        sampling rule."""
        sizes = np.diff(self.neg_start)
        return bool((sizes > self.chip_cfg.neg_per_image).any())

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
        return self._pixels(self.epoch_indices(epoch))

    def _pixels(self, indices: np.ndarray) -> float:
        boxes = self.chips.boxes_scaled[indices]
        return float(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1).sum())

    @force_full_init
    def pyramid_pixels(self) -> float:
        """Pixels of every image at every scale of ``chip_cfg`` (what SNIP's
        full pyramid trains on per epoch), scaled canvas sizes summed."""
        pyramid = 0.0
        sizes, num = np.unique(np.stack(
            [self._records.heights, self._records.widths], axis=1),
            axis=0, return_counts=True)
        for (h, w), count in zip(sizes.tolist(), num.tolist()):
            for spec in self.chip_cfg.scales:
                sh, sw = spec.scaled_shape(_num(h), _num(w))
                pyramid += count * sh * sw
        return pyramid

    @force_full_init
    def shared_decode_hint(self) -> Optional[str]:
        """Advice when the decoded-image cache cannot serve a shuffled
        order: the images decode to more than the per-worker budget
        (``decode_cache_mb``) and yield 2 or more chips an epoch each, so
        an image's chips, visited far apart, mostly decode it again. None
        when the cache suffices or is off.

        Decoded bytes per pixel follow the loader's settings: 3 channels
        (1 for a ``'grayscale'`` ``color_type``), times 4 with
        ``to_float32``; ``'unchanged'`` is counted as 3 channels of uint8
        (a 16-bit or RGBA file decodes to more)."""
        budget = self.decode_cache.max_bytes
        images = len(self._records)
        loader = self.pipeline.transforms[0] if self.pipeline.transforms \
            else None
        channels = 1 if 'grayscale' in str(
            getattr(loader, 'color_type', 'color')) else 3
        per_pixel = channels * (4 if getattr(loader, 'to_float32', False)
                                else 1)
        decoded = per_pixel * float(np.dot(self._records.heights,
                                           self._records.widths))
        per_image = self.epoch_size() / max(images, 1)
        if not budget or decoded <= budget or per_image < 2:
            return None
        return (f'{type(self).__name__}: its {images} images decode to '
                f'about {decoded / 2**30:.2f} GiB ({per_pixel} bytes per '
                'pixel as loaded), more than the decoded-image '
                f'cache holds ({budget / 2**20:.0f} MiB per worker), and '
                f'with {per_image:.1f} chips per image a shuffled order '
                'visits an image\'s chips far apart: most chips will decode '
                'their whole image. Where decoding dominates (large images, '
                'many chips each), set train_dataloader.sampler.image_window'
                ' (8: about one decode per image, fewer distinct images per '
                'batch; docs/sniper.md, "Data path")')

    @force_full_init
    def summary(self) -> str:
        """Chips per epoch and pixels per epoch against the full pyramid.

        Pixels are the chips' areas at their scale (a chip clipped to a
        small canvas counts what it holds; batch padding is not counted),
        for the chips of epoch 0.
        """
        pyramid = self.pyramid_pixels()
        epoch = self.epoch_indices(0)
        pixels = self._pixels(epoch)
        negatives = len(epoch) - self.num_positive
        distinct, images = self._image_count()
        report = getattr(self, 'annotation_report', None) or {}
        no_pos = report.get('empty_images', 0) + \
            report.get('crowd_only_images', 0)
        extra = (f'; {report.get("empty_images", 0)} images without boxes '
                 f'and {report.get("crowd_only_images", 0)} with only crowd '
                 'boxes have no positive chip') if no_pos else ''
        return (f'{type(self).__name__}: {images}, '
                f'{self.num_positive} positive chips, '
                f'{len(self) - self.num_positive} negatives in the pool, '
                f'{len(epoch)} chips per epoch ({self.num_positive} pos + '
                f'{negatives} neg, '
                f'{len(epoch) / max(distinct, 1):.2f} per image); '
                f'{pixels / 1e6:.1f} MPix per epoch vs '
                f'{pyramid / 1e6:.1f} MPix for the full pyramid '
                f'({pyramid / max(pixels, 1):.2f}x fewer){extra}')

    def _image_count(self) -> Tuple[int, str]:
        """The number of distinct images and ``'N images'``, or, when the
        wrapped dataset lists images more than once (``RepeatDataset``, as
        mmdet's SSD and YOLOv3 configs; ``ClassBalancedDataset``; a file
        given twice to a ``ConcatDataset``), ``'N images listed M times
        (RepeatDataset x3: each image's chips come 3 times per epoch)'``.
        Images are told apart by (path, img_id)."""
        listed = len(self.dataset)
        report = getattr(self, 'annotation_report', None) or {}
        distinct = report.get('distinct_images', listed)
        if distinct == listed:
            return listed, f'{listed} images'
        times = getattr(self.dataset, 'times', None)
        why = (f'{type(self.dataset).__name__} x{times}: each image\'s '
               f'chips come {times} times per epoch'
               if is_integer(times) and listed == distinct * times else
               f'{type(self.dataset).__name__} lists some images more than '
               'once: their chips come as often per epoch')
        return distinct, f'{distinct} images listed {listed} times ({why})'

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

    def __getstate__(self) -> dict:
        # Workers start with an empty cache of their own (spawn pickles the
        # dataset; a cache filled in the main process is not sent along).
        state = self.__dict__.copy()
        state['decode_cache'] = DecodedImageCache(
            self.decode_cache.max_bytes)
        return state

    def _run_pipeline(self, info: dict) -> Optional[dict]:
        """The pipeline on one chip's info, sharing decodes when
        ``decode_cache_mb`` > 0; either way a failing transform, and one
        that breaks the chip, is named (``decode_cache.run_transforms``).
        """
        if not self.decode_cache_mb:
            return run_transforms(self.pipeline.transforms, info)
        return run_pipeline_shared(self.pipeline.transforms, info,
                                   self.decode_cache)

    def __getitem__(self, idx: int) -> dict:
        for _ in range(self.max_refetch + 1):
            info = self.get_data_info(idx)
            try:
                data = self._run_pipeline(info)
            except Exception as e:
                # mmcv / cv2 errors (a truncated JPEG, an image smaller than
                # annotated) name no dataset entry: name it. The image
                # check helps only when the file is the likely cause.
                what = str(e) if isinstance(
                    e, (TransformError, UserInputError)) else \
                    f'{type(e).__name__}: {e}'
                cause = e.error if isinstance(e, TransformError) else e
                # An image the loader could not read (an ImageSizeError
                # says what to check itself), a size or the pipeline's
                # order: the user's to fix, one line from the tools; a
                # transform's own bug: a traceback.
                unreadable = isinstance(e, TransformError) and \
                    e.is_decode_error and \
                    not isinstance(cause, UserInputError)
                hint = ('. Check the images with `python '
                        'tools/check_dataset.py CONFIG --full-decode`'
                        if unreadable else '')
                error = UserInputError if unreadable or isinstance(
                    cause, UserInputError) else RuntimeError
                raise error(
                    f'SniperDataset: chip {idx} of {self._where(info)} '
                    f'failed in the pipeline: {what}{hint}') from cause
            if data is not None:
                return data
            # Another chip of every epoch (a positive), not one of a
            # negative pool that this epoch did not draw.
            idx = int(np.random.randint(0, self.num_positive or len(self)))
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
            raise UserInputError('SnipDataset trains on whole images: it '
                                 'takes no negatives or proposal_file')
        super().__init__(*args, **kwargs)

    _use_cache = False  # one row per (image, scale): cheaper than a cache read

    def _build_table(self, records: ImageRecords, proposals=None) -> dict:
        boxes, scaled, scale_index, factors, img_index = [], [], [], [], []
        for i in range(len(records)):
            h, w = _num(records.heights[i]), _num(records.widths[i])
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

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        scaled = self.chips.boxes_scaled[idx]
        info['chip']['chip_size'] = int(max(scaled[2], scaled[3]))
        return info


def _num(value):
    """An integral float as int (messages and sizes read as annotated)."""
    value = float(value)
    return int(value) if value.is_integer() else value


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


def _datasets_dropping_empty_images(dataset) -> List[str]:
    """Names of the datasets in ``dataset`` (itself or, through MMEngine's
    wrappers, the ones it wraps) that drop images without annotations:
    ``filter_cfg.filter_empty_gt`` true outside ``test_mode``."""
    inner = getattr(dataset, 'datasets', None) or [
        d for d in [getattr(dataset, 'dataset', None)] if d is not None]
    if inner:
        return [n for d in inner for n in _datasets_dropping_empty_images(d)]
    filter_cfg = getattr(dataset, 'filter_cfg', None) or {}
    if not filter_cfg.get('filter_empty_gt', False) or getattr(
            dataset, 'test_mode', False):
        return []
    ann = getattr(dataset, 'ann_file', None)
    return [f'{type(dataset).__name__}' + (f' "{ann}"' if ann else '')]


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
        raise UserInputError(f'SniperDataset: {ann}: {problem} (MMDetection: '
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
        raise UserInputError(
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
