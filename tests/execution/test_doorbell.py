"""The doorbell (execution/doorbell.py) on real Redis, PostgreSQL and the KIS simulator: a
committed intent reaches a listening lane without a Celery message; with nobody listening the
execute task is queued as before; an id lost with its lane is sent by the sweep; and a real
execution worker listens on it."""

import datetime as dt
import json
import re

import pytest
import redis
from django.conf import settings
from django.db import transaction

from core import bus as core_bus
from core import clock
from execution import doorbell, services
from execution.models import Order, OrderIntent
from execution.tasks import SWEEP_AGE, sweep
from tests.support import kis as kis_worker
from tests.support import wait_until
from tests.support.kis import sim_dict
from tests.support.ledger import key
from tests.support.workers import broker_orders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASK_QUEUE = "execution"  # where the execute task's messages wait (settings.CELERY_TASK_ROUTES)


@pytest.fixture
def bus():
    """Redis with no execute-task messages, no doorbell ids and nobody listening."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(TASK_QUEUE, doorbell.QUEUE_KEY, doorbell.LANES_KEY)
    doorbell.listening_forget()
    yield client
    client.delete(TASK_QUEUE, doorbell.QUEUE_KEY, doorbell.LANES_KEY)
    client.close()


@pytest.fixture
def lanes(kis_sim, bus):
    running = core_bus.Lanes(
        count=2,
        broker=kis_worker.client_for(sim_dict(kis_sim), rate=50),
        owner="test-lanes",
        bells=(doorbell.EXECUTION,),
    ).start()
    yield running
    running.stop()


def _listening_as(lanes: "core_bus.Lanes | str") -> None:
    """A lane owner renewed, as if its lanes listened (whatever their threads do), and seen so
    by the next intent's transaction."""
    if isinstance(lanes, str):
        lanes = core_bus.Lanes(count=1, owner=lanes, bells=(doorbell.EXECUTION,))
    lanes._alive()
    doorbell.listening_forget()


def _submitted(intent) -> Order:
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
        "the order at the broker",
    )
    return Order.objects.get(intent=intent)


def test_a_listening_lane_sends_the_order_and_no_task_is_queued(kis_sim, bus, lanes):
    intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    order = _submitted(intent)
    assert bus.llen(TASK_QUEUE) == 0, "a Celery message was published as well"
    assert [o["odno"] for o in broker_orders(kis_sim)] == [order.broker_order_no]

    assert doorbell.ring(str(intent.pk))  # rung again (a late duplicate): the claim holds
    wait_until(lambda: bus.llen(doorbell.QUEUE_KEY) == 0, "the lanes to take the second ring")
    wait_until(
        lambda: [o["odno"] for o in broker_orders(kis_sim)] == [order.broker_order_no],
        "one broker order",
    )
    assert Order.objects.filter(intent=intent).count() == 1


def test_with_nobody_listening_the_execute_task_is_queued(bus):
    intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    assert bus.llen(TASK_QUEUE) == 1 and bus.llen(doorbell.QUEUE_KEY) == 0
    assert OrderIntent.objects.get(pk=intent.pk).status == "NEW"


def test_stopped_lanes_stop_answering_at_once(kis_sim, bus):
    running = core_bus.Lanes(
        count=1,
        broker=kis_worker.client_for(sim_dict(kis_sim), rate=50),
        owner="test-stop",
        bells=(doorbell.EXECUTION,),
    ).start()
    assert doorbell.ring("probe")  # answered: the id waits for the lane
    wait_until(lambda: bus.llen(doorbell.QUEUE_KEY) == 0, "the lane to take the probe")
    running.stop()
    assert not doorbell.ring("probe") and bus.llen(doorbell.QUEUE_KEY) == 0


def test_whether_lanes_listen_is_asked_of_redis_at_most_once_a_ttl(bus, monkeypatch):
    # Asked inside the intent's transaction: a fresh answer costs a round trip under the lock.
    monkeypatch.setattr(doorbell, "LISTENING_TTL_S", 600)  # however slow this machine is
    assert not doorbell.listening()
    core_bus.Lanes(count=1, owner="late-starter", bells=(doorbell.EXECUTION,))._alive()
    assert not doorbell.listening()  # the kept answer
    monkeypatch.setattr(doorbell, "_listening", (0.0, False))  # the TTL ran out
    assert doorbell.listening()


def test_a_lane_that_lapses_is_not_counted(bus):
    # A process that died keeps its entry until it lapses; then rings go to the execute task.
    bus.zadd(doorbell.LANES_KEY, {"dead-process": 0})
    assert not doorbell.ring("probe") and bus.llen(doorbell.QUEUE_KEY) == 0


def test_with_a_lane_listening_the_order_is_recorded_in_the_intents_own_transaction(kis_sim, bus):
    listener = core_bus.Lanes(
        count=1,
        broker=kis_worker.client_for(sim_dict(kis_sim), rate=50),
        owner="claimed-path",
        bells=(doorbell.EXECUTION,),
    )
    _listening_as(listener)  # listening, its threads not started yet
    intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    assert intent.status == "ORDERED"
    order = Order.objects.get(intent=intent)  # recorded before the commit, claimed by the send
    assert (order.status, order.broker_order_no, order.send_started_at) == ("NEW", None, None)
    [rung] = bus.lrange(doorbell.QUEUE_KEY, 0, -1)
    assert json.loads(rung)["order"] == str(order.pk) and bus.llen(TASK_QUEUE) == 0
    listener.start()
    try:
        sent = _submitted(intent)
    finally:
        listener.stop()
    assert sent.pk == order.pk
    assert [o["odno"] for o in broker_orders(kis_sim)] == [sent.broker_order_no]
    assert Order.objects.get(pk=order.pk).send_attempts == 1


def test_an_order_that_nobody_hears_goes_to_the_execute_task(bus):
    _listening_as("gone-before-the-commit")
    with transaction.atomic():
        intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
        bus.delete(doorbell.LANES_KEY)  # the worker stops before the ring
    order = Order.objects.get(intent=intent)
    assert (order.status, order.send_started_at) == ("NEW", None)  # free for the task to claim
    assert bus.llen(TASK_QUEUE) == 1 and bus.llen(doorbell.QUEUE_KEY) == 0


def test_an_order_left_with_a_dead_lane_is_sent_by_the_sweep_from_its_row(bus):
    # A lane listens (its owner renewed) but dies before taking the ring: the order stays
    # recorded and unclaimed; the sweep hands its intent to the execute task, which claims it.
    _listening_as("dies-at-once")
    services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    assert bus.llen(doorbell.QUEUE_KEY) == 1 and bus.llen(TASK_QUEUE) == 0
    later = clock.FixedClock(clock.now() + SWEEP_AGE + dt.timedelta(seconds=1))
    with clock.installed(later):
        assert sweep() == {"intents": 1, "orders_in_flight": 0}
    assert bus.llen(TASK_QUEUE) == 1  # the execute task, on its way to a worker


def test_the_execution_worker_listens_on_the_doorbell(kis_sim, bus, tmp_path):
    from tests.support.workers import start_worker, stop_worker

    log = tmp_path / "worker.log"
    proc = start_worker(kis_sim, log)
    try:
        wait_until(lambda: "doorbell lanes=4" in log.read_text(), "the lanes")
        # The worker consumes the execution queue only: its lanes serve the execution bell.
        assert re.search(
            rf"doorbell lanes=4 owner=\S+ bells={doorbell.QUEUE_KEY}$", log.read_text(), re.M
        )
        intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
        order = _submitted(intent)
        assert [o["odno"] for o in broker_orders(kis_sim)] == [order.broker_order_no]
        assert re.search(
            rf"execution\.sent_in_process intent_id={intent.pk} "
            r"outcome=submitted",
            log.read_text(),
        )
    finally:
        stop_worker(proc)
    assert not doorbell.ring("probe"), "the worker's lanes still answer after it stopped"


def test_a_push_whose_answer_is_read_later(bus):
    core_bus.reset()  # as a process that has not rung yet: its first push is answered too
    wait_until(lambda: not core_bus.unanswered_paused(), "an earlier test's pause to end")
    # Nobody listens: nothing pushed.
    sent = core_bus.push_unanswered(doorbell.EXECUTION, ["early"])
    assert sent.answered() is False and bus.llen(doorbell.QUEUE_KEY) == 0
    _listening_as("push-unanswered")
    sent = core_bus.push_unanswered(doorbell.EXECUTION, ["early"])
    assert bus.lrange(doorbell.QUEUE_KEY, 0, -1) == [b"early"]  # there before it is answered
    assert sent.answered() is True
    assert sent.answered() is False  # read once; the connection is back in its pool


def test_after_redis_failed_no_push_whose_answer_is_read_later_is_tried_for_a_while(
    bus, settings, monkeypatch
):
    from tests.support import free_port

    monkeypatch.setattr(core_bus, "UNANSWERED_PAUSE_S", 3.0)
    wait_until(lambda: not core_bus.unanswered_paused(), "an earlier test's pause to end")
    _listening_as("push-unanswered")
    live = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody there
    core_bus.reset()
    try:
        assert core_bus.push_unanswered(doorbell.EXECUTION, ["early"]).answered() is False
        assert core_bus.unanswered_paused()
        # Redis answers again, but the pause holds: nothing is sent until it ends.
        settings.REDIS_URL = live
        core_bus.reset()
        assert core_bus.push_unanswered(doorbell.EXECUTION, ["early"]).answered() is False
        assert bus.llen(doorbell.QUEUE_KEY) == 0
        wait_until(lambda: not core_bus.unanswered_paused(), "the pause to end", timeout=10)
        _listening_as("push-unanswered")  # renewed: a lane owner's mark outlives no pause
        assert core_bus.push_unanswered(doorbell.EXECUTION, ["early"]).answered() is True
    finally:
        settings.REDIS_URL = live
        core_bus.reset()
    assert bus.llen(doorbell.QUEUE_KEY) == 1
