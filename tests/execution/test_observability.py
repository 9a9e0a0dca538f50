"""Observability on the real stack: Prometheus metrics on the web process (/metrics) and on any
other process (the ops server's /metrics and /health), order latencies observed when KIS accepts
an order, the shared state (breakers, queues, reconciliation) read at scrape time, and JSON logs
that carry the intent and order ids."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import Client

from core import metrics
from execution import services
from execution.models import Reconciliation
from execution.services.reconciliation import reconciliation_run
from execution.services.submission import intent_submit
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.ledger import key

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one sample in Prometheus's text format, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        if metric == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return None


def scrape(client: Client | None = None, **headers) -> str:
    answer = (client or Client()).get("/metrics", **headers)
    assert answer.status_code == 200, answer.content
    return answer.content.decode()


def test_an_accepted_order_is_timed_from_its_trigger_and_its_creation(kis_sim):
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    before = (
        sample(scrape(), "aegis_order_latency_seconds_count", path="entry", measured_from="event")
        or 0
    )
    settings.EXECUTION_AUTO_SUBMIT = False
    try:
        intent = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
    finally:
        settings.EXECUTION_AUTO_SUBMIT = True
    assert intent_submit(intent_id=intent.pk, broker=broker).value == "submitted"
    text = scrape()
    for measured_from in ("event", "intent"):
        assert (
            sample(
                text, "aegis_order_latency_seconds_count", path="entry", measured_from=measured_from
            )
            == before + 1
        )


def test_the_shared_state_is_read_when_scraped(kis_sim):
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set("pybreaker:aegis:kis:order:testapp:state", "open")
    client.rpush("picks", "a message nobody consumes")
    try:
        reconciliation_run(
            broker=kis_worker.client_for(sim_dict(kis_sim), rate=50),
            trigger=Reconciliation.Trigger.MANUAL,
        )
        text = scrape()
        assert sample(text, "aegis_breaker_state", breaker="kis-order", app="testapp") == 2
        assert sample(text, "aegis_queue_depth", queue="picks") >= 1
        assert sample(text, "aegis_reconciliation_ok") == 1
        assert 0 <= sample(text, "aegis_reconciliation_age_seconds") < 60
    finally:
        client.delete("pybreaker:aegis:kis:order:testapp:state", "picks")


def test_metrics_can_require_a_token(settings):
    settings.AEGIS_METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert "aegis_ledger_refusals_total" in scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")


def test_other_processes_serve_metrics_and_health_on_their_ops_port():
    server = metrics.ops_server_start("worker", port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/health", timeout=10) as answer:
            health = json.loads(answer.read())
        assert health == {"status": "ok", "process": "worker", "database": "ok", "redis": "ok"}
        with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
            assert b"aegis_task_queue_wait_seconds" in answer.read()
    finally:
        server.shutdown()
        server.server_close()


def test_a_stream_down_past_its_alert_makes_its_process_unhealthy(monkeypatch):
    """pricesync's and the fill stream's /health carry their WebSocket: compose's healthcheck
    then shows a dead feed."""
    import time

    from kis.ws import KisStream

    stream = KisStream(url="ws://127.0.0.1:9", approval_key=lambda: "k", alert_after_s=10)
    monkeypatch.setitem(metrics._process_checks, "stream", stream.health)
    server = metrics.ops_server_start("pricesync", port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def health() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(base + "/health", timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        stream.connections, stream.down_since = 1, time.time() - 3  # a routine reconnect
        assert health() == (
            200,
            {
                "status": "ok",
                "process": "pricesync",
                "database": "ok",
                "redis": "ok",
                "stream": "ok",
            },
        )
        stream.down_since = time.time() - 120
        status, body = health()
        assert status == 503 and body["status"] == "degraded"
        assert body["stream"].startswith("error: down for 12")
    finally:
        server.shutdown()
        server.server_close()


def test_json_logs_carry_the_ids_in_their_own_fields():
    code = (
        "import logging, django; django.setup(); "
        "logging.getLogger('aegis.execution').warning('execution.in_flight order_id=%s', "
        "'o-1', extra={'order_id': 'o-1', 'intent_id': 'i-1'})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "aegis.settings"},
        timeout=60,
    )
    [line] = [json.loads(raw) for raw in out.stderr.splitlines() if raw.startswith("{")]
    assert (line["level"], line["logger"], line["order_id"], line["intent_id"]) == (
        "WARNING",
        "aegis.execution",
        "o-1",
        "i-1",
    )
    assert line["message"] == "execution.in_flight order_id=o-1"
