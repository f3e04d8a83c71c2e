# Copyright (c) mmsnip contributors. All rights reserved.
"""One negative-proposal pool for all scales (the released SNIPER code).

By default each chip scale's negatives come from the proposals mined at
that scale (:mod:`mmsnip.apis.mining`). The released code pools them
instead: the top 300 proposals of every test scale, in ORIGINAL pixels,
are stacked per image (``lib/inference.py:600-605``), the stack goes
through one greedy NMS at IoU 0.7 that keeps the scores
(``lib/dataset/imdb.py:98-112``, ``lib/nms/nms.py:56``), and every
training scale filters that one pool by its valid range in ORIGINAL pixels
(``lib/data_utils/data_workers.py:459-512``). A scale then also sees the
in-range proposals the RPN found at the other scales.

:func:`pool_proposals` is that pooling for one image, on tensors (the
miner, on its device, through mmcv's ``nms``) or arrays (in numpy,
:func:`pool_keep` and :func:`greedy_nms`: the rows mmcv's CPU ``nms``
keeps, with no torch; ``tools/misc/convert_proposals.py --pool-scales``
over a file of per-scale rows). The pooled set is stored
once per image (a version-4 file recording ``pool_iou``,
:mod:`mmsnip.datasets.proposals`) and the chip table reads it at every
scale, filtered by that scale's range as any proposals are.

Worked example (IoU 0.7; boxes xyxy, ORIGINAL pixels)::

    scale 0: [0, 0, 10, 10, 0.9]     [50, 50, 90, 90, 0.4]
    scale 1: [0, 0, 10, 9, 0.8]      [200, 0, 400, 100, 0.6]
    pool:    [0, 0, 10, 10, 0.9]     [200, 0, 400, 100, 0.6]
             [50, 50, 90, 90, 0.4]

``[0, 0, 10, 9]`` overlaps ``[0, 0, 10, 10]`` at IoU 0.9 > 0.7 and scores
lower: suppressed. Rows come out by descending score.

Differences from the released code: boxes are continuous (area ``(x2 -
x1) * (y2 - y1)``, mmcv's and the RPN's own NMS) where the released NMS
adds 1 px to each side; rows with a NaN or infinite coordinate are dropped
before the NMS (the chip table drops them anyway); NaN scores rank last.
"""
import sys
from typing import Sequence

import numpy as np

from mmsnip.utils.checks import is_number

# IoU of the released code's pooling NMS (lib/nms/nms.py:56, nmsp): a
# row overlapping a higher-scoring one at IoU > 0.7 is dropped.
POOL_IOU = 0.7
# greedy_nms measures only the pairs whose IoU along x exceeds the
# threshold lowered by SWEEP_MARGIN (relative), which covers float32
# rounding (< 1e-6 of an IoU) when every box of positive width and height
# has sides of at least SWEEP_MIN_SIDE px and the threshold is at least
# SWEEP_MIN_IOU (subnormal numbers round by more); otherwise it measures
# every overlapping pair.
SWEEP_MARGIN = 1e-4
SWEEP_MIN_SIDE = 1e-6
SWEEP_MIN_IOU = 1e-6


def check_pool_iou(iou, owner: str) -> float:
    """``iou`` as a float in ``(0, 1]``, else ValueError naming
    ``owner``."""
    if not is_number(iou) or not 0 < iou <= 1:
        raise ValueError(f'{owner}: pool_iou must be a number in (0, 1], '
                         f'got {iou!r}')
    return float(iou)


def pool_scales_option(help: str) -> dict:
    """``add_argument`` keywords of the tools' ``--pool-scales [IOU]``
    (``tools/mine_proposals.py``, ``tools/misc/convert_proposals.py``):
    absent, None (per scale); bare, :data:`POOL_IOU`; else an IoU in
    ``(0, 1]``."""
    from mmsnip.utils.cli import number
    return dict(nargs='?', const=POOL_IOU, default=None, metavar='IOU',
                type=number(float, 0, 1, low_open=True), help=help)


def pool_order(scores: np.ndarray) -> np.ndarray:
    """The pooling's rank of one image's rows: ``(P,)`` int64 indices by
    descending score, NaN last, equal scores in their input order (scale 0
    first). As ``np.nan_to_num`` and ``torch.nan_to_num`` map them, an
    infinite score ranks with the largest (smallest) finite float32.

    Args:
        scores (np.ndarray): ``(P,)`` float32 scores.
    """
    score = np.nan_to_num(np.asarray(scores, np.float32), nan=-np.inf)
    return np.argsort(-score, kind='stable')


def greedy_nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS over rows already ranked: which rows it keeps.

    Row ``j`` is dropped if some kept row ``i < j`` overlaps it at IoU >
    ``iou``, the IoU computed in float32 exactly as mmcv's CPU ``nms``
    (``offset=0``; ``mmcv/ops/csrc/pytorch/cpu/nms.cpp``), so the rows
    kept are that function's::

        area = (x2 - x1) * (y2 - y1)
        w = max(0, min(x2_i, x2_j) - max(x1_i, x1_j))   (h likewise)
        ovr = w * h / ((area_i + area_j) - w * h)

    Only pairs that can pass the threshold are measured, found by a
    sweep over x: a pair's IoU is at most its IoU along x, so a box ``j``
    starting at or right of box ``i`` can only pass if ``x1_j < x2_i -
    iou * w_i`` (``w_i = x2_i - x1_i``; ``iou`` lowered by
    :data:`SWEEP_MARGIN` for float32 rounding). Where that rounding is
    not bounded so (a box side under :data:`SWEEP_MIN_SIDE` px, an
    ``iou`` under :data:`SWEEP_MIN_IOU`) every overlapping pair is
    measured (``x1_j < x2_i``). Overflow (sides near 1e19 px) makes
    mmcv's IoU 0 or NaN, which suppresses nothing, here too. The rows kept
    are those of the full comparison (tested against mmcv).

    Args:
        boxes (np.ndarray): ``(P, 4)`` float32 xyxy, ORIGINAL pixels,
            finite, in rank order (row 0 first).
        iou (float): The threshold in ``(0, 1]`` (compared in float32).

    Returns:
        np.ndarray: ``(P,)`` bool, True for the rows kept.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, c]) for c in range(4))
    with np.errstate(over='ignore', invalid='ignore'):  # as mmcv: inf
        width = x2 - x1
        area = width * (y2 - y1)
    # x-sorted copies: a pair (p, q), p < q, has x1[q] >= x1[p]
    by_x = np.argsort(x1, kind='stable')
    x1, y1, x2, y2 = x1[by_x], y1[by_x], x2[by_x], y2[by_x]
    width, area = width[by_x], area[by_x]
    with np.errstate(over='ignore', invalid='ignore'):
        side = np.minimum(width, y2 - y1)
    if float(np.float32(iou)) >= SWEEP_MIN_IOU and \
            (side[side > 0] >= SWEEP_MIN_SIDE).all():
        reach = float(np.float32(iou)) * (1 - SWEEP_MARGIN)
        end = x2.astype(np.float64) - reach * width.astype(np.float64)
    else:
        end = x2
    # every pair (p, q) with p < q < stop[p], in one go
    stop = np.searchsorted(x1, end, side='left')
    after = np.arange(1, n + 1)
    count = np.maximum(stop - after, 0)
    total = int(count.sum())
    if total == 0:
        return keep
    first = np.cumsum(count) - count
    p = np.repeat(np.arange(n), count)
    q = np.arange(total) - np.repeat(first - after, count)
    # w or h <= 0: mmcv's intersection is 0, never over the threshold
    h = np.minimum(y2[p], y2[q]) - np.maximum(y1[p], y1[q])
    meet = h > 0
    p, q, h = p[meet], q[meet], h[meet]
    w = np.minimum(x2[p], x2[q]) - x1[q]  # max(x1[p], x1[q]) = x1[q]
    meet = w > 0
    p, q = p[meet], q[meet]
    with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
        inter = w[meet] * h[meet]
        over = inter / ((area[p] + area[q]) - inter) > np.float32(iou)
    i, j = by_x[p[over]], by_x[q[over]]
    i, j = np.minimum(i, j), np.maximum(i, j)  # rank order
    if not len(i):
        return keep
    # in rank order: a row suppresses others only if it is kept itself
    order = np.argsort(i, kind='stable')
    i, j = i[order], j[order]
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    stops = np.r_[starts[1:], len(i)]
    for row, a, b in zip(i[starts].tolist(), starts.tolist(),
                         stops.tolist()):
        if keep[row]:
            keep[j[a:b]] = False
    return keep


def pool_keep(rows: np.ndarray, iou: float = POOL_IOU) -> np.ndarray:
    """Which of one image's stacked rows the pooling keeps.

    Args:
        rows (np.ndarray): ``(P, 5)`` float32 ``[x1, y1, x2, y2, score]``
            xyxy in ORIGINAL pixels: every scale's rows, scale 0 first.
        iou (float): As :func:`pool_proposals`.

    Returns:
        np.ndarray: ``(P,)`` bool: rows with finite coordinates that the
        NMS over them in :func:`pool_order` keeps (:func:`greedy_nms`).
        The pool is ``rows[keep][pool_order(rows[keep, 4])]``.
    """
    rows = np.asarray(rows, np.float32).reshape(-1, 5)
    finite = np.flatnonzero(np.isfinite(rows[:, :4]).all(axis=1))
    ranked = finite[pool_order(rows[finite, 4])]
    keep = np.zeros(len(rows), bool)
    keep[ranked[greedy_nms(rows[ranked, :4], iou)]] = True
    return keep


def pool_proposals(per_scale: Sequence, iou: float = POOL_IOU):
    """The proposals of all scales of one image through one NMS.

    Arrays are pooled in numpy (:func:`pool_keep`), tensors by mmcv's
    ``nms`` on their device (the miner's path); on the CPU both keep the
    same rows.

    Args:
        per_scale (Sequence[np.ndarray | torch.Tensor]): One ``(P_s, 5)``
            array or tensor per scale, rows ``[x1, y1, x2, y2, score]``
            xyxy in ORIGINAL pixels (all of one kind; tensors on one
            device).
        iou (float): A row whose IoU with a higher-scoring kept row
            exceeds ``iou`` is dropped (:data:`POOL_IOU`, the released
            code's 0.7).

    Returns:
        np.ndarray | torch.Tensor: ``(P, 5)`` float32 rows kept, by
        descending score (NaN scores last), of the kind given (a tensor
        on the input's device). Equal scores keep their input order
        (scale 0 first).
    """
    iou = check_pool_iou(iou, 'pool_proposals')
    torch = sys.modules.get('torch')  # a tensor means torch is imported
    if torch is None or not any(isinstance(p, torch.Tensor)
                                for p in per_scale):
        rows = [np.asarray(p, np.float32).reshape(-1, 5) for p in per_scale]
        rows = np.concatenate(rows) if rows else np.zeros((0, 5), np.float32)
        kept = rows[pool_keep(rows, iou)]
        return kept[pool_order(kept[:, 4])]
    from mmcv.ops import nms  # torch's: on first use
    rows = [p.float().reshape(-1, 5) for p in per_scale]
    rows = torch.cat(rows)
    rows = rows[torch.isfinite(rows[:, :4]).all(dim=1)]
    score = torch.nan_to_num(rows[:, 4], nan=-float('inf'))
    order = torch.sort(score, descending=True, stable=True)[1]
    rows = rows[order]
    # the NMS ranks by position (distinct, exact in float32), so equal
    # scores keep the input order on every device
    rank = -torch.arange(len(rows), dtype=torch.float32,
                         device=rows.device)
    _, keep = nms(rows[:, :4].contiguous(), rank, iou)
    return rows[keep.sort()[0]]
