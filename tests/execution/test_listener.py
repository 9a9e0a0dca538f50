"""Intents inserted by anything other than Aegis are announced by the trigger and enqueued by the
listener process; Aegis's own inserts are enqueued on commit and not announced twice.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from execution import services
from execution.models import Order, Position
from tests.support import child_database_url, forget_broker_credentials, wait_until
from tests.support.ledger import key, open_position
from tests.support.workers import start_worker, stop_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "execution"


@pytest.fixture
def test_db_url():
    return child_database_url()


@pytest.fixture
def broker(settings):
    settings.EXECUTION_AUTO_SUBMIT = False  # only the listener may enqueue here
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE)


@pytest.fixture
def listener(test_db_url, tmp_path):
    log = tmp_path / "listener.log"
    env = os.environ | {
        "DATABASE_URL": test_db_url,
        "DATABASE_DIRECT_URL": child_database_url("DATABASE_DIRECT_URL"),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "listen_intents"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "listening on new_intent" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def queued_intent_ids(broker) -> list[str]:
    ids = []
    for raw in broker.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "execution.intent_execute"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


def insert_raw(dsn, position, *, status="NEW", commit=True) -> str:
    intent_id = str(uuid.uuid4())
    with psycopg.connect(dsn, application_name="external-writer") as conn:
        conn.execute(
            "INSERT INTO execution_orderintent (id, intent_type, side, position_id, symbol, qty,"
            " status, reason, idempotency_key, event_at, created_at, closed_reason)"
            " VALUES (%s, 'MANUAL', 'SELL', %s, %s, 1, %s, 'outside writer', %s, now(), now(), '')",
            (intent_id, position.pk, position.symbol, status, f"raw:{intent_id}"),
        )
        if commit:
            conn.commit()
        else:
            conn.rollback()
    return intent_id


def test_raw_sql_intents_are_enqueued_by_the_listener(listener, broker, test_db_url, new_symbol):
    position = open_position(new_symbol(), 10)
    # Aegis's own insert: enqueued on commit by Aegis, so the trigger stays quiet.
    services.exit_intent_open(
        position_id=position.pk, qty=1, intent_type="EXIT_TIME", idempotency_key=key()
    )
    insert_raw(test_db_url, position, commit=False)  # rolled back: never announced
    insert_raw(test_db_url, position, status="CANCELLED")  # not NEW: not announced
    wanted = insert_raw(test_db_url, position)

    deadline = time.monotonic() + 30
    while not queued_intent_ids(broker):
        assert time.monotonic() < deadline, "the listener enqueued nothing"
        time.sleep(0.05)
    time.sleep(0.5)  # anything announced in error would have arrived by now
    assert queued_intent_ids(broker) == [wanted]


def test_listener_survives_a_lost_connection(listener, broker, test_db_url, new_symbol):
    position = open_position(new_symbol(), 10)
    with psycopg.connect(test_db_url, autocommit=True) as admin:
        # The killed backend lingers in pg_stat_activity for a moment: only another backend
        # listening counts as the listener back.
        old = [
            pid
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'aegis-listener'"
            )
        ]
        assert old, "no listener to cut off"
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", [old]
        )
    deadline = time.monotonic() + 60
    wanted = None
    while time.monotonic() < deadline:
        with psycopg.connect(test_db_url, autocommit=True) as admin:
            back = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name "
                "= 'aegis-listener' AND query ILIKE 'LISTEN%%' "
                "AND NOT pid = ANY(%s)",
                [old],
            ).fetchone()[0]
        if back:
            wanted = insert_raw(test_db_url, position)
            break
        time.sleep(0.1)
    assert wanted, "the listener did not reconnect"
    while wanted not in queued_intent_ids(broker):
        assert time.monotonic() < deadline, "nothing enqueued after the reconnect"
        time.sleep(0.05)


@pytest.fixture
def worker(kis_sim_process, tmp_path):
    proc = start_worker(kis_sim_process, tmp_path / "worker.log")
    yield
    stop_worker(proc)


def test_a_raw_sql_intent_becomes_one_broker_order(
    kis_sim, worker, listener, broker, test_db_url, new_symbol
):
    """Trigger, listener, queue, worker, KIS: the whole path of an intent Aegis did not write."""
    forget_broker_credentials()  # tokens of a simulator since reset
    symbol = new_symbol()
    kis_sim.control("/_sim/prices", {"pdno": symbol, "price": 10_000})
    kis_sim.account_set({symbol: 10}, avg_price=10_000)
    # The shares, bought before: a broker number the simulator's own numbers cannot meet.
    entry = services.entry_intent_open(
        symbol=symbol, qty=10, limit_price=10_000, idempotency_key=key()
    )
    bought = services.order_open(intent_id=entry.pk)
    services.order_mark_submitted(order_id=bought.pk, broker_order_no=f"before-{symbol}")
    services.fill_apply(order_id=bought.pk, broker_fill_key=key("fill"), qty=10, price=10_000)
    position = Position.objects.get(pk=entry.position_id)

    intent_id = insert_raw(test_db_url, position)
    wait_until(
        lambda: Order.objects.filter(intent_id=intent_id, status="SUBMITTED").exists(),
        "the listener's intent to reach KIS",
    )
    wait_until(lambda: broker.llen(QUEUE) == 0, "the queue to drain")
    order = Order.objects.get(intent_id=intent_id)
    at_kis = [o for o in kis_sim.book()["orders"] if o["pdno"] == symbol]
    assert [(o["odno"], o["side"], o["qty"]) for o in at_kis] == [
        (order.broker_order_no, "SELL", 1)
    ]
    assert Order.objects.filter(intent_id=intent_id).count() == 1
