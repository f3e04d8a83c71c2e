# Copyright (c) mmsnip contributors. All rights reserved.
"""Audit the COCO annotation files (and their images) a config uses.

MMDetection trusts its annotation files. Several common mistakes therefore
give *silently wrong* results rather than an error, and others end in a
traceback from deep inside pycocotools, mmcv or cv2 that names no dataset
entry. This module finds them before training, as plain data
(:class:`Problem`), one problem per entry, each naming the file and the
entry (image id and file name, annotation id, category):

- **one file**: not a file (a directory); no images; duplicate image ids
  (pycocotools keeps the last
  image of an id, so the boxes of both land on its pixels); duplicate
  annotation ids (``load_anns`` returns the last annotation of an id for
  each of them); annotations whose ``image_id`` or ``category_id`` is not in
  the file; a ``bbox`` that is not four finite numbers (strings, ``null``,
  NaN, three numbers); an ``iscrowd`` other than 0 / 1 (``"0"`` is a crowd
  box for mmdet; ``true`` / ``false`` pass: they are 1 / 0 to mmdet and
  pycocotools alike); image sizes that are not positive numbers; duplicate
  category ids or names. Warnings for what ``CocoDataset`` drops silently:
  boxes under 1 px or outside their image, an ``"area"`` <= 0 under a
  real box (an error when that is most of the file: ``"area"`` never
  filled), annotations with a true ``"ignore"`` (which ``COCOeval``
  scores unless they are crowd); a warning too for a true
  ``"ignore_flag"`` or ``"difficult"``, which neither reader reads (the
  box trains and is scored as an object).
- **files an evaluator scores** (``CocoMetric(ann_file=...)``), for
  pycocotools' ``COCOeval``: an annotation of id 0 (never matched: a
  warning), annotation ids that are not integers and annotations without
  ``iscrowd`` (``COCOeval`` fails on them after the whole test: errors),
  and with ``classwise=True`` category ids that do not ascend in the
  file's order (each per-class AP shown under another class's name: an
  error) or that are strings (the per-class table fails after the whole
  test: an error).
- **segmentations**, only for a file whose dataset loads masks
  (``LoadAnnotations(with_mask=True)``): missing or empty ones (a
  ``KeyError`` mid-training), polygons none of which has 3 points (mmdet
  ignores the box silently), RLEs without ``counts`` / ``size`` or of
  another size than their image: errors; some polygons dropped: a
  warning (:func:`audit_masks`).
- **across files** (train / val / test datasets, wrapped or not, and the
  evaluators' ``ann_file``): the label of a box is its class's position in
  ``metainfo.classes`` *as ordered by each file's "categories"*
  (``CocoDataset`` and ``CocoMetric`` call pycocotools
  ``get_cat_ids(cat_names=classes)``, which returns ids in the file's
  order). Two files that list the classes in different orders give
  different labels to the same class, and a perfect detector scores 0.333
  mAP on three classes. mmsnip **refuses** such configs (rather than
  re-mapping by name behind MMDetection's back, which the training
  dataset, the metric, ``DumpDetResults`` and every export tool would all
  need to agree on): the error names both files, both orders, and the
  fix. A class of ``metainfo.classes`` missing from a file shifts the
  labels after it: an error too.
- **images** (optional, cheap): the size read from each image file's
  header (PIL reads only the header; EXIF orientations 5-8 swap width and
  height, as mmcv's loader rotates the pixels) must equal the annotated
  ``width`` / ``height``; missing or unreadable files are errors. Any
  other EXIF orientation than 1 that the loader applies without changing
  the size (2-4, or 5-8 on a square image) is a warning: the size check
  cannot tell whether the boxes were drawn on the rotated pixels.
  ``full_decode=True`` decodes every image (a truncated JPEG only fails
  there). Header reads can run in a process pool.

Worked example: ``train.json`` lists categories ``[cat (id 1), dog (id 2),
bird (id 3)]``, ``val.json`` lists ``[bird (3), cat (1), dog (2)]``, and the
config sets ``classes=('cat', 'dog', 'bird')``. Training labels cat=0, dog=1,
bird=2; the val dataset and ``CocoMetric`` label bird=0, cat=1, dog=2. The
audit reports one error::

    val.json: categories: numbers the classes as ['bird', 'cat', 'dog']
    (label 0 first) but train.json (train_dataloader.dataset) numbers them
    as ['cat', 'dog', 'bird']: ...; reorder "categories" in val.json to
    ['cat', 'dog', 'bird'] (ids and annotations may stay as they are)

Cost: one pass over the parsed JSON with dicts (no O(n^2)); a
COCO-sized file (118k images, 860k annotations) takes about 2 s after
``json.load`` (itself about 9 s for that file), on one core. Image headers:
one small read per image, in ``workers`` processes. Importing it needs only
numpy, json and PIL (no torch: the one-file checks of ``load_coco``);
reading a config (:func:`sources_from_config`) asks the registry which
dataset and metric types read COCO json and which pipeline steps load
images and masks, which imports mmdet and torch.

Users: :func:`mmsnip.utils.preflight.check_annotations` (before every
``tools/train.py`` / ``test.py`` run), ``tools/check_dataset.py`` (all of
it), and :func:`mmsnip.datasets.coco_file.load_coco` (the one-file checks
for the tools that read boxes from a COCO file, with the fields they need).
It lives in ``mmsnip.utils`` so that preflight, which the dataset layer
imports, needs nothing from ``mmsnip.datasets``.
"""
import dataclasses
import json
import math
import os.path as osp
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import (Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

import numpy as np

from .checks import is_number
from .config_tree import (dataset_leaves, mask_loader, pipeline_steps,
                          reads_coco)

ERROR = 'error'
WARNING = 'warning'

# Problem kinds (``Problem.kind``), one per class of mistake.
BAD_FILE = 'bad_file'  # not JSON / not a COCO dict
NO_IMAGES = 'no_images'
BAD_IMAGE = 'bad_image'  # missing fields, bad id / size
DUPLICATE_IMAGE_ID = 'duplicate_image_id'
DUPLICATE_FILE_NAME = 'duplicate_file_name'
BAD_ANNOTATION = 'bad_annotation'  # missing fields, bad id
DUPLICATE_ANN_ID = 'duplicate_annotation_id'
MISSING_IMAGE = 'missing_image'  # annotation -> image id not in file
MISSING_CATEGORY = 'missing_category'  # annotation -> category not in file
BAD_BBOX = 'bad_bbox'  # not 4 finite numbers
DROPPED_BOXES = 'dropped_boxes'  # CocoDataset drops them (warning)
BBOX_FORMAT = 'bbox_format'  # [x1, y1, x2, y2] written as COCO's bbox
BAD_CATEGORY = 'bad_category'  # duplicate id / name, no name
CLASS_MISSING = 'class_missing'  # metainfo.classes name not in file
CLASS_ORDER = 'class_order'  # labels differ between files
CATEGORY_ID = 'category_id'  # same name, other id (warning)
IGNORED_CATEGORIES = 'ignored_categories'  # not among classes (warning)
IMAGE_FILE = 'image_file'  # missing / unreadable / truncated
IMAGE_SIZE = 'image_size'  # header size != annotated size
EXIF_ORIENTATION = 'exif_orientation'  # rotated, same size (warning)
IMAGES_SKIPPED = 'images_not_checked'  # over max_images (warning)
EVALUATOR_IMAGES = 'evaluator_images'  # metric file lacks dataset images
IGNORE_FLAG = 'ignore_flag'  # CocoDataset drops them (warning)
# "ignore_flag" / "difficult": read by neither reader (warning)
UNREAD_IGNORE_FIELD = 'unread_ignore_field'
ZERO_ANN_ID = 'zero_annotation_id'  # COCOeval never matches (warning)
NO_GROUND_TRUTH = 'no_ground_truth'  # scored file: AP -1 (warning)
CLASSWISE_ORDER = 'classwise_order'  # per-class AP under other names
CLASSWISE_ID_TYPE = 'classwise_id_type'  # string category id, classwise
BAD_ISCROWD = 'bad_iscrowd'  # "iscrowd" not 0 / 1 (missing: scored file)
ANN_ID_TYPE = 'annotation_id_type'  # not an integer in a scored file
BAD_SEGMENTATION = 'bad_segmentation'  # masks loaded: none / broken
SEGMENTATION_POLYGONS = 'segmentation_polygons'  # some dropped (warning)

# Fields that mark a box to ignore elsewhere (MMDetection's internal data
# lists, VOC) but that CocoDataset and COCOeval do not read.
_UNREAD_IGNORE_FIELDS = ('ignore_flag', 'difficult')
# What CocoDataset needs: the lists of a file, the fields of its entries.
COCO_LISTS = ('images', 'annotations', 'categories')
IMAGE_FIELDS = ('id', 'file_name', 'height', 'width')
ANN_FIELDS = ('id', 'image_id', 'category_id', 'bbox', 'area')
# EXIF orientations that rotate by 90 degrees (mmcv and cv2 apply them).
_TRANSPOSING = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
_NUM = (int, float)  # JSON numbers; bool is not one
# The "iscrowd" values both readers agree on: mmdet tests it for truth,
# pycocotools' COCOeval takes int() of it (false / true and 0.0 / 1.0 equal
# 0 / 1 in Python and read the same in both).
_CROWD = (0, 1)
_NO_SIZE = (np.nan, np.nan)  # an annotation's image of unknown size
# Formats cv2.imdecode (mmcv's default backend) cannot read.
_CV2_UNREADABLE = ('GIF', )


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem of an annotation file or an image.

    Attributes:
        file (str): The annotation file (as the config resolves it).
        entry (str): What in it: ``'image 7 ("a.jpg")'``,
            ``'annotation 12 (image 7)'``, ``'categories'``, ``'file'``.
        message (str): What is wrong, what it would do, and the fix.
        severity (str): ``'error'`` (training would be wrong or crash) or
            ``'warning'`` (MMDetection drops data silently, on purpose or
            not).
        kind (str): One of the kind constants of this module, e.g.
            ``'duplicate_image_id'``.
        source (str): The config entry that uses the file, e.g.
            ``'train_dataloader.dataset.dataset'``; ``''`` if none.
    """
    file: str
    entry: str
    message: str
    severity: str = ERROR
    kind: str = ''
    source: str = ''

    def __str__(self) -> str:
        return f'{self.file}: {self.entry}: {self.message}'


@dataclasses.dataclass
class AnnSource:
    """One COCO annotation file as a config uses it.

    Attributes:
        ann_file (str): Path, with ``data_root`` joined.
        source (str): Config entry, e.g. ``'val_evaluator'``.
        img_prefix (str | None): Folder the images' ``file_name`` is
            relative to (``data_root`` + ``data_prefix['img']``); None for
            evaluator files (no image checks).
        classes (tuple[str] | None): The classes the dataset labels with:
            ``metainfo.classes``, or the dataset type's default; None if
            unknown (then the file's own category names are used).
        explicit_classes (bool): Whether ``classes`` was set in the config
            (a class missing from the file is then an error).
        apply_orientation (bool): Whether the image loader applies EXIF
            orientation (mmcv's ``color_type='color'``, the default).
        evaluates (str | None): For an evaluator's file, the dataloader
            whose predictions it scores (``'val_dataloader'``).
        classwise (bool): For an evaluator's file, whether the metric
            reports AP per class (``CocoMetric(classwise=True)``).
        format_only (bool): For an evaluator's file,
            ``CocoMetric(format_only=True)``: it writes the results and
            scores nothing.
        with_mask (bool): Whether the dataset's pipeline loads masks
            (``LoadAnnotations(with_mask=True)``): the segmentations are
            audited then (:func:`audit_masks`), and only then.
        poly2mask (bool): ``LoadAnnotations(poly2mask=...)`` (default
            True); False keeps polygons only (an RLE ignores its box).
    """
    ann_file: str
    source: str = ''
    img_prefix: Optional[str] = None
    classes: Optional[Tuple[str, ...]] = None
    explicit_classes: bool = False
    apply_orientation: bool = True
    evaluates: Optional[str] = None
    classwise: bool = False
    format_only: bool = False
    with_mask: bool = False
    poly2mask: bool = True


def errors(problems: Iterable[Problem]) -> List[Problem]:
    """The problems of severity ``'error'``."""
    return [p for p in problems if p.severity == ERROR]


# ---------------------------------------------------------------------------
# helpers


def _fmt_id(v) -> str:
    return str(v) if type(v) is int else repr(v)


def _hashable_id(v) -> bool:
    return type(v) in (int, str)


def _image_entry(img: dict, index: int) -> str:
    if not isinstance(img, dict) or not _hashable_id(img.get('id')):
        return f'images[{index}]'
    name = img.get('file_name')
    name = f' ("{name}")' if isinstance(name, str) else ''
    return f'image {_fmt_id(img["id"])}{name}'


def _ann_entry(ann: dict, index: int) -> str:
    if not isinstance(ann, dict) or not _hashable_id(ann.get('id')):
        return f'annotations[{index}]'
    img = ann.get('image_id')
    img = f' (image {_fmt_id(img)})' if _hashable_id(img) else ''
    return f'annotation {_fmt_id(ann["id"])}{img}'


def join_root(root: Optional[str], path: str) -> str:
    """``path`` joined to ``root`` as mmengine's ``BaseDataset`` does
    (absolute paths and URLs are kept)."""
    if not path or osp.isabs(path) or not root or '://' in path:
        return path
    return osp.join(root, path)


# ---------------------------------------------------------------------------
# one file


def read_coco(
    path: str,
    lists: Sequence[str] = COCO_LISTS,
    entry: str = 'ann_file'
) -> Tuple[Optional[dict], List[Problem]]:
    """Parse a COCO json file.

    Args:
        path (str): The file.
        lists (Sequence[str]): The top-level lists it must hold (default:
            ``images``, ``annotations`` and ``categories``, as
            ``CocoDataset`` needs them; a tool that only reads boxes asks
            for ``('images', 'annotations')``).
        entry (str): The config entry that names the file, for the
            message of a directory (``'val_evaluator.ann_file'``).

    Returns:
        tuple: ``(coco dict or None, problems)``; None with one
        ``bad_file`` problem if it is not readable JSON holding a dict
        with the ``lists``.
    """

    def bad(msg):
        return None, [Problem(path, 'file', msg, kind=BAD_FILE)]

    if osp.isdir(path):
        inside = sorted(n for n in _listdir(path) if n.endswith('.json'))
        example = f' (it holds {_first(inside)})' if inside else ''
        return bad(f'is a directory, not a COCO json file: set {entry} to '
                   f'the annotation .json file{example}')
    try:
        with open(path, encoding='utf-8') as f:
            coco = json.load(f)
    except FileNotFoundError:
        return bad('does not exist')
    except json.JSONDecodeError as e:
        return bad(f'is not valid JSON: {e.msg} at line {e.lineno} column '
                   f'{e.colno}')
    except UnicodeDecodeError:
        return bad('is not UTF-8 text')
    except OSError as e:
        return bad(f'cannot be read: {e}')
    if not isinstance(coco, dict):
        return bad('is not a COCO dict (a JSON object with the lists '
                   f'{", ".join(map(json.dumps, lists))}) but a '
                   f'{type(coco).__name__}')
    for key in lists:
        if not isinstance(coco.get(key), list):
            return bad(f'lacks the COCO list "{key}"')
    return coco, []


def _listdir(path: str) -> List[str]:
    import os
    try:
        return os.listdir(path)
    except OSError:
        return []


def audit_coco(coco: dict,
               path: str,
               source: str = '',
               image_fields: Sequence[str] = IMAGE_FIELDS,
               ann_fields: Sequence[str] = ANN_FIELDS,
               categories: bool = True) -> List[Problem]:
    """Structural problems of one parsed COCO dict.

    Args:
        coco (dict): With the lists ``images``, ``annotations`` and, if
            ``categories``, ``categories`` (see :func:`read_coco`).
        path (str): The file's path, for the messages.
        source (str): The config entry, for :attr:`Problem.source`.
        image_fields (Sequence[str]): Fields every image must have
            (default: what ``CocoDataset`` reads). Fields present are
            checked whether required or not; ``id`` is always needed.
        ann_fields (Sequence[str]): Fields every annotation must have
            (default: what ``CocoDataset`` reads). A tool that only reads
            boxes asks for ``('image_id', 'bbox')``.
        categories (bool): Check ``categories`` and every annotation's
            ``category_id`` against it. Off for tools that ignore classes.

    Returns:
        list[Problem]: Errors (a broken entry, a duplicate id, a dangling
        reference, a bad bbox, no images) and warnings (boxes
        ``CocoDataset`` drops silently, duplicate file names).
    """
    out: List[Problem] = []

    def add(entry, msg, kind, severity=ERROR):
        out.append(Problem(path, entry, msg, severity, kind, source))

    cat_ids = _audit_categories(coco['categories'], add) \
        if categories else None
    sizes, first = _audit_images(coco['images'], image_fields, add)
    anns = coco['annotations']
    boxes, no_image, no_cat = _audit_annotations(anns, sizes, first, cat_ids,
                                                 ann_fields, add)
    _audit_ignore_fields(anns, add)
    if boxes.rows:
        out.extend(_box_problems(anns, boxes, path, source))
    for iid, entries in no_image.items():
        add(
            f'image {iid}', f'is not in "images" but {len(entries)} '
            f'annotation(s) refer to it ({_first(entries)}): '
            'MMDetection drops them silently; add the image or remove '
            'the annotations', MISSING_IMAGE)
    for cid, entries in no_cat.items():
        add(
            f'category {cid}', f'is not in "categories" but '
            f'{len(entries)} annotation(s) use it ({_first(entries)}): '
            'MMDetection drops them silently; add the category or fix '
            'their "category_id"', MISSING_CATEGORY)
    return out


# How audit_coco's parts report a problem: add(entry, message, kind,
# severity=ERROR).
_Add = Callable[..., None]


def _audit_categories(cats: list, add: _Add) -> Dict:
    """Check ``categories`` (ids and names given once); returns each valid
    category id's position in the list."""
    cat_ids: Dict = {}
    names: Dict[str, int] = {}
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or not _hashable_id(cat.get('id')) \
                or not isinstance(cat.get('name'), str):
            add(f'categories[{i}]', 'needs an "id" (number) and a "name" '
                '(string)', BAD_CATEGORY)
            continue
        cid, name = cat['id'], cat['name']
        entry = f'category {_fmt_id(cid)} ("{name}")'
        if cid in cat_ids:
            add(
                entry, f'the id is also used by categories[{cat_ids[cid]}]: '
                'give every category its own id', BAD_CATEGORY)
        else:
            cat_ids[cid] = i
        if name in names:
            add(
                entry, f'the name is also used by categories[{names[name]}]:'
                ' pycocotools returns both ids for it and every label after '
                'it shifts; merge the two categories', BAD_CATEGORY)
        else:
            names[name] = i
    return cat_ids


def _audit_images(images: list, image_fields: Sequence[str],
                  add: _Add) -> Tuple[Dict, Dict]:
    """Check ``images`` (fields, ids, sizes, file names); returns
    ``(sizes, first)``: image id -> ``(width, height)`` for the images of
    a valid size, image id -> index of its first entry."""
    if not images:
        add(
            'file', 'has no images ("images" is empty): the dataset would '
            'be empty; check that this is the right file', NO_IMAGES)
    sizes: Dict = {}
    first: Dict = {}
    by_name: Dict[str, int] = {}
    for i, img in enumerate(images):
        # fast path: a well-formed new image (most of them)
        try:
            iid, w, h, name = (img['id'], img['width'], img['height'],
                               img['file_name'])
            ok = (
                type(iid) is int and iid not in first and type(w) in _NUM
                and type(h) in _NUM and w > 0 and h > 0
                and math.isfinite(w + h) and type(name) is str and name
                and name not in by_name)
        except (KeyError, TypeError, IndexError):
            ok = False
        if ok:
            first[iid] = by_name[name] = i
            sizes[iid] = (w, h)
            continue
        entry = _image_entry(img, i)
        if not isinstance(img, dict):
            add(entry, f'is a {type(img).__name__}, not an object', BAD_IMAGE)
            continue
        missing = [f for f in image_fields if f not in img]
        if missing:
            add(entry, f'lacks {", ".join(map(json.dumps, missing))}',
                BAD_IMAGE)
        if 'id' not in img:
            continue
        iid = img['id']
        if not _hashable_id(iid):
            add(entry, f'has the id {iid!r}: ids must be numbers', BAD_IMAGE)
            continue
        if iid in first:
            j = first[iid]
            add(
                entry, f'the id is also used by images[{j}] '
                f'({_image_entry(images[j], j)}): pycocotools keeps only '
                'the last image of an id, so the other disappears and its '
                'boxes land on these pixels; give every image its own id',
                DUPLICATE_IMAGE_ID)
            continue
        first[iid] = i
        w, h = img.get('width'), img.get('height')
        if 'width' in img and 'height' in img:
            if not (is_number(w) and is_number(h) and w > 0 and h > 0):
                add(
                    entry, f'has the size {w!r}x{h!r} (width x height): '
                    'both must be positive numbers (pixels)', BAD_IMAGE)
            else:
                sizes[iid] = (w, h)
        name = img.get('file_name')
        if 'file_name' in img:
            if not isinstance(name, str) or not name:
                add(entry, f'has file_name={name!r}: it must be a '
                    'non-empty path', BAD_IMAGE)
            elif name in by_name:
                j = by_name[name]
                add(
                    entry, f'the file is also used by '
                    f'{_image_entry(images[j], j)}: the same pixels '
                    'appear twice with different annotations',
                    DUPLICATE_FILE_NAME, WARNING)
            else:
                by_name[name] = i
    return sizes, first


@dataclasses.dataclass
class _BoxRows:
    """The annotations with a numeric box and area, for the vectorised
    checks: their positions in ``annotations``, ``bbox`` (xywh, ORIGINAL
    pixels), ``area`` (w * h where the file has none) and their image's
    ``(width, height)`` (NaN when unknown)."""
    rows: List[int] = dataclasses.field(default_factory=list)
    boxes: List[list] = dataclasses.field(default_factory=list)
    areas: List = dataclasses.field(default_factory=list)
    img_wh: List[tuple] = dataclasses.field(default_factory=list)


def _audit_annotations(anns: list, sizes: Dict, first: Dict,
                       cat_ids: Optional[Dict], ann_fields: Sequence[str],
                       add: _Add) -> Tuple[_BoxRows, Dict, Dict]:
    """Check each annotation's fields, id, ``iscrowd``, ``area`` and
    ``bbox`` type (``cat_ids`` None: categories not checked). Returns the
    boxes for :func:`_box_problems` and the missing image / category ids
    -> the entries that refer to them."""
    ann_first: Dict = {}
    no_image: Dict = defaultdict(list)
    no_cat: Dict = defaultdict(list)
    found = _BoxRows()
    rows, boxes, areas, img_wh = (found.rows, found.boxes, found.areas,
                                  found.img_wh)
    bad_crowd: List[str] = []  # entries with an "iscrowd" not 0 / 1
    for i, ann in enumerate(anns):
        # fast path: a well-formed annotation (finiteness checked by
        # _box_problems, vectorised)
        try:
            aid, iid, cid, box, area = (ann['id'], ann['image_id'],
                                        ann['category_id'], ann['bbox'],
                                        ann['area'])
            ok = (
                type(aid) is int and aid not in ann_first and iid in sizes
                and (cat_ids is None or cid in cat_ids)
                and type(box) is list and len(box) == 4
                and type(box[0]) in _NUM and type(box[1]) in _NUM
                and type(box[2]) in _NUM and type(box[3]) in _NUM
                and type(area) in _NUM and ann.get('iscrowd', 0) in _CROWD)
        except (KeyError, TypeError, IndexError):
            ok = False
        if ok:
            ann_first[aid] = i
            rows.append(i)
            boxes.append(box)
            areas.append(area)
            img_wh.append(sizes[iid])
            continue
        entry = _ann_entry(ann, i)
        if not isinstance(ann, dict):
            add(entry, f'is a {type(ann).__name__}, not an object',
                BAD_ANNOTATION)
            continue
        missing = [f for f in ann_fields if f not in ann]
        if missing:
            add(entry, f'lacks {", ".join(map(json.dumps, missing))}',
                BAD_ANNOTATION)
        aid = ann.get('id')
        if 'id' in ann:
            if not _hashable_id(aid):
                add(entry, f'has the id {aid!r}: ids must be numbers',
                    BAD_ANNOTATION)
            elif aid in ann_first:
                j = ann_first[aid]
                add(
                    entry, f'the id is also used by annotations[{j}] '
                    f'({_ann_entry(anns[j], j)}): pycocotools keeps only '
                    'the last annotation of an id and returns it for '
                    'each of them, so a box is lost and another doubled; '
                    'give every annotation its own id', DUPLICATE_ANN_ID)
            else:
                ann_first[aid] = i
        iid = ann.get('image_id')
        if 'image_id' in ann and (not _hashable_id(iid) or iid not in first):
            no_image[_fmt_id(iid) if _hashable_id(iid) else repr(iid)] \
                .append(entry)
        cid = ann.get('category_id')
        if cat_ids is not None and 'category_id' in ann and (
                not _hashable_id(cid) or cid not in cat_ids):
            no_cat[_fmt_id(cid) if _hashable_id(cid) else repr(cid)] \
                .append(entry)
        crowd = ann.get('iscrowd', 0)
        if type(crowd) not in (int, float, bool) or crowd not in _CROWD:
            bad_crowd.append(f'{entry} iscrowd={json.dumps(crowd)[:20]}')
        area = ann.get('area')
        if 'area' in ann and type(area) not in _NUM:
            add(entry, f'has area={area!r}: it must be a number',
                BAD_ANNOTATION)
        box = ann.get('bbox')
        if 'bbox' in ann:
            if type(box) is not list or len(box) != 4 or \
                    not all(type(v) in _NUM for v in box):
                add(entry, _bad_bbox(box), BAD_BBOX)
            elif type(area) in _NUM or 'area' not in ann:
                # without an "area" (not required), w * h stands for it
                rows.append(i)
                boxes.append(box)
                areas.append(area if 'area' in ann else box[2] * box[3])
                img_wh.append(sizes.get(iid, _NO_SIZE)
                              if _hashable_id(iid) else _NO_SIZE)
    if bad_crowd:
        add(bad_crowd[0].split(' iscrowd=')[0],
            f'{len(bad_crowd)} annotation(s) have an "iscrowd" that is not '
            f'0 or 1 ({_first(bad_crowd)}): CocoDataset makes every true '
            'value (the string "0" too) a crowd box, ignored in training, '
            'and pycocotools\' COCOeval reads int(iscrowd) (a string is a '
            'crowd region there, null fails after the whole test); write 0 '
            '(an object) or 1 (a crowd region) as a number', BAD_ISCROWD)
    return found, no_image, no_cat


def _audit_ignore_fields(anns: list, add: _Add) -> None:
    """Warn about annotations whose ``ignore`` / ``ignore_flag`` /
    ``difficult`` the readers treat otherwise than a user expects."""
    flagged = [i for i, ann in enumerate(anns)
               if isinstance(ann, dict) and ann.get('ignore')]
    if flagged:
        entries = [_ann_entry(anns[i], i) for i in flagged]
        add(entries[0], f'{len(flagged)} annotation(s) have a true '
            f'"ignore" ({_first(entries)}): CocoDataset drops them (their '
            'pixels train as background, not as ignored regions) while '
            'COCOeval reads only "iscrowd" (without it, they are objects to '
            'detect); to ignore a region in both, set "iscrowd": 1 and '
            'remove "ignore"; to train on them, remove "ignore"',
            IGNORE_FLAG, WARNING)
    unread = []
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or ann.get('ignore') or \
                ann.get('iscrowd'):
            continue  # dropped, or a crowd region: ignored anyway
        field = next((f for f in _UNREAD_IGNORE_FIELDS if ann.get(f)), None)
        if field:
            unread.append(f'{_ann_entry(ann, i)} "{field}"')
    if unread:
        add(unread[0].rsplit(' "', 1)[0], f'{len(unread)} annotation(s) '
            'have a true "ignore_flag" or "difficult" '
            f'({_first(unread)}), which neither CocoDataset nor COCOeval '
            'reads: they train and are scored as objects (MMDetection '
            'keeps "ignore_flag" in its own data lists; a COCO file marks a '
            'region to ignore with "iscrowd"); to ignore them, set '
            '"iscrowd": 1; to train on them, remove the field',
            UNREAD_IGNORE_FIELD, WARNING)


def _box_problems(anns: list, found: _BoxRows, path: str,
                  source: str) -> List[Problem]:
    """The vectorised checks of the numeric boxes: NaN / inf (one problem
    per entry), then the boxes ``CocoDataset`` drops and corner boxes."""
    out: List[Problem] = []
    arr = np.asarray(found.boxes, float)
    area_arr = np.asarray(found.areas, float)
    finite = np.isfinite(arr).all(1) & np.isfinite(area_arr)
    for k in np.flatnonzero(~finite):
        row = found.rows[k]
        ann = anns[row]
        box_ok = bool(np.isfinite(arr[k]).all())
        out.append(Problem(
            path, _ann_entry(ann, row),
            f'has area={ann.get("area")!r}: it must be a finite number'
            if box_ok else _bad_bbox(ann['bbox']),
            ERROR, BAD_ANNOTATION if box_ok else BAD_BBOX, source))
    wh = np.asarray(found.img_wh, float)
    out.extend(
        _dropped_boxes(anns, found.rows, arr, area_arr, wh, path, source))
    out.extend(_corner_boxes(anns, found.rows, arr, wh, path, source))
    return out


def _bad_bbox(box) -> str:
    return (f'has bbox={json.dumps(box)[:80]}: it must be four finite '
            'numbers [x, y, width, height] in pixels (not strings, null or '
            'NaN)')


def _first(entries: Sequence[str],
           total: Optional[int] = None,
           n: int = 3) -> str:
    """``'a, b, c, ... 4 more'``: the first ``n`` of ``total`` entries."""
    total = len(entries) if total is None else total
    more = f', ... {total - n} more' if total > n else ''
    return ', '.join(entries[:n]) + more


def cocodataset_drops(boxes: np.ndarray, area: np.ndarray,
                      wh: np.ndarray) -> Tuple[np.ndarray, ...]:
    """The one rule of which boxes MMDetection's ``CocoDataset`` drops
    (``parse_data_info``, mmdet 3.3), apart from ``"ignore"`` and the class
    filter: ``(tiny, no_area, outside)``, ``(N,)`` bool masks, each box in
    at most one: a width or height under 1 pixel; else ``"area"`` <= 0;
    else no overlap with its image.

    Args:
        boxes (np.ndarray): ``(N, 4)`` ``[x, y, w, h]``, ORIGINAL pixels;
            rows with a non-finite value are in no mask.
        area (np.ndarray): ``(N,)`` the annotations' ``"area"`` (NaN: not
            judged).
        wh (np.ndarray): ``(N, 2)`` width and height of each box's image
            (NaN if unknown: not judged).
    """
    x, y, w, h = boxes.T
    finite = np.isfinite(boxes).all(1)
    tiny = finite & ((w < 1) | (h < 1))
    no_area = finite & ~tiny & (area <= 0)
    inter_w = np.minimum(x + w, wh[:, 0]) - np.maximum(x, 0)
    inter_h = np.minimum(y + h, wh[:, 1]) - np.maximum(y, 0)
    outside = finite & ~tiny & ~no_area & ((inter_w <= 0) | (inter_h <= 0))
    return tiny, no_area, outside


def _dropped_boxes(anns, rows, boxes, area, wh, path, source) -> List[Problem]:
    """Warnings for the boxes ``CocoDataset.parse_data_info`` drops
    silently: ``w < 1``, ``h < 1``, ``area <= 0``, or no overlap with the
    image. ``boxes`` is ``(N, 4)`` ``[x, y, w, h]`` ORIGINAL pixels of the
    annotations ``anns[rows]``, ``area`` ``(N, )``, ``wh`` ``(N, 2)`` the
    size of their image (NaN if unknown). Non-finite rows are skipped
    (they are errors already)."""
    tiny, no_area, outside = (
        mask & np.isfinite(area) for mask in cocodataset_drops(
            boxes, area, wh))
    out = []
    for mask, what, fix in (
            (tiny, 'a width or height under 1 pixel', ''),
            (no_area, '"area" <= 0 although their bbox is not empty', (
                ': it reads "area", not the bbox, while COCOeval still '
                'scores them; write each box\'s (or mask\'s) area into '
                '"area"')),
            (outside, 'no overlap with their image', '')):
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        entries = [
            _ann_entry(anns[rows[k]], rows[k]) +
            f' bbox {anns[rows[k]]["bbox"]}' +
            (f' area {anns[rows[k]].get("area")!r}' if mask is no_area
             else '') for k in idx[:3]
        ]
        # most of a file's boxes with "area" <= 0: the converter never
        # filled "area", and training would see a fraction of the data
        systematic = mask is no_area and len(idx) * 2 >= len(boxes) and \
            len(idx) >= UNFILLED_AREA_MIN_BOXES
        share = (f' ({len(idx)} of the file\'s {len(boxes)} boxes: the '
                 'file\'s "area" values look unfilled)' if systematic
                 else '')
        out.append(
            Problem(
                path, _ann_entry(anns[rows[idx[0]]], rows[idx[0]]),
                f'{len(idx)} annotation(s) have {what}; CocoDataset drops '
                f'them silently ({_first(entries, len(idx))}){share}{fix}',
                ERROR if systematic else WARNING, DROPPED_BOXES, source))
    return out


# "area" <= 0 under real boxes is an error (the field never filled) from
# this many such boxes on, when they are at least half of the file's.
UNFILLED_AREA_MIN_BOXES = 10


# Evidence that a file's bboxes are [x1, y1, x2, y2]: at least this many
# boxes of known image size, this share of them past their image's right or
# bottom edge as [x, y, w, h] (a box with its centre in the right or bottom
# half does, read so), and this share inside it as [x1, y1, x2, y2].
CORNER_MIN_BOXES = 10
CORNER_MIN_OVERFLOW = 0.25
CORNER_MIN_FIT = 0.99


def _corner_boxes(anns, rows, boxes, wh, path, source) -> List[Problem]:
    """An error if the boxes are corners ``[x1, y1, x2, y2]`` written as
    COCO's ``[x, y, width, height]`` (a common conversion mistake): read as
    COCO, many run past their image (CocoDataset keeps them; the
    pipelines clip them to the image, so training would silently learn
    boxes reaching the image's border), while read as corners every one
    lies inside. Arguments as :func:`_dropped_boxes`; boxes of unknown
    image size are left out."""
    known = np.isfinite(boxes).all(1) & np.isfinite(wh).all(1)
    if np.count_nonzero(known) < CORNER_MIN_BOXES:
        return []
    b, (img_w, img_h) = boxes[known], wh[known].T
    x, y, w, h = b.T
    over = (x + w > img_w + 1) | (y + h > img_h + 1)
    fits = (w > x) & (h > y) & (x >= -1) & (y >= -1) & \
        (w <= img_w + 1) & (h <= img_h + 1)
    n = len(b)
    if over.mean() < CORNER_MIN_OVERFLOW or fits.mean() < CORNER_MIN_FIT:
        return []
    k = int(np.flatnonzero(known)[np.flatnonzero(over)[0]])
    ann = anns[rows[k]]
    example = (f'{_ann_entry(ann, rows[k])} has bbox {ann["bbox"]} in a '
               f'{wh[k, 0]:g} x {wh[k, 1]:g} image')
    return [
        Problem(
            path, 'annotations',
            f'{int(over.sum())} of {n} boxes ({over.mean():.0%}) run past '
            'their image read as COCO\'s [x, y, width, height] (e.g. '
            f'{example}), but {fits.mean():.0%} lie inside it read as '
            'corners [x1, y1, x2, y2]: the file looks written in corners. '
            'Convert it (width = x2 - x1, height = y2 - y1), or set '
            'audit_datasets = False to use it as it is', ERROR, BBOX_FORMAT,
            source)
    ]


# ---------------------------------------------------------------------------
# classes across files


def label_names(coco: dict, classes: Optional[Sequence[str]]) -> List[str]:
    """The class name of each label as MMDetection assigns them for this
    file: the file's category names, in the file's order, restricted to
    ``classes`` (all of them if None).

    Example: categories ``[bird, cat, dog]``, classes ``('cat', 'dog',
    'bird')`` -> ``['bird', 'cat', 'dog']`` (label 0 is bird).
    """
    names = [
        c['name'] for c in coco['categories']
        if isinstance(c, dict) and isinstance(c.get('name'), str)
    ]
    if classes is None:
        return names
    keep = set(classes)
    return [n for n in names if n in keep]


def audit_classes(files: Sequence[Tuple[AnnSource, dict]]) -> List[Problem]:
    """Check that every file gives each class the same label.

    Args:
        files: ``(source, parsed coco)`` pairs, the reference (the train
            file, usually) first.

    Returns:
        list[Problem]: Errors for a class missing from a file
        (``class_missing``), for label orders that differ from the
        reference file or from ``metainfo.classes`` (``class_order``);
        warnings for the same name with another id (``category_id``) and
        for categories left out of the classes (``ignored_categories``).
    """
    out: List[Problem] = []
    orders = []
    for src, coco in files:
        names = label_names(coco, src.classes)
        orders.append(names)
        file_names = set(label_names(coco, None))
        if src.classes is not None:
            missing = [c for c in src.classes if c not in file_names]
            if missing and src.explicit_classes:
                out.append(
                    Problem(
                        src.ann_file, 'categories',
                        f'has no category named {missing} of the '
                        f'{len(src.classes)} classes of {src.source} '
                        '(metainfo.classes): CocoDataset and CocoMetric would '
                        'shift the labels of the classes after it; fix the '
                        'spelling in metainfo.classes, or add the category to '
                        '"categories" (it may have no annotations)', ERROR,
                        CLASS_MISSING, src.source))
            elif len(missing) == len(src.classes):
                out.append(
                    Problem(
                        src.ann_file, 'categories',
                        f'has none of the {len(src.classes)} default classes '
                        f'of {src.source} ({list(src.classes[:3])} ...; '
                        'metainfo.classes is not set): CocoDataset would drop '
                        'every annotation; set metainfo=dict(classes='
                        f'{tuple(label_names(coco, None))}) in that dataset',
                        ERROR, CLASS_MISSING, src.source))
            ignored = sorted(file_names - set(src.classes))
            if ignored and len(missing) < len(src.classes):
                out.append(
                    Problem(
                        src.ann_file, 'categories',
                        f'the categories {ignored[:10]}'
                        f'{" ..." if len(ignored) > 10 else ""} are not '
                        f'among the classes of {src.source}: CocoDataset '
                        'drops their annotations (fine if intended)', WARNING,
                        IGNORED_CATEGORIES, src.source))
    # label order: every file against the reference (the first). Labels
    # agree on the shared classes iff one order is a prefix of the other.
    ref_src = files[0][0] if files else None
    for (src, coco), names in zip(files[1:], orders[1:]):
        ref = orders[0]
        if names[:len(ref)] == ref[:len(names)]:
            continue
        fix = (f'reorder "categories" in {src.ann_file} to {ref} (ids and '
               'annotations may stay as they are)' if set(names) == set(ref)
               else 'give both files the same categories in the same order')
        out.append(
            Problem(
                src.ann_file, 'categories',
                f'numbers the classes as {names} (label 0 first) but '
                f'{ref_src.ann_file} ({ref_src.source}) numbers them as '
                f'{ref}: CocoDataset and CocoMetric number the classes by '
                'each file\'s own "categories" order, so the same class gets '
                'another label in each file and training or evaluation is '
                f'wrong; {fix}',
                ERROR, CLASS_ORDER, src.source))
    # label order against metainfo.classes (class names of the labels):
    # label i is named classes[i]
    done = set()
    for (src, coco), names in zip(files, orders):
        if src.classes is None or src.ann_file in done or not names:
            continue
        done.add(src.ann_file)
        if src.explicit_classes:
            keep = set(names)
            if names == [c for c in src.classes if c in keep]:
                continue
            what = f'{src.source} metainfo.classes is {list(src.classes)}'
        elif names == list(src.classes[:len(names)]):
            continue
        else:
            what = (f'{src.source} sets no metainfo.classes, so its labels '
                    f'are named {list(src.classes[:len(names)])} (the '
                    'default classes)')
        out.append(
            Problem(
                src.ann_file, 'categories',
                f'lists the classes in the order {names} but {what}: '
                'labels follow the file\'s order, so class names (per-class '
                'AP, visualisation, the checkpoint\'s class list) would be '
                'attached to the wrong labels; set metainfo.classes to '
                f'{tuple(names)}', ERROR if src.explicit_classes else WARNING,
                CLASS_ORDER, src.source))
    # same name, other id
    ref_ids = {}
    for src, coco in files:
        for cat in coco['categories']:
            if isinstance(cat, dict) and isinstance(cat.get('name'), str):
                ref_ids.setdefault(cat['name'], (cat.get('id'), src))
    reported = set()
    for src, coco in files:
        for cat in coco['categories']:
            if not isinstance(cat, dict) or cat.get('name') not in ref_ids:
                continue
            cid, other = ref_ids[cat['name']]
            key = (src.ann_file, cat['name'])
            if cat.get('id') != cid and key not in reported:
                reported.add(key)
                out.append(
                    Problem(
                        src.ann_file, f'category {_fmt_id(cat.get("id"))} '
                        f'("{cat["name"]}")', f'has id {cid} in '
                        f'{other.ann_file}: labels follow the order, not the '
                        'ids, so training and evaluation agree, but ids in '
                        'result files follow each file', WARNING, CATEGORY_ID,
                        src.source))
    return _unique(out)


def audit_evaluator_images(
        files: Sequence[Tuple[AnnSource, dict]]) -> List[Problem]:
    """An evaluator's ``ann_file`` that is not its dataset's file must
    hold the dataset's images under the same ids and file names.

    ``CocoMetric`` matches predictions to ground truth by image id:
    an id it lacks fails inside pycocotools ("Results do not correspond to
    current coco set"), and an id of another image scores the predictions
    against the wrong boxes. One problem per evaluator and dataset file.
    """
    out = []
    for ev, ev_coco in files:
        if not ev.evaluates:
            continue
        ev_names = {
            img['id']: img.get('file_name')
            for img in ev_coco['images']
            if isinstance(img, dict) and _hashable_id(img.get('id'))
        }
        for src, coco in files:
            if src.evaluates or src.ann_file == ev.ann_file or \
                    not src.source.startswith(ev.evaluates + '.'):
                continue
            missing, renamed = [], []
            for i, img in enumerate(coco['images']):
                if not isinstance(img, dict) or \
                        not _hashable_id(img.get('id')):
                    continue
                if img['id'] not in ev_names:
                    missing.append(_image_entry(img, i))
                elif ev_names[img['id']] != img.get('file_name'):
                    renamed.append(
                        f'{_image_entry(img, i)} is "'
                        f'{ev_names[img["id"]]}" there')
            for bad, what in ((missing, 'lacks'),
                              (renamed, 'has other files under')):
                if bad:
                    out.append(
                        Problem(
                            ev.ann_file, 'images',
                            f'{what} {len(bad)} image id(s) of '
                            f'{src.ann_file} ({src.source}), which '
                            f'{ev.source} scores ({_first(bad)}): CocoMetric '
                            'matches predictions to ground truth by image '
                            'id; give the evaluator the dataset\'s '
                            'ann_file', ERROR, EVALUATOR_IMAGES, ev.source))
    return out


def audit_evaluated_files(
        files: Sequence[Tuple[AnnSource, dict]]) -> List[Problem]:
    """What pycocotools' ``COCOeval`` gets wrong in an evaluator's
    ``ann_file`` (``CocoMetric(ann_file=...)``; without one, mmdet writes
    the ground truth anew, with ids it chooses):

    - no annotation to score (a warning): without a non-crowd box of the
      classes, ``COCOeval`` reports AP -1 for every metric; a split
      without labels (test-dev) wants ``format_only=True``;
    - an annotation of id 0 (a warning: one box): ``COCOeval`` records
      the matched ground truth's id and then tests it for truth, so a
      detection matched to annotation 0 counts as a false positive (AP a
      little too low); not for a crowd box or a category outside the
      classes, which are never true positives anyway;
    - an annotation id that is not an integer (an error: ``COCOeval``
      stores matched ids in a float array, and ``'x'`` fails there once a
      detection matches it) and an annotation without ``iscrowd`` (an
      error: ``computeIoU`` reads ``int(gt['iscrowd'])``), both after the
      whole test; categories outside the classes are not scored and not
      checked;
    - ``classwise=True`` with the classes' category ids not ascending in
      the file's order: ``COCOeval`` sorts the ids, mmdet's per-class
      table follows the file's order, so each class's AP is printed
      (and logged as ``coco/<class>_precision``) under another name;
      or with a category id that is a string: the table looks it up
      with pycocotools' ``loadCats``, which reads a string as a list of
      ids (its characters) and fails after the whole test.
    """
    out = []
    for ev, coco in files:
        if not ev.evaluates:
            continue
        keep = None if ev.classes is None else set(ev.classes)
        scored = None if keep is None else {
            c['id'] for c in coco['categories'] if isinstance(c, dict)
            and c.get('name') in keep}
        zero, not_int, no_crowd = [], [], []
        objects = 0  # non-crowd boxes of the classes: COCOeval's truth
        for i, ann in enumerate(coco['annotations']):
            if not isinstance(ann, dict) or (
                    scored is not None
                    and ann.get('category_id') not in scored):
                continue
            objects += not ann.get('iscrowd')
            aid = ann.get('id')
            if type(aid) is not int:
                not_int.append(i)
            elif aid == 0 and not ann.get('iscrowd'):
                zero.append(_ann_entry(ann, i))
            if 'iscrowd' not in ann:
                no_crowd.append(i)
        anns = coco['annotations']
        if not objects and not ev.format_only:
            what = 'annotation' if scored is None else \
                'annotation of the classes'
            out.append(
                Problem(
                    ev.ann_file, 'annotations',
                    f'has no {what} (crowd regions aside) that '
                    f'{ev.source} could score: pycocotools\' COCOeval '
                    'reports AP -1 for every metric without ground truth; '
                    'for a split without labels (such as test-dev) set '
                    f'format_only=True and outfile_prefix in {ev.source} '
                    'to write the results for an evaluation server, else '
                    'give it the annotated file', WARNING, NO_GROUND_TRUTH,
                    ev.source))
        if not_int:
            shown = [f'annotations[{i}] (id {anns[i].get("id")!r})'
                     for i in not_int[:3]]
            out.append(
                Problem(
                    ev.ann_file, shown[0].split(' (id')[0],
                    f'{len(not_int)} annotation(s) have an id that is not '
                    f'an integer ({_first(shown, len(not_int))}), in a file '
                    f'that {ev.source} scores: pycocotools\' COCOeval '
                    'stores the id of each matched annotation in a number '
                    'array, and a non-numeric one fails there (after the '
                    'whole test) once a detection matches it; number the '
                    'annotations with integers from 1', ERROR, ANN_ID_TYPE,
                    ev.source))
        if no_crowd:
            shown = [_ann_entry(anns[i], i) for i in no_crowd[:3]]
            out.append(
                Problem(
                    ev.ann_file, shown[0],
                    f'{len(no_crowd)} annotation(s) have no "iscrowd" '
                    f'({_first(shown, len(no_crowd))}), in a file that '
                    f'{ev.source} scores: pycocotools\' COCOeval reads '
                    'int(iscrowd) of every ground-truth box and fails with '
                    'a KeyError after the whole test; write "iscrowd": 0 '
                    '(1 for a crowd region) into each annotation', ERROR,
                    BAD_ISCROWD, ev.source))
        if zero:
            out.append(
                Problem(
                    ev.ann_file, zero[0], f'has the id 0, in a file that '
                    f'{ev.source} scores: pycocotools\' COCOeval never '
                    'counts a detection matched to annotation 0 as a true '
                    'positive (it tests the matched id for truth), so that '
                    'box counts as missed and AP is a little low; number '
                    'the annotations from 1', WARNING, ZERO_ANN_ID,
                    ev.source))
        if not ev.classwise:
            continue
        named = [c for c in coco['categories']
                 if isinstance(c, dict) and isinstance(c.get('name'), str)
                 and (keep is None or c['name'] in keep)]
        text = [c for c in named if isinstance(c.get('id'), str)]
        if text:
            shown = ', '.join(f'{c["name"]} ({c["id"]!r})'
                              for c in text[:3])
            out.append(
                Problem(
                    ev.ann_file, 'categories',
                    f'{len(text)} class(es) have a category id that is a '
                    f'string ({shown}{", ..." if len(text) > 3 else ""}), '
                    f'and {ev.source} sets classwise=True: mmdet\'s '
                    'per-class table looks each id up with pycocotools\' '
                    'loadCats, which takes a string for a list of ids (its '
                    'characters) and fails with a KeyError after the whole '
                    'test (COCOeval also sorts such ids as text); give the '
                    'categories integer ids (their annotations\' '
                    '"category_id" with them), or set classwise=False',
                    ERROR, CLASSWISE_ID_TYPE, ev.source))
            continue
        cats = [(c['id'], c['name']) for c in named
                if type(c.get('id')) is int]
        ids = [cid for cid, _ in cats]
        if ids != sorted(ids):
            shown = ', '.join(f'{name} ({cid})' for cid, name in cats[:8])
            out.append(
                Problem(
                    ev.ann_file, 'categories',
                    f'lists the classes with ids in the order [{shown}'
                    f'{", ..." if len(cats) > 8 else ""}], not ascending, '
                    f'and {ev.source} sets classwise=True: COCOeval sorts '
                    'the ids while mmdet\'s per-class table follows the '
                    'file\'s order, so each class\'s AP would be shown '
                    'under another class\'s name (the overall AP is '
                    'right); give the categories ids that ascend in the '
                    'file\'s order (their annotations\' "category_id" '
                    'with them), or set classwise=False', ERROR,
                    CLASSWISE_ORDER, ev.source))
    return out


def audit_masks(coco: dict,
                path: str,
                source: str = '',
                poly2mask: bool = True) -> List[Problem]:
    """The segmentations of a file whose dataset loads masks
    (``LoadAnnotations(with_mask=True)``), as mmdet's loader reads them.

    One problem per file and kind of mistake, naming the first
    annotations: errors for a missing or empty ``segmentation``
    (``CocoDataset`` then stores no mask and ``LoadAnnotations`` fails
    with ``KeyError: 'mask'`` mid-training), a value that is neither a
    list of polygons nor an RLE dict, polygons of which none has an even
    number of at least 6 coordinates (mmdet silently turns the box into
    an ignored one), an RLE without ``counts`` / ``size``, or of another
    ``size`` than its image (a ``ValueError`` deep inside mmdet); a
    warning for polygons some of which mmdet drops. With ``poly2mask``
    False (``LoadAnnotations(poly2mask=False)``) every RLE is an error:
    mmdet then keeps polygons only and ignores the box. Crowd boxes
    (``iscrowd``: ignored regions either way; COCO writes them as RLEs)
    are not checked for these two, and annotations with a true
    ``"ignore"`` (dropped by ``CocoDataset``) not at all.
    Polygon coordinates are not read one by one (cost: one pass over the
    annotations and their polygon lists).
    """
    hw = {}
    for img in coco['images']:
        if isinstance(img, dict) and _hashable_id(img.get('id')):
            hw[img['id']] = [img.get('height'), img.get('width')]
    found: Dict[str, List[str]] = defaultdict(list)
    anns = coco['annotations']
    for i in _unusual_segmentations(anns):
        ann = anns[i]
        seg = ann.get('segmentation')
        if ann.get('ignore'):
            continue
        entry = _ann_entry(ann, i)
        if not seg:
            found['empty'].append(f'{entry} segmentation='
                                  f'{json.dumps(seg)}' if 'segmentation'
                                  in ann else entry)
        elif type(seg) is list:
            if not all(type(p) is list for p in seg):
                found['flat'].append(entry)
                continue
            good = sum(len(p) >= 6 and not len(p) % 2 for p in seg)
            if not good and not ann.get('iscrowd'):  # crowd: ignored anyway
                found['polygons'].append(
                    f'{entry} segmentation={json.dumps(seg)[:40]}')
            elif good < len(seg):
                found['some'].append(entry)
        elif type(seg) is dict:
            size = seg.get('size')
            if not poly2mask:
                if not ann.get('iscrowd'):  # COCO's crowd boxes are RLEs,
                    found['rle_poly'].append(entry)  # ignored anyway
            elif not isinstance(seg.get('counts'), (list, str)) or \
                    type(size) is not list or len(size) != 2:
                found['rle'].append(entry)
            elif hw.get(ann.get('image_id') if _hashable_id(
                    ann.get('image_id')) else None, size) != size:
                found['rle_size'].append(
                    f'{entry} size {size} in a '
                    f'{hw[ann["image_id"]][0]!r} x '
                    f'{hw[ann["image_id"]][1]!r} image')
        else:
            found['type'].append(f'{entry} segmentation='
                                 f'{json.dumps(seg)[:30]}')
    texts = {
        'empty': ('no "segmentation" (missing, null or empty)', (
            'CocoDataset stores no mask for them and LoadAnnotations('
            'with_mask=True) fails with KeyError: \'mask\' when their '
            'image is loaded; give each a polygon or RLE, or remove them')),
        'flat': ('a "segmentation" list that is not a list of polygons', (
            'mmdet fails on it (TypeError); write polygons as '
            '[[x1, y1, x2, y2, ...], ...]')),
        'polygons': ('no polygon of at least 3 points (an even number of '
                     'at least 6 coordinates)', (
                         'mmdet drops such polygons and, with none left, '
                         'silently turns the object into an ignored box; '
                         'fix the polygons or remove the annotations')),
        'rle': ('an RLE "segmentation" without "counts" (a list or '
                'string) and "size" [height, width]', (
                    'mmdet silently turns the object into an ignored box; '
                    'write a full RLE')),
        'rle_poly': ('an RLE "segmentation"', (
            'with poly2mask=False, mmdet keeps polygons only and silently '
            'turns the object into an ignored box; set poly2mask=True in '
            'LoadAnnotations (RLE to bitmaps) or write polygons')),
        'rle_size': ('an RLE "segmentation" whose "size" is not their '
                     'image\'s [height, width]', (
                         'mmdet fails on it when the image is loaded '
                         '(ValueError); encode the masks at the image\'s '
                         'size')),
        'type': ('a "segmentation" that is neither a list of polygons nor '
                 'an RLE dict', ('mmdet cannot read it; write polygons or '
                                 'RLE')),
        'some': ('polygons with fewer than 3 points (or an odd number of '
                 'coordinates) beside good ones', (
                     'mmdet drops those polygons silently, so the masks '
                     'miss parts; fix or remove them')),
    }
    out = []
    for key, (what, why) in texts.items():
        entries = found.get(key)
        if not entries:
            continue
        out.append(
            Problem(
                path, entries[0].split(' segmentation=')[0].split(
                    ' size ')[0],
                f'{len(entries)} annotation(s) have {what} '
                f'({_first(entries)}), and {source or "the dataset"} loads '
                f'masks (LoadAnnotations(with_mask=True)): {why}',
                WARNING if key == 'some' else ERROR,
                SEGMENTATION_POLYGONS if key == 'some' else BAD_SEGMENTATION,
                source))
    return out


def _one_polygon(seg) -> bool:
    return type(seg) is list and len(seg) == 1 and type(seg[0]) is list \
        and len(seg[0]) >= 6 and not len(seg[0]) % 2


def _unusual_segmentations(anns: list) -> List[int]:
    """Indices of the annotations (dicts) whose segmentation is not one
    good polygon (most of COCO's are): the ones :func:`audit_masks` looks
    at."""
    try:
        return [i for i, ann in enumerate(anns)
                if not _one_polygon(ann.get('segmentation'))]
    except AttributeError:  # not a dict: audit_coco reports it
        return [i for i, ann in enumerate(anns) if isinstance(ann, dict)
                and not _one_polygon(ann.get('segmentation'))]


def _unique(problems: List[Problem]) -> List[Problem]:
    """One problem per file, entry and kind (a file used by a dataset and
    its evaluator is reported once)."""
    seen, out = set(), []
    for p in problems:
        key = (p.file, p.entry, p.kind)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# ---------------------------------------------------------------------------
# images


def image_size(
        path: str,
        apply_orientation: bool = True,
        full_decode: bool = False) -> Tuple[Optional[Tuple[int, int]], str]:
    """Size of an image file as mmcv's ``LoadImageFromFile`` will load it.

    Reads the header only (PIL), unless ``full_decode``. EXIF orientations
    5-8 swap width and height when ``apply_orientation`` (mmcv's
    ``color_type='color'``, the default, rotates the pixels).

    Returns:
        tuple: ``((width, height), '')`` or ``(None, reason)``.
    """
    size, reason, _ = _image_info(path, apply_orientation, full_decode)
    return size, reason


def _image_info(path: str, apply_orientation: bool,
                full_decode: bool) -> Tuple[Optional[Tuple[int, int]], str,
                                            int]:
    """:func:`image_size` plus the EXIF orientation the loader applies
    (1: none, also when ``apply_orientation`` is False or the file has no
    readable EXIF)."""
    from PIL import Image
    # huge images (aerial, 20000 x 15000) are legitimate here: no PIL
    # "decompression bomb" error; restored below
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            w, h = im.size
            fmt = im.format
            orientation = 1
            if apply_orientation:
                try:
                    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                except Exception:  # a broken EXIF block: mmcv ignores it
                    orientation = 1
            if full_decode:
                im.load()
    except FileNotFoundError:
        return None, 'does not exist', 1
    except Exception as e:  # PIL raises many types for broken files
        return None, f'cannot be read ({type(e).__name__}: {e})', 1
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if fmt in _CV2_UNREADABLE:
        return None, (f'is a {fmt}, which cv2 (mmcv\'s default image '
                      'backend) cannot decode; convert it to PNG or '
                      'JPEG'), 1
    if orientation in _TRANSPOSING:
        w, h = h, w
    return (w, h), '', orientation


def _check_images(jobs: List[tuple]) -> List[tuple]:
    """Worker: ``(key, path, apply_orientation, full_decode)`` ->
    ``(key, size or None, reason, EXIF orientation applied)``."""
    return [(key, *_image_info(path, orient, full))
            for key, path, orient, full in jobs]


def audit_images(coco: dict,
                 src: AnnSource,
                 full_decode: bool = False,
                 workers: int = 0,
                 progress: bool = False) -> List[Problem]:
    """Compare each image file with its annotated ``width`` / ``height``.

    Args:
        coco (dict): The parsed file (images with a valid id, file name and
            size are checked; the others already have a problem).
        src (AnnSource): Its ``img_prefix`` and ``apply_orientation``.
        full_decode (bool): Decode every image (finds truncated files),
            not just the header.
        workers (int): Processes for the reads; 0 reads in this process.
        progress (bool): Show a progress bar.

    Returns:
        list[Problem]: ``image_file`` errors (missing, unreadable,
        truncated) and ``image_size`` errors (file size differs from the
        annotated one: boxes would be clipped to the wrong size and
        ``max_side`` factors computed from it; an image smaller than
        annotated crashes a crop or resize later), and
        ``exif_orientation`` warnings (the loader rotates or flips the
        pixels by an EXIF orientation other than 1 without changing the
        size: 2-4, or 5-8 on a square image; the boxes are right only if
        they were drawn on the rotated image).
    """
    prefix = src.img_prefix or ''
    jobs, seen = [], set()
    for i, img in enumerate(coco['images']):
        if not isinstance(img, dict) or not _hashable_id(img.get('id')):
            continue
        name, w, h = img.get('file_name'), img.get('width'), img.get('height')
        if not isinstance(name, str) or not name or img['id'] in seen \
                or not (is_number(w) and is_number(h)):
            continue
        seen.add(img['id'])
        path = osp.join(prefix, name)
        if '://' in path:
            continue
        jobs.append((i, path, src.apply_orientation, full_decode))
    results = _run_jobs(jobs, workers, progress)
    out = []
    for i, size, reason, orientation in results:
        img = coco['images'][i]
        entry = _image_entry(img, i)
        path = osp.join(prefix, img['file_name'])
        if size is None:
            out.append(
                Problem(src.ann_file, entry, f'the image file "{path}"'
                        f' {reason}', ERROR, IMAGE_FILE, src.source))
        elif size != (img['width'], img['height']):
            rotated = ' (after its EXIF rotation, as mmcv loads it)' \
                if size == (img['height'], img['width']) else ''
            out.append(
                Problem(
                    src.ann_file, entry,
                    f'the file "{path}" is {size[0]}x{size[1]} (width x '
                    f'height){rotated} but the annotation says '
                    f'width={img["width"]}, height={img["height"]}: boxes '
                    'would be checked against the wrong size and scale '
                    'factors computed from it; fix "width"/"height" (or the '
                    'image)', ERROR, IMAGE_SIZE,
                    src.source))
        elif orientation in range(2, 9) and (
                orientation not in _TRANSPOSING or size[0] == size[1]):
            # rotated or flipped, same size: the size check can not tell
            out.append(
                Problem(
                    src.ann_file, entry,
                    f'the file "{path}" has EXIF orientation '
                    f'{orientation}, which the image loader applies '
                    '(rotating or flipping the pixels) without changing '
                    'its size, so the size check cannot tell how it was '
                    'annotated: its boxes are right only if they were '
                    'drawn on the rotated image (as most viewers show '
                    'it); if they were drawn on the stored pixels, load '
                    'with LoadImageFromFile(color_type=\'color_ignore_'
                    'orientation\') or strip the orientation tag',
                    WARNING, EXIF_ORIENTATION, src.source))
    return out


def _chunks(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _run_jobs(jobs: List[tuple], workers: int, progress: bool) -> list:
    chunk = 64
    bar = _progress_bar(len(jobs)) if progress and jobs else None
    results = []
    if workers and workers > 1 and len(jobs) > chunk:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_check_images, _chunks(jobs, chunk)):
                results.extend(part)
                bar and bar.update(len(part))
    else:
        for part in _chunks(jobs, chunk):
            results.extend(_check_images(part))
            bar and bar.update(len(part))
    if bar is not None:
        bar.close()
    return results


class _Bar:
    """mmengine's ProgressBar (or tqdm) behind one ``update(n)``."""

    def __init__(self, total: int):
        try:
            from tqdm import tqdm
            self._tqdm = tqdm(total=total, unit='img')
        except ImportError:
            from mmengine.utils import ProgressBar
            self._tqdm = None
            self._bar = ProgressBar(total)

    def update(self, n: int) -> None:
        if self._tqdm is not None:
            self._tqdm.update(n)
        else:
            self._bar.update(n)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self._bar.file.write('\n')


def _progress_bar(total: int) -> _Bar:
    return _Bar(total)


# ---------------------------------------------------------------------------
# a whole config

DATALOADER_EVALUATORS = (('train_dataloader', None), ('val_dataloader',
                                                      'val_evaluator'),
                         ('test_dataloader', 'test_evaluator'))
ClassResolver = Callable[[str], Optional[Tuple[str, ...]]]


def _applies_orientation(pipelines: list) -> bool:
    """Whether the image loader of these pipelines rotates by EXIF (mmcv's
    cv2 and pillow backends do, except with ``'unchanged'`` or
    ``'*_ignore_orientation'``; turbojpeg and tifffile never do)."""
    for step in pipeline_steps(pipelines, 'LoadImageFromFile'):
        if not isinstance(step, dict):
            continue
        color = str(step.get('color_type', 'color'))
        backend = str(step.get('imdecode_backend', 'cv2'))
        if 'ignore_orientation' in color or color == 'unchanged' \
                or backend in ('turbojpeg', 'tifffile'):
            return False
    return True


def sources_from_config(
        cfg,
        keys: Sequence[str] = ('train_dataloader', 'val_dataloader',
                               'test_dataloader'),
        default_classes: Optional[ClassResolver] = None) -> List[AnnSource]:
    """The COCO annotation files of a config's dataloaders and evaluators:
    the ``ann_file`` of each dataset and evaluator whose class reads COCO
    json with MMDetection's label rule
    (:func:`mmsnip.utils.config_tree.reads_coco`: ``CocoDataset``,
    ``CocoMetric`` and their subclasses, not LVIS or panoptic).

    Args:
        cfg (Config | dict): A full config.
        keys (Sequence[str]): Dataloaders to read; the evaluator of
            ``val_dataloader`` / ``test_dataloader`` comes with it.
        default_classes (callable, optional): Dataset type name -> its
            default ``METAINFO['classes']``, for datasets without
            ``metainfo.classes`` (e.g. the COCO 80 of ``CocoDataset``).

    Returns:
        list[AnnSource]: In config order (train first); one per use of a
        file (a file used twice appears twice).
    """
    out: List[AnnSource] = []
    for loader_key, eval_key in DATALOADER_EVALUATORS:
        if loader_key not in keys:
            continue
        loader = cfg.get(loader_key)
        if not loader or not isinstance(loader.get('dataset'), dict):
            continue
        first_leaf = None
        for name, ds, pipelines in dataset_leaves(loader['dataset'],
                                                  f'{loader_key}.dataset'):
            if not ds.get('ann_file') or not reads_coco(ds, 'DATASETS'):
                continue
            root = ds.get('data_root') or ''
            prefix = ds.get('data_prefix') or {}
            img = prefix.get('img', prefix.get('img_path', '')) \
                if isinstance(prefix, dict) else ''
            meta = ds.get('metainfo') or {}
            classes = meta.get('classes') if isinstance(meta, dict) else None
            explicit = classes is not None
            if classes is None and default_classes is not None:
                classes = default_classes(ds.get('type', ''))
            if isinstance(classes, str):
                classes = (classes, )
            masks = mask_loader(pipelines)
            src = AnnSource(
                ann_file=join_root(root, ds['ann_file']),
                source=name,
                img_prefix=join_root(root, img or ''),
                classes=tuple(classes) if classes is not None else None,
                explicit_classes=explicit,
                apply_orientation=_applies_orientation(pipelines),
                with_mask=masks is not None,
                poly2mask=bool(masks.get('poly2mask', True))
                if isinstance(masks, dict) else True)
            out.append(src)
            first_leaf = first_leaf or src
        evaluators = cfg.get(eval_key) if eval_key else None
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        for i, ev in enumerate(evaluators or []):
            if not isinstance(ev, dict) or not ev.get('ann_file') or \
                    not reads_coco(ev, 'METRICS'):
                continue
            name = eval_key if len(evaluators) == 1 else f'{eval_key}[{i}]'
            out.append(
                AnnSource(
                    ann_file=ev['ann_file'],
                    source=name,
                    evaluates=loader_key,
                    classwise=bool(ev.get('classwise', False)),
                    format_only=bool(ev.get('format_only', False)),
                    classes=first_leaf.classes if first_leaf else None,
                    explicit_classes=bool(first_leaf
                                          and first_leaf.explicit_classes)))
    return out


def audit_sources(sources: Sequence[AnnSource],
                  images: bool = True,
                  full_decode: bool = False,
                  workers: int = 0,
                  progress: bool = False,
                  max_images: Optional[int] = None) -> List[Problem]:
    """Audit annotation files: each file once, classes across all.

    Args:
        sources (Sequence[AnnSource]): Reference (train) first.
        images (bool): Read the image headers too (sources with an
            ``img_prefix``).
        full_decode (bool): Decode every image fully.
        workers (int): Processes for the image reads.
        progress (bool): Progress bars for the image reads.
        max_images (int, optional): Skip image reads if the files together
            list more images than this (the cheap audit of the tools).

    Returns:
        list[Problem]: Errors first, then warnings; each file's problems
        in file order.
    """
    parsed: Dict[str, Optional[dict]] = {}
    out: List[Problem] = []
    for src in sources:
        if src.ann_file in parsed:
            continue
        coco, problems = read_coco(src.ann_file,
                                   entry=f'{src.source}.ann_file')
        parsed[src.ann_file] = coco
        out.extend(dataclasses.replace(p, source=src.source) for p in problems)
        if coco is not None:
            out.extend(audit_coco(coco, src.ann_file, src.source))
            masked = [s for s in sources
                      if s.ann_file == src.ann_file and s.with_mask]
            if masked:
                out.extend(audit_masks(coco, src.ann_file, masked[0].source,
                                       all(s.poly2mask for s in masked)))
    files = [(s, parsed[s.ann_file]) for s in sources
             if parsed[s.ann_file] is not None]
    out.extend(audit_classes(files))
    out.extend(audit_evaluator_images(files))
    out.extend(_unique(audit_evaluated_files(files)))
    if images or full_decode:
        checked = set()
        todo = [(s, c) for s, c in files if s.img_prefix is not None]
        total = sum(len(c['images']) for s, c in todo)
        if max_images is not None and total > max_images:
            out.append(
                Problem(
                    todo[0][0].ann_file, 'images',
                    f'the image files were not checked ({total} images, '
                    f'more than {max_images}); `tools/check_dataset.py '
                    'CONFIG` reads them all', WARNING, IMAGES_SKIPPED,
                    todo[0][0].source))
        else:
            for src, coco in todo:
                key = (src.ann_file, src.img_prefix, src.apply_orientation)
                if key in checked:
                    continue
                checked.add(key)
                out.extend(
                    audit_images(coco, src, full_decode, workers, progress))
    return sorted(out, key=lambda p: p.severity != ERROR)


def audit_config(cfg,
                 keys: Sequence[str] = ('train_dataloader', 'val_dataloader',
                                        'test_dataloader'),
                 default_classes: Optional[ClassResolver] = None,
                 **kwargs) -> List[Problem]:
    """:func:`audit_sources` of :func:`sources_from_config` (see there for
    ``keys`` and ``default_classes``; ``kwargs`` go to
    :func:`audit_sources`).

    Files that do not exist are left to the path checks
    (``mmsnip.utils.preflight.check_data_paths``) and skipped here; a
    directory is a ``bad_file`` error.
    """
    sources = [
        s for s in sources_from_config(cfg, keys, default_classes)
        if '://' not in s.ann_file and osp.exists(s.ann_file)
    ]
    return audit_sources(sources, **kwargs)


def unchecked_loaders(cfg, keys: Sequence[str]) -> Dict[str, str]:
    """The dataloaders of ``keys`` that give the audit no COCO file,
    with the reason: ``{'val_dataloader': 'is None in the config'}``."""
    out = {}
    for key in keys:
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            out[key] = (f'is {loader!r} in the config' if key in cfg
                        else 'is not in the config')
        elif not isinstance(loader.get('dataset'), dict):
            out[key] = 'has no dataset'
        elif not sources_from_config(cfg, (key, )):
            out[key] = ('has no COCO annotation file (no ann_file of a '
                        'COCO dataset type)')
    return out


def summary(problems: Sequence[Problem]) -> str:
    """``'3 errors, 1 warning (2 duplicate_image_id, ...)'``."""
    n_err = len(errors(problems))
    n_warn = len(problems) - n_err
    kinds = Counter(p.kind for p in problems)
    detail = ', '.join(f'{n} {k}' for k, n in kinds.most_common())
    return (f'{n_err} error{"s" * (n_err != 1)}, {n_warn} '
            f'warning{"s" * (n_warn != 1)}' +
            (f' ({detail})' if detail else ''))
