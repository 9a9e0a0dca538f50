"""Picks through the whole stack: HTTP ingest in this process, a real Celery worker process on
the picks and execution queues, PostgreSQL, Redis and the KIS simulator. A pick sent once, twice
or by several clients at once is one order at the broker; picks stored while Redis was down (no
route task could be enqueued) are routed by the orphan sweep once it is back."""

import re

import pytest
from django.test import Client

from core import clock
from execution.broker import DatabaseVault
from execution.models import Order, Reconciliation
from execution.services.reconciliation import reconciliation_run
from picks.models import GateSettings, Pick
from picks.tasks import picks_sweep_task
from tests.support import at_once, forget_broker_credentials, wait_until
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.picks import CLOCK, a_pick, post, submitted
from tests.support.workers import broker_orders, start_worker, stop_worker
from trading.models import ExitProfile, PositionExitState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def worker(kis_sim_process, django_db_setup, tmp_path_factory):
    from aegis.celery import app

    with app.connection_for_write() as conn:  # no route task left by earlier tests
        conn.default_channel.queue_purge("picks")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(kis_sim_process, log, env=CLOCK.environ(), queues="picks,execution")
    yield log
    stop_worker(proc)


@pytest.fixture
def market(kis_sim, worker):
    forget_broker_credentials()
    kis_sim.control("/_sim/clock", {"start": CLOCK.start.isoformat(), "origin": CLOCK.origin})
    with clock.installed(CLOCK):
        reconciliation_run(
            broker=kis_worker.client_for(sim_dict(kis_sim), rate=50, vault=DatabaseVault()),
            trigger=Reconciliation.Trigger.MANUAL,
        )
        yield kis_sim


@pytest.fixture
def source(make_source, db):
    return make_source(exit_profile=ExitProfile.objects.create(name="news", stop_loss_pct=3))


def test_a_pick_sent_over_http_becomes_an_order_through_the_worker(market, source, worker):
    src, token = source
    # The worker listens on both bells, each on lanes of its own (a flood of picks never
    # takes the threads that send exits): the pick is routed without a route task.
    log = worker.read_text()
    assert re.search(r"doorbell lanes=4 owner=\S+ bells=aegis:execution:doorbell$", log, re.M)
    assert re.search(r"doorbell lanes=2 owner=\S+ bells=aegis:picks:doorbell$", log, re.M)
    before = len(worker.read_text())
    answer = post(Client(), token, [a_pick(src)])
    assert answer.status_code == 202, answer.content
    [pick_id] = answer.json()["ids"]
    order = submitted(pick_id)
    pick = Pick.objects.get(pk=pick_id)
    assert (pick.status, pick.routed_by) == ("ROUTED", "EVENT")
    assert "Task picks.route[" not in worker.read_text()[before:]
    assert PositionExitState.objects.get(position=order.position).profile == src.exit_profile
    assert [o["odno"] for o in broker_orders(market)] == [order.broker_order_no]


def test_the_same_pick_sent_concurrently_and_again_is_one_order(market, source):
    src, token = source
    body = [a_pick(src, 7)]
    answers = at_once(lambda: post(Client(), token, body), [()] * 6)
    answers.append(post(Client(), token, body))  # and once more, later
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["ids"][0] for a in answers}) == 1
    assert sum(a.json()["duplicates"] for a in answers) == len(answers) - 1
    order = submitted(answers[0].json()["ids"][0])
    wait_until(lambda: Pick.objects.filter(status="NEW").count() == 0, "routing to end")
    assert Order.objects.count() == 1
    assert [o["odno"] for o in broker_orders(market)] == [order.broker_order_no]


def test_picks_stored_while_redis_was_down_are_routed_by_the_sweep(market, source, redis_control):
    stop_redis, start_redis = redis_control
    src, token = source
    GateSettings.current()
    GateSettings.objects.filter(pk=1).update(sweep_after_s=1)
    stop_redis()
    try:
        answer = post(Client(), token, [a_pick(src, n, symbol=s) for n, s in enumerate(["005930"])])
    finally:
        start_redis()
    assert answer.status_code == 202, answer.content  # stored; the route task was not sent
    [pick_id] = answer.json()["ids"]
    assert Pick.objects.get(pk=pick_id).status == "NEW"
    wait_until(
        lambda: (clock.now() - Pick.objects.get(pk=pick_id).received_at).total_seconds() > 1,
        "the pick to become an orphan",
    )
    picks_sweep_task.delay()  # what beat sends every minute
    order = submitted(pick_id)
    assert Pick.objects.get(pk=pick_id).routed_by == "SWEEP"
    assert [o["odno"] for o in broker_orders(market)] == [order.broker_order_no]
