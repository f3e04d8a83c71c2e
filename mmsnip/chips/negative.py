# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIPER negative chips (Sec. 3.3.3), pure numpy.

Per scale: drop the proposals that the scale's positive chips already
enclose, keep those whose size is in the scale's valid range, then cover
them greedily with chips holding at least ``M`` proposals (the same
:func:`~mmsnip.chips.positive.greedy_cover` as positive chips). The union
over scales is the image's negative pool; every epoch samples a fixed number
of chips per image from it (:func:`sample_negative_chips`).

:func:`negative_chips_batch` gives the same pools for many images at once
(the chip table's path): the per-proposal steps (clean-up, top-k, range
filter, scaling, the test against the positive chips, the index runs) run
over all proposals of all images in one go, and the greedy covers of all
their canvases step by step together
(:func:`~mmsnip.chips.cover_batch.greedy_cover_runs`).
"""
import hashlib
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from mmsnip.utils.checks import is_integer
from .boxes import (FIT_EPS, box_sizes, in_range, inside_matrix,
                    sanitize_boxes)
from .cover_batch import (MAX_GRID_CELLS, axis_runs, greedy_cover_runs,
                          grid_length)
from .positive import ChipSet, chip_set_from_rows, greedy_cover, to_canvas
from .scales import ChipConfig

ProposalInput = Union[np.ndarray, Sequence[np.ndarray]]


def as_proposals(props, scale_index: int) -> np.ndarray:
    """One scale's proposals as a float64 ``(P, 5)`` array ``[x1, y1, x2,
    y2, score]`` (ORIGINAL pixels, as given; a missing score column is
    filled with ones), for :func:`generate_negative_chips` and the chip
    table's flat rows.

    Raises:
        ValueError: A shape other than ``(P, 4)`` or ``(P, 5)``, naming
            ``scale_index``.
    """
    arr = np.asarray(props, np.float64)
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(f'proposals of scale {scale_index} must have shape '
                         f'(P, 4) or (P, 5), got {arr.shape}')
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
    return arr


def generate_negative_chips(proposals: ProposalInput, img_h: int, img_w: int,
                            cfg: ChipConfig, positive: ChipSet,
                            cover: Optional[Callable] = None) -> ChipSet:
    """The negative-chip pool of one image (Sec. 3.3.3).

    Per scale ``i``: proposals are sanitised like ground truth (clipped to
    the image, NaN/inf or empty ones dropped); with
    ``cfg.negative.max_proposals`` only the top-scoring ones are kept; those
    fully inside a positive chip of scale ``i`` are dropped; with
    ``cfg.negative.filter_range`` (the paper) only those whose size is in
    ``R_i`` are kept; chips enclosing at least
    ``cfg.negative.min_proposals_for(i)`` of them are picked greedily.

    Args:
        proposals (np.ndarray | Sequence[np.ndarray]): ``(P, 4)`` or
            ``(P, 5)`` (``[x1, y1, x2, y2, score]``) float proposals, xyxy in
            ORIGINAL-image pixels, shared by all scales; or a sequence of
            one such array per scale.
        img_h, img_w (int): ORIGINAL image size.
        cfg (ChipConfig): Scales, chip size, stride, negative settings.
        positive (ChipSet): The image's positive chips.
        cover (callable, optional): The greedy cover, called and returning
            like :func:`~mmsnip.chips.positive.greedy_cover` (the default);
            see :func:`~mmsnip.chips.positive.generate_positive_chips`.

    Returns:
        ChipSet: Negative chips (``is_positive`` false) of all scales,
        scale by scale.

    Raises:
        ValueError: On mis-shaped proposals or a number of per-scale arrays
            different from the number of scales.
    """
    num_scales = len(cfg.scales)
    if isinstance(proposals, (list, tuple)):
        per_scale = list(proposals)
        if len(per_scale) != num_scales:
            raise ValueError(f'got proposals for {len(per_scale)} scales, '
                             f'the config has {num_scales}')
    else:
        per_scale = [proposals] * num_scales
    neg_cfg = cfg.negative
    cover = cover or greedy_cover
    # Sanitise, size, range-filter and scale the proposals of all scales in
    # one go (rows stay grouped by scale); only the cover runs per scale.
    arrays = [as_proposals(per_scale[s], s) for s in range(num_scales)]
    counts = [len(a) for a in arrays]
    all_props = np.concatenate(arrays)
    all_boxes, keep = sanitize_boxes(all_props[:, :4], img_h, img_w)
    if neg_cfg.max_proposals is not None:
        bounds = np.cumsum([0] + counts)
        for s in range(num_scales):
            a, b = bounds[s], bounds[s + 1]
            # Top-k by score; equal scores keep their input order.
            order = np.argsort(-all_props[a:b, 4], kind='stable')
            order = order[keep[a:b][order]][:neg_cfg.max_proposals]
            top = np.zeros(b - a, bool)
            top[order] = True
            keep[a:b] = top
    if neg_cfg.filter_range:
        # Sec. 3.3.3: only proposals whose size lies in R_i count.
        keep &= in_range(box_sizes(all_boxes), (
            np.repeat(cfg.valid_ranges[:, 0], counts),
            np.repeat(cfg.valid_ranges[:, 1], counts)))
    idx = np.flatnonzero(keep)
    if not len(idx):
        return ChipSet.empty()
    factors, canvases = zip(*cfg.geometry(img_h, img_w))
    row_scale = np.repeat(np.arange(num_scales), counts)[idx]
    scaled = to_canvas(all_boxes[idx],
                       np.asarray(factors)[row_scale][:, None],
                       np.asarray(canvases, np.float64)[row_scale])
    if len(positive):
        # Sec. 3.3.3: remove the proposals covered by C^i_pos (positive
        # chips of the proposal's own scale), "covered" as in the cover.
        covered = (inside_matrix(scaled, positive.boxes_scaled, FIT_EPS) &
                   (positive.scale_index[:, None] == row_scale)).any(axis=0)
        if covered.any():
            scaled, row_scale = scaled[~covered], row_scale[~covered]
    bounds = np.searchsorted(row_scale, np.arange(num_scales + 1))
    chips_scaled, rows = [], []
    for s in range(num_scales):
        a, b = bounds[s], bounds[s + 1]
        min_count = neg_cfg.min_proposals_for(s)
        if b - a < min_count:
            continue  # no chip can hold M of them
        # Sec. 3.3.3: greedily pick chips covering at least M proposals.
        chips, _, _ = cover(scaled[a:b], canvases[s], cfg.chip_size,
                            cfg.chip_stride, min_count=min_count,
                            off_grid=cfg.off_grid)
        if len(chips):
            chips_scaled.append(chips)
            rows.append((len(chips), s, factors[s], canvases[s]))
    if not rows:
        return ChipSet.empty()
    num, index, factor, canvas = zip(*rows)
    return chip_set_from_rows(
        np.concatenate(chips_scaled), np.repeat(index, num),
        np.repeat(factor, num),
        np.repeat(np.array(canvas, np.float64), num, axis=0), img_h, img_w,
        False)


def _top_k_mask(seg: np.ndarray, score: np.ndarray, keep: np.ndarray,
                k: int) -> np.ndarray:
    """Per segment, the ``k`` highest-scoring kept rows (equal scores:
    input order; NaN last), as :func:`generate_negative_chips` picks them.

    Args:
        seg (np.ndarray): ``(R,)`` int segment of each row, non-decreasing.
        score (np.ndarray): ``(R,)`` float scores.
        keep (np.ndarray): ``(R,)`` bool rows that may be picked.
        k (int): Rows per segment.

    Returns:
        np.ndarray: ``(R,)`` bool.
    """
    # lexsort is stable: by segment, then by descending score.
    order = np.lexsort((-score, seg))
    kept = keep[order]
    rank = np.cumsum(kept)
    first = np.searchsorted(seg[order], seg[order], side='left')
    before = np.where(first > 0, rank[first - 1], 0)
    out = np.zeros(len(seg), bool)
    out[order] = kept & (rank - before <= k)
    return out


def negative_chips_batch(proposals: np.ndarray, row_start: np.ndarray,
                         heights: np.ndarray, widths: np.ndarray,
                         cfg: ChipConfig, positive: ChipSet,
                         pos_start: np.ndarray,
                         sanitized: Optional[Tuple[np.ndarray,
                                                   np.ndarray]] = None,
                         shared_scales: bool = False):
    """Negative pools of many images: the concatenation of
    :func:`generate_negative_chips` over the images (identical chips),
    cheaper per image.

    Args:
        proposals (np.ndarray): ``(R, 5)`` float ``[x1, y1, x2, y2,
            score]``, ORIGINAL pixels, grouped by image, then scale.
        row_start (np.ndarray): ``(N * S + 1,)`` int: the proposals of
            image ``n``, scale ``s`` are rows ``row_start[n * S + s]:
            row_start[n * S + s + 1]`` (``row_start[0]`` = 0). With
            ``shared_scales``, ``(N + 1,)``: image ``n``'s rows
            ``row_start[n]:row_start[n + 1]`` serve every scale.
        heights, widths (np.ndarray): ``(N,)`` ORIGINAL image sizes, > 0.
        cfg (ChipConfig): Scales (``S``), chip size, stride, negatives.
        positive (ChipSet): The positive chips of all images, image by
            image (:func:`~mmsnip.chips.positive.positive_chips_batch`).
        pos_start (np.ndarray): ``(N + 1,)`` int: image ``n``'s positive
            chips are rows ``pos_start[n]:pos_start[n + 1]``.
        sanitized (tuple, optional): What
            :func:`~mmsnip.chips.boxes.sanitize_boxes` gives for
            ``proposals[:, :4]`` and each row's image size, when the caller
            already has it (the chip table counts the rows it drops);
            computed here if None.
        shared_scales (bool): One row set per image for all scales (a
            file pooled over the scales,
            :mod:`mmsnip.datasets.proposal_pool`): the same chips as the
            set repeated for each scale, without sanitising, ranking and
            sizing the rows once per scale.

    Returns:
        tuple: ``(chips, counts)``: the negative chips of image 0, then
        image 1, ... (each scale by scale) and ``(N,)`` int64 chips per
        image.
    """
    num_scales = len(cfg.scales)
    row_start = np.asarray(row_start, np.int64)
    n = len(heights)
    sets = n if shared_scales else n * num_scales
    if row_start.shape != (sets + 1, ) or row_start[0] != 0:
        per = '' if shared_scales else f' x {num_scales}'
        raise ValueError(f'row_start must have {n}{per} + 1 entries '
                         f'starting at 0, got {row_start.shape}')
    props = np.asarray(proposals, np.float64).reshape(-1, 5)
    # Each row's row set: (image, scale), or the image when shared.
    row_set = np.repeat(np.arange(sets), np.diff(row_start))
    h_img = np.asarray(heights, np.float64)
    w_img = np.asarray(widths, np.float64)
    row_img = row_set if shared_scales else row_set // num_scales
    if sanitized is None:
        boxes, keep = sanitize_boxes(props[:, :4], h_img[row_img],
                                     w_img[row_img])
    else:  # the caller's
        boxes, keep = sanitized[0], np.asarray(sanitized[1], bool)
        if boxes.shape != (len(props), 4) or keep.shape != (len(props), ):
            raise ValueError(
                f'sanitized must be ({len(props)}, 4) boxes and '
                f'({len(props)},) keep, got {boxes.shape}, {keep.shape}')
    if cfg.negative.max_proposals is not None:
        keep = _top_k_mask(row_set, props[:, 4], keep,
                           cfg.negative.max_proposals)
    if shared_scales:
        idx, seg = _pooled_canvas_rows(boxes, keep, row_img, n, cfg)
    else:
        idx, seg = _canvas_rows(boxes, keep, row_set, cfg)
    factor, canvas = _canvas_geometry(h_img, w_img, cfg)
    scaled = to_canvas(boxes[idx], factor.reshape(-1)[seg][:, None],
                       canvas.reshape(-1, 2)[seg])
    # Sec. 3.3.3: remove the proposals covered by C^i_pos.
    free = ~_covered_by_positives(scaled, seg, positive,
                                  np.asarray(pos_start, np.int64),
                                  num_scales)
    chips, chip_seg = _cover_canvases(scaled[free], seg[free], canvas, cfg)
    k_img, k_scale = np.divmod(chip_seg, num_scales)
    counts = np.bincount(k_img, minlength=n).astype(np.int64)
    return chip_set_from_rows(chips, k_scale, factor[k_img, k_scale],
                              canvas[k_img, k_scale], h_img[k_img],
                              w_img[k_img], False), counts


def _canvas_rows(boxes: np.ndarray, keep: np.ndarray, row_set: np.ndarray,
                 cfg: ChipConfig) -> Tuple[np.ndarray, np.ndarray]:
    """The rows that count on each canvas, one row set per (image, scale).

    Sec. 3.3.3: with ``cfg.negative.filter_range`` (the paper) only the
    kept proposals whose size lies in their scale's ``R_i``.

    Args:
        boxes (np.ndarray): ``(R, 4)`` sanitised boxes, ORIGINAL pixels.
        keep (np.ndarray): ``(R,)`` bool rows still in play.
        row_set (np.ndarray): ``(R,)`` int ``image * S + scale`` of each
            row, non-decreasing.
        cfg (ChipConfig): Scales and valid ranges.

    Returns:
        tuple: ``(idx, seg)``, ``(K,)`` int each: the rows, and their
        canvas ``image * S + scale``, grouped by canvas in row order.
    """
    if cfg.negative.filter_range:
        scale = row_set % len(cfg.scales)
        ranges = cfg.valid_ranges
        keep = keep & in_range(box_sizes(boxes),
                               (ranges[scale, 0], ranges[scale, 1]))
    idx = np.flatnonzero(keep)
    return idx, row_set[idx]


def _pooled_canvas_rows(boxes: np.ndarray, keep: np.ndarray,
                        row_img: np.ndarray, n: int, cfg: ChipConfig
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`_canvas_rows` for one row set per image serving every scale
    (a file pooled over the scales): each row counts on the canvas of
    every scale whose ``R_i`` holds its size (every scale without
    ``filter_range``).

    Args:
        boxes (np.ndarray): ``(R, 4)`` sanitised boxes, ORIGINAL pixels.
        keep (np.ndarray): ``(R,)`` bool rows still in play.
        row_img (np.ndarray): ``(R,)`` int image of each row,
            non-decreasing.
        n (int): Number of images.
        cfg (ChipConfig): Scales and valid ranges.

    Returns:
        tuple: ``(idx, seg)`` as :func:`_canvas_rows` (a row appears once
        per canvas it counts on).
    """
    num_scales = len(cfg.scales)
    ranges = cfg.valid_ranges
    fits = np.repeat(keep[:, None], num_scales, axis=1)
    if cfg.negative.filter_range:
        fits &= in_range(box_sizes(boxes)[:, None],
                         (ranges[:, 0], ranges[:, 1]))
    # each scale's rows, placed canvas by canvas (image, then scale)
    # without a sort: the rows of an image are consecutive
    in_scale = [np.flatnonzero(fits[:, k]) for k in range(num_scales)]
    counts = np.stack([np.bincount(row_img[r], minlength=n)
                       for r in in_scale], axis=1)  # (n, S)
    seg_start = np.cumsum(counts.ravel()) - counts.ravel()
    col_start = np.cumsum(counts, axis=0) - counts
    idx = np.empty(int(counts.sum()), np.int64)
    for k, r in enumerate(in_scale):
        img_k = row_img[r]
        idx[seg_start[img_k * num_scales + k] + np.arange(len(r)) -
            col_start[img_k, k]] = r
    return idx, np.repeat(np.arange(n * num_scales), counts.ravel())


def _canvas_geometry(heights: np.ndarray, widths: np.ndarray,
                     cfg: ChipConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Each image's scale factors ``(N, S)`` and canvas sizes ``(N, S, 2)``
    (``(h, w)``, scaled pixels), as ``cfg.geometry`` gives them."""
    factor = np.empty((len(heights), len(cfg.scales)))
    canvas = np.empty((len(heights), len(cfg.scales), 2))
    for k, hw in enumerate(zip(heights.tolist(), widths.tolist())):
        factor[k], canvas[k] = zip(*cfg.geometry(*hw))
    return factor, canvas


def _covered_by_positives(scaled: np.ndarray, seg: np.ndarray,
                          positive: ChipSet, pos_start: np.ndarray,
                          num_scales: int) -> np.ndarray:
    """Which proposals lie inside a positive chip of their own canvas
    ("inside" as in the cover: within ``FIT_EPS``).

    Every (proposal, positive chip of its image and scale) pair is tested
    at once, one coordinate column at a time.

    Args:
        scaled (np.ndarray): ``(K, 4)`` proposals, SCALED pixels of their
            canvas.
        seg (np.ndarray): ``(K,)`` int canvas ``image * S + scale``.
        positive (ChipSet): The positive chips of all images, image by
            image.
        pos_start (np.ndarray): ``(N + 1,)`` int: image ``n``'s positive
            chips are rows ``pos_start[n]:pos_start[n + 1]``.
        num_scales (int): ``S``.

    Returns:
        np.ndarray: ``(K,)`` bool.
    """
    n = len(pos_start) - 1
    pos_key = np.repeat(np.arange(n), np.diff(pos_start)) * num_scales + \
        positive.scale_index
    pos_order = np.argsort(pos_key, kind='stable')
    pos_key = pos_key[pos_order]
    # each canvas's run of positive chips, looked up per row
    seg_first = np.searchsorted(pos_key, np.arange(n * num_scales + 1))
    first = seg_first[seg]
    per = seg_first[seg + 1] - first
    pair_row = np.repeat(np.arange(len(seg)), per)
    pair_chip = pos_order[np.arange(len(pair_row)) - np.repeat(
        np.cumsum(per) - per, per) + np.repeat(first, per)]
    inside = np.ones(len(pair_row), bool)
    for j in range(4):
        box = scaled[:, j][pair_row]
        chip = positive.boxes_scaled[:, j][pair_chip]
        inside &= (box >= chip - FIT_EPS) if j < 2 else \
            (box <= chip + FIT_EPS)
    return np.bincount(pair_row[inside], minlength=len(seg)) > 0


def _cover_canvases(scaled: np.ndarray, seg: np.ndarray, canvas: np.ndarray,
                    cfg: ChipConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Sec. 3.3.3: on every canvas, greedily pick chips covering at least
    ``M`` of its proposals (``cfg.negative.min_proposals_for(scale)``).

    Most canvases go through one batched loop
    (:func:`~mmsnip.chips.cover_batch.greedy_cover_runs`, each
    proposal's index runs in its canvas's candidate starts found for all
    canvases at once); a canvas with a huge grid (over
    ``MAX_GRID_CELLS`` starts) goes through
    :func:`~mmsnip.chips.positive.greedy_cover` on its own. A canvas with
    fewer than ``M`` proposals has no chip.

    Args:
        scaled (np.ndarray): ``(K, 4)`` proposals, SCALED pixels, grouped
            by canvas.
        seg (np.ndarray): ``(K,)`` int canvas ``image * S + scale``,
            non-decreasing.
        canvas (np.ndarray): ``(N, S, 2)`` canvas ``(h, w)`` per image and
            scale.
        cfg (ChipConfig): Chip size, stride, ``off_grid``, negatives.

    Returns:
        tuple: ``(chips, chip_seg)``: ``(C, 4)`` chips, SCALED pixels of
        their canvas, canvas by canvas (image, then scale), each canvas in
        greedy order; ``(C,)`` int their canvas.
    """
    n, num_scales = canvas.shape[:2]
    num_segs = n * num_scales
    img, scale = np.divmod(seg, num_scales)
    side_h = canvas[img, scale, 0].astype(np.int64)
    side_w = canvas[img, scale, 1].astype(np.int64)
    along = [axis_runs(scaled[:, axis], scaled[:, axis + 2], seg, side,
                       cfg.chip_size, cfg.chip_stride, cfg.off_grid)
             for axis, side in ((0, side_w), (1, side_h))]
    seg_min = np.tile([cfg.negative.min_proposals_for(s)
                       for s in range(num_scales)], n)
    seg_size = np.bincount(seg, minlength=num_segs)
    cells = grid_length(canvas[..., 0], cfg.chip_size, cfg.chip_stride) * \
        grid_length(canvas[..., 1], cfg.chip_size, cfg.chip_stride)
    batched = cells.reshape(-1) <= MAX_GRID_CELLS
    fits = batched[seg] & (along[0].first < along[0].last) & \
        (along[1].first < along[1].last)
    picks, _ = greedy_cover_runs(
        along[0].first[fits], along[0].last[fits], along[1].first[fits],
        along[1].last[fits], seg[fits], seg_min)
    k_img, k_scale = np.divmod(picks[:, 0], num_scales)
    canvas_hw = canvas[k_img, k_scale]
    x1, y1 = (runs.starts(picks[:, 1 + axis], picks[:, 0],
                          canvas_hw[:, 1 - axis], cfg.chip_size,
                          cfg.chip_stride)
              for axis, runs in enumerate(along))
    extent = np.minimum(canvas_hw[:, ::-1], cfg.chip_size)
    chips = [np.stack([x1, y1, x1 + extent[:, 0], y1 + extent[:, 1]],
                      axis=1)]
    chip_seg = [picks[:, 0]]
    bounds = np.searchsorted(seg, np.arange(num_segs + 1))
    for j in np.flatnonzero(~batched & (seg_size >= seg_min)).tolist():
        a, b = bounds[j], bounds[j + 1]
        k, s = divmod(j, num_scales)
        got, _, _ = greedy_cover(
            scaled[a:b], tuple(canvas[k, s].astype(np.int64).tolist()),
            cfg.chip_size, cfg.chip_stride, min_count=int(seg_min[j]),
            off_grid=cfg.off_grid)
        chips.append(got)
        chip_seg.append(np.full(len(got), j))
    # Image by image, scale by scale, each canvas in greedy order.
    chip_seg = np.concatenate(chip_seg)
    order = np.argsort(chip_seg, kind='stable')
    return np.concatenate(chips)[order], chip_seg[order]


# The rule of sample_negative_chips; stored in SniperSampler's checkpoint
# state, so a run stopped mid-epoch under another rule does not resume on
# other chips. 1: one np.random.SeedSequence stream per image (until
# 2026-11-27); 2: counter-based keys (below).
NEGATIVE_SAMPLING_RULE = 2

_U64 = 1 << 64
_GOLDEN = 0x9E3779B97F4A7C15
_INCREMENT = np.uint64(_GOLDEN)  # splitmix64's stream step
# Offsets of the seed, epoch and image-key inputs (multiples of it).
_SEED_STEP, _EPOCH_STEP, _KEY_STEP = (np.uint64(k * _GOLDEN % _U64)
                                      for k in (1, 2, 3))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (arithmetic mod 2**64): a
    bijection whose outputs look independent for any inputs."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _key_entropy(image_key: Union[int, str]) -> int:
    """A 64-bit integer from an image key.

    Non-negative integers are used as they are (mod 2**64); strings (file
    names) and negative integers go through SHA-256 (stable across
    processes, unlike Python's salted ``hash``).
    """
    if is_integer(image_key) and image_key >= 0:
        return int(image_key) % _U64
    if isinstance(image_key, str) or is_integer(image_key):
        digest = hashlib.sha256(repr(image_key).encode()).digest()
        return int.from_bytes(digest[:8], 'little')
    raise ValueError('image_key must be an int or a str, got '
                     f'{type(image_key).__name__}')


def _image_entropy(image_keys) -> np.ndarray:
    """``(N,)`` uint64 :func:`_key_entropy` of each key (an integer array
    of non-negative keys without a Python loop)."""
    if isinstance(image_keys, np.ndarray) and image_keys.dtype.kind in 'iu':
        keys = image_keys.reshape(-1)
        if not len(keys) or keys.min() >= 0:
            return keys.astype(np.uint64)
    return np.array([_key_entropy(k) for k in image_keys],
                    np.uint64).reshape(-1)


def sample_negative_chips_batch(pool_sizes, num: int, seed: int, epoch: int,
                                image_keys) -> tuple:
    """This epoch's negative chips of many images: for each image what
    :func:`sample_negative_chips` returns, computed for all at once.

    Each chip ``j`` of an image's pool gets a 64-bit key, a hash
    (splitmix64) of ``(seed, epoch, image key, j)``; the image's ``num``
    chips of smallest key are drawn. Every ``num``-subset of the pool is
    equally likely, and an image's draw depends on nothing but its own
    ``(seed, epoch, key, pool size)``: not on other images, visiting
    order, batching or the process.

    Args:
        pool_sizes (array): ``(N,)`` int, chips in each image's pool, >= 0.
        num (int): Chips to draw per image, >= 0 (all of a smaller pool).
        seed (int), epoch (int): >= 0.
        image_keys (array | list): ``(N,)`` stable keys of the images
            (int or str, as :func:`sample_negative_chips`).

    Returns:
        tuple: ``(local, counts)``: ``local`` int64 pool indices, image by
        image in the given order, ascending within an image; ``counts``
        ``(N,)`` int64, ``min(num, pool_size)`` per image.
    """
    sizes = np.asarray(pool_sizes, np.int64).reshape(-1)
    if not is_integer(num) or num < 0 or (len(sizes) and sizes.min() < 0):
        raise ValueError(f'pool sizes and num must be ints >= 0, got '
                         f'{sizes.min() if len(sizes) else 0}, {num!r}')
    if not (is_integer(seed) and is_integer(epoch) and seed >= 0 and
            epoch >= 0):
        raise ValueError(f'seed and epoch must be ints >= 0, got {seed!r}, '
                         f'{epoch!r}')
    entropy = _image_entropy(image_keys)
    if len(entropy) != len(sizes):
        raise ValueError(f'got {len(entropy)} image keys for {len(sizes)} '
                         'pool sizes')
    counts = np.minimum(sizes, num)
    total = int(sizes.sum())
    seg = np.repeat(np.arange(len(sizes)), sizes)
    local = np.arange(total, dtype=np.int64) - np.repeat(
        np.cumsum(sizes) - sizes, sizes)
    if num and (sizes > num).any():  # else every pool is drawn whole
        stream = _mix64(np.array([int(seed) % _U64], np.uint64) +
                        _SEED_STEP)
        stream = _mix64(stream ^ _mix64(
            np.array([int(epoch) % _U64], np.uint64) + _EPOCH_STEP))
        image_state = _mix64(stream ^ _mix64(entropy + _KEY_STEP))
        # Chip j: the (j + 1)-th number of the image's splitmix64 stream.
        keys = _mix64(image_state[seg] + (local.astype(np.uint64) +
                                          np.uint64(1)) * _INCREMENT)
        # Per image, its chips by key; the first num of each are drawn.
        order = np.lexsort((keys, seg))
        drawn = order[local < num]  # local is the rank within the image
        drawn = drawn[np.lexsort((local[drawn], seg[drawn]))]
        return local[drawn], counts
    return local[local < num], counts


def sample_negative_chips(pool_size: int, num: int, seed: int, epoch: int,
                          image_key: Union[int, str]) -> np.ndarray:
    """This epoch's negative chips of one image, as pool indices.

    Sec. 3.3.3: a fixed number of negative chips per image per epoch is
    sampled from the image's pool. Deterministic from ``(seed, epoch,
    image_key)`` (:func:`sample_negative_chips_batch`, which draws for
    many images at once: the same draw): independent of other images, of
    the order in which images are visited and of the process. Without
    replacement, uniform over subsets; the whole pool when it holds
    ``num`` chips or fewer.

    Args:
        pool_size (int): Chips in the image's pool, >= 0.
        num (int): Chips to draw, >= 0.
        seed (int): Run seed, >= 0.
        epoch (int): Epoch, >= 0.
        image_key (int | str): A stable key of the image (its index or id,
            or its file name).

    Returns:
        np.ndarray: ``(min(num, pool_size),)`` int64 indices into the pool,
        sorted ascending.
    """
    return sample_negative_chips_batch([pool_size], num, seed, epoch,
                                       [image_key])[0]
