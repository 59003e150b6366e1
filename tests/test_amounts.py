"""Amounts as people read them: rounded to 4 decimals (4 significant digits under one token) by
default, to the last planck on request; parsing what is printed exactly gives the amount back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts._common import ChainInfo, format_balance, parse_amount, round_for_display

GRAD = 10**12


@pytest.mark.parametrize("planck,rounded,exact", [
    (899_999_999_999_998, "900 GRAD", "899.999999999998 GRAD"),
    (7_999_999_999_999_982, "8,000 GRAD", "7,999.999999999982 GRAD"),
    (1_313_412_784_837_695, "1,313.4128 GRAD", "1,313.412784837695 GRAD"),
    (1_234_567_890, "0.001235 GRAD", "0.00123456789 GRAD"),
    (1, "0.000000000001 GRAD", "0.000000000001 GRAD"),
    (0, "0 GRAD", "0 GRAD"),
    (-899_999_999_999_998, "-900 GRAD", "-899.999999999998 GRAD"),
    (1_500_000_000_000, "1.5 GRAD", "1.5 GRAD"),
])
def test_rounded_by_default_and_exact_on_request(planck, rounded, exact):
    assert ChainInfo("GRAD", 12, 42).format_balance(planck) == rounded
    assert ChainInfo("GRAD", 12, 42, exact=True).format_balance(planck) == exact
    assert format_balance(planck, 12, "GRAD") == exact  # the function itself stays exact unless asked


@given(st.integers(-10**24, 10**24), st.integers(0, 18))
def test_rounding_is_within_half_a_step_and_never_hides_a_nonzero_amount(planck, decimals):
    rounded = round_for_display(planck, decimals)
    assert (rounded == 0) == (planck == 0)
    magnitude = abs(planck)
    step = 10 ** max(0, decimals - 4) if magnitude >= 10 ** decimals else \
        10 ** max(0, len(str(magnitude)) - 4) if magnitude else 1
    assert abs(rounded - planck) <= step // 2
    assert parse_amount(format_balance(magnitude, decimals, "U").replace(",", ""), decimals, "U") == magnitude
