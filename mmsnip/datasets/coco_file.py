# Copyright (c) mmsnip contributors. All rights reserved.
"""One COCO annotation file, read for the tools that work on its boxes.

``tools/export_chips.py``, ``tools/browse_chips.py`` and
``tools/analysis/suggest_params.py`` read a COCO json directly (no config,
no ``CocoDataset``). This module loads such a file with the checks of the
dataset audit (:func:`mmsnip.utils.dataset_audit.audit_coco`, the one home
of "is this COCO file usable") restricted to the fields the caller needs,
and indexes it:

- :func:`load_coco`: parse and check; the first error becomes a
  :class:`~mmsnip.utils.preflight.UserInputError` naming the file and the
  entry (``run_cli`` prints it as one ``error:`` line, exit status 2).
- :func:`annotations_by_image`: annotations grouped per image id, without
  those ``CocoDataset`` drops (:func:`coco_dataset_keeps`: a true
  ``"ignore"``, a width or height under 1 pixel, ``"area"`` <= 0, no
  overlap with the image; with ``classes``, a category not among them).
- :func:`training_source`: a config's training dataset as the audit
  reads it: the classes it keeps (``metainfo.classes``, or its type's
  default classes) and whether its loader applies EXIF orientation.
- :func:`coco_boxes`: ``[x, y, w, h]`` -> ``(N, 4)`` xyxy boxes and crowd
  flags.
- :func:`category_labels`: category id -> label, by MMDetection's rule.
- :func:`load_coco_proposals`: a proposal file checked against the images.

Coordinates: every box here is in ORIGINAL image pixels. Torch-free (json,
numpy; the proposal reader of :mod:`mmsnip.datasets.proposals`).

Example (a file with one image and two boxes)::

    coco = load_coco('ann.json')
    by_image = annotations_by_image(coco)   # {7: [ann_1, ann_2]}
    boxes, crowd = coco_boxes(by_image[7])  # (2, 4) xyxy, (2,) bool
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mmsnip.utils.checks import is_number
from mmsnip.utils.dataset_audit import (DROPPED_BOXES, audit_coco,
                                        cocodataset_drops, errors,
                                        label_names, read_coco)
from mmsnip.utils.preflight import UserInputError

# What a tool that reads boxes needs from each entry: an image's id and
# size (ORIGINAL pixels), an annotation's image and box. Fields that are
# present are checked all the same (e.g. a non-numeric "area").
BOX_IMAGE_FIELDS = ('id', 'width', 'height')
BOX_ANN_FIELDS = ('image_id', 'bbox')


def load_coco(path: str,
              image_fields: Sequence[str] = BOX_IMAGE_FIELDS,
              ann_fields: Sequence[str] = BOX_ANN_FIELDS,
              categories: bool = False) -> dict:
    """Read a COCO json file and check it as the dataset audit does.

    The checks are :func:`~mmsnip.utils.dataset_audit.audit_coco`'s, for
    the fields asked for: broken or duplicate entries, annotations of
    images (or, with ``categories``, categories) the file lacks, a
    ``bbox`` that is not four finite numbers, image sizes that are not
    positive numbers, no images. Its warnings (boxes ``CocoDataset`` would
    drop: under 1 pixel, negative width or height, outside the image,
    ``"area"`` <= 0 even where the audit calls that an error; duplicate
    file names) are not raised: the tools drop and report such
    boxes themselves (``mmsnip.chips.sanitize_boxes``).

    Args:
        path (str): The annotation file.
        image_fields (Sequence[str]): Fields every image must have
            (``'file_name'`` too for a tool that reads the pixels).
        ann_fields (Sequence[str]): Fields every annotation must have.
        categories (bool): Require the list ``categories`` and check every
            ``category_id`` against it.

    Returns:
        dict: The parsed file.

    Raises:
        UserInputError: Naming the file, the entry and what is wrong, e.g.
            ``ann.json: image 1: has the size 0x5 (width x height): both
            must be positive numbers (pixels)``; the number of further
            errors is appended.
    """
    lists = ('images', 'annotations') + (('categories', )
                                         if categories else ())
    coco, problems = read_coco(path, lists)
    if coco is None:  # one ``bad_file`` problem: not JSON, not COCO
        raise UserInputError(f'annotation file "{path}" '
                             f'{problems[0].message}')
    # dropped boxes are the dataset's business (an unfilled "area" is an
    # error there); the tools read the bbox and sanitise it themselves
    errs = [p for p in errors(audit_coco(
        coco, path, image_fields=image_fields, ann_fields=ann_fields,
        categories=categories)) if p.kind != DROPPED_BOXES]
    if errs:
        more = f' ({len(errs) - 1} more error(s) in the file)' \
            if len(errs) > 1 else ''
        raise UserInputError(f'{errs[0]}{more}')
    return coco


def coco_dataset_keeps(ann: dict, img: dict) -> bool:
    """Whether MMDetection's ``CocoDataset`` keeps an annotation, by the
    rules of ``CocoDataset.parse_data_info`` (mmdet 3.3,
    ``mmdet/datasets/coco.py``) that do not depend on the classes: it
    drops a true ``"ignore"``, a box with no overlap with its image, an
    ``"area"`` <= 0, and a ``bbox`` width or height under 1 pixel (before
    clipping). Crowd boxes are kept (ignored regions of training).
    A missing ``"area"`` is not judged here (``CocoDataset`` needs one;
    the dataset audit reports it).

    Args:
        ann (dict): A COCO annotation with a ``bbox`` of four numbers
            ``[x, y, w, h]``, ORIGINAL pixels.
        img (dict): Its image, with ``width`` and ``height``.
    """
    return bool(_kept([ann], [img])[0])


def _kept(anns: Sequence[dict], imgs: Sequence[dict]) -> np.ndarray:
    """``(N,)`` bool: :func:`coco_dataset_keeps` of each annotation and
    its image, vectorized (``dataset_audit.cocodataset_drops``)."""
    boxes = np.asarray([ann['bbox'] for ann in anns],
                       float).reshape(-1, 4)
    area = np.asarray([ann['area'] if is_number(ann.get('area')) else
                       np.nan for ann in anns], float)
    wh = np.asarray([(img['width'], img['height']) for img in imgs],
                    float).reshape(-1, 2)
    dropped = np.logical_or.reduce(cocodataset_drops(boxes, area, wh))
    ignored = np.asarray([bool(ann.get('ignore', False)) for ann in anns],
                         bool)
    return ~dropped & ~ignored


def annotations_by_image(coco: dict,
                         classes: Optional[Sequence[str]] = None
                         ) -> Dict[int, List[dict]]:
    """The annotations of a COCO dict grouped by image, as training reads
    them.

    An annotation ``CocoDataset`` drops (:func:`coco_dataset_keeps`: a
    true ``"ignore"``, whose pixels then train as background; a width or
    height under 1 pixel; ``"area"`` <= 0; no overlap with the image) is
    left out, so the chips and object counts of the tools are those of
    training (the dataset audit warns of such boxes,
    ``dataset_audit.DROPPED_BOXES`` and ``IGNORE_FLAG``). With
    ``classes`` (the config's ``metainfo.classes``,
    :func:`training_source`), so is an annotation whose ``category_id``
    is not the id of one of them in the file's ``categories``:
    ``CocoDataset`` drops those too (:func:`category_labels`).

    Args:
        coco (dict): A file :func:`load_coco` accepted (with
            ``categories=True`` when ``classes`` is given).
        classes (Sequence[str], optional): Class names training keeps;
            None keeps every category.

    Returns:
        dict: ``image id -> [annotation dicts]`` with every image of
        ``coco['images']`` as a key, in the file's order (an image without
        annotations maps to ``[]``); each list in the file's order.

    Raises:
        ValueError: An annotation refers to an image id the file lacks
            (:func:`load_coco` refuses such files).
    """
    images = {img['id']: img for img in coco['images']}
    by_image: Dict[int, List[dict]] = {i: [] for i in images}
    for i, ann in enumerate(coco['annotations']):
        if ann['image_id'] not in by_image:
            raise ValueError(f'annotations[{i}] refers to image '
                             f'{ann["image_id"]!r}, which is not in "images"')
    kept = _kept(coco['annotations'],
                 [images[ann['image_id']] for ann in coco['annotations']])
    if classes is not None:
        kept &= in_classes(coco, classes)
    for ann, keep in zip(coco['annotations'], kept):
        if keep:
            by_image[ann['image_id']].append(ann)
    return by_image


def in_classes(coco: dict, classes: Sequence[str]) -> np.ndarray:
    """``(A,)`` bool per annotation: its ``category_id`` is the id of
    one of ``classes`` in the file's ``categories`` (what ``CocoDataset``
    keeps, :func:`category_labels`; a list or dict id matches none)."""
    labels = category_labels(coco, classes)
    return np.array([
        (cid if isinstance(cid, (int, float, str)) else None) in labels
        for cid in (ann.get('category_id') for ann in coco['annotations'])
    ], bool)


def left_out_by_classes(coco: dict, classes: Optional[Sequence[str]]
                        ) -> Tuple[int, List]:
    """How many annotations :func:`annotations_by_image` leaves out for
    their category with ``classes``, and their category ids (sorted by
    ``repr``, at most 10), for the tools' reports."""
    if classes is None:
        return 0, []
    kept = in_classes(coco, classes)
    ids = [ann.get('category_id')
           for ann, keep in zip(coco['annotations'], kept) if not keep]
    unique = {repr(cid): cid for cid in ids}
    return len(ids), [unique[k] for k in sorted(unique)][:10]


def coco_for_config(path: str, source,
                    image_fields: Sequence[str] = BOX_IMAGE_FIELDS
                    ) -> Tuple[dict, Optional[Tuple[str, ...]]]:
    """:func:`load_coco` for a tool given a config: the file and the
    classes its training keeps (None without a config or a COCO training
    dataset).

    Args:
        path (str): The annotation file.
        source (AnnSource, optional): The config's training dataset
            (:func:`training_source` of the tool's ``--config``); None
            (``--paper-defaults``, no COCO training dataset) keeps every
            category.
        image_fields (Sequence[str]): As for :func:`load_coco`.

    Raises:
        UserInputError: :func:`load_coco`'s errors (with the classes, the
            file must have ``categories``), a class the config sets
            (``metainfo.classes``) not among the file's categories
            (``CocoDataset`` would shift the labels of the classes after
            it; ``tools/train.py`` refuses it too), or, without
            ``metainfo.classes``, none of the dataset type's default
            classes in the file (some of them is fine: ``CocoDataset``
            keeps those).
    """
    classes = None if source is None else source.classes
    coco = load_coco(path, image_fields, categories=classes is not None)
    if classes is not None:
        names = {c.get('name') for c in coco['categories']
                 if isinstance(c, dict)}
        missing = [c for c in classes if c not in names]
        if missing and source.explicit_classes:
            raise UserInputError(
                f'{path}: categories: has no category named {missing} of '
                f'the {len(classes)} classes the config trains on '
                f'({source.source} metainfo.classes): fix the spelling in '
                'the config or the file')
        if len(missing) == len(classes):
            raise UserInputError(
                f'{path}: categories: has none of the {len(classes)} '
                f'default classes of {source.source} (it sets no '
                'metainfo.classes), so CocoDataset would drop every '
                'annotation; set metainfo=dict(classes=(...)) to the '
                'file\'s category names')
    return coco, classes


def training_source(cfg):
    """The first COCO dataset inside a config's ``train_dataloader``
    (wrappers such as ``SniperDataset`` unwrapped), as the dataset audit
    reads it (:class:`~mmsnip.utils.dataset_audit.AnnSource`: its
    classes, whether its loader applies EXIF orientation), or None when
    the config trains on no COCO dataset."""
    from mmsnip.utils.dataset_audit import sources_from_config
    from mmsnip.utils.preflight import registry_classes
    sources = sources_from_config(cfg, ('train_dataloader', ),
                                  default_classes=registry_classes)
    return sources[0] if sources else None


def coco_boxes(anns: Sequence[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes and crowd flags of COCO annotations.

    Args:
        anns (Sequence[dict]): Annotations with ``bbox = [x, y, w, h]``
            (ORIGINAL pixels) and optionally ``iscrowd``.

    Returns:
        tuple: ``boxes`` ``(N, 4)`` float64 ``[x1, y1, x2, y2]`` (ORIGINAL
        pixels, ``x2 = x + w``) and ``crowd`` ``(N,)`` bool (``iscrowd``
        set and non-zero). ``N = 0`` gives ``(0, 4)`` and ``(0,)``.
    """
    xywh = np.array([a['bbox'] for a in anns], np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    crowd = np.array([bool(a.get('iscrowd', 0)) for a in anns], bool)
    return boxes, crowd


def category_labels(coco: dict,
                    classes: Optional[Sequence[str]] = None
                    ) -> Dict[int, int]:
    """Category id -> label, as ``CocoDataset`` and ``CocoMetric`` number
    the classes of this file.

    The label of a category is its position among the file's categories
    *in the file's order*, restricted to ``classes`` (the rule of
    :func:`mmsnip.utils.dataset_audit.label_names`; the audit refuses
    configs whose files disagree on it).

    Args:
        coco (dict): A file :func:`load_coco` accepted with
            ``categories=True`` (unique names and ids).
        classes (Sequence[str], optional): ``metainfo.classes``; None keeps
            every category.

    Returns:
        dict: ``{category id: label}``; categories not among ``classes``
        are left out (``CocoDataset`` drops their annotations).

    Example:
        categories ``[bird (id 3), cat (id 1), dog (id 2)]``, classes
        ``('cat', 'dog', 'bird')`` -> ``{3: 0, 1: 1, 2: 2}``.
    """
    label = {name: i for i, name in enumerate(label_names(coco, classes))}
    return {
        cat['id']: label[cat['name']]
        for cat in coco['categories']
        if isinstance(cat, dict) and cat.get('name') in label
    }


def coco_image_names(coco: dict) -> List[str]:
    """The name a proposal file records for each image of ``coco`` when
    only the annotation file is known
    (:func:`~mmsnip.datasets.proposals.image_name` without the image
    folder's name, which :func:`~mmsnip.datasets.proposals.
    same_image_name` matches with a dataset's longer name): its
    ``file_name`` (the basename of an absolute one); None for an image
    without one (not compared)."""
    from .proposals import image_name
    return [image_name(str(img['file_name']), '')
            if img.get('file_name') else None for img in coco['images']]


def coco_names(path: str) -> Dict:
    """``image id -> name`` (:func:`coco_image_names`) of every image of
    the COCO annotation file ``path`` (checked: :func:`load_coco` with
    ``id`` and ``file_name``)."""
    coco = load_coco(path, image_fields=('id', 'file_name'), ann_fields=())
    return dict(zip((img['id'] for img in coco['images']),
                    coco_image_names(coco)))


def load_coco_proposals(path: str, coco: dict, num_scales: int,
                        scales: Optional[Sequence] = None,
                        entry: str = '--proposals') -> Mapping:
    """The proposals of a proposal file for every image of ``coco``.

    Args:
        path (str): A file of ``tools/mine_proposals.py`` (either format of
            :func:`mmsnip.datasets.proposals.load_proposals`).
        coco (dict): The annotation file's dict: its image ids must all be
            in the proposal file.
        num_scales (int): Scales of the chip config (the file must have as
            many).
        scales (Sequence[ScaleSpec], optional): The chip config's scales:
            a file that records other scales (mined for another chip
            config, or its scales in another order) is refused, as
            training refuses it (the tools pass them; None checks only
            the number).
        entry (str): The option that names the file, for the fix of a
            file made for other images.

    Returns:
        Mapping: ``image id -> [(P, 5) array [x1, y1, x2, y2, score]
        (ORIGINAL pixels) per scale]``.

    Raises:
        UserInputError: The file is missing, of another dataset (other
            ids, or other image names than its images' ``file_name``
            where it records names,
            :func:`~mmsnip.datasets.proposals.check_image_names`), of
            another number of scales or other recorded scales, or damaged
            (a compact file's rows are checked against its
            ``content_id``,
            :meth:`~mmsnip.datasets.proposals.ProposalFile.verify`); the
            message names the file.
    """
    from .proposals import load_proposals
    try:
        return load_proposals(path, [img['id'] for img in coco['images']],
                              num_scales, verify=True, scales=scales,
                              img_names=coco_image_names(coco),
                              entry=entry)
    except (ValueError, FileNotFoundError) as e:
        raise UserInputError(str(e)) from e
