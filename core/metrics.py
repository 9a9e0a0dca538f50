"""Prometheus metrics (prometheus_client) and the small HTTP server that serves them, with a health
check, from the processes that are not the web server.

Each process keeps its own counters and histograms: the web process serves them at /metrics,
a worker or pricesync at http://AEGIS_OPS_ADDR:AEGIS_OPS_PORT/metrics (and /health) when
AEGIS_OPS_PORT is set. The state that belongs to no process (the KIS circuit breakers, the
queue depths, the last reconciliation) is read from Redis and PostgreSQL when scraped.
"""

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from django.conf import settings
from django.db import close_old_connections, connection
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger("core.metrics")

# 1 ms to 60 s: the hot paths live in the first buckets, the baselines in the last.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

ORDER_LATENCY = Histogram(
    "aegis_order_latency_seconds",
    "From the intent's trigger (event: the trade, the pick's arrival) or its creation (intent) "
    "to KIS's answer accepting the order.",
    ["path", "measured_from"],
    buckets=LATENCY_BUCKETS,
)
TASK_QUEUE_WAIT = Histogram(
    "aegis_task_queue_wait_seconds",
    "How long a Celery task waited in its queue.",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
LEDGER_REFUSALS = Counter(
    "aegis_ledger_refusals_total", "Exits the ledger refused: nothing left to sell."
)
PICK_REJECTIONS = Counter("aegis_pick_rejections_total", "Picks a gate refused.", ["gate"])
PICK_MARKET_READS = Counter(
    "aegis_pick_market_reads_total",
    "The router's market reads: joined (begun by the ingest's heads-up) or its own.",
    ["read"],
)
ALERTS = Counter("aegis_alerts_total", "Alerts raised.", ["kind", "severity"])

_BREAKER_VALUE = {"closed": 0, "half-open": 1, "open": 2}


def order_path(intent_type: str) -> str:
    if intent_type == "ENTRY":
        return "entry"
    if intent_type.startswith("EXIT_") or intent_type == "GAP_DOWN":
        return "exit"
    return "other"


def order_accepted(*, intent_type: str, created_at, event_at, submitted_at) -> None:
    """An order KIS accepted: its latency from the intent's trigger and from its creation."""
    path = order_path(intent_type)
    if created_at is not None:
        ORDER_LATENCY.labels(path, "intent").observe(
            max(0.0, (submitted_at - created_at).total_seconds())
        )
    if event_at is not None:
        ORDER_LATENCY.labels(path, "event").observe(
            max(0.0, (submitted_at - event_at).total_seconds())
        )


# What an app adds to the shared state (execution: the last reconciliation): callables yielding
# metric families at scrape time, each leaving out what it cannot read, never raising.
_state_collectors: list[Callable[[], Iterable]] = []


def state_collector_register(collect: Callable[[], Iterable]) -> None:
    if collect not in _state_collectors:
        _state_collectors.append(collect)


class SharedState:
    """Collected at scrape time: breaker states (Redis), queue depths (Redis), and what the apps
    registered. A source that cannot be read is left out, never raised."""

    def __init__(self) -> None:
        self._redis = None

    def _client(self):
        """One Redis client for every scrape (its pool keeps the connection)."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        return self._redis

    def collect(self):
        yield from self._redis_state()
        for collect in list(_state_collectors):
            yield from collect()

    def _redis_state(self):

        if not settings.REDIS_URL:
            return

        breakers = GaugeMetricFamily(
            "aegis_breaker_state",
            "KIS circuit breakers: 0 closed, 1 half-open, 2 open.",
            labels=["breaker", "app"],
        )
        queues = GaugeMetricFamily(
            "aegis_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        try:
            client = self._client()
            for key in client.scan_iter(match="pybreaker:aegis:kis:*:state", count=100):
                _, _, _, use, app, _ = key.decode().split(":")
                state = (client.get(key) or b"closed").decode()
                breakers.add_metric([f"kis-{use}", app], _BREAKER_VALUE.get(state, 2))
            routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
            for queue in sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE}):
                queues.add_metric([queue], client.llen(queue))
        except redis.RedisError as exc:
            logger.warning("metrics.redis_unavailable error=%s", type(exc).__name__)
            return
        yield breakers
        yield queues


_registered = False
_lock = threading.Lock()


def exposition() -> bytes:
    """This process's metrics and the shared state, in Prometheus's text format."""
    global _registered
    with _lock:
        if not _registered:
            REGISTRY.register(SharedState())
            _registered = True
    return generate_latest(REGISTRY)


# A process's own checks beside the database and Redis (pricesync's and the fill stream's
# WebSocket): name -> a callable returning "ok" or what is wrong.
_process_checks: dict[str, Callable[[], str]] = {}


def health_check_register(name: str, check: Callable[[], str]) -> None:
    _process_checks[name] = check


def database_check() -> str:
    """ "ok", or the error's type: a health check reports, never raises."""

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}"


def health_checks() -> dict[str, str]:
    """The database and Redis, as this process reaches them, and its own checks."""

    checks = {"database": database_check()}
    for name, check in list(_process_checks.items()):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
            checks[name] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5).ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    return checks


class _OpsHandler(BaseHTTPRequestHandler):
    process = "process"

    def do_GET(self):  # noqa: N802 - the http.server API

        close_old_connections()
        if self.path.split("?")[0] == "/metrics":
            body, status, kind = exposition(), 200, CONTENT_TYPE_LATEST
        elif self.path.split("?")[0] in ("/health", "/health/"):
            checks = health_checks()
            healthy = all(v == "ok" for v in checks.values())
            body = json.dumps(
                {"status": "ok" if healthy else "degraded", "process": self.process, **checks}
            ).encode()
            status, kind = (200 if healthy else 503), "application/json"
        else:
            body, status, kind = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def ops_server_start(
    process: str, port: int | None = None, addr: str | None = None
) -> ThreadingHTTPServer | None:
    """Serve /metrics and /health from this process on AEGIS_OPS_PORT (or `port`); None when
    no port is configured. 127.0.0.1 unless AEGIS_OPS_ADDR says otherwise."""
    port = port if port is not None else int(os.environ.get("AEGIS_OPS_PORT") or 0) or None
    if port is None:
        return None
    addr = addr or os.environ.get("AEGIS_OPS_ADDR", "127.0.0.1")
    handler = type("OpsHandler", (_OpsHandler,), {"process": process})
    server = ThreadingHTTPServer((addr, port), handler)
    threading.Thread(target=server.serve_forever, name="ops-server", daemon=True).start()
    logger.info(
        "metrics.serving process=%s addr=%s port=%s", process, addr, server.server_address[1]
    )
    return server
