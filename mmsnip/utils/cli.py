# Copyright (c) mmsnip contributors. All rights reserved.
"""Command-line helpers shared by the tools: one ``error:`` line for every
bad option.

``ArgumentParser`` prints usage errors as a single ``error: ...`` line and
exits with status 2 (argparse prints the usage block first);
:func:`number` makes argparse ``type=`` checkers for numeric options::

    parser = ArgumentParser(description='...')
    parser.add_argument('--num', type=positive_int, default=4)
    parser.add_argument('--score-thr', type=number(float, 0, 1))

    $ python tools/x.py --num 0
    error: argument --num: must be an integer >= 1, got '0' (see x.py --help)
    $ python tools/x.py --score-thr nan
    error: argument --score-thr: must be a finite number in [0, 1], got
    'nan' (see x.py --help)
"""
import argparse
import math
import sys
from typing import Callable, Optional, Union

Number = Union[int, float]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line,
    ``error: <message>``, with exit status 2 (as ``run_cli`` does for
    :class:`~mmsnip.utils.preflight.UserInputError`)."""

    def error(self, message: str):
        print(f'error: {message} (see {self.prog} --help)', file=sys.stderr)
        sys.exit(2)


def _fmt(v: Number) -> str:
    return f'{v:g}' if isinstance(v, float) else str(v)


def number(kind: type = int,
           low: Optional[Number] = None,
           high: Optional[Number] = None,
           low_open: bool = False,
           high_open: bool = False) -> Callable[[str], Number]:
    """An argparse ``type=`` for an ``int`` or a finite ``float`` in a range.

    Args:
        kind (type): ``int`` or ``float``.
        low, high (int | float, optional): Bounds (None: unbounded).
        low_open, high_open (bool): Exclude the bound itself.

    Returns:
        Callable[[str], int | float]: Raises ``argparse.ArgumentTypeError``
        with e.g. ``must be a finite number in (0, 1], got 'nan'``.

    Example:
        ``number(float, 0, 1, low_open=True)('0')`` fails (0 is excluded),
        ``('1')`` gives 1.0, ``('inf')`` and ``('nan')`` fail.
    """
    if kind not in (int, float):
        raise TypeError(f'number: kind must be int or float, got {kind}')
    noun = 'an integer' if kind is int else 'a finite number'
    if low is not None and high is not None:
        rng = (f' in {"(" if low_open else "["}{_fmt(low)}, '
               f'{_fmt(high)}{")" if high_open else "]"}')
    elif low is not None:
        rng = f' {">" if low_open else ">="} {_fmt(low)}'
    elif high is not None:
        rng = f' {"<" if high_open else "<="} {_fmt(high)}'
    else:
        rng = ''
    expected = f'must be {noun}{rng}'

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f'{expected}, got {text!r}') from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f'{expected}, got {text!r}')
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f'{expected}, got {text!r}')
        if high is not None and (value > high or
                                 (high_open and value == high)):
            raise argparse.ArgumentTypeError(f'{expected}, got {text!r}')
        return value

    parse.__name__ = f'{kind.__name__}{rng}'.replace(' ', '')
    return parse


finite_float = number(float)
positive_int = number(int, 1)
non_negative_int = number(int, 0)
positive_float = number(float, 0, low_open=True)
non_negative_float = number(float, 0)
unit_interval = number(float, 0, 1)
