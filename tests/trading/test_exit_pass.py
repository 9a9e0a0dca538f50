"""The exit pass on PostgreSQL: rules fire through the ledger once, the exit state advances under
its lock, and a second pass over the same prices opens nothing more."""

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from core import clock
from execution import services
from execution.models import OrderIntent, Position
from market.models import BestPrice
from tests.support import child_database_url, direct_database_env
from tests.support.ledger import open_position
from trading.models import ExitProfile, PositionExitState, TakeProfitTier
from trading.services import exit_pass

pytestmark = pytest.mark.django_db(transaction=True)  # commits invalidate the cache

D = Decimal
NOW = dt.datetime(2026, 11, 24, 10, 30, tzinfo=clock.SEOUL)  # a Tuesday, mid-session


@pytest.fixture(autouse=True)
def fixed_clock():
    with clock.installed(clock.FixedClock(NOW)):
        yield


def managed(symbol, qty, profile, price=70_000):
    position = open_position(symbol, qty, price)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=qty)
    return position


def quote(symbol, price, at=NOW):
    BestPrice.objects.update_or_create(
        symbol=symbol,
        defaults={
            "price": price,
            "prev_close": 70_000,
            "lower_limit": 49_000,
            "upper_limit": 91_000,
            "source": "WS",
            "event_at": at,
        },
    )


def exits(position):
    return list(OrderIntent.objects.filter(position=position, side="SELL").order_by("created_at"))


def test_a_stop_loss_opens_one_exit_however_often_it_is_evaluated(new_symbol):
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 68_000)
    assert exit_pass().exits == 0  # 68,000 > 67,900
    quote(position.symbol, 67_900)
    assert exit_pass().exits == 1
    assert exit_pass().exits == 0  # everything is reserved already
    [intent] = exits(position)
    assert (intent.intent_type, intent.qty, intent.limit_price) == ("EXIT_STOP_LOSS", 10, 67_700)
    assert intent.event_at == NOW and "67,900" in intent.reason
    position.refresh_from_db()
    assert position.reserved_qty == 10


def test_exits_decided_in_one_pass_go_out_largest_loss_first(new_symbol, monkeypatch):
    """The open's burst: with KIS's rate the last exit leaves seconds after the first, so the
    deepest loss (KRW: cost minus price, times the shares sold) is opened, and sent, first."""
    import trading.services

    profile = ExitProfile.objects.create(name="burst", stop_loss_pct=D(3), gap_down_pct=None)
    positions = {qty: managed(new_symbol(), qty, profile) for qty in (5, 40, 10, 20)}
    for position in positions.values():
        quote(position.symbol, 67_000)  # each 3,000 KRW a share under its cost
    decide, order = trading.services.exit_decide, []

    def recorded(*, position_id, **kwargs):
        order.append(position_id)
        return decide(position_id=position_id, **kwargs)

    monkeypatch.setattr(trading.services, "exit_decide", recorded)
    assert exit_pass().exits == 4
    assert order == [positions[qty].pk for qty in (40, 20, 10, 5)]


def test_tiers_advance_once_and_the_high_water_mark_follows(new_symbol):
    profile = ExitProfile.objects.create(
        name="tp", gap_down_pct=None, trailing_activation_pct=D(5), trailing_pct=D(3)
    )
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(5), sell_pct=D(30))
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(10), sell_pct=D(30))
    position = managed(new_symbol(), 100, profile)
    quote(position.symbol, 72_000)
    assert exit_pass().exits == 0
    assert PositionExitState.objects.get(pk=position.pk).high_water_mark == 72_000
    quote(position.symbol, 74_000)  # +5.7 %: the first tier
    assert exit_pass().exits == 1 and exit_pass().exits == 0
    state = PositionExitState.objects.get(pk=position.pk)
    assert (state.tiers_done, state.high_water_mark) == (1, 74_000)
    quote(position.symbol, 71_700)  # 3 % under the high of 74,000: the trailing stop
    assert exit_pass().exits == 1
    assert [(i.intent_type, i.qty) for i in exits(position)] == [
        ("EXIT_TAKE_PROFIT", 30),
        ("EXIT_TRAILING", 70),
    ]


def test_positions_without_a_price_or_a_profile_are_left_alone(new_symbol):
    profile = ExitProfile.objects.create(name="p", stop_loss_pct=D(3))
    priced = managed(new_symbol(), 5, profile)
    managed(new_symbol(), 5, profile)  # no price yet
    unmanaged = open_position(new_symbol(), 5, 70_000)
    quote(priced.symbol, 60_000)
    quote(unmanaged.symbol, 60_000)
    result = exit_pass()
    assert (result.evaluated, result.exits, result.skipped_no_price) == (1, 1, 1)
    assert exits(unmanaged) == []


def test_gap_down_fires_on_the_opening_trade_only(new_symbol):
    profile = ExitProfile.objects.create(name="gap")  # gap_down_pct defaults to 5 %
    position = managed(new_symbol(), 10, profile)
    opening = dt.datetime(2026, 11, 24, 9, 0, 0, 300_000, tzinfo=clock.SEOUL)
    with clock.installed(clock.FixedClock(opening)):
        quote(position.symbol, 66_500, at=opening)  # ≤ 70,000 × 0.95
        assert exit_pass().exits == 1
    assert exits(position)[0].intent_type == "GAP_DOWN"
    other = managed(new_symbol(), 10, profile)
    quote(other.symbol, 66_500)  # 10:30: not the opening trade, and no stop loss set
    assert exit_pass(symbols=[other.symbol]).exits == 0
    assert Position.objects.get(pk=other.pk).reserved_qty == 0


def test_time_rules_wait_for_the_regular_session(new_symbol):
    """Held too long, but before the open nothing is sold; in the session it is sold on the
    first trade (an order placed at 08:58 would only wait for the opening trade)."""
    profile = ExitProfile.objects.create(name="hold", gap_down_pct=None, max_holding_days=3)
    position = managed(new_symbol(), 10, profile)
    Position.objects.filter(pk=position.pk).update(opened_at=NOW - dt.timedelta(days=14))
    before_open = NOW.replace(hour=8, minute=58, second=30)
    quote(position.symbol, 70_000, at=before_open)
    with clock.installed(clock.FixedClock(before_open)):
        assert exit_pass().exits == 0
    opened = NOW.replace(hour=9, minute=0, second=1)
    with clock.installed(clock.FixedClock(opened)):
        assert exit_pass().exits == 0  # a quote from before the open decides nothing
        quote(position.symbol, 70_100, at=opened)  # the opening trade
        assert exit_pass().exits == 1
    [intent] = exits(position)
    assert intent.intent_type == "EXIT_MAX_HOLD"


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2026, 11, 24, 15, 30, 0, tzinfo=clock.SEOUL),  # the close
        dt.datetime(2026, 11, 24, 15, 50, tzinfo=clock.SEOUL),  # after-hours at the close price
        dt.datetime(2026, 11, 24, 17, 0, tzinfo=clock.SEOUL),  # after-hours single price
        dt.datetime(2026, 11, 24, 23, 0, tzinfo=clock.SEOUL),  # the night
        dt.datetime(2026, 11, 25, 8, 45, tzinfo=clock.SEOUL),  # the opening auction
        dt.datetime(2026, 11, 28, 11, 0, tzinfo=clock.SEOUL),  # Saturday
    ],
    ids=["close", "after-close-price", "after-single-price", "night", "auction", "saturday"],
)
def test_no_exit_is_decided_where_its_order_cannot_trade(new_symbol, when):
    """A price under every stop outside the phases where a limit order trades: nothing is
    decided, no mark moves; the first pass once trading resumes decides on the price then."""
    profile = ExitProfile.objects.create(
        name="all",
        stop_loss_pct=D(3),
        gap_down_pct=None,
        trailing_activation_pct=D(1),
        trailing_pct=D(1),
    )
    position = managed(new_symbol(), 10, profile)
    with clock.installed(clock.FixedClock(when.astimezone(dt.UTC))):  # a server's clock
        quote(position.symbol, 60_000, at=when)
        assert exit_pass().exits == 0
        assert exit_pass(symbols=[position.symbol]).exits == 0
    assert exits(position) == []
    assert PositionExitState.objects.get(pk=position.pk).high_water_mark is None
    resumed = dt.datetime(2026, 11, 30, 9, 0, 5, tzinfo=clock.SEOUL)  # the next Monday's open
    with clock.installed(clock.FixedClock(resumed)):
        quote(position.symbol, 61_000, at=resumed)
        assert exit_pass().exits == 1
    [intent] = exits(position)
    assert intent.intent_type == "EXIT_STOP_LOSS" and "61,000" in intent.reason


def test_in_the_session_a_price_from_before_the_open_decides_nothing(new_symbol):
    """At the open a stop is decided on the session's first trade, never on a quote or the
    auction's expected price taken before it (that trade may be the opening one: GAP_DOWN)."""
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3))  # gap 5 % by default
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 66_000, at=NOW.replace(hour=8, minute=59, second=55))
    opened = NOW.replace(hour=9, minute=0, second=0, microsecond=400_000)
    with clock.installed(clock.FixedClock(opened)):
        assert exit_pass().exits == 0
        assert exit_pass(symbols=[position.symbol]).exits == 0
        quote(position.symbol, 66_000, at=opened)  # the opening trade
        assert exit_pass().exits == 1
    [intent] = exits(position)
    assert intent.intent_type == "GAP_DOWN"


def test_a_profile_may_let_its_stop_join_the_opening_auction(new_symbol):
    auction = dt.datetime(2026, 11, 25, 8, 45, tzinfo=clock.SEOUL)
    early = ExitProfile.objects.create(
        name="early", stop_loss_pct=D(3), gap_down_pct=None, stop_in_opening_auction=True
    )
    late = ExitProfile.objects.create(name="late", stop_loss_pct=D(3), gap_down_pct=None)
    tiers = ExitProfile.objects.create(
        name="tiers", gap_down_pct=None, stop_in_opening_auction=True
    )
    TakeProfitTier.objects.create(profile=tiers, gain_pct=D(5), sell_pct=D(50))
    a, b, c = (managed(new_symbol(), 10, p) for p in (early, late, tiers))
    with clock.installed(clock.FixedClock(auction)):
        for position, price in ((a, 60_000), (b, 60_000), (c, 90_000)):
            quote(position.symbol, price, at=auction)  # the auction's expected prices
        assert exit_pass().exits == 1
    [intent] = exits(a)
    assert intent.intent_type == "EXIT_STOP_LOSS" and "opening auction" in intent.reason
    assert exits(b) == [] and exits(c) == []  # a take-profit waits for trades


@pytest.mark.parametrize("screened", [True, False], ids=["one statement", "under the locks"])
def test_only_a_profile_that_allows_nextrade_sells_in_its_after_market(new_symbol, screened):
    """16:10: KRX is closed, Nextrade's after-market trades. The profile that allows Nextrade
    exits sells there, as a limit order to NXT; the other decides nothing, and a price from
    before the after-market decides nothing either."""
    evening = dt.datetime(2026, 11, 25, 16, 10, tzinfo=clock.SEOUL)
    nxt = ExitProfile.objects.create(
        name="nxt", stop_loss_pct=D(3), gap_down_pct=None, nxt_exits=True
    )
    krx = ExitProfile.objects.create(name="krx", stop_loss_pct=D(3), gap_down_pct=None)
    a, b, stale = (
        managed(new_symbol(), 10, nxt),
        managed(new_symbol(), 10, krx),
        managed(new_symbol(), 10, nxt),
    )
    with clock.installed(clock.FixedClock(evening)):
        if screened:
            for position in (a, b):
                quote(position.symbol, 70_000, at=evening)
            assert exit_pass(symbols=[a.symbol]).exits == 0  # the cache warmed
        for position in (a, b):
            quote(position.symbol, 60_000, at=evening)
        quote(stale.symbol, 60_000, at=evening.replace(hour=15, minute=35))  # before 15:40
        assert exit_pass(symbols=[a.symbol] if screened else None).exits == 1
        assert exit_pass().exits == 0
    [intent] = exits(a)
    assert (intent.intent_type, intent.venue) == ("EXIT_STOP_LOSS", "NXT")
    assert intent.limit_price == 59_800  # a limit order: Nextrade takes no market order
    assert exits(b) == [] and exits(stale) == []
    assert services.order_open(intent_id=intent.pk).venue == "NXT"


def test_a_stop_at_the_lower_limit_is_placed_there_once_and_alerted(new_symbol):
    from execution.models import Alert

    profile = ExitProfile.objects.create(name="ll", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 49_000)  # the lower limit: two ticks below would be refused
    assert exit_pass().exits == 1
    [intent] = exits(position)
    assert intent.limit_price == 49_000
    [alert] = Alert.objects.filter(kind="EXIT", subject=position.symbol)
    assert "lower limit 49,000" in alert.message and "하한가" in alert.message
    quote(position.symbol, 49_000, at=NOW + dt.timedelta(seconds=1))
    assert exit_pass().exits == 0  # placed once: its shares are reserved
    assert Alert.objects.filter(kind="EXIT", subject=position.symbol).count() == 1


@pytest.mark.parametrize("tick", [True, False], ids=["a tick", "the full pass"])
def test_a_paused_position_decides_nothing_until_resumed(new_symbol, tick):
    from trading.services import exit_pause

    profile = ExitProfile.objects.create(name="p", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 70_000)
    assert exit_pass(symbols=[position.symbol]).exits == 0  # its book cached, unpaused
    exit_pause(position_id=position.pk, paused=True, by="desk")
    quote(position.symbol, 60_000)
    assert exit_pass(symbols=[position.symbol] if tick else None).exits == 0
    assert exits(position) == []
    exit_pause(position_id=position.pk, paused=False, by="desk")
    assert exit_pass(symbols=[position.symbol] if tick else None).exits == 1


def test_pausing_what_the_engine_does_not_manage_is_refused(new_symbol):
    from execution.exceptions import InvalidInput
    from tests.support.ledger import open_position
    from trading.services import exit_pause

    unmanaged = open_position(new_symbol(), 10)
    with pytest.raises(InvalidInput):
        exit_pause(position_id=unmanaged.pk, paused=True, by="desk")
    with pytest.raises(InvalidInput):
        exit_pause(position_id="7", paused=True, by="desk")


def test_no_exit_is_decided_between_krx_close_and_nextrades_after_market(new_symbol):
    """15:35: KRX's after-hours closing-price session, Nextrade between its sessions."""
    nxt = ExitProfile.objects.create(
        name="nxt2", stop_loss_pct=D(3), gap_down_pct=None, nxt_exits=True
    )
    position = managed(new_symbol(), 10, nxt)
    between = dt.datetime(2026, 11, 25, 15, 35, tzinfo=clock.SEOUL)
    with clock.installed(clock.FixedClock(between)):
        quote(position.symbol, 60_000, at=between)
        assert exit_pass().exits == 0
    assert exits(position) == []


def test_an_exit_on_what_the_screen_saw_is_one_statement(new_symbol):
    """With the cache warm and the rows as the screen saw them, the exit (its locks, intent,
    reservation and exit state) is one statement: outside a transaction, its own commit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    profile = ExitProfile.objects.create(name="sl1", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 70_000)
    assert exit_pass(symbols=[position.symbol]).exits == 0  # the book and profiles cached
    quote(position.symbol, 67_000)
    with CaptureQueriesContext(connection) as captured:
        assert exit_pass(symbols=[position.symbol]).exits == 1
    statements = [q["sql"] for q in captured.captured_queries]
    assert [s.split()[0] for s in statements] == ["SELECT", "WITH"], statements  # price, exit
    assert "FOR UPDATE" in statements[1]
    [intent] = exits(position)
    assert (intent.intent_type, intent.qty, intent.trigger_price) == ("EXIT_STOP_LOSS", 10, 67_000)
    assert Position.objects.get(pk=position.pk).reserved_qty == 10


def test_a_screen_that_saw_stale_rows_is_decided_again_under_the_locks(new_symbol):
    """The cached book says 10 shares are available; the database, changed behind the cache's
    back, says 6. The one statement writes nothing, and the exit decided under the locks
    sells the 6 that are there."""
    from django.db import connection

    profile = ExitProfile.objects.create(name="sl2", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 70_000)
    assert exit_pass(symbols=[position.symbol]).exits == 0  # cached: 10 available
    with connection.cursor() as cursor:  # no signal: the cache still says 10
        cursor.execute(
            f"UPDATE {Position._meta.db_table} SET reserved_qty = 4 WHERE id = %s", [position.pk]
        )
    quote(position.symbol, 67_000)
    assert exit_pass(symbols=[position.symbol]).exits == 1
    [intent] = exits(position)
    assert intent.qty == 6
    assert Position.objects.get(pk=position.pk).reserved_qty == 10


def test_a_tier_on_what_the_screen_saw_advances_the_exit_state_in_the_same_statement(new_symbol):
    profile = ExitProfile.objects.create(name="tp1", gap_down_pct=None)
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(5), sell_pct=D(40))
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 70_000)
    assert exit_pass(symbols=[position.symbol]).exits == 0
    quote(position.symbol, 74_000)
    assert exit_pass(symbols=[position.symbol]).exits == 1
    assert exit_pass(symbols=[position.symbol]).exits == 0  # the tier is done
    [intent] = exits(position)
    assert (intent.intent_type, intent.qty) == ("EXIT_TAKE_PROFIT", 4)
    assert PositionExitState.objects.get(pk=position.pk).tiers_done == 1


def test_pricesync_evaluates_a_trade_at_the_cached_limits_before_writing_it(new_symbol):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.pricesync import on_price

    profile = ExitProfile.objects.create(name="sl3", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    symbol = position.symbol
    # A REST quote: its limits are written first, and cached with the price.
    assert (
        on_price(
            symbol=symbol,
            price=70_000,
            at=NOW - dt.timedelta(seconds=1),
            source="REST",
            prev_close=70_000,
            upper_limit=91_000,
            lower_limit=49_000,
        )
        == 0
    )
    with CaptureQueriesContext(connection) as captured:
        assert on_price(symbol=symbol, price=67_000, at=NOW, source="WS") == 1
    # Two statements: the exit, then the price, which carries the last minute's bar with it.
    [exit_sql, price_sql] = [q["sql"] for q in captured.captured_queries]
    assert exit_sql.startswith("WITH") and "prices_best" not in exit_sql
    assert "INSERT INTO prices_best" in price_sql and "INSERT INTO prices_bar" in price_sql
    row = BestPrice.objects.get(symbol=symbol)
    assert (row.price, row.lower_limit, row.upper_limit, row.source) == (
        67_000,
        49_000,
        91_000,
        "WS",
    )
    [intent] = exits(position)
    assert (intent.trigger_price, intent.event_at) == (67_000, NOW)


def test_pricesync_writes_first_a_trade_older_than_the_cached_price(new_symbol):
    """An older trade after a fresher price is never evaluated: the upsert keeps the fresher."""
    from trading.pricesync import on_price

    profile = ExitProfile.objects.create(name="sl4", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    assert (
        on_price(
            symbol=position.symbol,
            price=70_000,
            at=NOW,
            source="REST",
            prev_close=70_000,
            upper_limit=91_000,
            lower_limit=49_000,
        )
        == 0
    )
    assert (
        on_price(
            symbol=position.symbol, price=60_000, at=NOW - dt.timedelta(seconds=2), source="WS"
        )
        == 0
    )
    assert BestPrice.objects.get(symbol=position.symbol).price == 70_000
    assert exits(position) == []


LOCKED_TICKS = """
import json, time, datetime as dt, django
django.setup()
from market.feed import price_handle
from trading.pricesync import on_price
at = dt.datetime.fromisoformat({at!r})
answers = []
for symbol in {symbols!r}:
    started = time.monotonic()
    answers.append([price_handle(on_price, symbol=symbol, price=67_000, at=at, source="WS"),
                    time.monotonic() - started])
print(json.dumps(answers))
"""


def test_a_lock_left_held_costs_pricesync_one_tick_not_its_thread(new_symbol):
    """pricesync as deployed (straight to PostgreSQL, DATABASE_LOCK_TIMEOUT_MS set): a session
    that holds a position's row and never lets go makes that position's trade fail after the
    lock timeout, logged and dropped, and the next symbol's trade is evaluated and exits."""
    profile = ExitProfile.objects.create(name="sl-locked", stop_loss_pct=D(3), gap_down_pct=None)
    stuck, free = managed(new_symbol(), 10, profile), managed(new_symbol(), 10, profile)
    for position in (stuck, free):
        quote(position.symbol, 70_000, at=NOW - dt.timedelta(seconds=1))
    child = LOCKED_TICKS.format(at=NOW.isoformat(), symbols=[stuck.symbol, free.symbol])
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "aegis.settings",
        "LOG_LEVEL": "WARNING",
        "DATABASE_LOCK_TIMEOUT_MS": "300",
        "AEGIS_CLOCK_START": NOW.isoformat(),
    }
    with psycopg.connect(child_database_url("DATABASE_DIRECT_URL")) as holder:
        holder.execute("SELECT 1 FROM execution_position WHERE id = %s FOR UPDATE", [stuck.pk])
        done = subprocess.run(
            [sys.executable, "-c", child],
            env=env | direct_database_env(),
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        holder.rollback()
    assert done.returncode == 0, done.stderr[-3000:]
    (stuck_exits, stuck_s), (free_exits, _) = json.loads(done.stdout.strip().splitlines()[-1])
    assert (stuck_exits, free_exits) == (0, 1)
    assert 0.3 <= stuck_s < 30  # the lock timeout, not the holder, ended the wait
    assert "pricesync.db_error" in done.stderr and "lock timeout" in done.stderr
    assert "db.reconnect" not in done.stderr  # a live connection: not waited on twice
    assert exits(stuck) == [] and len(exits(free)) == 1
    stuck.refresh_from_db()
    assert stuck.reserved_qty == 0  # nothing half-written
