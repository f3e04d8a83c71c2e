# Copyright (c) mmsnip contributors. All rights reserved.
"""Input checks that turn common mistakes into one-line errors.

The tools call these before building a runner (so a typo in a path costs a
second, not a dataloader worker crash) and after a failure (to name the
annotation file that could not be parsed instead of showing a traceback
from deep inside pycocotools).
"""
import logging
import os.path as osp
from collections import deque
from typing import (TYPE_CHECKING, Deque, Dict, Iterator, List, Optional,
                    Tuple)

from mmengine.config import Config

from .build_errors import config_entry_problem
from .checks import (UserInputError, check_integer, check_number,
                     is_integer)
from .config_tree import (base_type, config_entries, reads_coco, type_in,
                          walk_dataset_cfgs)
from .dataset_audit import (ANN_FIELDS, COCO_LISTS, ERROR, IMAGE_FIELDS,
                            audit_config, join_root, read_coco, summary)

if TYPE_CHECKING:
    from mmsnip.chips import ChipConfig

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# The last configs load_config gave in this process: run_cli names the
# entry of one that failed to build (a tool loads one or a few).
_loaded_configs: Deque[Config] = deque(maxlen=4)


def load_config(path: str, options: Optional[dict] = None) -> Config:
    """Load an MMEngine config, with a clear error for a bad path or file.

    Args:
        path (str): Path of a ``.py`` config file.
        options (dict, optional): ``--cfg-options`` to merge into it
            (:func:`merge_options`).

    Returns:
        Config: The loaded config.
    """
    if not osp.isfile(path):
        raise UserInputError(f'config file "{path}" does not exist')
    if not path.endswith('.py'):
        raise UserInputError(
            f'config file "{path}" is not a Python (.py) config')
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:
        where = e.filename if e.filename and e.filename[0] != '<' else path
        raise UserInputError(
            f'config file "{where}" line {e.lineno}: {e.msg}') from e
    except ImportError as e:  # its custom_imports
        # MMEngine: sys.path, from "Failed to import X", from the reason
        failed, reason = e.__cause__ or e, e
        while (reason.__cause__ or reason.__context__) is not None:
            reason = reason.__cause__ or reason.__context__
        raise UserInputError(
            f'config file "{path}": its custom_imports failed: {failed} '
            f'({type(reason).__name__}: {reason}); put the folder that '
            'holds the module on PYTHONPATH, or fix the name') from e
    except (FileNotFoundError, AssertionError, KeyError, NameError,
            TypeError) as e:
        # TypeError: a child's dict over a base's value of another type
        raise UserInputError(
            f'config file "{path}" could not be loaded: '
            f'{type(e).__name__}: {e}') from e
    merge_options(cfg, options)
    _loaded_configs.append(cfg)
    return cfg


def merge_options(cfg: Config, options: Optional[dict]) -> None:
    """Merge ``--cfg-options`` into ``cfg``, one option at a time, so
    that an option MMEngine cannot merge (``model.backbone.depth.x=1``:
    a dict over an int) is named in a :class:`UserInputError`."""
    for key, value in (options or {}).items():
        try:
            cfg.merge_from_dict({key: value})
        except (TypeError, KeyError) as e:
            raise UserInputError(f'--cfg-options {key}={value!r}: {e}') \
                from e


def chip_config_of(cfg: Config) -> 'ChipConfig':
    """The chip settings of a config, checked.

    The ``chip_cfg`` is the one the training chips use: that of the
    first dataset of ``train_dataloader.dataset`` (wrappers unwrapped)
    that has one (the ``SniperDataset``), else the top-level one (a
    config of chip settings only), built as ``SniperDataset`` builds it
    (``ChipConfig.from_dict``). The dataset's comes first: a config may
    inherit a top-level ``chip_cfg`` it does not train with (which
    ``SnipRunner`` refuses for training).

    Args:
        cfg (Config): A loaded config (:func:`load_config`).

    Returns:
        mmsnip.chips.ChipConfig: Scales, valid ranges (sqrt(area),
        ORIGINAL pixels), chip size and stride (scaled pixels).

    Raises:
        UserInputError: The config has no ``chip_cfg``, or an invalid one
            (the message names the config file and the problem).
    """
    from mmsnip.chips import ChipConfig
    path = getattr(cfg, 'filename', None) or 'the config'
    chip_cfg = next((ds['chip_cfg'] for _, ds in walk_dataset_cfgs(
        (cfg.get('train_dataloader') or {}).get('dataset'), '')
                     if ds.get('chip_cfg') is not None),
                    cfg.get('chip_cfg'))
    if chip_cfg is None:
        raise UserInputError(
            f'config "{path}" has no `chip_cfg` (top level or in '
            'train_dataloader.dataset)')
    try:
        return ChipConfig.from_dict(chip_cfg)
    except (TypeError, ValueError) as e:
        raise UserInputError(f'config "{path}": chip_cfg: {e}') from e


def check_run_settings(cfg: Config, keys=DATALOADER_KEYS) -> None:
    """Raise :class:`UserInputError` naming the entry for a dataloader or
    schedule setting that PyTorch or MMEngine would refuse only once the
    runner is built, with a traceback that names no entry: a dataloader's
    ``batch_size`` (integer >= 1), ``num_workers`` (integer >= 0) and
    ``persistent_workers`` (needs workers), ``train_cfg``'s
    ``max_epochs`` / ``max_iters`` / ``val_interval`` (integers >= 1; 0
    epochs fails in the LR schedule), the optimizer's ``lr`` (a finite
    number >= 0). Only the entries ``keys`` names, and ``train_cfg`` and
    ``optim_wrapper`` when ``train_dataloader`` is one of them.
    """
    for key in keys:
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            continue
        if 'batch_size' in loader:
            check_integer(loader['batch_size'], f'{key}.batch_size')
        workers = loader.get('num_workers', 0)
        check_integer(workers, f'{key}.num_workers', minimum=0)
        if loader.get('persistent_workers') and workers == 0:
            raise UserInputError(
                f'{key}.persistent_workers=True needs worker processes, '
                f'but {key}.num_workers is 0: set persistent_workers=False '
                'or num_workers >= 1')
    if 'train_dataloader' not in keys:
        return
    train_cfg = cfg.get('train_cfg') or {}
    for field in ('max_epochs', 'max_iters', 'val_interval'):
        if train_cfg.get(field) is not None:
            check_integer(train_cfg[field], f'train_cfg.{field}')
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    if isinstance(optimizer, dict) and 'lr' in optimizer:
        check_number(optimizer['lr'], 'optim_wrapper.optimizer.lr', low=0)


def check_chip_cfgs(cfg: Config, keys=DATALOADER_KEYS) -> None:
    """Raise :class:`UserInputError` for an invalid ``chip_cfg``: the
    top-level one and that of every dataset of the dataloaders ``keys``
    (wrappers unwrapped), built as ``SniperDataset`` builds it
    (``ChipConfig.from_dict``), so that a bad value (``--cfg-options
    train_dataloader.dataset.chip_cfg.scales.0.valid_range=None``) is one
    ``error:`` line naming the entry before any model or dataset is
    built."""
    from mmsnip.chips import ChipConfig
    path = getattr(cfg, 'filename', None) or 'the config'
    entries = [('chip_cfg', cfg.get('chip_cfg'))]
    for key in keys:
        loader = cfg.get(key) or {}
        entries += [(f'{name}.chip_cfg', ds.get('chip_cfg'))
                    for name, ds in walk_dataset_cfgs(
                        loader.get('dataset'), f'{key}.dataset')]
    for entry, chip_cfg in entries:
        if chip_cfg is None:
            continue
        try:
            ChipConfig.from_dict(chip_cfg)
        except (TypeError, ValueError) as e:
            raise UserInputError(f'config "{path}": {entry}: {e}') from e


def iter_dataset_cfgs(cfg: Config,
                      keys=DATALOADER_KEYS) -> Iterator[Tuple[str, dict]]:
    """Yield ``(name, dataset_cfg)`` for every dataset of the dataloaders
    ``keys`` that names files (``ann_file``, ``data_prefix``,
    ``proposal_file``), wrapped ones included
    (:func:`walk_dataset_cfgs`): ``train_dataloader.dataset.dataset`` of
    a ``SniperDataset`` or ``RepeatDataset`` is checked too.
    """
    for key in keys:
        loader = cfg.get(key) or {}
        for name, ds in walk_dataset_cfgs(loader.get('dataset'),
                                          f'{key}.dataset'):
            if {'ann_file', 'data_prefix', 'proposal_file'} & set(ds):
                yield name, ds


def dataset_paths(ds: dict) -> List[Tuple[str, str]]:
    """``(field, resolved local path)`` pairs of a dataset config."""
    root = ds.get('data_root') or ''
    paths = []
    for field in ('ann_file', 'proposal_file'):
        if ds.get(field):
            paths.append((field, join_root(root, ds[field])))
    prefix = ds.get('data_prefix') or {}
    if isinstance(prefix, dict):
        for k, v in prefix.items():
            if isinstance(v, str) and v:
                paths.append((f'data_prefix.{k}', join_root(root, v)))
    return [(f, p) for f, p in paths if '://' not in p]


def input_files(cfg: Config, keys=DATALOADER_KEYS,
                fields=('ann_file', 'proposal_file')) -> Dict[str, str]:
    """``{config entry: local path}`` of the files (not folders) that the
    dataloaders ``keys`` and their evaluators read: ``fields`` of every
    dataset, ``ann_file`` of every evaluator.

    For the ``inputs`` of :func:`~mmsnip.utils.fileio.check_output_file`,
    so that a tool's output cannot overwrite its own data.
    """
    files = {}
    for name, ds in iter_dataset_cfgs(cfg, keys):
        for field, path in dataset_paths(ds):
            if field in fields:
                files[f'{name}.{field}'] = path
    for key in keys:
        eval_key = key.replace('_dataloader', '_evaluator')
        evaluators = cfg.get(eval_key) if eval_key != key else None
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        for i, ev in enumerate(evaluators or []):
            path = ev.get('ann_file') if isinstance(ev, dict) else None
            if isinstance(path, str) and path and '://' not in path:
                name = eval_key if len(evaluators) == 1 else \
                    f'{eval_key}[{i}]'
                files[f'{name}.ann_file'] = path
    return files


def check_data_paths(cfg: Config, keys=DATALOADER_KEYS,
                     audit: bool = True) -> None:
    """Raise :class:`UserInputError` for a dataset file or folder missing,
    or (``audit``) for a problem the cheap dataset audit finds.

    Args:
        cfg (Config): A full config.
        keys (tuple[str]): Dataloaders to check (with their evaluators).
        audit (bool): Also run :func:`check_annotations`, unless the
            config sets ``audit_datasets = False``.
    """
    for name, ds in iter_dataset_cfgs(cfg, keys):
        for field, path in dataset_paths(ds):
            if not osp.exists(path):
                hint = ''
                if field == 'proposal_file':
                    hint = (' (mine it with tools/mine_proposals.py, or set '
                            'negatives=False to train on positive chips '
                            'only)')
                elif 'demo' in path:
                    hint = (' (generate the demo data with `make demo` or '
                            '`python tools/make_demo_dataset.py data/demo`)')
                raise UserInputError(
                    f'{name}.{field}: "{path}" does not exist{hint}')
    # `audit_datasets = False` in a config skips the audit (e.g. a huge
    # file audited once with tools/check_dataset.py; the audit parses each
    # annotation file once more: ~11 s for 118k images / 860k boxes)
    if audit and cfg.get('audit_datasets', True):
        check_annotations(cfg, keys)


def check_proposal_files(cfg: Config, keys=DATALOADER_KEYS) -> None:
    """Raise :class:`UserInputError` for the compact proposal file of a
    chip dataset (``negatives=True``, wrappers unwrapped) that cannot be
    opened or was made for another chip config: another number of scales,
    or other scales than it records
    (:func:`mmsnip.datasets.proposals.check_proposal_scales`, the check
    the dataset runs when built), or, where the file records image names,
    made for other images: the chip dataset's inner dataset reads a COCO
    annotation file of at most :data:`PREFLIGHT_MAX_NAMES_BYTES` whose
    images (ids and ``file_name``) the file names otherwise
    (:func:`_check_proposal_images`). Only the file's index (and names)
    is read; a legacy pickle (read whole), a larger annotation file and
    other datasets are checked when the dataset is built.
    """
    from mmsnip.chips import ChipConfig
    from mmsnip.datasets.proposals import (ProposalFile,
                                           check_proposal_scales,
                                           is_legacy_file)
    for key in keys:
        loader = cfg.get(key) or {}
        for name, ds in walk_dataset_cfgs(loader.get('dataset'),
                                          f'{key}.dataset'):
            path, chip_cfg = ds.get('proposal_file'), ds.get('chip_cfg')
            if not (ds.get('negatives') and isinstance(path, str)
                    and chip_cfg is not None and osp.isfile(path)) or \
                    is_legacy_file(path):
                continue
            try:
                scales = ChipConfig.from_dict(chip_cfg).scales
                props = ProposalFile(path)
                check_proposal_scales(path, props, props.num_scales,
                                      len(scales), scales)
                if props.has_names:
                    _check_proposal_images(path, props, ds.get('dataset'),
                                           f'{name}.proposal_file')
            except ValueError as e:
                raise UserInputError(f'{name}.proposal_file: {e}') from e


# check_proposal_files compares a proposal file's image names with a COCO
# annotation file up to this size (val2017's is 25 MB; json.load of
# train2017's 448 MB takes about 9 s, which the dataset's build pays once
# anyway: it checks the names itself).
PREFLIGHT_MAX_NAMES_BYTES = 64 * 2**20


def _check_proposal_images(path: str, props, inner, entry: str) -> None:
    """The images of a proposal file that records names against those
    of ``inner`` (the chip dataset's dataset config), when it reads a
    COCO file of at most :data:`PREFLIGHT_MAX_NAMES_BYTES`
    (:func:`mmsnip.datasets.proposals.check_image_names`, as the dataset
    checks them when built); anything else is left to the build."""
    if not isinstance(inner, dict) or not inner.get('ann_file') or \
            not reads_coco(inner, 'DATASETS'):
        return
    ann_file = join_root(inner.get('data_root') or '', inner['ann_file'])
    if '://' in ann_file or not osp.isfile(ann_file) or \
            osp.getsize(ann_file) > PREFLIGHT_MAX_NAMES_BYTES:
        return
    coco, _ = read_coco(ann_file, ('images', ))
    if coco is None or not all(isinstance(img, dict) and 'id' in img
                               for img in coco['images']):
        return  # the audit and the build name the problem
    from mmsnip.datasets.coco_file import coco_image_names
    from mmsnip.datasets.proposals import check_image_names
    # images the file lacks are left to the build (filter_cfg may drop
    # them from the dataset)
    found = [(img['id'], name) for img, name in zip(
        coco['images'], coco_image_names(coco))
        if _hashable(img['id']) and img['id'] in props]
    check_image_names(path, props, [i for i, _ in found],
                      [n for _, n in found], entry)


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def set_work_dir(cfg: Config, work_dir: Optional[str], config: str) -> str:
    """Set ``cfg.work_dir`` as MMDetection's tools do (``--work-dir``, else
    the config's ``work_dir``, else ``./work_dirs/<config name>``) and
    check that the folder can be made and written in
    (:func:`~mmsnip.utils.fileio.check_output_dir`), before anything is
    built (MMEngine's runner makes it first thing, with a traceback).

    Returns:
        str: The work folder.

    Raises:
        UserInputError: e.g. ``--work-dir "a_file/w": cannot create the
            folder (Not a directory)`` (``work_dir "..."`` when the config
            set it).
    """
    from .fileio import check_output_dir
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return check_output_dir(cfg.work_dir, 'work_dir' if work_dir is None
                            else '--work-dir')


def check_load_from(cfg: Config, flag: Optional[str] = None) -> None:
    """Raise :class:`UserInputError` when ``cfg.load_from`` (the checkpoint
    to resume from or to initialise with) is a local path that is not a
    file. URLs and storage-backend paths (``scheme://...``) are left to
    the runner. A run without ``load_from`` (auto-resume: the work
    folder's latest checkpoint, if any) passes.

    Auto-resume (``resume=True`` without ``load_from``: ``--resume``
    without a path) resumes from the checkpoint the work folder's
    ``last_checkpoint`` names (MMEngine's rule). When that file is gone:
    the checkpoint of the same name in the work folder, if there is one
    (the folder was moved: ``last_checkpoint`` holds an absolute path;
    set as ``cfg.load_from``, logged), else an error listing the
    checkpoints there.

    Args:
        cfg (Config): A full config.
        flag (str, optional): The command-line option that set it (e.g.
            ``'--resume'``), named in the message; else ``load_from``.
    """
    path = cfg.get('load_from')
    if not path and cfg.get('resume') is True and cfg.get('work_dir'):
        _check_auto_resume(cfg)
        return
    if not path or not isinstance(path, str) or '://' in path:
        return
    from .fileio import check_input_file
    check_input_file(osp.expanduser(path), f'{flag or "load_from"} '
                     'checkpoint')


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint a work folder's ``last_checkpoint`` record names
    (MMEngine writes it after saving a checkpoint whole; the path as
    written, not checked), or None without a readable, non-empty record.

    MMEngine's own ``find_latest_checkpoint`` reads the same file but
    logs a line when there is none.
    """
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _check_auto_resume(cfg: Config) -> None:
    """:func:`check_load_from` for auto-resume (see there)."""
    import glob
    import re
    record = osp.join(cfg.work_dir, 'last_checkpoint')
    named = last_checkpoint(cfg.work_dir)
    if named is None:
        return  # none: MMEngine starts afresh
    if '://' in named or osp.isfile(named):
        return
    here = osp.join(cfg.work_dir, osp.basename(named))
    if osp.isfile(here):
        from mmengine.logging import print_log
        print_log(f'--resume: "{record}" names "{named}", which does not '
                  f'exist; resuming from "{here}", the checkpoint of that '
                  'name in the work folder (the folder was moved)',
                  logger='current', level=logging.WARNING)
        cfg.load_from = here
        return

    def number(p):
        found = re.findall(r'\d+', osp.basename(p))
        return (int(found[-1]) if found else -1, p)

    there = sorted(glob.glob(osp.join(cfg.work_dir, '*.pth')), key=number)
    fix = (f'resume from one that exists: --resume {there[-1]} '
           f'(checkpoints there: '
           f'{", ".join(osp.basename(p) for p in there)})' if there else
           'no checkpoint is left there: delete that file to start over')
    raise UserInputError(
        f'--resume: "{record}" names the checkpoint "{named}", which does '
        f'not exist (deleted, or removed before a newer one was saved '
        f'whole: max_keep_ckpts); {fix}')


# The tools read image headers before a run only up to this many images
# (a few seconds); above it, `tools/check_dataset.py CONFIG` reads them all.
PREFLIGHT_MAX_IMAGES = 5000
# Problems listed under the one `error:` line.
SHOWN_PROBLEMS = 5


def registry_metainfo(type_name: str) -> dict:
    """Default ``METAINFO`` of a registered dataset type, or ``{}``."""
    try:
        from mmsnip.registry import DATASETS
        cls = DATASETS.get(type_name)
    except Exception:  # an unknown type fails later with mmengine's error
        return {}
    return getattr(cls, 'METAINFO', None) or {}


def registry_classes(type_name: str) -> Optional[Tuple[str, ...]]:
    """Default ``METAINFO['classes']`` of a registered dataset type (e.g.
    the 80 COCO names of ``CocoDataset``), or None if it has none."""
    classes = registry_metainfo(type_name).get('classes')
    return tuple(classes) if classes else None


def dataset_classes(ds: dict) -> Optional[Tuple[str, ...]]:
    """The classes a dataset config sets for its labels: its
    ``metainfo.classes`` (a panoptic dataset's ``thing_classes``, the
    ones with boxes), or None when it sets none. A type's default classes
    (COCO's 80) are not used: they label only the classes the annotation
    file holds, unknown before it is read (a person-only COCO file has one
    label), and a video dataset's defaults are not its files' classes."""
    meta = ds.get('metainfo') or {}
    if not isinstance(meta, dict):
        return None
    if 'thing_classes' in meta or \
            'thing_classes' in registry_metainfo(ds.get('type')):
        classes = meta.get('thing_classes')
    else:
        classes = meta.get('classes')
    if isinstance(classes, str):
        classes = (classes, )
    return tuple(classes) if classes else None


# Model config parts whose ``num_classes`` counts something other than the
# dataset's classes: a backbone's / neck's own (ImageNet) head, the RPN's
# one "object" class (GA-RPN, Cascade RPN too), a semantic segmentation
# head's stuff and things (HTC, SCNet: 183 on COCO).
OTHER_CLASS_COUNTS = ('backbone', 'neck', 'data_preprocessor', 'rpn_head',
                      'semantic_head', 'fused_semantic_head')


def num_classes_entries(node, path: str = 'model'
                        ) -> Iterator[Tuple[str, int]]:
    """``(config entry, value)`` of every ``num_classes`` of a model config
    that counts the dataset's classes: box, mask, DETR-style and cascade
    heads (``roi_head.bbox_head[i]``), wrapped models (AutoFocus's
    ``detector``, a TTA model's ``module``) included; not the parts of
    :data:`OTHER_CLASS_COUNTS`, nor a detector with a ``language_model``
    (GLIP, Grounding DINO: its ``num_classes`` counts text tokens)."""
    def counts_classes(key, value):
        return key not in OTHER_CLASS_COUNTS and not (
            isinstance(value, dict) and 'language_model' in value)

    if isinstance(node, dict) and 'language_model' in node:
        return
    for entry, key, value in config_entries(node, path, counts_classes):
        if key == 'num_classes' and is_integer(value):
            yield entry, int(value)


def check_num_classes(cfg: Config, keys=DATALOADER_KEYS) -> None:
    """Raise :class:`UserInputError` if a ``num_classes`` of the model
    (:func:`num_classes_entries`) is smaller than the number of classes of
    a dataset of the dataloaders ``keys`` (:func:`dataset_classes`):
    MMDetection reads label ``num_classes`` as background, so every class
    from that index on would be trained as background, silently. A larger
    ``num_classes`` is logged as a warning (outputs without a class)."""
    from mmengine.logging import print_log
    entries = list(num_classes_entries(cfg.get('model') or {}))
    datasets = [(name, dataset_classes(ds))
                for name, ds in iter_dataset_cfgs(cfg, keys)]
    datasets = [(name, classes) for name, classes in datasets if classes]
    if not entries or not datasets:
        return
    name, classes = max(datasets, key=lambda d: len(d[1]))
    problems, larger = [], []
    for entry, value in entries:
        if value < len(classes):
            lost = ', '.join(repr(c) for c in classes[value:value + 3])
            more = ', ...' if len(classes) > value + 3 else ''
            problems.append(
                f'{entry}={value} but {name} has {len(classes)} classes: '
                f'MMDetection trains label {value} and above as background, '
                f'so {lost}{more} would never be detected; set '
                f'{entry}={len(classes)}')
        elif value > len(classes):
            larger.append(f'{entry}={value}')
    if problems:
        config = getattr(cfg, 'filename', None) or 'the config'
        raise UserInputError(f'{config}: ' + '; '.join(problems))
    if larger:
        print_log(
            f'{", ".join(larger)}: more than the {len(classes)} classes of '
            f'{name}; the outputs from {len(classes)} on never see an object '
            f'of their class (set num_classes={len(classes)} to drop them)',
            logger='current', level=logging.WARNING)


def check_amp_device(cfg: Config) -> None:
    """Raise :class:`UserInputError` if the config trains with mixed
    precision (``optim_wrapper.type`` ``AmpOptimWrapper``, what
    ``tools/train.py --amp`` sets) on a machine without a device it runs
    on (CUDA, NPU, MLU, MUSA: mmengine's own test, which only asserts)."""
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    wrapper = cfg.get('optim_wrapper') or {}
    # the devices AmpOptimWrapper itself accepts
    if not type_in(wrapper, ('AmpOptimWrapper', ), 'OPTIM_WRAPPERS') or any(
            available() for available in (is_cuda_available,
                                          is_npu_available, is_mlu_available,
                                          is_musa_available)):
        return
    config = getattr(cfg, 'filename', None) or 'the config'
    raise UserInputError(
        f'{config}: optim_wrapper.type is {wrapper["type"]!r} (mixed '
        'precision, also set by --amp), which needs a CUDA GPU (or an '
        'NPU, MLU, MUSA device), and this machine has none: train '
        'without --amp, or with --cfg-options '
        'optim_wrapper.type=OptimWrapper')


def check_tta_config(cfg: Config) -> None:
    """Raise :class:`UserInputError` if ``tools/test.py --tta`` has no
    test-time model to build: no ``tta_model`` (MMDetection would silently
    test a flip of the whole image, no pyramid) or no ``tta_pipeline``
    (a flip pipeline would feed a pyramid model views of one scale)."""
    config = getattr(cfg, 'filename', None) or 'the config'
    missing = [key for key in ('tta_model', 'tta_pipeline')
               if not cfg.get(key)]
    if missing:
        raise UserInputError(
            f'{config}: --tta needs {" and ".join(missing)} in the config '
            '(the test pyramid and the pipeline that makes its views); '
            'inherit them from a SNIPER config (configs/_base_/sniper/'
            'coco_chips.py: snip_tta_model, snip_tta_pipeline; '
            'docs/sniper.md), or write MMDetection\'s flip test out as '
            "tta_model = dict(type='DetTTAModel', tta_cfg=...) with its "
            'tta_pipeline to test that instead')
    problem = tta_resize_problem(cfg.tta_model, cfg.tta_pipeline) or \
        tta_views_problem(cfg.tta_model, cfg.tta_pipeline) or \
        tta_module_problem(cfg.tta_model, cfg.get('model'))
    if problem:
        raise UserInputError(f'{config}: {problem}')


def tta_module_problem(tta_model, model) -> Optional[str]:
    """A message if ``tta_model`` is an ``AutoFocusTTAModel`` but the
    config's ``model`` (the module ``--tta`` wraps) is not an
    ``AutoFocus`` model, else None. The model refuses it when built (a
    ``TypeError``); here it is found from the config."""
    if not isinstance(tta_model, dict) or not isinstance(model, dict) or \
            not type_in(tta_model, ('AutoFocusTTAModel', ), 'MODELS') or \
            type_in(model, ('AutoFocus', ), 'MODELS'):
        return None
    name = base_type(model.get('type'))
    return ('tta_model (AutoFocusTTAModel) runs the cascade of an '
            'AutoFocus model (a detector with a FocusPixel head), but model '
            f"is a {name}: wrap it, model = dict(_delete_=True, type="
            "'mmsnip.AutoFocus', detector=..., focus_head=..., "
            'focus_level=...) (docs/autofocus.md), or test the full pyramid '
            'with SnipTTAModel')


# Test-time models that cut their chips from the whole image as loaded.
CHIP_TTA_MODELS = ('AutoFocusTTAModel', 'SlicedTTAModel')


def tta_views_problem(tta_model, tta_pipeline) -> Optional[str]:
    """A message if a chip-based test-time model (``AutoFocusTTAModel``,
    ``SlicedTTAModel``) gets a ``tta_pipeline`` with a ``TestTimeAug``,
    else None.

    Those models take each image once, whole; a ``TestTimeAug`` packs
    several views of it (the SNIP pyramid's ``snip_tta_pipeline``, kept
    from a SNIPER base by a config that swapped only ``tta_model``). The
    model refuses such a batch at the first image
    (``mmsnip.models.test_time_augs.chip_runner.check_one_view``); here
    it is found from the config, before anything is built.
    """
    name = type_in(tta_model, CHIP_TTA_MODELS, 'MODELS') \
        if isinstance(tta_model, dict) else None
    if name is None:
        return None
    step = next((i for i, t in enumerate(tta_pipeline or [])
                 if isinstance(t, dict)
                 and type_in(t, ('TestTimeAug', ), 'TRANSFORMS')), None)
    if step is None:
        return None
    return (f'tta_model ({name}) takes each image once, whole, and '
            f'resizes its chips itself, but tta_pipeline[{step}] is a '
            'TestTimeAug (several views of each image, e.g. '
            'snip_tta_pipeline of the SNIPER base, for SnipTTAModel): set '
            'tta_pipeline = {{_base_.chip_tta_pipeline}} '
            '(configs/_base_/autofocus/chip_test.py)')


def tta_resize_problem(tta_model, tta_pipeline) -> Optional[str]:
    """A message if a scale of a ``SnipTTAModel`` has no resize in the
    ``tta_pipeline``, else None.

    The pyramid test runs a scale only on the views its ``TestTimeAug``
    resizes to it; ``SnipTTAModel`` refuses a missing one at the first
    image (after the dataset and the checkpoint load). Here it is found
    from the config, before anything is built, where the first stage of
    the ``TestTimeAug`` is ``ResizeToScale`` steps only (their resize
    rule against each scale's: ``factor``, ``max_side`` or
    ``short_max``); other resizes are left to the model's check.
    """
    from mmsnip.chips import ScaleSpec
    if not isinstance(tta_model, dict) or not type_in(
            tta_model, ('SnipTTAModel', ), 'MODELS'):
        return None
    stages = next((step.get('transforms') for step in tta_pipeline or []
                   if isinstance(step, dict)
                   and type_in(step, ('TestTimeAug', ), 'TRANSFORMS')),
                  None)
    resizes = stages[0] if stages else None
    if not resizes or not all(
            isinstance(t, dict) and isinstance(t.get('scale'), dict)
            and type_in(t, ('ResizeToScale', ), 'TRANSFORMS')
            for t in resizes):
        return None
    try:
        scales = [ScaleSpec.from_dict(dict(s))
                  for s in tta_model.get('scales') or []]
        rules = {ScaleSpec.from_dict(dict(t['scale'])).resize_rule
                 for t in resizes}
    except (TypeError, ValueError):  # building them says what is wrong
        return None
    missing = [i for i, spec in enumerate(scales)
               if spec.resize_rule not in rules]
    if not missing:
        return None
    names = ', '.join(f'scales[{i}] ({scales[i].rule_text})'
                      for i in missing)
    fix = ', '.join(f"dict(type='mmsnip.ResizeToScale', scale=dict("
                    f'{scales[i].rule_text}))' for i in missing)
    return (f'tta_model ({tta_model.get("type")}) has {names}, but no '
            'ResizeToScale in the first stage of tta_pipeline\'s '
            'TestTimeAug resizes to it: that scale would never run and the '
            'objects of its valid range would be missed. Add ' + fix +
            ' to that stage, one resize per scale of tta_model.scales in '
            'their order, or remove the scale from tta_model.scales')


def check_annotations(cfg: Config, keys=DATALOADER_KEYS,
                      max_images: int = PREFLIGHT_MAX_IMAGES) -> list:
    """Run the dataset audit (:mod:`mmsnip.utils.dataset_audit`) on a
    config's COCO files; raise :class:`UserInputError` if it finds an
    error.

    Image headers are read only if the files list at most ``max_images``
    images together; no image is decoded. Warnings are printed, not raised.

    Returns:
        list[Problem]: The warnings.
    """
    problems = audit_config(cfg, keys, default_classes=registry_classes,
                            images=True,
                            max_images=max_images)
    errs = [p for p in problems if p.severity == ERROR]
    warns = [p for p in problems if p.severity != ERROR]
    from mmengine.logging import print_log
    for p in warns[:SHOWN_PROBLEMS]:
        print_log(f'dataset audit: warning: {p}', logger='current')
    if errs:
        config = getattr(cfg, 'filename', None) or 'CONFIG'
        more = ''.join(f'\n  - {p}' for p in errs[1:SHOWN_PROBLEMS])
        rest = len(errs) - SHOWN_PROBLEMS
        if rest > 0:
            more += f'\n  ... {rest} more'
        raise UserInputError(
            f'{errs[0]}{more}\n  ({summary(problems)} in the dataset '
            f'annotations; `python tools/check_dataset.py {config}` lists '
            'them all)')
    return warns


def coco_problem(coco) -> Optional[str]:
    """The first structural problem of a COCO dict that breaks
    ``CocoDataset``, or None.

    Used to explain a ``KeyError`` raised inside ``CocoDataset`` after the
    fact; the lists and fields are the dataset audit's
    (:mod:`mmsnip.utils.dataset_audit`: ``COCO_LISTS``, ``IMAGE_FIELDS``,
    ``ANN_FIELDS``), which finds these problems and more before a run.

    Args:
        coco (dict): A parsed COCO annotation file.

    Returns:
        str | None: e.g. ``'images[3] (id 7, "a.jpg") lacks "height"'``.
    """
    if not isinstance(coco, dict):
        return f'not a COCO dict but a {type(coco).__name__}'
    for key in COCO_LISTS:
        if not isinstance(coco.get(key), list):
            return f'lacks the COCO list "{key}"'
    for where, rows, fields in (('images', coco['images'], IMAGE_FIELDS),
                                ('annotations', coco['annotations'],
                                 ANN_FIELDS)):
        bad = next(((i, f) for i, row in enumerate(rows) for f in fields
                    if not isinstance(row, dict) or f not in row), None)
        if bad is not None:
            i, field = bad
            row = rows[i] if isinstance(rows[i], dict) else {}
            name = f', "{row["file_name"]}"' if 'file_name' in row else ''
            return (f'{where}[{i}] (id {row.get("id")}{name}) lacks '
                    f'"{field}"')
    return None


def check_coco_file(path: str) -> None:
    """Raise :class:`UserInputError` if ``path`` is not a COCO json file
    (the audit's :func:`~mmsnip.utils.dataset_audit.read_coco`) or lacks
    a field ``CocoDataset`` reads (:func:`coco_problem`)."""
    data, problems = read_coco(path)
    if data is None:  # one ``bad_file`` problem: not JSON, not COCO
        raise UserInputError(
            f'annotation file "{path}" {problems[0].message}')
    problem = coco_problem(data)
    if problem:
        raise UserInputError(f'annotation file "{path}": {problem}')


def explain_failure(cfg: Config, keys=DATALOADER_KEYS) -> None:
    """After a failure, raise a clear error if an annotation file is bad.

    Only ``.json`` annotation files are parsed, and only once something
    failed, so a healthy run never pays for a second parse. (A config
    entry that failed to build is named by :func:`run_cli`.)
    """
    for name, ds in iter_dataset_cfgs(cfg, keys):
        for field, path in dataset_paths(ds):
            if field == 'ann_file' and path.endswith('.json') \
                    and osp.isfile(path):
                try:
                    check_coco_file(path)
                except UserInputError as e:
                    raise UserInputError(f'{name}.{field}: {e}') from None


def user_message(error: UserInputError) -> str:
    """What the user reads of ``error``: its message, also when it was
    raised in a DataLoader worker process.

    PyTorch re-raises a worker's error in the main process as the same
    class whose message is ``Caught UserInputError in DataLoader worker
    process 0.`` and the worker's whole traceback; that gives the
    original message and, on a line of its own, where it was raised.
    """
    text = str(error)
    head, found, rest = text.partition('\nOriginal Traceback')
    kind = type(error)
    caught = f'Caught {kind.__name__} '
    if not (found and head.startswith(caught)):
        return text
    # traceback.format_exception ends with "module.Class: message\n"
    name = f'\n{kind.__module__}.{kind.__qualname__}: '
    at = rest.rfind(name)
    if at < 0:
        return text
    where = head[len(caught):].rstrip('.')
    return f'{rest[at + len(name):].rstrip()}\n  (raised {where})'


def run_cli(main) -> None:
    """Run a tool's ``main()``; print a :class:`UserInputError` on one line.

    Exits with status 2 (as argparse does for usage errors) instead of
    showing a traceback for mistakes in user input (:func:`user_message`:
    also those raised in a DataLoader worker process), and for a config
    entry of a config :func:`load_config` gave that failed to build (a
    type no registry knows, a keyword its class does not take:
    :func:`~mmsnip.utils.build_errors.config_entry_problem`).
    """
    import sys
    try:
        main()
    except UserInputError as e:
        print(f'error: {user_message(e)}', file=sys.stderr)
        sys.exit(2)
    except (KeyError, TypeError) as e:
        problem = next(filter(None, (config_entry_problem(cfg, e) for cfg
                                     in reversed(_loaded_configs))), None)
        if problem is None:
            raise
        print(f'error: {problem}', file=sys.stderr)
        sys.exit(2)
