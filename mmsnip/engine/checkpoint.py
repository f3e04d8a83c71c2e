# Copyright (c) mmsnip contributors. All rights reserved.
"""Checkpoint loading that works with torch >= 2.6 and mmengine 0.10.7.

torch 2.6 changed the default of ``torch.load`` to ``weights_only=True``.
mmengine 0.10.7 calls ``torch.load`` without that argument, so resuming
from its own checkpoints fails: their ``meta`` holds numpy scalars and the
message hub, which the safe unpickler refuses ("Unsupported global").

Importing this module (``mmsnip.engine`` does, and so do ``tools/train.py``
and ``tools/test.py``) replaces mmengine's loader for local files with
:func:`load_trusted_local_checkpoint`: it tries the safe loader first and
falls back to the full unpickler only for files the safe loader refuses.
The fallback executes pickled code, so, exactly as with torch < 2.6, only
load checkpoints you trust. Set ``MMSNIP_SAFE_CHECKPOINTS=1`` to turn the
fallback off.
"""
import os
import os.path as osp
import pickle

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

_warned = set()


def load_trusted_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint, falling back to ``weights_only=False``.

    Args:
        filename (str): Path of a checkpoint file (``~`` is expanded).
        map_location: Same as :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if os.environ.get('MMSNIP_SAFE_CHECKPOINTS') == '1':
            raise
    if filename not in _warned:
        _warned.add(filename)
        print_log(
            f'{filename} holds objects beyond tensors (e.g. a resume '
            'checkpoint); loading it with weights_only=False. Only load '
            'checkpoints you trust.',
            logger='current')
    return torch.load(filename, map_location=map_location, weights_only=False)


def load_from_trusted_local(filename: str, map_location=None):
    """:func:`load_trusted_local_checkpoint` under the name mmengine's log
    line reads (it drops a loader name's first 10 characters,
    ``load_from_``: "Loads checkpoint by trusted_local backend")."""
    return load_trusted_local_checkpoint(filename, map_location)


CheckpointLoader.register_scheme(
    prefixes='', loader=load_from_trusted_local, force=True)
