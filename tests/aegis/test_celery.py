"""The Celery wiring on real Redis and a real worker process: tasks are published only after the
transaction that made their work commits (I5), and every task's queue wait and run time is logged.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import transaction

from aegis.celery import app, ping
from tests.support import child_database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "default"


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE)
    client.close()


def test_task_is_published_only_after_commit(broker):
    with transaction.atomic():
        ping.delay_on_commit()
        assert broker.llen(QUEUE) == 0, "published before the commit"
    assert broker.llen(QUEUE) == 1


def test_rolled_back_transaction_publishes_nothing(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        ping.delay_on_commit()
        raise RuntimeError("roll back")
    assert broker.llen(QUEUE) == 0


def test_broker_safety_settings():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.beat_scheduler == "trading.beat:ExitCadenceScheduler"
    assert not conf.task_always_eager  # the suite runs a real broker


def _wait_for(pattern: str, log: Path, deadline: float) -> re.Match | None:
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match
        time.sleep(0.2)
    return None


def test_real_worker_runs_the_task_and_logs_its_queue_wait(broker, tmp_path):
    env = os.environ | {"DATABASE_URL": child_database_url()}
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "aegis",
                "worker",
                "-Q",
                QUEUE,
                "-c",
                "2",
                "--pool",
                "prefork",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"pytest-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert _wait_for(r"ready\.", log, time.monotonic() + 90), log.read_text()[-3000:]
        with transaction.atomic():
            ping.delay_on_commit()
        match = _wait_for(
            r"task\.timing name=aegis\.ping id=\S+ state=SUCCESS queue_wait_ms=([\d.]+) "
            r"run_ms=([\d.]+)",
            log,
            time.monotonic() + 60,
        )
        assert match, log.read_text()[-3000:]
        assert float(match.group(1)) >= 0 and float(match.group(2)) >= 0
        assert broker.llen(QUEUE) == 0  # consumed
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_broker_connections_have_bounded_connects_and_reads():
    """A Redis that stalls costs a publish AEGIS_BROKER_TIMEOUT_S, then an error: the transport
    options reach redis-py's connections."""
    timeout = settings.BROKER_TIMEOUT_S
    assert 0 < timeout <= 10
    with app.connection_for_write() as conn:
        kwargs = conn.default_channel.client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == timeout
        assert kwargs["socket_connect_timeout"] == timeout
    assert app.conf.broker_connection_timeout == timeout
