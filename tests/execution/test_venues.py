"""An order goes to the venue its intent names (KIS's EXCG_ID_DVSN_CD), and settling adopts
only a record of that venue. Against the KIS simulator on loopback and real PostgreSQL."""

import pytest

from execution import services
from execution.exceptions import InvalidInput
from execution.models import Order, OrderIntent
from execution.services.submission import Outcome, order_send, order_settle
from tests.support import holds_for
from tests.support.ledger import claimed, key, past_its_deadline
from tests.support.workers import broker_orders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def step_by_step(settings):
    settings.EXECUTION_AUTO_SUBMIT = False  # recorded here, sent in-process


def recorded(venue: str, qty: int = 4, price: int = 71_000) -> Order:
    intent = services.entry_intent_open(
        symbol="005930", qty=qty, limit_price=price, idempotency_key=key(), venue=venue
    )
    return services.order_open(intent_id=intent.pk)


@pytest.mark.parametrize("venue", ["KRX", "NXT", "SOR"])
def test_an_order_goes_to_its_intents_venue(kis_client, kis_sim, venue):
    order = recorded(venue)
    assert Order.objects.get(pk=order.pk).venue == venue
    assert order_send(order, kis_client) is Outcome.SUBMITTED
    [at_kis] = broker_orders(kis_sim)
    assert (at_kis["odno"], at_kis["venue"]) == (
        Order.objects.get(pk=order.pk).broker_order_no,
        venue,
    )


def test_an_entry_to_a_venue_it_cannot_name_changes_nothing():
    with pytest.raises(InvalidInput) as refused:
        services.entry_intent_open(
            symbol="005930", qty=1, limit_price=71_000, idempotency_key=key(), venue="NYSE"
        )
    assert refused.value.field == "venue"
    with pytest.raises(InvalidInput, match="no market order"):
        services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key(), venue="NXT")
    assert not OrderIntent.objects.exists()


def test_settling_adopts_no_record_of_another_venue(kis_client, kis_sim):
    """A send to KRX that never arrived, beside a person's identical order on Nextrade: the
    settle does not take the Nextrade order for it, and sends the order itself."""
    order = recorded("KRX")
    claimed(order.pk)  # the send claimed, then lost before it reached KIS
    kis_client.order_cash(side="BUY", symbol="005930", qty=4, price=71_000, venue="NXT")
    past_its_deadline(order.pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.SUBMITTED
    ours = Order.objects.get(pk=order.pk)
    holds_for(lambda: len(broker_orders(kis_sim)) == 2, 1.0, "the person's order and ours")
    mine = next(o for o in broker_orders(kis_sim) if o["odno"] == ours.broker_order_no)
    assert mine["venue"] == "KRX"
