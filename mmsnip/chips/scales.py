# Copyright (c) mmsnip contributors. All rights reserved.
"""Scale specifications and chip settings (pure numpy).

A *scale* resizes the original image by a factor and owns a *valid range*:
the sizes (sqrt of box area, in ORIGINAL-image pixels) of the objects it
learns from and reports (SNIP, Sec. 3.2). The paper's SNIPER scales on COCO
are ``512 / max(h, w)``, 1.667 and 3 with valid ranges (120, inf),
(32, 150) and (0, 80) (Sec. 4.1, DESIGN.md).
"""
import dataclasses
import math
from typing import Optional, Sequence, Tuple

INF = float('inf')


@dataclasses.dataclass(frozen=True)
class ScaleSpec:
    """One scale of the pyramid. Set exactly one of the three factor rules.

    Args:
        factor (float, optional): A fixed factor, e.g. 1.667 or 3.0.
        max_side (int, optional): Resize so the longer side is ``max_side``
            pixels: ``factor = max_side / max(h, w)`` (the paper's 512/ms).
        short_max (tuple[int, int], optional): MMDetection's keep-ratio
            resize ``(short, max)``: ``factor = min(short / min(h, w),
            max / max(h, w))``, e.g. ``(800, 1200)``.
        valid_range (tuple[float, float]): ``(min, max)`` sqrt(area) in
            ORIGINAL-image pixels; ``max`` may be ``inf`` or ``None`` (no
            upper bound; configs use ``None`` because MMEngine cannot dump
            ``inf`` into a loadable config). A box is valid
            when ``min < size < max`` (strict, Sec. 3.2.1).
    """
    factor: Optional[float] = None
    max_side: Optional[float] = None
    short_max: Optional[Tuple[float, float]] = None
    valid_range: Tuple[float, float] = (0.0, INF)

    def __post_init__(self):
        rules = [r for r in ('factor', 'max_side', 'short_max')
                 if getattr(self, r) is not None]
        if len(rules) != 1:
            raise ValueError(
                'ScaleSpec needs exactly one of factor, max_side, short_max; '
                f'got {rules or "none"}')
        if self.factor is not None and not self.factor > 0:
            raise ValueError(f'ScaleSpec.factor must be > 0, got '
                             f'{self.factor}')
        if self.max_side is not None and not self.max_side > 0:
            raise ValueError(f'ScaleSpec.max_side must be > 0, got '
                             f'{self.max_side}')
        if self.short_max is not None:
            sm = tuple(self.short_max)
            if len(sm) != 2 or not (0 < sm[0] and 0 < sm[1]):
                raise ValueError('ScaleSpec.short_max must be (short, max) '
                                 f'with positive sides, got {sm}')
            object.__setattr__(self, 'short_max', sm)
        vr = tuple(INF if v is None else float(v) for v in self.valid_range)
        if len(vr) != 2 or not (0 <= vr[0] < vr[1]) or math.isnan(vr[1]):
            raise ValueError('ScaleSpec.valid_range must be (min, max) with '
                             f'0 <= min < max, got {self.valid_range}')
        object.__setattr__(self, 'valid_range', vr)

    @classmethod
    def from_dict(cls, cfg: dict) -> 'ScaleSpec':
        """Build from a config dict, e.g. ``dict(factor=3, valid_range=(0,
        80))``; unknown keys raise a ``ValueError`` naming them."""
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f'unknown ScaleSpec field(s) {sorted(unknown)}')
        return cls(**cfg)

    def factor_for(self, img_h: float, img_w: float) -> float:
        """The resize factor for an ``img_h x img_w`` original image."""
        if not (img_h > 0 and img_w > 0):
            raise ValueError(
                f'image size must be positive, got {img_h}x{img_w}')
        if self.factor is not None:
            return float(self.factor)
        if self.max_side is not None:
            return float(self.max_side) / max(img_h, img_w)
        short, long = self.short_max
        return min(short / min(img_h, img_w), long / max(img_h, img_w))

    def scaled_shape(self, img_h: float, img_w: float) -> Tuple[int, int]:
        """``(h, w)`` of the scaled canvas in pixels (rounded, at least 1)."""
        f = self.factor_for(img_h, img_w)
        return max(int(round(img_h * f)), 1), max(int(round(img_w * f)), 1)

    def valid_range_scaled(self, factor: float) -> Tuple[float, float]:
        """The valid range in scaled (= chip) pixels for ``factor``."""
        return self.valid_range[0] * factor, self.valid_range[1] * factor


@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """Settings of SNIPER chip generation (Sec. 3.3).

    Args:
        scales (Sequence[ScaleSpec]): The pyramid, any order.
        chip_size (int): ``K``, side of a chip in scaled pixels (512).
        chip_stride (int): ``d``, the grid step of candidate chips (32).
            ``chip_size`` must be a multiple of it.
        neg_min_proposals (int): ``M``: a negative chip must hold at least
            this many proposals (Sec. 3.3.3).
        neg_per_image (int): Negative chips sampled per image per epoch.
        allow_range_gaps (bool): Accept valid ranges that leave sizes valid
            at no scale (by default such a config is an error).
    """
    scales: Tuple[ScaleSpec, ...]
    chip_size: int = 512
    chip_stride: int = 32
    neg_min_proposals: int = 10
    neg_per_image: int = 2
    allow_range_gaps: bool = False

    def __post_init__(self):
        scales = tuple(
            s if isinstance(s, ScaleSpec) else ScaleSpec.from_dict(dict(s))
            for s in self.scales)
        object.__setattr__(self, 'scales', scales)
        if not scales:
            raise ValueError('ChipConfig.scales must not be empty')
        for name in ('chip_size', 'chip_stride'):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ValueError(f'ChipConfig.{name} must be a positive '
                                 f'integer, got {value}')
        if self.chip_size % self.chip_stride:
            raise ValueError(
                f'ChipConfig.chip_size ({self.chip_size}) must be a multiple '
                f'of chip_stride ({self.chip_stride})')
        if self.neg_min_proposals < 1 or self.neg_per_image < 0:
            raise ValueError('ChipConfig needs neg_min_proposals >= 1 and '
                             'neg_per_image >= 0')
        gap = range_gap([s.valid_range for s in scales])
        if gap is not None and not self.allow_range_gaps:
            raise ValueError(
                f'ChipConfig.scales: objects of size {gap[0]:g}-{gap[1]:g} '
                'px are valid at no scale; make adjacent valid ranges '
                'overlap or set allow_range_gaps=True')

    @classmethod
    def from_dict(cls, cfg: dict) -> 'ChipConfig':
        """Build from a plain config dict (``scales`` as a list of dicts)."""
        cfg = dict(cfg)
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f'unknown ChipConfig field(s) {sorted(unknown)}')
        if 'scales' not in cfg:
            raise ValueError('ChipConfig needs `scales`')
        cfg['scales'] = tuple(
            s if isinstance(s, ScaleSpec) else ScaleSpec.from_dict(dict(s))
            for s in cfg['scales'])
        return cls(**cfg)

    @classmethod
    def paper_coco(cls) -> 'ChipConfig':
        """The paper's COCO settings (Sec. 3.3, 4.1; DESIGN.md)."""
        return cls(scales=(
            ScaleSpec(max_side=512, valid_range=(120, INF)),
            ScaleSpec(factor=1.667, valid_range=(32, 150)),
            ScaleSpec(factor=3.0, valid_range=(0, 80)),
        ))


def range_gap(ranges: Sequence[Tuple[float, float]]
              ) -> Optional[Tuple[float, float]]:
    """The first interval of sizes covered by no range, or None.

    Only the span between the smallest minimum and the largest maximum is
    checked. Ranges are open intervals, so touching ranges ``(0, 80)`` and
    ``(80, inf)`` leave size 80 uncovered but are accepted as contiguous.
    """
    ordered = sorted(ranges)
    reach = ordered[0][1]
    for lo, hi in ordered[1:]:
        if lo > reach:
            return reach, lo
        reach = max(reach, hi)
    return None
