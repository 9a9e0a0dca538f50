"""Benchmark: a pick sent over HTTP → its ENTRY order accepted by the broker, Aegis's event path
against the review's one-minute router, in the same run; and sustained ingest throughput. On
gunicorn, a real Celery worker, PostgreSQL, Redis and the KIS simulator.

  event      Aegis: POST /api/picks/ingest (gunicorn, 3 sync workers) stores the pick and, on
             commit, rings the routers' doorbell (picks/doorbell.py); a lane of the worker on
             the picks and execution queues (thread pool, as compose runs worker-execution)
             routes it through the three gates (asking the simulator for a quote and the order
             book: no pricesync runs here), opens the ENTRY intent and hands its claimed order
             to a sender thread made ready while the entry commits.
  scheduler  the review's baseline: the same ingest, but nothing consumes picks.route; a
             router in this process runs once a minute over the NEW picks (the same gates) and
             the intents it opens go to the execution worker. Picks arrive at random moments of
             the minute, as they would against a cron job.
  throughput BENCH_INGEST_CLIENTS clients post batches of BENCH_INGEST_BATCH picks for
             BENCH_INGEST_S seconds, each batch stored and its route task enqueued (nothing
             routes them: routing is measured above). A drain in this process rejects the
             stored picks every DRAIN_S, in one statement, as routers would take them, so that
             the routers' backlog bound (PICKS_QUEUE_MAX) never refuses a batch.

Latency is the order's submitted_at (taken when the simulator's answer is in) minus the moment
this process began sending the request; every process reads one shifted clock, a trading
morning (core.clock.ShiftedClock). Each pick is for its own symbol (a second pick in a held
symbol is a duplicate), listed at 10,000 KRW. Prints a table and a JSON line; never fails on a
time. `python -m bench.ingest`, beside PostgreSQL and Redis (`make bench`).
"""

import datetime as dt
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.execution import start_worker, stop_worker, wait_ready
from bench.stats import figures
from bench.ticks import Control, on_simulator

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("BENCH_PICKS", "200"))
N_SCHEDULER = int(os.environ.get("BENCH_PICKS_SCHEDULER", "40"))
SCHEDULER_S = 60.0  # the review's router ran every minute
GAP_MS = float(os.environ.get("BENCH_GAP_MS", "100"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "10"))
CLIENTS = int(os.environ.get("BENCH_INGEST_CLIENTS", "4"))
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", "100"))
THROUGHPUT_S = float(os.environ.get("BENCH_INGEST_S", "10"))
DRAIN_S = 0.02
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "3"))
PRICE = 10_000
WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "aegis.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(WEB_WORKERS),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start: see {log}") from None
            time.sleep(0.2)


class Api:
    """One keep-alive HTTP connection to the ingest endpoint."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._connect()

    def _connect(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, picks: list[dict]) -> dict:
        body = json.dumps(picks)
        try:
            response = self._post(body)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # gunicorn closed the idle keep-alive connection (a pause between phases longer
            # than its keep-alive): once more on a new one; ingest is idempotent on the picks'
            # (source, external id), so a batch that did arrive is not stored twice.
            self.conn.close()
            self._connect()
            response = self._post(body)
        body = response.read()
        if response.status != 202:
            raise SystemExit(f"ingest answered {response.status}: {body[:300]!r}")
        return json.loads(body)

    def _post(self, body: str) -> http.client.HTTPResponse:
        self.conn.request("POST", "/api/picks/ingest", body=body, headers=self.headers)
        return self.conn.getresponse()

    def close(self) -> None:
        self.conn.close()


class Bench:
    def __init__(self, control: Control, port: int) -> None:
        self.control = control
        self.port = port
        self.rng = random.Random(17)
        self.worker = None
        self.web = None
        self.tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        self.symbols: list[str] = []
        self.source = self.token = None
        self.serial = 0

    def setup(self) -> None:
        from bench.ticks import pick_symbols
        from execution import services
        from execution.broker import get_broker
        from execution.models import Reconciliation
        from execution.services.reconciliation import reconciliation_run
        from picks.models import GateSettings, PickSource
        from picks.services import source_token_issue
        from trading.models import ExitProfile

        self.symbols = pick_symbols(N + N_SCHEDULER + WARMUP + 1)
        for symbol in self.symbols:
            self.control.post("/_sim/prices", {"pdno": symbol, "price": PRICE, "prev_close": PRICE})
        services.trading_state_set(state="ACTIVE", reason="benchmark", changed_by="bench")
        reconciliation_run(broker=get_broker(), trigger=Reconciliation.Trigger.MANUAL)
        GateSettings.current()
        GateSettings.objects.filter(pk=1).update(
            max_open_positions=10**6,
            max_symbol_exposure_krw=10**12,
            max_total_exposure_krw=10**15,
            daily_loss_limit_krw=0,
            max_pick_age_s=120,
        )
        profile = ExitProfile.objects.create(name=f"bench-ingest-{os.getpid()}", stop_loss_pct=3)
        self.source = PickSource.objects.create(
            code=f"bench{os.getpid()}", exit_profile=profile, rate_limit="1000000/second"
        )
        self.token = source_token_issue(source=self.source)

    def pick(self, symbol: str) -> dict:
        from core import clock

        self.serial += 1
        return {
            "source": self.source.code,
            "external_id": f"b{self.serial}",
            "symbol": symbol,
            "side": "BUY",
            "budget_krw": 1_000_000,
            "limit_price": PRICE,
            "generated_at": clock.now().isoformat(),
        }

    def start_worker(self, queues: str) -> None:
        name = f"bench-ingest-{queues.replace(',', '-')}-{os.getpid()}@{socket.gethostname()}"
        log = self.tmp / f"aegis-bench-ingest-{os.getpid()}.log"
        self.worker = start_worker(log, name, queues=queues)
        wait_ready(self.worker, name, log)

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_worker(self.worker)
            self.worker = None

    def market_calls(self) -> int:
        """The simulator's quote and order book requests so far (its request log)."""
        from kis.protocol import PATH_ASKING_PRICE, PATH_PRICE

        return sum(
            r["path"] in (PATH_PRICE, PATH_ASKING_PRICE)
            for r in self.control.call("GET", "/_sim/book")["requests"]
        )

    def latencies(self, sent: dict[int, dt.datetime]) -> tuple[list[float], int]:
        """ms from each pick's sending to its order's submitted_at; and how many never came."""
        from execution.models import Order

        deadline = time.monotonic() + WAIT_S
        while True:
            done = dict(
                Order.objects.filter(
                    intent__picks__in=list(sent), submitted_at__isnull=False
                ).values_list("intent__picks", "submitted_at")
            )
            if len(done) == len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return (
            [(done[p] - at).total_seconds() * 1000 for p, at in sent.items() if p in done],
            len(sent) - len(done),
        )

    def stages(self, sent: dict[int, dt.datetime]) -> dict:
        """p50 of each stage of the event path, in ms: the request until the pick's row
        (received_at, before its INSERT), until the router took it (routed_at, the route's
        start), until the intent was written (created_at: market read, gates, locks), until
        KIS answered."""
        from picks.models import Pick

        rows = Pick.objects.filter(pk__in=list(sent), intent__isnull=False).values_list(
            "pk", "received_at", "routed_at", "intent__created_at", "intent__orders__submitted_at"
        )
        marks = {"stored": [], "taken": [], "intent": [], "accepted": []}
        for pk, received, routed, created, submitted in rows:
            if submitted is None:
                continue
            points = [sent[pk], received, routed, created, submitted]
            for name, (a, b) in zip(marks, zip(points, points[1:])):
                marks[name].append((b - a).total_seconds() * 1000)
        return {name: figures(values)["p50"] for name, values in marks.items()}

    def event(self, symbols: list[str], answers: list[float] | None = None) -> dict:
        from core import clock

        api, sent = Api(self.port, self.token), {}
        try:
            for symbol in symbols:
                pick = self.pick(symbol)
                at, started = clock.now(), time.perf_counter()
                [pick_id] = api.send([pick])["ids"]
                if answers is not None:
                    answers.append((time.perf_counter() - started) * 1000)
                sent[pick_id] = at
                time.sleep(self.rng.expovariate(1000 / GAP_MS))
        finally:
            api.close()
        return sent

    def scheduler(self, symbols: list[str]) -> dict:
        """Picks at random moments of a minute; the review's router runs at its end."""
        from core import clock
        from picks.routing import orphans, picks_route

        if not symbols:
            return {}
        api, sent = Api(self.port, self.token), {}
        began = time.monotonic()
        moments = sorted(self.rng.uniform(0, SCHEDULER_S) for _ in symbols)
        try:
            for symbol, moment in zip(symbols, moments):
                time.sleep(max(0.0, began + moment - time.monotonic()))
                at = clock.now()
                [pick_id] = api.send([self.pick(symbol)])["ids"]
                sent[pick_id] = at
        finally:
            api.close()
        time.sleep(max(0.0, began + SCHEDULER_S - time.monotonic()))
        picks_route(pick_ids=orphans(older_than=dt.timedelta(0)), routed_by="SWEEP")
        return sent

    def throughput(self) -> dict:
        stop_at = time.monotonic() + THROUGHPUT_S
        counts = [0] * CLIENTS
        errors: list[str] = []
        symbol = self.symbols[-1]
        drained = threading.Event()
        drainer = threading.Thread(target=self._drain, args=(drained,))
        drainer.start()

        def client(i: int) -> None:
            api = Api(self.port, self.token)
            try:
                n = 0
                while time.monotonic() < stop_at:
                    batch = [
                        {
                            "source": self.source.code,
                            "external_id": f"t{i}-{n}-{k}",
                            "symbol": symbol,
                            "side": "BUY",
                            "budget_krw": 1_000_000,
                            "generated_at": "2026-11-24T10:00:00+09:00",
                        }
                        for k in range(BATCH)
                    ]
                    n += 1
                    counts[i] += len(api.send(batch)["ids"])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
            finally:
                api.close()

        began = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        drained.set()
        drainer.join()
        if errors:
            raise SystemExit(f"throughput clients failed: {errors[:3]}")
        return {
            "picks": sum(counts),
            "seconds": round(elapsed, 2),
            "picks_per_s": round(sum(counts) / elapsed, 1),
            "clients": CLIENTS,
            "batch": BATCH,
        }

    def _drain(self, done: threading.Event) -> None:
        """Every DRAIN_S until `done`: the source's NEW picks rejected, in one statement."""
        from django.db import connection
        from django.db.models.functions import Now

        from picks.models import Pick

        try:
            while not done.wait(DRAIN_S):
                Pick.objects.filter(source=self.source, status=Pick.Status.NEW).update(
                    status=Pick.Status.REJECTED,
                    rejected_gate=Pick.Gate.VALIDITY,
                    reject_reason="bench: drained",
                    routed_at=Now(),
                )
        finally:
            connection.close()

    def run(self) -> dict:
        from aegis.celery import app

        with app.connection_for_write() as conn:  # nothing queued by anything before us
            for queue in ("picks", "execution"):
                conn.default_channel.queue_purge(queue)
        self.web = start_web(self.port, self.tmp / f"aegis-bench-web-{os.getpid()}.log")
        self.start_worker("picks,execution")
        symbols = iter(self.symbols)
        results = {}
        self.latencies(self.event([next(symbols) for _ in range(WARMUP)]))
        answers: list[float] = []
        calls = self.market_calls()
        sent = self.event([next(symbols) for _ in range(N)], answers)
        values, lost = self.latencies(sent)
        # Each pick is in a symbol of its own: a quote and a book each, unless a route asked
        # again what a heads-up's read was asking already.
        results["market_calls_per_pick"] = round((self.market_calls() - calls) / len(sent), 2)
        results["event"] = figures(values) | {"lost": lost}
        results["samples_ms"] = {"ingest_to_order_ms": values}
        results["stages"] = self.stages(sent)
        results["answer"] = figures(answers)
        self.stop_worker()
        self.start_worker("execution")  # picks.route now piles up unconsumed
        values, lost = self.latencies(self.scheduler([next(symbols) for _ in range(N_SCHEDULER)]))
        results["scheduler"] = figures(values) | {"lost": lost}
        results["samples_ms"]["ingest_to_order_scheduler_ms"] = values
        results["throughput"] = self.throughput()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("picks")
        return results

    def close(self) -> None:
        self.stop_worker()
        if self.web is not None:
            os.killpg(self.web.pid, signal.SIGTERM)
            self.web.wait(timeout=30)
        if self.source is not None:
            from picks.models import Pick

            Pick.objects.filter(source=self.source, status="NEW").delete()


def report(results: dict) -> None:
    rows = [
        ("event: ingest → doorbell lane routes, sends", results["event"]),
        ("review's one-minute router", results["scheduler"]),
    ]
    print("\nHTTP ingest → ENTRY order accepted by the simulator (ms)")
    print(f"{'path':<42} {'n':>5} {'p50':>10} {'p99':>10} {'mean':>10} {'lost':>5}")
    for name, f in rows:
        print(
            f"{name:<42} {f['n']:>5} {f['p50']!s:>10} {f['p99']!s:>10} {f['mean']!s:>10} "
            f"{f['lost']:>5}"
        )
    print(
        "event path, p50 of each stage (ms): "
        + ", ".join(f"→ {name} {ms}" for name, ms in results["stages"].items())
    )
    a = results["answer"]
    print(f"HTTP 202 answer: p50 {a['p50']} ms, p99 {a['p99']} ms (n {a['n']})")
    print(
        f"quote and order book calls at the simulator per pick: "
        f"{results['market_calls_per_pick']} (2 when every route joined its heads-up's read)"
    )
    if results["event"]["mean"] and results["scheduler"]["mean"]:
        print(f"mean: {results['scheduler']['mean'] / results['event']['mean']:.0f}× faster")
    t = results["throughput"]
    print(
        f"sustained ingest: {t['picks_per_s']:,} picks/s ({t['picks']:,} picks in "
        f"{t['seconds']} s, {t['clients']} clients, batches of {t['batch']})"
    )
    print(
        json.dumps(
            {
                "ingest_to_order_ms": results["event"],
                "ingest_to_order_scheduler_ms": results["scheduler"],
                "ingest_answer_ms": results["answer"],
                "ingest_stages_p50_ms": results["stages"],
                "ingest_market_calls_per_pick": results["market_calls_per_pick"],
                "ingest_picks_per_s": t["picks_per_s"],
                "samples_ms": results["samples_ms"],
            }
        )
    )


def main() -> int:
    os.environ.update(
        {
            "DEBUG": "false",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        }
    )
    bench, results = None, {}
    with on_simulator("bench/ingest.py") as control:
        if control is None:
            return 2
        try:
            bench = Bench(control, free_port())
            bench.setup()
            results = bench.run()
        finally:
            if bench is not None:
                bench.close()
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
