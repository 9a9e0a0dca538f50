"""Bad input gets a typed error with a clear message and writes nothing; the database refuses
impossible rows even when code writes around the services.
"""

import uuid

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from execution import services
from execution.exceptions import (
    IntentNotFound,
    InvalidInput,
    LedgerError,
    OrderNotFound,
    PositionClosed,
    PositionNotFound,
    TradingNotAllowed,
)
from execution.models import Fill, Order, OrderIntent, Position, TradingState
from tests.support.ledger import fill, key, open_position, submit

pytestmark = pytest.mark.django_db


def snapshot():
    return (
        list(Position.objects.order_by("pk").values()),
        list(OrderIntent.objects.order_by("pk").values()),
        list(Order.objects.order_by("pk").values()),
        list(Fill.objects.order_by("pk").values()),
        list(TradingState.objects.values()),
    )


@pytest.fixture
def held(new_symbol):
    return open_position(new_symbol(), 10)


def exit_kwargs(position_id, **overrides):
    kwargs = dict(
        position_id=position_id, qty=5, intent_type="EXIT_STOP_LOSS", idempotency_key=key()
    )
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(
    "overrides, error, field",
    [
        ({"qty": 0}, InvalidInput, "qty"),
        ({"qty": -5}, InvalidInput, "qty"),
        ({"qty": 2.5}, InvalidInput, "qty"),
        ({"qty": "5"}, InvalidInput, "qty"),
        ({"qty": True}, InvalidInput, "qty"),
        ({"limit_price": 0}, InvalidInput, "limit_price"),
        ({"limit_price": -100}, InvalidInput, "limit_price"),
        ({"intent_type": "ENTRY"}, InvalidInput, "intent_type"),
        ({"intent_type": "BOGUS"}, InvalidInput, "intent_type"),
        ({"idempotency_key": ""}, InvalidInput, "idempotency_key"),
        ({"idempotency_key": "x" * 129}, InvalidInput, "idempotency_key"),
    ],
)
def test_bad_exit_arguments_are_refused_and_write_nothing(held, overrides, error, field):
    before = snapshot()
    with pytest.raises(error) as err:
        services.exit_intent_open(**exit_kwargs(held.pk, **overrides))
    assert err.value.field == field
    assert field in str(err.value)
    assert snapshot() == before


@pytest.mark.parametrize("symbol", ["5930", "0059300", "abcdef", "00593!", 5930, None, ""])
def test_malformed_symbol_is_refused(symbol):
    before = snapshot()
    with pytest.raises(InvalidInput, match="KRX short code"):
        services.entry_intent_open(symbol=symbol, qty=1, idempotency_key=key())
    assert snapshot() == before


@pytest.mark.parametrize("position_id", [987_654_321, "not-an-id", None])
def test_unknown_position_is_refused(position_id):
    before = snapshot()
    with pytest.raises(PositionNotFound, match="does not exist"):
        services.exit_intent_open(**exit_kwargs(position_id))
    assert snapshot() == before


def test_closed_position_is_refused(held):
    order = submit(services.exit_intent_open(**exit_kwargs(held.pk, qty=10)))
    fill(order, 10, 10_000)
    held.refresh_from_db()
    assert held.status == Position.Status.CLOSED
    before = snapshot()
    with pytest.raises(PositionClosed, match="closed"):
        services.exit_intent_open(**exit_kwargs(held.pk))
    assert snapshot() == before


def test_exit_while_halted_is_refused(held):
    services.trading_state_set(state="HALTED", reason="kill switch test", changed_by="pytest")
    before = snapshot()
    with pytest.raises(TradingNotAllowed, match="HALTED"):
        services.exit_intent_open(**exit_kwargs(held.pk))
    assert snapshot() == before


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: services.intent_cancel(intent_id=uuid.uuid4(), reason="x"), IntentNotFound),
        (lambda: services.intent_cancel(intent_id="garbage", reason="x"), IntentNotFound),
        (lambda: services.order_open(intent_id=uuid.uuid4()), IntentNotFound),
        (lambda: services.order_reject(order_id=uuid.uuid4(), reason="x"), OrderNotFound),
        (
            lambda: services.fill_apply(order_id=uuid.uuid4(), broker_fill_key="k", qty=1, price=1),
            OrderNotFound,
        ),
        (
            lambda: services.trading_state_set(state="PAUSED", reason="x", changed_by="t"),
            InvalidInput,
        ),
        (
            lambda: services.trading_state_set(state="HALTED", reason=" ", changed_by="t"),
            InvalidInput,
        ),
    ],
)
def test_unknown_ids_and_bad_states_are_typed_errors(call, error):
    before = snapshot()
    with pytest.raises(error):
        call()
    assert snapshot() == before


def test_bad_fill_arguments_are_refused(held):
    order = submit(services.exit_intent_open(**exit_kwargs(held.pk)))
    before = snapshot()
    for kwargs in ({"qty": 0}, {"price": 0}, {"price": -1}, {"broker_fill_key": ""}):
        args = dict(order_id=order.pk, broker_fill_key=key(), qty=1, price=10_000) | kwargs
        with pytest.raises(InvalidInput):
            services.fill_apply(**args)
    assert snapshot() == before


def test_every_refusal_is_a_ledger_error():
    assert all(
        issubclass(e, LedgerError)
        for e in (
            InvalidInput,
            PositionNotFound,
            PositionClosed,
            TradingNotAllowed,
            IntentNotFound,
            OrderNotFound,
        )
    )


# --- the database itself --------------------------------------------------------------------


def _raw_update(model, pk, **values):
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=pk).update(**values)


def test_database_refuses_impossible_positions(held):
    _raw_update(Position, held.pk, qty=-1)
    _raw_update(Position, held.pk, reserved_qty=11)  # oversell: more locked than held
    _raw_update(Position, held.pk, reserved_qty=-1)
    _raw_update(Position, held.pk, status="CLOSED")  # closed while holding shares
    _raw_update(Position, held.pk, symbol="abc")
    with pytest.raises(IntegrityError), transaction.atomic():
        Position.objects.create(symbol=held.symbol, opened_at=timezone.now())  # second OPEN


def test_database_refuses_impossible_orders_intents_and_fills(held):
    intent = services.exit_intent_open(**exit_kwargs(held.pk))
    order = submit(intent)
    fill_row = fill(order, 1, 10_000)
    _raw_update(Order, order.pk, filled_qty=6)  # filled > qty
    _raw_update(Order, order.pk, filled_qty=-1)
    _raw_update(Order, order.pk, status="FILLED")  # filled while 1 of 5
    _raw_update(Order, order.pk, qty=0)
    _raw_update(OrderIntent, intent.pk, qty=0)
    _raw_update(OrderIntent, intent.pk, side="BUY")  # an exit that buys
    _raw_update(Fill, fill_row.pk, qty=0)
    _raw_update(Fill, fill_row.pk, price=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Fill.objects.create(
            order=order,
            broker_fill_key=fill_row.broker_fill_key,
            qty=1,
            price=1,
            filled_at=timezone.now(),
            recorded_at=timezone.now(),
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderIntent.objects.create(
            intent_type="EXIT_TIME",
            side="SELL",
            position=held,
            symbol=held.symbol,
            qty=1,
            idempotency_key=intent.idempotency_key,
            event_at=timezone.now(),
            created_at=timezone.now(),
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        TradingState.objects.create(id=2, state="ACTIVE")
