# Copyright (c) mmsnip contributors. All rights reserved.
"""Whether a detector takes every input size mmsnip gives it.

MMDetection's own pipelines often feed a detector one fixed size (RTMDet
and YOLOv3 test at 640 / 608 px). mmsnip does not: the SNIP pyramid test
resizes each image to its scale whatever its aspect ratio, and a chip at
an image's border (or a whole small canvas) is smaller than ``chip_size``.
The data preprocessor pads a batch to a multiple of ``pad_size_divisor``;
a neck that concatenates upsampled features (RTMDet's ``CSPNeXtPAFPN``,
YOLOv3's neck) needs a multiple of the network's largest stride, and
otherwise fails with a tensor size mismatch deep in the first batch of
such a size. :func:`input_size_problem` finds that before any data is
loaded, by running the backbone and neck once on a size the preprocessor
lets through.
"""
import logging
import math
from typing import Optional

import torch
from mmengine.logging import print_log
from torch import nn

# Sizes that every common stride (up to 128, P7) divides.
_SAFE_MULTIPLE = 128


def _probe_sizes(divisor: int):
    """``(safe, odd)`` square sizes: ``safe`` is a multiple of ``divisor``
    and of 128 (any network takes it), ``odd`` = ``safe + divisor``, a
    size the preprocessor lets through that no stride above ``divisor``
    divides (for ``divisor`` 1: 257)."""
    step = math.lcm(divisor, _SAFE_MULTIPLE)
    safe = step * max(1, math.ceil(256 / step))
    return safe, safe + divisor


def input_size_problem(model: nn.Module) -> Optional[str]:
    """A message if the detector's backbone and neck fail on an input size
    its data preprocessor allows (or, for ``AutoFocus``, have no feature
    level ``focus_level`` of ``focus_head.stride``), else None.

    Runs ``model.extract_feat`` in eval mode without gradients (no state
    changes) on zeros of two sizes: a safe one and one that only
    ``pad_size_divisor`` divides. If the safe size fails too, the network
    needs something else (another input size, channels...): nothing is
    claimed, and a warning says the check was not made.

    Args:
        model (nn.Module): The built detector (or ``AutoFocus``), on its
            device.
    """
    extract = getattr(model, 'extract_feat', None)
    params = list(model.parameters())
    if extract is None or not params:
        return None
    pre = getattr(model, 'data_preprocessor', None)
    divisor = int(getattr(pre, 'pad_size_divisor', 1) or 1)
    mean = getattr(pre, 'mean', None) if getattr(
        pre, '_enable_normalize', False) else None
    channels = int(mean.shape[0]) if torch.is_tensor(mean) else 3
    safe, odd = _probe_sizes(divisor)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for size in (safe, odd):
                inputs = params[0].new_zeros(1, channels, size, size)
                try:
                    feats = extract(inputs)
                except RuntimeError as error:
                    if size == safe:
                        print_log(
                            'input size check not made: the backbone and '
                            f'neck fail on a {safe} x {safe} input too '
                            f'({type(error).__name__}: '
                            f'{str(error).splitlines()[0][:120]})',
                            logger='current', level=logging.WARNING)
                        return None
                    return (
                        f'the backbone and neck fail on a {odd} x {odd} '
                        'input, a size model.data_preprocessor.'
                        f'pad_size_divisor={divisor} lets through '
                        f'({type(error).__name__}: '
                        f'{str(error).splitlines()[0][:120]}); the SNIP '
                        'pyramid test resizes images to any size and '
                        'chips at image borders are smaller than '
                        'chip_size: pad to the network\'s largest stride, '
                        'e.g. model = dict(data_preprocessor=dict('
                        'pad_size_divisor=32)) (64 for P6 models)')
                focus = getattr(model, 'focus_features', None)
                if focus is not None and size == safe:
                    try:  # AutoFocus: its level and stride, before training
                        focus(feats, inputs)
                    except ValueError as error:
                        return str(error)
    finally:
        model.train(was_training)
    return None
