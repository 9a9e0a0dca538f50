"""An order is sent only while the KRX day takes regular orders (EXECUTION_MARKET_HOURS): one
recorded before the close and not sent by then is withdrawn at its claim, its shares released
and the withdrawal alerted, never sent for KIS to refuse. The simulator here takes orders at any
hour, so without the check the late order would reach it."""

import pytest

from core import clock
from execution import services
from execution.models import Alert, Order, Position
from tests.support import in_session
from tests.support.ledger import key
from tests.support.workers import broker_orders

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def held_exit(kis_sim, settings):
    """An exit of 3 held shares, recorded and not sent."""
    kis_sim.account_set({"005930": 3})
    settings.EXECUTION_AUTO_SUBMIT = False
    settings.EXECUTION_MARKET_HOURS = True
    entry = services.entry_intent_open(
        symbol="005930", qty=3, limit_price=71_000, idempotency_key=key()
    )
    bought = services.order_open(intent_id=entry.pk)
    services.order_mark_submitted(order_id=bought.pk, broker_order_no="bought-before")
    services.fill_apply(order_id=bought.pk, broker_fill_key=key("fill"), qty=3, price=71_000)
    return services.exit_intent_open(
        position_id=entry.position_id, qty=3, intent_type="MANUAL", idempotency_key=key()
    )


def test_an_order_due_after_the_close_is_withdrawn_not_sent(kis_client, kis_sim, held_exit):
    from execution.services.submission import Outcome, intent_submit

    with clock.installed(in_session(15, 33)):  # the close was at 15:30
        assert intent_submit(intent_id=held_exit.pk, broker=kis_client) is Outcome.REJECTED
        # Asked again (the sweep, a second lane): still nothing goes out.
        assert intent_submit(intent_id=held_exit.pk, broker=kis_client) is Outcome.ALREADY
    assert broker_orders(kis_sim) == []
    order = Order.objects.get(intent=held_exit)
    assert order.status == Order.Status.REJECTED and order.send_started_at is None
    assert "KRX takes no limit order" in order.reject_reason
    assert Position.objects.get(pk=held_exit.position_id).reserved_qty == 0
    alerts = Alert.objects.filter(kind=Alert.Kind.ORDER, key__endswith=":market-closed")
    assert [(a.severity, a.subject) for a in alerts] == [(Alert.Severity.WARNING, "005930")]


def test_the_same_order_in_the_session_is_sent(kis_client, kis_sim, held_exit):
    from execution.services.submission import Outcome, intent_submit

    with clock.installed(in_session(15, 25)):  # the closing auction takes orders
        assert intent_submit(intent_id=held_exit.pk, broker=kis_client) is Outcome.SUBMITTED
    assert [o["qty"] for o in broker_orders(kis_sim)] == [3]
