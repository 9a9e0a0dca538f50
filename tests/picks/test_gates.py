"""The router's gates and sizing as pure logic: each refusal with its gate, the order of the
gates, and the order a passing pick becomes (qty from the budget, price on the tick grid)."""

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import SEOUL
from market import krx
from picks import gates
from picks.models import GateSettings

OPEN = dt.datetime(2026, 11, 24, 9, 0, tzinfo=SEOUL)
CLOSE = dt.datetime(2026, 11, 24, 15, 30, tzinfo=SEOUL)
NOW = dt.datetime(2026, 11, 24, 10, 0, 0, tzinfo=SEOUL)
LIMITS = gates.Limits()
ASK = gates.Ask(
    side="BUY",
    symbol="005930",
    qty=None,
    budget_krw=1_000_000,
    limit_price=None,
    generated_at=NOW - dt.timedelta(seconds=1),
)
MARKET = gates.Market(
    price=71_000,
    price_at=NOW - dt.timedelta(seconds=1),
    upper_limit=92_300,
    lower_limit=49_700,
    best_bid=70_900,
    best_ask=71_000,
)
ACCOUNT = gates.Account(cash_krw=100_000_000)


def decide(
    ask=ASK, market=MARKET, account=ACCOUNT, limits=LIMITS, now=NOW, opens=OPEN, closes=CLOSE
):
    return gates.route(
        ask, market, account, limits, now=now, session_open=opens, session_close=closes
    )


def refused(gate: int, words: str, **changes) -> None:
    decision = decide(**changes)
    assert isinstance(decision, gates.Rejection), decision
    assert (decision.gate, words in decision.reason) == (gate, True), decision


def test_a_valid_pick_becomes_an_entry_sized_from_its_budget_on_the_tick_grid():
    decision = decide()
    # 71,000 + 0.5% = 71,355, down to the 100-KRW tick: 71,300; 1,000,000 // 71,300 = 14
    assert decision == gates.Route(side="BUY", qty=14, limit_price=71_300, price=71_000)


def test_the_picks_own_limit_price_is_rounded_down_and_its_qty_kept():
    decision = decide(ask=dataclasses.replace(ASK, qty=3, budget_krw=None, limit_price=71_050))
    assert (decision.qty, decision.limit_price) == (3, 71_000)


def test_the_entry_price_never_exceeds_the_upper_limit():
    market = dataclasses.replace(
        MARKET, price=90_000, upper_limit=90_200, best_bid=89_900, best_ask=90_000
    )
    price = gates.entry_price(ASK, market, dataclasses.replace(LIMITS, entry_slippage_pct=5))
    assert price == 90_200


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"account": gates.Account(trading_state="HALTED", cash_krw=10**8)}, "trading is HALTED"),
        ({"account": gates.Account(trading_state="REDUCING", cash_krw=10**8)}, "REDUCING"),
        ({"ask": dataclasses.replace(ASK, source_active=False)}, "not active"),
        ({"ask": dataclasses.replace(ASK, has_profile=False)}, "no exit profile"),
        ({"opens": None, "closes": None}, "closed today"),
        ({"now": OPEN - dt.timedelta(seconds=1)}, "before the open"),
        ({"now": dt.datetime(2026, 11, 24, 15, 15, tzinfo=SEOUL)}, "after the entry cutoff"),
        ({"market": gates.Market(known=False)}, "not a listed symbol"),
        ({"market": dataclasses.replace(MARKET, halted=True)}, "halted"),
        ({"account": gates.Account(symbol_held_qty=5, cash_krw=10**8)}, "already held"),
        ({"account": gates.Account(symbol_entry_pending=True, cash_krw=10**8)}, "already pending"),
        ({"ask": dataclasses.replace(ASK, generated_at=NOW - dt.timedelta(seconds=31))}, "stale"),
    ],
)
def test_gate_1_validity(changes, words):
    refused(1, words, **changes)


def test_the_cutoff_is_the_close_when_the_close_comes_first():
    early_close = dt.datetime(2026, 11, 24, 13, 0, tzinfo=SEOUL)
    refused(1, "after the close (13:00)", now=early_close, closes=early_close)


@pytest.mark.parametrize(
    "account, limits, words",
    [
        (gates.Account(open_positions=20, cash_krw=10**8), LIMITS, "20 positions open"),
        (
            gates.Account(symbol_exposure_krw=19_500_000, cash_krw=10**8),
            LIMITS,
            "005930 exposure would be 20,498,200 KRW",
        ),
        (
            gates.Account(total_exposure_krw=199_500_000, cash_krw=10**8),
            LIMITS,
            "total exposure would be",
        ),
        (
            gates.Account(realized_today_krw=Decimal("-5000000"), cash_krw=10**8),
            LIMITS,
            "reached the daily limit",
        ),
        (gates.Account(cash_krw=None), LIMITS, "cash unknown"),
        (
            gates.Account(cash_krw=1_500_000),
            dataclasses.replace(LIMITS, min_cash_krw=600_000),
            "more than the 900,000 KRW",
        ),
    ],
)
def test_gate_2_risk(account, limits, words):
    refused(2, words, account=account, limits=limits)


def test_a_budget_below_one_share_is_refused_by_the_risk_gate():
    refused(2, "buys no share", ask=dataclasses.replace(ASK, budget_krw=50_000))


def test_a_loss_just_short_of_the_limit_and_cash_just_enough_pass():
    account = gates.Account(realized_today_krw=Decimal("-4999999.99"), cash_krw=14 * 71_300)
    assert isinstance(decide(account=account), gates.Route)


@pytest.mark.parametrize(
    "market, ask, words",
    [
        (gates.Market(best_bid=70_900, best_ask=71_000), ASK, "no price known"),
        (dataclasses.replace(MARKET, price_at=NOW - dt.timedelta(seconds=6)), ASK, "6.0 s old"),
        (
            dataclasses.replace(MARKET, price=90_500, best_bid=90_400, best_ask=90_500),
            ASK,
            "of the upper limit 92,300",
        ),
        (dataclasses.replace(MARKET, best_ask=None), ASK, "no asks"),
        (dataclasses.replace(MARKET, best_bid=70_000, best_ask=71_000), ASK, "spread"),
        (MARKET, dataclasses.replace(ASK, limit_price=69_500), "+2.16% from the pick's 69,500"),
        (MARKET, dataclasses.replace(ASK, limit_price=72_500), "-2.07% from the pick's 72,500"),
    ],
)
def test_gate_3_price(market, ask, words):
    refused(3, words, market=market, ask=ask)


def test_the_first_gate_failed_is_the_one_named():
    stale = dataclasses.replace(ASK, generated_at=NOW - dt.timedelta(minutes=5))
    refused(1, "stale", ask=stale, account=gates.Account(cash_krw=None), market=gates.Market())
    refused(
        2,
        "cash unknown",
        account=gates.Account(cash_krw=None),
        market=gates.Market(price=71_000, price_at=NOW - dt.timedelta(minutes=1)),
    )


def test_a_sell_pick_sells_what_is_available_and_skips_the_risk_gate():
    ask = dataclasses.replace(ASK, side="SELL", qty=50, budget_krw=None)
    account = gates.Account(
        symbol_held_qty=30, symbol_available_qty=20, cash_krw=None, open_positions=99
    )
    decision = decide(ask=ask, account=account)
    # 71,000 − 0.5% = 70,645, up to the tick: 70,700; clamped to the 20 available
    assert decision == gates.Route(side="SELL", qty=20, limit_price=70_700, price=71_000)
    refused(1, "no shares of 005930 available", ask=ask, account=gates.Account())
    reducing = dataclasses.replace(account, trading_state="REDUCING")
    assert isinstance(decide(ask=ask, account=reducing), gates.Route)


def test_the_settings_model_and_the_limits_agree():
    assert gates.Limits.of(GateSettings()) == LIMITS


@given(
    price=st.integers(1_000, 2_000_000),
    budget=st.integers(10_000, 100_000_000),
    slippage=st.decimals("0", "10", places=2),
)
def test_an_entry_is_always_on_the_grid_within_the_limits_and_within_budget(
    price, budget, slippage
):
    lower, upper = krx.price_limits(price)
    market = gates.Market(price=price, upper_limit=upper, lower_limit=lower)
    ask = dataclasses.replace(ASK, budget_krw=budget)
    limit = gates.entry_price(ask, market, dataclasses.replace(LIMITS, entry_slippage_pct=slippage))
    assert krx.is_on_tick(limit) and limit <= upper
    assert limit >= min(krx.round_to_tick(price, direction="up"), upper)
    assert gates.size(ask, limit) * limit <= budget
