"""P0 on every path (issue 23, finding 6): the database makes any SELL intent reserve its qty or
refuses it, whoever writes it; at most one open order per intent; the audit recomputes
reserved_qty from the rows and alerts on drift. Real PostgreSQL."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from core import clock
from execution import services
from execution.models import Alert, Order, OrderIntent, Position
from execution.services.audit import ledger_audit, ledger_drift
from tests.support.ledger import fill, key, open_position

pytestmark = pytest.mark.django_db(transaction=True)


def _outside_sell(position: Position, qty: int) -> uuid.UUID:
    """A SELL intent inserted as an outside writer would (a script, psql): raw SQL, no
    service."""
    intent_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {OrderIntent._meta.db_table} (id, intent_type, side, position_id, "
            "symbol, qty, status, reason, idempotency_key, event_at, created_at, closed_reason) "
            "VALUES (%s, 'MANUAL', 'SELL', %s, %s, %s, 'NEW', 'outside', %s, %s, %s, '')",
            [
                intent_id,
                position.pk,
                position.symbol,
                qty,
                key("outside"),
                clock.now(),
                clock.now(),
            ],
        )
    return intent_id


def test_an_intent_written_outside_the_services_reserves_its_shares(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    position = open_position(new_symbol(), 10)
    intent_id = _outside_sell(position, 4)
    position.refresh_from_db()
    assert position.reserved_qty == 4
    # Ordered and filled as any other: the reservation is spent, never below zero.
    order = services.order_open(intent_id=intent_id)
    order = services.order_mark_submitted(order_id=order.pk, broker_order_no="0000009001")
    fill(order, 4, 10_000)
    position.refresh_from_db()
    assert (position.qty, position.reserved_qty) == (6, 0)
    assert ledger_drift() == []


def test_an_intent_for_more_than_is_available_is_refused_whoever_writes_it(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    position = open_position(new_symbol(), 10)
    services.exit_intent_open(
        position_id=position.pk, qty=7, intent_type="MANUAL", idempotency_key=key()
    )
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        _outside_sell(position, 4)  # 3 available
    assert refused.value.__cause__.diag.constraint_name == "intent_reserves_available"
    position.refresh_from_db()
    assert position.reserved_qty == 7
    assert OrderIntent.objects.filter(position=position).count() == 2  # its entry and the exit


def test_a_second_open_order_for_one_intent_is_refused(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    position = open_position(new_symbol(), 10)
    intent = services.exit_intent_open(
        position_id=position.pk, qty=3, intent_type="MANUAL", idempotency_key=key()
    )
    order = services.order_open(intent_id=intent.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(
            intent_id=intent.pk,
            position=position,
            symbol=position.symbol,
            side="SELL",
            qty=3,
            created_at=clock.now(),
        )
    assert list(Order.objects.filter(intent=intent).values_list("pk", flat=True)) == [order.pk]


def test_the_audit_alerts_on_a_reservation_the_rows_do_not_explain(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    position = open_position(new_symbol(), 10)
    services.exit_intent_open(
        position_id=position.pk, qty=3, intent_type="MANUAL", idempotency_key=key()
    )
    assert ledger_audit() == {"positions_drifting": 0}
    Position.objects.filter(pk=position.pk).update(reserved_qty=5)  # written around the rules
    assert ledger_audit() == {"positions_drifting": 1}
    alert = Alert.objects.get(kind=Alert.Kind.LEDGER)
    assert position.symbol == alert.subject and "reserves 5" in alert.message
    assert ledger_audit() == {"positions_drifting": 1}
    assert Alert.objects.filter(kind=Alert.Kind.LEDGER).count() == 1  # once per drift
