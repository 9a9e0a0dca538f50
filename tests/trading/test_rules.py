"""The exit rules as pure logic: each rule at its threshold, their precedence, tiers after partial
fills, trailing after a tier, limit prices on the tick grid at the ±30 % bounds."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import SEOUL
from market import krx
from trading.rules import (
    Holding,
    Rules,
    Tier,
    Trade,
    evaluate,
    exit_limit_price,
    gap_threshold,
    screen_band,
    tier_qty,
)

D = Decimal
AT = dt.datetime(2026, 11, 24, 10, 0, tzinfo=SEOUL)
COST = D(70_000)


def hold(qty=100, available=None, **kw) -> Holding:
    return Holding(
        qty=qty,
        available=qty if available is None else available,
        avg_price=kw.pop("avg_price", COST),
        **kw,
    )


def at(price, **kw) -> Trade:
    return Trade(price=price, at=kw.pop("at", AT), **kw)


def test_stop_loss_fires_at_its_threshold_and_not_above():
    rules = Rules(stop_loss_pct=D(3))  # 70,000 × 0.97 = 67,900
    assert evaluate(rules, hold(), at(68_000)).decision is None
    decision = evaluate(rules, hold(), at(67_900)).decision
    assert (decision.rule, decision.qty, decision.price, decision.at) == (
        "EXIT_STOP_LOSS",
        100,
        67_900,
        AT,
    )
    assert "67,900" in decision.reason and "3" in decision.reason


def test_an_exit_sells_only_what_is_available():
    decision = evaluate(Rules(stop_loss_pct=D(3)), hold(100, available=40), at(60_000)).decision
    assert decision.qty == 40
    assert evaluate(Rules(stop_loss_pct=D(3)), hold(100, available=0), at(60_000)).decision is None


def test_gap_down_only_on_the_opening_trade_and_with_the_right_threshold():
    rules = Rules(gap_down_pct=D(5))
    # previous close 72,000: threshold 68,400 (the review's close × −0.05 would be −3,600)
    assert gap_threshold(72_000, D(5)) == D(68_400)
    opening = dict(prev_close=72_000, opening=True)
    assert evaluate(rules, hold(), at(68_500, **opening)).decision is None
    fired = evaluate(rules, hold(), at(68_400, **opening)).decision
    assert fired.rule == "GAP_DOWN" and fired.qty == 100
    assert evaluate(rules, hold(), at(60_000, prev_close=72_000)).decision is None  # mid-session
    # The threshold computed before the bell is used as given.
    assert evaluate(rules, hold(), at(68_400, opening=True), gap_down_at=D(68_000)).decision is None


def test_precedence_gap_down_then_stop_loss_then_time_then_max_hold():
    rules = Rules(
        stop_loss_pct=D(3),
        gap_down_pct=D(5),
        time_exit_at=dt.time(15, 0),
        max_holding_days=3,
        trailing_activation_pct=D(1),
        trailing_pct=D(1),
    )
    late = AT.replace(hour=15, minute=10)
    assert (
        evaluate(
            rules, hold(held_days=5), at(60_000, prev_close=72_000, opening=True, at=late)
        ).decision.rule
        == "GAP_DOWN"
    )
    assert evaluate(rules, hold(held_days=5), at(60_000, at=late)).decision.rule == "EXIT_STOP_LOSS"
    assert evaluate(rules, hold(held_days=5), at(70_000, at=late)).decision.rule == "EXIT_TIME"
    assert evaluate(rules, hold(held_days=3), at(70_000)).decision.rule == "EXIT_MAX_HOLD"
    assert evaluate(rules, hold(held_days=2), at(70_000)).decision is None


def test_trailing_arms_at_its_activation_and_follows_the_high():
    rules = Rules(trailing_activation_pct=D(5), trailing_pct=D(2))  # arms at 73,500
    state = hold()
    for price in (71_000, 73_000, 72_000):  # never armed: no exit however it falls
        ev = evaluate(rules, state, at(price))
        assert ev.decision is None
        state = hold(high_water_mark=ev.high_water_mark)
    assert state.high_water_mark == 73_000
    ev = evaluate(rules, state, at(75_000))
    assert ev.decision is None and ev.high_water_mark == 75_000
    state = hold(high_water_mark=75_000)
    assert evaluate(rules, state, at(73_600)).decision is None  # 75,000 × 0.98 = 73,500
    decision = evaluate(rules, state, at(73_500)).decision
    assert decision.rule == "EXIT_TRAILING" and decision.qty == 100


def test_tiers_sell_shares_of_the_peak_qty_even_after_partial_fills():
    rules = Rules(tiers=(Tier(D(5), D(30)), Tier(D(10), D(30)), Tier(D(20), D(100))))
    # Bought 100, 40 already sold by the first tier: the second sells 30 more of the peak 100.
    ev = evaluate(rules, hold(60, peak_qty=100, tiers_done=1), at(77_000))
    assert (ev.decision.rule, ev.decision.qty, ev.tiers_done) == ("EXIT_TAKE_PROFIT", 30, 2)
    # The entry filled in parts: 40 of 100 so far. The peak follows what is held.
    ev = evaluate(rules, hold(40, peak_qty=0), at(73_500))
    assert (ev.decision.qty, ev.peak_qty, ev.tiers_done) == (12, 40, 1)


def test_a_jump_past_several_tiers_sells_them_together():
    rules = Rules(tiers=(Tier(D(5), D(25)), Tier(D(10), D(25)), Tier(D(15), D(25))))
    ev = evaluate(rules, hold(100, peak_qty=100), at(78_000))  # +11.4 %
    assert (ev.decision.qty, ev.tiers_done) == (50, 2)
    assert "+5" in ev.decision.reason and "+10" in ev.decision.reason


def test_trailing_after_a_tier_sells_the_rest():
    rules = Rules(tiers=(Tier(D(5), D(50)),), trailing_activation_pct=D(5), trailing_pct=D(3))
    ev = evaluate(rules, hold(100, peak_qty=100), at(74_000))
    assert ev.decision.rule == "EXIT_TAKE_PROFIT" and ev.decision.qty == 50
    after = hold(50, peak_qty=100, tiers_done=1, high_water_mark=ev.high_water_mark)
    ev = evaluate(rules, after, at(80_000))
    assert ev.decision is None and ev.high_water_mark == 80_000
    decision = evaluate(
        rules, hold(50, peak_qty=100, tiers_done=1, high_water_mark=80_000), at(77_600)
    ).decision
    assert (decision.rule, decision.qty) == ("EXIT_TRAILING", 50)


def test_tier_qty_never_drifts_and_sells_at_least_one_share():
    tiers = (Tier(D("33.33"), D("33.33")), Tier(D("66.66"), D("33.33")), Tier(D(100), D("33.34")))
    parts = [tier_qty(7, tiers, n, n + 1) for n in range(3)]
    assert sum(parts) == 7 and all(p >= 1 for p in parts)
    assert tier_qty(1, (Tier(D(5), D(10)),), 0, 1) == 1


def test_exit_limit_price_examples_at_the_bounds():
    assert exit_limit_price(70_000, lower_limit=None) == 69_800  # two 100-KRW ticks
    assert exit_limit_price(50_000, lower_limit=None) == 49_900  # crosses into the 50-KRW band
    assert exit_limit_price(50_000, lower_limit=None, ticks=3) == 49_850
    # At the lower limit (−30 %) the limit stays there: below it KRX refuses the order.
    lower, _ = krx.price_limits(72_000)
    assert exit_limit_price(lower, lower_limit=lower) == lower
    assert exit_limit_price(3, lower_limit=None) == 1


@given(price=st.integers(5, 3_000_000), ticks=st.integers(0, 5), etf=st.booleans())
def test_exit_limit_prices_are_on_the_grid_at_or_below_the_price(price, ticks, etf):
    limit = exit_limit_price(price, lower_limit=None, ticks=ticks, etf=etf)
    assert krx.is_on_tick(limit, etf=etf) and 0 < limit <= price


@given(base=st.integers(1_000, 2_000_000), move=st.floats(-0.3, 0.3), etf=st.booleans())
def test_exit_limit_prices_stay_within_the_days_limits(base, move, etf):
    lower, upper = krx.price_limits(base, etf=etf)
    price = krx.round_to_tick(
        max(lower, min(upper, int(base * (1 + move)))), direction="down", etf=etf
    )
    price = max(price, lower)
    limit = exit_limit_price(price, lower_limit=lower, etf=etf)
    assert lower <= limit <= price <= upper and krx.is_on_tick(limit, etf=etf)


holdings = st.builds(
    Holding,
    qty=st.integers(0, 10_000),
    available=st.integers(0, 10_000),
    avg_price=st.integers(1_000, 500_000).map(D),
    held_days=st.integers(0, 30),
    high_water_mark=st.none() | st.integers(1_000, 700_000),
    peak_qty=st.integers(0, 10_000),
    tiers_done=st.integers(0, 3),
)
rule_sets = st.builds(
    Rules,
    stop_loss_pct=st.none() | st.decimals("0.5", "30", places=2),
    tiers=st.just((Tier(D(3), D(30)), Tier(D(6), D(30)), Tier(D(10), D(40)))),
    gap_down_pct=st.none() | st.decimals("1", "30", places=2),
    max_holding_days=st.none() | st.integers(1, 30),
)


@given(
    rules=rule_sets,
    holding=holdings,
    price=st.integers(1_000, 700_000),
    opening=st.booleans(),
    prev_close=st.none() | st.integers(1_000, 700_000),
)
def test_no_decision_ever_sells_more_than_is_available(rules, holding, price, opening, prev_close):
    holding = Holding(**{**holding.__dict__, "available": min(holding.available, holding.qty)})
    ev = evaluate(rules, holding, at(price, opening=opening, prev_close=prev_close))
    assert ev.high_water_mark >= price and ev.peak_qty >= holding.qty
    assert ev.tiers_done >= holding.tiers_done
    if ev.decision is not None:
        assert 0 < ev.decision.qty <= holding.available
        assert ev.decision.limit_price <= price
    if holding.available == 0:
        assert ev.decision is None


@given(
    cost=st.integers(1_000, 500_000),
    pct=st.decimals("0.5", "30", places=2),
    price=st.integers(500, 600_000),
)
def test_stop_loss_fires_exactly_at_or_below_its_threshold(cost, pct, price):
    decision = evaluate(Rules(stop_loss_pct=pct), hold(avg_price=D(cost)), at(price)).decision
    assert (decision is not None) == (D(price) <= D(cost) * (100 - pct) / 100)


band_rules = st.builds(
    lambda stop, tiers, trail: Rules(
        stop_loss_pct=stop,
        tiers=tiers,
        trailing_activation_pct=trail and trail[0],
        trailing_pct=trail and trail[1],
    ),
    st.none() | st.decimals("0.5", "30", places=2),
    st.sampled_from(
        [(), (Tier(D(3), D(30)), Tier(D(6), D(30)), Tier(D(10), D(40))), (Tier(D("0.5"), D(50)),)]
    ),
    st.none() | st.tuples(st.decimals("0.5", "20", places=2), st.decimals("0.5", "15", places=2)),
)


def _edges(rules: Rules, holding: Holding) -> list[int]:
    """Every price where some rule changes its mind, for the search to probe around."""
    cost, edges = holding.avg_price, []
    if rules.stop_loss_pct is not None:
        edges.append(cost * (100 - rules.stop_loss_pct) / 100)
    if rules.trailing_pct is not None and holding.high_water_mark is not None:
        edges += [
            D(holding.high_water_mark) * (100 - rules.trailing_pct) / 100,
            cost * (100 + rules.trailing_activation_pct) / 100,
            holding.high_water_mark,
        ]
    edges += [cost * (100 + t.gain_pct) / 100 for t in rules.tiers]
    return [int(e) for e in edges]


@settings(max_examples=1000)
@given(
    rules=band_rules, holding=holdings, cost=st.decimals("1000", "500000", places=4), data=st.data()
)
def test_a_quiet_price_never_decides_nor_moves_the_state_that_matters(rules, holding, cost, data):
    """The screen's promise: inside the band, the exact evaluation has nothing to do."""
    marks = st.floats(1.0, 1.5).map(lambda up: int(cost * D(up)))
    if rules.trailing_pct is not None:  # and marks right at the trailing stop's activation
        armed_at = int(cost * (100 + rules.trailing_activation_pct) / 100)
        marks |= st.integers(armed_at - 1, armed_at + 1)
    mark = data.draw(st.none() | marks)
    holding = Holding(
        **{
            **holding.__dict__,
            "available": min(holding.available, holding.qty),
            "avg_price": cost,
            "high_water_mark": mark,
            "peak_qty": max(holding.peak_qty, holding.qty),
        }
    )  # else never quiet
    edges = _edges(rules, holding)
    near = (
        st.sampled_from(edges).flatmap(lambda e: st.integers(e - 1, e + 2))
        if edges
        else st.nothing()
    )
    price = max(1, data.draw(near | st.integers(int(cost * D("0.6")), int(cost * D("1.4")))))
    if not screen_band(rules, holding).quiet(price):
        return
    ev = evaluate(rules, holding, at(price))
    assert ev.decision is None
    assert ev.peak_qty == holding.peak_qty and ev.tiers_done == holding.tiers_done
    if rules.trailing_pct is not None:
        assert ev.high_water_mark == holding.high_water_mark


def test_the_band_sits_one_krw_inside_each_threshold():
    rules = Rules(stop_loss_pct=D(3), tiers=(Tier(D(10), D(50)),))
    band = screen_band(rules, hold(peak_qty=100))  # stop 67,900, tier 77,000
    assert not band.quiet(67_900) and not band.quiet(67_901)
    assert band.quiet(67_902) and band.quiet(76_998)
    assert not band.quiet(76_999) and not band.quiet(77_000)
    trailing = Rules(trailing_activation_pct=D(5), trailing_pct=D(3))
    armed = screen_band(
        trailing, hold(peak_qty=100, high_water_mark=80_000)
    )  # 80,000 × 0.97 = 77,600
    assert not armed.quiet(77_601) and armed.quiet(77_602) and armed.quiet(80_000)
    assert not armed.quiet(80_001)  # a new high moves the mark the trail follows
    assert not screen_band(trailing, hold(peak_qty=100)).quiet(
        70_000
    )  # no mark yet: evaluate, keep one
    assert not screen_band(rules, hold(qty=100, peak_qty=50)).quiet(70_000)


def test_rules_refuse_inconsistent_settings():
    with pytest.raises(ValueError):
        Rules(tiers=(Tier(D(10), D(50)), Tier(D(5), D(50))))
    with pytest.raises(ValueError):
        Rules(trailing_pct=D(2))


def test_an_auction_price_decides_only_a_stop_its_profile_lets_join_the_auction():
    stop = Rules(
        stop_loss_pct=D(3),
        trailing_activation_pct=D(1),
        trailing_pct=D(1),
        tiers=(Tier(D(5), D(50)),),
    )
    joined = Rules(stop_loss_pct=D(3), tiers=(Tier(D(5), D(50)),), opening_auction_stop=True)
    low, high = at(60_000, auction=True), at(80_000, auction=True)
    assert evaluate(stop, hold(), low).decision is None
    assert evaluate(joined, hold(), low).decision.rule == "EXIT_STOP_LOSS"
    assert evaluate(joined, hold(), high).decision is None  # a tier waits for a trade
    # An expected price is not a trade: no mark moves on it.
    assert evaluate(stop, hold(high_water_mark=75_000), high).high_water_mark == 75_000
    assert evaluate(joined, hold(), high).tiers_done == 0


def test_a_vi_auction_price_decides_any_profiles_stop_and_nothing_else():
    """A volatility interruption's expected price: every profile's stop loss decides on it (the
    engine holds back the profiles that wait), nothing else does, and no mark moves."""
    rules = Rules(
        stop_loss_pct=D(3),
        trailing_activation_pct=D(1),
        trailing_pct=D(1),
        tiers=(Tier(D(5), D(50)),),
    )
    low = at(60_000, auction=True, vi=True)
    decided = evaluate(rules, hold(), low).decision
    assert decided.rule == "EXIT_STOP_LOSS" and "volatility interruption" in decided.reason
    high = at(80_000, auction=True, vi=True)
    assert evaluate(rules, hold(), high).decision is None  # a tier waits for a trade
    assert evaluate(rules, hold(high_water_mark=75_000), high).high_water_mark == 75_000
    armed = hold(high_water_mark=90_000)  # the trail (89,100) is crossed, but not by a trade
    assert (
        evaluate(Rules(trailing_activation_pct=D(1), trailing_pct=D(1)), armed, low).decision
        is None
    )
