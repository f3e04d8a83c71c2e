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
lets through. The whole network (heads too) is run on the sizes it gets:
SNIPER's chips (:func:`chip_input_problem`, :func:`small_chip_problem`)
and the inputs of the test-time models (:func:`tta_input_problem` on
the views of the SNIP pyramid, the AutoFocus cascade or the tiles).
"""
import logging
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from torch import nn

# Sizes that every common stride (up to 128, P7) divides.
_SAFE_MULTIPLE = 128
# Square sizes (px) the search for the smallest input a detector takes
# reaches beyond 4 x a thin view's shorter side.
_COMMON_SIZES = (512, 1024)


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
                            f'{_first_line(error)})',
                            logger='current', level=logging.WARNING)
                        return None
                    return (
                        f'the backbone and neck fail on a {odd} x {odd} '
                        'input, a size model.data_preprocessor.'
                        f'pad_size_divisor={divisor} lets through '
                        f'({type(error).__name__}: '
                        f'{_first_line(error)}); the SNIP '
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


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 120 characters."""
    return (str(error).splitlines() or [''])[0][:120]


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
        """``'model.bbox_head.cls_convs.0 (ConvModule), in
        model.bbox_head.cls_convs.0.conv (DeformConv2dPack)'`` (DDOD): the
        outermost and the innermost module that was running (a head whose
        ``forward`` the detector calls directly is not entered as a
        module)."""
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


def _runs(model: nn.Module, height: int, width: int, channels: int
          ) -> Optional[Tuple[str, str]]:
    """Run the whole network (backbone, neck and heads:
    ``model._forward``) on a ``height x width`` zero input (eval mode, no
    gradients: the caller's).

    Returns:
        None if it runs, else ``(where, error)``: the module it failed in
        and the error's first line.

    Raises:
        _NotJudged: It failed with another error than a ``RuntimeError``
            (``_forward`` needs something a zero input does not give:
            ground truth, text), which says nothing about sizes.
    """
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    params = next(model.parameters())
    inputs = params.new_zeros(1, channels, height, width)
    shape = (height, width)
    sample = DetDataSample(metainfo=dict(
        img_shape=shape, ori_shape=shape, pad_shape=shape,
        batch_input_shape=shape, scale_factor=(1.0, 1.0)))
    # no objects (YOLACT's _forward reads the ground truth)
    sample.gt_instances = InstanceData(
        bboxes=inputs.new_zeros(0, 4), labels=inputs.new_zeros(
            0, dtype=torch.long))
    path = _CallPath(model)
    try:
        model._forward(inputs, [sample])
    except NotImplementedError as error:  # a RuntimeError, not a size's
        raise _NotJudged(f'{type(error).__name__}: '
                         f'{_first_line(error)}') from error
    except RuntimeError as error:
        return path.where(), (f'{type(error).__name__}: '
                              f'{_first_line(error)}')
    except Exception as error:
        raise _NotJudged(f'{type(error).__name__}: '
                         f'{_first_line(error)}') from error
    finally:
        path.remove()
    return None


class _NotJudged(Exception):
    """The network's ``_forward`` cannot run on a bare zero input."""


def _probe_setup(model: nn.Module):
    """``(divisor, channels, up)`` of a detector's data preprocessor:
    ``up(size)`` is the size a batch of that size is padded to."""
    pre = getattr(model, 'data_preprocessor', None)
    divisor = int(getattr(pre, 'pad_size_divisor', 1) or 1)
    mean = getattr(pre, 'mean', None) if getattr(
        pre, '_enable_normalize', False) else None
    channels = int(mean.shape[0]) if torch.is_tensor(mean) else 3

    def up(size):
        return int(math.ceil(size / divisor) * divisor)

    return divisor, channels, up


def _not_judged(what: str, reason: str) -> None:
    print_log(f'chip input check not made: {what} ({reason})',
              logger='current', level=logging.WARNING)


def _judged(model: nn.Module,
            probe: Callable[[], Optional[str]]) -> Optional[str]:
    """``probe()``, which runs the whole network (:func:`_runs`), with
    the detector in eval mode and without gradients, its mode restored
    after: the probe's message, or None if it finds no problem or the
    network cannot run on a bare zero input at all (:class:`_NotJudged`:
    nothing is claimed, a warning says the check was not made)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return probe()
    except _NotJudged as reason:
        _not_judged('the detector cannot run on a bare input', str(reason))
        return None
    finally:
        model.train(was_training)


def _smallest_square(model: nn.Module, size: int, channels: int,
                     up: Callable[[int], int],
                     more: Sequence[int] = ()) -> Optional[int]:
    """The smallest square input (padded by ``up``) the whole network
    runs on, above ``size``, on which it fails: searched up to ``4 x
    size`` and the sizes ``more`` above it (then bisected), None if it
    fails up to there too. Run by a probe of :func:`_judged`."""
    tries = [2 * size, 4 * size] + sorted(m for m in more if m > 4 * size)
    high = next((up(s) for s in tries
                 if _runs(model, up(s), up(s), channels) is None), None)
    if high is None:
        return None
    low = size  # fails at low, runs at high: the smallest it takes
    while up(low + 1) < high:
        mid = max(up((low + high) // 2), up(low + 1))
        if mid >= high:
            break
        if _runs(model, mid, mid, channels) is None:
            high = mid
        else:
            low = mid
    return high


def _smallest_shapes(padded: np.ndarray) -> List[int]:
    """Rows of ``(N, 2)`` ``(height, width)`` shapes to probe: the
    shortest, the narrowest and the smallest, each once."""
    rows: List[int] = []
    for k in (np.argmin(padded[:, 0]), np.argmin(padded[:, 1]),
              np.argmin(padded.prod(1))):
        if not any((padded[r] == padded[k]).all() for r in rows):
            rows.append(int(k))
    return rows


def _fixed_pad(model: nn.Module) -> Optional[Tuple[int, int]]:
    """``(h, w)`` of a ``BatchFixedSizePad`` among the data preprocessor's
    ``batch_augments`` (every training batch padded to at least it)."""
    from mmdet.models.data_preprocessors import BatchFixedSizePad
    pre = getattr(model, 'data_preprocessor', None)
    for augment in getattr(pre, 'batch_augments', None) or []:
        if isinstance(augment, BatchFixedSizePad):
            return tuple(int(v) for v in augment.size)
    return None


def _ssd_priors(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(entry, prior generator)`` of each ``SSDAnchorGenerator`` of a
    detector, once each (a head holds one object under two names), e.g.
    ``('model.bbox_head.prior_generator (SSDAnchorGenerator)', ...)``."""
    from mmdet.models.task_modules.prior_generators import \
        SSDAnchorGenerator
    found, seen = [], set()
    for name, module in model.named_modules():
        for attr in ('prior_generator', 'anchor_generator'):
            prior = getattr(module, attr, None)  # one object, two names
            if isinstance(prior, SSDAnchorGenerator) and \
                    id(prior) not in seen:
                seen.add(id(prior))
                found.append((f'model.{name}.{attr} '
                              f'({type(prior).__name__})', prior))
    return found


def _ssd_prior_problems(model: nn.Module, chip_size: int,
                        fixed: Optional[Tuple[int, int]]) -> List[str]:
    """SSD's priors (``SSDAnchorGenerator``) are laid out for one input
    size: their sizes from ``input_size`` and their centres on fixed
    ``strides`` (300 / 3 = 100 px for SSD300's fifth level), which match
    the feature maps only on ``input_size x input_size`` inputs. On other
    chips they sit beside the features they are predicted from, which
    trains without an error."""
    problems = []
    for entry, prior in _ssd_priors(model):
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
            f'{entry} lays out its priors for {size} x {size} inputs '
            f'(centres on the strides {strides}, sizes from '
            f'input_size={size}), but ' + ', and '.join(got) + ': on '
            'other sizes the priors sit beside the features they are '
            'predicted from, silently; ' + ' and '.join(fix) + '. The '
            'SNIP pyramid test resizes images to other sizes, where these '
            'priors are misplaced too')
    return problems


def chip_input_problem(model: nn.Module, chip_size: int) -> Optional[str]:
    """A message if the detector cannot train on ``chip_size x
    chip_size`` SNIPER chips, else None (before any data is loaded).

    :func:`input_size_problem` probes the backbone and neck; this runs the
    whole network (``model._forward``: heads too, in eval mode without
    gradients) and checks the heads' own size assumptions:

    - SSD's priors are laid out for one input size
      (:func:`_ssd_prior_problems`): refused unless ``chip_size`` is that
      size and every batch is padded to it (``BatchFixedSizePad``);
    - a network that fails on ``chip_size`` inputs (DDOD's deformable
      head convolutions need a P7 map of at least 3 x 3: 256 px chips
      fail) is refused, naming the module and the smallest size it takes
      (searched in multiples of ``pad_size_divisor`` up to 4 x
      ``chip_size``; if none runs, nothing is claimed and a warning says
      so).

    Chips smaller than ``chip_size`` (image borders, small canvases) are
    known once the chip table is built: :func:`small_chip_problem`.

    Args:
        model (nn.Module): The built detector (or ``AutoFocus``).
        chip_size (int): ``chip_cfg.chip_size``, SCALED pixels.
    """
    if getattr(model, '_forward', None) is None or \
            not list(model.parameters()):
        return None
    problems = _ssd_prior_problems(model, chip_size, _fixed_pad(model))
    if problems:  # their fix pads every batch to one size
        return '; '.join(problems)
    _, channels, up = _probe_setup(model)
    size = up(chip_size)

    def probe() -> Optional[str]:
        failed = _runs(model, size, size, channels)
        if failed is None:
            return None
        high = _smallest_square(model, size, channels, up)
        if high is None:
            _not_judged(f'the detector fails on {size} x {size} chips '
                        f'and on larger inputs up to {4 * size} px too',
                        f'{failed[0]}: {failed[1]}')
            return None
        where, error = failed
        return (
            f'{where} fails on {size} x {size} inputs, the size of the '
            f'chips (chip_cfg.chip_size={chip_size}) ({error}); the '
            f'detector takes inputs of {high} px and more: set chip_cfg.'
            f'chip_size={high} or more, and pad every batch to it (chips '
            'are smaller at image borders and on small canvases): '
            'model.data_preprocessor.batch_augments=[dict(type='
            f"'BatchFixedSizePad', size=({high}, {high}))]")

    return _judged(model, probe)


def small_chip_problem(model: nn.Module, shapes, chip_size: int,
                       where: str = 'the chips') -> Optional[str]:
    """A message if the detector fails on the smallest chips of a built
    chip table, else None. Chips are smaller than ``chip_size`` at image
    borders and on canvases smaller than a chip, and a batch of only such
    chips is padded to its largest chip, not to ``chip_size``: a head
    that needs larger inputs (DDOD under 288 px, SSD300's VGG under 257
    px, DINO with fewer encoder tokens than queries) fails there, some
    iterations into training. Nothing to check when every batch is padded
    to ``chip_size`` or more (``BatchFixedSizePad``).

    Args:
        model (nn.Module): The built detector, on its device.
        shapes (array): ``(N, 2)`` ``(height, width)`` of the chips,
            SCALED pixels.
        chip_size (int): ``chip_cfg.chip_size``.
        where (str): What the chips are, for the message.

    Returns:
        str | None: Naming the chip shape, the module, the error and the
        fix (``BatchFixedSizePad`` to ``chip_size``).
    """
    shapes = np.asarray(shapes, np.float64).reshape(-1, 2)
    if getattr(model, '_forward', None) is None or not len(shapes) or \
            not list(model.parameters()):
        return None
    fixed = _fixed_pad(model)
    if fixed is not None and min(fixed) >= chip_size:
        return None
    divisor, channels, _ = _probe_setup(model)
    # each chip as a batch of its own pads it (up(), vectorized: all chips
    # of the table, about 700k on COCO)
    padded = (np.ceil(shapes / divisor) * divisor).astype(np.int64)
    if fixed is not None:
        padded = np.maximum(padded, fixed)
    # the shortest, the narrowest and the smallest chip (as batched alone)
    tried = [tuple(int(v) for v in padded[k])
             for k in _smallest_shapes(padded)]

    def probe() -> Optional[str]:
        for h, w in tried:
            failed = _runs(model, h, w, channels)
            if failed is not None:
                return (
                    f'{failed[0]} fails on a {w} x {h} input '
                    f'({failed[1]}), the size (width x height, padded) of '
                    f'{where} smaller than chip_cfg.chip_size={chip_size} '
                    '(image borders, small canvases), which a batch of '
                    'such chips is: training would stop at the first one; '
                    'pad every batch to the chip size, '
                    'model.data_preprocessor.batch_augments=[dict('
                    "type='BatchFixedSizePad', "
                    f'size=({chip_size}, {chip_size}))]')
        return None

    return _judged(model, probe)


@dataclass
class InputViews:
    """The smallest inputs a test-time model can feed its detector, per
    test image, before the data preprocessor pads them to
    ``pad_size_divisor`` (each padded alone: a batch of one).

    Built by the test-time models (``input_views`` of ``SnipTTAModel``,
    ``AutoFocusTTAModel``, ``SlicedTTAModel``: :func:`pyramid_views`,
    :func:`cascade_views`, :func:`tile_views`) and judged by
    :func:`tta_input_problem`.

    Attributes:
        shapes (np.ndarray): ``(N, 2)`` int ``(height, width)`` of each
            view, SCALED pixels (network input, before the preprocessor's
            padding).
        what (str): What one view is, for the message: ``'a view of the
            SNIP pyramid test'``.
        plural (str): The views, for the SSD message: ``"the test
            pyramid's views"``.
        describe (Callable[[int], str]): View ``k`` in words: the setting
            that makes it, the image (name, ORIGINAL size) and its size.
        fix (Callable[[int, int], str]): The fix for view ``k`` given the
            smallest square (SCALED px) the detector takes.
    """
    shapes: np.ndarray
    what: str
    plural: str
    describe: Callable[[int], str]
    fix: Callable[[int, int], str]


def _scaled(shapes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``(N, 2)`` sizes times ``(N,)`` factors, rounded, >= 1 (as
    ``ScaleSpec.scaled_shape`` and ``crop_resize`` round)."""
    return np.maximum(np.round(shapes * factors[:, None]), 1)


def _image_names(images: Optional[Sequence[str]], count: int) -> List[str]:
    return [f'"{name}"' for name in images] if images is not None else \
        [f'image {i}' for i in range(count)]


def pyramid_views(image_shapes, scales, images: Optional[Sequence[str]] = None,
                  where: str = 'test_dataloader.dataset',
                  pad: Optional[Tuple[int, int]] = None) -> InputViews:
    """The views of the SNIP pyramid test (``SnipTTAModel``): each test
    image resized by each scale's factor rule (``ScaleSpec.scaled_shape``),
    padded to ``pad`` by a ``Pad`` stage of the ``tta_pipeline``
    (:func:`pipeline_view_pad`).

    Args:
        image_shapes (array): ``(N, 2)`` ``(height, width)`` of the test
            images, ORIGINAL pixels.
        scales (Sequence[ScaleSpec]): ``tta_model.scales``.
        images (Sequence[str], optional): The images' names (``N``).
        where (str): The dataset, for the message.
        pad (tuple[int, int], optional): ``(height, width)`` every view is
            padded to at least, SCALED pixels.

    Returns:
        InputViews: ``S * N`` views, scale-major.
    """
    shapes = np.asarray(image_shapes, np.float64).reshape(-1, 2)
    names = _image_names(images, len(shapes))
    resized = np.concatenate([
        _scaled(shapes, spec.factors_for(shapes[:, 0], shapes[:, 1]))
        for spec in scales]) if len(scales) else np.zeros((0, 2))
    views = resized if pad is None else np.maximum(
        resized, np.asarray(pad, np.float64))

    def describe(k: int) -> str:
        scale, image = divmod(k, len(shapes))
        oh, ow = (int(v) for v in shapes[image])
        vh, vw = (int(v) for v in resized[k])
        return (f'tta_model.scales[{scale}] ({scales[scale].rule_text}) '
                f'resizes {names[image]} of {where} ({ow} x {oh}) to '
                f'{vw} x {vh}')

    def fix(k: int, high: int) -> str:
        return ("pad every view to it, a stage [dict(type='Pad', "
                f'size=({high}, {high}))] after the resizes in '
                "tta_pipeline's TestTimeAug transforms, or leave that "
                'scale out of tta_model.scales and tta_pipeline')

    return InputViews(views.astype(np.int64),
                     'a view of the SNIP pyramid test',
                     "the test pyramid's views", describe, fix)


def cascade_views(image_shapes, scales, stride: int, oracle: bool = False,
                  images: Optional[Sequence[str]] = None,
                  where: str = 'test_dataloader.dataset') -> InputViews:
    """The smallest inputs of the AutoFocus cascade
    (``AutoFocusTTAModel``), per scale and test image: at the coarsest
    scale the whole image resized by its factor rule; at each later scale
    its smallest possible FocusChip, resized by that scale's factor.

    A FocusChip of scale ``s`` is planned on a crop of scale ``s - 1``
    (Algorithm 2: :func:`mmsnip.chips.focus_chips`): at least one map cell
    (``stride`` px of that scale; not with ``oracle``), grown to
    ``min_size`` (``k``, :meth:`FocusScale.min_size_here`) and clipped to
    that crop, hence to the image. Where the previous scale selects every
    pixel (:data:`~mmsnip.chips.EVERY_PIXEL`) it is the whole crop. So, in
    scale-``s`` pixels: ``min(max(k, cell), chip(s - 1) * f_s /
    f_{s-1})`` per side, the whole image at ``s = 0``.

    Args:
        image_shapes (array): ``(N, 2)`` ``(height, width)`` ORIGINAL px.
        scales (Sequence[FocusScale]): ``tta_model.scales``, coarse to
            fine.
        stride (int): The FocusPixel map's stride (``focus_head.stride``).
        oracle (bool): Chips from the ground truth (no map cell).
        images (Sequence[str], optional): The images' names (``N``).
        where (str): The dataset, for the message.

    Returns:
        InputViews: ``S * N`` views, scale-major.
    """
    shapes = np.asarray(image_shapes, np.float64).reshape(-1, 2)
    names = _image_names(images, len(shapes))
    factors = [s.spec.factors_for(shapes[:, 0], shapes[:, 1])
               for s in scales]
    chips = [shapes * factors[0][:, None]] if len(scales) else []
    sizes = [np.zeros(len(shapes))]  # per scale: the k of its chips
    for s in range(1, len(scales)):
        prev, ratio = scales[s - 1], factors[s] / factors[s - 1]
        parent = chips[-1] * ratio[:, None]
        if prev.selects_every_pixel and not oracle:
            chips.append(parent)
            sizes.append(np.zeros(len(shapes)))
            continue
        k = np.array([prev.min_size_here(a, b) for a, b in zip(
            factors[s - 1], factors[s])]) * ratio
        cell = 0.0 if oracle else stride * ratio
        side = np.maximum(k, cell)
        chips.append(np.minimum(side[:, None], parent))
        sizes.append(k)
    views = np.concatenate([np.maximum(np.round(c), 1) for c in chips]) \
        if chips else np.zeros((0, 2))

    def describe(k: int) -> str:
        s, image = divmod(k, len(shapes))
        oh, ow = (int(v) for v in shapes[image])
        vh, vw = (int(v) for v in views[k])
        name = f'{names[image]} of {where} ({ow} x {oh})'
        rule = f'tta_model.scales[{s}] ({scales[s].spec.rule_text})'
        if s == 0:
            return f'{rule} resizes {name} to {vw} x {vh} (the whole image)'
        if scales[s - 1].selects_every_pixel and not oracle:
            return (f'{rule} resizes {name} to {vw} x {vh} (the whole '
                    f'image: scales[{s - 1}] selects every pixel)')
        return (f'a FocusChip of {rule} in {name} is {vw} x {vh} or less '
                f'(at least scales[{s - 1}].min_size='
                f'{scales[s - 1].min_size:g}, {sizes[s][image]:.4g} px '
                'at that scale, clipped to the chip it is planned on and '
                'to the image)')

    def fix(k: int, high: int) -> str:
        s, image = divmod(k, len(shapes))
        small = min(shapes[image]) * factors[0][image]
        out = []
        if s and not (scales[s - 1].selects_every_pixel and not oracle) \
                and sizes[s][image] < high:
            prev = scales[s - 1]
            need = high / (factors[s][image] / factors[s - 1][image]) \
                if prev.min_size_frame == 'current' else high
            out.append(f'raise tta_model.scales[{s - 1}].min_size to '
                       f'{math.ceil(need)} or more (min_size_frame='
                       f"'{prev.min_size_frame}')")
        if small < high:
            out.append(
                f'give tta_model.scales[0] a factor rule that resizes '
                f'{names[image]} to {high} px or more per side (factor >= '
                f'{high / min(shapes[image]):.3g}), as the cascade pads '
                'its inputs only to pad_size_divisor')
        if not out:  # a chip clipped by the image at that scale
            out.append(f'leave scales[{s}] out of tta_model.scales')
        return ', and '.join(out)

    return InputViews(views.astype(np.int64),
                     'an input of the AutoFocus cascade (AutoFocusTTAModel)',
                     "the AutoFocus cascade's inputs", describe, fix)


def tile_views(image_shapes, tile_size: int, factor: float,
               full_image_factor: Optional[float] = None,
               images: Optional[Sequence[str]] = None,
               where: str = 'test_dataloader.dataset') -> InputViews:
    """The inputs of the sliced test (``SlicedTTAModel``) per test image:
    its tiles, ``tile_size`` ORIGINAL px (clipped to an image smaller
    than a tile: :func:`mmsnip.chips.chip_starts` anchors the last tile at
    the border, so the others are whole) resized by ``factor``; with
    ``full_image_factor``, the whole image resized by it too.

    Args:
        image_shapes (array): ``(N, 2)`` ``(height, width)`` ORIGINAL px.
        tile_size (int): ``tta_model.tile_size``, ORIGINAL px.
        factor (float): ``tta_model.factor``.
        full_image_factor (float, optional): ``tta_model.
            full_image_factor`` when ``full_image`` is set, else None.
        images (Sequence[str], optional): The images' names (``N``).
        where (str): The dataset, for the message.

    Returns:
        InputViews: ``N`` tile views, then ``N`` whole-image views.
    """
    shapes = np.asarray(image_shapes, np.float64).reshape(-1, 2)
    names = _image_names(images, len(shapes))
    count = len(shapes)
    tiles = _scaled(np.minimum(shapes, tile_size), np.full(count, factor))
    views = [tiles]
    if full_image_factor is not None:
        views.append(_scaled(shapes, np.full(count, full_image_factor)))
    views = np.concatenate(views)

    def describe(k: int) -> str:
        tile, image = divmod(k, count)
        oh, ow = (int(v) for v in shapes[image])
        vh, vw = (int(v) for v in views[k])
        name = f'{names[image]} of {where} ({ow} x {oh})'
        if tile:
            return (f'tta_model.full_image_factor={full_image_factor:g} '
                    f'resizes {name} to {vw} x {vh}')
        return (f'a tile of tta_model.tile_size={tile_size} at factor='
                f'{factor:g} of {name} is {vw} x {vh}')

    def fix(k: int, high: int) -> str:
        tile, image = divmod(k, count)
        small = float(min(shapes[image]))
        if tile:
            return (f'set tta_model.full_image_factor to '
                    f'{high / small:.3g} or more, or full_image=False')
        out = []
        if tile_size * factor < high:
            out.append(f'set tta_model.tile_size to '
                       f'{math.ceil(high / factor)} or more (tiles are '
                       f'tile_size x factor={factor:g} px)')
        if small * factor < high:
            out.append(f'set tta_model.factor to {high / small:.3g} or '
                       f'more ({names[image]} is smaller than a tile)')
        return ', and '.join(out)

    return InputViews(views.astype(np.int64),
                     'an input of the sliced test (SlicedTTAModel)',
                     "the sliced test's inputs", describe, fix)


def pipeline_view_pad(pipeline) -> Optional[Tuple[int, int]]:
    """``(height, width)`` every view of a test pyramid's pipeline is
    padded to at least: a stage of its ``TestTimeAug`` after the first
    (the resizes, as ``SnipTTAModel`` needs them) made of ``Pad(size=(w,
    h))`` steps only (mmcv pads to at least that size), the smallest of
    them; None if there is none."""
    from mmsnip.utils.config_tree import type_in
    pads = []
    for step in pipeline or []:
        if not type_in(step, ('TestTimeAug', ), 'TRANSFORMS'):
            continue
        for stage in (step.get('transforms') or [])[1:]:
            sizes = [t.get('size') for t in stage or []
                     if isinstance(t, dict)
                     and type_in(t, ('Pad', ), 'TRANSFORMS')]
            if stage and len(sizes) == len(stage) and all(
                    isinstance(v, (list, tuple)) and len(v) == 2
                    for v in sizes):
                pads.append((min(int(v[1]) for v in sizes),
                             min(int(v[0]) for v in sizes)))
    if not pads:
        return None
    return max(p[0] for p in pads), max(p[1] for p in pads)


def tta_input_problem(model: nn.Module, views: InputViews,
                      without: str = 'without --tta',
                      taken: Optional[List[Tuple[int, int]]] = None
                      ) -> Optional[str]:
    """A message if the detector cannot take the smallest inputs a
    test-time model feeds it (:class:`InputViews`), else None. The views
    are padded only to ``pad_size_divisor`` (``batch_augments`` such as
    ``BatchFixedSizePad`` run in training only):

    - SSD's priors are laid out for one ``input_size``: a view of another
      size is refused; there they sit beside their features, silently;
    - a network that fails on the smallest views (DDOD's deformable head
      under 288 px) is refused before the test, naming the module, the
      view (setting and image) and the smallest square it takes, with the
      view's fix; one that fails on every size up to 4 x the view's, or
      cannot run on a bare input, is not judged (a warning says so).

    Runs the whole network (:func:`_runs`) on the shortest, the
    narrowest and the smallest view (each padded alone), in eval mode
    without gradients: at most three forward passes when it takes them
    (a search of a few more when it fails: up to 4 x the view's shorter
    side, and 512 and 1024 px for thin views).

    Args:
        model (nn.Module): The detector the test-time model wraps.
        views (InputViews): From the test-time model's ``input_views``.
        without (str): How to test without the test-time model, for the
            SSD message (``tools/test.py``: ``'without --tta'``).
        taken (list[tuple[int, int]], optional): Padded ``(height,
            width)`` inputs the network was run on fine before (by an
            earlier call), extended in place: a view at least as large on
            both sides is not run again (a network that takes an input
            takes larger ones; SSD's priors are checked apart, by size).

    Returns:
        str | None: Naming the module, the view and the fix.
    """
    if getattr(model, '_forward', None) is None or not len(views.shapes) \
            or not list(model.parameters()):
        return None
    divisor, channels, up = _probe_setup(model)
    padded = (np.ceil(views.shapes / divisor) * divisor).astype(np.int64)

    problems = []
    for entry, prior in _ssd_priors(model):
        size = int(getattr(prior, 'input_size', 0))
        other = np.flatnonzero((padded != size).any(1))
        if len(other):
            problems.append(
                f'{entry} lays out its priors for {size} x {size} inputs, '
                f'but {views.plural} have other sizes '
                f'({views.describe(int(other[0]))}): there the priors sit '
                'beside the features they are predicted from, silently; '
                f'test this detector {without} (its own test pipeline '
                f'resizes every image to {size} x {size})')
    if problems:
        return '; '.join(problems)

    def probe() -> Optional[str]:
        for k in _smallest_shapes(padded):
            h, w = (int(v) for v in padded[k])
            if taken is not None and any(h >= a and w >= b
                                         for a, b in taken):
                continue
            failed = _runs(model, h, w, channels)
            if failed is None:
                if taken is not None:
                    taken.append((h, w))
                continue
            low = up(min(h, w))
            # a thin view (a panorama's) is far below what the network
            # needs: the search goes on to the common input sizes
            high = low if _runs(model, low, low, channels) is None else \
                _smallest_square(model, low, channels, up, _COMMON_SIZES)
            if high is None:
                _not_judged(f'the detector fails on a {w} x {h} view and '
                            'on larger inputs up to '
                            f'{max(4 * low, *_COMMON_SIZES)} px too',
                            f'{failed[0]}: {failed[1]}')
                return None
            return (
                f'{failed[0]} fails on a {w} x {h} input ({failed[1]}), '
                f'the size (width x height, padded) of {views.what}: '
                f'{views.describe(k)}, so the test would stop there; the '
                f'detector takes inputs of {high} px and more: '
                f'{views.fix(k, high)}')
        return None

    return _judged(model, probe)
