"""The picks router's doorbell (picks/doorbell.py) on real Redis, PostgreSQL and the KIS
simulator, its lanes in this process: a stored pick reaches a listening lane without a Celery
message and becomes an order at the broker; with nobody listening the route task is queued as
before; a pick a lane cannot route goes to the route task; a lane serves both bells."""

import dataclasses
import datetime as dt
import json

import pytest
import redis
from django.conf import settings
from django.db import DatabaseError

from core import bus as core_bus
from core import clock
from execution import dispatch
from execution import doorbell as execution_doorbell
from execution.models import Order
from market.models import BestPrice
from picks import doorbell, gates
from picks.models import GateSettings, Pick
from tests.support import wait_until
from tests.support.picks import a_pick, ingest, submitted
from tests.support.workers import broker_orders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASK_QUEUE = "picks"  # where the route task's messages wait (settings.CELERY_TASK_ROUTES)
EXECUTE_QUEUE = "execution"  # the execute task's (what earlier tests left there goes too)
KEYS = (
    TASK_QUEUE,
    EXECUTE_QUEUE,
    doorbell.QUEUE_KEY,
    doorbell.LANES_KEY,
    execution_doorbell.QUEUE_KEY,
    execution_doorbell.LANES_KEY,
)


@pytest.fixture
def bus():
    """Redis with no route-task or execute-task messages, nothing rung and nobody listening."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*KEYS)
    execution_doorbell.listening_forget()
    yield client
    client.delete(*KEYS)
    execution_doorbell.listening_forget()
    client.close()


@pytest.fixture
def routers(broker, bus):
    """Lanes on both bells, as in the worker that consumes the execution and picks queues."""
    running = core_bus.Lanes(
        count=2,
        broker=broker,
        owner="test-routers",
        bells=(execution_doorbell.EXECUTION, doorbell.PICKS),
    ).start()
    yield running
    running.stop()


def test_a_stored_pick_is_routed_by_a_listening_lane_and_no_task_is_queued(
    kis_sim, bus, routers, source
):
    [pick_id] = ingest(source, a_pick(source[0]))
    order = submitted(pick_id)
    assert bus.llen(TASK_QUEUE) == 0, "a route task was published as well"
    pick = Pick.objects.get(pk=pick_id)
    assert (pick.status, pick.routed_by) == ("ROUTED", "EVENT")
    assert [o["odno"] for o in broker_orders(kis_sim)] == [order.broker_order_no]
    # The quote the router asked for is kept as the best price, off the route's path.
    wait_until(
        lambda: BestPrice.objects.filter(
            symbol="005930", source="REST", price=kis_sim.price
        ).exists(),
        "the quote kept as the best price",
    )

    assert doorbell.ring(
        [doorbell.item(pick_id, gates.Ask.of(pick))]
    )  # rung again (a late duplicate): routed once
    wait_until(lambda: bus.llen(doorbell.QUEUE_KEY) == 0, "the lanes to take the second ring")
    wait_until(lambda: len(broker_orders(kis_sim)) == 1, "one broker order")
    assert Order.objects.filter(intent__picks=pick_id).count() == 1


def test_picks_of_a_batch_are_rung_one_by_one_and_routed_oldest_first(kis_sim, bus, source):
    listening = core_bus.Lanes(count=1, owner="not-started-yet", bells=(doorbell.PICKS,))
    listening._alive()  # listening, its threads not started: the rings wait on the list
    ids = ingest(
        source,
        *(a_pick(source[0], n, symbol=s) for n, s in enumerate(["005930", "000660", "035420"])),
    )
    heads_up, *rung = [json.loads(i) for i in reversed(bus.lrange(doorbell.QUEUE_KEY, 0, -1))]
    # First the heads-up, sent before the batch was stored, then one ring per stored pick.
    assert [a["symbol"] for a in heads_up["heads_up"]] == ["005930", "000660", "035420"]
    assert [(r["id"], r["symbol"]) for r in rung] == list(zip(ids, ["005930", "000660", "035420"]))
    assert bus.llen(TASK_QUEUE) == 0


def test_a_batch_larger_than_the_heads_up_max_is_only_rung(bus, source, settings):
    settings.PICKS_HEADS_UP_MAX = 2
    listening = core_bus.Lanes(count=1, owner="not-started-yet", bells=(doorbell.PICKS,))
    listening._alive()
    ids = ingest(
        source,
        *(a_pick(source[0], n, symbol=s) for n, s in enumerate(["005930", "000660", "035420"])),
    )
    rung = [json.loads(i) for i in reversed(bus.lrange(doorbell.QUEUE_KEY, 0, -1))]
    assert [r.get("id") for r in rung] == ids


def test_a_heads_up_begins_the_market_read_of_the_picks_that_pass_the_screen(
    kis_sim, broker, source, fetches
):
    fresh = gates.Ask(
        side="BUY",
        symbol="005930",
        qty=None,
        budget_krw=1_000_000,
        limit_price=71_000,
        generated_at=clock.now(),
    )
    stale = dataclasses.replace(
        fresh, symbol="000660", generated_at=clock.now() - dt.timedelta(hours=1)
    )
    doorbell.PICKS.serve(doorbell.heads_up_item([fresh, stale]), broker)
    assert set(fetches) == {"005930"}
    quote, _ = fetches["005930"].quote.result(timeout=10)
    assert quote.price == 71_000


def test_with_nobody_listening_the_route_task_is_queued(bus, source):
    [pick_id] = ingest(source, a_pick(source[0]))
    assert bus.llen(TASK_QUEUE) == 1 and bus.llen(doorbell.QUEUE_KEY) == 0
    assert Pick.objects.get(pk=pick_id).status == "NEW"


def test_a_lane_that_cannot_route_hands_the_pick_to_the_route_task(bus, monkeypatch, source):
    def broken(*args, **kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr("picks.doorbell.route_now", broken)
    [pick_id] = ingest(source, a_pick(source[0]))  # nobody listens: the task is queued
    bus.delete(TASK_QUEUE)
    doorbell.PICKS.serve(
        doorbell.item(pick_id, gates.Ask.of(Pick.objects.get(pk=pick_id))), None
    )  # what a lane does with the ring
    assert bus.llen(TASK_QUEUE) == 1
    assert Pick.objects.get(pk=pick_id).status == "NEW"


def test_the_lanes_serve_the_execution_bell_too(kis_sim, bus, routers):
    from execution import services
    from tests.support.ledger import key

    with dispatch.installed(None):  # this process sends nothing itself: to the doorbell
        intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
        "the order at the broker",
    )
    assert bus.llen(EXECUTE_QUEUE) == 0


def test_a_rung_pick_is_routed_on_its_row_whatever_the_ring_said(kis_sim, bus, broker, source):
    # The ring is only a screen before the market is read: a ring that says the pick is stale
    # while its row is fresh still routes it (the long way), and a new installation's missing
    # gate settings row is made on the way.
    GateSettings.objects.all().delete()
    [pick_id] = ingest(source, a_pick(source[0]))  # nobody listens: the task is queued
    pick = Pick.objects.get(pk=pick_id)
    rung = dataclasses.replace(
        gates.Ask.of(pick), generated_at=pick.generated_at - dt.timedelta(hours=1)
    )
    doorbell.PICKS.serve(doorbell.item(pick_id, rung), broker)
    order = submitted(pick_id)
    assert Pick.objects.get(pk=pick_id).status == "ROUTED"
    assert [o["odno"] for o in broker_orders(kis_sim)] == [order.broker_order_no]
    assert GateSettings.objects.filter(pk=1).exists()
