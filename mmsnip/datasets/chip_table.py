# Copyright (c) mmsnip contributors. All rights reserved.
"""Chip tables of whole datasets: compact image records, a parallel build
and a cache that fails safe.

A chip table is the list of every chip of a dataset (parallel arrays; see
:func:`build_chip_table`). Three pieces, no torch, no mmdet:

- :class:`ImageRecords`: every image's size, boxes and crowd flags in a few
  flat arrays, read from the dataset ONCE; the audit, the cache key and the
  build all use them (train2017: 118k images, 860k boxes in about 30 MB).
- :func:`build_chip_table`: the chip engine over all images, in processes
  (``fork``) when there are many; the result equals the serial one (and
  the engine image by image: positives and negatives are built for blocks
  of images at once, proposals read in one slice of the file per block).
- :class:`ChipTableCache`: ``<cache_dir>/chips-<key>.npz``. A corrupt,
  truncated or foreign file is rebuilt (with a warning); an unwritable
  folder means no cache (with a warning); files are written with
  :func:`~mmsnip.utils.fileio.atomic_open` (no temporary file left, the
  user's umask). Several processes (distributed ranks) wanting the same
  table: the first takes ``chips-<key>.npz.lock`` and builds (refreshing
  the lock, so that a build killed on another host is told from a live
  one), the others wait for the file and load it (a timeout names the
  lock file).
"""
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import os.path as osp
import socket
import threading
import time
from typing import Callable, Optional

import numpy as np
from mmengine.logging import print_log

from mmsnip.chips import ChipConfig, ChipSet
from mmsnip.chips.boxes import sanitize_boxes
from mmsnip.chips.negative import as_proposals, negative_chips_batch
from mmsnip.chips.positive import positive_chips_batch
from mmsnip.utils.checks import UserInputError, check_integer, is_number
from mmsnip.utils.fileio import atomic_open
from mmsnip.utils.processes import pid_alive, usable_cores
from .proposals import ProposalFile, check_image_ids

# Version of the cache file layout and of the chip engine's output; bump it
# when either changes so old caches are rebuilt. 3: the stats count the
# proposals dropped or reaching outside their image (PROPOSAL_COUNTS). 4:
# a proposal within FIT_EPS of a positive chip counts as covered by it.
CACHE_VERSION = 4
TABLE_FIELDS = ('boxes', 'boxes_scaled', 'scale_index', 'scale_factor',
                'is_positive', 'img_index')
# Below this many images the table is built in this process.
PARALLEL_MIN_IMAGES = 2000
# Negative chips are built for this many images at a time (bounds the
# memory of the batched proposal arrays: about 100 MB at 900 proposals
# per image).
NEGATIVE_BLOCK = 256


@dataclasses.dataclass
class ImageRecords:
    """What the chip engine needs of a dataset, as flat arrays.

    Attributes:
        img_ids (list): ``N`` image ids (``img_id`` of the data infos).
        img_paths (list[str]): ``N`` image paths (for messages).
        heights, widths (np.ndarray): ``(N,)`` float64 ORIGINAL sizes.
        box_start (np.ndarray): ``(N + 1,)`` int64: image ``n``'s boxes are
            rows ``box_start[n]:box_start[n + 1]``.
        boxes (np.ndarray): ``(M, 4)`` float64 raw xyxy, ORIGINAL pixels,
            as annotated (not yet sanitised).
        crowd (np.ndarray): ``(M,)`` bool ``ignore_flag``.
    """
    img_ids: list
    img_paths: list
    heights: np.ndarray
    widths: np.ndarray
    box_start: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray

    def __len__(self) -> int:
        return len(self.img_ids)

    def image(self, n: int):
        """``(h, w, boxes (B, 4), crowd (B,))`` of image ``n``."""
        a, b = self.box_start[n], self.box_start[n + 1]
        return (self.heights[n], self.widths[n], self.boxes[a:b],
                self.crowd[a:b])

    def box_image(self) -> np.ndarray:
        """``(M,)`` int64 image index of every box."""
        return np.repeat(np.arange(len(self)), np.diff(self.box_start))

    def digest(self) -> str:
        """sha256 of everything the chips depend on (and the ids/paths)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.img_ids, self.img_paths],
                            default=str).encode())
        for arr in (self.heights, self.widths, self.box_start, self.boxes,
                    self.crowd):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    @classmethod
    def from_infos(cls, infos, where: Callable[[dict], str]
                   ) -> 'ImageRecords':
        """Records of data infos (``height``, ``width``, ``instances``).

        Args:
            infos (Iterable[dict]): The dataset's data infos, in order.
            where (callable): ``info -> 'file: image <id> (<path>)'`` for
                error messages.

        Raises:
            ValueError: An image without a positive size, an instance
                without a numeric ``[x1, y1, x2, y2]``, naming the image.
        """
        ids, paths, hs, ws, counts, boxes, crowd = [], [], [], [], [], [], []
        for info in infos:
            h, w = info.get('height'), info.get('width')
            if not (is_number(h) and is_number(w) and h > 0 and w > 0):
                raise UserInputError(
                    f'SniperDataset: {where(info)} has height={h!r}, '
                    f'width={w!r}; chips need its size in the annotations')
            inst = info.get('instances') or []
            try:
                b = np.array([i['bbox'] for i in inst], np.float64)
                if b.shape != (len(inst), 4) and len(inst):
                    raise ValueError(f'boxes of shape {b.shape[1:]}, not '
                                     '(4,)')
            except (KeyError, TypeError, ValueError) as e:
                raise _bbox_error(info, where, e) from e
            ids.append(info.get('img_id'))
            paths.append(info.get('img_path'))
            hs.append(h)
            ws.append(w)
            counts.append(len(inst))
            boxes.append(b.reshape(-1, 4))
            crowd.extend(bool(i.get('ignore_flag', 0)) for i in inst)
        start = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=start[1:])
        return cls(ids, paths, np.array(hs, np.float64),
                   np.array(ws, np.float64), start,
                   np.concatenate(boxes + [np.zeros((0, 4))]),
                   np.array(crowd, bool))


def _bbox_error(info: dict, where: Callable[[dict], str],
                error: Exception) -> UserInputError:
    """The error of an instance without a bbox of 4 numbers."""
    return UserInputError(
        f'SniperDataset: {where(info)}: an instance has no [x1, y1, x2, y2] '
        f'bbox of numbers ({type(error).__name__}: {error})')


# -- the build ------------------------------------------------------------
# Inputs of the worker processes, set before they fork (not pickled).
_JOB = {}


def _file_rows(props, img_ids: list):
    """The rows of ``img_ids`` read in one slice, when ``props`` is a
    :class:`~mmsnip.datasets.proposals.ProposalFile` holding these images
    consecutively, in this order (a file mined for the dataset); else
    None.

    Returns:
        tuple | None: ``(rows (R, 5) float32, row_start (N * r + 1,)
        int64, r)``: ``r`` row sets per image (the scales, or 1 in a
        version-4 file pooled over them), set ``j`` of image ``n`` is rows
        ``row_start[n * r + j]:row_start[n * r + j + 1]``.
    """
    k = props.position(img_ids[0]) if isinstance(props, ProposalFile) and \
        img_ids else None
    if k is None:
        return None
    ids = props.img_ids[k:k + len(img_ids)]
    if len(ids) != len(img_ids) or not np.array_equal(ids, img_ids):
        return None
    runs = props.runs_per_image
    lo, hi = k * runs, (k + len(img_ids)) * runs
    start = (props.offsets[lo:hi + 1] - props.offsets[lo]).astype(np.int64)
    return props.rows(lo, hi), start, runs


def _rows_per_scale(path: str, read: tuple, num_scales: int):
    """:func:`_file_rows`' ``read`` of file ``path`` as one row set per
    scale, ``(rows, row_start (N * S + 1,))``: a version-4 file's set
    repeated for every scale."""
    rows, start, runs = read
    if runs == num_scales:
        return rows, start
    if runs != 1:  # check_proposals refuses such a file first
        raise ValueError(
            f'proposal file "{path}": {runs} row sets per image, the chip '
            f'config has {num_scales} scales')
    first = np.repeat(start[:-1], num_scales)
    count = np.repeat(np.diff(start), num_scales)
    start = np.zeros(len(count) + 1, np.int64)
    np.cumsum(count, out=start[1:])
    index = np.arange(start[-1]) - np.repeat(start[:-1] - first, count)
    return rows[index], start


def _proposal_rows(props, img_ids: list, num_scales: int):
    """The proposals of ``img_ids`` as flat rows.

    Read in one slice where :func:`_file_rows` can (a version-4 file's
    rows repeated for every scale); any other mapping image by image.

    Returns:
        tuple: ``(rows (R, 5) float, row_start (N * S + 1,) int64)``: image
        ``n``, scale ``s`` are rows ``row_start[n * S + s]:row_start[n * S
        + s + 1]``.
    """
    read = _file_rows(props, img_ids)
    if read is not None:
        return _rows_per_scale(props.path, read, num_scales)
    arrays = []
    for i in img_ids:
        per_scale = list(props[i])
        if len(per_scale) != num_scales:
            raise ValueError(f'proposals of img_id {i}: {len(per_scale)} '
                             f'scales, the chip config has {num_scales}')
        try:
            arrays += [as_proposals(p, s) for s, p in enumerate(per_scale)]
        except (TypeError, ValueError) as e:
            raise ValueError(f'proposals of img_id {i!r}: {e}') from None
    start = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([len(a) for a in arrays], out=start[1:])
    return np.concatenate(arrays + [np.zeros((0, 5))]), start


# Proposal counts of a build (``stats`` of :func:`build_chip_table`),
# summed over its ranges; ``*_example``: the first image (index into the
# records) with such rows, -1 if none.
PROPOSAL_COUNTS = ('proposals', 'finite_proposals', 'dropped_proposals',
                   'inverted_proposals', 'outside_proposals')
PROPOSAL_EXAMPLES = ('dropped_example', 'outside_example')
# A proposal reaching more than this many pixels beyond its image counts
# as outside it (rescaling a clipped RPN box back to the ORIGINAL image
# rounds by less).
OUTSIDE_TOLERANCE = 1.0


def _proposal_counts(rows: np.ndarray, img: np.ndarray, keep: np.ndarray,
                     heights: np.ndarray, widths: np.ndarray) -> dict:
    """What sanitising (:func:`~mmsnip.chips.boxes.sanitize_boxes`) does
    to a block's proposals, counted.

    Args:
        rows (np.ndarray): ``(R, 5)`` rows, ORIGINAL pixels xyxy.
        img (np.ndarray): ``(R,)`` int block-relative image of each row.
        keep (np.ndarray): ``(R,)`` bool, the rows ``sanitize_boxes``
            keeps.
        heights, widths (np.ndarray): ``(n,)`` ORIGINAL image sizes.

    Returns:
        dict: :data:`PROPOSAL_COUNTS` of the block (``finite``: all four
        coordinates finite; of these ``dropped``: empty after clipping to
        the image, ``inverted``: ``x2 <= x1`` or ``y2 <= y1`` as given,
        ``outside``: reaching more than :data:`OUTSIDE_TOLERANCE` px
        beyond the image) and :data:`PROPOSAL_EXAMPLES` (block-relative
        image index, -1 if none).
    """
    box = rows[:, :4]
    finite = np.isfinite(box).all(axis=1)
    dropped = finite & ~keep
    with np.errstate(invalid='ignore'):
        inverted = finite & ((box[:, 2] <= box[:, 0]) |
                             (box[:, 3] <= box[:, 1]))
        tol = OUTSIDE_TOLERANCE
        outside = finite & (
            (box[:, 0] < -tol) | (box[:, 1] < -tol) |
            (box[:, 2] > widths[img] + tol) |
            (box[:, 3] > heights[img] + tol))

    def example(mask):
        hit = np.flatnonzero(mask)
        return int(img[hit[0]]) if len(hit) else -1

    return dict(proposals=len(rows), finite_proposals=int(finite.sum()),
                dropped_proposals=int(dropped.sum()),
                inverted_proposals=int(inverted.sum()),
                outside_proposals=int(outside.sum()),
                dropped_example=example(dropped),
                outside_example=example(outside))


def _add_counts(total: dict, part: dict, offset: int) -> None:
    """Add a block's :func:`_proposal_counts` (image indices relative to
    ``offset``) to ``total``."""
    for k in PROPOSAL_COUNTS:
        total[k] = total.get(k, 0) + part[k]
    for k in PROPOSAL_EXAMPLES:
        if total.get(k, -1) < 0 and part[k] >= 0:
            total[k] = part[k] + offset
        total.setdefault(k, -1)


def _build_range(first: int, last: int) -> dict:
    """Chips of images ``[first, last)`` of ``_JOB``: positives and
    negatives as arrays, plus proposal counts (``counts``:
    :func:`_proposal_counts`, image indices into the records)."""
    records, cfg, props = _JOB['records'], _JOB['cfg'], _JOB['proposals']
    a, b = records.box_start[first], records.box_start[last]
    pos, pos_n = positive_chips_batch(
        records.boxes[a:b], records.box_start[first:last + 1] - a,
        records.heights[first:last], records.widths[first:last], cfg,
        records.crowd[a:b])
    neg, neg_n = [], []
    counts = {}
    if props is not None:
        pos_start = np.concatenate([[0], np.cumsum(pos_n)])
        num_scales = len(cfg.scales)
        for lo in range(first, last, NEGATIVE_BLOCK):
            hi = min(lo + NEGATIVE_BLOCK, last)
            ids = records.img_ids[lo:hi]
            read = _file_rows(props, ids)
            # a file pooled over the scales: its one row set per image
            # goes to the covers once, not repeated for every scale
            shared = read is not None and read[2] == 1 < num_scales
            if shared:
                rows, row_start, _ = read
                img = np.repeat(np.arange(hi - lo), np.diff(row_start))
            else:
                rows, row_start = _proposal_rows(props, ids, num_scales) \
                    if read is None else \
                    _rows_per_scale(props.path, read, num_scales)
                img = np.repeat(np.arange(len(row_start) - 1) //
                                num_scales, np.diff(row_start))
            heights, widths = records.heights[lo:hi], records.widths[lo:hi]
            # One sanitising pass, counted here and used by the covers.
            sanitized = sanitize_boxes(rows[:, :4], heights[img],
                                       widths[img])
            block = _proposal_counts(rows, img, sanitized[1], heights,
                                     widths)
            if shared:  # counted as the rows every scale reads
                block.update({k: block[k] * num_scales
                              for k in PROPOSAL_COUNTS})
            _add_counts(counts, block, lo)
            p0, p1 = pos_start[lo - first], pos_start[hi - first]
            negs, per_image = negative_chips_batch(
                rows, row_start, heights, widths, cfg,
                pos.select(slice(p0, p1)),
                pos_start[lo - first:hi - first + 1] - p0, sanitized,
                shared_scales=shared)
            neg.append(negs)
            neg_n.append(per_image)
    return dict(pos=pos, neg=ChipSet.concat(neg), pos_n=pos_n,
                neg_n=np.concatenate(neg_n + [np.zeros(0, np.int64)]),
                counts=counts)


def default_workers(num_images: int) -> int:
    """Processes for a build: 0 (this one) under
    :data:`PARALLEL_MIN_IMAGES` images, else the usable cores (<= 16)."""
    if num_images < PARALLEL_MIN_IMAGES:
        return 0
    cores = usable_cores()
    return min(cores, 16) if cores > 1 else 0


def build_chip_table(records: ImageRecords, cfg: ChipConfig,
                     proposals=None, workers: Optional[int] = None,
                     chunk_size: Optional[int] = None) -> dict:
    """Every chip of a dataset (Sec. 3.3): positives, then negative pools.

    Args:
        records (ImageRecords): The images.
        cfg (ChipConfig): The chip settings.
        proposals (Mapping, optional): ``img_id -> [ (P_s, 5) per scale ]``
            (:func:`~mmsnip.datasets.proposals.load_proposals`); None: no
            negatives.
        workers (int, optional): Processes; 0 builds here; None:
            :func:`default_workers`. Processes need the ``fork`` start
            method (Linux); elsewhere the build runs here and says so.
        chunk_size (int, optional): Images per task (default: about 8 tasks
            per process; 4096 in this process).

    Returns:
        dict: ``boxes`` ``(C, 4)`` ORIGINAL and ``boxes_scaled`` ``(C, 4)``
        SCALED xyxy float64, ``scale_index`` ``(C,)`` int64,
        ``scale_factor`` ``(C,)`` float64, ``is_positive`` ``(C,)`` bool,
        ``img_index`` ``(C,)`` int64; rows: every positive chip image by
        image, then every negative chip image by image. Also ``stats``
        (JSON-ready; stored with a cached table): with proposals, the
        counts of :data:`PROPOSAL_COUNTS` (rows read, with finite
        coordinates, and of these: dropped as empty after clipping,
        inverted, reaching > 1 px beyond the image) and
        :data:`PROPOSAL_EXAMPLES` (index of the first image with such
        rows, -1 if none); without, ``{}``. The same for any ``workers``.

    Raises:
        ValueError: With proposals: two different images (paths) with
            one ``img_id`` (:func:`~mmsnip.datasets.proposals.
            check_image_ids`): a proposal file has one entry per id.
            ``workers`` not an integer >= 0, ``chunk_size`` not one >= 1.
    """
    n = len(records)
    if proposals is not None:
        check_image_ids(records.img_ids, records.img_paths,
                        'build_chip_table')
    workers = default_workers(n) if workers is None else \
        check_integer(workers, 'build_chip_table workers', 0)
    if chunk_size is not None:
        chunk_size = check_integer(chunk_size, 'build_chip_table chunk_size')
    if workers > 0 and 'fork' not in multiprocessing.get_all_start_methods():
        print_log('chip table: no fork start method here; building in one '
                  'process', logger='current')
        workers = 0
    if workers > 0 and multiprocessing.current_process().daemon:
        # e.g. lazy_init=True and the first use in a dataloader worker:
        # daemonic processes may not start children.
        print_log('chip table: building in this (daemonic) process',
                  logger='current')
        workers = 0
    if chunk_size is None:
        chunk_size = max(1, -(-n // (8 * workers))) if workers > 0 else 4096
    bounds = [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
    _JOB.update(records=records, cfg=cfg, proposals=proposals)
    try:
        if workers > 0 and len(bounds) > 1:
            ctx = multiprocessing.get_context('fork')
            with ctx.Pool(min(workers, len(bounds))) as pool:
                parts = pool.starmap(_build_range, bounds, chunksize=1)
        else:
            parts = [_build_range(a, b) for a, b in bounds]
    finally:
        _JOB.clear()
    pos_n = np.concatenate([p['pos_n'] for p in parts] +
                           [np.zeros(0, np.int64)])
    neg_n = np.concatenate([p['neg_n'] for p in parts] +
                           [np.zeros(0, np.int64)])
    chips = ChipSet.concat([p['pos'] for p in parts] +
                           [p['neg'] for p in parts])
    img_index = np.concatenate([np.repeat(np.arange(n), pos_n),
                                np.repeat(np.arange(len(neg_n)), neg_n)])
    stats = {}
    if proposals is not None:
        stats = dict.fromkeys(PROPOSAL_COUNTS, 0)
        stats.update(dict.fromkeys(PROPOSAL_EXAMPLES, -1))
        for part in parts:  # in image order: the first example wins
            _add_counts(stats, part['counts'], 0)
    return dict(boxes=chips.boxes, boxes_scaled=chips.boxes_scaled,
                scale_index=chips.scale_index,
                scale_factor=chips.scale_factor,
                is_positive=chips.is_positive,
                img_index=img_index.astype(np.int64),
                stats=stats)


# -- the cache ----------------------------------------------------------------
class CacheWaitTimeout(TimeoutError):
    """Another process held the build lock for too long."""


def _warn(msg: str) -> None:
    print_log(msg, logger='current', level=logging.WARNING)


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _kernel_ids() -> Optional[dict]:
    """This process's boot id and pid namespace (Linux ``/proc``), or None
    where the system does not tell."""
    boot = _read('/proc/sys/kernel/random/boot_id')
    try:
        pidns = os.readlink('/proc/self/ns/pid')
    except OSError:
        return None
    return dict(boot=boot, pidns=pidns) if boot else None


def _start_ticks(pid: int) -> Optional[int]:
    """When process ``pid`` started, in clock ticks since boot (field 22 of
    ``/proc/PID/stat``), or None (no such process, or no ``/proc``)."""
    stat = _read(f'/proc/{pid}/stat')
    if stat is None or ')' not in stat:
        return None
    # The fields after the command name, which may hold spaces and ')'.
    fields = stat[stat.rindex(')') + 1:].split()
    return int(fields[19]) if len(fields) > 19 else None


def _owner_record() -> dict:
    """What a lock says of its owner: ``host``, ``pid`` and ``time``; on
    Linux also ``boot``, ``pidns`` and ``start`` (:func:`_start_ticks`),
    so that a pid reused by a later process is not taken for the owner."""
    owner = dict(host=socket.gethostname(), pid=os.getpid(),
                 time=time.time())
    ids = _kernel_ids()
    start = _start_ticks(os.getpid())
    if ids is not None and start is not None:
        owner.update(ids, start=start)
    return owner


def _owner_is_gone(owner: dict) -> bool:
    """Whether the process of a lock written on this host is gone.

    Where the lock and this process know their kernel (boot id, pid
    namespace): a lock of another pid namespace of this boot (a container
    given the same host name) is never judged gone, its processes are not
    visible here; otherwise the owner is gone when its pid is free or now
    belongs to a process started at another time (the pid was reused). A
    lock of an earlier boot, or without those fields (other systems,
    locks of older versions): gone when its pid is free.
    """
    ids = _kernel_ids()
    if ids is not None and all(k in owner for k in ('boot', 'pidns')) and \
            owner['boot'] == ids['boot']:
        if owner['pidns'] != ids['pidns']:
            return False
        start = owner.get('start')
        if type(start) is int:
            return _start_ticks(owner['pid']) != start
    return not pid_alive(owner['pid'])


class _Heartbeat:
    """Refresh a lock's modification time every ``every`` seconds in a
    thread, so that processes of other hosts can tell a live build from
    one that was killed (:meth:`ChipTableCache.load_or_build`)."""

    def __init__(self, lock: str, every: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(lock, every), daemon=True)
        self._thread.start()

    def _run(self, lock: str, every: float) -> None:
        warned = False
        while not self._stop.wait(every):
            try:
                os.utime(lock)
            except OSError as e:
                if not warned:  # once: it keeps trying
                    _warn(f'cannot refresh the chip-cache lock {lock} '
                          f'({e}): processes of other hosts may take this '
                          'build for a killed one and build the same '
                          'table again')
                    warned = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class ChipTableCache:
    """``<folder>/chips-<key>.npz`` with a build lock beside it.

    Args:
        folder (str): The cache folder; ``''`` disables the cache.
        wait_timeout (float): Seconds to wait for another process's build
            (its lock file) before giving up with :class:`CacheWaitTimeout`.
        poll (float): Seconds between looks at the lock.
        heartbeat (float): The builder refreshes its lock's modification
            time this often (seconds; recorded in the lock).
        stale_after (float): A lock whose record says it is refreshed but
            that has not changed for this many seconds of waiting is
            taken over: its build was killed (on another host or in
            another container, where its pid cannot be judged). Well above
            ``heartbeat`` and NFS's attribute caching (60 s).

    Layout of a cache file (``np.savez``, uncompressed, no pickle): the
    :data:`TABLE_FIELDS` arrays and ``meta``, a JSON string (uint8 bytes)
    with ``version``, ``key``, ``num_images`` and ``stats``. A file whose
    meta, fields, dtypes or shapes do not match is rebuilt.
    """

    def __init__(self, folder: str, wait_timeout: float = 1800.0,
                 poll: float = 0.5, heartbeat: float = 10.0,
                 stale_after: float = 180.0):
        self.folder = folder
        self.wait_timeout = float(wait_timeout)
        self.poll = float(poll)
        self.heartbeat = float(heartbeat)
        self.stale_after = float(stale_after)

    def path(self, key: str) -> str:
        return osp.join(self.folder, f'chips-{key}.npz')

    # reading ------------------------------------------------------------
    def load(self, key: str, num_images: int) -> Optional[dict]:
        """The cached table, or None (absent, or unreadable: warned)."""
        path = self.path(key)
        if not osp.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                table = {k: data[k] for k in data.files}
            problem = _table_problem(table, key, num_images)
        except Exception as e:  # noqa: BLE001 - any damage means rebuild
            problem = f'unreadable ({type(e).__name__}: {e})'
        if problem:
            _warn(f'chip cache {path} is {problem}; rebuilding it')
            return None
        meta = json.loads(bytes(table.pop('meta')).decode())
        table['stats'] = meta.get('stats', {})
        return table

    # writing ------------------------------------------------------------
    def writable(self) -> bool:
        """Create the folder if needed; False (warned) if it cannot be
        written."""
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as e:
            _warn(f'chip cache folder {self.folder} cannot be created '
                  f'({e}); continuing without a chip cache (set cache_dir '
                  'to a writable folder to reuse the chip table)')
            return False
        if not os.access(self.folder, os.W_OK | os.X_OK):
            _warn(f'chip cache folder {self.folder} is not writable; '
                  'continuing without a chip cache (set cache_dir to a '
                  'writable folder to reuse the chip table)')
            return False
        return True

    def save(self, key: str, table: dict, num_images: int) -> bool:
        """Write atomically; a failure is a warning, never a leftover."""
        path = self.path(key)
        meta = dict(version=CACHE_VERSION, key=key, num_images=num_images,
                    stats=table.get('stats', {}))
        arrays = {k: table[k] for k in TABLE_FIELDS}
        arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        try:
            # (a build killed mid-write left its temporary file: removed)
            with atomic_open(path, remove_leftovers=True) as f:
                np.savez(f, **arrays)
        except OSError as e:
            _warn(f'could not write chip cache {path} ({e}); continuing '
                  'without it')
            return False
        return True

    # the lock -------------------------------------------------------------
    def _try_lock(self, lock: str) -> Optional[str]:
        """Create ``lock`` holding its owner (host, pid, time); returns the
        content written (what tells this lock from a later one), or None
        if it exists. The content is written first and linked into place,
        so another process never reads a half-written lock."""
        owner = json.dumps(dict(_owner_record(), heartbeat=self.heartbeat))
        tmp = f'{lock}.{socket.gethostname()}.{os.getpid()}.tmp'
        try:
            with open(tmp, 'w') as f:
                f.write(owner)
            os.link(tmp, lock)
            return owner
        except FileExistsError:
            return None
        except OSError:
            pass  # no hard links here: create it in place
        finally:
            try:
                os.remove(tmp)
            except OSError:
                pass
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return None
        with os.fdopen(fd, 'w') as f:
            f.write(owner)
        return owner

    @staticmethod
    def _owner(lock: str) -> Optional[dict]:
        """The lock's ``host`` (str), ``pid`` (int) and ``time``, or None
        when it is gone or holds something else (another writer, damage).
        """
        try:
            with open(lock) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(owner, dict) or \
                not isinstance(owner.get('host'), str) or \
                type(owner.get('pid')) is not int or owner['pid'] <= 0:
            return None
        return owner

    def _describe(self, lock: str) -> str:
        owner = self._owner(lock)
        if owner is None:
            return 'its owner unknown: the file holds no host and pid'
        age = time.time() - owner['time'] if is_number(
            owner.get('time')) else float('nan')
        return (f'owned by process {owner["pid"]} on host {owner["host"]}, '
                f'taken {age:.0f} s ago')

    def _stale(self, lock: str) -> Optional[int]:
        """The lock's inode if its owner is a process of this host that is
        gone (:func:`_owner_is_gone`), else None."""
        try:
            inode = os.stat(lock).st_ino
        except OSError:
            return None
        owner = self._owner(lock)
        if owner is None or owner['host'] != socket.gethostname() or \
                not _owner_is_gone(owner):
            return None
        return inode

    def load_or_build(self, key: str, num_images: int,
                      build: Callable[[], dict]) -> dict:
        """The cached table, or ``build()`` (saved for the next time).

        With another process building the same key (its lock file exists),
        waits for its file and loads it, taking over if the lock's owner
        died (same host) or left without a file.
        """
        if not self.folder:
            return build()
        if not osp.isdir(self.folder) or \
                not os.access(self.folder, os.W_OK | os.X_OK):
            table = self.load(key, num_images) if osp.isdir(self.folder) \
                else None
            if table is not None:
                return table
            if not self.writable():
                return build()
        seen = _file_id(self.path(key))
        table = self.load(key, num_images)
        if table is not None:
            return table
        lock = self.path(key) + '.lock'
        deadline = time.monotonic() + self.wait_timeout
        announced = False
        silence = _Silence()
        while True:
            try:
                ours = self._try_lock(lock)
                if ours is not None:
                    break
            except OSError as e:  # e.g. EACCES on a network file system
                return self._build_uncached(
                    build, f'cannot create the lock {lock} ({e})')
            stale, why = self._stale(lock), 'its process is gone'
            if stale is None and silence.seconds(lock) > self.stale_after \
                    and self._refreshed(lock):
                stale = silence.inode
                why = (f'not refreshed for {self.stale_after:.0f} s: its '
                       f'build was killed; {self._describe(lock)}')
            if stale is not None:
                _warn(f'removing stale chip-cache lock {lock} ({why})')
                try:
                    # Only the lock judged stale: another waiter may have
                    # replaced it with its own since.
                    if os.stat(lock).st_ino == stale:
                        os.remove(lock)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    # Another user's file in a shared (sticky) folder.
                    return self._build_uncached(
                        build, f'cannot remove the stale lock {lock} ({e}, '
                        f'{self._describe(lock)}); delete it to share the '
                        'cache again')
                continue
            if not announced:
                print_log(f'waiting for another process building the chip '
                          f'table ({lock}, {self._describe(lock)})',
                          logger='current')
                announced = True
            if time.monotonic() > deadline:
                raise CacheWaitTimeout(
                    f'waited {self.wait_timeout:.0f} s for another process '
                    f'to build the chip table (lock file {lock}, '
                    f'{self._describe(lock)}); if no other process is '
                    'building it (e.g. a job killed on another node), '
                    'delete that file, or raise cache_wait_timeout')
            time.sleep(self.poll)
            if not osp.exists(lock):
                table = self.load(key, num_images)
                if table is not None:
                    return table
        heartbeat = _Heartbeat(lock, self.heartbeat)
        try:
            # Another process may have finished just before our lock.
            table = self.load(key, num_images) \
                if _file_id(self.path(key)) != seen else None
            if table is None:
                table = build()
                self.save(key, table, num_images)
            return table
        finally:
            heartbeat.stop()
            # ours only: another process may have taken it over (ours
            # judged stale while this one was stopped, e.g. by Ctrl-Z)
            if _read(lock) == ours:
                try:
                    os.remove(lock)
                except OSError:
                    pass

    def _refreshed(self, lock: str) -> bool:
        """Whether the lock's record says its owner refreshes it (an
        mmsnip that does; older locks and unknown owners never count as
        silent)."""
        owner = self._owner(lock)
        return owner is not None and is_number(owner.get('heartbeat'))

    @staticmethod
    def _build_uncached(build: Callable[[], dict], why: str) -> dict:
        """``build()`` without the cache, after a warning saying why (a
        cache can only cost time, never a run)."""
        _warn(f'chip cache: {why}; building the chip table in this '
              'process without the cache')
        return build()


class _Silence:
    """How long a lock has been seen unchanged (same inode, modification
    time and size) by this process, on its own monotonic clock: hosts'
    clocks need not agree."""

    def __init__(self):
        self.inode, self._seen, self._since = None, None, 0.0

    def seconds(self, lock: str) -> float:
        seen = _file_id(lock)
        now = time.monotonic()
        if seen is None or seen != self._seen:
            self._seen, self._since = seen, now
            self.inode = None if seen is None else seen[0]
        return 0.0 if seen is None else now - self._since


def _file_id(path: str):
    """``(inode, size, mtime)`` of a file, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _table_problem(table: dict, key: str, num_images: int) -> Optional[str]:
    """Why a loaded cache cannot be used, or None."""
    missing = [k for k in TABLE_FIELDS + ('meta', ) if k not in table]
    if missing:
        return f'missing arrays {missing} (another format)'
    try:
        meta = json.loads(bytes(table['meta']).decode())
    except (ValueError, UnicodeDecodeError):
        return 'without readable meta data'
    if meta.get('version') != CACHE_VERSION or meta.get('key') != key or \
            meta.get('num_images') != num_images:
        return (f'for another table (version {meta.get("version")}, key '
                f'{meta.get("key")}, expected {CACHE_VERSION}, {key})')
    c = len(table['boxes'])
    shapes = dict(boxes=(c, 4), boxes_scaled=(c, 4), scale_index=(c, ),
                  scale_factor=(c, ), is_positive=(c, ), img_index=(c, ))
    kinds = dict(boxes='f', boxes_scaled='f', scale_index='i',
                 scale_factor='f', is_positive='b', img_index='i')
    for name, shape in shapes.items():
        arr = table[name]
        if arr.shape != shape or arr.dtype.kind != kinds[name]:
            return f'inconsistent ({name} {arr.dtype}{arr.shape})'
    img = table['img_index']
    if c and (img.min() < 0 or img.max() >= num_images):
        return 'inconsistent (image index out of range)'
    pos = table['is_positive']
    if c and np.any(pos[1:] & ~pos[:-1]):
        return 'inconsistent (positives not first)'
    return None

