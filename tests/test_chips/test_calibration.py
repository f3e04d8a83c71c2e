# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus calibration (pure): the selection rule on hand-made tables,
the greedy finest-first search with fake evaluators, the config snippet."""
import itertools

import numpy as np
import pytest

from mmsnip.chips import (CalibrationError, OperatingPoint, Reference, Target,
                          Transition, apply_setting, calibrate_greedy,
                          config_snippet, rank_points, select_operating_point,
                          setting_of)

T = Transition(0.5, 3, 64.0)
REF = Reference(ap=60.0, pixels=8e6)


def _points(rows):
    """``(ap, pixels)`` rows -> points (the setting does not matter)."""
    return [OperatingPoint((T, ), ap, px) for ap, px in rows]


# The docstring example of select_operating_point.
TABLE = _points([(59.5, 2e6), (58.0, 1e6), (60.0, 3e6)])


@pytest.mark.parametrize('target, pick', [
    (Target(max_ap_drop=1.0), 0),  # 59.5 >= 59: fewest pixels of 0 and 2
    (Target(max_ap_drop=0.0), 2),  # only 60.0 >= 60
    (Target(max_ap_drop=2.0), 1),  # all pass: fewest pixels
    (Target(max_pixels=2.5e6), 0),  # 0 and 1 fit: highest AP
    (Target(max_pixels=1.5e6), 1),
    (Target(max_pixels=1e6), 1),  # the bound itself fits
    (Target(max_pixels=9e6), 2),
])
def test_pick_for_both_targets(target, pick):
    assert select_operating_point(TABLE, target, REF) == pick


def test_ap_bound_is_inclusive():
    # AP exactly reference - X passes.
    pts = _points([(59.0, 1e6), (60.0, 2e6)])
    assert select_operating_point(pts, Target(max_ap_drop=1.0), REF) == 0


def test_ties_ap_drop_higher_ap_then_first():
    pts = _points([(59.2, 1e6), (59.8, 1e6), (59.8, 1e6), (60, 2e6)])
    assert select_operating_point(pts, Target(max_ap_drop=1.0), REF) == 1


def test_ties_pixels_fewer_pixels_then_first():
    pts = _points([(55.0, 2e6), (55.0, 1e6), (55.0, 1e6), (50.0, 5e5)])
    assert select_operating_point(pts, Target(max_pixels=3e6), REF) == 1


def test_rank_puts_closest_unreached_points_after_reached_ones():
    pts = _points([(50.0, 1e6), (59.5, 3e6), (55.0, 2e6), (59.0, 5e6)])
    # AP >= 59 reached by 1, 3 (fewest pixels first); then closest AP.
    np.testing.assert_array_equal(
        rank_points(pts, Target(max_ap_drop=1.0), REF), [1, 3, 2, 0])
    # pixels <= 2.5e6 reached by 0, 2 (highest AP first); then fewest px.
    np.testing.assert_array_equal(
        rank_points(pts, Target(max_pixels=2.5e6), REF), [2, 0, 1, 3])


def test_unreachable_ap_target_names_target_best_and_fix():
    with pytest.raises(CalibrationError) as e:
        select_operating_point(TABLE, Target(max_ap_drop=0.0),
                               Reference(61.0, 8e6))
    msg = str(e.value)
    assert 'at most 0 AP below the full pyramid (AP >= 61)' in msg
    assert 'AP 60' in msg and '3e+06 pixels' in msg  # the best reached
    assert 'lower thresholds' in msg and 'larger sweep' in msg
    assert isinstance(e.value, ValueError)


def test_unreachable_pixel_target_names_target_best_and_fix():
    with pytest.raises(CalibrationError) as e:
        select_operating_point(TABLE, Target(max_pixels=5e5), REF)
    msg = str(e.value)
    assert 'at most 500000 pixels per image' in msg
    assert '1e+06 per image (AP 58)' in msg
    assert 'higher thresholds' in msg and 'larger sweep' in msg


def test_no_points_is_an_error():
    with pytest.raises(CalibrationError, match='no setting was evaluated'):
        select_operating_point([], Target(max_pixels=1.0), REF)


@pytest.mark.parametrize('kw', [
    dict(), dict(max_ap_drop=1.0, max_pixels=1e6), dict(max_ap_drop=-1),
    dict(max_ap_drop=float('nan')), dict(max_pixels=0),
    dict(max_pixels=float('inf'))])
def test_bad_targets(kw):
    with pytest.raises(ValueError):
        Target(**kw)


def test_bad_measurements():
    with pytest.raises(ValueError, match='operating point 1'):
        select_operating_point(_points([(50, 1), (float('nan'), 1)]),
                               Target(max_pixels=5.0), REF)


def test_picked_point_always_satisfies_the_target():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        # coarse values make ties and boundary cases frequent
        pts = _points(zip(rng.integers(50, 62, n).astype(float),
                          rng.integers(1, 9, n) * 1e6))
        ref = Reference(float(rng.integers(55, 62)), 8e6)
        for target in (Target(max_ap_drop=float(rng.integers(0, 4))),
                       Target(max_pixels=float(rng.integers(1, 9)) * 1e6)):
            ap = np.array([p.ap for p in pts])
            px = np.array([p.pixels for p in pts])
            ok = target.meets(ap, px, ref)
            if not ok.any():
                with pytest.raises(CalibrationError):
                    select_operating_point(pts, target, ref)
                continue
            i = select_operating_point(pts, target, ref)
            assert ok[i]
            # and nothing reaching the target is strictly better
            if target.max_ap_drop is not None:
                assert px[i] == px[ok].min()
                assert ap[i] == ap[ok & (px == px[i])].max()
            else:
                assert ap[i] == ap[ok].max()
                assert px[i] == px[ok & (ap == ap[i])].min()


# Greedy search with a fake evaluator: 3 transitions, the AP of a setting
# is the sum of per-transition gains, pixels the sum of per-transition
# costs; lower t: more AP and more pixels.
GRID = [(t, 3, 64.0) for t in (0.1, 0.3, 0.5, 0.7)]
START = [(0.5, 3, 64.0)] * 3


def _fake(calls):
    gain = {0.1: 3.0, 0.3: 2.5, 0.5: 1.0, 0.7: 0.0}
    cost = {0.1: 4.0, 0.3: 2.0, 0.5: 1.0, 0.7: 0.5}
    weight = (1.0, 2.0, 4.0)  # the finest transition matters most

    def evaluate(setting):
        calls.append(setting)
        ap = 50 + sum(w * gain[s.threshold] for w, s in zip(weight, setting))
        px = 1e6 * sum(w * cost[s.threshold]
                       for w, s in zip(weight, setting))
        return ap, px
    return evaluate


def _monotone(calls, t_star=(0.3, 0.5, 0.1), weight=(1.0, 2.0, 4.0)):
    """A fake whose optimum is known: AP 60 minus 10 per unit of t above
    ``t_star`` (a lower t never loses AP), pixels ``sum w * (1 - t)``."""

    def evaluate(setting):
        calls.append(setting)
        ts = [s.threshold for s in setting]
        ap = 60.0 - 10 * sum(max(0.0, t - o) for t, o in zip(ts, t_star))
        return ap, 1e6 * sum(w * (1 - t) for w, t in zip(weight, ts))
    return evaluate


def _brute_force(evaluate, target, ref):
    pts = [OperatingPoint(s, *evaluate(s)) for s in itertools.product(
        *[[Transition(*g) for g in GRID]] * 3)]
    return pts[select_operating_point(pts, target, ref)]


@pytest.mark.parametrize('kind', ['ap', 'pixels'])
def test_greedy_finest_first_finds_the_known_optimum(kind):
    # The optimum is t_star = (0.3, 0.5, 0.1): for the AP target (no drop
    # from 60) every t must be <= t_star, and the fewest pixels then need
    # t = t_star; for the pixel budget P = pixels(t_star), AP 60 needs
    # t <= t_star and so pixels >= P, equal only at t_star.
    star = tuple(Transition(t, 3, 64.0) for t in (0.3, 0.5, 0.1))
    ref = Reference(60.0, 7e6)
    target = Target(max_ap_drop=0.0) if kind == 'ap' else \
        Target(max_pixels=_monotone([])(star)[1])
    start = START if kind == 'ap' else [(0.7, 3, 64.0)] * 3
    calls, seen = [], []
    result = calibrate_greedy(_monotone(calls), start, GRID, target, ref,
                              report=lambda i, p, v: seen.append((i, v)))
    assert result.picked.setting == star
    best = _brute_force(_monotone([]), target, ref)
    assert best.setting == star
    # The start, then the grid on transition 2, 1, 0 (finest first), never
    # evaluating a setting twice (the incumbent's cell is reused).
    assert result.order == (2, 1, 0)
    assert result.varied == [None] + [2] * 3 + [1] * 3 + [0] * 3
    assert len(calls) == len(set(calls)) == len(result.points) == 10
    assert seen == [(i, v) for i, v in enumerate(result.varied)]
    # the first step changes only transition 2, the others at the start
    for s in calls[1:4]:
        assert s[:2] == tuple(Transition(*c) for c in start[:2])
    # the second step holds transition 2 at its best (0.1)
    for s in calls[4:7]:
        assert s[2] == star[2]


def test_greedy_is_not_exhaustive_known_trace():
    # The additive fake, AP >= 69 - 2 = 67 with the fewest pixels:
    # step 1 (transition 2, others 0.5): none reaches 67, the closest is
    #   t = 0.1 (AP 65, 19 M);
    # step 2 (transition 1): 0.1 gives 69 at 25 M, 0.3 gives 68 at 21 M:
    #   0.3;
    # step 3 (transition 0): 0.7 gives 67 at 20.5 M, the fewest pixels.
    # The joint optimum, t = 0.3 everywhere (67.5 AP at 14 M), is missed:
    # the search is greedy, not exhaustive (docs/autofocus.md).
    ref = Reference(69.0, 28e6)
    target = Target(max_ap_drop=2.0)
    result = calibrate_greedy(_fake([]), START, GRID, target, ref)
    assert [t.threshold for t in result.picked.setting] == [0.7, 0.3, 0.1]
    assert (result.picked.ap, result.picked.pixels) == (67.0, 20.5e6)
    best = _brute_force(_fake([]), target, ref)
    assert [t.threshold for t in best.setting] == [0.3, 0.3, 0.3]
    assert (best.ap, best.pixels) == (67.5, 14e6)


def _interacting(calls):
    """2 transitions where the fine one's best depends on the coarse one,
    as in the demo: with the middle scale run whole (t0 = 0) the fine
    transition may drop more pixels at no loss."""
    coarse_px = {0.0: 3.0, 0.2: 2.0, 0.5: 1.0}
    fine_px = {0.0: 6.0, 0.2: 3.0, 0.5: 1.0}
    coarse_loss = {0.0: 0.0, 0.2: 1.0, 0.5: 2.0}

    def evaluate(setting):
        calls.append(setting)
        t0, t1 = (s.threshold for s in setting)
        fine_loss = {0.0: 0.0, 0.2: 0.0, 0.5: 0.5} if t0 == 0.0 else \
            {0.0: 0.0, 0.2: 1.0, 0.5: 2.0}
        return (60.0 - coarse_loss[t0] - fine_loss[t1],
                1e6 * (coarse_px[t0] + fine_px[t1]))
    return evaluate


def test_greedy_second_pass_revisits_the_finest_transition():
    # Pass 1: the fine transition first (coarse at 0.5): nothing reaches
    # AP 60, the closest is t1 = 0 (58); then the coarse: t0 = 0 reaches 60
    # at 9 M. Pass 2: with t0 = 0 the fine transition reaches 60 at t1 =
    # 0.2 (6 M); the coarse one stays. Pass 3 evaluates nothing new and
    # changes nothing.
    grid = [(t, 3, 64.0) for t in (0.0, 0.2, 0.5)]
    start = [(0.5, 3, 64.0)] * 2
    ref, target = Reference(60.0, 9e6), Target(max_ap_drop=0.0)
    picks, counts = [], []
    for passes in (1, 2, 3):
        calls = []
        result = calibrate_greedy(_interacting(calls), start, grid, target,
                                  ref, passes=passes)
        picks.append([t.threshold for t in result.picked.setting])
        counts.append(len(calls))
        assert len(calls) == len(set(calls))
    assert picks == [[0.0, 0.0], [0.0, 0.2], [0.0, 0.2]]
    assert counts[2] == counts[1] > counts[0]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match='passes'):
            calibrate_greedy(_interacting([]), start, grid, target, ref,
                             passes=bad)


def test_greedy_pick_is_the_best_of_every_point():
    rng = np.random.default_rng(1)
    table = {}

    def evaluate(setting):
        return table.setdefault(setting, (float(rng.integers(50, 62)),
                                          float(rng.integers(1, 9)) * 1e6))
    for target in (Target(max_ap_drop=2.0), Target(max_pixels=5e6)):
        try:
            result = calibrate_greedy(evaluate, START, GRID, target, REF)
        except CalibrationError:
            continue
        assert result.pick == select_operating_point(result.points, target,
                                                     REF)
        p = result.picked
        assert target.meets(np.array([p.ap]), np.array([p.pixels]), REF)[0]


def test_greedy_keeps_the_incumbent_when_the_grid_is_worse():
    # Start at the optimum; transition 2's only cell loses AP, so the next
    # step (transition 1) must search with transition 2 still at 0.1.
    star = [(0.3, 3, 64.0), (0.5, 3, 64.0), (0.1, 3, 64.0)]
    calls = []
    grid = {2: [(0.7, 3, 64.0)], 1: [(0.3, 3, 64.0)]}
    result = calibrate_greedy(_monotone(calls), star, grid,
                              Target(max_ap_drop=0.0), REF, order=[2, 1])
    assert calls[2] == tuple(Transition(*c) for c in
                             [star[0], (0.3, 3, 64.0), star[2]])
    assert result.pick == 0  # the start: same AP as 2, fewer pixels


def test_greedy_order_and_per_transition_grid():
    calls = []
    grid = {0: [(0.3, 3, 64.0)], 2: [(0.1, 5, 128.0), (0.3, 3, 64.0)]}
    result = calibrate_greedy(_fake(calls), START, grid,
                              Target(max_pixels=1e9), REF, order=[0, 2])
    assert result.order == (0, 2)
    assert [v for v in result.varied] == [None, 0, 2, 2]
    # transition 1 was never changed
    assert all(s[1] == Transition(0.5, 3, 64.0) for s in calls)


def test_greedy_unreachable_keeps_every_point():
    with pytest.raises(CalibrationError) as e:
        calibrate_greedy(_fake([]), START, GRID, Target(max_pixels=1.0), REF)
    assert e.value.result is not None
    assert e.value.result.pick is None
    assert len(e.value.result.points) == 1 + 3 * 3


@pytest.mark.parametrize('order', [[3], [1, 1], [], [-1], [True]])
def test_greedy_bad_order(order):
    with pytest.raises(ValueError, match='order'):
        calibrate_greedy(_fake([]), START, GRID, Target(max_pixels=1.0), REF,
                         order=order)


@pytest.mark.parametrize('cell, field', [((1.5, 3, 64), 'threshold'),
                                         ((0.5, 0, 64), 'dilation'),
                                         ((0.5, 3, -1), 'min_size')])
def test_greedy_bad_grid_names_the_field(cell, field):
    with pytest.raises(ValueError, match=f'grid of transition 2.{field}'):
        calibrate_greedy(_fake([]), START, [cell], Target(max_pixels=1.0),
                         REF)


SCALES = [dict(max_side=512, valid_range=(100, None), threshold=0.3,
               dilation=3, min_size=128, border_tol=1.0),
          dict(factor=1.0, valid_range=(32, 160), border_tol=1.0),
          dict(factor=2.0, valid_range=(0, 48))]


def test_setting_of_and_apply_setting_round_trip():
    start = setting_of(SCALES)
    # a missing key takes FocusScale's default (t = 0.5, d = 3, k = 256)
    assert start == (Transition(0.3, 3, 128.0), Transition(0.5, 3, 256.0))
    new = apply_setting(SCALES, [(0.1, 5, 64), (0.2, 3, 96)])
    assert new[0] == dict(SCALES[0], threshold=0.1, dilation=5, min_size=64)
    assert new[1] == dict(SCALES[1], threshold=0.2, dilation=3, min_size=96)
    assert new[2] == SCALES[2] and SCALES[1].get('threshold') is None
    with pytest.raises(ValueError, match='2 transitions'):
        apply_setting(SCALES, [(0.1, 5, 64)])


def test_config_snippet_is_python_that_sets_the_scales():
    text = config_snippet(SCALES, base='../a.py', comment=['calibrated'])
    assert text.startswith('# calibrated\n_base_ = ')
    ns = {}
    exec(compile(text, 'snippet', 'exec'), {'dict': dict}, ns)
    assert ns['_base_'] == '../a.py'
    assert ns['tta_model'] == dict(scales=SCALES)
    with pytest.raises(ValueError, match=r'scales\[0\].min_size'):
        config_snippet([dict(min_size=float('inf'))])
