"""exit_intent_open_locked: the hot path's exit, for a caller holding the position's lock with
the trading state read in the same statement. Same ledger, fewer round trips."""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import clock
from execution import dispatch, services
from execution.exceptions import InsufficientAvailableQty, InvalidInput, TradingNotAllowed
from execution.locks import position_lock
from execution.models import Order, OrderIntent, Position, TradingState
from tests.support.ledger import key, open_position

pytestmark = pytest.mark.django_db


def locked(position_id):
    """The caller's statement: the position locked and the state in force beside it."""
    position, _, position.trading_state = position_lock(position_id)
    return position


def open_locked(position, qty=5, **kw):
    return services.exit_intent_open_locked(
        position,
        trading_state=position.trading_state,
        qty=qty,
        intent_type="EXIT_STOP_LOSS",
        idempotency_key=kw.pop("idempotency_key", key()),
        **kw,
    )


def test_it_reserves_and_clamps_like_exit_intent_open(new_symbol):
    position = open_position(new_symbol(), 10)
    with transaction.atomic():
        first = open_locked(locked(position.pk), qty=6)
        second = open_locked(locked(position.pk), qty=6, new_key=True)
    assert (first.qty, second.qty) == (6, 4)  # the second is clamped to what was left
    position.refresh_from_db()
    assert position.reserved_qty == 10


def test_a_refusal_leaves_the_callers_transaction_usable(new_symbol):
    position = open_position(new_symbol(), 10)
    with transaction.atomic():
        open_locked(locked(position.pk), qty=10)
        with pytest.raises(InsufficientAvailableQty):
            open_locked(locked(position.pk), qty=1)
        # No savepoint was needed: the transaction goes on and commits.
        Position.objects.filter(pk=position.pk).update(updated_at=clock.now())
    assert OrderIntent.objects.filter(position_id=position.pk, side="SELL").count() == 1


def test_a_repeated_key_returns_the_first_intent_unless_the_key_is_new(new_symbol):
    position = open_position(new_symbol(), 10)
    k = key()
    with transaction.atomic():
        first = open_locked(locked(position.pk), qty=3, idempotency_key=k)
        again = open_locked(locked(position.pk), qty=3, idempotency_key=k)
    assert again.pk == first.pk
    position.refresh_from_db()
    assert position.reserved_qty == 3


@pytest.mark.parametrize(
    "state, allowed", [("ACTIVE", True), ("REDUCING", True), ("HALTED", False)]
)
def test_the_state_read_in_the_locking_statement_decides(new_symbol, state, allowed):
    position = open_position(new_symbol(), 10)
    services.trading_state_set(state=state, reason="test", changed_by="test")
    with transaction.atomic():
        row = locked(position.pk)
        assert row.trading_state == state
        if allowed:
            assert open_locked(row).qty == 5
        else:
            with pytest.raises(TradingNotAllowed):
                open_locked(row)


def test_awaiting_the_startup_reconciliation_reads_as_halted(new_symbol):
    position = open_position(new_symbol(), 10)
    now = clock.now()
    TradingState.objects.filter(pk=TradingState.SINGLETON_PK).update(
        reconcile_required_since=now, reconciled_at=now - dt.timedelta(seconds=1)
    )
    assert services.trading_state_get() == "HALTED"
    with transaction.atomic():
        row = locked(position.pk)
        assert row.trading_state == "HALTED"
        with pytest.raises(TradingNotAllowed):
            open_locked(row)
    TradingState.objects.filter(pk=TradingState.SINGLETON_PK).update(reconciled_at=now)
    with transaction.atomic():
        assert locked(position.pk).trading_state == services.trading_state_get() == "ACTIVE"


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_it_refuses(new_symbol):
    position = open_position(new_symbol(), 10)
    position.trading_state = "ACTIVE"
    with pytest.raises(InvalidInput):
        open_locked(position)
    assert not OrderIntent.objects.filter(position_id=position.pk, side="SELL").exists()


def test_with_a_new_key_it_writes_in_one_statement(new_symbol):
    position = open_position(new_symbol(), 10)
    with transaction.atomic():
        row = locked(position.pk)
        with CaptureQueriesContext(connection) as queries:
            intent = open_locked(row, new_key=True)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["WITH"]
    stored = OrderIntent.objects.get(pk=intent.pk)
    assert (stored.status, stored.qty, stored.side, stored.symbol) == (
        "NEW",
        5,
        "SELL",
        position.symbol,
    )
    position.refresh_from_db()
    assert position.reserved_qty == row.reserved_qty == 5


class Taker:
    """An executor that takes recorded orders, as pricesync's sender does."""

    def __init__(self):
        self.ids, self.orders = [], []

    def __call__(self, intent_id):
        self.ids.append(intent_id)
        return True

    def recorded(self, order):
        self.orders.append(order)
        return True


@pytest.mark.django_db(transaction=True)
def test_for_a_taker_of_recorded_orders_the_same_statement_records_the_order(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = True
    position = open_position(new_symbol(), 10)
    taker = Taker()
    with dispatch.installed(taker), transaction.atomic():
        row = locked(position.pk)
        with CaptureQueriesContext(connection) as queries:
            intent = open_locked(row, qty=4, new_key=True, limit_price=9_700)
        assert taker.orders == []  # handed over only once committed
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["WITH"]
    assert intent.status == "ORDERED" == OrderIntent.objects.get(pk=intent.pk).status
    [order] = taker.orders
    stored = Order.objects.get(pk=order.pk)
    assert (stored.intent_id, stored.status, stored.qty, stored.limit_price) == (
        intent.pk,
        "NEW",
        4,
        9_700,
    )
    # Recorded unclaimed: the send claims it right before the broker write.
    assert stored.send_started_at is None is order.send_started_at
    assert taker.ids == []


@pytest.mark.django_db(transaction=True)
def test_a_position_kis_disagrees_with_leaves_its_order_to_the_execute_path(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = True
    position = open_position(new_symbol(), 10)
    Position.objects.filter(pk=position.pk).update(broker_qty=8)
    taker = Taker()
    with dispatch.installed(taker), transaction.atomic():
        intent = open_locked(locked(position.pk), qty=4, new_key=True)
    assert taker.orders == [] and taker.ids == [str(intent.pk)]
    assert OrderIntent.objects.get(pk=intent.pk).status == "NEW"
    assert not Order.objects.filter(intent_id=intent.pk).exists()
