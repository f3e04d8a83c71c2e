# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIPER negative chips (Sec. 3.3.3), pure numpy.

Per scale: drop the proposals that the scale's positive chips already
enclose, keep those whose size is in the scale's valid range, then cover
them greedily with chips holding at least ``M`` proposals (the same
:func:`~mmsnip.chips.positive.greedy_cover` as positive chips). The union
over scales is the image's negative pool; every epoch samples a fixed number
of chips per image from it (:func:`sample_negative_chips`).
"""
import hashlib
import numbers
from typing import Sequence, Union

import numpy as np

from .boxes import box_sizes, in_range, inside_matrix, sanitize_boxes
from .positive import ChipSet, _chip_set_rows, greedy_cover, to_canvas
from .scales import ChipConfig

ProposalInput = Union[np.ndarray, Sequence[np.ndarray]]


def _as_proposals(props, scale_index: int) -> np.ndarray:
    """``(P, 4)`` or ``(P, 5)`` proposals as float64 ``(P, 5)``; a missing
    score column is filled with ones."""
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
                            cfg: ChipConfig, positive: ChipSet) -> ChipSet:
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
    # Sanitise and size the proposals of all scales in one go.
    arrays = [_as_proposals(per_scale[s], s) for s in range(num_scales)]
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    all_props = np.concatenate(arrays)
    all_boxes, all_keep = sanitize_boxes(all_props[:, :4], img_h, img_w)
    all_sizes = box_sizes(all_boxes)
    chips_scaled, rows = [], []
    for s, spec in enumerate(cfg.scales):
        a, b = bounds[s], bounds[s + 1]
        if a == b:
            continue
        props, boxes, keep = all_props[a:b], all_boxes[a:b], all_keep[a:b]
        if neg_cfg.max_proposals is not None:
            # Top-k by score; equal scores keep their input order.
            order = np.argsort(-props[:, 4], kind='stable')
            order = order[keep[order]][:neg_cfg.max_proposals]
            keep = np.zeros_like(keep)
            keep[order] = True
        factor = spec.factor_for(img_h, img_w)
        canvas = spec.scaled_shape(img_h, img_w)
        if neg_cfg.filter_range:
            # Sec. 3.3.3: only proposals whose size lies in R_i count.
            keep = keep & in_range(all_sizes[a:b], spec.valid_range)
        if not keep.any():
            continue
        scaled = to_canvas(boxes[keep], factor, canvas)
        pos_chips = positive.boxes_scaled[positive.scale_index == s]
        if len(pos_chips) and len(scaled):
            # Sec. 3.3.3: remove the proposals covered by C^i_pos.
            scaled = scaled[~inside_matrix(scaled, pos_chips).any(axis=0)]
        min_count = neg_cfg.min_proposals_for(s)
        if len(scaled) < min_count:
            continue  # no chip can hold M of them
        # Sec. 3.3.3: greedily pick chips covering at least M proposals.
        chips, _, _ = greedy_cover(scaled, canvas, cfg.chip_size,
                                   cfg.chip_stride,
                                   min_count=min_count,
                                   off_grid=cfg.off_grid)
        if len(chips):
            chips_scaled.append(chips)
            rows.append((len(chips), s, factor, canvas))
    if not rows:
        return ChipSet.empty()
    num, index, factor, canvas = zip(*rows)
    return _chip_set_rows(
        np.concatenate(chips_scaled), np.repeat(index, num),
        np.repeat(factor, num),
        np.repeat(np.array(canvas, np.float64), num, axis=0), img_h, img_w,
        False)


def _key_entropy(image_key: Union[int, str]) -> int:
    """A non-negative integer for ``SeedSequence`` from an image key.

    Non-negative integers are used as they are; strings (file names) and
    negative integers go through SHA-256 (stable across processes, unlike
    Python's salted ``hash``).
    """
    if isinstance(image_key, numbers.Integral) and \
            not isinstance(image_key, bool) and image_key >= 0:
        return int(image_key)
    if isinstance(image_key, (str, numbers.Integral)) and \
            not isinstance(image_key, bool):
        digest = hashlib.sha256(repr(image_key).encode()).digest()
        return int.from_bytes(digest[:8], 'little')
    raise ValueError('image_key must be an int or a str, got '
                     f'{type(image_key).__name__}')


def sample_negative_chips(pool_size: int, num: int, seed: int, epoch: int,
                          image_key: Union[int, str]) -> np.ndarray:
    """This epoch's negative chips of one image, as pool indices.

    Sec. 3.3.3: a fixed number of negative chips per image per epoch is
    sampled from the image's pool. Deterministic from ``(seed, epoch,
    image_key)`` through ``np.random.SeedSequence``: independent of other
    images, of the order in which images are visited and of the process.
    Without replacement; the whole pool when it holds ``num`` chips or
    fewer.

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
    if pool_size < 0 or num < 0:
        raise ValueError(f'pool_size and num must be >= 0, got {pool_size}, '
                         f'{num}')
    if pool_size <= num:
        return np.arange(pool_size, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(
        [int(seed), int(epoch), _key_entropy(image_key)]))
    return np.sort(rng.choice(pool_size, size=num, replace=False))
