"""The end of a trading day in the ledger (services/day_end.py), against the KIS simulator on
real PostgreSQL: a day order left working at the close ends, its shares released, whatever KIS
shows later; an order never sent is withdrawn; the next trading waits for a reconciliation,
which the day end runs at once."""

import datetime as dt

import pytest

from core import clock
from execution import services
from execution.models import Notification, Order, Position, Reconciliation, TradingState
from execution.services.day_end import day_end
from execution.services.trading_state import trading_state_get
from market.bars import bar_write
from market.models import PriceBar
from tests.support.fills import held, send
from tests.support.ledger import key
from trading.services import day_end_run, last_closed_day

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("trading_hours")]


def test_day_orders_end_at_the_close_and_trading_waits_for_a_reconciliation(
    kis_sim, broker, trading_hours
):
    position = held(kis_sim, broker)
    working = send(
        services.exit_intent_open(
            position_id=position.pk,
            qty=4,
            limit_price=72_000,
            intent_type="EXIT_TAKE_PROFIT",
            idempotency_key=key(),
        ),
        broker,
    )  # above the market: still working at the close
    unsent = services.exit_intent_open(
        position_id=position.pk,
        qty=3,
        limit_price=72_500,
        intent_type="EXIT_TAKE_PROFIT",
        idempotency_key=key(),
    )
    never_sent = services.order_open(intent_id=unsent.pk)
    assert Position.objects.get(pk=position.pk).reserved_qty == 7
    today = trading_hours.now().astimezone(clock.SEOUL).date()
    TradingState.objects.update_or_create(
        pk=1, defaults={"day_ended_for": today - dt.timedelta(days=1)}
    )

    before_close = dt.datetime.combine(today, dt.time(15, 29), clock.SEOUL)
    with clock.installed(clock.FixedClock(before_close)):
        assert last_closed_day(clock.now()).day < today
        # Today's orders are today's until the close.
        assert day_end_run(broker=broker)["KRX"]["ended"] == 0
    assert Order.objects.get(pk=working.pk).status == "SUBMITTED"

    after_close = dt.datetime.combine(today, dt.time(15, 31, 5), clock.SEOUL)
    for days in (8, 6):  # the desk's minute bars: a week is kept
        bar_write((position.symbol, after_close - dt.timedelta(days=days), 1, 1, 1, 1))
    # The outbox: sent and given-up rows are kept a month, pending ones until they are sent.
    for n, (days, status) in enumerate(
        [(31, "SENT"), (31, "FAILED"), (31, "PENDING"), (29, "SENT")]
    ):
        Notification.objects.create(
            kind="fill",
            channel="slack",
            event_key=f"old-{n}",
            text="-",
            status=status,
            next_attempt_at=after_close,
            created_at=after_close - dt.timedelta(days=days),
        )
    with clock.installed(clock.FixedClock(after_close.astimezone(dt.UTC))):  # a UTC server
        counts = day_end_run(broker=broker)["KRX"]
        assert (counts["ended"], counts["withdrawn"], counts["gate_closed"]) == (1, 1, 1)
        assert counts["bars_pruned"] == 1
        assert PriceBar.objects.filter(symbol=position.symbol).count() == 1
        assert counts["notifications_pruned"] == 2
        kept = Notification.objects.filter(event_key__startswith="old-")
        assert sorted(kept.values_list("event_key", flat=True)) == ["old-2", "old-3"]
        working = Order.objects.get(pk=working.pk)
        assert working.status == "CANCELLED"
        assert f"close of {today:%Y-%m-%d}" in working.reject_reason
        assert Order.objects.get(pk=never_sent.pk).status == "REJECTED"
        position = Position.objects.get(pk=position.pk)
        assert (position.qty, position.reserved_qty) == (10, 0)  # every share free again
        assert TradingState.objects.get().day_ended_for == today
        # The gate closed, and the day end's own reconciliation opened it again at once:
        # Nextrade's after-market opens ten minutes after KRX's close.
        assert counts["reconciled"] == "MATCHED"
        assert Reconciliation.objects.get(trigger="DAY_END").started_at >= after_close
        assert trading_state_get() == "ACTIVE"
        again = day_end_run(broker=broker)["KRX"]  # every ten seconds: nothing more to do
        assert (again["ended"], again["withdrawn"], again["gate_closed"]) == (0, 0, 0)
        assert "bars_pruned" not in again
    cancels = [
        r
        for r in kis_sim.control("/_sim/book", method="GET")["requests"]
        if r["path"].endswith("/order-rvsecncl")
    ]
    assert cancels == []  # ended in the ledger: KRX ends day orders itself


def test_a_fresh_system_notes_the_day_without_closing_the_gate(kis_sim, broker):
    """Its startup reconciliation is its gate: the first day's end it sees is only noted."""
    counts = day_end(
        broker=broker,
        through=dt.date(2026, 11, 23),
        closed_at=dt.datetime(2026, 11, 23, 15, 30, tzinfo=clock.SEOUL),
    )
    assert counts["gate_closed"] == 0
    assert TradingState.objects.get().day_ended_for == dt.date(2026, 11, 23)
    assert trading_state_get() == "ACTIVE"


def test_a_nextrade_order_works_past_krx_close_and_ends_with_the_after_market(
    kis_sim, broker, trading_hours
):
    position = held(kis_sim, broker)
    on_nxt = send(
        services.exit_intent_open(
            position_id=position.pk,
            qty=4,
            limit_price=72_000,
            intent_type="EXIT_TAKE_PROFIT",
            idempotency_key=key(),
            venue="NXT",
        ),
        broker,
    )  # above the market: still working
    today = trading_hours.now().astimezone(clock.SEOUL).date()
    TradingState.objects.update_or_create(pk=1, defaults={"day_ended_for": today})

    after_krx_close = dt.datetime.combine(today, dt.time(15, 31, 5), clock.SEOUL)
    with clock.installed(clock.FixedClock(after_krx_close.astimezone(dt.UTC))):
        counts = day_end_run(broker=broker)
        assert counts["KRX"]["ended"] == 0 and counts["NXT"]["ended"] == 0
    assert Order.objects.get(pk=on_nxt.pk).status == "SUBMITTED"  # Nextrade trades until 20:00
    assert Position.objects.get(pk=position.pk).reserved_qty == 4

    after_nxt_close = dt.datetime.combine(today, dt.time(20, 1, 5), clock.SEOUL)
    with clock.installed(clock.FixedClock(after_nxt_close.astimezone(dt.UTC))):
        assert day_end_run(broker=broker)["NXT"]["ended"] == 1
    ended = Order.objects.get(pk=on_nxt.pk)
    assert ended.status == "CANCELLED" and "NXT does not carry it over" in ended.reject_reason
    assert Position.objects.get(pk=position.pk).reserved_qty == 0
