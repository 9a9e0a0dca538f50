"""Intents sent from the process that opened them (execution/sender.py, used by pricesync): one
broker order per intent whoever delivers it, and whatever the sender cannot do goes to the
execute task on a real worker."""

import time

import pytest

from core import clock
from execution import dispatch, services
from execution.models import Order, Position
from execution.sender import InProcessSender
from execution.tasks import intent_execute
from tests.support import kis as kis_worker
from tests.support import wait_until
from tests.support.kis import sim_dict
from tests.support.ledger import key
from tests.support.workers import broker_orders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _entry_through(sender: InProcessSender):
    try:
        with dispatch.installed(sender):
            return services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    finally:
        sender.close()


def _one_order_at_the_broker(kis_sim, intent) -> Order:
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
        "the order at the broker",
    )
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
    sender = InProcessSender(
        broker=kis_worker.client_for(dead, rate=50, retries=0, read_timeout_s=1.0)
    )
    intent = _entry_through(sender)
    assert f"execution.in_process_failed intent_id={intent.pk}" in caplog.text
    order = _one_order_at_the_broker(kis_sim, intent)  # sent by the worker
    assert Order.objects.filter(intent=intent).count() == 1 and order.send_started_at


def test_a_full_backlog_leaves_the_intent_to_the_execute_task(kis_sim, worker, caplog):
    sender = InProcessSender(broker=kis_worker.client_for(sim_dict(kis_sim), rate=50), backlog=0)
    intent = _entry_through(sender)
    assert "sent_in_process" not in caplog.text
    _one_order_at_the_broker(kis_sim, intent)


def _held_at_kis(kis_sim, qty: int) -> None:
    kis_sim.account_set({"005930": qty}, avg_price=70_000, cash=10**10)


def _sent_by(caplog, intent) -> str:
    [record] = [
        r for r in caplog.records if f"sent_in_process intent_id={intent.pk}" in r.getMessage()
    ]
    return record.threadName


def test_an_exit_goes_out_from_a_thread_made_ready_while_it_committed(kis_sim, worker, caplog):
    """The exit's write says the order is coming (prepare): a ready thread takes the token, the
    breaker's state and a rate slot while the statement commits, then sends the order."""
    _held_at_kis(kis_sim, 10)
    # The holding as the ledger knows it (bought earlier; no order of it at this simulator).
    position = Position.objects.create(
        symbol="005930", qty=10, avg_price=70_000, opened_at=clock.now()
    )
    sender = InProcessSender(broker=kis_worker.client_for(sim_dict(kis_sim), rate=50))
    try:
        with dispatch.installed(sender), caplog.at_level("INFO", logger="aegis.execution"):
            intent = services.exit_intent_open(
                position_id=position.pk,
                qty=10,
                intent_type="EXIT_STOP_LOSS",
                idempotency_key=key(),
                limit_price=70_000,
            )
            _one_order_at_the_broker(kis_sim, intent)
    finally:
        sender.close()
    assert intent.status == "ORDERED"
    assert _sent_by(caplog, intent).startswith("sender-ready")


def test_a_ready_thread_no_order_comes_for_gives_up_and_the_next_order_goes(
    kis_sim, worker, caplog
):
    sender = InProcessSender(broker=kis_worker.client_for(sim_dict(kis_sim), rate=50), ready=1)
    sender.READY_WAIT_S = 0.2
    sender.prepare()  # an exit that will not be written after all
    deadline = time.monotonic() + 10
    while sender._ready and time.monotonic() < deadline:  # noqa: SLF001 - its waiting list
        time.sleep(0.05)
    assert not sender._ready  # noqa: SLF001
    with caplog.at_level("INFO", logger="aegis.execution"):
        intent = _entry_through(sender)  # prepares a thread of its own
    _one_order_at_the_broker(kis_sim, intent)
    assert _sent_by(caplog, intent).startswith("sender-")


def test_closing_wakes_a_thread_still_waiting_for_its_order(kis_sim):
    sender = InProcessSender(broker=kis_worker.client_for(sim_dict(kis_sim), rate=50))
    sender.READY_WAIT_S = 60
    sender.prepare()
    started = time.monotonic()
    sender.close()
    assert time.monotonic() - started < 10
