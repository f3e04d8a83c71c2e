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
from typing import List, Optional, Tuple

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


# The smallest input side the chip probe tries: chips are smaller than
# ``chip_size`` at image borders and on small canvases; smaller than this,
# objects are a few pixels (a scale that makes only such canvases is the
# chip dataset's to warn about).
MIN_PROBE_SIZE = 32


class _CallPath:
    """The modules being run while the network runs (forward hooks), so
    that a failure names the module it happened in."""

    def __init__(self, model: nn.Module):
        self.stack, self._handles = [], []
        for name, module in model.named_modules():
            if module is not model:  # hooks that return None change nothing
                self._handles += [
                    module.register_forward_pre_hook(self._enter(name)),
                    module.register_forward_hook(self._leave)]

    def _enter(self, name: str):
        def hook(module, args) -> None:
            self.stack.append((name, type(module).__name__))
        return hook

    def _leave(self, module, args, output) -> None:
        self.stack.pop()

    def where(self) -> str:
        """``'model.bbox_head (DDODHead), in model.bbox_head.cls_convs.0.
        conv (ModulatedDeformConv2d)'``: the outermost and the innermost
        module that was running."""
        if not self.stack:
            return 'the detector'
        (top, kind), (deep, deep_kind) = self.stack[0], self.stack[-1]
        where = f'model.{top} ({kind})'
        if deep != top:
            where += f', in model.{deep} ({deep_kind})'
        return where

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _runs(model: nn.Module, size: int, channels: int
          ) -> Optional[Tuple[str, str]]:
    """Run the whole network (backbone, neck and heads:
    ``model._forward``) in eval mode on a ``size x size`` zero input.

    Returns:
        None if it runs, else ``(where, error)``: the module it failed in
        and the error's first line.
    """
    from mmdet.structures import DetDataSample
    params = next(model.parameters())
    inputs = params.new_zeros(1, channels, size, size)
    shape = (size, size)
    sample = DetDataSample(metainfo=dict(
        img_shape=shape, ori_shape=shape, pad_shape=shape,
        batch_input_shape=shape, scale_factor=(1.0, 1.0)))
    path = _CallPath(model)
    try:
        model._forward(inputs, [sample])
    except Exception as error:  # any: one that is not about sizes fails
        # at every size, and then nothing is claimed
        return path.where(), (f'{type(error).__name__}: '
                              f'{str(error).splitlines()[0][:120]}')
    finally:
        path.remove()
    return None


def _fixed_pad(model: nn.Module) -> Optional[Tuple[int, int]]:
    """``(h, w)`` of a ``BatchFixedSizePad`` among the data preprocessor's
    ``batch_augments`` (every training batch padded to at least it)."""
    from mmdet.models.data_preprocessors import BatchFixedSizePad
    pre = getattr(model, 'data_preprocessor', None)
    for augment in getattr(pre, 'batch_augments', None) or []:
        if isinstance(augment, BatchFixedSizePad):
            return tuple(int(v) for v in augment.size)
    return None


def _ssd_prior_problems(model: nn.Module, chip_size: int,
                        fixed: Optional[Tuple[int, int]]) -> List[str]:
    """SSD's priors (``SSDAnchorGenerator``) are laid out for one input
    size: their sizes from ``input_size`` and their centres on fixed
    ``strides`` (300 / 3 = 100 px for SSD300's fifth level), which match
    the feature maps only on ``input_size x input_size`` inputs. On other
    chips they sit beside the features they are predicted from, which
    trains without an error."""
    from mmdet.models.task_modules.prior_generators import \
        SSDAnchorGenerator
    problems, seen = [], set()
    for name, module in model.named_modules():
        for attr in ('prior_generator', 'anchor_generator'):
            prior = getattr(module, attr, None)  # one object, two names
            if not isinstance(prior, SSDAnchorGenerator) or \
                    id(prior) in seen:
                continue
            seen.add(id(prior))
            size = int(getattr(prior, 'input_size', 0))
            if size == chip_size and fixed == (size, size):
                continue
            strides = tuple(int(s[0]) for s in prior.strides)
            fix = [] if size == chip_size else [
                f'set chip_cfg.chip_size={size} (for 512 px chips, '
                'mmdet::ssd/ssd512_coco.py lays its priors out for 512)']
            if fixed != (size, size):
                fix.append(
                    'pad every batch to it: model.data_preprocessor.'
                    "batch_augments=[dict(type='BatchFixedSizePad', "
                    f'size=({size}, {size}))]')
            got = [] if size == chip_size else [
                f'the chips are chip_cfg.chip_size={chip_size} px']
            if fixed != (chip_size, chip_size):
                got.append('chips are smaller than that at image borders '
                           'and on small canvases (no BatchFixedSizePad '
                           f'to ({size}, {size}))')
            problems.append(
                f'model.{name}.{attr} ({type(prior).__name__}) lays out '
                f'its priors for {size} x {size} inputs (centres on the '
                f'strides {strides}, sizes from input_size={size}), but '
                + ', and '.join(got) + ': on other sizes the priors sit '
                'beside the features they are predicted from, silently; '
                + ' and '.join(fix) + '. The SNIP pyramid test resizes '
                'images to other sizes, where these priors are misplaced '
                'too')
    return problems


def chip_input_problem(model: nn.Module, chip_size: int) -> Optional[str]:
    """A message if the detector cannot train on the inputs SNIPER chips
    make, else None: chips are ``chip_size x chip_size``, and smaller (down
    to a few pixels) at image borders and on canvases smaller than a chip,
    unless the data preprocessor pads every batch to a fixed size
    (``BatchFixedSizePad`` in ``batch_augments``).

    :func:`input_size_problem` probes the backbone and neck; this runs the
    whole network (``model._forward``: heads too, in eval mode without
    gradients) and checks the heads' own size assumptions:

    - SSD's priors are laid out for one input size
      (:func:`_ssd_prior_problems`): refused unless ``chip_size`` is that
      size and every batch is padded to it;
    - a network that fails on ``chip_size`` inputs (DDOD's deformable
      head convolutions need a P7 map of at least 3 x 3, i.e. inputs of
      385 px: 256 px chips fail) is refused, naming the smallest size it
      takes;
    - one that takes ``chip_size`` but fails on smaller inputs (DDOD,
      SSD300's VGG under 300 px) needs every batch padded to a size it
      takes: refused unless ``BatchFixedSizePad`` does.

    Sizes are searched in multiples of ``pad_size_divisor`` from
    ``MIN_PROBE_SIZE`` (a failure at a size and a success at a larger one
    are assumed to hold for the sizes below and above). If the network
    fails on every size tried up to 4 x ``chip_size`` (it needs another
    input: channels, text), nothing is claimed and a warning says so.

    Args:
        model (nn.Module): The built detector (or ``AutoFocus``).
        chip_size (int): ``chip_cfg.chip_size``, SCALED pixels.
    """
    if getattr(model, '_forward', None) is None or \
            not list(model.parameters()):
        return None
    pre = getattr(model, 'data_preprocessor', None)
    divisor = int(getattr(pre, 'pad_size_divisor', 1) or 1)
    mean = getattr(pre, 'mean', None) if getattr(
        pre, '_enable_normalize', False) else None
    channels = int(mean.shape[0]) if torch.is_tensor(mean) else 3
    fixed = _fixed_pad(model)
    problems = _ssd_prior_problems(model, chip_size, fixed)
    if problems:  # their fix pads every batch to one size
        return '; '.join(problems)

    def up(size):  # the size a batch of this size is padded to
        return int(math.ceil(size / divisor) * divisor)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            problems += _size_problems(model, chip_size, fixed, channels,
                                       up)
    finally:
        model.train(was_training)
    return problems[0] if problems else None


def _size_problems(model, chip_size, fixed, channels, up) -> List[str]:
    """:func:`chip_input_problem`'s size search."""
    largest = up(chip_size)
    failed = _runs(model, largest, channels)
    if failed is None:
        smallest = up(min(MIN_PROBE_SIZE, chip_size))
        if fixed is not None:  # batches are padded to at least this
            smallest = max(smallest, up(min(fixed)))
        if smallest >= largest:
            return []
        small_failed = _runs(model, smallest, channels)
        if small_failed is None:
            return []
        low, high = smallest, largest  # fails at low, runs at high
    else:
        high = next((s for s in (2 * largest, 4 * largest)
                     if _runs(model, up(s), channels) is None), None)
        if high is None:
            print_log(
                'chip input check not made: the detector fails on '
                f'{largest} x {largest} chips and on larger inputs up to '
                f'{4 * largest} px too ({failed[0]}: {failed[1]})',
                logger='current', level=logging.WARNING)
            return []
        low, high = largest, up(high)
        small_failed = failed
    while high - low > up(1):  # the smallest size it runs on
        mid = up((low + high) // 2)
        if mid >= high:
            break
        if mid <= low:
            mid = low + up(1)
        if _runs(model, mid, channels) is None:
            high = mid
        else:
            low = mid
    where, error = small_failed
    if failed is not None:
        return [
            f'{where} fails on {largest} x {largest} inputs, the size of '
            f'the chips (chip_cfg.chip_size={chip_size}) ({error}); the '
            f'detector takes inputs of {high} px and more: set '
            f'chip_cfg.chip_size={high} or more, and pad every batch to it '
            '(chips are smaller at image borders and on small canvases): '
            "model.data_preprocessor.batch_augments=[dict(type="
            f"'BatchFixedSizePad', size=({high}, {high}))]"]
    return [
        f'{where} fails on inputs under {high} px ({low} x {low}: '
        f'{error}), and chips are smaller than chip_cfg.chip_size='
        f'{chip_size} at image borders and on canvases smaller than a '
        'chip, so a batch of such chips would stop training: pad every '
        'batch to the chip size, model.data_preprocessor.batch_augments='
        f"[dict(type='BatchFixedSizePad', size=({chip_size}, {chip_size}))]"
        f' (the SNIP pyramid test must then keep every view at least '
        f'{high} px on each side)']
