"""The exit pass's screen as pure logic: which positions it sends to an exact evaluation, and
that its two implementations (a loop for a tick's few positions, numpy over a full pass's
columns) give the same answer whatever the book, the prices and the rules."""

import math
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from trading import screen
from trading.screen import Columns, Due

QUIET = Due(has_gap=False, time_due=False, max_days=math.inf)


def _columns(rows) -> Columns:
    """rows: (symbol, profile_id, low, high, opened), in the arrays the cached book holds."""
    symbols, pids, lows, highs, opened = zip(*rows) if rows else ((), (), (), (), ())
    return Columns(
        tuple(symbols), array("q", pids), array("d", lows), array("d", highs), array("q", opened)
    )


def _both(book, price_of, opening, due, held):
    loop = screen.screen_loop(book, price_of, opening, due, held)
    columns = screen.screen_columns(book, price_of, opening, due, held)
    assert loop == columns
    return loop


def test_a_price_inside_the_band_is_quiet_and_one_on_or_outside_it_is_examined():
    book = _columns(
        [
            ("000001", 1, 100.0, 200.0, 1),
            ("000002", 1, 100.0, 200.0, 1),
            ("000003", 1, 100.0, 200.0, 1),
            ("000004", 1, 100.0, 200.0, 1),
        ]
    )
    prices = {"000001": 150, "000002": 100, "000003": 200, "000004": 99}
    result = _both(book, prices, set(), {1: QUIET}, lambda day: 0)
    assert result == screen.Result(examine=[1, 2, 3], evaluated=4, skipped=0)


def test_positions_without_a_price_are_skipped_whatever_their_profile_says():
    book = _columns([("000001", 1, 100.0, 200.0, 1), ("000002", 1, 100.0, 200.0, 1)])
    due = {1: Due(has_gap=True, time_due=True, max_days=0)}
    assert _both(book, {"000002": 150}, {"000001"}, due, lambda day: 5) == screen.Result(
        examine=[1], evaluated=1, skipped=1
    )


def test_time_gap_and_holding_rules_examine_a_position_inside_its_band():
    book = _columns(
        [
            ("000001", 1, 100.0, 200.0, 10),  # time exit due
            ("000002", 2, 100.0, 200.0, 10),  # GAP_DOWN, opening-minute trade
            ("000003", 2, 100.0, 200.0, 10),  # GAP_DOWN, a later trade
            ("000004", 3, 100.0, 200.0, 10),  # held 5 days, maximum 5
            ("000005", 3, 100.0, 200.0, 12),
        ]
    )  # held 3 days, maximum 5
    due = {1: Due(False, True, math.inf), 2: Due(True, False, math.inf), 3: Due(False, False, 5)}
    prices = dict.fromkeys(("000001", "000002", "000003", "000004", "000005"), 150)
    held = {10: 5, 12: 3}.__getitem__
    assert _both(book, prices, {"000002"}, due, held).examine == [0, 1, 3]


def test_a_full_pass_goes_through_numpy_and_a_tick_through_the_loop(monkeypatch):
    calls = []
    monkeypatch.setattr(screen, "screen_columns", lambda *a: calls.append("columns"))
    monkeypatch.setattr(screen, "screen_loop", lambda *a: calls.append("loop"))
    small = _columns([("000001", 1, 1.0, 2.0, 1)] * (screen.VECTOR_MIN - 1))
    large = _columns([("000001", 1, 1.0, 2.0, 1)] * screen.VECTOR_MIN)
    screen.screen(small, {}, set(), {1: QUIET}, lambda day: 0)
    screen.screen(large, {}, set(), {1: QUIET}, lambda day: 0)
    assert calls == ["loop", "columns"]


SYMBOLS = [f"{i:06d}" for i in range(8)]
DAYS = [738_000 + i for i in range(4)]


@st.composite
def cases(draw):
    profile_ids = draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=4, unique=True))
    due = {
        pid: Due(
            has_gap=draw(st.booleans()),
            time_due=draw(st.booleans()),
            max_days=draw(st.sampled_from([math.inf, 0, 1, 2, 3, 5])),
        )
        for pid in profile_ids
    }
    # Bands on and around the prices, including the bounds themselves and empty bands.
    edge = st.sampled_from([-math.inf, math.inf, 99.5, 100.0, 100.5, 101.0, 150.0])
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SYMBOLS),
                st.sampled_from(profile_ids),
                edge,
                edge,
                st.sampled_from(DAYS),
            ),
            max_size=60,
        )
    )
    prices = draw(
        st.dictionaries(
            st.sampled_from(SYMBOLS), st.sampled_from([100, 101, 150]), max_size=len(SYMBOLS)
        )
    )
    opening = draw(st.sets(st.sampled_from(SYMBOLS)))
    held_days = {day: draw(st.integers(0, 6)) for day in DAYS}
    return _columns(rows), prices, opening, due, held_days


@settings(max_examples=400, deadline=None)
@given(cases())
def test_both_implementations_screen_alike_and_as_the_rules_say(case):
    book, prices, opening, due, held_days = case
    result = _both(book, prices, opening, due, held_days.__getitem__)
    # The definition, position by position.
    expected = []
    for i, (symbol, pid, low, high, opened) in enumerate(zip(*book)):
        if symbol not in prices:
            continue
        d = due[pid]
        if (
            not low < prices[symbol] < high
            or d.time_due
            or (d.has_gap and symbol in opening)
            or held_days[opened] >= d.max_days
        ):
            expected.append(i)
    priced = sum(symbol in prices for symbol in book.symbols)
    assert result == screen.Result(expected, priced, len(book.symbols) - priced)
