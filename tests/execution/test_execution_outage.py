"""Redis stops for a few seconds while intents commit: the intents are safe in PostgreSQL, and
once Redis is back every one of them is executed exactly once (the sweep re-enqueues them).
"""

import time

import pytest

from execution import services
from execution.models import Order, OrderIntent
from execution.tasks import sweep
from tests.support import holds_for
from tests.support.ledger import key
from tests.support.workers import (
    broker_orders,
    start_worker,
    stop_worker,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_intents_committed_while_redis_is_down_are_executed_once(kis_sim, tmp_path, redis_control):
    stop_redis, start_redis = redis_control
    worker = start_worker(kis_sim, tmp_path / "worker.log")
    try:
        before = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
        wait_until(
            lambda: Order.objects.filter(intent=before, status="SUBMITTED").exists(),
            "the first order",
        )
        stop_redis()
        during = [
            services.entry_intent_open(symbol="005930", qty=2, idempotency_key=key())
            for _ in range(3)
        ]  # each commits; publishing its task fails and is logged
        # Nothing left: each is NEW, or ORDERED with its order recorded and then released
        # (the worker's lanes were listening a moment ago, but the ring found nobody).
        assert not Order.objects.filter(intent__in=during, send_started_at__isnull=False)
        assert all(OrderIntent.objects.get(pk=i.pk).status in ("NEW", "ORDERED") for i in during)
        start_redis()
        deadline = time.monotonic() + 90
        while Order.objects.filter(intent__in=during, status="SUBMITTED").count() < 3:
            assert time.monotonic() < deadline, "intents from the outage were never executed"
            sweep()  # what beat does every few seconds
            time.sleep(1)
        for intent in [before, *during]:
            assert Order.objects.filter(intent=intent).count() == 1
        # One broker order per intent, and it stays so: a late duplicate would show here.
        holds_for(lambda: len(broker_orders(kis_sim)) == 4, 3.0, "one broker order per intent")
        # Redis came back empty; the worker's processes found the token in the vault instead
        # of asking KIS again (which KIS refuses within a minute).
        assert sum(kis_sim.book()["token_issuance"].values()) == 1
    finally:
        stop_worker(worker)
