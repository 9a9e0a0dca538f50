"""A person cancels a live order at KIS from the admin: asked to confirm first, then KIS's
revise-cancel call and its daily orders, against the simulator on real PostgreSQL."""

import pytest

from execution import services
from execution.models import Order, Position
from tests.support.fills import held, send
from tests.support.ledger import key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("trading_hours")]

URL = "/admin/execution/order/"


def cancel_requests(kis_sim) -> list:
    return [
        r
        for r in kis_sim.control("/_sim/book", method="GET")["requests"]
        if r["path"].endswith("/order-rvsecncl")
    ]


@pytest.mark.usefixtures("admins_broker")
def test_a_person_cancels_a_live_order_at_kis_after_confirming(admin_client, kis_sim, broker):
    position = held(kis_sim, broker)
    working = send(
        services.exit_intent_open(
            position_id=position.pk,
            qty=4,
            limit_price=72_000,  # above the market: it works
            intent_type="MANUAL",
            idempotency_key=key(),
        ),
        broker,
    )
    asked = admin_client.post(URL, {"action": "cancel_at_kis", "_selected_action": [working.pk]})
    page = asked.content.decode()
    assert asked.status_code == 200 and "취소 요청" in page and working.broker_order_no in page
    assert cancel_requests(kis_sim) == []  # nothing sent before the confirmation
    assert Order.objects.get(pk=working.pk).status == "SUBMITTED"

    confirmed = {"action": "cancel_at_kis", "_selected_action": [working.pk], "confirm": "yes"}
    done = admin_client.post(URL, confirmed, follow=True)
    assert "CANCELLED, 0 of 4 filled" in done.content.decode()
    assert Order.objects.get(pk=working.pk).status == "CANCELLED"
    assert Position.objects.get(pk=position.pk).reserved_qty == 0
    [sent] = cancel_requests(kis_sim)
    [at_kis] = [o for o in kis_sim.book()["orders"] if o["odno"] == working.broker_order_no]
    assert at_kis["cancelled_qty"] == 4 and at_kis["remaining"] == 0

    again = admin_client.post(URL, confirmed, follow=True)  # no live order left
    assert "No live order selected" in again.content.decode()
    assert len(cancel_requests(kis_sim)) == 1


def test_the_cancel_refuses_what_is_not_a_live_order_of_today(kis_sim, broker):
    import datetime as dt
    import uuid

    from execution.exceptions import InvalidInput, InvalidOrderState
    from execution.services.expiry import order_cancel_now

    position = held(kis_sim, broker)
    [entry] = Order.objects.filter(position=position)  # FILLED
    with pytest.raises(InvalidOrderState, match="FILLED"):
        order_cancel_now(broker=broker, order_id=entry.pk, by="t")
    with pytest.raises(InvalidInput):
        order_cancel_now(broker=broker, order_id=uuid.uuid4(), by="t")
    working = send(
        services.exit_intent_open(
            position_id=position.pk,
            qty=4,
            limit_price=72_000,
            intent_type="MANUAL",
            idempotency_key=key(),
        ),
        broker,
    )
    Order.objects.filter(pk=working.pk).update(trade_date=working.trade_date - dt.timedelta(days=1))
    with pytest.raises(InvalidOrderState, match="cannot cancel"):
        order_cancel_now(broker=broker, order_id=working.pk, by="t")
    assert cancel_requests(kis_sim) == []
