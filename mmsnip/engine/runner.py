# Copyright (c) mmsnip contributors. All rights reserved.
"""``SnipRunner``: MMEngine's runner that makes SNIP/SNIPER training safe.

A config selects it with ``runner_type = 'mmsnip.engine.SnipRunner'`` (the
project's ``configs/_base_/default_runtime.py`` and
``configs/_base_/sniper/coco_chips.py`` do), which MMDetection's
and mmsnip's ``tools/train.py``/``tools/test.py``, ``mim`` and the
``dist_*``/``slurm_*`` scripts all honour.
"""
import copy
import math
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.registry import RUNNERS as ROOT_RUNNERS
from mmengine.runner import Runner

from mmsnip.registry import RUNNERS
from mmsnip.utils.config_tree import (base_type, config_entries, mask_loader,
                                      resolve_type, type_in, type_lineage,
                                      walk_dataset_cfgs)
from mmsnip.utils.preflight import UserInputError, tta_module_problem

# Training datasets that carry SNIP's per-box scale validity.
CHIP_DATASETS = ('SniperDataset', 'SnipDataset')
# Hooks and batch augments that act on the data behind the chips' back.
_SWITCH_HOOKS = {
    'PipelineSwitchHook':
    'it replaces the training pipeline, the chip pipeline included, late '
    'in training',
    'YOLOXModeSwitchHook':
    'it switches mosaic/mixup off in the dataset, which chips do not use',
}
_RESIZING_BATCH_AUGMENTS = ('BatchSyncRandomResize', 'BatchResize')


def _semantic_heads(model, path: str) -> Iterator[str]:
    """``'<path> (<type>)'`` of every ``semantic_head`` in a model config
    (HTC, SCNet, Panoptic FPN)."""
    for entry, key, value in config_entries(model, path):
        if key == 'semantic_head' and isinstance(value, dict):
            yield f'{entry} ({base_type(value.get("type"))})'


def _proposal_readers(model, path: str) -> Iterator[str]:
    """``'<path> (<type>)'`` of a two-stage model config with a
    ``roi_head`` and no ``rpn_head`` (Fast R-CNN): it reads precomputed
    proposals from the data; an AutoFocus wrapper's ``detector`` too."""
    if not isinstance(model, dict):
        return
    if model.get('roi_head') is not None and model.get('rpn_head') is None:
        yield f'{path} ({base_type(model.get("type"))})'
    yield from _proposal_readers(model.get('detector'), f'{path}.detector')


def _semi_supervised(model, path: str) -> Iterator[str]:
    """``'<path> (<type>)'`` of a semi-supervised detector config (mmdet's
    ``SemiBaseDetector``: SoftTeacher), the model or an AutoFocus
    wrapper's ``detector``."""
    if not isinstance(model, dict):
        return
    if type_in(model, ('SemiBaseDetector', ), 'MODELS'):
        yield f'{path} ({base_type(model.get("type"))})'
        return
    yield from _semi_supervised(model.get('detector'), f'{path}.detector')


def semi_supervised_problem(cfg: Config) -> Optional[str]:
    """A semi-supervised detector trained on chips: its unlabeled branch
    trains the student on the teacher's pseudo-boxes of whole images, which
    carry no scale validity (``scale_valid`` absent: every box valid), so
    it would train on objects of every size at every scale; and its
    labeled branch takes ``MultiBranch`` data. mmsnip supports neither."""
    for entry in _semi_supervised(cfg.get('model'), 'model'):
        return (
            f'{entry} is a semi-supervised detector (mmdet\'s '
            'SemiBaseDetector): its unlabeled branch trains the student on '
            'the teacher\'s pseudo-boxes of whole images, which carry no '
            'scale validity, so every pseudo-box would train as valid at '
            'any size (SNIP\'s label rule off), and its labeled branch '
            'takes MultiBranch data, which chip pipelines do not make; '
            'mmsnip does not train it on SNIPER chips: train its detector '
            '(model.detector) on chips as the model, or train it on whole '
            'images without a SniperDataset / SnipDataset')
    return None


def autofocus_in_semi_problem(cfg: Config) -> Optional[str]:
    """An ``AutoFocus`` as a semi-supervised detector's ``detector``, chips
    or not: SoftTeacher asks its teacher and student for ``rpn_head`` and
    ``roi_head``, which AutoFocus wraps rather than has, and the
    pseudo-boxes carry no scale validity."""
    model = cfg.get('model')
    if not isinstance(model, dict) or \
            not type_in(model, ('SemiBaseDetector', ), 'MODELS') or \
            not type_in(model.get('detector'), ('AutoFocus', ), 'MODELS'):
        return None
    return (f'model.detector (AutoFocus) inside model '
            f'({base_type(model.get("type"))}), a semi-supervised '
            'detector: it labels and trains through its detector\'s '
            'rpn_head and roi_head, which AutoFocus wraps rather than has, '
            'and its pseudo-boxes carry no scale validity; mmsnip has no '
            'semi-supervised AutoFocus: train the AutoFocus model on its '
            'own (model = the AutoFocus dict)')


def chip_kind(ds: dict) -> Optional[str]:
    """``'SniperDataset'`` / ``'SnipDataset'`` if a dataset config is one
    of them (a subclass or scope-prefixed name too), else None."""
    return type_in(ds, CHIP_DATASETS, 'DATASETS')


def _datasets(ds) -> Iterator[dict]:
    """A dataset config and every dataset config nested in it."""
    for _, sub in walk_dataset_cfgs(ds, ''):
        yield sub


def trains_on_chips(cfg: Config) -> bool:
    """Whether the config's training data is a SNIP/SNIPER dataset."""
    loader = cfg.get('train_dataloader') or {}
    return any(chip_kind(ds) for ds in _datasets(loader.get('dataset')))


def chip_training_problems(cfg: Config) -> List[str]:
    """Config parts that would silently undo the chips' scale information,
    need data that chips do not carry, or train another epoch than the
    chip dataset's (:func:`_sampler_problems`).

    Returns:
        list[str]: One message per problem with its fix; a semi-supervised
        detector (:func:`semi_supervised_problem`) is the only one named.
    """
    semi = semi_supervised_problem(cfg)
    if semi:
        return [semi]
    problems = []
    for hook in cfg.get('custom_hooks') or []:
        name = type_in(hook, _SWITCH_HOOKS, 'HOOKS')
        if name:
            problems.append(
                f'custom_hooks: {base_type(hook.get("type"))} cannot run on '
                f'SNIPER chips ({_SWITCH_HOOKS[name]}); remove it from '
                'custom_hooks')
    pre_entry, preprocessor = _preprocessor_entry(cfg)
    for augment in preprocessor.get('batch_augments') or []:
        if type_in(augment, _RESIZING_BATCH_AUGMENTS, 'MODELS'):
            name = base_type(augment.get('type'))
            problems.append(
                f'{pre_entry}.batch_augments: {name} rescales chips and '
                'their boxes but not their valid range; chips are already '
                f'at their scale: set {pre_entry}.batch_augments=None')
    for head in _semantic_heads(cfg.get('model') or {}, 'model'):
        problems.append(
            f'{head} trains on semantic segmentation maps (gt_sem_seg), '
            'which SNIPER chips do not carry: remove it (for HTC: '
            'mmdet::htc/htc-without-semantic_r50_fpn_1x_coco.py)')
    for model in _proposal_readers(cfg.get('model'), 'model'):
        problems.append(
            f'{model} has a roi_head and no rpn_head, so it reads '
            'precomputed proposals from the data (LoadProposals), which '
            'SNIPER chips do not carry: give it an rpn_head (Faster R-CNN; '
            'the proposals for negative chips come from '
            'tools/mine_proposals.py)')
    loader = cfg.get('train_dataloader') or {}
    return problems + _sampler_problems(loader) + \
        _chip_pipeline_problems(loader) + _chip_cfg_problems(cfg) + \
        _mask_pipeline_problems(cfg)


def _learns_masks_itself(head: dict) -> bool:
    """Whether a head config (``bbox_head``) learns instance masks without
    a ``mask_head`` key: RTMDet-Ins's ``RTMDetInsHead`` and its
    subclasses (any class with ``loss_mask_by_feat``)."""
    cls = resolve_type(head.get('type'), 'MODELS')
    return isinstance(cls, type) and hasattr(cls, 'loss_mask_by_feat')


def _mask_entries(model, path: str = 'model') -> Iterator[str]:
    """Config entries of a model's mask branches (``mask_head`` keys: Mask
    R-CNN, cascades, HTC, SOLO, CondInst, YOLACT; a ``bbox_head`` that
    learns masks itself: RTMDet-Ins)."""
    for entry, key, value in config_entries(
            model, path, lambda key, _: key not in ('train_cfg', 'test_cfg')):
        if key == 'mask_head' and value:
            yield entry
        elif key == 'bbox_head' and isinstance(value, dict) and \
                _learns_masks_itself(value):
            yield f'{entry} ({base_type(value.get("type"))})'


def _image_sized_mask_entries(model) -> Iterator[str]:
    """The mask branches of :func:`_mask_entries` whose targets are the
    image-sized (batch-padded) masks: all but those under a ``roi_head``,
    which crop each RoI's target from its own mask."""
    return (entry for entry in _mask_entries(model)
            if '.roi_head.' not in entry)


def _preprocessor_entry(cfg: Config) -> Tuple[str, dict]:
    """``(config entry, dict)`` of the model's data preprocessor: the
    model's own, else that of the model it wraps (a TTA model's
    ``module``, as ``tools/test.py --tta`` builds it); for ``AutoFocus``
    the one it builds, its own merged over its ``detector``'s
    (:func:`~mmsnip.models.detectors.autofocus.merged_data_preprocessor`),
    named by the wrapper's entry if it sets one (its keys win)."""
    from mmsnip.models.detectors.autofocus import merged_data_preprocessor
    path, node = 'model', cfg.get('model') or {}
    while isinstance(node, dict):
        if isinstance(node.get('detector'), dict):
            own = node.get('data_preprocessor')
            merged = merged_data_preprocessor(
                own, node['detector'].get('data_preprocessor'))
            if merged:
                return (f'{path}.data_preprocessor' if own else
                        f'{path}.detector.data_preprocessor', merged)
        if node.get('data_preprocessor'):
            return f'{path}.data_preprocessor', node['data_preprocessor']
        key = next((k for k in ('module', 'detector')
                    if isinstance(node.get(k), dict)), None)
        if key is None:
            break
        path, node = f'{path}.{key}', node[key]
    return 'model.data_preprocessor', {}


def _pads_masks(pre: dict) -> bool:
    """Whether a data preprocessor config pads every training batch's
    instance masks to the batch's padded size: ``pad_mask=True``. (A
    ``BatchFixedSizePad(pad_mask=True)`` does not: it returns at once
    when the batch already has its size, leaving the masks of the
    batch's smaller chips as they are.)"""
    return bool(pre.get('pad_mask'))


def _mask_pipeline_problems(cfg: Config) -> List[str]:
    """A model with a mask branch trained on chips whose pipeline loads no
    masks: it fails at the first iteration (``'InstanceData' object has no
    attribute 'masks'``), after the chip table was built. And one whose
    data preprocessor does not pad the masks (``pad_mask``): chips come
    in several sizes (smaller at image borders and on small canvases),
    and batched with larger ones their masks stay the chip's size while
    the images are padded. That matters to heads whose targets are the
    image-sized masks (:func:`_image_sized_mask_entries`), not to RoI
    mask heads (Mask R-CNN, cascades, HTC, QueryInst: each target is
    cropped from its own mask per RoI). RTMDet-Ins concatenates the masks
    of a batch (``torch.cat``: a size mismatch at the first such batch)
    and YOLACT stretches each to the padded size (misaligned targets,
    then a ``torch.stack`` error). mmdet's own configs of SOLO, CondInst
    and YOLACT (and Mask R-CNN's) set ``pad_mask=True``: zeros outside
    the image, harmless;
    RTMDet-Ins's omits it because its pipeline pads every image to 640 x
    640. mmsnip does not set it for the user: it is refused, with the
    fix."""
    masks = next(_mask_entries(cfg.get('model') or {}), None)
    if masks is None:
        return []
    padded = next(_image_sized_mask_entries(cfg.get('model') or {}), None)
    loader = cfg.get('train_dataloader') or {}
    problems = []
    pre_entry, pre = _preprocessor_entry(cfg)
    for name, ds in walk_dataset_cfgs(loader.get('dataset'),
                                      'train_dataloader.dataset'):
        if not chip_kind(ds):
            continue
        loads = mask_loader([ds.get('pipeline') or []]) is not None
        if loads and padded and not _pads_masks(pre):
            problems.append(
                f'{pre_entry}.pad_mask is not True but {padded} learns '
                f'masks from the chips of {name}, which come in several '
                'sizes (smaller at image borders and on small canvases): '
                'batched, their masks keep the chip\'s size while the '
                'images are padded (RTMDet-Ins fails in torch.cat at the '
                'first such batch, YOLACT stretches the masks out of '
                f'place); set {pre_entry}.pad_mask=True, the setting of '
                "mmdet's Mask R-CNN, SOLO, CondInst and YOLACT configs "
                '(it pads each mask with zeros to the batch\'s padded '
                'size: harmless)')
        if not loads:
            problems.append(
                f'{name}.pipeline loads no masks (LoadAnnotations without '
                f'with_mask=True) but {masks} learns them: use '
                "mask_chip_pipeline of configs/_base_/sniper/coco_chips.py "
                '(pipeline={{_base_.mask_chip_pipeline}}), which loads the '
                'masks and crops them with the boxes')
    return problems


def _chip_pipeline_problems(loader: dict) -> List[str]:
    """A chip dataset's pipeline that would train without SNIP's label
    rule: SNIP's scale validity (``gt_scale_valid``) is decided by
    ``CropChip`` on the boxes ``LoadAnnotations`` loaded before it and
    reaches the model only through ``PackChipInputs`` (which packs it);
    without one of them every box of a chip trains as valid, silently.
    Subclasses and scope-prefixed names (``'mmsnip.CropChip'``) count."""
    problems = []
    for name, ds in walk_dataset_cfgs(loader.get('dataset'),
                                      'train_dataloader.dataset'):
        kind = chip_kind(ds)
        if kind is None:
            continue
        steps = [type_lineage(step, 'TRANSFORMS')
                 for step in ds.get('pipeline') or []]

        def first(step_name):
            return next((i for i, names in enumerate(steps)
                         if step_name in names), None)

        crop, load = first('CropChip'), first('LoadAnnotations')
        missing = []
        if crop is None:
            missing.append('has no CropChip (it cuts each chip at its '
                           'scale and decides which boxes are in its '
                           'valid range)')
        elif load is None or load > crop:
            missing.append('has no LoadAnnotations before CropChip (the '
                           'chip gets no boxes to decide on)')
        if not steps or 'PackChipInputs' not in steps[-1]:
            missing.append('does not end with PackChipInputs (it packs '
                           'gt_scale_valid; PackDetInputs drops it)')
        if missing:
            problems.append(
                f'{name}.pipeline ({kind}) ' + ' and '.join(missing) +
                ': without them every box of a chip trains as valid and '
                "SNIP's label rule is off; use LoadImageFromFile, "
                "LoadAnnotations(with_bbox=True), CropChip, then RandomFlip "
                'or photometric transforms, and PackChipInputs last (as '
                "configs/_base_/sniper/coco_chips.py's "
                'chip_pipeline)')
    return problems


def _chip_config_or_dict(chip_cfg):
    """``chip_cfg`` as a ``ChipConfig`` (so that ``factor=2`` equals
    ``2.0`` and aliases their sections), or as the plain dict if it is
    invalid (the dataset build names the problem)."""
    from mmsnip.chips import ChipConfig
    try:
        return ChipConfig.from_dict(chip_cfg)
    except (TypeError, ValueError):
        return chip_cfg.to_dict() if hasattr(chip_cfg, 'to_dict') \
            else chip_cfg


def _chip_cfg_problems(cfg: Config) -> List[str]:
    """A top-level ``chip_cfg`` other than the chip dataset's: the base
    configs write the dataset's from their own top-level one
    (``chip_cfg={{_base_.chip_cfg}}``), so a child config or
    ``--cfg-options chip_cfg.chip_size=128`` that changes the top-level
    one changes nothing the chips use, silently."""
    top = cfg.get('chip_cfg')
    if top is None:
        return []
    loader = cfg.get('train_dataloader') or {}
    for name, ds in walk_dataset_cfgs(loader.get('dataset'),
                                      'train_dataloader.dataset'):
        if not chip_kind(ds) or ds.get('chip_cfg') is None:
            continue
        if _chip_config_or_dict(top) != _chip_config_or_dict(
                ds['chip_cfg']):
            return [
                f'chip_cfg (top level) is not {name}.chip_cfg, which the '
                'chips use: the base config wrote the dataset\'s from its '
                'own chip_cfg, so a chip_cfg changed in a child config or '
                'by --cfg-options chip_cfg.X=... changes nothing (and one '
                'changed only in the dataset leaves the top level stale, '
                'which cannot be told apart): keep both equal. In a '
                'config: chip_cfg = dict(...) and train_dataloader = '
                'dict(dataset=dict(chip_cfg=chip_cfg)) (with _delete_=True '
                'inside chip_cfg if keys were removed); with --cfg-options, '
                f'give both chip_cfg.X=V and {name}.chip_cfg.X=V; and set '
                'tta_model.scales (written from the base\'s chip_cfg too)']
    return []


EVAL_LOADERS = ('val_dataloader', 'test_dataloader')


def chip_eval_problems(cfg: Config,
                       keys: Sequence[str] = EVAL_LOADERS) -> List[str]:
    """A ``SniperDataset`` / ``SnipDataset`` in ``val_dataloader`` or
    ``test_dataloader`` (those of ``keys`` that run): its items are chips
    (or resized images), so the evaluator would score each chip as an
    image, not the images.

    Returns:
        list[str]: One message per such dataset, with its fix.
    """
    problems = []
    for key in (k for k in keys if k in EVAL_LOADERS):
        loader = cfg.get(key) or {}
        for name, ds in walk_dataset_cfgs(loader.get('dataset'),
                                          f'{key}.dataset'):
            kind = chip_kind(ds)
            if kind:
                problems.append(
                    f'{name} is a {kind}: it yields training chips, which '
                    'the evaluator would score as images; use the plain '
                    f'dataset there (the {kind}\'s inner dataset, with a '
                    'test pipeline: LoadImageFromFile, Resize, '
                    'LoadAnnotations, PackDetInputs) and test the pyramid '
                    'with tools/test.py --tta (tta_model)')
    return problems


def refuse_chip_eval(cfg: Config,
                     keys: Sequence[str] = EVAL_LOADERS) -> None:
    """Raise :class:`UserInputError` for :func:`chip_eval_problems` of the
    loaders ``keys`` that run: ``tools/train.py`` and :class:`SnipRunner`
    the validation loader (when ``val_cfg`` is set), ``tools/test.py`` the
    test loader."""
    problems = chip_eval_problems(cfg, keys)
    if problems:
        raise UserInputError(
            f'{cfg.filename or "the config"}: ' + '; '.join(problems))


# Test-time models that keep, at each scale, the detections in its valid
# range (SNIP, Sec. 3.2.2) and take their ``scales`` from the config.
RANGE_TTA_MODELS = ('SnipTTAModel', 'AutoFocusTTAModel')


def _valid_ranges(scales) -> Optional[List[Tuple[float, float]]]:
    """``(min, max)`` valid range of each scale dict, ORIGINAL pixels, by
    :class:`~mmsnip.chips.ScaleSpec`'s rules (default ``(0, inf)``,
    ``None`` as ``inf``); None if one is invalid (the model or dataset
    reports that itself when it is built)."""
    from mmsnip.chips import ScaleSpec
    try:
        return [tuple(map(float, ScaleSpec(
            factor=1.0, valid_range=s.get('valid_range',
                                          (0.0, None))).valid_range))
                for s in scales]
    except (AttributeError, TypeError, ValueError):
        return None


def _show_ranges(ranges: List[Tuple[float, float]]) -> str:
    return '[' + ', '.join(f'({lo:g}, {hi:g})' for lo, hi in ranges) + ']'


def is_range_tta_model(model) -> bool:
    """Whether a model config is a test pyramid that keeps detections by
    valid range (what ``tools/test.py --tta`` builds from ``tta_model``)."""
    return isinstance(model, dict) and \
        type_in(model, RANGE_TTA_MODELS, 'MODELS') is not None


def tta_range_problem(cfg: Config) -> Optional[str]:
    """A test pyramid whose valid ranges are not the training chips'.

    SNIP keeps, at each test scale, the detections in that scale's valid
    range (Sec. 3.2.2); mmsnip's configs test with the training ranges. A
    base config writes ``tta_model.scales`` from its own ``chip_cfg``, so
    a child that replaces ``chip_cfg`` (``_delete_=True``) trains with its
    ranges and tests with the base's. Compared: every valid range
    (ORIGINAL pixels) of a ``SnipTTAModel`` / ``AutoFocusTTAModel`` in
    ``tta_model`` (or ``model``, once ``--tta`` wrapped it) against those
    of the chip dataset's ``chip_cfg.scales``: each test range must be one
    of the training ranges. The factor rules may differ (the COCO configs
    train at 1.667x and test at (800, 1200)), and a test pyramid may leave
    training scales out (Sec. 4.4.5 tests the lower two scales alone).
    Other ranges on purpose (the released SNIPER code widens them at
    test) are allowed by ``snip_test = dict(allow_other_ranges=True)``
    (:class:`SnipRunner`).

    Returns:
        str | None: The problem, naming both entries, both range lists
        and the fixes; None if the ranges agree or there is nothing to
        compare (no chip dataset, no such TTA model).
    """
    loader = cfg.get('train_dataloader') or {}
    chips = next(((name, ds) for name, ds in walk_dataset_cfgs(
        loader.get('dataset'), 'train_dataloader.dataset')
                  if chip_kind(ds)), None)
    if chips is None:
        return None
    trained = _valid_ranges((chips[1].get('chip_cfg') or {}).get('scales')
                            or [])
    if not trained:
        return None
    tested = {}
    for key in ('tta_model', 'model'):
        tta = cfg.get(key) or {}
        if is_range_tta_model(tta):
            tested.setdefault(
                str(_valid_ranges(tta.get('scales') or [])), (key, tta))
    for key, tta in tested.values():
        ranges = _valid_ranges(tta.get('scales') or [])
        other = [r for r in ranges or [] if not any(
            math.isclose(r[0], t[0]) and math.isclose(r[1], t[1])
            for t in trained)]
        if other:
            return (
                f'{key}.scales ({base_type(tta["type"])}) has the valid '
                f'ranges {_show_ranges(ranges)} but the chips train with '
                f'{chips[0]}.chip_cfg.scales {_show_ranges(trained)} '
                '(sqrt(area), ORIGINAL pixels); '
                f'{_show_ranges(other)} not among them: the test keeps at '
                'a scale other objects than the detector learned there '
                '(SNIP, Sec. 3.2.2). A config that replaced chip_cfg keeps '
                'its base\'s test scales (the base wrote them from its own '
                'chip_cfg): set them here too, for SnipTTAModel tta_model '
                "= dict(scales=chip_cfg['scales']), for AutoFocusTTAModel "
                'each scale with its new valid_range and its focus '
                'settings (threshold, dilation, min_size, border_tol: a '
                'list replaces the base\'s whole), and the resizes of '
                'tta_pipeline if the factor rules changed. To test with '
                'other ranges on purpose (the released SNIPER code widens '
                'them at test): snip_test = dict(allow_other_ranges=True)')
    return None


def _sampler_problems(loader: dict) -> List[str]:
    """A chip dataset's epoch (the positives plus this epoch's draw of
    negatives), image windows and exact resume live in ``SniperSampler``
    over the dataset itself: another sampler, or a wrapper around a
    dataset with negatives, would silently train the whole table (every
    negative of the pool, every epoch); a batch sampler regroups the
    chips (no exact resume, image windows broken up)."""
    dataset = loader.get('dataset') or {}
    top = base_type(dataset.get('type'))
    problems = []
    if chip_kind(dataset):
        sampler_cfg = loader.get('sampler') or {}
        if not type_in(sampler_cfg, ('SniperSampler', ), 'DATA_SAMPLERS'):
            sampler = base_type(sampler_cfg.get('type'))
            what = ('yields every chip of its table each epoch (with '
                    'negatives: the whole pool, not the epoch\'s draw) and '
                    if chip_kind(dataset) == 'SniperDataset' else '')
            problems.append(
                f'train_dataloader.sampler: {sampler or "no sampler"} over a '
                f'{top} {what}cannot resume mid-epoch (the epoch\'s state '
                'is SniperSampler\'s); set train_dataloader.sampler='
                "dict(_delete_=True, type='SniperSampler', shuffle=True)")
        batch_sampler = loader.get('batch_sampler')
        if batch_sampler is not None:
            name = base_type(batch_sampler.get('type')) \
                if isinstance(batch_sampler, dict) else batch_sampler
            problems.append(
                f'train_dataloader.batch_sampler: {name} regroups '
                "SniperSampler's chips, so a checkpoint cannot tell which "
                'chips were trained (no exact resume) and image windows '
                'break up; set train_dataloader.batch_sampler=None')
        return problems
    for ds in list(_datasets(dataset))[1:]:
        inner = chip_kind(ds)
        if inner and ds.get('negatives'):
            problems.append(
                f'train_dataloader.dataset: a {inner} with negatives=True '
                f'inside {top or "a wrapper"}: only SniperSampler over the '
                f'{inner} itself draws an epoch\'s negatives, through '
                f'{top or "the wrapper"} every negative chip of the pool '
                'would train every epoch; make the chip dataset the '
                'dataloader\'s dataset (merge the annotation files into '
                'one), or set negatives=False')
    return problems


def uneven_shards_problem(sampler, world_size: int) -> Optional[str]:
    """Why a train ``sampler`` cannot drive DDP on ``world_size``
    processes, or None.

    ``round_up=False`` (``SniperSampler``, mmengine's ``DefaultSampler``)
    gives the ranks shares that differ by one item, so one rank can have
    a batch more than another (27 chips in batches of 13 on 2 ranks: 2
    and 1); DDP's gradient all-reduce of that batch then has no partner
    (gloo: "Connection closed by peer"; NCCL: a hang).
    """
    if world_size < 2 or getattr(sampler, 'round_up', True) is not False:
        return None
    return (f'train_dataloader.sampler.round_up=False on {world_size} '
            'processes: the ranks get shares of the epoch that differ by '
            'one item, so one can have a batch more than another, and '
            'DDP\'s gradient all-reduce of that batch fails ("Connection '
            'closed by peer") or hangs; set train_dataloader.sampler.'
            'round_up=True (the default: the last items repeat so every '
            'rank has as many)')


@RUNNERS.register_module()
class SnipRunner(Runner):
    """``Runner`` that applies SNIP's label rule to any detector.

    Any config: a chip dataset in ``val_dataloader`` (with ``val_cfg``) is
    refused (:func:`refuse_chip_eval`; ``tools/test.py`` refuses one in
    ``test_dataloader``), and so is an ``AutoFocus`` inside a
    semi-supervised detector (:func:`autofocus_in_semi_problem`). When
    the config trains on ``SniperDataset`` / ``SnipDataset`` data,
    :meth:`from_cfg`

    1. refuses switch hooks and resizing batch augments that would undo
       the chips' scale information, samplers and dataset wrappers that
       would train a chip dataset's whole table every epoch, batch
       samplers that regroup its chips, a chip pipeline without
       ``CropChip`` / ``LoadAnnotations`` / ``PackChipInputs`` last, and a
       top-level ``chip_cfg`` other than the chip dataset's, and a
       semi-supervised detector (:func:`chip_training_problems`),
       and, in ``tools/test.py --tta``, a test pyramid with other valid
       ranges than the chips' (:func:`tta_range_problem`; a warning when
       training, where ``tta_model`` is not used; opt out with
       ``snip_test = dict(allow_other_ranges=True)``, logged), and warns
       when training a model that is not ``AutoFocus`` under an
       ``AutoFocusTTAModel`` ``tta_model``
       (:func:`~mmsnip.utils.preflight.tta_module_problem`: no FocusPixel
       head is trained; ``tools/test.py --tta`` refuses it);
    2. rewrites the model config with
       :func:`mmsnip.models.snip_labels.make_scale_aware_cfg` (the user's
       assigners keep their settings; each change is logged and the dumped
       config in the work dir shows the result);
    3. adds ``SamplerResumeHook`` (exact mid-epoch resume of the chip
       sampler) and ``SnipLabelCheckHook`` (at the first iteration with
       objects, every module holding a scale-aware assigner must have
       called it) to ``custom_hooks`` unless the config has them;
    4. builds the runner and checks the built model: its backbone and
       neck must take every input size its data preprocessor lets
       through (:func:`mmsnip.models.input_sizes.input_size_problem`;
       the pyramid test and border chips have any size), the whole
       network (heads too: DDOD, SSD) the ``chip_size`` chips
       (:func:`mmsnip.models.input_sizes.chip_input_problem`; once the
       chip table is built, in :meth:`build_train_loop`, the smallest
       chips too, unless every batch is padded to the chip size:
       :func:`~mmsnip.models.input_sizes.small_chip_problem`; in
       ``tools/test.py --tta``, once the test dataset is built, in
       :meth:`build_test_loop`, the smallest inputs of a test-time model:
       the views of a ``SnipTTAModel`` pyramid, the whole images and
       FocusChips of an ``AutoFocusTTAModel``, the tiles of a
       ``SlicedTTAModel``:
       :func:`~mmsnip.models.input_sizes.tta_input_problem`),
       and, with
       :func:`mmsnip.models.snip_labels.check_scale_aware`, a module that
       would still train on out-of-range objects is an error naming it,
       unless the config opts out with
       ``snip_labels = dict(allow_unaware=True)`` (logged as a warning).

    Other configs run exactly as with MMEngine's ``Runner``, except that
    every checkpoint it loads outside training (``tools/test.py``) must fit
    most of the model (:func:`mmsnip.engine.checkpoint.check_checkpoint_fits`;
    when training, ``load_from`` of another model is a warning).
    """

    def build_train_loop(self, loop):
        """MMEngine's, then (the chip table now built) the detector on
        the smallest chips of a ``SniperDataset``
        (:func:`mmsnip.models.input_sizes.small_chip_problem`), before the
        first iteration. On several processes a train sampler with
        ``round_up=False`` is refused (:func:`uneven_shards_problem`)."""
        loop = super().build_train_loop(loop)
        problem = uneven_shards_problem(
            getattr(getattr(loop, 'dataloader', None), 'sampler', None),
            self.world_size)
        if problem:
            raise UserInputError(
                f'{self.cfg.filename or "the config"}: {problem}')
        chip_size = getattr(self, '_snip_chip_size', None)
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset',
                          None)
        chips = getattr(dataset, 'chips', None)
        if chip_size is not None and chips is None and \
                hasattr(dataset, 'full_init'):
            dataset.full_init()  # lazy_init=True: the table, built now
            chips = getattr(dataset, 'chips', None)
        if chip_size is not None and chips is None:
            self.logger.warning(
                'SnipRunner: the detector was not run on the smallest chips '
                f'before training: train_dataloader.dataset '
                f'({type(dataset).__name__}) has no chip table of its own '
                '(a wrapper around the SniperDataset?); a chip the network '
                'cannot take fails at its first batch')
        if chip_size is not None and chips is not None:
            from mmsnip.models.input_sizes import small_chip_problem
            scaled = chips.boxes_scaled
            shapes = np.stack([scaled[:, 3] - scaled[:, 1],
                               scaled[:, 2] - scaled[:, 0]], 1)
            model = self.model.module if hasattr(self.model, 'module') \
                else self.model
            problem = small_chip_problem(
                model, shapes, chip_size,
                f'the smallest chips of train_dataloader.dataset '
                f'({type(dataset).__name__})')
            if problem:
                raise UserInputError(f'{self.cfg.filename or "the config"}'
                                     f': {problem}')
        return loop

    def build_test_loop(self, loop):
        """MMEngine's, then (the test dataset now built) the detector of a
        test-time model (``tools/test.py --tta``: ``SnipTTAModel``,
        ``AutoFocusTTAModel``, ``SlicedTTAModel``, any with
        ``input_views``) on the smallest inputs it would feed it for the
        test images (:func:`mmsnip.models.input_sizes.tta_input_problem`),
        before the first image."""
        loop = super().build_test_loop(loop)
        from mmengine.model import BaseTTAModel, is_model_wrapper

        from mmsnip.models.input_sizes import tta_input_problem
        tta = self.model.module if is_model_wrapper(self.model) \
            else self.model
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset',
                          None)
        if not isinstance(tta, BaseTTAModel) or dataset is None or \
                not hasattr(tta, 'input_views'):
            return loop
        if hasattr(dataset, 'full_init'):
            dataset.full_init()  # lazy_init=True: the data list, built now
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        dataset_cfg = (self.cfg.get('test_dataloader') or {}).get(
            'dataset') or {}
        if not all('height' in d and 'width' in d for d in infos):
            self.logger.warning(
                'SnipRunner: the detector was not run on the smallest '
                f'inputs of {type(tta).__name__}: test_dataloader.dataset '
                f'({type(dataset).__name__}) gives no image sizes ("height"'
                ' / "width" in its data list)')
            return loop
        views = tta.input_views(
            [(d['height'], d['width']) for d in infos],
            [osp.basename(str(d.get('img_path', i)))
             for i, d in enumerate(infos)],
            f'test_dataloader.dataset ({type(dataset).__name__})',
            dataset_cfg.get('pipeline'))
        problem = tta_input_problem(tta.module, views)
        if problem:
            raise UserInputError(f'{self.cfg.filename or "the config"}'
                                 f': {problem}')
        return loop

    def train(self):
        self._snip_training = True
        try:
            return super().train()
        finally:
            self._snip_training = False

    def load_checkpoint(self, filename: str, *args, **kwargs) -> dict:
        """MMEngine's loader, then :func:`check_checkpoint_fits`: an error
        when testing, a warning when training (fine-tuning from another
        model's checkpoint is a choice)."""
        from .checkpoint import check_checkpoint_fits
        checkpoint = super().load_checkpoint(filename, *args, **kwargs)
        training = getattr(self, '_snip_training', False)
        try:  # wrappers (DDP, TTA models) prefix their keys: handled
            check_checkpoint_fits(self.model, checkpoint, filename,
                                  exact_shapes=not training)
        except UserInputError as e:
            if not training:
                raise
            self.logger.warning(f'SnipRunner: load_from: {e}')
        return checkpoint

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'SnipRunner':
        from mmsnip.models.input_sizes import (chip_input_problem,
                                               input_size_problem)
        from mmsnip.models.snip_labels import (check_scale_aware,
                                               make_scale_aware_cfg,
                                               snip_label_settings)
        refuse_chip_eval(cfg, ['val_dataloader'] if cfg.get('val_cfg')
                         else [])
        nested = autofocus_in_semi_problem(cfg)
        if nested:
            raise UserInputError(f'{cfg.filename or "the config"}: {nested}')
        if not trains_on_chips(cfg):
            return super().from_cfg(cfg)
        source = cfg.filename or 'the config'
        problems = chip_training_problems(cfg)
        range_problem = tta_range_problem(cfg)
        other_ranges = bool(
            (cfg.get('snip_test') or {}).get('allow_other_ranges'))
        # refused where the pyramid runs (--tta made it the model); when
        # training, or opted out, logged below
        if range_problem and not other_ranges and \
                is_range_tta_model(cfg.get('model')):
            problems.append(range_problem)
        if problems:
            raise UserInputError(f'{source}: ' + '; '.join(problems))
        settings = snip_label_settings(cfg)
        cfg = copy.deepcopy(cfg)
        cfg.model, changes = make_scale_aware_cfg(
            cfg.model, invalid_iou_thr=settings['invalid_iou_thr'])
        hooks = list((cfg.get('default_hooks') or {}).values()) + list(
            cfg.get('custom_hooks') or [])
        present = {name for h in hooks if isinstance(h, dict)
                   for name in type_lineage(h, 'HOOKS')}
        for hook in (dict(type='mmsnip.SamplerResumeHook'),
                     dict(type='mmsnip.SnipLabelCheckHook',
                          allow_unaware=settings['allow_unaware'])):
            name = base_type(hook['type'])
            if name not in present:
                cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
                    hook
                ]
                changes.append(f'custom_hooks: + {name}')
        runner = super().from_cfg(cfg)
        for change in changes:
            runner.logger.info(f'SnipRunner: {change}')
        if range_problem and other_ranges:
            runner.logger.info(f'SnipRunner: {range_problem} (allowed by '
                               'snip_test.allow_other_ranges)')
        elif range_problem:
            runner.logger.warning(f'SnipRunner: {range_problem}')
        module_problem = None if is_range_tta_model(cfg.get('model')) \
            else tta_module_problem(cfg.get('tta_model'), cfg.get('model'))
        if module_problem:  # training: tta_model is not built here
            runner.logger.warning(
                f'SnipRunner: {module_problem}; this training has no '
                'FocusPixel head, and tools/test.py --tta will refuse it')
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        size_problem = input_size_problem(model)
        chip_size = _sniper_chip_size(cfg)
        if not size_problem and chip_size is not None:
            size_problem = chip_input_problem(model, chip_size)
        if size_problem:
            raise UserInputError(f'{source}: {size_problem}')
        runner._snip_chip_size = chip_size  # the smallest chips: at train
        check_scale_aware(
            model, source, settings['allow_unaware'], logger=runner.logger)
        return runner


def _sniper_chip_size(cfg: Config) -> Optional[int]:
    """``chip_cfg.chip_size`` of the config's ``SniperDataset`` (a
    ``SnipDataset`` trains on whole canvases: no chip size), or None."""
    from mmsnip.utils.preflight import chip_config_of
    loader = cfg.get('train_dataloader') or {}
    if not any(chip_kind(ds) == 'SniperDataset'
               for ds in _datasets(loader.get('dataset'))):
        return None
    try:
        return chip_config_of(cfg).chip_size
    except UserInputError:  # the dataset's build names the problem
        return None


def build_runner(cfg: Config) -> Runner:
    """The runner a config asks for, built as MMEngine's tools build it:
    its ``runner_type`` (e.g. ``SnipRunner``) from MMEngine's ``RUNNERS``
    registry, else MMEngine's ``Runner`` (``tools/train.py``,
    ``tools/test.py`` and the training benchmark)."""
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return ROOT_RUNNERS.build(cfg)


def require_snip_runner(cfg: Config, test: bool = False) -> None:
    """Refuse a runner that would skip what mmsnip's data and test-time
    models need: training SNIP/SNIPER data (``tools/train.py``, the
    training benchmark: nothing would make the detector's labels
    scale-aware), or, with ``test=True`` (``tools/test.py``), testing one
    of mmsnip's test-time models (``cfg.model`` once ``--tta`` wrapped it:
    a class with ``input_views``, whose smallest inputs
    :meth:`SnipRunner.build_test_loop` runs the detector on before the
    first image)."""
    if type_in(dict(type=cfg.get('runner_type')), ('SnipRunner', ),
               'RUNNERS'):
        return
    model = cfg.get('model')
    model_cls = resolve_type(model.get('type'), 'MODELS') \
        if isinstance(model, dict) else None
    if not test and trains_on_chips(cfg):
        what = ('trains on SniperDataset / SnipDataset data', "nothing "
                "makes the detector's labels scale-aware")
    elif test and hasattr(model_cls, 'input_views'):
        what = (f'tests {model_cls.__name__} (tta_model)',
                'the detector is not run on the smallest inputs '
                f'{model_cls.__name__} feeds it before the first image, '
                'and a checkpoint that does not fit the model is loaded '
                'with a warning only')
    else:
        return
    raise UserInputError(
        f'{cfg.filename or "the config"}: {what[0]} but runner_type is '
        f'{cfg.get("runner_type", "Runner (the default)")!r}, so '
        f"{what[1]}: set runner_type = 'mmsnip.engine.SnipRunner' (or "
        'inherit configs/_base_/sniper/coco_chips.py or '
        'configs/_base_/default_runtime.py)')
