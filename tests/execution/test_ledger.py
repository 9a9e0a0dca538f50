"""The ledger's operations, one at a time, on PostgreSQL."""

from decimal import Decimal

import pytest

from execution import services
from execution.exceptions import (
    FillExceedsOrder,
    InsufficientAvailableQty,
    InvalidIntentState,
    InvalidOrderState,
    TradingNotAllowed,
)
from execution.models import Fill, IntentType, Order, OrderIntent, Position
from execution.selectors import position_ledger_breakdown
from tests.support.ledger import fill, key, open_position, submit

pytestmark = pytest.mark.django_db


def exit_(position, qty, **kw):
    return services.exit_intent_open(
        position_id=position.pk,
        qty=qty,
        intent_type=kw.pop("intent_type", IntentType.EXIT_STOP_LOSS),
        idempotency_key=kw.pop("idempotency_key", key("exit")),
        **kw,
    )


def reload(position):
    position.refresh_from_db()
    return position


def assert_consistent(position):
    breakdown = position_ledger_breakdown(position=reload(position))
    assert breakdown.consistent, breakdown
    return breakdown


def test_entry_fill_opens_position_with_exact_average(new_symbol):
    symbol = new_symbol()
    position = open_position(symbol, 10, 10_000)
    intent = services.entry_intent_open(symbol=symbol, qty=5, idempotency_key=key())
    assert intent.position_id == position.pk  # one open position per symbol
    fill(submit(intent), 5, 10_003)
    position = reload(position)
    assert position.qty == 15
    # (10 × 10,000 + 5 × 10,003) / 15 = 10,001
    assert position.avg_price == Decimal("10001.0000")
    assert_consistent(position)


def test_exit_intent_reserves_and_clamps_to_available(new_symbol):
    position = open_position(new_symbol(), 100)
    first = exit_(position, 70)
    assert first.qty == 70
    second = exit_(position, 70)
    assert second.qty == 30  # clamped
    breakdown = assert_consistent(position)
    assert breakdown.available_qty == 0
    assert breakdown.locked_by_intents == 100


def test_exit_refused_at_zero_available_writes_nothing_and_warns(new_symbol, caplog):
    position = open_position(new_symbol(), 10)
    exit_(position, 10)
    before = OrderIntent.objects.count()
    with pytest.raises(InsufficientAvailableQty) as err:
        exit_(position, 1)
    assert err.value.locked == 10 and err.value.qty == 10
    assert OrderIntent.objects.count() == before
    refused = [r for r in caplog.records if getattr(r, "event", "") == "ledger.refused"]
    assert refused and refused[0].position_id == position.pk and refused[0].locked_qty == 10


def test_same_idempotency_key_returns_the_first_intent(new_symbol):
    position = open_position(new_symbol(), 10)
    k = key()
    a = exit_(position, 4, idempotency_key=k)
    b = exit_(position, 4, idempotency_key=k)
    assert a.pk == b.pk
    assert reload(position).reserved_qty == 4


def test_sell_partial_fills_then_close(new_symbol):
    position = open_position(new_symbol(), 10, 10_000)
    order = submit(exit_(position, 10))
    fill(order, 4, 11_000)
    position = reload(position)
    assert (position.qty, position.reserved_qty) == (6, 6)
    assert Order.objects.get(pk=order.pk).status == Order.Status.PARTIAL_FILLED
    fill(order, 6, 12_000)
    position = reload(position)
    assert position.status == Position.Status.CLOSED and position.qty == 0
    assert position.realized_pnl == Decimal(4 * 1_000 + 6 * 2_000)
    assert Order.objects.get(pk=order.pk).status == Order.Status.FILLED


def test_duplicate_fill_notice_changes_nothing(new_symbol):
    position = open_position(new_symbol(), 10)
    order = submit(exit_(position, 5))
    services.fill_apply(order_id=order.pk, broker_fill_key="dup-1", qty=3, price=10_000)
    again = services.fill_apply(order_id=order.pk, broker_fill_key="dup-1", qty=3, price=10_000)
    assert Fill.objects.filter(broker_fill_key="dup-1").count() == 1
    assert again.order_id == order.pk
    assert reload(position).qty == 7
    assert_consistent(position)


def test_fill_beyond_remaining_is_refused(new_symbol):
    position = open_position(new_symbol(), 10)
    order = submit(exit_(position, 5))
    with pytest.raises(FillExceedsOrder):
        fill(order, 6, 10_000)
    assert reload(position).qty == 10
    assert Order.objects.get(pk=order.pk).filled_qty == 0


def test_reject_and_cancel_release_the_remainder(new_symbol):
    position = open_position(new_symbol(), 10)
    rejected = submit(exit_(position, 4))
    services.order_reject(order_id=rejected.pk, reason="APBK0918 market not open")
    assert reload(position).reserved_qty == 0
    partly = submit(exit_(position, 6))
    fill(partly, 2, 10_000)
    services.order_mark_cancelled(order_id=partly.pk, reason="timeout")
    position = reload(position)
    assert (position.qty, position.reserved_qty, position.available_qty) == (8, 0, 8)
    assert_consistent(position)
    with pytest.raises(InvalidOrderState):
        fill(partly, 1, 10_000)


def test_intent_cancel_releases_and_cannot_cancel_twice(new_symbol):
    position = open_position(new_symbol(), 10)
    intent = exit_(position, 10)
    services.intent_cancel(intent_id=intent.pk, reason="test")
    assert reload(position).available_qty == 10
    with pytest.raises(InvalidIntentState):
        services.intent_cancel(intent_id=intent.pk, reason="again")


def test_order_open_is_idempotent_for_a_retried_task(new_symbol):
    position = open_position(new_symbol(), 10)
    intent = exit_(position, 10)
    first = services.order_open(intent_id=intent.pk)
    second = services.order_open(intent_id=intent.pk)
    assert first.pk == second.pk
    assert Order.objects.filter(intent=intent).count() == 1
    assert_consistent(position)


def test_order_open_clamps_to_broker_orderable_qty(new_symbol):
    position = open_position(new_symbol(), 10)
    intent = exit_(position, 10)
    order = services.order_open(intent_id=intent.pk, broker_sellable_qty=7)
    assert order.qty == 7
    assert reload(position).reserved_qty == 7
    assert_consistent(position)


def test_order_open_rejects_intent_when_broker_holds_nothing(new_symbol):
    position = open_position(new_symbol(), 10)
    intent = exit_(position, 10)
    assert services.order_open(intent_id=intent.pk, broker_sellable_qty=0) is None
    intent.refresh_from_db()
    assert intent.status == OrderIntent.Status.REJECTED
    assert reload(position).reserved_qty == 0


def test_rejected_entry_closes_the_empty_position(new_symbol):
    symbol = new_symbol()
    intent = services.entry_intent_open(symbol=symbol, qty=5, idempotency_key=key())
    order = services.order_open(intent_id=intent.pk)
    services.order_reject(order_id=order.pk, reason="APBK0656 product not found")
    position = Position.objects.get(pk=intent.position_id)
    assert position.status == Position.Status.CLOSED
    # A later entry on the same symbol opens a new position.
    again = services.entry_intent_open(symbol=symbol, qty=5, idempotency_key=key())
    assert again.position_id != position.pk


def test_trading_state_gates_entries_and_exits(new_symbol):
    position = open_position(new_symbol(), 10)
    services.trading_state_set(state="REDUCING", reason="test", changed_by="pytest")
    with pytest.raises(TradingNotAllowed):
        services.entry_intent_open(symbol=new_symbol(), qty=1, idempotency_key=key())
    intent = exit_(position, 5)  # exits still go out
    assert services.order_open(intent_id=intent.pk) is not None

    waiting = exit_(position, 5)
    services.trading_state_set(state="HALTED", reason="test", changed_by="pytest")
    with pytest.raises(TradingNotAllowed):
        exit_(position, 1)
    with pytest.raises(TradingNotAllowed):
        services.order_open(intent_id=waiting.pk)
    waiting.refresh_from_db()
    assert waiting.status == OrderIntent.Status.NEW  # waits, not lost
    services.trading_state_set(state="ACTIVE", reason="test", changed_by="pytest")
    assert services.order_open(intent_id=waiting.pk) is not None


def test_flatten_sells_only_what_no_other_exit_holds(new_symbol):
    position = open_position(new_symbol(), 10)
    exit_(position, 3)
    flat = services.position_flatten(position_id=position.pk, requested_by="pytest")
    assert flat.intent_type == IntentType.FLATTEN and flat.qty == 7
    with pytest.raises(InsufficientAvailableQty):
        services.position_flatten(position_id=position.pk, requested_by="pytest")


def test_submitted_order_records_when_it_went_out(new_symbol):
    position = open_position(new_symbol(), 10)
    intent = exit_(position, 10)
    order = submit(intent)
    intent.refresh_from_db()
    assert order.status == Order.Status.SUBMITTED
    assert intent.ordered_at == order.submitted_at
    assert intent.created_at <= intent.ordered_at


def test_the_one_statement_path_records_the_order_unclaimed(new_symbol):
    from execution.services.orders import order_mark_submitted_fast, order_open_recorded

    position = open_position(new_symbol(), 10)
    intent = exit_(position, 4)
    order = order_open_recorded(intent_id=intent.pk)
    stored = Order.objects.get(intent=intent)
    assert (stored.pk, stored.qty, stored.side, stored.status) == (order.pk, 4, "SELL", "NEW")
    # Recorded, not claimed: the send claims it right before its broker write.
    assert stored.send_started_at is None and stored.created_at == order.created_at
    assert stored.recorded_at is not None and stored.send_attempts == 0
    assert OrderIntent.objects.get(pk=intent.pk).status == OrderIntent.Status.ORDERED
    assert order_open_recorded(intent_id=intent.pk) is None  # a second delivery
    assert services.order_open(intent_id=intent.pk).pk == order.pk
    assert order_mark_submitted_fast(order_id=order.pk, broker_order_no="0000000042")
    assert not order_mark_submitted_fast(order_id=order.pk, broker_order_no="0000000043")
    stored.refresh_from_db()
    intent.refresh_from_db()
    assert (stored.status, stored.broker_order_no) == ("SUBMITTED", "0000000042")
    assert stored.trade_date and intent.ordered_at == stored.submitted_at
    assert reload(position).reserved_qty == 4
    assert_consistent(position)


@pytest.mark.parametrize(
    "case",
    ["halted", "reducing_entry", "startup_gate", "broker_disagrees", "cancelled", "malformed"],
)
def test_the_one_statement_path_declines_what_is_not_ordinary(new_symbol, case):
    from execution.services.orders import order_open_recorded
    from execution.services.trading_state import reconciliation_require

    position = open_position(new_symbol(), 10)
    intent = exit_(position, 4)
    if case == "halted":
        services.trading_state_set(state="HALTED", reason="test", changed_by="pytest")
    elif case == "reducing_entry":
        intent = services.entry_intent_open(symbol=new_symbol(), qty=1, idempotency_key=key())
        services.trading_state_set(state="REDUCING", reason="test", changed_by="pytest")
    elif case == "startup_gate":
        reconciliation_require()
    elif case == "broker_disagrees":
        Position.objects.filter(pk=position.pk).update(broker_qty=6)
    elif case == "cancelled":
        services.intent_cancel(intent_id=intent.pk, reason="test")
    intent_id = "not-a-uuid" if case == "malformed" else intent.pk
    assert order_open_recorded(intent_id=intent_id) is None
    assert not Order.objects.filter(intent=intent).exists()
    assert OrderIntent.objects.get(pk=intent.pk).status in ("NEW", "CANCELLED")


def test_a_catch_up_fill_of_an_undated_order_is_keyed_by_the_seoul_date(new_symbol):
    """KIS numbers orders from 1 each day, so a fill's key carries the order's trading date; an
    order without one falls back to the Seoul date of the clock, not the server's UTC date (at
    08:30 KST it is still yesterday in UTC)."""
    import datetime as dt

    from core import clock
    from execution.services.fills import order_catch_up

    intent = services.entry_intent_open(
        symbol=new_symbol(), qty=10, idempotency_key=key(), limit_price=10_000
    )
    order = submit(intent)
    Order.objects.filter(pk=order.pk).update(trade_date=None)
    at = dt.datetime(2026, 12, 7, 23, 30, tzinfo=dt.UTC)  # 08:30 KST on the 8th, as servers read it
    with clock.installed(clock.FixedClock(at)):
        applied = order_catch_up(order_id=order.pk, filled_qty=10, filled_amount=100_000)
    assert applied.broker_fill_key.startswith(f"kis:20261208:{order.broker_order_no}:")
