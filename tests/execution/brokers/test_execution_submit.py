"""Intents become broker orders through a real Celery worker process and the KIS simulator:
exactly one broker order per intent, however often the task is delivered; a broker refusal
releases the shares.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from aegis import clock
from execution import services
from execution.models import Order, OrderIntent, Position
from execution.tasks import intent_execute, sweep
from tests.ledger_helpers import key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def worker(kis_sim_process, django_db_setup, tmp_path_factory):
    sim = kis_sim_process
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_db = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    env = os.environ | {
        "DATABASE_URL": test_db, "KIS_ENV": "simulator", "KIS_FLAVOUR": sim.flavour,
        "KIS_BASE_URL": sim.base_url, "KIS_WS_URL": sim.ws_url,
        "KIS_ACCOUNT": f"{sim.cano}-{sim.acnt_prdt_cd}", "KIS_HTS_ID": sim.hts_id,
        "KIS_QUERY_APP_KEY": sim.appkey, "KIS_QUERY_APP_SECRET": sim.appsecret,
    }
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "aegis", "worker", "-Q", "execution",
             "-c", "4", "--pool", "prefork", "-l", "info", "--without-gossip",
             "--without-mingle", "-n", f"exec-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while "ready." not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    yield log
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def broker_orders(sim):
    return sim.book()["orders"]


def test_entry_intent_becomes_exactly_one_broker_order(kis_sim, worker):
    intent = services.entry_intent_open(symbol="005930", qty=10, idempotency_key=key())
    wait_for(lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
             "the order to be submitted")
    for _ in range(3):  # redelivered, or delivered by the sweep and the listener as well
        intent_execute.delay(str(intent.pk))
    time.sleep(1.0)
    order = Order.objects.get(intent=intent)
    assert order.broker_order_no and order.send_started_at and order.submitted_at
    mine = [o for o in broker_orders(kis_sim) if o["odno"] == order.broker_order_no]
    assert len(mine) == 1 and len(broker_orders(kis_sim)) == 1
    intent.refresh_from_db()
    assert intent.status == OrderIntent.Status.ORDERED and intent.ordered_at


def test_broker_refusal_rejects_the_order_and_releases_the_shares(kis_sim, worker):
    # The ledger holds shares the broker does not: KIS refuses the sell (no short selling).
    entry = services.entry_intent_open(symbol="005930", qty=5, idempotency_key=key())
    wait_for(lambda: Order.objects.filter(intent=entry, status="SUBMITTED").exists(), "entry")
    order = Order.objects.get(intent=entry)
    services.fill_apply(order_id=order.pk, broker_fill_key=key("local"), qty=5, price=71_000)
    position = Position.objects.get(pk=entry.position_id)
    kis_sim.control("/_sim/accounts", {"cano": kis_sim.cano, "acnt_prdt_cd": kis_sim.acnt_prdt_cd,
                                       "cash": 100_000_000, "hts_id": kis_sim.hts_id,
                                       "holdings": []})
    exit_ = services.exit_intent_open(position_id=position.pk, qty=5,
                                      intent_type="EXIT_STOP_LOSS", idempotency_key=key())
    wait_for(lambda: Order.objects.filter(intent=exit_, status="REJECTED").exists(),
             "the broker's refusal")
    position.refresh_from_db()
    assert (position.qty, position.reserved_qty) == (5, 0)
    assert "APBK" in Order.objects.get(intent=exit_).reject_reason


def test_sweep_sends_intents_whose_enqueue_was_lost(kis_sim, worker, settings):
    settings.EXECUTION_AUTO_SUBMIT = False  # as if the broker was down at commit
    intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    assert sweep()["intents"] == 0  # too young: still on its normal path
    with clock.installed(clock.FixedClock(clock.now() + dt.timedelta(seconds=5))):
        assert sweep()["intents"] == 1
    wait_for(lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
             "the swept intent to be submitted")
    assert len([o for o in broker_orders(kis_sim)
                if o["odno"] == Order.objects.get(intent=intent).broker_order_no]) == 1


def test_sweep_leaves_intents_alone_while_halted(kis_sim, worker, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    services.trading_state_set(state="HALTED", reason="test", changed_by="pytest")
    with clock.installed(clock.FixedClock(clock.now() + dt.timedelta(seconds=5))):
        assert sweep()["intents"] == 0
