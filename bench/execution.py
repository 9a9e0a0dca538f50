"""Benchmark: intent commit → order accepted by the broker, event-driven against the review's
poller, in the same run, on PostgreSQL, Redis, a real Celery worker and the KIS simulator.

  event   Aegis: the intent's transaction commits; on commit its id is handed to the execution
          worker, which records the order, calls the simulator and stores its order number.
          Measured once per way of running that worker (BENCH_POOLS, each with its own worker
          process; the first, as deployed, is the headline figure):
            doorbell  threads pool with the doorbell's lanes (execution/doorbell.py): the id
                      goes over one Redis list, no Celery hop;
            threads   the same pool with the doorbell off: the execute task, a Celery hop;
            prefork   (and solo) the execute task on those pools.
  poller  the review's baseline: a loop that reads NEW intents every second and submits them
          (the same submission code, in the poller's process).

Latency is the order's submitted_at (taken when the broker's answer is in) minus the moment the
intent's transaction committed (an on_commit callback that runs before the service's enqueue),
and, stricter, minus the intent's created_at (taken early inside the writer's transaction).
Arrivals are paced with random gaps (BENCH_GAP_MS mean). The simulator steps its prices every
20 ms, so orders fill and its books stay small. Prints a table and a JSON line; never fails on
a time. Run it with `make bench`.
"""

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.stats import figures
from kis_simulator.process import SimulatorNotStarted, simulator_start, simulator_stop

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("BENCH_INTENTS", "1000"))
# Mean gap between intents. Each execution costs this 2-core machine ~16 ms of ORM work, so
# arrivals every 10 ms or less queue up behind each other and measure the queue, not the path.
GAP_MS = float(os.environ.get("BENCH_GAP_MS", "50"))
SYMBOL = "005930"


def start_simulator(appkey: str, appsecret: str) -> tuple[subprocess.Popen, str, str]:
    try:
        return simulator_start(
            "--flavour",
            "real",
            "--rps",
            "0",
            "--tick-ms",
            "20",
            "--app",
            f"{appkey}:{appsecret}",
            "--account",
            f"50000001-01:{10**11}:bench-hts",
            "--symbol",
            f"{SYMBOL}:71000",
        )
    except SimulatorNotStarted as exc:
        raise SystemExit(str(exc)) from None


# Ways of running the execution worker measured for the event path, each in its own worker
# process, one after another: (pool arguments, doorbell on). The first is the headline figure:
# the worker as deployed (docker-compose.yml, worker-execution).
POOLS = {
    "doorbell": (["--pool", "threads", "-c", "4"], True),
    "threads": (["--pool", "threads", "-c", "4"], False),
    "prefork": (["--pool", "prefork", "-c", "2"], False),
    "solo": (["--pool", "solo"], False),
}
DEFAULT_POOLS = "doorbell,threads,prefork"


def hot_database_env() -> dict[str, str]:
    """The execution worker and pricesync connect straight to PostgreSQL, their hot statements
    prepared, as deployed (docker-compose.yml); with BENCH_HOT_POOLED=1 they go through
    PgBouncer like the other processes, for comparison."""
    direct = os.environ.get("DATABASE_DIRECT_URL")
    if not direct or os.environ.get("BENCH_HOT_POOLED", "") not in ("", "0"):
        return {}
    return {"DATABASE_URL": direct, "DATABASE_POOLING": ""}


def start_worker(
    log: Path, name: str, pool: str = "doorbell", queues: str = "execution"
) -> subprocess.Popen:
    """A worker run the POOLS way `pool`, otherwise as deployed (docker-compose.yml,
    worker-execution): no per-task health check, straight to PostgreSQL."""
    arguments, doorbell = POOLS[pool]
    env = os.environ | {
        "DATABASE_HEALTH_CHECKS": "false",
        "AEGIS_EXECUTION_DOORBELL": str(doorbell).lower(),
    }
    env |= hot_database_env()
    out = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "aegis",
            "worker",
            "-Q",
            queues,
            *arguments,
            "-l",
            os.environ.get("BENCH_WORKER_LOG", "warning"),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            name,
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc


def wait_ready(proc: subprocess.Popen, name: str, log: Path, timeout_s: float = 120) -> None:
    """Until the worker `name` answers a ping; SystemExit if it dies or stays silent."""
    from aegis.celery import app

    deadline = time.monotonic() + timeout_s
    while not app.control.ping(destination=[name], timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start: see {log}")


def stop_worker(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def main() -> int:
    appkey, appsecret = secrets.token_hex(18), secrets.token_hex(90)
    sim, base_url, ws_url = start_simulator(appkey, appsecret)
    kis_env = {
        "KIS_ENV": "simulator",
        "KIS_FLAVOUR": "real",
        "KIS_BASE_URL": base_url,
        "KIS_WS_URL": ws_url,
        "KIS_ACCOUNT": "50000001-01",
        "KIS_HTS_ID": "bench-hts",
        "KIS_QUERY_APP_KEY": appkey,
        "KIS_QUERY_APP_SECRET": appsecret,
        "KIS_RATE_PER_SECOND": "1000",
    }
    os.environ.update(kis_env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction

    from core import clock
    from execution import services
    from execution.broker import get_broker
    from execution.models import Order, OrderIntent
    from execution.services.submission import intent_submit

    if not settings.REDIS_URL:
        print(
            "bench/execution.py measures PostgreSQL and Redis: run it with `make bench`.",
            file=sys.stderr,
        )
        return 2
    services.trading_state_set(state="ACTIVE", reason="benchmark", changed_by="bench")
    get_broker().price(SYMBOL)  # a token in the shared cache before the clock starts
    rng = random.Random(11)
    results = {}
    pools = [p for p in os.environ.get("BENCH_POOLS", DEFAULT_POOLS).split(",") if p]
    worker = None
    try:
        from aegis.celery import app

        with app.connection_for_write() as conn:  # nothing queued by anything before us
            conn.default_channel.queue_purge("execution")

        def worker_for(pool: str) -> subprocess.Popen:
            log = Path(os.environ.get("TMPDIR", "/tmp")) / f"aegis-bench-{pool}-{os.getpid()}.log"
            name = f"bench-{pool}-{os.getpid()}@{socket.gethostname()}"
            proc = start_worker(log, name, pool)
            wait_ready(proc, name, log)
            for _ in range(20):  # warm the path before measuring
                services.entry_intent_open(symbol=SYMBOL, qty=1, idempotency_key=str(uuid.uuid4()))
                time.sleep(0.02)
            return proc

        def open_intent(mode: str, committed: dict) -> None:
            # The commit's moment: an on_commit callback registered before the service's own
            # (which enqueues the task) runs first, right after COMMIT returns.
            stamp = []
            with transaction.atomic():
                transaction.on_commit(lambda: stamp.append(clock.now()))
                intent = services.entry_intent_open(
                    symbol=SYMBOL, qty=1, idempotency_key=f"bench-{mode}:{uuid.uuid4()}"
                )
            committed[intent.pk] = stamp[0]

        def run(mode: str) -> dict[str, list[float]]:
            committed = {}
            for _ in range(N):
                time.sleep(rng.uniform(0, 2 * GAP_MS / 1000))
                open_intent(mode, committed)
            deadline = time.monotonic() + 120
            while Order.objects.filter(intent_id__in=committed, status="SUBMITTED").count() < N:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            rows = Order.objects.filter(intent_id__in=committed, status="SUBMITTED").values_list(
                "intent_id", "intent__created_at", "submitted_at"
            )
            return {
                "commit": [(done - committed[pk]).total_seconds() * 1000 for pk, _, done in rows],
                "created": [(done - made).total_seconds() * 1000 for _, made, done in rows],
            }

        for pool in pools:
            worker = worker_for(pool)
            results[f"event/{pool}"] = run(f"event-{pool}")
            stop_worker(worker)
            worker = None

        settings.EXECUTION_AUTO_SUBMIT = False  # the poller alone sends these
        stop = threading.Event()

        def poller() -> None:
            broker = get_broker()
            while not stop.is_set():
                started = time.monotonic()
                for intent_id in (
                    OrderIntent.objects.filter(
                        status="NEW", idempotency_key__startswith="bench-poller:"
                    )
                    .order_by("created_at")
                    .values_list("pk", flat=True)
                ):
                    intent_submit(intent_id=intent_id, broker=broker)
                stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))
            connection.close()

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        results["poller"] = run("poller")
        stop.set()
        thread.join(timeout=30)
    finally:
        if worker is not None:
            stop_worker(worker)
        simulator_stop(sim)

    print(
        f"intent → order accepted by the KIS simulator, paced arrivals "
        f"(0-{2 * GAP_MS:.0f} ms gaps), n={N} each; from the intent's commit, and from its "
        f"created_at (inside the writer's transaction)"
    )
    print(f"{'path':<15} {'from':<8} {'sent':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    table = {}
    for name, series in results.items():
        for start, values in series.items():
            f = table[(name, start)] = figures(values)
            print(
                f"{name:<15} {start:<8} {f['n']:>5} {f['p50']:>8.2f} {f['p99']:>8.2f} "
                f"{f['mean']:>8.2f}"
            )
    poller = table[("poller", "commit")]
    for pool in pools:
        event = table[(f"event/{pool}", "commit")]
        print(
            f"poller mean / event mean ({pool}, from commit): {poller['mean'] / event['mean']:.0f}x"
        )
    main_pool = pools[0]
    event = table[(f"event/{main_pool}", "commit")]
    print(
        json.dumps(
            {
                "intent_to_order_ms": event,
                "intent_to_order_polling_ms": poller,
                "intent_created_to_order_ms": table[(f"event/{main_pool}", "created")],
                "intent_created_to_order_polling_ms": table[("poller", "created")],
                "intent_to_order_by_pool_ms": {p: table[(f"event/{p}", "commit")] for p in pools},
                "execution_pool": main_pool,
                "samples_ms": {
                    "intent_to_order_ms": results[f"event/{main_pool}"]["commit"],
                    "intent_to_order_polling_ms": results["poller"]["commit"],
                },
                "poller_over_event_mean": round(poller["mean"] / event["mean"], 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
