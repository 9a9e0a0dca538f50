"""Exactly once at the broker, whoever sends (issue 23, docs/exactly-once.md): the right to send
is taken on the order's row right before each write; settling waits for the send's deadline,
tolerates clocks apart, never guesses, and never resends while HALTED. Against the KIS simulator
on loopback and real PostgreSQL."""

import datetime as dt

import pytest

from core import clock
from execution import services
from execution.models import Alert, Order
from execution.services.claim import order_claim, order_unclaim
from execution.services.submission import Outcome, intent_submit, order_send, order_settle
from tests.support import at_once, forget_broker_credentials, holds_for
from tests.support.ledger import claimed, key, past_its_deadline
from tests.support.workers import broker_orders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def recorded(settings):
    """An entry's order recorded, not yet sent (as its intent's statement leaves it)."""
    settings.EXECUTION_AUTO_SUBMIT = False

    def make(qty: int = 4, price: int = 71_000) -> Order:
        intent = services.entry_intent_open(
            symbol="005930", qty=qty, limit_price=price, idempotency_key=key()
        )
        return services.order_open(intent_id=intent.pk)

    return make


def _one_order_at_kis(sim) -> bool:
    return len(broker_orders(sim)) == 1


def test_a_payload_delivered_twice_reaches_kis_once(kis_client, kis_sim, recorded):
    """A lane's payload and a second delivery of it (the execute task after a push that timed
    out, a restarted worker finding it on the list): the second write is withheld."""
    order = recorded()
    assert order_send(order, kis_client) is Outcome.SUBMITTED
    assert order_send(order, kis_client) is Outcome.ALREADY
    assert intent_submit(intent_id=order.intent_id, broker=kis_client) is Outcome.ALREADY
    holds_for(lambda: _one_order_at_kis(kis_sim), 1.0, "one order at KIS")
    assert Order.objects.get(pk=order.pk).send_attempts == 1


def test_senders_racing_over_one_order_write_it_once(kis_client, kis_sim, recorded):
    order = recorded()

    def send():
        try:
            return order_send(order, kis_client).value
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            return repr(exc)

    forget_broker_credentials()  # the reset simulator's void tokens: one fresh token first
    kis_client.access_token(kis_client.config.order_app)
    outcomes = at_once(send, [()] * 6)
    assert sorted(outcomes) == ["already"] * 5 + ["submitted"], outcomes
    holds_for(lambda: _one_order_at_kis(kis_sim), 1.0, "one order at KIS")


def test_a_send_that_waited_past_its_takeover_is_withheld(kis_client, kis_sim, recorded):
    """A send slower than the grace (waiting for a rate slot or a token) while a settle took
    the order over and sent it: the late send's write is refused at the last moment."""
    order = recorded()
    first = claimed(order.pk)  # the slow send's claim, whose write never came
    past_its_deadline(order.pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.SUBMITTED
    late = order_send(order, kis_client, expected=first.send_started_at)
    assert late is Outcome.ALREADY
    holds_for(lambda: _one_order_at_kis(kis_sim), 1.0, "one order at KIS")


def test_a_stale_payload_is_not_sent_from_the_queue(kis_client, kis_sim, recorded, settings):
    """A payload left on the list across a worker stop: the order goes out from its row, by the
    sweep, once. (An entry that old is withdrawn instead: entries' expiry is off here.)"""
    settings.EXECUTION_ENTRY_MAX_AGE_S = 0
    order = recorded()
    Order.objects.filter(pk=order.pk).update(
        recorded_at=clock.now() - dt.timedelta(seconds=settings.EXECUTION_PAYLOAD_TTL_S + 5)
    )
    assert order_send(order, kis_client, max_age_s=settings.EXECUTION_PAYLOAD_TTL_S) is Outcome.HELD
    assert broker_orders(kis_sim) == []
    assert Order.objects.get(pk=order.pk).send_started_at is None  # free for the sweep
    assert intent_submit(intent_id=order.intent_id, broker=kis_client) is Outcome.SUBMITTED
    holds_for(lambda: _one_order_at_kis(kis_sim), 1.0, "one order at KIS")


def test_halted_stops_a_first_send_and_a_resend(kis_client, kis_sim, recorded):
    unsent, in_flight = recorded(), recorded(qty=5)
    claimed(in_flight.pk)
    past_its_deadline(in_flight.pk)  # its send never arrived: a settle would send it again
    services.trading_state_set(state="HALTED", reason="test", changed_by="test")
    assert order_send(unsent, kis_client) is Outcome.HELD
    assert order_settle(order_id=in_flight.pk, broker=kis_client) is Outcome.HELD
    assert broker_orders(kis_sim) == []
    services.trading_state_set(state="ACTIVE", reason="test", changed_by="test")
    assert order_settle(order_id=in_flight.pk, broker=kis_client) is Outcome.SUBMITTED
    assert order_send(unsent, kis_client) is Outcome.SUBMITTED
    holds_for(lambda: len(broker_orders(kis_sim)) == 2, 1.0, "two orders at KIS")


def test_unclaim_gives_back_only_its_own_claim(recorded):
    order = recorded()
    mine = claimed(order.pk).send_started_at
    past_its_deadline(order.pk)
    theirs = order_claim(order_id=order.pk, window_s=13, expected=mine)  # a settle took over
    assert theirs is not None and theirs != mine
    assert order_unclaim(order_id=order.pk, claim=mine) is False
    assert Order.objects.get(pk=order.pk).send_started_at == theirs
    assert order_unclaim(order_id=order.pk, claim=theirs) is True


def test_a_settle_within_the_sends_deadline_does_not_resend(kis_client, kis_sim, recorded):
    """The deadline, on the database's clock, covers the send's whole window, not a grace
    counted on the sender's clock from when the order was recorded."""
    order = recorded()
    claimed(order.pk, window_s=60)
    with clock.installed(clock.FixedClock(clock.now() + dt.timedelta(seconds=30))):
        assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.IN_FLIGHT
    assert broker_orders(kis_sim) == []


@pytest.mark.parametrize("skew_s", [3, 30, -3, -30])
def test_a_sender_whose_clock_is_off_adopts_its_order(kis_client, kis_sim, recorded, skew_s):
    """The sender's clock `skew_s` off KIS's: its order got out, the answer was lost; the
    settle adopts it instead of sending it again."""
    order = recorded()
    with clock.installed(clock.FixedClock(clock.now() + dt.timedelta(seconds=skew_s))):
        claimed(order.pk)
    sent = kis_client.order_cash(side="BUY", symbol="005930", qty=4, price=71_000)
    past_its_deadline(order.pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.SUBMITTED
    assert Order.objects.get(pk=order.pk).broker_order_no == sent.odno
    holds_for(lambda: _one_order_at_kis(kis_sim), 1.0, "one order at KIS")


def test_two_orders_at_kis_it_could_be_are_left_for_a_person(kis_client, kis_sim, recorded):
    """A person placed the same order in the MTS app: the settle does not guess which is ours,
    alerts, and sends nothing."""
    order = recorded()
    claimed(order.pk)
    kis_client.order_cash(side="BUY", symbol="005930", qty=4, price=71_000)  # ours, or not
    kis_client.order_cash(side="BUY", symbol="005930", qty=4, price=71_000)  # a person's
    past_its_deadline(order.pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.AMBIGUOUS
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.broker_order_no) == ("NEW", None)
    assert Alert.objects.filter(kind=Alert.Kind.ORDER, key=f"order:{order.pk}:ambiguous").exists()
    holds_for(lambda: len(broker_orders(kis_sim)) == 2, 1.0, "nothing more sent")


def test_an_order_never_seen_after_its_attempts_is_rejected_and_alerted(
    kis_client,
    kis_sim,  # noqa: E501
    recorded,
    settings,
):
    settings.EXECUTION_SEND_ATTEMPTS = 1
    order = recorded()
    claimed(order.pk)  # its one attempt, never seen at KIS
    past_its_deadline(order.pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.REJECTED
    assert Order.objects.get(pk=order.pk).status == "REJECTED"
    assert Alert.objects.filter(kind=Alert.Kind.ORDER, key=f"order:{order.pk}:gave-up").exists()
    assert broker_orders(kis_sim) == []
