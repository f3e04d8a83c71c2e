# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposals dumped by MMDetection's ``DumpProposals`` metric, converted
into an mmsnip proposal file (:mod:`mmsnip.datasets.proposals`).

MMDetection's ``DumpProposals`` (``mmdet/evaluation/metrics/
dump_proposals_metric.py``) writes a pickle ``{key: InstanceData(bboxes,
scores)}``: ``bboxes`` ``(P, 4)`` xyxy in ORIGINAL image pixels (its
models predict with ``rescale=True``), ``scores`` ``(P,)`` in descending
order. The key is not the image id but the image's last folder and file
name (:func:`mmdet_proposal_key`), as ``BaseDetDataset.load_proposals``
reads it back. mmsnip files are keyed by ``img_id``, so the conversion
needs the annotation file and the folder the images were read from::

    images[k] = {'id': 9, 'file_name': '000000000009.jpg', ...}
    img_prefix 'data/coco/train2017/' (or 'train2017/')
    -> key 'train2017/000000000009.jpg' -> img_id 9

Every image of the annotation file must have exactly one entry and every
entry an image: a missing image, a key of no image and two images of one
key are errors naming the file and the keys (and, for a dump whose keys
carry another folder, the ``img_prefix`` that would match them: a hint,
never a guess acted upon).

The dump holds one set of proposals per image (one RPN pass at one
scale); the written file serves it at every one of ``num_scales`` chip
scales and records no chip scales (any chip config of ``num_scales``
scales reads it), but records each image's name (the name of the
``img_prefix`` folder and its ``file_name``,
:func:`~mmsnip.datasets.proposals.image_name`), which readers compare
with their dataset's. Negative-chip mining then filters each
scale's set by that scale's valid range (Sec. 3.3.3), whereas
``tools/mine_proposals.py`` runs the RPN at every chip scale, as the
paper does. The set is stored
once per image (version 4, ``shared_scales``): 9 bytes per proposal, not
per proposal and scale; with ``score_dtype='float16'`` (version 2, for
readers older than version 3) it is stored once per scale.
"""
import os.path as osp
from collections import Counter
from collections.abc import Mapping
from typing import Dict, List, Optional

import numpy as np
from mmengine.structures import InstanceData

from mmsnip.utils.checks import is_integer
from .coco_file import load_coco
from .proposals import (FORMAT, ProposalFile, image_id_array, image_name,
                        is_legacy_file, mmdet2_list_hint, proposal_array,
                        read_pickle, write_proposal_groups)

# Keys shown in an error at most.
SHOW = 5


def mmdet_proposal_key(img_path: str) -> str:
    """The key of an image in a ``DumpProposals`` dump: its last folder
    and file name, by exactly MMDetection's formula
    (``DumpProposals.process``, ``BaseDetDataset.load_proposals``).

    Example:
        >>> mmdet_proposal_key('data/coco/train2017/000000000009.jpg')
        'train2017/000000000009.jpg'
    """
    return osp.join(osp.split(osp.split(img_path)[0])[-1],
                    osp.split(img_path)[-1])


def coco_image_keys(coco: dict, ann_file: str,
                    img_prefix: str) -> Dict[str, int]:
    """``key -> image id`` of every image of a COCO file, the key made by
    :func:`mmdet_proposal_key` from ``osp.join(img_prefix, file_name)``
    (the ``img_path`` of MMDetection's ``CocoDataset``).

    Args:
        coco (dict): The file, checked (:func:`load_coco` with
            ``file_name``).
        ann_file (str): Its path, for messages.
        img_prefix (str): The folder MMDetection read the images from
            (``osp.join(data_root, data_prefix['img'])``; only its last folder
            matters).

    Raises:
        ValueError: Naming ``ann_file``, when two images get one key.
    """
    out: Dict[str, int] = {}
    names: Dict[str, str] = {}
    for img in coco['images']:
        key = mmdet_proposal_key(osp.join(img_prefix, img['file_name']))
        other = out.setdefault(key, img['id'])
        if other != img['id']:
            raise ValueError(
                f'annotation file "{ann_file}": images {other!r} '
                f'("{names[key]}") and {img["id"]!r} ("{img["file_name"]}") '
                f'both have the mmdet proposal key "{key}" (DumpProposals '
                'keys proposals by the last folder and file name only, and '
                'so does mmdet\'s load_proposals): the dump cannot tell '
                'them apart. Fix: give the images distinct folder/file '
                'names, or mine the proposals with tools/mine_proposals.py '
                '(keyed by img_id)')
        names[key] = img['file_name']
    return out


def read_mmdet_dump(path: str) -> dict:
    """The dict of a ``DumpProposals`` pickle, its container checked (the
    entries are checked by :func:`dump_rows`).

    Raises:
        FileNotFoundError: Naming the file.
        ValueError: Naming the file: not readable, an mmsnip proposal file
            (then: convert without ``--from-mmdet``), not a dict of file
            names.
    """
    where = f'mmdet proposal dump "{path}"'
    if not osp.isfile(path):
        raise FileNotFoundError(f'{where} does not exist')
    mmsnip_file = f'{where} is an mmsnip proposal file, not a dump of ' \
        'mmdet\'s DumpProposals: convert it without --from-mmdet'
    if not is_legacy_file(path):  # a zip: the compact format
        try:
            ProposalFile(path)
        except ValueError:
            raise ValueError(f'{where} is a zip file, not a pickle of '
                             'mmdet\'s DumpProposals') from None
        raise ValueError(mmsnip_file)
    data = read_pickle(path, where, 'a pickle of mmdet\'s DumpProposals')
    if isinstance(data, dict) and data.get('format') == FORMAT:
        raise ValueError(mmsnip_file)
    if not isinstance(data, dict):
        raise ValueError(f'{where} holds a {type(data).__name__}, not the '
                         'dict {file_name: InstanceData(bboxes, scores)} '
                         'of mmdet\'s DumpProposals' +
                         mmdet2_list_hint(data))
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ValueError(f'{where}: key {bad[0]!r} is not a file name: '
                         'not a dump of mmdet\'s DumpProposals (keys '
                         '"folder/file.jpg")')
    return data


def _numpy(value, where: str) -> np.ndarray:
    """A torch tensor (any device or dtype) or array-like as a numpy
    array; ``ValueError`` naming ``where`` if it cannot be one."""
    try:
        if hasattr(value, 'detach'):  # torch, without importing it
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.float()  # bfloat16 has no numpy dtype
            value = value.numpy()
        return np.asarray(value)
    except Exception as e:  # noqa: BLE001 - any tensor or object
        raise ValueError(f'{where} cannot be read as an array ('
                         f'{type(e).__name__}: {e})') from None


def dump_rows(entry, where: str) -> np.ndarray:
    """One dump entry as ``(P, 5)`` float32 rows ``[x1, y1, x2, y2,
    score]`` (ORIGINAL pixels), checked.

    Args:
        entry (InstanceData | Mapping): With ``bboxes`` ``(P, 4)`` and
            ``scores`` ``(P,)``, numpy arrays or torch tensors (as mmdet's
            ``load_proposals`` accepts). ``P = 0`` is an image without
            proposals.
        where (str): Names the file and key in errors.

    Raises:
        ValueError: Naming ``where``: another type, no ``bboxes`` or
            ``scores``, other shapes, lengths that differ, values that are
            not numbers (:func:`proposal_array`), NaN or inf.
    """
    if not isinstance(entry, (InstanceData, Mapping)):
        raise ValueError(f'{where} is a {type(entry).__name__}, not an '
                         'InstanceData or dict with bboxes and scores')
    lacks = [k for k in ('bboxes', 'scores') if k not in entry]
    if lacks:
        raise ValueError(f'{where} has no {" and no ".join(lacks)} (it has '
                         f'{sorted(entry.keys())}): not a dump of mmdet\'s '
                         'DumpProposals')
    bboxes, scores = (
        _numpy(entry[k] if isinstance(entry, Mapping) else entry.get(k),
               f'{where}: {k}') for k in ('bboxes', 'scores'))
    if bboxes.shape in ((0, 4), (0, )) and scores.shape == (0, ):
        return np.zeros((0, 5), np.float32)
    if bboxes.ndim != 2 or bboxes.shape[1] != 4:
        raise ValueError(f'{where}: bboxes must have shape (P, 4) [x1, y1, '
                         f'x2, y2], got {bboxes.shape}')
    if scores.shape != (len(bboxes), ):
        raise ValueError(f'{where}: scores must have shape ({len(bboxes)},)'
                         f' (one per box), got {scores.shape}')
    rows = proposal_array(np.c_[bboxes, scores], where)
    bad = ~np.isfinite(rows).all(1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f'{where}: {int(bad.sum())} of {len(rows)} proposals have NaN '
            f'or inf values (e.g. row {first}: {rows[first].tolist()}): the '
            'model that dumped them diverged; dump them again with a '
            'working checkpoint')
    inverted = (rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])
    if inverted.any():
        first = int(np.flatnonzero(inverted)[0])
        raise ValueError(
            f'{where}: {int(inverted.sum())} of {len(rows)} boxes have x2 < '
            f'x1 or y2 < y1 (e.g. row {first}: {rows[first, :4].tolist()}):'
            ' DumpProposals writes [x1, y1, x2, y2]; convert boxes of '
            'another layout (e.g. [x, y, w, h]) first')
    return rows


def _missing_message(where: str, ann_file: str, missing: List[str],
                     coco: dict, keys: Dict[str, int], dump: dict,
                     img_prefix: str) -> str:
    """The error for images of ``ann_file`` without an entry, with hints:
    the ``img_prefix`` whose keys the dump holds, keys written on Windows,
    images dropped for having no annotations."""
    if not dump:
        return (f'{where} has no entries (the run that dumped it saw no '
                f'image), so none of the {len(keys)} images of "{ann_file}" '
                'has proposals: dump them again over these images')
    msg = (f'{where} has no entry for {len(missing)} of the '
           f'{len(keys)} images of "{ann_file}" (e.g. keys '
           f'{missing[:SHOW]}, made from --img-prefix {img_prefix!r} and '
           'each image\'s file_name by mmdet\'s rule "last folder/file '
           'name"): it was dumped for another dataset or split, or the '
           'image folder differs')
    matched = len(keys) - len(missing)
    folders = Counter(osp.dirname(k) for k in dump).most_common(3)
    best = max(((sum(mmdet_proposal_key(osp.join(folder, img['file_name']))
                     in dump for img in coco['images']), folder)
                for folder, _ in folders), default=(0, ''))
    if best[0] > matched:
        prefix = best[1] + '/' if best[1] else ''
        msg += (f'. Hint: the dump\'s keys are in the folder '
                f'"{best[1]}"; with --img-prefix {prefix!r} {best[0]} of '
                f'the {len(keys)} images would find their entry: pass it '
                'if that is the folder of this annotation file\'s images')
    windows = next((k for k in dump if '\\' in k), None)
    if windows is not None:
        msg += (f'. The dump\'s keys use backslashes (e.g. {windows!r}: '
                'dumped on Windows), which mmdet\'s rule never makes here: '
                'replace them with "/" in the keys (e.g. {k.replace("\\\\", '
                '"/"): v for k, v in dump.items()}) and convert again')
    annotated = {a.get('image_id') for a in coco['annotations']
                 if isinstance(a, dict)}
    if not any(keys[k] in annotated for k in missing):
        msg += ('. None of the missing images has annotations: the '
                'dumping dataset dropped them (filter_cfg='
                'dict(filter_empty_gt=True)); dump again with test_mode='
                'True or without filter_cfg, so that every image gets '
                'proposals')
    return msg


def convert_mmdet_proposals(src: str, dst: str, ann_file: str,
                            img_prefix: str, num_scales: int,
                            top_n: Optional[int] = None,
                            box_dtype: str = 'auto',
                            score_dtype: str = 'uint8') -> dict:
    """Write the proposals of a ``DumpProposals`` pickle as a compact
    mmsnip proposal file whose rows serve all ``num_scales`` scales (see
    the module docstring), no chip scales recorded: version 4, one row set
    per image (``score_dtype='float16'``: version 2, a copy per scale).

    Holds the dump and the written file's scores (1 byte per row; 2 in
    version 2): it hands the images to :func:`write_proposal_groups` in
    the file's order (ids sorted), which then writes their boxes as they
    come.

    Args:
        src (str): The dump (``DumpProposals(proposals_file=...)``).
        dst (str): The compact file to write (atomically).
        ann_file (str): The COCO annotation file of the dumped images.
        img_prefix (str): The folder MMDetection read them from
            (:func:`coco_image_keys`).
        num_scales (int): Scales of the chip config that will read it.
        top_n, box_dtype, score_dtype: As :func:`save_proposals`
            (``top_n`` per image, so per scale too).

    Returns:
        dict: ``images``, ``proposals`` (rows stored: once per image in
        version 4, once per scale in version 2),
        ``bytes_in``, ``bytes_out``, ``version``, as
        :func:`convert_proposals`.

    Raises:
        ValueError / FileNotFoundError / UserInputError: Naming the file
            and the entry (:func:`read_mmdet_dump`, :func:`dump_rows`,
            :func:`coco_image_keys`, :func:`load_coco`), images without an
            entry, entries of no image.
    """
    if not is_integer(num_scales) or num_scales < 1:
        raise ValueError('convert_mmdet_proposals: num_scales must be an '
                         f'int >= 1, got {num_scales!r}')
    dump = read_mmdet_dump(src)
    where = f'mmdet proposal dump "{src}"'
    coco = load_coco(ann_file, image_fields=('id', 'file_name'),
                     ann_fields=('image_id', ))
    keys = coco_image_keys(coco, ann_file, img_prefix)
    missing = [k for k in keys if k not in dump]
    if missing:
        raise ValueError(_missing_message(where, ann_file, missing, coco,
                                          keys, dump, img_prefix))
    extra = [k for k in dump if k not in keys]
    if extra:
        raise ValueError(
            f'{where}: {len(extra)} of its {len(dump)} entries match no '
            f'image of "{ann_file}" (e.g. {extra[:SHOW]}): proposals of '
            'other images (another split or dataset). Fix: dump the '
            'proposals over exactly the images of this annotation file, or '
            'pass the annotation file the dump was made with')

    # in file order (ids sorted), so that the writer streams the rows
    items = list(keys.items())
    order = np.argsort(image_id_array([i for _, i in items], where),
                       kind='stable')

    def groups():
        for k in order.tolist():
            key, img_id = items[k]
            rows = dump_rows(dump[key], f'{where}: entry {key!r}')
            yield {img_id: [rows] * num_scales}

    # the images' names (the image folder's name and file_name, as the
    # chip dataset names them), recorded: readers refuse other images
    name_of = {img['id']: image_name(osp.join(img_prefix, img['file_name']),
                                     img_prefix) for img in coco['images']}
    write_proposal_groups(dst, list(keys.values()), num_scales, groups,
                          top_n=top_n, box_dtype=box_dtype,
                          score_dtype=score_dtype, owner=where,
                          shared_scales=score_dtype == 'uint8',
                          img_names=[name_of[i] for i in keys.values()])
    written = ProposalFile(dst)
    return dict(images=len(written), proposals=int(written.offsets[-1]),
                bytes_in=osp.getsize(src), bytes_out=osp.getsize(dst),
                version=written.version)
