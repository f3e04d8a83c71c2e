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
miner, on its device) or arrays (``tools/misc/convert_proposals.py
--pool-scales`` over a file of per-scale rows). The pooled set is stored
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
from typing import Sequence

import numpy as np

from mmsnip.utils.checks import is_number

# IoU of the released code's pooling NMS (lib/nms/nms.py:56, nmsp): a
# row overlapping a higher-scoring one at IoU > 0.7 is dropped.
POOL_IOU = 0.7


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


def pool_proposals(per_scale: Sequence, iou: float = POOL_IOU):
    """The proposals of all scales of one image through one NMS.

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
    # torch and mmcv on first use: proposals.py (numpy and json, for
    # tools that only read files) imports this module
    import torch
    from mmcv.ops import nms
    iou = check_pool_iou(iou, 'pool_proposals')
    as_numpy = not any(isinstance(p, torch.Tensor) for p in per_scale)
    rows = [torch.as_tensor(np.asarray(p, np.float32).reshape(-1, 5))
            if as_numpy else p.float().reshape(-1, 5) for p in per_scale]
    rows = torch.cat(rows) if rows else torch.zeros((0, 5))
    rows = rows[torch.isfinite(rows[:, :4]).all(dim=1)]
    score = torch.nan_to_num(rows[:, 4], nan=-float('inf'))
    order = torch.sort(score, descending=True, stable=True)[1]
    rows = rows[order]
    # the NMS ranks by position (distinct, exact in float32), so equal
    # scores keep the input order on every device
    rank = -torch.arange(len(rows), dtype=torch.float32,
                         device=rows.device)
    _, keep = nms(rows[:, :4].contiguous(), rank, iou)
    pooled = rows[keep.sort()[0]]
    return pooled.cpu().numpy() if as_numpy else pooled
