# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIPER negative chips (Sec. 3.3.3), pure numpy.

Per scale: drop the proposals that the scale's positive chips already
enclose, keep those whose size is in the scale's valid range, then cover
them greedily with chips holding at least ``M`` proposals (the same greedy
cover as positive chips). The union over scales is the image's negative
pool; every epoch samples a fixed number of chips per image from it.
"""
from typing import Sequence, Union

import numpy as np

from .boxes import as_boxes, box_sizes, in_range, inside_matrix
from .positive import ChipSet, _make_chip_set, greedy_cover
from .scales import ChipConfig


def generate_negative_chips(proposals: Union[np.ndarray, Sequence],
                            img_h: int, img_w: int, cfg: ChipConfig,
                            positive: ChipSet) -> ChipSet:
    """The negative-chip pool of one image.

    Args:
        proposals: ``(P, 4)`` or ``(P, 5)`` (with scores) xyxy proposals in
            ORIGINAL-image pixels shared by all scales, or a sequence of one
            such array per scale. Proposals are clipped to the image and
            empty ones ignored.
        img_h, img_w (int): Original image size.
        cfg (ChipConfig): Scales, chip size, stride and ``neg_min_proposals``.
        positive (ChipSet): The image's positive chips.

    Returns:
        ChipSet: Negative chips (``is_positive`` false), all scales.
    """
    per_scale = proposals if isinstance(proposals, (list, tuple)) else \
        [proposals] * len(cfg.scales)
    if len(per_scale) != len(cfg.scales):
        raise ValueError(f'got proposals for {len(per_scale)} scales, the '
                         f'config has {len(cfg.scales)}')
    sets = []
    for s, spec in enumerate(cfg.scales):
        props = as_boxes(np.asarray(per_scale[s])[:, :4]
                         if len(per_scale[s]) else [], 'proposals')
        props = np.clip(props, 0, [img_w, img_h, img_w, img_h])
        factor = spec.factor_for(img_h, img_w)
        canvas = spec.scaled_shape(img_h, img_w)
        # Sec. 3.3.3: proposals in R_i not covered by this scale's C_pos.
        keep = in_range(box_sizes(props), spec.valid_range)
        scaled = np.minimum(props[keep] * factor,
                            [canvas[1], canvas[0], canvas[1], canvas[0]])
        pos_chips = positive.boxes_scaled[positive.scale_index == s]
        if len(pos_chips) and len(scaled):
            scaled = scaled[~inside_matrix(scaled, pos_chips).any(axis=0)]
        chips, _, _ = greedy_cover(scaled, canvas, cfg.chip_size,
                                   cfg.chip_stride,
                                   min_count=cfg.neg_min_proposals)
        sets.append(_make_chip_set(chips, s, factor, img_h, img_w, False))
    return ChipSet.concat(sets)


def sample_negative_chips(pool_size: int, num: int, seed: int, epoch: int,
                          image_key: int) -> np.ndarray:
    """This epoch's negative chips of one image, as pool indices.

    Deterministic from ``(seed, epoch, image_key)`` (a ``SeedSequence``, not
    Python's salted ``hash``), independent of other images and of the order
    in which images are visited. Without replacement; the whole pool when it
    holds ``num`` chips or fewer.

    Returns:
        np.ndarray: Sorted int64 indices into the pool.
    """
    if pool_size <= num:
        return np.arange(pool_size, dtype=np.int64)
    rng = np.random.default_rng(
        np.random.SeedSequence([int(seed), int(epoch), int(image_key)]))
    return np.sort(rng.choice(pool_size, size=num, replace=False))
