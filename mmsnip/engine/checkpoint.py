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
print one ``error:`` line) instead of an unpickler traceback. A checkpoint
of another model (most of the model's weights missing from it or of
another shape: mmengine only warns, and the test runs on random weights)
is one too where mmsnip evaluates or mines with it
(:func:`check_checkpoint_fits`).
"""
import os
import os.path as osp
import pickle
import zipfile
from typing import Optional

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


# A checkpoint that gives the model less than this share of its weights
# (by number of values) is of another model.
MIN_FITTING_SHARE = 0.5


def _model_keys(key: str):
    """The checkpoint keys that may hold a model's entry ``key``: as is,
    without wrappers' ``module.`` (TTA models, DDP) and without
    ``AutoFocus``'s ``detector.`` (a plain detector checkpoint loads into
    it)."""
    while key.startswith('module.'):
        key = key[len('module.'):]
    yield key
    if key.startswith('detector.'):
        yield key[len('detector.'):]


def check_checkpoint_fits(model, checkpoint: dict, filename: str,
                          min_share: float = MIN_FITTING_SHARE,
                          exact_shapes: bool = True,
                          name: Optional[str] = None) -> Optional[float]:
    """Refuse a checkpoint of another model.

    mmengine loads whatever keys match and only warns of the rest, so a
    checkpoint of another detector (or another project's layout) leaves
    the model on its random initialisation: a test scores ~0 AP, mining
    writes proposals of noise, and the run exits 0. Counted: the values
    (numel) of the model's state dict that the checkpoint holds under the
    same key (see :func:`_model_keys`) with the same shape.

    Args:
        model: The model the checkpoint was loaded into.
        checkpoint (dict): What mmengine's ``load_checkpoint`` returned
            (``state_dict`` inside, or the state dict itself).
        filename (str): Named in the error.
        min_share (float): The share below which it is an error.
        exact_shapes (bool): Also an error if any entry has another shape
            (another ``num_classes``: the classifier would stay random
            while the rest fits), as when testing; False where that is a
            choice (fine-tuning with ``load_from``).
        name (str, optional): What ``model`` is, in messages (default: its
            type, or its wrapped module's).

    Returns:
        float | None: The share that fits (None for an empty model).

    Raises:
        UserInputError: Less than ``min_share`` fits, or (``exact_shapes``)
            an entry has another shape, naming the file, the model, the
            share and examples of missing and mismatched keys.
    """
    state = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else {}
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    share, missing, mismatched = _fit(model, state)
    if share is None:
        return None
    if exact_shapes and mismatched and share >= min_share:
        raise UserInputError(
            f'checkpoint "{filename}" has weights of another shape than '
            f'this config\'s model ({len(mismatched)} of them, e.g. '
            f'{"; ".join(mismatched[:3])}): e.g. another num_classes, so '
            'those layers would stay randomly initialised. Give a '
            'checkpoint trained with this config, or set the model '
            '(num_classes...) as the checkpoint was trained')
    if share < min_share:
        name = name or type(getattr(model, 'module', model)).__name__
        examples = '; '.join(
            ([f'missing e.g. {", ".join(missing[:3])}'] if missing else [])
            + ([f'other shapes e.g. {", ".join(mismatched[:2])}']
               if mismatched else []))
        raise UserInputError(
            f'checkpoint "{filename}" fits only {share:.0%} of the weights '
            f'of this config\'s model ({name}: {len(missing)} entries '
            f'missing, {len(mismatched)} of another shape; {examples}): '
            'it is of another model, and the rest would stay randomly '
            'initialised. ' + _autofocus_hint(model, state, min_share))
    return share


def _fit(model, state: dict) -> tuple:
    """``(share, missing, mismatched)`` of ``model``'s values that
    ``state`` holds under the same key (:func:`_model_keys`) with the
    same shape; share None for a model without values."""
    total = fitting = 0
    missing, mismatched = [], []
    for key, value in model.state_dict().items():
        total += value.numel()
        found = next((state[k] for k in _model_keys(key) if k in state),
                     None)
        if found is None:
            missing.append(key)
        elif tuple(getattr(found, 'shape', ())) != tuple(value.shape):
            mismatched.append(f'{key} {tuple(found.shape)} vs '
                              f'{tuple(value.shape)}')
        else:
            fitting += value.numel()
    return (fitting / total if total else None), missing, mismatched


def _autofocus_hint(model, state: dict, min_share: float) -> str:
    """The fix for a checkpoint that does not fit: for an ``AutoFocus``
    checkpoint (``detector.*``, ``focus_head.*``) whose detector fits a
    plain detector config, say so; otherwise ask for a checkpoint of this
    config."""
    prefix = 'detector.'
    inner = {k[len(prefix):]: v for k, v in state.items()
             if k.startswith(prefix)}
    share = _fit(model, inner)[0] if inner else None
    if share is None or share < min_share:
        return 'Give a checkpoint trained with this config (or its base)'
    return (f'It is an AutoFocus model\'s (its {prefix}* weights fit '
            f'{share:.0%}): test it with the AutoFocus config it was '
            "trained with (MultiScaleInferencer(..., mode='pyramid') or "
            'tools/benchmark.py infer run its full pyramid), or save its '
            'detector as a plain checkpoint: the entries under '
            f"'{prefix}' without that prefix")


CheckpointLoader.register_scheme(
    prefixes='', loader=load_from_trusted_local, force=True)
