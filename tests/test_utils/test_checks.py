import math
import subprocess
import sys

import numpy as np
import pytest

from mmsnip.utils.checks import (check_integer, check_number, check_positive,
                                 is_integer, is_number)

INTEGERS = [0, -3, 7, 10**400, np.int64(5), np.uint8(2), np.int32(-1)]
REALS = [0.5, -2.0, 1e300, np.float32(0.25), np.float16(3), np.float64(-1)]
NOT_NUMBERS = [True, False, np.bool_(True), None, '3', b'3', [1], (1, ),
               np.array(3), np.array([1.0]), 1j, object()]


@pytest.mark.parametrize('value', INTEGERS)
def test_integers_are_integers_and_finite_numbers(value):
    assert is_integer(value)
    assert is_number(value) and is_number(value, finite=False)


@pytest.mark.parametrize('value', REALS)
def test_reals_are_numbers_not_integers(value):
    assert is_number(value) and not is_integer(value)


@pytest.mark.parametrize('value', NOT_NUMBERS)
def test_bools_strings_arrays_and_containers_are_not_numbers(value):
    assert not is_integer(value)
    assert not is_number(value) and not is_number(value, finite=False)


@pytest.mark.parametrize('value', [math.inf, -math.inf, np.float32('inf')])
def test_infinity_is_a_number_only_when_asked(value):
    assert not is_number(value)
    assert is_number(value, finite=False)


@pytest.mark.parametrize('value', [math.nan, np.float32('nan')])
def test_nan_is_never_a_number(value):
    assert not is_number(value) and not is_number(value, finite=False)


def test_check_number_returns_a_float_or_names_the_setting():
    assert check_number(np.float32(0.5), 'x', 0, 1) == 0.5
    assert type(check_number(1, 'x')) is float
    assert check_number(math.inf, 'x', 0, finite=False) == math.inf
    with pytest.raises(ValueError,
                       match=r"^a.threshold must be a finite number in "
                       r"\[0, 1\], got 1\.5$"):
        check_number(1.5, 'a.threshold', 0, 1)
    with pytest.raises(ValueError, match=r'^x must be a number in \[0, inf\]'
                       r', got nan$'):
        check_number(math.nan, 'x', 0, finite=False)
    with pytest.raises(ValueError, match='got True'):
        check_number(True, 'x')


def test_check_positive_and_check_integer():
    assert check_positive(np.int64(2), 'f') == 2.0
    for bad in (0, -1.0, math.inf, math.nan, True, '2'):
        with pytest.raises(ValueError, match=r'^f must be a finite number '
                           r'> 0, got '):
            check_positive(bad, 'f')
    assert check_integer(np.int64(3), 'k') == 3
    assert type(check_integer(np.int64(3), 'k')) is int
    assert check_integer(0, 'k', 0) == 0
    for bad in (0, 2.0, True, '2', None):
        with pytest.raises(ValueError, match=r'^k must be an integer >= 1, '
                           r'got '):
            check_integer(bad, 'k')


def test_importing_the_checks_loads_neither_torch_nor_numpy():
    # mmsnip.chips (pure numpy) imports this module like every layer does.
    code = ('import sys, mmsnip.utils.checks; '
            'print("torch" in sys.modules, "numpy" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert out.split() == ['False', 'False']
