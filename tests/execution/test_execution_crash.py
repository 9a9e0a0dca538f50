"""kill -9 of the worker around the broker call: after a restart there is exactly one broker order
per intent and no intent is lost (ARCHITECTURE.md, I4).

The simulator holds requests (its faults) so the worker can be killed at a known point: after KIS
took its order but before the answer came back, or while it was still fetching a token.
"""

import os
import signal
import time

import pytest
from django.core.cache import cache

from execution import services
from execution.models import Order, OrderIntent
from execution.tasks import sweep
from tests.support.kis import client_for, sim_dict
from tests.support.ledger import key
from tests.support.workers import (
    broker_orders,
    start_worker,
    stop_worker,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def held(sim, path_end: str) -> bool:
    return any(e["path"].endswith(path_end) and e["status"] is None for e in sim.book()["requests"])


def crash_and_recover(sim, tmp_path, *, faults: dict, held_path: str, token_ready: bool):
    cache.clear()
    if token_ready:  # the worker finds a shared token: its first request is the order itself
        client_for(sim_dict(sim), rate=50).access_token(
            client_for(sim_dict(sim), rate=50).config.order_app
        )
    log = tmp_path / "worker.log"
    proc = start_worker(sim, log)
    try:
        sim.control("/_sim/faults", faults)
        intent = services.entry_intent_open(symbol="005930", qty=6, idempotency_key=key())
        wait_until(lambda: held(sim, held_path), f"a request to {held_path} to be held")
        order = Order.objects.get(intent=intent)
        # Claimed right before the order's write: not yet while its token is still awaited.
        assert order.status == "NEW" and (order.send_started_at is not None) == token_ready
        os.killpg(proc.pid, signal.SIGKILL)  # the whole worker, mid-call
        proc.wait()
        sim.control("/_sim/faults", method="DELETE")
        proc = start_worker(sim, log)
        deadline = time.monotonic() + 90
        while Order.objects.get(pk=order.pk).status != "SUBMITTED":  # beat's sweep, faster
            assert time.monotonic() < deadline, "the order in flight was never settled"
            sweep()
            time.sleep(1)
        return intent, Order.objects.get(pk=order.pk)
    finally:
        stop_worker(proc)


def test_killed_after_the_order_reached_kis(kis_sim, tmp_path):
    # KIS takes the order at once and holds its answer: the worker dies waiting for it.
    intent, order = crash_and_recover(
        kis_sim,
        tmp_path,
        held_path="order-cash",
        token_ready=True,
        faults={"timeout_next": 1, "timeout_s": 30, "after": True},
    )
    assert kis_sim.book()["orders"], "the order should have reached KIS before the kill"
    orders = broker_orders(kis_sim)
    assert len(orders) == 1 and orders[0]["odno"] == order.broker_order_no  # adopted, not resent
    assert OrderIntent.objects.get(pk=intent.pk).status == "ORDERED"
    assert Order.objects.filter(intent=intent).count() == 1


def test_killed_before_the_order_left(kis_sim, tmp_path):
    # The worker dies while still asking for a token: its order never left.
    intent, order = crash_and_recover(
        kis_sim,
        tmp_path,
        held_path="/oauth2/tokenP",
        token_ready=False,
        faults={"latency_ms": 30_000},
    )
    orders = broker_orders(kis_sim)
    assert len(orders) == 1 and orders[0]["odno"] == order.broker_order_no  # sent once, later
    assert Order.objects.filter(intent=intent).count() == 1
