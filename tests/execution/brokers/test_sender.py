"""Intents sent from the process that opened them (execution/sender.py, used by pricesync): one
broker order per intent whoever delivers it, and whatever the sender cannot do goes to the
execute task on a real worker."""

import time

import pytest

from execution import services
from execution.models import Order
from execution.sender import InProcessSender
from execution.services.intents import execute_here
from execution.tasks import intent_execute
from tests.execution.brokers import kis_worker
from tests.execution.brokers.test_execution_submit import broker_orders, wait_for, worker  # noqa: F401
from tests.execution.brokers.test_kis_client import sim_dict
from tests.ledger_helpers import key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _entry_through(sender: InProcessSender):
    execute_here(sender)
    try:
        return services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    finally:
        execute_here(None)
        sender.close()


def _one_order_at_the_broker(kis_sim, intent) -> Order:
    wait_for(lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
             "the order at the broker")
    order = Order.objects.get(intent=intent)
    assert [o["odno"] for o in broker_orders(kis_sim)] == [order.broker_order_no]
    return order


def test_the_sender_sends_and_a_second_delivery_finds_the_order_taken(kis_sim, worker, caplog):
    sender = InProcessSender(broker=kis_worker.client_for(sim_dict(kis_sim), rate=50))
    intent = _entry_through(sender)  # close() waits for the send
    assert intent.status == "ORDERED"  # its order was recorded and claimed in its transaction
    assert f"execution.sent_in_process intent_id={intent.pk} outcome=submitted" in caplog.text
    _one_order_at_the_broker(kis_sim, intent)
    intent_execute.delay(str(intent.pk))  # the sweep or the listener, late
    time.sleep(1.0)
    _one_order_at_the_broker(kis_sim, intent)


def test_an_unreachable_broker_hands_the_intent_to_the_execute_task(kis_sim, worker, caplog):
    dead = sim_dict(kis_sim) | {"base_url": "http://127.0.0.1:9", "ws_url": "ws://127.0.0.1:9"}
    sender = InProcessSender(broker=kis_worker.client_for(dead, rate=50, retries=0,
                                                          read_timeout_s=1.0))
    intent = _entry_through(sender)
    assert f"execution.in_process_failed intent_id={intent.pk}" in caplog.text
    order = _one_order_at_the_broker(kis_sim, intent)  # sent by the worker
    assert Order.objects.filter(intent=intent).count() == 1 and order.send_started_at


def test_a_full_backlog_leaves_the_intent_to_the_execute_task(kis_sim, worker, caplog):
    sender = InProcessSender(broker=kis_worker.client_for(sim_dict(kis_sim), rate=50),
                             backlog=0)
    intent = _entry_through(sender)
    assert "sent_in_process" not in caplog.text
    _one_order_at_the_broker(kis_sim, intent)
