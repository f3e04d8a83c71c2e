# Copyright (c) mmsnip contributors. All rights reserved.
"""Scale specifications and chip settings (pure python).

A *scale* resizes the original image by a factor and owns a *valid range*:
the sizes (sqrt of box area, in ORIGINAL-image pixels) of the objects it
learns from and reports (SNIP, Sec. 3.2). The paper's SNIPER scales on COCO
are ``512 / max(h, w)``, 1.667 and 3 with valid ranges (120, inf),
(32, 150) and (0, 80) (Sec. 4.1, DESIGN.md).

:class:`ChipConfig` gathers every setting of the chip engine and is built
from the plain dict an MMEngine config holds (``chip_cfg = dict(...)``).
"""
import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from mmsnip.utils.checks import (UserInputError, check_integer,
                                  check_positive, is_number)

INF = float('inf')
# The smallest object (sqrt(area), SCALED pixels) a scale is worth
# training on: under it an object is smaller than a cell of the finest
# feature map of most detectors (stride 8), and the released SNIPER code
# drops ground truth under 10 px. A scale whose every valid object is under
# it on an image learns nothing there (``ChipConfig.largest_valid_scaled``).
MIN_OBJECT_PX = 8.0
# Image sizes whose per-scale geometry ChipConfig.geometry keeps.
_GEOMETRY_CACHE_SIZE = 4096


@dataclasses.dataclass(frozen=True)
class ScaleSpec:
    """One scale of the pyramid. Set exactly one of the three factor rules.

    Args:
        factor (float, optional): A fixed factor, e.g. 1.667 or 3.0.
        max_side (float, optional): Resize so the longer side is
            ``max_side`` pixels: ``factor = max_side / max(h, w)`` (the
            paper's ``512 / max(h, w)``).
        short_max (tuple[float, float], optional): MMDetection's keep-ratio
            resize to ``(short, max)``, e.g. ``(800, 1200)``: ``factor =
            min(short / min(h, w), max / max(h, w))``. As in MMEngine's
            ``rescale_size``, the smaller number bounds the short side and
            the larger the long side, so ``(1200, 800)`` is the same scale.
        valid_range (tuple[float, float]): ``(min, max)`` sqrt(area) in
            ORIGINAL-image pixels, ``0 <= min < max``; ``max`` may be
            ``inf`` or ``None`` (no upper bound; configs use ``None``
            because MMEngine cannot dump ``inf`` into a loadable config).
            A box is valid when ``min < size < max`` (strict, Sec. 3.2.1).

    Example:
        >>> spec = ScaleSpec(max_side=512, valid_range=(120, None))
        >>> spec.factor_for(480, 640), spec.scaled_shape(480, 640)
        (0.8, (384, 512))
        >>> spec.valid_range_scaled(0.8)
        (96.0, inf)
    """
    factor: Optional[float] = None
    max_side: Optional[float] = None
    short_max: Optional[Tuple[float, float]] = None
    valid_range: Tuple[float, Optional[float]] = (0.0, INF)

    def __post_init__(self):
        rules = [r for r in ('factor', 'max_side', 'short_max')
                 if getattr(self, r) is not None]
        if len(rules) != 1:
            raise UserInputError(
                'ScaleSpec needs exactly one of factor, max_side, short_max; '
                f'got {rules or "none"}')
        if self.factor is not None:
            check_positive(self.factor, 'ScaleSpec.factor')
        if self.max_side is not None:
            check_positive(self.max_side, 'ScaleSpec.max_side')
        if self.short_max is not None:
            sm = _pair(self.short_max)
            if sm is None:
                raise UserInputError(
                    'ScaleSpec.short_max must be (short, max), e.g. (800, '
                    f'1200), got {self.short_max!r} (one number: max_side)')
            sm = tuple(check_positive(v, 'ScaleSpec.short_max side')
                       for v in sm)
            object.__setattr__(self, 'short_max', sm)
        vr = _pair(self.valid_range)
        if vr is None or not is_number(vr[0]) or not (
                vr[1] is None or is_number(vr[1], finite=False)):
            raise UserInputError(
                'ScaleSpec.valid_range must be (min, max): two numbers, '
                'max None for no upper bound, e.g. (32, 150) or (120, '
                f'None), got {self.valid_range!r}')
        vr = (float(vr[0]), INF if vr[1] is None else float(vr[1]))
        if not (0 <= vr[0] < vr[1]) or math.isinf(vr[0]):
            raise UserInputError(
                'ScaleSpec.valid_range must be (min, max) with 0 <= min < '
                f'max, got {self.valid_range!r}')
        object.__setattr__(self, 'valid_range', vr)

    @classmethod
    def from_dict(cls, cfg: dict) -> 'ScaleSpec':
        """Build from a config dict, e.g. ``dict(factor=3, valid_range=(0,
        80))``; unknown keys raise a ``ValueError`` naming them."""
        if isinstance(cfg, cls):
            return cfg
        if not isinstance(cfg, Mapping):
            raise UserInputError(
                'a scale must be a dict with one factor rule and its '
                'valid_range, e.g. dict(factor=2.0, valid_range=(0, 80)), '
                f'got {cfg!r}')
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserInputError(
                f'unknown ScaleSpec field(s) {sorted(unknown)}')
        return cls(**cfg)

    @property
    def rule(self) -> str:
        """The factor rule in use: ``'factor'``, ``'max_side'`` or
        ``'short_max'``."""
        for name in ('factor', 'max_side', 'short_max'):
            if getattr(self, name) is not None:
                return name
        raise AssertionError('unreachable: checked in __post_init__')

    @property
    def rule_text(self) -> str:
        """The factor rule as a config writes it, for messages:
        ``'factor=3.0'``, ``'max_side=512'``,
        ``'short_max=(800.0, 1200.0)'``.
        """
        return f'{self.rule}={getattr(self, self.rule)}'

    @property
    def resize_rule(self) -> tuple:
        """The factor rule in canonical form, ``(rule, value)``: scales with
        equal resize rules resize every image alike. ``short_max`` is
        sorted (its order does not matter) and ``short_max=(S, S)`` is
        ``max_side=S`` (``min(S / short, S / long) = S / long``)."""
        if self.factor is not None:
            return 'factor', float(self.factor)
        if self.max_side is not None:
            return 'max_side', float(self.max_side)
        short, long = sorted(self.short_max)
        if short == long:
            return 'max_side', float(long)
        return 'short_max', (float(short), float(long))

    def factors_for(self, heights, widths) -> np.ndarray:
        """:meth:`factor_for` of many images: ``(N,)`` float64 factors of
        ORIGINAL sizes ``heights``, ``widths`` (``(N,)``, > 0)."""
        h = np.asarray(heights, np.float64)
        w = np.asarray(widths, np.float64)
        rule, value = self.resize_rule
        if rule == 'factor':
            return np.full(h.shape, value)
        if rule == 'max_side':
            return value / np.maximum(h, w)
        return np.minimum(value[0] / np.minimum(h, w),
                          value[1] / np.maximum(h, w))

    def factor_for(self, img_h: float, img_w: float) -> float:
        """The resize factor (SCALED / ORIGINAL pixels) of an image.

        Args:
            img_h, img_w (float): ORIGINAL image size in pixels, > 0.

        Returns:
            float: The factor.

        Raises:
            ValueError: If the image size is not positive and finite.
        """
        if not (0 < img_h < math.inf and 0 < img_w < math.inf):
            raise ValueError(f'image size must be positive and finite, got '
                             f'{img_h}x{img_w} (h x w)')
        if self.factor is not None:
            return float(self.factor)
        if self.max_side is not None:
            return float(self.max_side) / max(img_h, img_w)
        short, long = min(self.short_max), max(self.short_max)
        return min(short / min(img_h, img_w), long / max(img_h, img_w))

    def scaled_shape(self, img_h: float, img_w: float) -> Tuple[int, int]:
        """``(h, w)`` of the SCALED canvas: ``round(side * factor)``, >= 1.

        Args:
            img_h, img_w (float): ORIGINAL image size in pixels, > 0.

        Returns:
            tuple[int, int]: Canvas height and width in SCALED pixels.
        """
        f = self.factor_for(img_h, img_w)
        return max(int(round(img_h * f)), 1), max(int(round(img_w * f)), 1)

    def valid_range_scaled(self, factor: float) -> Tuple[float, float]:
        """The valid range in SCALED (= CHIP) pixels at ``factor``.

        Args:
            factor (float): SCALED / ORIGINAL pixels.

        Returns:
            tuple[float, float]: ``(min * factor, max * factor)``.
        """
        return self.valid_range[0] * factor, self.valid_range[1] * factor

    def finer_or_equal(self, other: 'ScaleSpec') -> Optional[bool]:
        """Whether this scale's factor is >= ``other``'s for EVERY image.

        Only rules that can be compared independently of the image size
        are compared (by :attr:`resize_rule`): two fixed factors, two
        ``max_side`` rules, two ``short_max`` rules (component-wise).

        Returns:
            bool | None: True / False when the order holds / fails for
            every image size, None when it depends on the image.
        """
        (rule, mine), (other_rule, theirs) = (self.resize_rule,
                                              other.resize_rule)
        if rule != other_rule:
            return None
        if rule == 'short_max':
            if mine[0] >= theirs[0] and mine[1] >= theirs[1]:
                return True
            if mine[0] <= theirs[0] and mine[1] <= theirs[1]:
                return False
            return None
        return mine >= theirs


IntPerScale = Union[int, Tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class NegativeConfig:
    """Settings of negative chips (Sec. 3.3.3).

    Args:
        min_proposals (int | tuple[int, ...]): ``M``: a negative chip must
            fully enclose at least this many proposals; one number for all
            scales or one per scale, in the order of ``ChipConfig.scales``.
            The original code used more than 25 at the finest scale and
            more than 10 elsewhere: ``(11, 11, 26)`` for three scales
            listed coarse to fine.
        num_per_image (int): Negative chips sampled per image per epoch
            from the image's pool (2 in the original code).
        max_proposals (int, optional): Keep only the top-scoring
            ``max_proposals`` proposals per scale before building chips
            (needs scores; the original code used 300). None: all.
        filter_range (bool): Keep only proposals whose size is in the
            scale's valid range (the paper's rule). False: use all.
    """
    min_proposals: IntPerScale = 10
    num_per_image: int = 2
    max_proposals: Optional[int] = None
    filter_range: bool = True

    def __post_init__(self):
        m = self.min_proposals
        if isinstance(m, (list, tuple)):
            if not m:
                raise UserInputError(
                    'negative.min_proposals must not be empty')
            m = tuple(check_integer(v, 'negative.min_proposals') for v in m)
        else:
            m = check_integer(m, 'negative.min_proposals')
        object.__setattr__(self, 'min_proposals', m)
        check_integer(self.num_per_image, 'negative.num_per_image', 0)
        if self.max_proposals is not None:
            check_integer(self.max_proposals, 'negative.max_proposals')
        object.__setattr__(self, 'filter_range', _check_bool(
            self.filter_range, 'negative.filter_range'))

    def min_proposals_for(self, scale_index: int) -> int:
        """``M`` of scale ``scale_index``."""
        m = self.min_proposals
        return m[scale_index] if isinstance(m, tuple) else m


def _pair(value) -> Optional[tuple]:
    """``value`` as a 2-tuple (list, tuple or array of two), else None."""
    if isinstance(value, (str, bytes, Mapping)):
        return None
    try:
        pair = tuple(value)
    except TypeError:  # a number, None
        return None
    return pair if len(pair) == 2 else None


def _check_bool(value, name: str) -> bool:
    """``bool(value)`` if it is True or False (Python or numpy), else
    ``ValueError`` naming ``name``: a string such as ``'False'`` or
    ``'no'`` (``--cfg-options off_grid=flase``) would be truthy."""
    if not isinstance(value, (bool, np.bool_)):
        raise UserInputError(f'{name} must be True or False, got {value!r}')
    return bool(value)


def _sub_config(cls, value, name: str):
    """``value`` as a ``cls`` (dataclass instance or plain dict)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise UserInputError(
            f'ChipConfig.{name} must be a dict, got {value!r}')
    unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise UserInputError(f'unknown ChipConfig.{name} field(s) '
                             f'{sorted(unknown)}')
    return cls(**value)


# Flat config keys kept for existing configs: alias -> (section, field).
_ALIASES = {
    'neg_min_proposals': ('negative', 'min_proposals'),
    'neg_per_image': ('negative', 'num_per_image'),
}


@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """Every setting of the chip engine (SNIPER Sec. 3.3, AutoFocus 3.4).

    Args:
        scales (Sequence[ScaleSpec | dict]): The pyramid, in any order.
        chip_size (int): ``K``, side of a chip in SCALED pixels (512).
        chip_stride (int): ``d``, the grid step of candidate chips (32).
            ``chip_size`` must be a multiple of ``chip_stride``, so chips
            ``K`` apart are grid neighbours and ``K`` divides by the
            network stride whenever ``d`` does (512 = 16 x 32).
        negative (NegativeConfig | dict): Negative chips.
        off_grid (bool): Add, for each box that fits in a chip but that no
            chip of the stride grid can enclose (a side longer than
            ``K - d`` falling between grid positions), one candidate start
            per axis at the box (a row or column of candidate chips, which
            other boxes of the canvas may use too), so that every box no
            larger than a chip is covered as the paper states ("every
            ground-truth box is covered", Sec. 3.3.2). False: the pure
            stride grid of the paper's text.
        allow_range_gaps (bool): Accept valid ranges whose union leaves a
            gap (sizes valid at no scale, never trained on); by default
            such a config is an error.

    Validation (``ValueError`` naming the field): exactly one factor rule
    per scale, positive sizes, ``0 <= min < max`` per range; no gap in the
    union of the ranges (touching open ranges such as (0, 80) and
    (80, inf) count as contiguous); and *ordered* ranges: of two scales
    whose factors compare the same way for every image (see
    :meth:`ScaleSpec.finer_or_equal`), the finer one must not admit larger
    objects: its ``min`` and ``max`` are <= the coarser one's (SNIP: small
    objects are learned at up-sampled scales, Sec. 3.2). A fixed factor and
    a ``max_side`` rule are not compared (their order depends on the
    image).

    The flat keys ``neg_min_proposals`` and ``neg_per_image`` of older
    configs are accepted by :meth:`from_dict` and readable as properties.
    """
    scales: Tuple[ScaleSpec, ...]
    chip_size: int = 512
    chip_stride: int = 32
    negative: NegativeConfig = dataclasses.field(
        default_factory=NegativeConfig)
    off_grid: bool = True
    allow_range_gaps: bool = False

    def __post_init__(self):
        if isinstance(self.scales, (str, Mapping)) or not isinstance(
                self.scales, Sequence):
            raise UserInputError('ChipConfig.scales must be a list of scale '
                                 f'dicts, got {self.scales!r}')
        scales = []
        for i, spec in enumerate(self.scales):
            try:
                scales.append(ScaleSpec.from_dict(spec))
            except (TypeError, ValueError) as e:
                # TypeError: a ScaleSpec field missing or given twice
                raise UserInputError(f'ChipConfig.scales[{i}]: {e}') from e
        scales = tuple(scales)
        object.__setattr__(self, 'scales', scales)
        for name in ('off_grid', 'allow_range_gaps'):
            object.__setattr__(self, name, _check_bool(
                getattr(self, name), f'ChipConfig.{name}'))
        object.__setattr__(self, 'negative', _sub_config(
            NegativeConfig, self.negative, 'negative'))
        check_some_scales(scales, 'ChipConfig.scales')
        check_integer(self.chip_size, 'ChipConfig.chip_size')
        check_integer(self.chip_stride, 'ChipConfig.chip_stride')
        if self.chip_size % self.chip_stride:
            raise UserInputError(
                f'ChipConfig.chip_size ({self.chip_size}) must be a multiple '
                f'of chip_stride ({self.chip_stride})')
        m = self.negative.min_proposals
        if isinstance(m, tuple) and len(m) != len(scales):
            raise UserInputError(
                f'ChipConfig.negative.min_proposals has {len(m)} values for '
                f'{len(scales)} scales')
        check_range_order(scales)
        gap = range_gap([s.valid_range for s in scales])
        if gap is not None and not self.allow_range_gaps:
            raise UserInputError(
                f'ChipConfig.scales: objects of size {gap[0]:g}-{gap[1]:g} '
                'px are valid at no scale; make adjacent valid ranges '
                'overlap or set allow_range_gaps=True')

    def same_resize_pairs(self, heights=None, widths=None
                          ) -> List[Tuple[int, int]]:
        """Pairs ``(i, j)``, ``i < j``, of scales that resize alike: with
        equal :attr:`ScaleSpec.resize_rule` (every image: ``factor=2`` and
        ``2.0``; ``short_max=(800, 1200)`` and ``(1200, 800)``;
        ``short_max=(512, 512)`` and ``max_side=512``), or, given the
        ORIGINAL sizes of a dataset's images (``(N,)`` each), the same
        factor on every one of them (``factor=0.8`` and ``max_side=512``
        when every image is 640 px long). Their chips would be the same
        canvases twice."""
        rules = [spec.resize_rule for spec in self.scales]
        factors = None
        if heights is not None:
            sizes = np.unique(np.stack([np.asarray(heights, np.float64),
                                        np.asarray(widths, np.float64)],
                                       axis=1), axis=0)
            factors = [spec.factors_for(sizes[:, 0], sizes[:, 1])
                       for spec in self.scales]
        pairs = []
        for i in range(len(rules)):
            for j in range(i + 1, len(rules)):
                if rules[i] == rules[j] or factors is not None and \
                        len(factors[i]) and \
                        np.array_equal(factors[i], factors[j]):
                    pairs.append((i, j))
        return pairs

    def largest_valid_scaled(self, heights, widths) -> np.ndarray:
        """The largest size (sqrt(area), SCALED pixels) an object valid
        at each scale can have on each image: ``min(valid max, sqrt(h *
        w)) * factor`` (no object is larger than its image).

        Worked example: ``factor=0.01`` with ``valid_range=(120, inf)`` on
        a 640 x 480 image: ``min(inf, 554.3) * 0.01 = 5.5`` px, under
        :data:`MIN_OBJECT_PX`: every object of that scale is a few pixels
        there (its canvas is 6 x 5 px).

        Args:
            heights, widths (array): ``(N,)`` ORIGINAL image sizes, > 0.

        Returns:
            np.ndarray: ``(S, N)`` float64, scales in ``scales`` order.
        """
        h = np.asarray(heights, np.float64).reshape(-1)
        w = np.asarray(widths, np.float64).reshape(-1)
        side = np.sqrt(h * w)
        return np.stack([
            np.minimum(spec.valid_range[1], side) * spec.factors_for(h, w)
            for spec in self.scales]).reshape(len(self.scales), len(h))

    @functools.cached_property
    def valid_ranges(self) -> np.ndarray:
        """``(S, 2)`` float64 read-only ``[min, max]`` of every scale's
        valid range (ORIGINAL px; ``max`` may be ``inf``), in
        ``scales`` order."""
        ranges = np.array([s.valid_range for s in self.scales], np.float64)
        ranges.flags.writeable = False
        return ranges

    def geometry(self, img_h: float, img_w: float
                 ) -> Tuple[Tuple[float, Tuple[int, int]], ...]:
        """Per scale, ``(factor, (canvas_h, canvas_w))`` of an image of
        ORIGINAL size ``img_h x img_w`` (:meth:`ScaleSpec.factor_for`,
        :meth:`ScaleSpec.scaled_shape`), cached per size: a dataset's
        images share a few sizes and every chip generator asks for them.

        Raises:
            ValueError: If the image size is not positive.
        """
        cache = self._geometry_cache
        key = (float(img_h), float(img_w))  # Python, numpy or 0-d sizes
        geo = cache.get(key)
        if geo is None:
            geo = tuple((spec.factor_for(img_h, img_w),
                         spec.scaled_shape(img_h, img_w))
                        for spec in self.scales)
            if len(cache) >= _GEOMETRY_CACHE_SIZE:
                cache.clear()
            cache[key] = geo
        return geo

    @functools.cached_property
    def _geometry_cache(self) -> dict:
        return {}

    @property
    def neg_min_proposals(self) -> IntPerScale:
        """Alias of ``negative.min_proposals``."""
        return self.negative.min_proposals

    @property
    def neg_per_image(self) -> int:
        """Alias of ``negative.num_per_image``."""
        return self.negative.num_per_image

    @classmethod
    def from_dict(cls, cfg: dict) -> 'ChipConfig':
        """Build from a plain config dict.

        Args:
            cfg (dict): ``scales`` (list of :class:`ScaleSpec` dicts) and
                optionally ``chip_size``, ``chip_stride``, ``negative``
                (dict), ``off_grid``,
                ``allow_range_gaps``; the flat aliases ``neg_min_proposals``
                / ``neg_per_image`` go into ``negative``.

        Example:
            >>> cfg = ChipConfig.from_dict(dict(
            ...     chip_size=512, chip_stride=32,
            ...     scales=[dict(max_side=512, valid_range=(120, None)),
            ...             dict(factor=1.667, valid_range=(32, 150)),
            ...             dict(factor=3.0, valid_range=(0, 80))],
            ...     negative=dict(min_proposals=10, num_per_image=2)))
            >>> cfg.negative.num_per_image
            2
        """
        if isinstance(cfg, cls):
            return cfg
        if not isinstance(cfg, Mapping):
            raise UserInputError(f'ChipConfig must be a dict, got {cfg!r}')
        cfg = dict(cfg)
        # MMEngine's merge directive, left in a chip_cfg that replaced a
        # whole dataset's (nothing to merge it into): not a setting.
        cfg.pop('_delete_', None)
        if 'scales' not in cfg:
            raise UserInputError('ChipConfig needs `scales`')
        for alias, (section, name) in _ALIASES.items():
            if alias not in cfg:
                continue
            sub = dict(cfg.get(section) or {})
            if name in sub:
                raise UserInputError(f'ChipConfig: both {alias} and '
                                     f'{section}.{name} are set')
            sub[name] = cfg.pop(alias)
            cfg[section] = sub
        if 'focus' in cfg:
            # An earlier ChipConfig had a `focus` section that nothing read.
            raise UserInputError(
                'ChipConfig.focus is not a chip setting: AutoFocus labels '
                'are set in model.focus_head (FocusPixelHead thresholds=(a, '
                'b, c), stride) and FocusChips per transition in '
                'tta_model.scales (threshold, dilation, min_size); remove '
                'chip_cfg.focus')
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserInputError(
                f'unknown ChipConfig field(s) {sorted(unknown)}')
        return cls(**cfg)

    @classmethod
    def paper_coco(cls) -> 'ChipConfig':
        """The paper's COCO SNIPER settings (Sec. 3.3, 4.1; DESIGN.md)."""
        return cls(scales=(
            ScaleSpec(max_side=512, valid_range=(120, INF)),
            ScaleSpec(factor=1.667, valid_range=(32, 150)),
            ScaleSpec(factor=3.0, valid_range=(0, 80)),
        ))


def _strictly_finer(fine: ScaleSpec, coarse: ScaleSpec) -> bool:
    """``fine`` resizes more than ``coarse`` for EVERY image (and not
    alike)."""
    return fine.finer_or_equal(coarse) is True and \
        coarse.finer_or_equal(fine) is not True


def check_some_scales(scales: Sequence, where: str) -> None:
    """A pyramid needs at least one scale: else a ``ValueError`` naming
    ``where`` (``ChipConfig.scales``, ``SnipTTAModel.scales``,
    ``AutoFocusTTAModel.scales``)."""
    if not len(scales):
        raise UserInputError(f'{where} must hold at least one scale')


def check_range_order(scales: Sequence[ScaleSpec],
                      where: str = 'ChipConfig.scales') -> None:
    """Finer scales must not admit larger objects (Sec. 3.2): of two
    scales strictly ordered for every image (:meth:`ScaleSpec.
    finer_or_equal`), the finer one's ``valid_range`` ends must be <= the
    coarser one's; else a ``ValueError`` naming ``where[i]``. The one rule
    for the chips (``ChipConfig``) and the test pyramids
    (``SnipTTAModel``, ``AutoFocusTTAModel``)."""
    for i, fine in enumerate(scales):
        for j, coarse in enumerate(scales):
            if i == j or not _strictly_finer(fine, coarse):
                continue
            if fine.valid_range[0] > coarse.valid_range[0] or \
                    fine.valid_range[1] > coarse.valid_range[1]:
                raise UserInputError(
                    f'{where}[{i}] ({fine.rule_text}) is finer than '
                    f'scales[{j}] ({coarse.rule_text}) but its '
                    f'valid_range {fine.valid_range} admits larger objects '
                    f'than {coarse.valid_range}: finer scales take smaller '
                    'objects (SNIP, Sec. 3.2); give the finer scale the lower '
                    'range (each scale the range it was trained with)')


def check_coarse_to_fine(scales: Sequence[ScaleSpec], where: str) -> None:
    """``scales`` listed coarse to fine (an AutoFocus cascade): no scale
    strictly finer for every image (:meth:`ScaleSpec.finer_or_equal`)
    than one listed after it; else a ``ValueError`` naming ``where[i]``.
    Rules whose order depends on the image (a fixed factor and a
    ``max_side``) are not compared."""
    for i, fine in enumerate(scales):
        for j in range(i + 1, len(scales)):
            if _strictly_finer(fine, scales[j]):
                raise UserInputError(
                    f'{where}[{i}] ({fine.rule_text}) is finer than '
                    f'{where}[{j}] ({scales[j].rule_text}), listed after '
                    'it: the cascade runs coarse to fine (the first scale '
                    'on the whole image, each next one inside the '
                    "previous one's FocusChips); list the scales from the "
                    'coarsest to the finest')


def range_gap(ranges: Sequence[Tuple[float, float]]
              ) -> Optional[Tuple[float, float]]:
    """The first interval of sizes covered by no range, or None.

    Args:
        ranges (Sequence[tuple[float, float]]): ``(min, max)`` sizes.

    Returns:
        tuple[float, float] | None: The gap ``(lo, hi)``, or None. Only the
        span between the smallest minimum and the largest maximum is
        checked. Ranges are open intervals, so touching ranges ``(0, 80)``
        and ``(80, inf)`` leave size 80 uncovered but are accepted as
        contiguous.
    """
    ordered = sorted(ranges)
    reach = ordered[0][1]
    for lo, hi in ordered[1:]:
        if lo > reach:
            return reach, lo
        reach = max(reach, hi)
    return None
