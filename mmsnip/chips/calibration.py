# Copyright (c) mmsnip contributors. All rights reserved.
"""Calibrating the AutoFocus cascade's (t, d, k) for a target (pure numpy).

A *setting* gives every transition of the cascade its FocusChip parameters
(:class:`Transition`: ``threshold`` t, ``dilation`` d, ``min_size`` k, the
names of :class:`~mmsnip.chips.FocusScale`); transition ``i`` makes the
chips scale ``i`` hands to scale ``i + 1`` (0: the coarsest). Measured on a
validation split, a setting becomes an :class:`OperatingPoint`: its AP and
its mean pixels per image (network-input pixels the backbone sees, padding
included, summed over scales). The :class:`Reference` is the full pyramid
(every scale on the whole image).

The rule (:func:`rank_points`, :func:`select_operating_point`), for a
:class:`Target`:

* ``max_ap_drop=X``: among the points with ``ap >= reference.ap - X``,
  the one with the fewest pixels; ties: the higher AP, then the first
  evaluated.
* ``max_pixels=P``: among the points with ``pixels <= P``, the one with
  the highest AP; ties: the fewer pixels, then the first evaluated.

Comparisons are exact (no tolerance). ``ap`` and ``max_ap_drop`` share one
unit (the tool uses COCO AP points, 0-100); ``pixels`` and ``max_pixels``
are pixels per image. No point meeting the target is a
:class:`CalibrationError` naming the target, the best point reached and
what to change.

The search (:func:`calibrate_greedy`) is a greedy coordinate search: the
paper tunes the finest transition first (Sec. 4.4.5), so the transitions
are calibrated one at a time from the finest to the coarsest, each over a
grid of (t, d, k) with the others held at the best setting so far; the
evaluation is injected (``evaluate(setting) -> (ap, pixels)``), so the
search runs without a model in tests.
"""
import ast
import dataclasses
from typing import (Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import numpy as np

from mmsnip.utils.checks import check_integer, check_number, is_integer
from .focus_plan import FocusScale

# The FocusScale fields a transition sets, in Transition's order.
CALIBRATED_KEYS = ('threshold', 'dilation', 'min_size')

# The selection rule in one line (written into calibration.json).
RULE = ('max_ap_drop X: among the points with ap >= reference ap - X, the '
        'fewest pixels (ties: the higher ap, then the lower index); '
        'max_pixels P: among the points with pixels <= P, the highest ap '
        '(ties: the fewer pixels, then the lower index)')


class Transition(NamedTuple):
    """The FocusChip parameters of one transition (Algorithm 2).

    Attributes:
        threshold (float): ``t`` in [0, 1].
        dilation (int): ``d``, map cells, >= 1.
        min_size (float): ``k``, pixels in the frame of the scale's
            ``min_size_frame`` (default: the NEXT scale's pixels), >= 0.
    """
    threshold: float
    dilation: int
    min_size: float


def transition(threshold, dilation, min_size,
               where: str = 'transition') -> Transition:
    """A validated :class:`Transition` (the checks of
    :class:`~mmsnip.chips.FocusScale`); errors name ``where``."""
    return Transition(check_number(threshold, f'{where}.threshold', 0, 1),
                      check_integer(dilation, f'{where}.dilation'),
                      check_number(min_size, f'{where}.min_size', 0))


Setting = Tuple[Transition, ...]


def as_setting(setting: Sequence, where: str = 'setting') -> Setting:
    """A validated setting: one :class:`Transition` (or a ``(t, d, k)``
    sequence, or a dict with :data:`CALIBRATED_KEYS`) per transition,
    coarse to fine."""
    out = []
    for i, tr in enumerate(setting):
        if isinstance(tr, Mapping):
            tr = [tr[k] for k in CALIBRATED_KEYS]
        out.append(transition(*tr, where=f'{where}[{i}]'))
    if not out:
        raise ValueError(f'{where} must hold at least one transition')
    return tuple(out)


class Reference(NamedTuple):
    """The full pyramid's measurement: ``ap`` (the unit of the points) and
    mean ``pixels`` per image."""
    ap: float
    pixels: float


class OperatingPoint(NamedTuple):
    """A measured setting.

    Attributes:
        setting (tuple[Transition]): Per transition, coarse to fine.
        ap (float): Its AP (the unit of :class:`Reference`).
        pixels (float): Its mean pixels per image.
    """
    setting: Setting
    ap: float
    pixels: float


@dataclasses.dataclass(frozen=True)
class Target:
    """What the calibration must reach: set exactly one of the two.

    Args:
        max_ap_drop (float, optional): ``X`` >= 0: AP at most ``X`` below
            the full pyramid's (the unit of the points' AP).
        max_pixels (float, optional): ``P`` > 0: at most ``P`` mean pixels
            per image.

    Example:
        ``Target(max_ap_drop=1.0)`` with a pyramid at 60.5 AP accepts
        points with AP >= 59.5 and picks the one with the fewest pixels.
    """
    max_ap_drop: Optional[float] = None
    max_pixels: Optional[float] = None

    def __post_init__(self):
        if (self.max_ap_drop is None) == (self.max_pixels is None):
            raise ValueError('a calibration target needs exactly one of '
                             'max_ap_drop and max_pixels, got '
                             f'max_ap_drop={self.max_ap_drop!r}, '
                             f'max_pixels={self.max_pixels!r}')
        if self.max_ap_drop is not None:
            check_number(self.max_ap_drop, 'target max_ap_drop', 0)
        elif check_number(self.max_pixels, 'target max_pixels', 0) == 0:
            raise ValueError('target max_pixels must be > 0, got '
                             f'{self.max_pixels!r}')

    def describe(self, reference: Reference) -> str:
        """The target in words, e.g. ``at most 1 AP below the full pyramid
        (AP >= 59.5)``."""
        if self.max_ap_drop is not None:
            return (f'at most {self.max_ap_drop:g} AP below the full pyramid'
                    f' (AP >= {reference.ap - self.max_ap_drop:.4g})')
        return f'at most {self.max_pixels:.6g} pixels per image'

    def meets(self, ap: np.ndarray, pixels: np.ndarray,
              reference: Reference) -> np.ndarray:
        """``(N,)`` bool: which points (``ap``, ``pixels``: ``(N,)``)
        reach the target."""
        if self.max_ap_drop is not None:
            return np.asarray(ap) >= reference.ap - self.max_ap_drop
        return np.asarray(pixels) <= self.max_pixels


class CalibrationError(ValueError):
    """No evaluated setting reaches the target. ``result`` holds the
    :class:`CalibrationResult` (every point, ``pick=None``) when it comes
    from :func:`calibrate_greedy`."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def _arrays(points: Sequence[OperatingPoint],
            reference: Reference) -> Tuple[np.ndarray, np.ndarray]:
    ap = np.array([p.ap for p in points], np.float64).reshape(-1)
    pixels = np.array([p.pixels for p in points], np.float64).reshape(-1)
    bad = ~np.isfinite(ap) | ~np.isfinite(pixels) | (pixels < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f'operating point {i} needs a finite AP and finite '
                         f'pixels >= 0, got AP {ap[i]!r}, pixels '
                         f'{pixels[i]!r}')
    check_number(reference.ap, 'reference AP')
    check_number(reference.pixels, 'reference pixels', 0)
    return ap, pixels


def rank_points(points: Sequence[OperatingPoint], target: Target,
                reference: Reference) -> np.ndarray:
    """Indices of ``points``, best first, by the module's rule.

    Points reaching the target come first, ordered by the rule (fewest
    pixels, then higher AP, for ``max_ap_drop``; highest AP, then fewer
    pixels, for ``max_pixels``). The others follow, closest to the target
    first: higher AP, then fewer pixels (``max_ap_drop``); fewer pixels,
    then higher AP (``max_pixels``). Remaining ties: evaluation order.

    Returns:
        np.ndarray: ``(N,)`` int64 permutation of ``range(N)``.
    """
    ap, pixels = _arrays(points, reference)
    ok = target.meets(ap, pixels, reference)
    if target.max_ap_drop is not None:
        first, second = np.where(ok, pixels, -ap), np.where(ok, -ap, pixels)
    else:
        first, second = np.where(ok, -ap, pixels), np.where(ok, pixels, -ap)
    order = np.arange(len(ap))
    return np.lexsort((order, second, first, ~ok)).astype(np.int64)


def select_operating_point(points: Sequence[OperatingPoint], target: Target,
                           reference: Reference) -> int:
    """The index of the point the rule picks (module docstring).

    Example:
        Pyramid 60 AP at 8e6 px; points (59.5 AP, 2e6 px), (58 AP, 1e6
        px), (60 AP, 3e6 px). ``max_ap_drop=1`` picks 0 (59.5 >= 59, the
        fewest pixels of 0 and 2); ``max_pixels=2.5e6`` picks 0 too (the
        highest AP of 0 and 1); ``max_pixels=1.5e6`` picks 1.

    Raises:
        CalibrationError: No point reaches the target (also for no points).
    """
    if not len(points):
        raise CalibrationError(
            f'no setting was evaluated, so none reaches the target '
            f'"{target.describe(reference)}": evaluate at least one')
    ranked = rank_points(points, target, reference)
    best = int(ranked[0])
    p = points[best]
    if target.meets(np.array([p.ap]), np.array([p.pixels]), reference)[0]:
        return best
    raise CalibrationError(_unreachable(points, p, target, reference))


def format_setting(setting: Sequence, sep: str = ', ') -> str:
    """``(t, d, k)`` per transition, coarse to fine, as text:
    ``'(0.02, 3, 128), (0.05, 3, 128)'``."""
    return sep.join('({:g}, {}, {:g})'.format(*t) for t in setting)


def format_focus_recall(counts: Optional[Sequence]) -> str:
    """Per transition ``[needed, covered]`` objects
    (:func:`~mmsnip.chips.focus_recall`) as text, coarse to fine:
    ``'52/53, 44/49'``; ``'-'`` for ``None``."""
    if counts is None:
        return '-'
    return ', '.join(f'{covered}/{needed}' for needed, covered in counts)


def _unreachable(points, best: OperatingPoint, target: Target,
                 reference: Reference) -> str:
    head = (f'no setting of the {len(points)} evaluated reaches the target '
            f'"{target.describe(reference)}": ')
    where = f'(t, d, k per transition, coarse to fine: ' \
            f'{format_setting(best.setting)})'
    if target.max_ap_drop is not None:
        return head + (
            f'the best reaches AP {best.ap:.4g}, '
            f'{reference.ap - best.ap:.4g} below the full pyramid\'s '
            f'{reference.ap:.4g}, at {best.pixels:.4g} pixels per image '
            f'{where}; try lower thresholds t (more FocusPixels), larger '
            'dilations d or min sizes k, a larger sweep, or a looser target')
    return head + (
        f'the fewest pixels reached are {best.pixels:.4g} per image (AP '
        f'{best.ap:.4g}) {where}; try higher thresholds t (fewer '
        'FocusPixels), smaller dilations d or min sizes k, a larger sweep, '
        'or a larger pixel budget')


@dataclasses.dataclass
class CalibrationResult:
    """What :func:`calibrate_greedy` evaluated and picked.

    Attributes:
        points (list[OperatingPoint]): Every distinct setting evaluated, in
            evaluation order; ``points[0]`` is the start setting.
        varied (list[int | None]): Per point, the transition its search
            step varied (``None`` for the start setting).
        order (tuple[int]): The transitions in the order calibrated.
        pick (int | None): Index of the picked point in ``points``
            (:func:`select_operating_point` over all of them; ``None``
            when the target is unreachable).
        target (Target), reference (Reference): As given.
    """
    points: List[OperatingPoint]
    varied: List[Optional[int]]
    order: Tuple[int, ...]
    pick: Optional[int]
    target: Target
    reference: Reference

    @property
    def picked(self) -> OperatingPoint:
        if self.pick is None:
            raise CalibrationError('the target was not reached')
        return self.points[self.pick]

    def to_dict(self) -> dict:
        """Plain data (JSON): target, reference, order, every point
        (``index``, ``varied``, ``setting`` as dicts of
        :data:`CALIBRATED_KEYS`, ``ap``, ``pixels``) and ``pick``."""
        return dict(
            target={k: v for k, v in dataclasses.asdict(self.target).items()
                    if v is not None},
            target_text=self.target.describe(self.reference), rule=RULE,
            reference=self.reference._asdict(),
            order=list(self.order),
            points=[dict(index=i, varied=v,
                         setting=[t._asdict() for t in p.setting],
                         ap=p.ap, pixels=p.pixels)
                    for i, (p, v) in enumerate(zip(self.points,
                                                   self.varied))],
            pick=self.pick)


Grid = Union[Sequence, Mapping[int, Sequence]]


def _grid_for(grid: Grid, tr: int) -> List[Transition]:
    cells = grid[tr] if isinstance(grid, Mapping) else grid
    if not len(cells):
        raise ValueError(f'the grid of transition {tr} is empty')
    return [transition(*c, where=f'grid of transition {tr}')
            if not isinstance(c, Mapping) else
            transition(*[c[k] for k in CALIBRATED_KEYS],
                       where=f'grid of transition {tr}') for c in cells]


def finest_first(num_transitions: int) -> Tuple[int, ...]:
    """The paper's calibration order: ``(n - 1, ..., 1, 0)``."""
    return tuple(range(num_transitions - 1, -1, -1))


def calibrate_greedy(
        evaluate: Callable[[Setting], Tuple[float, float]],
        start: Sequence, grid: Grid, target: Target, reference: Reference,
        order: Optional[Sequence[int]] = None,
        report: Optional[Callable[[int, OperatingPoint, Optional[int]],
                                  None]] = None,
        passes: int = 1) -> CalibrationResult:
    """Greedy coordinate search for the target, finest transition first.

    1. Evaluate ``start`` (e.g. the config's values): the incumbent.
    2. For each transition ``i`` of ``order`` (default
       :func:`finest_first`): evaluate the incumbent with transition ``i``
       replaced by each (t, d, k) of its grid; the new incumbent is the
       best of these and the old incumbent by :func:`rank_points` (a point
       reaching the target if any, else the closest). So the incumbent
       never gets worse, and the transitions after ``i`` are searched with
       ``i`` at its best.
    3. Repeat step 2 up to ``passes`` times in all, stopping after a pass
       that left the incumbent unchanged: a transition searched early
       (the finest) is searched again with the later ones at their best.
    4. Pick by :func:`select_operating_point` over every point evaluated
       (this is the final incumbent).

    Settings evaluated before are not evaluated again. Cost: at most
    ``1 + passes * sum(len(grid of i) for i in order)`` calls of
    ``evaluate``.

    Args:
        evaluate (callable): ``evaluate(setting) -> (ap, pixels)`` with
            ``setting`` a tuple of :class:`Transition` (coarse to fine).
        start (sequence): The start setting (:func:`as_setting`).
        grid (sequence | dict): (t, d, k) triples (or dicts), shared by
            every transition, or a dict ``{transition: triples}``.
        target (Target), reference (Reference): See the module docstring.
        order (sequence[int], optional): Transitions to calibrate, in this
            order; the others keep ``start``'s values.
        report (callable, optional): ``report(index, point, varied)``
            after each evaluation (progress lines).
        passes (int): Rounds of step 2, >= 1.

    Returns:
        CalibrationResult: ``pick`` set.

    Raises:
        CalibrationError: No evaluated point reaches the target; its
            ``result`` holds every point (``pick=None``).
        ValueError: A bad start, grid, order or measurement.
    """
    current = as_setting(start, 'start setting')
    n = len(current)
    order = finest_first(n) if order is None else tuple(order)
    bad = [i for i in order if not is_integer(i) or not 0 <= i < n]
    if bad or not order or len(set(order)) != len(order):
        raise ValueError(f'order must list distinct transitions in '
                         f'[0, {n - 1}], got {list(order)}')
    passes = check_integer(passes, 'passes')
    grids = {i: _grid_for(grid, i) for i in order}
    points: List[OperatingPoint] = []
    varied: List[Optional[int]] = []
    seen: Dict[Setting, int] = {}

    def run(setting: Setting, tr: Optional[int]) -> int:
        if setting in seen:
            return seen[setting]
        ap, pixels = evaluate(setting)
        point = OperatingPoint(setting, float(ap), float(pixels))
        _arrays([point], reference)  # finite AP and pixels, or an error
        seen[setting] = len(points)
        points.append(point)
        varied.append(tr)
        if report is not None:
            report(len(points) - 1, point, tr)
        return seen[setting]

    incumbent = run(current, None)
    for _ in range(passes):
        before = incumbent
        for tr in order:
            cands = [incumbent] + [
                run(current[:tr] + (cell, ) + current[tr + 1:], tr)
                for cell in grids[tr]
            ]
            cands = sorted(set(cands))  # ties go to the first evaluated
            best = rank_points([points[c] for c in cands], target,
                               reference)[0]
            incumbent = cands[int(best)]
            current = points[incumbent].setting
        if incumbent == before:
            break
    result = CalibrationResult(points, varied, order, None, target,
                               reference)
    try:
        result.pick = select_operating_point(points, target, reference)
    except CalibrationError as e:
        raise CalibrationError(str(e), result) from None
    return result


def apply_setting(scales: Sequence[dict], setting: Sequence) -> List[dict]:
    """Copies of the ``AutoFocusTTAModel`` scale dicts (coarse to fine)
    with transition ``i``'s (t, d, k) set on ``scales[i]``; every other
    field kept. ``len(setting)`` must be ``len(scales) - 1``."""
    setting = as_setting(setting)
    if len(setting) != len(scales) - 1:
        raise ValueError(f'{len(scales)} scales have {len(scales) - 1} '
                         f'transitions, got a setting of {len(setting)}')
    out = [dict(s) for s in scales]
    for s, tr in zip(out, setting):
        s.update(tr._asdict())
    return out


def setting_of(scales: Sequence[dict], defaults: Optional[dict] = None,
               where: str = 'scales') -> Setting:
    """The setting of ``AutoFocusTTAModel`` scale dicts (their first
    ``len - 1`` scales); a missing key takes ``defaults`` (e.g.
    :class:`~mmsnip.chips.FocusScale`'s field defaults)."""
    if defaults is None:
        defaults = {f.name: f.default for f in dataclasses.fields(FocusScale)
                    if f.name in CALIBRATED_KEYS}
    return tuple(
        transition(*[s.get(k, defaults[k]) for k in CALIBRATED_KEYS],
                   where=f'{where}[{i}]') for i, s in enumerate(scales[:-1]))


def _literal(value, where: str) -> str:
    """``repr(value)`` if Python reads it back equal, else ValueError."""
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        same = False
    if not same:
        raise ValueError(f'{where} = {text} cannot be written as a Python '
                         'literal in a config snippet')
    return text


def config_snippet(scales: Sequence[dict], base: Optional[str] = None,
                   comment: Sequence[str] = ()) -> str:
    """A config file setting ``tta_model.scales`` to ``scales``.

    Python an MMEngine ``Config`` reads: ``comment`` lines (``# ``
    prefixed), ``_base_ = base`` if given (the child then inherits every
    other key of ``base``, and its ``tta_model`` dict is merged: only
    ``scales`` is replaced), and ``tta_model = dict(scales=[...])`` with
    one ``dict(...)`` per scale. Values must be Python literals (numbers,
    None, str, bool, tuples/lists of them).

    Example:
        ``config_snippet([dict(factor=1.0, threshold=0.3)], 'a.py')``::

            _base_ = 'a.py'

            tta_model = dict(
                scales=[
                    dict(factor=1.0, threshold=0.3),
                ])
    """
    lines = [f'# {c}'.rstrip() for c in comment]
    if base is not None:
        lines += [f'_base_ = {_literal(str(base), "_base_")}', '']
    lines += ['tta_model = dict(', '    scales=[']
    for i, scale in enumerate(scales):
        fields = [f'{k}={_literal(v, f"scales[{i}].{k}")}'
                  for k, v in scale.items()]
        line = f'        dict({", ".join(fields)}),'
        if len(line) <= 79:
            lines.append(line)
        else:  # one field per line
            lines += ['        dict('] + [f'            {f},'
                                          for f in fields[:-1]]
            lines.append(f'            {fields[-1]}),')
    lines += ['    ])', '']
    return '\n'.join(lines)


__all__ = [
    'CALIBRATED_KEYS', 'RULE', 'CalibrationError', 'CalibrationResult',
    'OperatingPoint', 'Reference', 'Target', 'Transition', 'apply_setting',
    'as_setting', 'calibrate_greedy', 'config_snippet', 'finest_first',
    'format_setting',
    'rank_points', 'select_operating_point', 'setting_of', 'transition'
]
