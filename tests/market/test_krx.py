"""KRX tick sizes and price limits, as properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.krx import is_on_tick, price_limits, round_to_tick, tick_size

prices = st.integers(min_value=5, max_value=5_000_000)


@pytest.mark.parametrize(
    "price, tick",
    [
        (1, 1),
        (1_999, 1),
        (2_000, 5),
        (4_995, 5),
        (5_000, 10),
        (19_990, 10),
        (20_000, 50),
        (49_950, 50),
        (50_000, 100),
        (199_900, 100),
        (200_000, 500),
        (499_500, 500),
        (500_000, 1_000),
        (1_234_000, 1_000),
    ],
)
def test_tick_table(price, tick):
    assert tick_size(price) == tick


@pytest.mark.parametrize("price, tick", [(1, 1), (1_999, 1), (2_000, 5), (123_456, 5)])
def test_etf_and_etn_ticks(price, tick):
    assert tick_size(price, etf=True) == tick


@given(prices, st.booleans())
def test_rounding_lands_on_the_grid_next_to_the_price(price, etf):
    down = round_to_tick(price, direction="down", etf=etf)
    up = round_to_tick(price, direction="up", etf=etf)
    assert is_on_tick(down, etf=etf) and is_on_tick(up, etf=etf)
    assert down <= price <= up
    assert (down == up) == is_on_tick(price, etf=etf)
    # nothing on the grid lies strictly between down and price, or price and up
    assert up - down <= max(tick_size(down, etf=etf), tick_size(up, etf=etf))


@given(st.integers(min_value=10, max_value=3_000_000))
def test_limits_are_on_the_grid_and_within_thirty_percent(base):
    lower, upper = price_limits(base)
    assert is_on_tick(lower) and is_on_tick(upper)
    assert lower * 100 >= base * 70 and upper * 100 <= base * 130
    assert lower <= base <= upper or not is_on_tick(base)


@pytest.mark.parametrize(
    "base, limits",
    [
        (71_000, (49_700, 92_300)),
        (9_980, (6_990, 12_970)),  # KRX's worked example: the width 2,994 cut to 2,990
        (20_050, (14_050, 26_050)),  # the width cut at the base's tick (50): 6,015 → 6,000
        (1_999, (1_400, 2_595)),  # the upper cut at its own tick (5)
    ],
)
def test_limits_as_krx_computes_them(base, limits):
    assert price_limits(base) == limits


@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_prices_are_refused(bad):
    with pytest.raises(ValueError):
        round_to_tick(bad, direction="up")
    with pytest.raises(ValueError):
        tick_size(bad)
    with pytest.raises(ValueError):
        price_limits(bad)
