# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal files for SNIPER negative-chip mining.

Rows are ``[x1, y1, x2, y2, score]`` in ORIGINAL-image pixels (the miner
maps each scale's proposals back to the original image), one array per
scale and image. Every image of the dataset must have an entry; a file made
for other images or another number of scales is refused with an error
naming the file and the mismatch.

Every format below is read; the content decides, not the file name:

- **Compact (version 3, written by** :func:`save_proposals` **)**: an
  uncompressed ``.npz`` (a zip of ``.npy`` members, ``ZIP_STORED``) opened
  with memory maps, so opening reads only the small index and each image's
  rows are read when asked for::

      meta      JSON: format, version, num_scales, content_id (sha256),
                top_n, score_min, score_max; scales (the chip scales
                mined for, :func:`scale_record`) when the writer knew
                them
      img_ids   (N,) int64, or (N,) numpy unicode strings when the
                dataset's ids are strings (VOC, file names)
      offsets   (N * S + 1,) int64: rows of image n, scale s are
                offsets[n * S + s] : offsets[n * S + s + 1]
      boxes     (T, 4) float16 (float32 when a coordinate exceeds 2048 px,
                where float16 steps would exceed 1 px)
      scores    (T,) uint8 codes: score = score_min + code * step,
                step = (score_max - score_min) / 254; 255 = NaN
      img_names (optional, any compact version) (B,) uint8: each
                image's name (:func:`image_name`), in the order of
                img_ids, UTF-8, joined by NUL; its sha256 is
                ``names_sha256`` in meta (absent: no names)

  The rows of each image and scale are stored by descending score (ties
  keep their input order, NaN scores last), so ranking by the stored
  scores, as ``NegativeConfig.max_proposals`` does (a stable sort), picks
  exactly the rows the written scores pick (float32 in
  :func:`save_proposals`), although scores are quantised: negative chips
  use scores only to rank. Row order carries no other meaning (negative
  chips do not depend on it). Precision: float16 steps are 0.5 px from
  512 to 1024 px and 1 px from 1024 to 2048 px, so a coordinate is
  rounded by at most 0.25 px below 1024 px and 0.5 px below 2048 px; a
  score by at most ``step / 2`` (<= 0.002 when all scores lie in [0, 1],
  as RPN scores do); infinite scores become the range ends. 9 bytes per
  proposal: train2017 (118,287 images) at 300 proposals x 3 scales is
  0.96e9 bytes instead of 2.1 GB of float32 pickle (1.06e9 in version
  2).
- **Compact, version 4**: version 3 whose images have one set of rows
  for every scale (``shared_scales: true`` in ``meta``; ``offsets`` is
  ``(N + 1,)``: the rows of image n at any scale are ``offsets[n] :
  offsets[n + 1]``). Written for proposals that do not depend on the
  scale (an mmdet ``DumpProposals`` file of one test scale,
  :mod:`mmsnip.datasets.mmdet_proposals`): ``S`` times smaller than
  version 3 holding the same rows at every scale; read as that file.
  Also written for proposals pooled over the scales (the released
  code's rule, :mod:`mmsnip.datasets.proposal_pool`): ``pool_iou`` in
  ``meta`` records the IoU of the NMS that pooled them (absent or null:
  not pooled; any version may carry it, a version-2 copy of a pooled
  file keeps it).
- **Compact, version 2** (mmsnip before 2026-11-26; still written with
  ``score_dtype='float16'``): the same layout with ``scores`` ``(T,)``
  float16 and rows in their input order (10 bytes per proposal).
- **Legacy (version 1)**: a pickle ``dict(format='mmsnip.proposals',
  version=1, num_scales=S, proposals={img_id: [array (P_s, 5), ...]})``,
  loaded whole. Convert it with ``tools/misc/convert_proposals.py``.

**Image names.** Ids, the number of scales and image sizes can all
match a file of another split (train and val both numbered ``1..N``,
every image of one camera size), whose proposals would silently give
wrong negative chips. So writers that know the images record each one's
name: the name of the dataset's image folder (``data_prefix['img']``)
and the ``img_path`` below it, the basename without one
(:func:`image_name`: relative, so the name survives a moved data root;
with the folder's name, so ``train/0001.jpg`` and ``val/0001.jpg`` of
two splits differ). Readers that match the file to a dataset refuse
other names (:func:`check_image_names`; a name matches a longer one
ending in it, :func:`same_image_name`: the ``file_name`` alone, written
where only an annotation file is known, matches the folder's name and
it). Opening reads no name; the check
reads them once (about 2 MB for train2017). The names are an optional
member, not a new version: files without them (versions 1 to 4 of
earlier writers, converted files of such sources) read exactly as
before, and an older mmsnip reads a file with names as before: it
ignores the member, and ``names_sha256`` sits in the meta data, which
the ``content_id`` covers, so an older reader's verification still
passes while the ``content_id`` (and a chip-table cache key) changes
with the names.

A compact file of a later version than this mmsnip reads is refused with
an error naming the file and both versions; a damaged one with an error
naming the file: opening checks the structure, :meth:`ProposalFile.verify`
the rows against the recorded ``content_id``.

Reading gives float32 arrays either way. Ids are found by one rule in
every format (:func:`stored_id`).
"""
import hashlib
import json
import os
import os.path as osp
import pickle
import posixpath
import re
import weakref
import zipfile
from collections.abc import Mapping
from typing import (Callable, Dict, Iterable, Iterator, List, NamedTuple,
                    Optional, Sequence, Tuple, Union)

import numpy as np

from mmsnip.utils.checks import (UserInputError, check_integer, is_integer,
                                  is_number)
from mmsnip.utils.fileio import atomic_open
from .proposal_pool import check_pool_iou, pool_keep, pool_order

FORMAT = 'mmsnip.proposals'
VERSION = 3
# Version 3 with one set of rows per image for every scale.
SHARED_VERSION = 4
# Compact versions this code reads (2: float16 scores, rows as given).
READ_VERSIONS = (2, 3, 4)
LEGACY_VERSION = 1
# uint8 score codes: 0..SCORE_LEVELS map linearly onto [score_min,
# score_max]; SCORE_NAN marks a NaN score.
SCORE_LEVELS = 254
SCORE_NAN = 255
# float16 steps are <= 1 px below 2048 (0.5 px below 1024).
FLOAT16_MAX_COORD = 2048.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MEMBERS = ('meta', 'img_ids', 'offsets', 'boxes', 'scores')
# Optional member of every compact version: the images' file names
# (image_name), UTF-8, in file order, joined by NUL (no file name holds
# one); its sha256 is ``names_sha256`` in the meta data.
NAMES_MEMBER = 'img_names'
# Mismatching images shown in the error of check_image_names.
SHOWN_NAMES = 3
# A string id a file of integer ids finds: ASCII digits, optionally in
# groups joined by single underscores (the old writer stored int(img_id):
# VOC's '000005' as 5, VOC 2012's '2008_000005' as 2008000005). No signs,
# spaces or other scripts' digits.
_DIGIT_ID = re.compile(r'[0-9]+(?:_[0-9]+)*')


class MissingProposalsError(ValueError):
    """Images of a file being written that no group of proposals holds
    (:func:`write_proposal_groups`); ``missing``: all their ids."""

    def __init__(self, message: str, missing: list):
        super().__init__(message)
        self.missing = missing


def stored_id(img_id, int_ids: bool):
    """The id under which a file stores a dataset's ``img_id``, or None:
    the one lookup rule of every format (compact and legacy).

    Args:
        img_id: The dataset's id (int or str).
        int_ids (bool): The file stores integer ids (else strings).

    Returns:
        ``int(img_id)`` in a file of integer ids for an integer (not a
        bool) or a string of ASCII digits (``'000005'`` -> 5, ``'2008_
        000005'`` -> 2008000005: files written before string ids were
        stored as strings); the exact string in a file of string ids.
    """
    if isinstance(img_id, str):
        if not int_ids:
            return img_id
        return int(img_id) if _DIGIT_ID.fullmatch(img_id) else None
    return int(img_id) if int_ids and is_integer(img_id) else None


def _number(value) -> float:
    """``float(value)`` for a real number; TypeError for anything else
    (None, strings)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or \
            isinstance(value, bool):
        raise TypeError(f'{value!r} is not a number')
    return float(value)


def proposal_array(rows, where: str) -> np.ndarray:
    """One image and scale's proposals as a ``(P, 5)`` float32 array
    ``[x1, y1, x2, y2, score]`` (ORIGINAL pixels); a ``(P, 4)`` array
    gets a score column of ones (as
    :func:`mmsnip.chips.negative.as_proposals`).

    Args:
        rows (array-like): ``(P, 4)`` or ``(P, 5)`` numbers; empty: no
            proposal.
        where (str): Names the file, img_id and scale in errors.

    Raises:
        ValueError: Naming ``where``: not numbers, another shape (``(P,
            6)``, transposed), a finite value beyond float32.
    """
    try:
        arr = np.asarray(rows)
        if arr.dtype.kind == 'O':  # None would become NaN
            arr = np.vectorize(_number, otypes=[np.float64])(arr)
        elif arr.dtype.kind not in 'biuf':  # strings
            raise TypeError(f'{arr.dtype} values are not numbers')
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f'{where}: proposals must be a (P, 5) or (P, 4) '
                         f'array of numbers ({type(e).__name__}: {e})'
                         ) from None
    if arr.size == 0:
        return np.zeros((0, 5), np.float32)
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(
            f'{where}: proposals must have shape (P, 5) [x1, y1, x2, y2, '
            f'score] or (P, 4), got {arr.shape}' +
            (' (transposed?)' if arr.ndim == 2 and arr.shape[0] in (4, 5)
             else ''))
    with np.errstate(invalid='ignore'):
        huge = np.isfinite(arr) & (np.abs(arr) > _FLOAT32_MAX)
    if huge.any():
        raise ValueError(f'{where}: value {float(arr[huge][0])!r} does '
                         'not fit float32 (it would become inf): not pixel '
                         'coordinates or scores')
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
    return arr.astype(np.float32)


def check_image_ids(img_ids: Sequence, img_paths: Sequence,
                    where: str) -> None:
    """Refuse two different images (paths) with one ``img_id``: a
    proposal file holds one entry per id, so both would get the first
    one's proposals. The same image listed twice (same path) is fine.

    Args:
        img_ids (Sequence): ``N`` ids; ``img_paths`` (Sequence): their
            ``N`` image paths.
        where (str): Who checks, for the message.

    Raises:
        UserInputError: Naming the id, both paths and the fix.
    """
    first = {}
    for img_id, img_path in zip(img_ids, img_paths):
        try:
            seen = first.setdefault(img_id, img_path)
        except TypeError:  # unhashable: refused elsewhere
            continue
        if seen != img_path:
            raise UserInputError(
                f'{where}: img_id {img_id!r} names two different images, '
                f'"{seen}" and "{img_path}" (e.g. a ConcatDataset of '
                'annotation files that each number their images from 1): '
                'a proposal file holds one entry per img_id, so both '
                'would get the same proposals. Fix: give every image its '
                'own id (renumber the image ids of one annotation file), '
                'then mine the proposals again')


def _slashed(path: str) -> str:
    """``path`` normalised, with ``/`` separators (a Windows path too)."""
    path = str(path).replace('\\', '/')
    return posixpath.normpath(path) if path else path


def image_name(img_path: str, img_prefix: Optional[str] = None) -> str:
    """The name under which a proposal file records an image: its
    ``img_path`` relative to the dataset's image folder (``data_prefix
    ['img']``, data root joined, as MMDetection builds ``img_path``),
    after that folder's own name; relative to the working folder for
    ``''``; the basename when it is not under that folder or there is
    none. ``/`` separators.

    The image folder's name and the path below it, not the absolute path:
    the name stays the same when the data root moves to another machine
    or folder, and tells the splits of a dataset apart whose image files
    are named alike (``train/0001.jpg``, ``val/0001.jpg``: each split its
    own ``data_prefix`` and the same ``file_name``); the basename alone
    would not. Readers compare names with :func:`same_image_name`, which
    accepts a name against a longer one ending in it (a basename written
    from an annotation file alone, ``convert_proposals.py --names-from``;
    datasets that split ``data_prefix`` and ``file_name`` differently).

    Example:
        >>> image_name('data/coco/train2017/a.jpg', 'data/coco/train2017/')
        'train2017/a.jpg'
        >>> image_name('data/coco/train2017/a.jpg', 'data/coco/')
        'coco/train2017/a.jpg'
        >>> image_name('/elsewhere/sub/a.jpg', 'data/coco/train2017')
        'a.jpg'
    """
    path = _slashed(img_path)
    if img_prefix is not None:
        prefix = _slashed(img_prefix).rstrip('/')
        if prefix in ('', '.'):
            if not (path.startswith('/') or ':' in path.split('/')[0]):
                return path  # relative to the working folder
        elif path.startswith(prefix + '/'):
            folder = prefix.rsplit('/', 1)[-1]
            below = path[len(prefix) + 1:]
            return f'{folder}/{below}' if folder not in ('', '..') \
                else below
    return path.rsplit('/', 1)[-1]


def image_prefix(data_prefix) -> Optional[str]:
    """The image folder of a dataset's ``data_prefix`` (``'img'``, else
    MMEngine's default key ``'img_path'``), for :func:`image_name`; None
    when there is none (a wrapper such as ``ConcatDataset``: names are
    then basenames)."""
    if not isinstance(data_prefix, Mapping):
        return None
    prefix = data_prefix.get('img', data_prefix.get('img_path'))
    return prefix if isinstance(prefix, str) else None


def same_image_name(a: str, b: str) -> bool:
    """Two recorded image names (:func:`image_name`) name the same image:
    equal, or equal on their common trailing folders and file name
    (``'train2017/a.jpg'`` and ``'a.jpg'``; not ``'val/1.jpg'`` and
    ``'train/1.jpg'``)."""
    if a == b:
        return True
    pa, pb = a.split('/'), b.split('/')
    k = min(len(pa), len(pb))
    return pa[-k:] == pb[-k:]


def names_blob(names: Sequence[str], owner: str) -> np.ndarray:
    """The :data:`NAMES_MEMBER` array of ``names``: ``(B,)`` uint8, their
    UTF-8 joined by NUL, each with ``/`` separators (``'a\\b.jpg'`` is
    stored as ``'a/b.jpg'``, as :func:`image_name` makes it).

    Raises:
        ValueError: Naming ``owner``: a name that is not a string or holds
            a NUL.
    """
    bad = [n for n in names if not isinstance(n, str) or '\0' in n]
    if bad:
        raise ValueError(f'{owner}: image names must be strings without '
                         f'NUL, got {bad[:3]!r}')
    return np.frombuffer('\0'.join(map(_slashed, names)).encode('utf-8'),
                         np.uint8)


def _names_member(img_names: Optional[Sequence[str]], order: np.ndarray,
                  owner: str) -> Optional[np.ndarray]:
    """The :func:`names_blob` of ``img_names`` (one per image, in the
    writer's input order) taken in file ``order``; None without names.

    Raises:
        ValueError: Naming ``owner``: not one name per image.
    """
    if img_names is None:
        return None
    img_names = list(img_names)
    if len(img_names) != len(order):
        raise ValueError(f'{owner}: {len(img_names)} image names for '
                         f'{len(order)} images')
    return names_blob([img_names[k] for k in order.tolist()], owner)


def check_image_names(path: str, props, img_ids: Sequence,
                      img_names: Sequence[str],
                      entry: str = 'proposal_file') -> None:
    """Refuse a proposal file made for other images: one that records
    image names (:attr:`ProposalFile.has_names`) under which an image id
    of the dataset has another name (:func:`same_image_name`). Ids, the
    number of scales and image sizes can all match a file of another
    split numbered the same way (train and val both ``1..N``, one camera
    size); its proposals would give wrong negative chips. A file without
    names passes (nothing to compare).

    Args:
        path (str): The file (for messages).
        props (Mapping): Its proposals (:func:`open_proposals`), every id
            of ``img_ids`` in it.
        img_ids (Sequence): The dataset's ``N`` image ids.
        img_names (Sequence[str]): Their ``N`` names (:func:`image_name`;
            None or ``''``: not known, not compared).
        entry (str): The setting that names the file, for the fix.

    Raises:
        UserInputError: Naming the file, how many images differ, the
            first :data:`SHOWN_NAMES` ids with both names, and the fix.
    """
    if not getattr(props, 'has_names', False):
        return
    ids, mine = list(img_ids), list(img_names)
    if len(ids) != len(mine):
        raise ValueError(f'check_image_names: {len(mine)} names for '
                         f'{len(ids)} images')
    if not ids:
        return
    # vectorized: train2017's 118k names in about 30 ms
    pos = props.positions(ids)
    theirs = props.name_array()[np.maximum(pos, 0)]
    compared = (pos >= 0) & np.array([bool(n) for n in mine])
    differ = np.flatnonzero(compared & (theirs != np.array(mine, object)))
    bad = {}
    for j in differ.tolist():
        k = int(pos[j])
        if k not in bad and not same_image_name(theirs[j],
                                                _slashed(mine[j])):
            bad[k] = (ids[j], theirs[j], mine[j])
    if not bad:
        return
    bad = list(bad.values())
    num = int(np.unique(pos[compared]).size)
    shown = '; '.join(f'img_id {i!r}: "{a}" in the file, "{b}" in the '
                      'dataset' for i, a, b in bad[:SHOWN_NAMES])
    count = f'all {len(bad)}' if len(bad) == num else str(len(bad))
    raise UserInputError(
        f'proposal file "{path}" was made for other images: {count} of '
        f'the dataset\'s {num} images have another file name in it '
        f'({shown}{"; ..." if len(bad) > SHOWN_NAMES else ""}): the same '
        'image ids (and sizes) but another split or dataset, whose '
        'proposals would give wrong negative chips. Fix: mine the '
        'proposals again for this dataset (tools/mine_proposals.py), or '
        f'point {entry} at the file mined for it')


def scale_record(scales) -> List[dict]:
    """The chip scales a file was mined for, as stored in its meta data:
    ``[{'rule': 'factor', 'value': 1.667, 'valid_range': [32, 150]},
    ...]`` (``valid_range`` max None for no bound; rule and value of
    :attr:`~mmsnip.chips.ScaleSpec.resize_rule`, so that one scale
    written two ways compares equal).

    Args:
        scales (Sequence[ScaleSpec]): ``ChipConfig.scales``.
    """
    out = []
    for spec in scales:
        # Canonical (ScaleSpec.resize_rule): short_max (1200, 800) is
        # (800, 1200), (512, 512) is max_side 512.
        rule, value = spec.resize_rule
        lo, hi = spec.valid_range
        out.append(dict(
            rule=rule,
            value=list(value) if isinstance(value, tuple) else value,
            valid_range=[lo, None if hi is None or np.isinf(hi) else hi]))
    return json.loads(json.dumps(out))


def _top_n(rows: np.ndarray, top_n: Optional[int]) -> np.ndarray:
    """The ``top_n`` highest-scoring rows (stable for equal scores; NaN
    scores last); all rows when ``top_n`` is None."""
    if top_n is None or len(rows) <= top_n:
        return rows
    score = np.nan_to_num(rows[:, 4], nan=-np.inf)
    order = np.argsort(-score, kind='stable')[:top_n]
    return rows[np.sort(order)]


def save_proposals(path: str,
                   proposals: Dict[Union[int, str], List[np.ndarray]],
                   num_scales: int, top_n: Optional[int] = None,
                   box_dtype: str = 'auto',
                   score_dtype: str = 'uint8',
                   scales: Optional[list] = None,
                   img_names: Optional[Mapping] = None) -> None:
    """Write a compact proposal file atomically (:func:`atomic_open`).

    Args:
        path (str): The file; its folder is created. Any extension (the
            configs' ``.pkl`` names keep working: readers look at the
            content).
        proposals (dict): ``img_id -> [ (P_s, 5) array per scale ]``,
            rows ``[x1, y1, x2, y2, score]`` in ORIGINAL pixels (``(P_s,
            4)``: every score 1; any other shape is an error naming the
            img_id and scale). Ids are the dataset's ``img_id``: integers
            or strings, stored as they are.
        num_scales (int): Scales of the chip config, ``S``.
        top_n (int, optional): Keep at most this many highest-scoring
            proposals per image and scale.
        box_dtype (str): ``'auto'`` (float16 when every finite coordinate
            is <= 2048, else float32), ``'float16'`` (an error when a
            coordinate exceeds 2048: it would lose more than 1 px, or
            become inf) or ``'float32'``.
        score_dtype (str): ``'uint8'`` (version 3: quantised scores, rows
            by descending score) or ``'float16'`` (version 2: float16
            scores, rows in input order; for readers older than version 3).
        scales (Sequence[ScaleSpec], optional): The chip scales the
            proposals were mined at, recorded in the meta data
            (:func:`scale_record`) so that readers refuse a config of
            other scales; None records nothing.
        img_names (Mapping, optional): ``img_id -> name`` of every image
            (:func:`image_name`), recorded so that readers refuse a
            dataset whose images of these ids have other names; None
            records none (readers then compare ids only).

    Example:
        >>> save_proposals('props.npz', {7: [np.array([[5, 5, 9, 9, .2],
        ...                                            [0, 0, 10, 10, .9]])]},
        ...                num_scales=1)
        >>> load_proposals('props.npz', [7], 1)[7][0]  # by score
        array([[ 0. ,  0. , 10. , 10. ,  0.9],
               [ 5. ,  5. ,  9. ,  9. ,  0.2]], dtype=float32)
    """
    names = None
    if img_names is not None:
        lacking = [k for k in proposals if k not in img_names]
        if lacking:
            raise ValueError(f'save_proposals: img_names lacks img_id '
                             f'{lacking[:5]!r}')
        names = [img_names[k] for k in proposals]
    write_proposal_groups(path, list(proposals), num_scales,
                          lambda: [proposals], top_n=top_n,
                          box_dtype=box_dtype, score_dtype=score_dtype,
                          owner='save_proposals', scales=scales,
                          img_names=names)


def write_proposal_groups(path: str, img_ids, num_scales: int,
                          groups: Callable[[], Iterable[dict]],
                          top_n: Optional[int] = None,
                          box_dtype: str = 'auto',
                          score_dtype: str = 'uint8',
                          owner: str = 'write_proposal_groups',
                          scales: Optional[list] = None,
                          shared_scales: bool = False,
                          pool_iou: Optional[float] = None,
                          img_names: Optional[Sequence[str]] = None
                          ) -> None:
    """Write a compact proposal file from proposals that arrive in groups
    (a miner's shards), holding one group at a time besides the file's own
    arrays (9 bytes per proposal), or only its scores (1 byte per
    proposal; 2 in version 2) when the groups give the images in file
    order (ids sorted, each image's scales in turn): their boxes then go
    into the file as they come (:func:`_write_streamed`). The same file
    as :func:`save_proposals` of all groups merged into one dict.

    Args:
        path (str): The file (written atomically).
        img_ids (Sequence): The file's images; each must be in exactly one
            group. Stored sorted.
        num_scales (int): ``S``.
        groups (callable): Returns an iterable of dicts ``img_id -> [
            (P_s, 5) or (P_s, 4) array per scale ]`` (ORIGINAL pixels);
            called twice (sizes, then rows), the same rows in the same
            order each time.
        top_n, box_dtype, score_dtype, scales: As :func:`save_proposals`.
        owner (str): The function named in errors.
        shared_scales (bool): Every image has the same rows at every
            scale (its ``S`` arrays are one array object): store them once
            (version 4, ``score_dtype='uint8'`` only).
        pool_iou (float, optional): The rows were pooled over the scales
            by one NMS at this IoU
            (:func:`~mmsnip.datasets.proposal_pool.pool_proposals`):
            recorded in the meta data (``pool_iou``); None: they were not.
        img_names (Sequence[str], optional): The name of each image of
            ``img_ids`` (:func:`image_name`), stored in file order
            (:data:`NAMES_MEMBER`); None stores none.

    Raises:
        MissingProposalsError: An image in no group (after reading them
            all once), naming ``owner``.
        ValueError: Naming ``owner``: an image in two groups, an image
            that is not in ``img_ids``, a wrong number of scales; naming
            also the img_id and scale: rows of another shape than ``(P,
            5)`` / ``(P, 4)`` (:func:`proposal_array`), a coordinate over
            2048 with ``box_dtype='float16'``.
    """
    pool_iou = _check_write_options(box_dtype, score_dtype, top_n,
                                    pool_iou, shared_scales, owner)
    # row sets per image: one for every scale, or one per scale
    runs = 1 if shared_scales else num_scales
    keys = list(img_ids)
    id_array = image_id_array(keys, owner)
    order = np.argsort(id_array, kind='stable')
    id_array = id_array[order]
    keys = [keys[k] for k in order.tolist()]
    position = {k: n for n, k in enumerate(keys)}
    if len(position) != len(keys):
        raise ValueError(f'{owner}: img_ids repeat an image')
    names = _names_member(img_names, order, owner)

    def row_sets():
        return _group_row_sets(groups, keys, position, num_scales,
                               shared_scales, top_n, owner)

    # Pass 1: sizes, the finite score range, the largest coordinate, and
    # whether the row sets come in file order (then pass 2 streams).
    survey = _survey_row_sets(row_sets(), len(keys), runs)
    big, (big_img, big_scale) = survey.largest_coord
    if box_dtype == 'float16' and big > FLOAT16_MAX_COORD:
        raise ValueError(
            f'{owner}: box_dtype=\'float16\' but img_id '
            f'{keys[big_img]!r}, scale {big_scale} has a coordinate of '
            f'{big:g} px: float16 steps exceed 1 px beyond '
            f'{FLOAT16_MAX_COORD:g} px (and overflow to inf beyond 65504); '
            'use box_dtype=\'auto\' or \'float32\'')
    lo, hi = survey.score_range
    offsets = np.zeros(survey.counts.size + 1, np.int64)
    np.cumsum(survey.counts.ravel(), out=offsets[1:])
    dtype = np.float32 if box_dtype == 'float32' or (
        box_dtype == 'auto' and big > FLOAT16_MAX_COORD) else np.float16
    # Pass 2: the rows as stored, into the file as they come when in file
    # order, else into place in memory first.
    version3 = score_dtype == 'uint8'
    stored = _stored_row_sets(row_sets(), runs, dtype,
                              (lo, hi) if version3 else None)
    meta = _file_meta(path, num_scales, top_n,
                      (lo, hi) if version3 else None, scales=scales,
                      shared_scales=shared_scales, pool_iou=pool_iou,
                      names=names)
    scores = np.empty(offsets[-1], np.uint8 if version3 else np.float16)
    if survey.in_file_order:
        _write_streamed(path, meta, id_array, offsets, dtype, scores,
                        stored, owner, names)
        return
    boxes = np.empty((offsets[-1], 4), dtype)
    for run, run_boxes, run_scores in stored:
        a, b = offsets[run], offsets[run + 1]
        boxes[a:b], scores[a:b] = run_boxes, run_scores
    _write_file(path, meta, _with_names(
        dict(img_ids=id_array, offsets=offsets, boxes=boxes,
             scores=scores), names))


def _check_write_options(box_dtype: str, score_dtype: str,
                         top_n: Optional[int], pool_iou: Optional[float],
                         shared_scales: bool, owner: str
                         ) -> Optional[float]:
    """Refuse :func:`write_proposal_groups` options it cannot honour
    (``ValueError`` naming ``owner``); returns ``pool_iou`` checked
    (:func:`~mmsnip.datasets.proposal_pool.check_pool_iou`)."""
    if box_dtype not in ('auto', 'float16', 'float32'):
        raise ValueError(f"{owner}: box_dtype must be 'auto', 'float16' or "
                         f"'float32', got {box_dtype!r}")
    if score_dtype not in ('uint8', 'float16'):
        raise ValueError(f"{owner}: score_dtype must be 'uint8' or "
                         f"'float16', got {score_dtype!r}")
    if top_n is not None and int(top_n) < 1:
        raise ValueError(f'{owner}: top_n must be >= 1, got {top_n}')
    if pool_iou is not None:
        pool_iou = check_pool_iou(pool_iou, owner)
    if shared_scales and score_dtype != 'uint8':
        raise ValueError(f"{owner}: shared_scales needs score_dtype "
                         "'uint8' (version 4 is version 3 with shared "
                         "rows)")
    return pool_iou


def _group_row_sets(groups: Callable[[], Iterable[dict]], keys: list,
                    position: Dict, num_scales: int, shared_scales: bool,
                    top_n: Optional[int], owner: str
                    ) -> Iterator[Tuple[int, int, np.ndarray]]:
    """The row sets of every group of :func:`write_proposal_groups`, each
    image checked once.

    Yields:
        tuple: ``(n, s, rows)``: the image's position in ``keys`` (file
        order), the scale, its ``(P, 5)`` float32 rows (ORIGINAL pixels)
        with ``top_n`` applied. Scales given the same array object (a
        shared proposal set) are checked and cut once; with
        ``shared_scales`` only scale 0 is yielded.

    Raises:
        ValueError: Naming ``owner``: an image in two groups or not in
            ``keys``, a wrong number of scales, other rows at other scales
            with ``shared_scales``, mis-shaped rows.
        MissingProposalsError: After the last group, images of ``keys``
            that no group gave.
    """
    runs = 1 if shared_scales else num_scales
    seen = np.zeros(len(keys), bool)
    for group in groups():
        for img_id, per_scale in group.items():
            n = position.get(img_id)
            if n is None or seen[n]:
                raise ValueError(
                    f'{owner}: img_id {img_id!r} is ' +
                    ('in two groups' if n is not None else
                     'not among the file\'s images'))
            seen[n] = True
            per_scale = list(per_scale)
            if len(per_scale) != num_scales:
                raise ValueError(f'{owner}: img_id {img_id} has '
                                 f'{len(per_scale)} scales, expected '
                                 f'{num_scales}')
            if shared_scales and any(r is not per_scale[0]
                                     for r in per_scale):
                raise ValueError(
                    f'{owner}: img_id {img_id!r} has other rows at '
                    'other scales; shared_scales needs one array '
                    'object for every scale')
            given = done = None
            for s, rows in enumerate(per_scale[:runs]):
                if rows is not given:
                    where = f'{owner}: img_id {img_id!r}, scale {s}'
                    given = rows
                    done = _top_n(proposal_array(rows, where), top_n)
                yield n, s, done
    if not seen.all():
        missing = [keys[n] for n in np.flatnonzero(~seen)]
        raise MissingProposalsError(
            f'{owner}: {len(missing)} images have no proposals (e.g. '
            f'img_id {missing[:5]})', missing)


class _RowSurvey(NamedTuple):
    """What :func:`_survey_row_sets` learns in one pass over the rows.

    Attributes:
        counts (np.ndarray): ``(N, runs)`` int64 rows per image and run.
        score_range (tuple): The finite scores' ``(min, max)``; ``(0, 0)``
            without any.
        largest_coord (tuple): ``(value, (n, s))``: the largest finite
            absolute coordinate (ORIGINAL pixels; 0 without any) and where.
        in_file_order (bool): The row sets came image by image in file
            order, each image's runs in turn.
    """
    counts: np.ndarray
    score_range: Tuple[float, float]
    largest_coord: Tuple[float, Tuple[int, int]]
    in_file_order: bool


def _survey_row_sets(row_sets: Iterable[Tuple[int, int, np.ndarray]],
                     num_images: int, runs: int) -> _RowSurvey:
    """Pass 1 of :func:`write_proposal_groups` over
    :func:`_group_row_sets`'s ``(n, s, rows)``."""
    counts = np.zeros((num_images, runs), np.int64)
    lo, hi, big, big_at = np.inf, -np.inf, 0.0, (0, 0)
    in_file_order, last = True, -1
    for n, s, rows in row_sets:
        in_file_order &= n * runs + s > last
        last = n * runs + s
        counts[n, s] = len(rows)
        score = rows[:, 4].astype(np.float64)
        score = score[np.isfinite(score)]
        if score.size:
            lo, hi = min(lo, float(score.min())), max(hi, float(score.max()))
        coords = rows[:, :4][np.isfinite(rows[:, :4])]
        if coords.size and float(np.abs(coords).max()) > big:
            big, big_at = float(np.abs(coords).max()), (n, s)
    return _RowSurvey(counts, (lo, hi) if lo <= hi else (0.0, 0.0),
                      (big, big_at), in_file_order)


def _stored_row_sets(row_sets: Iterable[Tuple[int, int, np.ndarray]],
                     runs: int, box_dtype, score_range: Optional[tuple]
                     ) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """Pass 2 of :func:`write_proposal_groups`: each row set as stored.

    With ``score_range`` (version 3): rows by descending score (NaN last,
    stable), scores as uint8 codes of that range (:func:`score_codes`);
    without (version 2): rows in input order, float16 scores.

    Yields:
        tuple: ``(run, boxes, scores)``: the run index ``n * runs + s``,
        ``(P, 4)`` boxes of ``box_dtype`` (ORIGINAL pixels), ``(P,)``
        scores.
    """
    for n, s, rows in row_sets:
        if score_range is not None:
            score = rows[:, 4].astype(np.float64)
            rank = _by_score(score)
            yield n * runs + s, rows[rank, :4].astype(box_dtype), \
                score_codes(score[rank], *score_range)
        else:
            yield n * runs + s, rows[:, :4].astype(box_dtype), \
                rows[:, 4].astype(np.float16)


def score_codes(scores: np.ndarray, score_min: float, score_max: float
                ) -> np.ndarray:
    """Scores as version-3 uint8 codes (see the module docstring).

    Args:
        scores (np.ndarray): ``(T,)`` float scores.
        score_min, score_max (float): The file's finite score range.

    Returns:
        np.ndarray: ``(T,)`` uint8: ``round((s - min) / step)`` clipped to
        ``[0, SCORE_LEVELS]``, 0 for every finite score when the range is
        one value (``step`` 0); -inf -> 0 and +inf -> SCORE_LEVELS always;
        :data:`SCORE_NAN` for NaN. Monotone: a higher score never gets a
        lower code.
    """
    s = np.asarray(scores, np.float64)
    span = score_max - score_min
    scale = SCORE_LEVELS / span if span > 0 else 0.0
    finite = np.isfinite(s)
    q = np.zeros(s.shape)
    q[finite] = np.rint(np.clip((s[finite] - score_min) * scale, 0,
                                SCORE_LEVELS))
    q[s == np.inf] = SCORE_LEVELS
    q[np.isnan(s)] = SCORE_NAN
    return q.astype(np.uint8)


def score_table(score_min: float, score_max: float) -> np.ndarray:
    """``(256,)`` float32: the score of each version-3 code (NaN for
    :data:`SCORE_NAN`)."""
    table = np.full(256, np.nan, np.float32)
    table[:SCORE_LEVELS + 1] = score_min + np.arange(SCORE_LEVELS + 1) * (
        (score_max - score_min) / SCORE_LEVELS)
    return table


def _finite_range(scores: np.ndarray, chunk_rows: int = 1 << 22):
    """``(min, max)`` of the finite scores, ``(0, 0)`` if none; in
    chunks (no full-size temporaries)."""
    lo, hi = np.inf, -np.inf
    for a in range(0, len(scores), chunk_rows):
        s = np.asarray(scores[a:a + chunk_rows], np.float64)
        s = s[np.isfinite(s)]
        if s.size:
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _by_score(score: np.ndarray, *groups: np.ndarray) -> np.ndarray:
    """The version-3 row order: by ``groups`` (outermost first), then by
    descending score, NaN last, stable (the order of ``np.argsort(-score,
    kind='stable')`` within each group)."""
    # lexsort: last key first, stable.
    return np.lexsort((-score, np.isnan(score)) + groups[::-1])


def _sort_and_quantise(offsets: np.ndarray, boxes: np.ndarray,
                       scores: np.ndarray, score_min: float,
                       score_max: float, chunk_rows: int = 1 << 22):
    """Version-3 rows: each ``offsets`` segment by descending score
    (stable; NaN last: the order of ``np.argsort(-score,
    kind='stable')``) and the scores as :func:`score_codes`, in chunks of
    about ``chunk_rows`` rows (whole segments).

    Returns:
        tuple: ``(boxes (T, 4), codes (T,) uint8)``, new arrays.
    """
    out_boxes = np.empty_like(boxes)
    codes = np.empty(len(scores), np.uint8)
    num_seg = len(offsets) - 1
    first = 0
    while first < num_seg:
        last = int(np.searchsorted(offsets, offsets[first] + chunk_rows,
                                   side='right')) - 1
        last = min(max(last, first + 1), num_seg)
        a, b = int(offsets[first]), int(offsets[last])
        seg = np.repeat(np.arange(last - first),
                        np.diff(offsets[first:last + 1]))
        s = np.asarray(scores[a:b], np.float64)
        order = _by_score(s, seg)
        out_boxes[a:b] = boxes[a:b][order]
        codes[a:b] = score_codes(s[order], score_min, score_max)
        first = last
    return out_boxes, codes


def write_proposal_arrays(path: str, img_ids: np.ndarray,
                          offsets: np.ndarray, boxes: np.ndarray,
                          scores: np.ndarray, num_scales: int,
                          top_n: Optional[int] = None,
                          score_dtype: str = 'uint8',
                          img_names: Optional[Sequence[str]] = None
                          ) -> None:
    """Write a compact proposal file from its arrays (see the module
    docstring for the layout); :func:`save_proposals` without the per-image
    dict, for writers that already hold flat arrays (a miner's shards, the
    benchmark's train2017-sized file).

    Args:
        img_ids (np.ndarray): ``(N,)`` image ids, integers or strings
            (:func:`image_id_array`).
        offsets (np.ndarray): ``(N * S + 1,)`` int row offsets.
        boxes (np.ndarray): ``(T, 4)`` float16 or float32 xyxy, ORIGINAL
            pixels.
        scores (np.ndarray): ``(T,)`` float scores.
        num_scales (int): ``S``.
        top_n (int, optional): Recorded in the meta data.
        score_dtype (str): ``'uint8'`` (version 3: rows sorted by
            descending score within each image and scale, scores
            quantised) or ``'float16'`` (version 2).
        img_names (Sequence[str], optional): ``(N,)`` names of the
            images (:func:`image_name`), in the order of ``img_ids``;
            None stores none.
    """
    if score_dtype not in ('uint8', 'float16'):
        raise ValueError("write_proposal_arrays: score_dtype must be "
                         f"'uint8' or 'float16', got {score_dtype!r}")
    img_ids = image_id_array(img_ids, 'write_proposal_arrays')
    names = _names_member(img_names, np.arange(len(img_ids)),
                          'write_proposal_arrays')
    offsets = np.asarray(offsets, np.int64)
    problem = _index_problem(img_ids, offsets, num_scales, len(boxes),
                             len(scores))
    if problem:
        raise ValueError(f'write_proposal_arrays: {problem}')
    if np.dtype(boxes.dtype) not in (np.float16, np.float32):
        raise ValueError('write_proposal_arrays: boxes must be float16 or '
                         f'float32, got {boxes.dtype}')
    boxes = np.ascontiguousarray(boxes).reshape(-1, 4)
    score_range = None
    if score_dtype == 'float16':
        scores = np.asarray(scores).astype(np.float16, copy=False)
    else:
        score_range = _finite_range(scores)
        boxes, scores = _sort_and_quantise(offsets, boxes, scores,
                                           *score_range)
    _write_arrays(path, num_scales, top_n, score_range,
                  dict(img_ids=img_ids, offsets=offsets, boxes=boxes,
                       scores=scores), names=names)


def _write_arrays(path: str, num_scales: int, top_n: Optional[int],
                  score_range: Optional[tuple],
                  arrays: Dict[str, np.ndarray],
                  scales: Optional[list] = None,
                  shared_scales: bool = False,
                  pool_iou: Optional[float] = None,
                  names: Optional[np.ndarray] = None) -> None:
    """Write a compact file's arrays (and ``names``, a
    :func:`names_blob`) with their meta data (:func:`_file_meta`) and
    ``content_id``, atomically (:func:`atomic_open`; the folder is
    created)."""
    _write_file(path, _file_meta(path, num_scales, top_n, score_range,
                                 scales, shared_scales, pool_iou, names),
                _with_names(arrays, names))


def _with_names(arrays: Dict[str, np.ndarray],
                names: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
    """``arrays`` plus the :data:`NAMES_MEMBER` ``names``, if any."""
    return arrays if names is None else dict(arrays,
                                             **{NAMES_MEMBER: names})


def _file_meta(path: str, num_scales: int, top_n: Optional[int],
               score_range: Optional[tuple],
               scales: Optional[list] = None,
               shared_scales: bool = False,
               pool_iou: Optional[float] = None,
               names: Optional[np.ndarray] = None) -> dict:
    """A compact file's meta data but its ``content_id``: version 3 with
    the codes' ``score_range`` ``(min, max)`` (version 4 with
    ``shared_scales``), version 2 (float16 scores) without; ``scales``
    (ScaleSpecs or :func:`scale_record` dicts) and ``pool_iou`` recorded
    when given; ``names_sha256`` of the :func:`names_blob` ``names``
    when given (so the ``content_id`` covers the names, while a reader
    that hashes only the four arrays still verifies the file)."""
    meta = dict(format=FORMAT, num_scales=int(num_scales), top_n=top_n)
    if names is not None:
        meta['names_sha256'] = hashlib.sha256(names.tobytes()).hexdigest()
    if pool_iou is not None:
        meta['pool_iou'] = float(pool_iou)
    if scales is not None:
        record = [s if isinstance(s, dict) else scale_record([s])[0]
                  for s in scales]
        if len(record) != num_scales:
            raise UserInputError(
                f'proposal file "{path}": {len(record)} scales recorded for '
                f'{num_scales} scales of rows')
        meta['scales'] = record
    if score_range is None:
        meta['version'] = 2
    else:
        meta.update(version=VERSION, score_min=score_range[0],
                    score_max=score_range[1])
        if shared_scales:
            meta.update(version=SHARED_VERSION, shared_scales=True)
    return meta


def _write_file(path: str, meta: dict,
                arrays: Dict[str, np.ndarray]) -> None:
    """``arrays`` and ``meta`` (given its ``content_id`` here) as an
    uncompressed ``.npz``, atomically; the folder is created."""
    meta = dict(meta, content_id=_content_digests(meta, arrays)[0])
    arrays = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(),
                                             np.uint8))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    # a writer killed mid-write left its temporary file: removed here
    with atomic_open(path, remove_leftovers=True) as f:
        np.savez(f, **arrays)


# Bytes of boxes gathered before each write of _write_streamed.
STREAM_CHUNK_BYTES = 1 << 22


def _write_streamed(path: str, meta: dict, img_ids: np.ndarray,
                    offsets: np.ndarray, box_dtype, scores: np.ndarray,
                    runs: Iterator[tuple], owner: str,
                    names: Optional[np.ndarray] = None) -> None:
    """The file :func:`_write_file` writes, its boxes written as they come
    (``np.savez``'s members: the same zip of ``.npy`` members, in the
    same order, the ``content_id`` hashed on the way): it holds the
    scores (1 or 2 bytes per row) instead of every array.

    Args:
        meta (dict): :func:`_file_meta`.
        img_ids, offsets (np.ndarray): The index, ``(N,)`` and ``(N * R +
            1,)``.
        box_dtype: float16 or float32.
        scores (np.ndarray): ``(T,)`` of the scores' stored dtype, filled
            here.
        runs (Iterator[tuple]): ``(run index, (P, 4) boxes, (P,) scores)``
            for every run index ``0, 1, ..., N * R - 1`` in turn.
        names (np.ndarray, optional): The :data:`NAMES_MEMBER` array.
    """
    from numpy.lib import format as npy
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name, arr in (('img_ids', img_ids), ('offsets', offsets)):
        digest.update(name.encode() + arr.dtype.str.encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    box_dtype = np.dtype(box_dtype)
    digest.update(b'boxes' + box_dtype.str.encode())
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_open(path, remove_leftovers=True) as f, zipfile.ZipFile(
            f, 'w', zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in (('img_ids', img_ids), ('offsets', offsets)):
            with zf.open(name + '.npy', 'w', force_zip64=True) as member:
                npy.write_array(member, arr, allow_pickle=False)
        with zf.open('boxes.npy', 'w', force_zip64=True) as member:
            npy.write_array_header_1_0(member, dict(
                descr=npy.dtype_to_descr(box_dtype), fortran_order=False,
                shape=(int(offsets[-1]), 4)))
            pending, size, expected = [], 0, 0
            for run, run_boxes, run_scores in runs:
                a, b = offsets[expected], offsets[expected + 1]
                if run != expected or len(run_boxes) != b - a:
                    raise ValueError(
                        f'{owner}: the groups gave row set {run} of '
                        f'{len(run_boxes)} rows where {expected} of '
                        f'{b - a} was due (other rows or another order '
                        'than the first time)')
                scores[a:b] = run_scores
                pending.append(run_boxes)
                size += run_boxes.nbytes
                expected += 1
                if size >= STREAM_CHUNK_BYTES:
                    chunk = np.concatenate(pending).tobytes()
                    digest.update(chunk)
                    member.write(chunk)
                    pending, size = [], 0
            chunk = np.concatenate(pending + [np.zeros((0, 4), box_dtype)]
                                   ).tobytes()
            digest.update(chunk)
            member.write(chunk)
        digest.update(b'scores' + scores.dtype.str.encode())
        digest.update(scores.data)
        with zf.open('scores.npy', 'w', force_zip64=True) as member:
            npy.write_array(member, scores, allow_pickle=False)
        if names is not None:
            with zf.open(NAMES_MEMBER + '.npy', 'w',
                         force_zip64=True) as member:
                npy.write_array(member, names, allow_pickle=False)
        meta = dict(meta, content_id=digest.hexdigest())
        with zf.open('meta.npy', 'w', force_zip64=True) as member:
            npy.write_array(member, np.frombuffer(
                json.dumps(meta).encode(), np.uint8), allow_pickle=False)


def _content_digests(meta: dict, arrays: Dict[str, np.ndarray],
                     arrays_only: bool = False,
                     chunk_bytes: int = 1 << 24,
                     descriptor: Optional[int] = None) -> List[str]:
    """The ``content_id`` of a compact file: sha256 of its meta data (less
    ``content_id``) and of each array's name, dtype and bytes, read in
    chunks (memory-mapped arrays are not loaded whole). With
    ``arrays_only`` also, in the same pass, the sha256 of the arrays alone:
    the ``content_id`` of the first version-2 writer's files (git
    ``0e7ec7f``). ``descriptor``: the file of memory-mapped arrays, open
    (:func:`_read_rows`).

    Returns:
        list[str]: One hex digest, or two with ``arrays_only``.
    """
    digests = [hashlib.sha256()]
    digests[0].update(json.dumps({k: v for k, v in meta.items()
                                  if k != 'content_id'},
                                 sort_keys=True).encode())
    if arrays_only:
        digests.append(hashlib.sha256())
    for name in ('img_ids', 'offsets', 'boxes', 'scores'):
        arr = arrays[name]
        for digest in digests:
            digest.update(name.encode() + arr.dtype.str.encode())
        for chunk in _byte_chunks(arr, chunk_bytes, descriptor):
            for digest in digests:
                digest.update(chunk)
    return [d.hexdigest() for d in digests]


def _byte_chunks(arr: np.ndarray, chunk_bytes: int,
                 descriptor: Optional[int] = None) -> Iterator:
    """The bytes of ``arr`` (C order) in chunks of whole rows, each read
    by :func:`_read_rows` (a memory-mapped array from its file, open as
    ``descriptor``, so hashing a 1 GB file adds no mapped pages to the
    process's resident memory)."""
    rows = max(1, chunk_bytes // max(1, arr[:1].nbytes))
    for a in range(0, len(arr), rows):
        yield _read_rows(arr, a, min(a + rows, len(arr)), descriptor).data


def _read_rows(arr: np.ndarray, first: int, last: int,
               descriptor: Optional[int]) -> np.ndarray:
    """``arr[first:last]``, C-contiguous. A memory-mapped array is read
    into a new array from its file (open as ``descriptor``) with
    positioned reads (no shared file position: safe in forked processes),
    so that reading a 1 GB file block by block adds no mapped pages to the
    process's resident memory.

    Raises:
        EOFError: Naming the file, when it ends inside the rows (it changed
            after it was opened).
    """
    if descriptor is None or not isinstance(arr, np.memmap) or \
            not arr.flags.c_contiguous or not isinstance(arr.filename, str):
        return np.ascontiguousarray(arr[first:last])
    out = np.empty((last - first, ) + arr.shape[1:], arr.dtype)
    buffer = out.reshape(-1).view(np.uint8)
    position = arr.offset + first * (arr.nbytes // max(1, len(arr)))
    done = 0
    while done < len(buffer):
        got = os.preadv(descriptor, [buffer[done:]], position + done)
        if not got:
            raise EOFError(f'{arr.filename} ends inside an array')
        done += got
    return out


def image_id_array(img_ids, owner: str) -> np.ndarray:
    """``(N,)`` image ids as stored: int64 when they are integers, numpy
    unicode strings when they are strings (VOC's ``'2008_000005'``, file
    names).

    Raises:
        ValueError: Naming ``owner``, when the ids mix integers and strings
            or are of another type.
    """
    if isinstance(img_ids, np.ndarray) and img_ids.dtype.kind in 'iuU':
        return img_ids.astype(np.int64) if img_ids.dtype.kind in 'iu' \
            else img_ids.reshape(-1)
    ids = list(img_ids)
    if ids and all(isinstance(i, str) for i in ids):
        return np.array(ids, dtype=str)
    bad = [i for i in ids if not (is_integer(i) or isinstance(i, str))]
    if bad:
        raise ValueError(f'{owner}: image ids must be integers or strings, '
                         f'got {bad[:3]!r}')
    texts = [i for i in ids if isinstance(i, str)]
    if texts:
        raise ValueError(f'{owner}: image ids mix integers and strings '
                         f'(e.g. {texts[:3]!r}); a dataset\'s img_id is '
                         'one or the other')
    return np.array(ids, np.int64).reshape(-1)


def _index_problem(img_ids: np.ndarray, offsets: np.ndarray,
                   num_scales: int, num_boxes: int,
                   num_scores: int) -> Optional[str]:
    """What is wrong with a compact file's index, or None: ``img_ids``
    ``(N,)`` distinct integers or strings; ``offsets`` ``(N * S + 1,)``
    integers from 0, non-decreasing, ending at the number of rows (boxes
    and scores). ``num_scales``: row sets per image (1 in a version-4
    file)."""
    if img_ids.ndim != 1 or img_ids.dtype.kind not in 'iuU':
        return f'img_ids must be (N,) integers or strings, got ' \
            f'{img_ids.shape} {img_ids.dtype}'
    if len(np.unique(img_ids)) != len(img_ids):
        return 'img_ids repeat an image'
    if offsets.dtype.kind not in 'iu' or \
            offsets.shape != (len(img_ids) * num_scales + 1, ):
        return f'offsets {offsets.shape} {offsets.dtype} do not fit ' \
            f'{len(img_ids)} images x {num_scales} scales (integers)'
    if offsets[0] != 0 or (np.diff(offsets) < 0).any():
        return 'offsets must start at 0 and never decrease'
    if not offsets[-1] == num_boxes == num_scores:
        return f'offsets end at {offsets[-1]}, not at the number of ' \
            f'boxes ({num_boxes}) and scores ({num_scores})'
    return None


def _npz_memmap(path: str) -> Dict[str, np.ndarray]:
    """Memory-map every member of an uncompressed ``.npz``.

    ``np.load(mmap_mode=...)`` ignores the mode for ``.npz`` files; this
    finds each member's ``.npy`` header inside the zip and maps its data.
    """
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, 'rb') as raw:
        for member in zf.infolist():
            name = member.filename
            if not name.endswith('.npy'):
                continue
            if member.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f'member {name} is compressed')
            raw.seek(member.header_offset)
            local = raw.read(30)
            if local[:4] != b'PK\x03\x04':
                raise ValueError(f'member {name}: bad zip local header')
            name_len = int.from_bytes(local[26:28], 'little')
            extra_len = int.from_bytes(local[28:30], 'little')
            raw.seek(member.header_offset + 30 + name_len + extra_len)
            try:
                version = np.lib.format.read_magic(raw)
                if version == (1, 0):
                    shape, fortran, dtype = \
                        np.lib.format.read_array_header_1_0(raw)
                else:
                    shape, fortran, dtype = \
                        np.lib.format.read_array_header_2_0(raw)
            except Exception as e:  # numpy parses the header as Python
                raise ValueError(f'member {name}: bad array header '
                                 f'({type(e).__name__}: {e})') from e
            if dtype.hasobject or fortran:
                raise ValueError(f'member {name}: unsupported array')
            offset = raw.tell()
            if int(np.prod(shape)) == 0:
                arr = np.zeros(shape, dtype)
            else:
                arr = np.memmap(path, dtype=dtype, mode='r', offset=offset,
                                shape=shape)
            out[name[:-4]] = arr
    return out


class ProposalFile(Mapping):
    """A compact proposal file, read lazily: ``img_id -> [ (P_s, 5)
    float32 array per scale ]``.

    Opening maps the arrays (no data is read but the ``(N,)`` ids and
    ``(N * R + 1,)`` offsets, ``R`` row sets per image) and checks the
    file's structure (meta data, index, array shapes): a truncated or
    damaged file is an error naming it. ``file[img_id]`` reads that
    image's rows. :meth:`verify` checks the rows themselves against the
    recorded ``content_id`` (reads the whole file; the chip table does it
    before building from the file).
    Picklable (a dataloader worker or a chip-building process reopens the
    file by its path).

    Attributes:
        path (str): The file.
        num_scales (int): ``S``.
        runs_per_image (int): ``R``: the row sets of each image in
            ``offsets``; ``S``, or 1 when the file's images have the same
            rows at every scale (version 4, ``shared_scales``).
        content_id (str): sha256 of the arrays, written by
            :func:`save_proposals` (a cache key that needs no re-read).
        scales (list[dict] | None): The chip scales the file was mined
            for (:func:`scale_record`), None when not recorded (files of
            ``save_proposals`` without ``scales``, older files).
        pool_iou (float | None): The IoU of the NMS that pooled the rows
            of all scales (:mod:`mmsnip.datasets.proposal_pool`); None:
            each scale's rows were mined at that scale (older files too).
        has_names (bool): The file records each image's name
            (:meth:`names`); False for files written before names were
            recorded and files of writers that did not know them.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            arrays = _npz_memmap(path)
        except Exception as e:  # zipfile and numpy raise many kinds
            raise UserInputError(f'proposal file "{path}" is not readable '
                                 f'({type(e).__name__}: {e}): truncated, '
                                 'damaged or not a proposal file') from e
        missing = [m for m in _MEMBERS if m not in arrays]
        if missing:
            raise UserInputError(f'proposal file "{path}" is not an mmsnip '
                                 f'proposal file (no {missing})')
        try:
            meta = json.loads(bytes(np.asarray(arrays['meta'])).decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise UserInputError(f'proposal file "{path}" is damaged: '
                                 f'unreadable meta data ({e}); copy it again '
                                 'or mine it again') from e
        if not isinstance(meta, dict):
            meta = {}
        version = meta.get('version')
        if meta.get('format') != FORMAT or type(version) is not int:
            raise UserInputError(f'proposal file "{path}" is not an mmsnip '
                                 f'proposal file (format {FORMAT!r})')
        if version not in READ_VERSIONS:
            newer = version > max(READ_VERSIONS)
            raise UserInputError(
                f'proposal file "{path}" has format version {version}; this '
                f'mmsnip reads versions {list(READ_VERSIONS)} (and legacy '
                'pickles)' + (': it was written by a newer mmsnip; upgrade '
                                  'mmsnip' if newer else ''))
        problem = _meta_problem(meta) or _arrays_problem(arrays, meta)
        if problem:
            raise UserInputError(
                f'proposal file "{path}" is damaged: {problem} (truncated or '
                'corrupt); copy it again or mine it again')
        self._meta = meta
        self.version = version
        self.num_scales = meta['num_scales']
        self.runs_per_image = _runs_per_image(meta)
        self.content_id = meta['content_id']
        self.scales = meta.get('scales')
        self.pool_iou = meta.get('pool_iou')
        self.img_ids = np.asarray(arrays['img_ids'])
        self.offsets = np.asarray(arrays['offsets'])
        self._boxes, self._scores = arrays['boxes'], arrays['scores']
        # mapped, read on first use (names())
        self._names_blob = arrays.get(NAMES_MEMBER)
        self._names = self._name_array = self._ids_sorted = None
        self.has_names = self._names_blob is not None
        # versions 3 and 4: code -> score; version 2: scores as stored.
        self._score_table = score_table(
            float(meta['score_min']), float(meta['score_max'])) \
            if version != 2 else None
        self._row = {i: k for k, i in enumerate(self.img_ids.tolist())}
        self._int_ids = self.img_ids.dtype.kind in 'iu'
        self._descriptor = None

    def verify(self) -> None:
        """Check every row against the file's ``content_id`` (sha256 of the
        arrays, written with them; about 0.5 s per GB here).

        Raises:
            ValueError: Naming the file, when its content changed after it
                was written (a damaged copy, a disk error).
        """
        arrays = dict(img_ids=self.img_ids, offsets=self.offsets,
                      boxes=self._boxes, scores=self._scores)
        try:
            digests = _content_digests(self._meta, arrays,
                                       arrays_only=self.version == 2,
                                       descriptor=self._file())
        except (OSError, EOFError) as e:  # changed since it was opened
            raise UserInputError(f'proposal file "{self.path}" is not '
                                 f'readable ({type(e).__name__}: {e})') from e
        if self.content_id not in digests:
            raise UserInputError(
                f'proposal file "{self.path}" is damaged: its content does '
                'not match the content_id it was written with (a corrupt '
                'copy or a disk error); copy it again or mine it again')
        if self.has_names:  # read again, checked against names_sha256
            self._names = self._name_array = None
            self.names()

    def names(self) -> List[str]:
        """The images' names (:func:`image_name`) in file order (that of
        :attr:`img_ids`), read and checked against ``names_sha256`` on
        first use (train2017: about 2 MB).

        Raises:
            ValueError: The file records no names (:attr:`has_names`).
            UserInputError: Naming the file, when the names do not match
                their recorded sha256 or number.
        """
        if not self.has_names:
            raise ValueError(f'proposal file "{self.path}" records no '
                             'image names')
        if self._names is None:
            blob = _read_rows(self._names_blob, 0, len(self._names_blob),
                              self._file()).tobytes()
            names = blob.decode('utf-8', 'replace').split('\0') \
                if len(self.img_ids) else []
            if hashlib.sha256(blob).hexdigest() != \
                    self._meta['names_sha256'] or \
                    len(names) != len(self.img_ids):
                raise UserInputError(
                    f'proposal file "{self.path}" is damaged: its image '
                    'names do not match the names_sha256 they were written '
                    'with (a corrupt copy or a disk error); copy it again '
                    'or mine it again')
            self._names = names
        return self._names

    def name_array(self) -> np.ndarray:
        """:meth:`names` as an ``(N,)`` object array (made once)."""
        if self._name_array is None:
            self._name_array = np.array(self.names(), object)
        return self._name_array

    def positions(self, img_ids: Sequence) -> np.ndarray:
        """``(len(img_ids),)`` int64: :meth:`position` of each id, -1
        for an id the file lacks; vectorized for integer ids in a file
        of sorted integer ids (what the writers write)."""
        ids = list(img_ids)
        arr = np.asarray(ids) if ids else np.zeros(0, np.int64)
        stored = self.img_ids
        if self._int_ids and arr.dtype.kind in 'iu' and arr.ndim == 1 \
                and len(stored) and self._sorted_ids():
            pos = np.minimum(np.searchsorted(stored, arr), len(stored) - 1)
            return np.where(stored[pos] == arr, pos, -1).astype(np.int64)
        out = [self.position(i) for i in ids]
        return np.array([-1 if k is None else k for k in out], np.int64)

    def _sorted_ids(self) -> bool:
        """The file's ids are strictly increasing (checked once)."""
        if self._ids_sorted is None:
            self._ids_sorted = bool(
                (self.img_ids[1:] > self.img_ids[:-1]).all())
        return self._ids_sorted

    def name(self, img_id) -> Optional[str]:
        """The recorded name of ``img_id`` (:meth:`names`), or None when
        the file has no such image."""
        k = self.position(img_id)
        return None if k is None else self.names()[k]

    def _file(self) -> Optional[int]:
        """The file, open for :func:`_read_rows` (opened on first use,
        closed with this object), or None without ``preadv`` (arrays are
        then read through the memory map)."""
        if self._descriptor is None and hasattr(os, 'preadv'):
            self._descriptor = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._descriptor)
        return self._descriptor

    def position(self, img_id) -> Optional[int]:
        """Index of ``img_id`` among the file's images (file order), or
        None; found by :func:`stored_id` (a file of integer ids also
        finds a string of digits: files written before string ids were
        stored as strings hold VOC's ``'000005'`` as 5; a file of string
        ids finds exact strings)."""
        key = stored_id(img_id, self._int_ids)
        return None if key is None else self._row.get(key)

    def key(self, img_id):
        """The file's id for ``img_id`` (:func:`stored_id`), or None."""
        k = self.position(img_id)
        return None if k is None else self.img_ids[k].item()

    def rows(self, first: int, last: int) -> np.ndarray:
        """Rows ``offsets[first]:offsets[last]`` (row sets in file
        order: images x scales, or images in a version-4 file) as one
        ``(M, 5)`` float32 array, read in one go (ordinary
        reads: a whole-dataset pass keeps no file pages in the process's
        memory)."""
        a, b = int(self.offsets[first]), int(self.offsets[last])
        descriptor = self._file()
        out = np.empty((b - a, 5), np.float32)
        out[:, :4] = _read_rows(self._boxes, a, b, descriptor)
        codes = _read_rows(self._scores, a, b, descriptor)
        out[:, 4] = codes if self._score_table is None else \
            self._score_table[codes]
        return out

    def __getstate__(self):
        return dict(path=self.path)

    def __setstate__(self, state):
        self.__init__(state['path'])

    def __getitem__(self, img_id) -> List[np.ndarray]:
        k = self.position(img_id)
        if k is None:
            raise KeyError(img_id)
        r = self.runs_per_image
        rows = self.rows(k * r, k * r + r)
        if r == 1 < self.num_scales:  # one set for every scale
            return [rows] + [rows.copy() for _ in range(self.num_scales - 1)]
        cuts = self.offsets[k * r + 1:k * r + r] - self.offsets[k * r]
        return np.split(rows, cuts)

    def __contains__(self, img_id) -> bool:
        return self.position(img_id) is not None

    def __iter__(self) -> Iterator[Union[int, str]]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def _meta_problem(meta: dict) -> Optional[str]:
    """What is wrong with a compact file's meta data, or None."""
    num_scales = meta.get('num_scales')
    if type(num_scales) is not int or num_scales < 1:
        return f'num_scales {num_scales!r} is not a positive integer'
    content_id = meta.get('content_id')
    if not isinstance(content_id, str) or len(content_id) != 64:
        return f'content_id {content_id!r} is not a sha256'
    if meta.get('shared_scales', False) is not (
            meta['version'] == SHARED_VERSION):
        return f'shared_scales {meta.get("shared_scales")!r} does not ' \
            f'fit version {meta["version"]}'
    if meta['version'] in (VERSION, SHARED_VERSION):
        lo, hi = meta.get('score_min'), meta.get('score_max')
        if not (is_number(lo) and is_number(hi)) or lo > hi:
            return f'score range [{lo!r}, {hi!r}] is not finite and ordered'
    names_sha256 = meta.get('names_sha256')
    if names_sha256 is not None and not (
            isinstance(names_sha256, str) and len(names_sha256) == 64):
        return f'names_sha256 {names_sha256!r} is not a sha256'
    pool_iou = meta.get('pool_iou')
    if pool_iou is not None and not (
            is_number(pool_iou) and 0 < pool_iou <= 1):
        return f'pool_iou {pool_iou!r} is not a number in (0, 1]'
    scales = meta.get('scales')
    if scales is not None and not (
            isinstance(scales, list) and len(scales) == num_scales and
            all(isinstance(x, dict) and 'rule' in x and 'value' in x
                for x in scales)):
        return f'the scale record {scales!r} does not list {num_scales} ' \
            'scales'
    return None


def _arrays_problem(arrays: Dict[str, np.ndarray],
                    meta: dict) -> Optional[str]:
    """What is wrong with a compact file's arrays, or None (``meta``
    checked by :func:`_meta_problem`)."""
    boxes, scores = arrays['boxes'], arrays['scores']
    version = meta['version']
    if boxes.ndim != 2 or boxes.shape[1] != 4 or \
            boxes.dtype not in (np.float16, np.float32):
        return f'boxes must be (T, 4) float16 or float32, got ' \
            f'{boxes.shape} {boxes.dtype}'
    names = arrays.get(NAMES_MEMBER)
    if (names is None) != (meta.get('names_sha256') is None):
        return f'the member {NAMES_MEMBER} and names_sha256 come only ' \
            'together'
    if names is not None and (names.ndim != 1 or names.dtype != np.uint8):
        return f'{NAMES_MEMBER} must be (B,) uint8, got {names.shape} ' \
            f'{names.dtype}'
    want = np.float16 if version == 2 else np.uint8
    if scores.ndim != 1 or scores.dtype != want:
        return f'version {version} needs (T,) {np.dtype(want).name} ' \
            f'scores, got {scores.shape} {scores.dtype}'
    return _index_problem(arrays['img_ids'], arrays['offsets'],
                          _runs_per_image(meta), len(boxes), len(scores))


def _runs_per_image(meta: dict) -> int:
    """Row sets per image of a compact file: 1 when its images share
    their rows among the scales (version 4), else ``num_scales``."""
    return 1 if meta.get('shared_scales') else meta['num_scales']


def is_legacy_file(path: str) -> bool:
    """True for a version-1 pickle, False for a zip (compact file)."""
    with open(path, 'rb') as f:
        head = f.read(4)
    return head[:2] != b'PK'


class LegacyProposals(dict):
    """A version-1 file's proposals, loaded whole and checked: ``img_id
    -> [ (P_s, 5) float32 array per scale ]``, a dict that finds ids by
    the rule of compact files (:func:`stored_id`: a file of integer keys
    also finds strings of digits)."""

    def __init__(self, data: dict, int_ids: bool):
        super().__init__(data)
        self._int_ids = int_ids

    def key(self, img_id):
        """The file's id for ``img_id`` (:func:`stored_id`), or None."""
        key = stored_id(img_id, self._int_ids)
        return key if key is not None and dict.__contains__(self, key) \
            else None

    def __missing__(self, img_id):
        key = self.key(img_id)
        if key is None:
            raise KeyError(img_id)
        return dict.__getitem__(self, key)

    def __contains__(self, img_id) -> bool:
        return self.key(img_id) is not None


def read_pickle(path: str, where: str, expected: str):
    """The object of a pickle file.

    Raises:
        ValueError: ``'{where} is not readable (UnpicklingError: ...):
            truncated, damaged or not {expected}'`` for any failure to
            unpickle (a missing module, a huge frame, not a pickle).
    """
    try:
        with open(path, 'rb') as f:
            return pickle.load(f)
    except Exception as e:  # noqa: BLE001 - unpickling raises any kind
        raise UserInputError(f'{where} is not readable ({type(e).__name__}: '
                             f'{e}): truncated, damaged or not {expected}'
                             ) from None


def looks_like_mmdet_dump(data) -> bool:
    """``data`` (an unpickled object) looks like the dump of mmdet's
    ``DumpProposals``: a non-empty dict of string keys whose first entries
    hold ``bboxes`` (an ``InstanceData`` or a dict). For error messages
    only; the conversion checks every entry
    (:mod:`mmsnip.datasets.mmdet_proposals`)."""
    if not isinstance(data, dict) or not data:
        return False
    for _, (key, entry) in zip(range(3), data.items()):
        has = entry.keys() if hasattr(entry, 'keys') else ()
        if not isinstance(key, str) or 'bboxes' not in has:
            return False
    return True


def mmdet2_list_hint(data) -> str:
    """A sentence for an error about ``data`` (an unpickled object) that
    looks like an MMDetection 2.x proposal file (``tools/test.py --out``
    of an RPN: a list of ``(P, 5)`` arrays, one per image in the order of
    the dataset that wrote it, no image ids or file names), else ``''``.
    Such a file cannot be converted safely: nothing in it says which
    image an array belongs to."""
    if not isinstance(data, (list, tuple)) or not data:
        return ''
    for entry in data[:3]:
        shape = getattr(entry, 'shape', None)
        if shape is None or len(shape) != 2 or shape[1] not in (4, 5):
            return ''
    return (f': it holds a list of {len(data)} arrays, like an '
            'MMDetection 2.x proposal file (one (P, 5) array per image, '
            'in the order of the dataset that wrote it, without image ids '
            'or file names), so which image each array belongs to is not '
            'recorded and it cannot be converted safely. Mine the '
            'proposals with tools/mine_proposals.py, or dump them with '
            "MMDetection 3.x's DumpProposals metric and convert that: "
            'tools/misc/convert_proposals.py SRC DST --from-mmdet '
            '--ann-file ANN --img-prefix PREFIX --num-scales S')


def mining_shard_hint(path: str, data=None) -> str:
    """A sentence for an error about ``path`` when it is the shard folder
    of an unfinished ``tools/mine_proposals.py`` run (``OUT.pkl.parts``)
    or, given its unpickled ``data``, one of its shards (a dict ``img_id
    -> [(P, 5) array per scale]`` without the file's ``format``), else
    ``''``: the way to the proposal file is to finish the run."""
    path = path.rstrip('/\\')
    folder = path if data is None else osp.dirname(path)
    if data is not None:
        if not isinstance(data, dict) or not data or 'format' in data:
            return ''
        for _, value in zip(range(3), data.values()):
            if not isinstance(value, (list, tuple)) or not all(
                    getattr(a, 'ndim', 0) == 2 for a in value):
                return ''
    elif not path.endswith('.parts'):
        return ''
    out = folder[:-len('.parts')] if folder.endswith('.parts') else 'OUT'
    return (': it looks like a shard of an unfinished '
            'tools/mine_proposals.py run (OUT.pkl.parts/rank*.pkl, merged '
            'into OUT.pkl only when every image is mined): run the same '
            'mine_proposals command again: it resumes from the shards in '
            f'"{out}.parts" and merges them into "{out}", the proposal file')


def _load_legacy(path: str) -> tuple:
    """``(LegacyProposals, num_scales)`` of a version-1 pickle, every
    entry checked (:func:`proposal_array`).

    Raises:
        ValueError: Naming the file (and the img_id and scale of a bad
            entry): not a readable pickle, not a proposal file, no
            ``proposals`` dict or ``num_scales``, entries that are not
            ``num_scales`` arrays of shape ``(P, 5)`` / ``(P, 4)``.
    """
    data = read_pickle(path, f'proposal file "{path}"', 'a proposal file')
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise UserInputError(
            f'proposal file "{path}" is not an mmsnip proposal file (format '
            f'{FORMAT!r})' + (
                ': it looks like a dump of mmdet\'s DumpProposals '
                '({file_name: InstanceData(bboxes, scores)}); convert it: '
                'tools/misc/convert_proposals.py SRC DST --from-mmdet '
                '--ann-file ANN --img-prefix PREFIX --num-scales S'
                if looks_like_mmdet_dump(data) else mmdet2_list_hint(data)
                or mining_shard_hint(path, data)))
    bad = f'proposal file "{path}" (legacy version 1) is damaged:'
    num_scales = data.get('num_scales')
    if not is_integer(num_scales) or num_scales < 1:
        raise UserInputError(f'{bad} num_scales {num_scales!r} is not a '
                             'positive integer; mine it again')
    props = data.get('proposals')
    if not isinstance(props, Mapping):
        raise UserInputError(f'{bad} it needs a dict \'proposals\' (img_id -> '
                             f'[(P, 5) array per scale]), got '
                             f'{type(props).__name__}; mine it again')
    ids = image_id_array(list(props), f'proposal file "{path}"')
    out = {}
    for img_id, per_scale in props.items():
        where = f'proposal file "{path}": img_id {img_id!r}'
        if not isinstance(per_scale, (list, tuple)) or \
                len(per_scale) != num_scales:
            raise UserInputError(
                f'{where} must hold a list of {num_scales} arrays (one per '
                f'scale), got {type(per_scale).__name__}' +
                (f' of {len(per_scale)}'
                 if isinstance(per_scale, (list, tuple)) else ''))
        out[img_id] = [proposal_array(rows, f'{where}, scale {s}')
                       for s, rows in enumerate(per_scale)]
    return LegacyProposals(out, ids.dtype.kind in 'iu'), int(num_scales)


def open_proposals(path: str):
    """Open a proposal file of either format, unchecked.

    Returns:
        tuple: ``(proposals, num_scales, identity)``: a mapping ``img_id ->
        [ (P_s, 5) array per scale ]`` (a :class:`ProposalFile` or, for a
        legacy pickle, a dict), the file's number of scales, and a string
        that changes with the content (the compact file's ``content_id``;
        for a pickle, the sha256 of its bytes).
    """
    if osp.isdir(path):
        raise UserInputError(f'proposal file "{path}" is a folder, not a file'
                             + mining_shard_hint(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'proposal file "{path}" does not exist')
    if not is_legacy_file(path):
        props = ProposalFile(path)
        return props, props.num_scales, \
            f'v{props.version}:' + props.content_id
    props, num_scales = _load_legacy(path)
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return props, num_scales, 'v1:' + digest.hexdigest()


def _same_scale(recorded: dict, spec) -> bool:
    """A recorded scale (:func:`scale_record`) has ``spec``'s rule and
    value (the valid range does not change what was mined)."""
    mine = scale_record([spec])[0]
    return recorded.get('rule') == mine['rule'] and \
        recorded.get('value') == mine['value']


def check_proposal_scales(path: str, props, file_scales: int,
                          num_scales: int,
                          scales: Optional[Sequence] = None) -> None:
    """Errors naming ``path`` for a file of another chip config: another
    number of scales, or (when the file records them and ``scales`` is
    given) other scales than recorded. The part of
    :func:`check_proposals` that needs no dataset: ``tools/train.py``
    runs it before building anything
    (:func:`mmsnip.utils.preflight.check_proposal_files`).

    Args:
        path (str): The file (for messages).
        props (Mapping): Its proposals (:func:`open_proposals`).
        file_scales (int): Its number of scales.
        num_scales (int): Scales of the chip config.
        scales (Sequence[ScaleSpec], optional): The chip config's scales.

    Raises:
        ValueError: Naming the file, the scale and the fix.
    """
    if file_scales != num_scales:
        raise UserInputError(
            f'proposal file "{path}" has proposals for {file_scales} '
            f'scales, the chip config has {num_scales}. Fix: mine them '
            'with this chip config (tools/mine_proposals.py); a file '
            'converted from an mmdet dump: convert it again with '
            f'--num-scales {num_scales}')
    recorded = getattr(props, 'scales', None)
    if recorded is not None and scales is not None:
        for s, (rec, spec) in enumerate(zip(recorded, scales)):
            if not _same_scale(rec, spec):
                mine = scale_record([spec])[0]
                raise UserInputError(
                    f'proposal file "{path}" was mined for chip_cfg.scales'
                    f'[{s}] {rec.get("rule")}={rec.get("value")!r}, the '
                    f'chip config has {mine["rule"]}={mine["value"]!r} '
                    '(scales in another order, or changed): its rows of '
                    'each scale would be used at another scale. Fix: mine '
                    'the proposals again with this chip config '
                    '(tools/mine_proposals.py), or use the config they '
                    'were mined with; to use them anyway, drop the record: '
                    'tools/misc/convert_proposals.py SRC DST --drop-scales')


def check_proposals(path: str, props, file_scales, img_ids: Sequence,
                    num_scales: int, img_paths: Optional[Sequence] = None,
                    scales: Optional[Sequence] = None,
                    img_names: Optional[Sequence[str]] = None,
                    entry: str = 'proposal_file') -> None:
    """Errors naming ``path`` for a file of another dataset or config.

    Args:
        path (str): The file (for messages).
        props (Mapping): Its proposals (:func:`open_proposals`).
        file_scales (int): Its number of scales.
        img_ids (Sequence): The dataset's ``N`` image ids.
        num_scales (int): Scales of the chip config.
        img_paths (Sequence, optional): The ``N`` image paths: two
            different images of one id are refused
            (:func:`check_image_ids`).
        scales (Sequence[ScaleSpec], optional): The chip config's scales,
            checked against the file's record of the scales it was mined
            for, if it has one (older files and files of
            :func:`save_proposals` without ``scales`` have none).
        img_names (Sequence[str], optional): The ``N`` images' names
            (:func:`image_name`), compared with those the file records,
            if it records any (:func:`check_image_names`).
        entry (str): The setting that names the file, for the fix.

    Raises:
        ValueError: Naming the file: another number of scales or other
            scales than recorded, images it lacks, two dataset ids that
            find one entry (``'5'`` and ``'05'`` in a file of integer
            ids), an id of two images, images of other names than
            recorded.
    """
    check_proposal_scales(path, props, file_scales, num_scales, scales)
    if img_paths is not None:
        check_image_ids(img_ids, img_paths, f'proposal file "{path}"')
    missing = [i for i in img_ids if i not in props]
    if missing:
        raise UserInputError(
            f'proposal file "{path}" lacks {len(missing)} of the dataset\'s '
            f'{len(img_ids)} images (e.g. img_id {missing[:5]}): it was '
            'mined for another dataset or is incomplete')
    finder = getattr(props, 'key', None)
    if finder is not None:
        owner = {}
        for i in dict.fromkeys(img_ids):
            other = owner.setdefault(finder(i), i)
            if other != i:
                raise UserInputError(
                    f'proposal file "{path}": the dataset\'s img_ids '
                    f'{other!r} and {i!r} both find its entry '
                    f'{finder(i)!r} (a file of integer ids finds strings '
                    'of digits): two images would share proposals. Fix: '
                    'mine the proposals again for this dataset (its ids '
                    'are then stored as strings)')
    if img_names is not None:
        check_image_names(path, props, img_ids, img_names, entry)
    if isinstance(props, dict):
        for i in img_ids:
            if len(props[i]) != num_scales:
                raise UserInputError(
                    f'proposal file "{path}": img_id {i} has '
                    f'{len(props[i])} scales, expected {num_scales}')


def load_proposals(path: str, img_ids: Sequence, num_scales: int,
                   verify: bool = False, **check):
    """Open and check a proposal file (either format) against a dataset.

    Args:
        path (str): The proposal file.
        img_ids (Sequence): Image ids of the dataset (int or str).
        num_scales (int): Scales of the chip config.
        verify (bool): Also check a compact file's rows against its
            ``content_id`` (:meth:`ProposalFile.verify`; reads the file
            once).
        **check: ``img_paths``, ``scales``, ``img_names``, ``entry`` of
            :func:`check_proposals`.

    Returns:
        Mapping: ``img_id -> [ (P, 5) float32 array per scale ]``; a
        :class:`ProposalFile` (lazy) or, for a legacy pickle, a dict.

    Raises:
        ValueError / FileNotFoundError: Naming the file and the problem.
    """
    props, file_scales, _ = open_proposals(path)
    check_proposals(path, props, file_scales, img_ids, num_scales, **check)
    if verify and isinstance(props, ProposalFile):
        props.verify()
    return props


def convert_proposals(src: str, dst: str, top_n: Optional[int] = None,
                      box_dtype: str = 'auto',
                      score_dtype: str = 'uint8',
                      drop_scales: bool = False,
                      pool_iou: Optional[float] = None,
                      workers: Optional[int] = None,
                      progress: bool = False,
                      img_names: Optional[Mapping] = None,
                      names_from: str = 'the names given') -> dict:
    """Rewrite a proposal file (legacy pickle or compact) compactly
    (:func:`save_proposals`; version 3 unless ``score_dtype='float16'``;
    a version-4 file, whose rows serve every scale, stays version 4).
    The record of the scales the proposals were mined for is kept, unless
    ``drop_scales`` (then any chip config of as many scales reads it);
    so are the images' names, if the source records them.

    Args:
        pool_iou (float, optional): Pool each image's rows of all scales
            through one NMS at this IoU (the released code's negative
            proposals, :func:`~mmsnip.datasets.proposal_pool.
            pool_proposals`; ``top_n`` then applies to each scale before
            pooling) and store the pool once per image (version 4,
            recording ``pool_iou``). None (default): rows stay per scale
            (a pooled source stays pooled).
        workers (int, optional): Processes pooling blocks of
            :data:`POOL_BLOCK_IMAGES` images (``pool_iou`` only; 1: this
            one; > 1 needs the ``fork`` start method, Linux); None: the
            usable cores. The file is the same for any number.
        progress (bool): With ``pool_iou``, show a progress bar with ETA
            over the images (mmengine's ``ProgressBar``).
        img_names (Mapping, optional): ``img_id -> name``
            (:func:`image_name`) of the images of the dataset the file was
            mined for (found by :func:`stored_id`), recorded instead of
            the source's names (a file written without names); every
            image of the file needs one. None keeps the source's names.
        names_from (str): What gave ``img_names``, for messages.

    Pooling streams: it holds one bit per source row (which rows the pool
    keeps) and the written file's scores (1 byte per pooled row; 2 in
    version 2), not the pooled rows: :func:`write_proposal_groups` gets
    the images in file order, each pool read again from the source and
    its kept rows, and writes the boxes as they come.

    Returns:
        dict: ``images``, ``proposals`` (rows written), ``bytes_in``,
        ``bytes_out``, ``version`` (of the written file).

    Raises:
        ValueError: Naming ``src`` (and the img_id and scale of bad rows);
            with ``pool_iou``, a source of one row set per image (pooled
            already, converted from an mmdet dump, or of one scale);
            ``workers`` not an integer >= 1, or > 1 without ``fork``.
    """
    props, num_scales, _ = open_proposals(src)
    if isinstance(props, ProposalFile):
        props.verify()
    scales = None if drop_scales else getattr(props, 'scales', None)
    runs = getattr(props, 'runs_per_image', num_scales)
    # kept (a legacy pickle has none); list(props) is the file order
    names = props.names() if getattr(props, 'has_names', False) else None
    if img_names is not None:
        names = _names_of(src, props, img_names, names_from)
    if pool_iou is not None:
        pool = _PoolJob(src, props, runs, num_scales, top_n, pool_iou)
        pool.keep_rows(workers, progress)
        groups, top_n, shared = pool.groups, None, score_dtype == 'uint8'
    else:
        pool_iou = getattr(props, 'pool_iou', None)  # kept
        # a version-4 file stays shared (unless written as version 2)
        shared = runs == 1 < num_scales and score_dtype == 'uint8'
        data = {k: [props[k][0]] * num_scales if shared else props[k]
                for k in props}

        def groups():
            return [data]
    try:
        write_proposal_groups(dst, list(props), num_scales, groups,
                              top_n=top_n, box_dtype=box_dtype,
                              score_dtype=score_dtype,
                              owner='save_proposals', scales=scales,
                              shared_scales=shared, pool_iou=pool_iou,
                              img_names=names)
    except ValueError as e:
        raise UserInputError(f'proposal file "{src}": {e}') from None
    written = ProposalFile(dst)
    return dict(images=len(written), proposals=int(written.offsets[-1]),
                bytes_in=osp.getsize(src), bytes_out=osp.getsize(dst),
                version=written.version)


def _names_of(src: str, props, img_names: Mapping,
              names_from: str) -> List[str]:
    """The names of ``props``' images (in its order) from ``img_names``
    (dataset id -> name, found by :func:`stored_id`).

    Raises:
        UserInputError: Naming ``src``, for images without a name.
    """
    by_key = {}
    for img_id, name in img_names.items():
        key = props.key(img_id)
        if key is not None:
            by_key.setdefault(key, name)
    lacking = [k for k in props if k not in by_key]
    if lacking:
        raise UserInputError(
            f'proposal file "{src}": {len(lacking)} of its {len(props)} '
            f'images have no name in {names_from} (e.g. img_id '
            f'{lacking[:5]}): they are not of the dataset it was mined '
            'for; give that dataset\'s annotation file')
    return [by_key[k] for k in props]


# Images per pooling task of convert_proposals (a block's rows are pooled
# by one process; about 0.3 s at 900 proposals per image).
POOL_BLOCK_IMAGES = 256
# The pooling job of the forked workers (set before the pool starts).
_POOL_JOB: dict = {}


class _PoolJob:
    """Pooling a file's images (:func:`convert_proposals`): first which
    rows each image's pool keeps (one NMS per image, blocks of images over
    processes, one bit per row kept here), then the pools themselves, as
    often as :func:`write_proposal_groups` reads them, from the source
    and those bits."""

    def __init__(self, src: str, props, runs: int, num_scales: int,
                 top_n: Optional[int], pool_iou: float):
        pool_iou = check_pool_iou(pool_iou, f'proposal file "{src}"')
        if runs == 1:
            pooled = getattr(props, 'pool_iou', None)
            raise UserInputError(
                f'proposal file "{src}" holds one row set per image for '
                'every scale (' + (
                    f'pooled already, at IoU {pooled:g}'
                    if pooled is not None else
                    'converted from an mmdet dump' if num_scales > 1
                    else 'one scale') +
                '): there is nothing to pool. Convert it without '
                '--pool-scales (pool_iou=None), or pool a file mined per '
                'scale')
        if top_n is not None and int(top_n) < 1:
            raise ValueError('save_proposals: top_n must be >= 1, got '
                             f'{top_n}')
        self.src, self.props, self.num_scales = src, props, num_scales
        self.top_n, self.iou = top_n, pool_iou
        # in file order (a legacy pickle's dict may hold any), so that
        # write_proposal_groups streams the pools into the file
        keys = list(props)
        order = np.argsort(image_id_array(keys, f'proposal file "{src}"'),
                           kind='stable')
        self.keys = [keys[k] for k in order.tolist()]
        self.blocks = [(a, min(a + POOL_BLOCK_IMAGES, len(self.keys)))
                       for a in range(0, len(self.keys), POOL_BLOCK_IMAGES)]
        # per block: (rows per image (B,) int64, np.packbits of the kept
        # flags of its stacked rows)
        self.kept = []

    def stacked_rows(self, key) -> np.ndarray:
        """One image's rows of every scale, scale 0 first, as ``(P, 5)``
        float32 (ORIGINAL pixels), each scale's checked
        (:func:`proposal_array`) and cut to ``top_n``."""
        where = f'proposal file "{self.src}": img_id {key!r}'
        per_scale = [_top_n(proposal_array(rows, f'{where}, scale {s}'),
                            self.top_n)
                     for s, rows in enumerate(self.props[key])]
        return np.concatenate(per_scale)

    def pool_block(self, first: int, last: int) -> tuple:
        """Images ``first:last`` pooled: ``(rows per image, packed kept
        flags)``."""
        counts, flags = [], []
        for key in self.keys[first:last]:
            rows = self.stacked_rows(key)
            counts.append(len(rows))
            flags.append(pool_keep(rows, self.iou))
        flags = np.concatenate(flags) if flags else np.zeros(0, bool)
        return np.array(counts, np.int64), np.packbits(flags)

    def keep_rows(self, workers: Optional[int], progress: bool) -> None:
        """Pool every image (``workers`` processes, None: the usable
        cores), keeping which rows each pool holds."""
        import multiprocessing
        from mmsnip.utils.processes import usable_cores
        workers = usable_cores() if workers is None else check_integer(
            workers, 'convert_proposals workers')
        if workers > 1 and \
                'fork' not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f'convert_proposals: workers={workers} needs the fork '
                'start method (Linux), which this system lacks; pass '
                'workers=1 (--workers 1)')
        bar = None
        if progress and self.keys:
            import sys

            from mmengine.utils import ProgressBar

            # sys.stdout now: the default is the one of mmengine's import
            bar = ProgressBar(len(self.keys), file=sys.stdout)
        workers = min(workers, len(self.blocks))
        _POOL_JOB['job'] = self
        try:
            if workers > 1:
                ctx = multiprocessing.get_context('fork')
                with ctx.Pool(workers) as pool:
                    for first_last, block in zip(self.blocks, pool.imap(
                            _pool_block, self.blocks)):
                        self._add_block(first_last, block, bar)
            else:
                for first_last in self.blocks:
                    self._add_block(first_last,
                                    self.pool_block(*first_last), bar)
        finally:
            _POOL_JOB.clear()
        if bar is not None:
            bar.file.write('\n')

    def _add_block(self, first_last: tuple, block: tuple, bar) -> None:
        """Keep a block's :meth:`pool_block` result; advance ``bar``."""
        self.kept.append(block)
        if bar is not None:
            bar.update(first_last[1] - first_last[0])

    def groups(self) -> Iterator[dict]:
        """The pools, a block of images per group: ``img_id -> [(P, 5)
        pool] * S`` (one array object), rows by descending score
        (:func:`~mmsnip.datasets.proposal_pool.pool_order`)."""
        for (first, last), (counts, packed) in zip(self.blocks, self.kept):
            flags = np.unpackbits(packed, count=int(counts.sum()))
            flags = np.split(flags.astype(bool), np.cumsum(counts)[:-1])
            group = {}
            for key, keep in zip(self.keys[first:last], flags):
                kept = self.stacked_rows(key)[keep]
                group[key] = [kept[pool_order(kept[:, 4])]] * self.num_scales
            yield group


def _pool_block(first_last: tuple) -> tuple:
    """:meth:`_PoolJob.pool_block` in a forked worker."""
    return _POOL_JOB['job'].pool_block(*first_last)
