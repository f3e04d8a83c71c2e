# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal files for SNIPER negative-chip mining.

Format (a pickle written by ``tools/mine_proposals.py``)::

    dict(format='mmsnip.proposals', version=1, num_scales=S,
         proposals={img_id: [array (P_s, 5) for each scale s], ...})

Rows are ``[x1, y1, x2, y2, score]`` in ORIGINAL-image pixels (the miner
maps each scale's proposals back to the original image). Every image of the
dataset must have an entry; a file made for other images or another number
of scales is refused with an error naming the file and the mismatch.
"""
import os
import os.path as osp
import pickle
import tempfile
from typing import Dict, List, Sequence

import numpy as np

FORMAT = 'mmsnip.proposals'
VERSION = 1


def save_proposals(path: str, proposals: Dict[int, List[np.ndarray]],
                   num_scales: int) -> None:
    """Write a proposal file atomically (temporary file, then rename)."""
    data = dict(format=FORMAT, version=VERSION, num_scales=num_scales,
                proposals={
                    int(k): [np.asarray(p, np.float32).reshape(-1, 5)
                             for p in v]
                    for k, v in proposals.items()
                })
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    with os.fdopen(fd, 'wb') as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_proposals(path: str, img_ids: Sequence[int],
                   num_scales: int) -> Dict[int, List[np.ndarray]]:
    """Read and check a proposal file against a dataset.

    Args:
        path (str): The proposal file.
        img_ids (Sequence[int]): Image ids of the dataset.
        num_scales (int): Scales of the chip config.

    Returns:
        dict: ``img_id -> [ (P, 5) float32 array per scale ]``.

    Raises:
        ValueError / FileNotFoundError: Naming the file and the problem.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'proposal file "{path}" does not exist')
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError) as e:
        raise ValueError(f'proposal file "{path}" is not readable: {e}')
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise ValueError(f'proposal file "{path}" is not an mmsnip proposal '
                         f'file (format {FORMAT!r})')
    if data.get('num_scales') != num_scales:
        raise ValueError(
            f'proposal file "{path}" has proposals for '
            f'{data.get("num_scales")} scales, the chip config has '
            f'{num_scales}')
    props = data['proposals']
    missing = [i for i in img_ids if i not in props]
    if missing:
        raise ValueError(
            f'proposal file "{path}" lacks {len(missing)} of the dataset\'s '
            f'{len(img_ids)} images (e.g. img_id {missing[:5]}): it was '
            'mined for another dataset or is incomplete')
    for i in img_ids:
        if len(props[i]) != num_scales:
            raise ValueError(f'proposal file "{path}": img_id {i} has '
                             f'{len(props[i])} scales, expected {num_scales}')
    return props
