"""KRX market rules as pure functions: the short code's form, tick sizes and the daily price limit
(KIS.md).

Prices are whole KRW. Stocks on KOSPI and KOSDAQ use the tick table in force since 2023-01-25;
ETFs and ETNs tick by 5 KRW.
"""

import math

# A KRX short code: 6 characters, digits or upper-case letters (005930).
SYMBOL_PATTERN = r"^[0-9A-Z]{6}$"

# (upper bound, exclusive; tick) for stocks
_STOCK_TICKS = (
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
)
_TOP_TICK = 1_000
ETF_TICK = 5
PRICE_LIMIT_PCT = 30


def tick_size(price: int, *, etf: bool = False) -> int:
    """The tick at `price` (the tick of the band the price lies in)."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    if etf:
        return ETF_TICK
    for bound, tick in _STOCK_TICKS:
        if price < bound:
            return tick
    return _TOP_TICK


def round_to_tick(price: int, *, direction: str, etf: bool = False) -> int:
    """The nearest valid price at or below ("down") or at or above ("up") `price`."""
    if direction not in ("down", "up"):
        raise ValueError("direction is 'down' or 'up'")
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    tick = tick_size(price, etf=etf)
    down = price - price % tick
    if direction == "down" and down == 0:
        raise ValueError(f"no valid price at or below {price}")
    if direction == "down" or down == price:
        return down
    # Each band's lower bound is a multiple of the tick below it, so one tick up is always on
    # the grid, even when it crosses into the next band.
    return down + tick


def is_on_tick(price: int, *, etf: bool = False) -> bool:
    return price > 0 and price % tick_size(price, etf=etf) == 0


def price_limits(base_price: int, *, etf: bool = False) -> tuple[int, int]:
    """(lower, upper) limit prices for the day: ±30 % of the base price, on the tick grid,
    never beyond 30 % (the lower rounds up, the upper rounds down).
    """
    if base_price <= 0:
        raise ValueError(f"base price must be positive, got {base_price}")
    raw_upper = math.floor(base_price * (100 + PRICE_LIMIT_PCT) / 100)
    raw_lower = math.ceil(base_price * (100 - PRICE_LIMIT_PCT) / 100)
    upper = round_to_tick(raw_upper, direction="down", etf=etf)
    lower = round_to_tick(max(raw_lower, 1), direction="up", etf=etf)
    return lower, upper
