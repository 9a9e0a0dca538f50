"""KRX market rules as pure functions: the short code's form, tick sizes and the daily price limit
(KIS.md).

Prices are whole KRW. Stocks on KOSPI and KOSDAQ use the tick table in force since 2023-01-25;
ETFs and ETNs tick by 1 KRW below 2,000 and by 5 KRW from 2,000 (since December 2023;
docs/market-day.md gives the sources).
"""

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
# (upper bound, exclusive; tick) for ETFs and ETNs, then ETF_TICK
_ETF_TICKS = ((2_000, 1),)
ETF_TICK = 5
PRICE_LIMIT_PCT = 30


def tick_size(price: int, *, etf: bool = False) -> int:
    """The tick at `price` (the tick of the band the price lies in)."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    for bound, tick in _ETF_TICKS if etf else _STOCK_TICKS:
        if price < bound:
            return tick
    return ETF_TICK if etf else _TOP_TICK


def round_to_tick(price: int, *, direction: str, etf: bool = False) -> int:
    """The nearest valid price at or below ("down") or at or above ("up") `price`."""
    if direction not in ("down", "up"):
        raise ValueError("direction is 'down' or 'up'")
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    tick = tick_size(price, etf=etf)
    down = price - price % tick  # never 0: every grid starts at 1 KRW
    if direction == "down" or down == price:
        return down
    # Each band's lower bound is a multiple of the tick below it, so one tick up is always on
    # the grid, even when it crosses into the next band.
    return down + tick


def is_on_tick(price: int, *, etf: bool = False) -> bool:
    return price > 0 and price % tick_size(price, etf=etf) == 0


def price_limits(base_price: int, *, etf: bool = False) -> tuple[int, int]:
    """(lower, upper) limit prices for the day, as KRX computes them: 30 % of the base price,
    cut down to the tick at the base price, either side of it; the upper cut down to the tick at
    its own price (so both lie within 30 %, on the grid)."""
    if base_price <= 0:
        raise ValueError(f"base price must be positive, got {base_price}")
    width = base_price * PRICE_LIMIT_PCT // 100
    width -= width % tick_size(base_price, etf=etf)
    upper = round_to_tick(base_price + width, direction="down", etf=etf)
    # On the grid already when the base is (the ticks nest); a base off the grid rounds inward.
    lower = round_to_tick(max(base_price - width, 1), direction="up", etf=etf)
    return lower, upper
