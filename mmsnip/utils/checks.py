# Copyright (c) mmsnip contributors. All rights reserved.
"""Is this setting a number? The one home of the test, for every layer.

Standard library only, so that ``mmsnip.chips`` (pure numpy, no torch, no
mmdet) imports it like every other layer does. The rules, everywhere:

- a ``bool`` is never a number (``True == 1`` to Python, but
  ``chip_size=True`` is a mistake, not a 1 px chip);
- numpy scalars are numbers (``np.int64(3)`` is an integer,
  ``np.float32(0.5)`` a real number), as values read from arrays are;
- NaN is never a number; infinity only where ``finite=False`` says so.

The ``check_*`` functions return the value as a Python ``int``/``float``
or raise a :class:`UserInputError` naming the setting (``name``); callers
that name their owner or the fix in their own words use
:func:`is_integer` and :func:`is_number` and raise their own error.
"""
import math
import numbers

INF = math.inf


class UserInputError(ValueError):
    """A problem with a user-supplied file, path or config value.

    Tools print ``error: <message>`` and exit with status 2 on it
    (:func:`mmsnip.utils.preflight.run_cli`) instead of a traceback. Any
    layer raises it for a setting or input the user can fix, also while
    a model runs (a test-time model refusing its views at the first
    image); a ``ValueError``, so ``except ValueError`` still catches it.
    """


def is_integer(value) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, bool)


def is_number(value, finite: bool = True) -> bool:
    """A real number (Python or numpy), not a bool, not NaN; not infinite
    either unless ``finite=False``."""
    kind = type(value)
    if kind is int:  # the common cases first, without the ABC checks
        return True
    if kind is float:
        return math.isfinite(value) if finite else not math.isnan(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(value, numbers.Integral):
        return True  # (math.isfinite overflows on ints beyond float range)
    return math.isfinite(value) if finite else not math.isnan(value)


def check_number(value, name: str, low: float = -INF, high: float = INF,
                 finite: bool = True) -> float:
    """``float(value)`` if :func:`is_number` (with ``finite``) and in
    ``[low, high]``, else ``UserInputError: {name} must be a finite number
    in [low, high], got {value!r}``."""
    if not is_number(value, finite) or not low <= value <= high:
        bounds = f'in [{low:g}, {high:g}]'
        raise UserInputError(
            f'{name} must be a{" finite" if finite else ""} number '
            f'{bounds}, got {value!r}')
    return float(value)


def check_positive(value, name: str) -> float:
    """``float(value)`` if it is a finite number > 0, else
    ``UserInputError: {name} must be a finite number > 0, got {value!r}``.
    """
    if not is_number(value) or value <= 0:
        raise UserInputError(
            f'{name} must be a finite number > 0, got {value!r}')
    return float(value)


def check_integer(value, name: str, minimum: int = 1) -> int:
    """``int(value)`` if it is an integer >= ``minimum``, else
    ``UserInputError: {name} must be an integer >= {minimum}, got
    {value!r}``.
    """
    if not is_integer(value) or value < minimum:
        raise UserInputError(
            f'{name} must be an integer >= {minimum}, got {value!r}')
    return int(value)
