"""The exit engine's screen: which of a book's positions need an exact evaluation now. Pure code,
no ORM and no clock: the pass (services.exit_pass) hands in the book's columns and the prices.

A position is examined when its profile's rules decide in the market's phase now, it has a
price and
  - the price is outside its quiet band (rules.screen_band), or
  - its profile's time exit is due, or
  - its profile has a GAP_DOWN rule and its price is a trade of the opening minute, or
  - it has been held as many trading days as its profile's maximum.
Every other position with a price is quiet: no rule can fire on it.

Two implementations with one answer: a plain loop for a tick's few positions, and numpy over
whole columns for a full pass (10,000 positions: the loop's per-position bytecode was most of
the pass). tests/trading/test_screen.py holds them to the same result.
"""

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np

# Below this many positions the loop costs less than numpy's set-up (a tick's symbol).
VECTOR_MIN = 256


class Due(NamedTuple):
    """One profile as the screen sees it, at the pass's time."""

    has_gap: bool  # a GAP_DOWN rule
    time_due: bool  # its time exit is due now
    max_days: float  # trading days held that make its maximum due (inf: never now)
    decides: bool = True  # its rules decide in the market's phase now


class Columns(NamedTuple):
    """A book's columns, position by position (trading.hot.Book)."""

    symbols: Sequence[str]
    profile_ids: Sequence[int]
    lows: Sequence[float]
    highs: Sequence[float]
    opened: Sequence[int]  # the opening day's ordinal


class Result(NamedTuple):
    examine: list[int]  # positions (indexes into the columns) to evaluate exactly, in order
    evaluated: int  # positions with a price
    skipped: int  # positions without one


def screen(
    book: Columns,
    price_of: Mapping[str, int],
    opening: Collection[str],
    due: Mapping[int, Due],
    held: Callable[[int], int],
) -> Result:
    """`price_of`: each symbol's price; `opening`: the symbols whose price is a trade of the
    opening minute; `held(ordinal)`: trading days held since that opening day."""
    if len(book.symbols) >= VECTOR_MIN:
        return screen_columns(book, price_of, opening, due, held)
    return screen_loop(book, price_of, opening, due, held)


def screen_loop(
    book: Columns,
    price_of: Mapping[str, int],
    opening: Collection[str],
    due: Mapping[int, Due],
    held: Callable[[int], int],
) -> Result:
    examine: list[int] = []
    price_get = price_of.get
    days_by_opened: dict[int, int] = {}  # few distinct opening days
    evaluated = skipped = 0
    for i, (symbol, profile_id, low, high, opened) in enumerate(zip(*book)):
        has_gap, time_due, max_days, decides = due[profile_id]
        if not decides:
            continue
        price = price_get(symbol)
        if price is None:
            skipped += 1
            continue
        evaluated += 1
        if low < price < high:
            if not time_due and not (has_gap and symbol in opening):
                if max_days == math.inf:
                    continue
                days = days_by_opened.get(opened)
                if days is None:
                    days = days_by_opened[opened] = held(opened)
                if days < max_days:
                    continue
        examine.append(i)
    return Result(examine, evaluated, skipped)


# Where a symbol has no price (KRW prices are positive).
_NO_PRICE = -1


def screen_columns(
    book: Columns,
    price_of: Mapping[str, int],
    opening: Collection[str],
    due: Mapping[int, Due],
    held: Callable[[int], int],
) -> Result:
    n = len(book.symbols)
    if n == 0:
        return Result([], 0, 0)
    # Per profile (a handful), then spread to the positions.
    profile_ids, of_profile = np.unique(np.asarray(book.profile_ids, np.int64), return_inverse=True)
    dues = [due[int(pid)] for pid in profile_ids]
    decides = np.array([d.decides for d in dues], bool)[of_profile]
    # Each position's price, built in C (map over dict.get, no Python loop).
    price = np.fromiter(map(price_of.get, book.symbols, repeat(_NO_PRICE)), np.int64, n)
    priced = (price != _NO_PRICE) & decides
    evaluated = int(np.count_nonzero(priced))
    skipped = int(np.count_nonzero(decides)) - evaluated
    # KRW prices are exact in a float64, as the bands are.
    low = np.asarray(book.lows, np.float64)
    high = np.asarray(book.highs, np.float64)
    examine = ~((low < price) & (price < high))
    examine |= np.array([d.time_due for d in dues], bool)[of_profile]
    has_gap = np.array([d.has_gap for d in dues], bool)
    if opening and has_gap.any():
        in_opening = np.fromiter(map(opening.__contains__, book.symbols), bool, n)
        examine |= has_gap[of_profile] & in_opening
    max_days = np.array([d.max_days for d in dues], np.float64)
    if np.isfinite(max_days).any():
        days, of_day = np.unique(np.asarray(book.opened, np.int64), return_inverse=True)
        held_days = np.array([held(int(d)) for d in days], np.float64)
        examine |= held_days[of_day] >= max_days[of_profile]
    examine &= priced
    return Result(np.flatnonzero(examine).tolist(), evaluated, skipped)
