# Copyright (c) mmsnip contributors. All rights reserved.
"""Batching chips of different sizes into a few padded shapes."""
from typing import List, Optional

import numpy as np


def group_by_shape(shapes, max_pad_ratio: float = 0.3,
                   max_group: Optional[int] = None) -> List[np.ndarray]:
    """Split chips into batches that waste little on padding.

    A batch is padded to its largest height and width. Chips are taken
    largest area first; a chip joins the current batch while the batch's
    padded pixels stay within ``(1 + max_pad_ratio)`` times its real
    pixels (and it holds fewer than ``max_group`` chips), else it starts
    the next batch. Chips of one shape always share a batch (up to
    ``max_group``), so FocusChips of similar size run together.

    Args:
        shapes (array): ``(N, 2)`` chip ``(h, w)`` in the pixels the network
            sees (SCALED).
        max_pad_ratio (float): Allowed padding, as a fraction of a batch's
            real pixels (0: only equal shapes share a batch; ``inf``: one
            batch).
        max_group (int, optional): At most this many chips per batch.

    Returns:
        list[np.ndarray]: Index arrays into ``shapes``, largest chips
        first; together they hold every index once.

    Example:
        >>> group_by_shape([[512, 512], [100, 120], [512, 480], [96, 128]])
        [array([0, 2]), array([3, 1])]
    """
    shapes = np.asarray(shapes, np.float64).reshape(-1, 2)
    if max_pad_ratio < 0:
        raise ValueError(f'max_pad_ratio must be >= 0, got {max_pad_ratio}')
    if max_group is not None and max_group < 1:
        raise ValueError(f'max_group must be >= 1, got {max_group}')
    area = shapes[:, 0] * shapes[:, 1]
    order = np.argsort(-area, kind='stable')
    # Running maxima and sums along the sorted order, restarted at each
    # batch start: chips are few (<= max_chips), the loop is over chips.
    groups, start = [], 0
    while start < len(order):
        run = order[start:]
        pad_h = np.maximum.accumulate(shapes[run, 0])
        pad_w = np.maximum.accumulate(shapes[run, 1])
        count = np.arange(1, len(run) + 1)
        fits = pad_h * pad_w * count <= (1 + max_pad_ratio) * np.cumsum(
            area[run])
        if max_group is not None:
            fits &= count <= max_group
        size = max(int(np.argmin(fits)) if not fits.all() else len(run), 1)
        groups.append(run[:size])
        start += size
    return groups
