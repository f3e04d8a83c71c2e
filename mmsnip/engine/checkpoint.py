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

A file that is no PyTorch checkpoint (a truncated download, an HTML error
page, another file by mistake) is a
:class:`~mmsnip.utils.preflight.UserInputError` naming it (the tools
print one ``error:`` line) instead of an unpickler traceback.
"""
import os
import os.path as osp
import pickle
import zipfile

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from mmsnip.utils.preflight import UserInputError

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
    unreadable = (f'checkpoint "{filename}" is not a PyTorch checkpoint '
                  '(truncated, damaged, or another file); download or copy '
                  'it again')
    if not _looks_like_torch_save(filename):
        raise UserInputError(unreadable)
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if os.environ.get('MMSNIP_SAFE_CHECKPOINTS') == '1':
            raise
    except (EOFError, RuntimeError) as e:  # a damaged archive or pickle
        raise UserInputError(f'{unreadable} ({type(e).__name__}: '
                             f'{str(e)[:200]})') from e
    if filename not in _warned:
        _warned.add(filename)
        print_log(
            f'{filename} holds objects beyond tensors (e.g. a resume '
            'checkpoint); loading it with weights_only=False. Only load '
            'checkpoints you trust.',
            logger='current')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except (EOFError, pickle.UnpicklingError) as e:
        raise UserInputError(f'{unreadable} ({type(e).__name__}: '
                             f'{str(e)[:200]})') from e


def _looks_like_torch_save(filename: str) -> bool:
    """Whether a file has the shape of ``torch.save``'s output: a zip
    archive with its central directory (the default since torch 1.6; a
    truncated one has none) or a pickle (the legacy format)."""
    if zipfile.is_zipfile(filename):
        return True
    with open(filename, 'rb') as f:
        return f.read(1) == b'\x80'  # the pickle protocol opcode


def load_from_trusted_local(filename: str, map_location=None):
    """:func:`load_trusted_local_checkpoint` under the name mmengine's log
    line reads (it drops a loader name's first 10 characters,
    ``load_from_``: "Loads checkpoint by trusted_local backend")."""
    return load_trusted_local_checkpoint(filename, map_location)


CheckpointLoader.register_scheme(
    prefixes='', loader=load_from_trusted_local, force=True)
