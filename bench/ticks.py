"""Benchmark: a trade that crosses a stop → the exit's order accepted by the broker, the exit
engine's event path against the review's polling loop, in the same run, on PostgreSQL, Redis, a
real Celery worker and the KIS simulator.

  event   Aegis: PriceSync runs in this process on the simulator's WebSocket; each trade is
          upserted and that symbol's positions evaluated at once; the stop fires, the exit is
          opened through the ledger and, once committed, sent to the simulator from
          pricesync's own sender threads (execution/sender.py): no queue hop.
  event, worker hop   the same, but the commit hands the intent to the execution worker
          (thread pool and doorbell lanes, as deployed, per-task health checks off): one hop.
  polling the review's baseline: PriceSync only writes prices (evaluate=False) and a loop in this
          process calls exit_pass() every second (the review polled every 1-3 s: 1 s is the
          baseline's most favourable case). Its exits go to the same worker.

Latency is the order's submitted_at (taken when the broker's answer is in) minus the moment the
trade reached pricesync (its WebSocket message handed to PriceSync._on_trade), and, stricter,
minus the moment this process asked the simulator for the trade (before the simulator printed
and pushed it).

Workload: BENCH_SYMBOLS (default 40, KIS's subscription cap) managed positions, one per symbol,
each with a 3% stop loss. A round triggers each armed symbol once, paced with random gaps
(BENCH_GAP_MS mean, PERFORMANCE.md: idle costs are real): a neutral trade at the position's
cost, as a traded symbol prints, then after the gap a trade 4% down. Once the round's orders are
in, each is filled through the ledger (closing its position), the symbol's price is put back
and a new position opened, and the next round starts; no measured trade is in flight meanwhile.
The simulator holds the shares (no short selling) and prints trades only when told (--tick-ms
0); pricesync's REST fallback stays idle (every symbol is on the WebSocket). Prints a table and
a JSON line; never fails on a time. `python -m bench.ticks`, beside PostgreSQL and Redis.
"""

import asyncio
import contextlib
import datetime as dt
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
from decimal import Decimal
from pathlib import Path

from bench.execution import hot_database_env, start_worker, stop_worker, wait_ready
from bench.stats import figures
from core.memory import freeze_startup_objects
from kis_simulator.process import Control, SimulatorNotStarted, simulator_start, simulator_stop

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("BENCH_TICKS", "300"))
N_POLL = int(os.environ.get("BENCH_TICKS_POLL", "60"))
N_HOP = int(os.environ.get("BENCH_TICKS_HOP", "150"))
GAP_MS = float(os.environ.get("BENCH_GAP_MS", "100"))
SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "40"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "20"))
POLL_S = 1.0  # the review's loop polled every 1-3 s: the most favourable end
POOL = "doorbell"  # the execution worker as deployed (docker-compose.yml)
ACCOUNT = "50000001-01"
HTS_ID = "bench-hts"
COST = 10_000  # every position's average price, and each symbol's price between rounds
TRIGGER = 9_600  # 4% down: under the 3% stop (9,700)
STOP_PCT = Decimal(3)
QTY = 100
HELD = 10**9  # shares of each symbol the simulator's account holds
WAIT_S = 20.0  # a round's orders that are not in by then are counted lost


def start_simulator(appkey: str, appsecret: str) -> tuple[subprocess.Popen, str, str]:
    """As bench/execution.py's, without automatic price steps (trades print when told) and
    without symbols (listed through the control API once chosen)."""
    try:
        return simulator_start(
            "--flavour",
            "real",
            "--rps",
            "0",
            "--tick-ms",
            "0",
            "--app",
            f"{appkey}:{appsecret}",
            "--account",
            f"{ACCOUNT}:{10**11}:{HTS_ID}",
        )
    except SimulatorNotStarted as exc:
        raise SystemExit(str(exc)) from None


def django_on_simulator(name: str, base_url: str, ws_url: str, appkey: str, appsecret: str) -> bool:
    """Point this process (and the processes it starts) at the simulator and set Django up;
    False, said on stderr, when it is not beside PostgreSQL and Redis."""
    os.environ.update(
        {
            "KIS_ENV": "simulator",
            "KIS_FLAVOUR": "real",
            "KIS_BASE_URL": base_url,
            "KIS_WS_URL": ws_url,
            "KIS_ACCOUNT": ACCOUNT,
            "KIS_HTS_ID": HTS_ID,
            "KIS_QUERY_APP_KEY": appkey,
            "KIS_QUERY_APP_SECRET": appsecret,
            "KIS_RATE_PER_SECOND": "1000",
        }
    )
    os.environ.update(hot_database_env())  # pricesync runs in this process
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()
    from django.conf import settings

    if not settings.REDIS_URL:
        print(
            f"{name} measures PostgreSQL and Redis: run it beside them "
            "(scripts/with-services.sh, as `make bench` does).",
            file=sys.stderr,
        )
        return False
    return True


# Every process of a benchmark reads one shifted clock on a trading morning (core.clock): the
# exit engine decides nothing, and orders wait, outside the market's hours, whenever the
# benchmark is run.
MORNING = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def on_trading_morning() -> None:
    """This process and those it starts on MORNING's clock, unless AEGIS_CLOCK_START says
    otherwise. Before anything reads core.clock."""
    if "AEGIS_CLOCK_START" not in os.environ:
        os.environ["AEGIS_CLOCK_START"] = MORNING.isoformat()
        os.environ["AEGIS_CLOCK_ORIGIN"] = repr(time.time())
    if "core.clock" in sys.modules:
        raise RuntimeError("core.clock was read before the benchmark's clock was set")


def now_s() -> float:
    """Now on the benchmark's clock (the ledger's timestamps are on it), in epoch seconds."""
    from core import clock

    return clock.now().timestamp()


@contextlib.contextmanager
def on_simulator(name: str):
    """A simulator of its own, this process (and those it starts) pointed at it with Django set
    up, on a trading morning's clock: yields its control API, or None when not beside
    PostgreSQL and Redis. Stopped on exit."""
    on_trading_morning()
    appkey, appsecret = secrets.token_hex(18), secrets.token_hex(90)
    sim, base_url, ws_url = start_simulator(appkey, appsecret)
    control = Control(base_url)
    try:
        yield control if django_on_simulator(name, base_url, ws_url, appkey, appsecret) else None
    finally:
        control.close()
        simulator_stop(sim)


class Running:
    """PriceSync.run in a thread with its own event loop, stopped on exit (as its tests do)."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop = None
        self.error = None
        self.thread = threading.Thread(target=self._main, name="pricesync", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop = asyncio.Event()
            # As the pricesync command: start-up objects frozen once ready (core/memory.py).
            await self.sync.run(
                self.stop, on_ready=lambda: (freeze_startup_objects("pricesync"), self.ready.set())
            )

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__ or the caller
            self.error = exc
            self.ready.set()

    def __enter__(self):
        self.thread.start()
        if not self.ready.wait(60) or self.error is not None:
            self._stop()
            raise RuntimeError(f"pricesync did not start: {self.error!r}")
        return self.sync

    def _stop(self) -> None:
        if self.stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)
        if not self.thread.is_alive():
            self.loop.close()

    def __exit__(self, *exc):
        self._stop()


def main() -> int:
    # The worker logs at WARNING (bench/execution.py): so does this process, where the exit
    # engine would otherwise print a few INFO lines on every exit.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    bench, results = None, {}
    with on_simulator("bench/ticks.py") as control:
        if control is None:
            return 2
        from market.feed import SUBSCRIPTION_CAP

        symbols = pick_symbols(min(SYMBOLS, SUBSCRIPTION_CAP))
        for symbol in symbols:  # listed at the cost, as a new day (no trade printed)
            control.post("/_sim/prices", {"pdno": symbol, "price": COST, "prev_close": COST})
        cano, prdt = ACCOUNT.split("-")
        control.post(
            "/_sim/accounts",
            {
                "cano": cano,
                "acnt_prdt_cd": prdt,
                "cash": 10**11,
                "hts_id": HTS_ID,
                "holdings": [{"pdno": s, "qty": HELD, "avg_price": COST} for s in symbols],
            },
        )
        try:
            bench = Bench(symbols, control)
            results = bench.run_all()
        finally:
            if bench is not None:
                bench.close()
    report(results)
    return 0


def pick_symbols(count: int) -> list[str]:
    """`count` KRX-shaped codes that nothing in the database uses (positions, prices)."""
    from execution.models import Position
    from market.models import BestPrice

    for _ in range(20):
        start = random.SystemRandom().randrange(100_000, 999_000 - count)
        symbols = [f"{start + i:06d}" for i in range(count)]
        if (
            not Position.objects.filter(symbol__in=symbols).exists()
            and not BestPrice.objects.filter(symbol__in=symbols).exists()
        ):
            return symbols
    raise SystemExit("no free block of symbol codes found")


def start_execution_worker(bench: "Bench") -> None:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"aegis-bench-ticks-{os.getpid()}.log"
    name = f"bench-ticks-{os.getpid()}@{socket.gethostname()}"
    proc = start_worker(log, name, POOL)
    bench.worker = proc
    wait_ready(proc, name, log)


class Bench:
    def __init__(self, symbols: list[str], control: Control) -> None:
        self.symbols = list(symbols)  # the armed rotation; a symbol whose exit is lost leaves
        self.all_symbols = list(symbols)
        self.control = control
        self.rng = random.Random(13)
        self.positions: dict[str, int] = {}  # symbol -> its armed position
        self.created: list[int] = []
        self.profile = None
        self.worker = None
        self.sync_running = None
        self.poller = None
        self.poll_stop = threading.Event()
        self.pass_ms: list[float] = []
        self.lost: dict[str, int] = {}
        self.lost_event: dict[str, int] = {}
        self.lost_polling: dict[str, int] = {}
        self.lost_hop: dict[str, int] = {}
        self.lost_reasons: list[str] = []
        # Shared with pricesync's event loop thread.
        self.expect: dict[str, int] = {}  # symbol -> position whose trigger is on its way
        self.stamps: dict[int, float] = {}  # position -> when its trigger reached pricesync
        self.seen: dict[str, int] = {}  # symbol -> the last price pricesync finished with

    # --- set-up and tear-down ------------------------------------------------------------------
    def run_all(self) -> dict:
        from aegis.celery import app
        from execution import services
        from execution.broker import get_broker
        from trading.models import ExitProfile

        services.trading_state_set(state="ACTIVE", reason="benchmark", changed_by="bench")
        if services.trading_state_get() != "ACTIVE":
            raise SystemExit(
                "trading is not ACTIVE (the startup gate waits for a "
                "reconciliation): run the benchmark on a fresh database"
            )
        get_broker().price(self.symbols[0])  # a token in the shared cache before the clock starts
        with app.connection_for_write() as conn:  # nothing queued by anything before us
            conn.default_channel.queue_purge("execution")
        self.profile = ExitProfile.objects.create(
            name=f"bench-ticks-{self.symbols[0]}", stop_loss_pct=STOP_PCT, gap_down_pct=None
        )
        self.arm(self.symbols)
        start_execution_worker(self)

        results = {}
        with self.pricesync(evaluate=True):
            if WARMUP:
                self.run(min(WARMUP, len(self.symbols)))  # connections, imports, caches
                self.lost.clear()
                self.lost_reasons.clear()
            results["event"] = self.run(N)
            self.lost_event = dict(self.lost)
        self.lost.clear()
        with self.pricesync(evaluate=True, send=False):
            results["hop"] = self.run(N_HOP)
            self.lost_hop = dict(self.lost)
        self.lost.clear()
        with self.pricesync(evaluate=False):
            self.poller = threading.Thread(target=self._poll, name="poller", daemon=True)
            self.poller.start()
            time.sleep(2 * POLL_S)  # its connection and caches warm before the first trigger
            results["polling"] = self.run(N_POLL)
            self.lost_polling = dict(self.lost)
            self.poll_stop.set()
            self.poller.join(30)
        results["pass_ms"] = self.pass_ms
        results["lost"] = {
            "event": self.lost_event,
            "hop": self.lost_hop,
            "polling": self.lost_polling,
        }
        results["lost_reasons"] = self.lost_reasons[:5]
        results["symbols"] = len(self.all_symbols)
        return results

    def close(self) -> None:
        """Stop what runs, then delete what the benchmark wrote; report, never raise."""
        self.poll_stop.set()
        if self.poller is not None:
            self.poller.join(30)
        if self.sync_running is not None:
            try:
                self.sync_running.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001
                print(f"bench: stopping pricesync failed: {exc!r}", file=sys.stderr)
        if self.worker is not None:
            try:
                stop_worker(self.worker)
            except Exception as exc:  # noqa: BLE001
                print(f"bench: stopping the worker failed: {exc!r}; killing it", file=sys.stderr)
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()
        try:
            self._remove()
        except Exception as exc:  # noqa: BLE001
            print(f"bench: cleaning up failed: {exc!r}", file=sys.stderr)

    def _remove(self) -> None:
        from django.db import transaction

        from execution.models import Fill, Order, OrderIntent, Position
        from market.models import BestPrice
        from trading.models import ExitProfile, PositionExitState

        with transaction.atomic():
            positions = Position.objects.filter(pk__in=self.created)
            Fill.objects.filter(order__position__in=positions).delete()
            Order.objects.filter(position__in=positions).delete()
            OrderIntent.objects.filter(position__in=positions).delete()
            PositionExitState.objects.filter(position__in=positions).delete()
            positions.delete()
            BestPrice.objects.filter(symbol__in=self.all_symbols).delete()
            if self.profile is not None:
                ExitProfile.objects.filter(pk=self.profile.pk).delete()

    def pricesync(self, *, evaluate: bool, send: bool = True):
        from execution.broker import get_broker
        from kis.protocol import WS_SUBSCRIBED

        bench = self
        sync = stamped_sync_class()(
            bench,
            broker=get_broker(),
            evaluate=evaluate,
            send=send,
            watchlist=tuple(self.all_symbols),
            poll_s=3600,
            stale_s=3600,
        )
        running = Running(sync)

        class Context:
            def __enter__(self):
                bench.sync_running = running
                running.__enter__()
                deadline = time.monotonic() + 30
                while any(
                    sync.stream.acks.get((sync.trade_tr, s)) != WS_SUBSCRIBED for s in bench.symbols
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"pricesync's subscriptions: {sync.stream.acks}")
                    time.sleep(0.05)
                return sync

            def __exit__(self, *exc):
                running.__exit__(*exc)
                bench.sync_running = None

        return Context()

    # --- the workload --------------------------------------------------------------------------
    def arm(self, symbols: list[str]) -> None:
        """A managed open position on each symbol (the signals forget the cached books)."""
        from django.db import transaction

        from core import clock
        from execution.models import Position
        from trading.models import PositionExitState

        with transaction.atomic():
            for symbol in symbols:
                position = Position.objects.create(
                    symbol=symbol,
                    qty=QTY,
                    avg_price=Decimal(COST),
                    opened_at=clock.now(),
                    status=Position.Status.OPEN,
                )
                PositionExitState.objects.create(
                    position=position, profile=self.profile, peak_qty=QTY
                )
                self.positions[symbol] = position.pk
                self.created.append(position.pk)

    def _trade(self, symbol: str, price: int) -> None:
        self.control.post("/_sim/prices", {"pdno": symbol, "price": price})

    def _wait_seen(self, symbols: list[str], price: int) -> None:
        """Until pricesync has finished with `price` on every symbol (written, evaluated)."""
        deadline = time.monotonic() + 10
        while any(self.seen.get(s) != price for s in symbols) and time.monotonic() < deadline:
            time.sleep(0.005)

    def run(self, n: int) -> dict[str, list[float]]:
        """`n` triggers in rounds over the armed symbols: latencies in ms."""
        out = {"trade": [], "post": [], "to_intent": [], "to_order": [], "to_accepted": []}
        left = n
        while left > 0 and self.symbols:
            batch = self.symbols[:left]
            fired: dict[str, tuple[int, float]] = {}
            for symbol in batch:
                self._trade(symbol, COST)  # the symbol trades: caches as warm as a live one's
                time.sleep(self.rng.uniform(0, 2 * GAP_MS / 1000))
                position_id = self.positions[symbol]
                self.expect[symbol] = position_id
                posted = now_s()
                self._trade(symbol, TRIGGER)
                fired[symbol] = (position_id, posted)
            left -= len(batch)
            self._collect(fired, out)
        return out

    def _collect(self, fired: dict[str, tuple[int, float]], out: dict[str, list[float]]) -> None:
        from execution import services
        from execution.models import Order

        ids = {position_id: symbol for symbol, (position_id, _) in fired.items()}
        deadline = time.monotonic() + WAIT_S
        while True:
            rows = list(
                Order.objects.filter(
                    position_id__in=list(ids),
                    side="SELL",
                    submitted_at__isnull=False,
                ).values_list(
                    "position_id", "pk", "qty", "submitted_at", "intent__created_at", "created_at"
                )
            )
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        done = set()
        for position_id, order_id, qty, submitted_at, intent_at, order_at in rows:
            symbol = ids[position_id]
            done.add(symbol)
            at = submitted_at.timestamp()
            out["post"].append((at - fired[symbol][1]) * 1000)
            stamp = self.stamps.pop(position_id, None)
            if stamp is not None:
                out["trade"].append((at - stamp) * 1000)
                out["to_intent"].append((intent_at.timestamp() - stamp) * 1000)
            out["to_order"].append((order_at - intent_at).total_seconds() * 1000)
            out["to_accepted"].append((submitted_at - order_at).total_seconds() * 1000)
            # The broker's fill, through the ledger: the position closes.
            services.fill_apply(
                order_id=order_id, broker_fill_key=f"bench-ticks:{order_id}", qty=qty, price=TRIGGER
            )
        for symbol in fired:
            self.expect.pop(symbol, None)
            if symbol not in done:  # out of the rotation; its rows go at the end
                self._lost(symbol, fired[symbol][0])
        rearm = [s for s in fired if s in done]
        for symbol in rearm:  # back to the cost (the simulator fills the sell on this trade)
            self._trade(symbol, COST)
        self._wait_seen(rearm, COST)
        self.arm(rearm)

    def _lost(self, symbol: str, position_id: int) -> None:
        from execution.models import Order, OrderIntent

        self.symbols.remove(symbol)
        reason = "no exit intent"
        intent = OrderIntent.objects.filter(position_id=position_id).first()
        order = Order.objects.filter(position_id=position_id).first()
        if order is not None:
            reason = f"order {order.status} {order.reject_reason}".strip()
        elif intent is not None:
            reason = f"intent {intent.status}, no order"
        self.lost[reason] = self.lost.get(reason, 0) + 1
        self.lost_reasons.append(f"{symbol}: {reason}")

    def _poll(self) -> None:
        """The review's loop: every managed position evaluated every POLL_S seconds."""
        from django.db import connection

        from trading.services import exit_pass

        while not self.poll_stop.is_set():
            started = time.monotonic()
            try:
                exit_pass()
            except Exception as exc:  # noqa: BLE001 - the loop goes on, as the review's would
                print(f"bench: exit_pass failed: {exc!r}", file=sys.stderr)
            self.pass_ms.append((time.monotonic() - started) * 1000)
            self.poll_stop.wait(max(0.0, POLL_S - (time.monotonic() - started)))
        connection.close()


def stamped_sync_class():
    from trading.pricesync import PriceSync

    class StampedSync(PriceSync):
        """PriceSync, noting when each awaited trigger reached it and when it was done."""

        def __init__(self, bench: Bench, **kwargs) -> None:
            self.bench = bench
            super().__init__(**kwargs)

        async def _on_trade(self, tick) -> None:
            received = now_s()
            bench = self.bench
            if tick.price == TRIGGER:
                position_id = bench.expect.pop(tick.symbol, None)
                if position_id is not None:
                    bench.stamps[position_id] = received
            await super()._on_trade(tick)
            bench.seen[tick.symbol] = tick.price

    return StampedSync


def report(results: dict) -> None:
    event, hop, polling = results["event"], results["hop"], results["polling"]
    paths = (("event", event), ("event, worker hop", hop), (f"polling {POLL_S:g} s", polling))
    print(
        f"tick → exit order accepted by the KIS simulator: {results['symbols']} managed "
        f"positions (3% stop loss), paced triggers (0-{2 * GAP_MS:.0f} ms gaps), "
        f"{POOL} worker; from the trade's arrival at pricesync, and from the bench's request "
        f"for the trade (simulator and WebSocket included)"
    )
    print(f"{'path':<19} {'from':<6} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    table = {}
    for name, series in paths:
        for start in ("trade", "post"):
            f = table[(name, start)] = figures(series[start])
            cells = [
                f"{f[k]:>9.2f}" if f[k] is not None else f"{'-':>9}" for k in ("p50", "p99", "mean")
            ]
            print(f"{name:<19} {start:<6} {f['n']:>5} {' '.join(cells)}")
    print(
        "where the time goes, p50 / p99 ms: the trade → the exit intent's created_at (in "
        "pricesync, inside the ledger's statement) → the Order row (0 when it is recorded "
        "and claimed in the intent's own statement) → accepted (the commit, the sender "
        "thread or the worker, the order-cash call)"
    )
    for name, series in paths:
        stages = [figures(series[k]) for k in ("to_intent", "to_order", "to_accepted")]
        print(
            f"{name:<19} "
            + "  ".join(
                f"{label} {f['p50']:.2f} / {f['p99']:.2f}"
                for label, f in zip(("→ intent", "→ order", "→ accepted"), stages)
                if f["n"]
            )
        )
    ev, po = figures(event["trade"]), figures(polling["trade"])
    ratio = round(po["mean"] / ev["mean"], 1) if ev["n"] and po["n"] else None
    if ratio is not None:
        print(f"polling mean / event mean (from the trade): {ratio:.0f}x")
    if results["pass_ms"]:
        passes = figures(results["pass_ms"])
        print(
            f"the polling loop's exit_pass() (its exits included): p50 {passes['p50']:.2f} "
            f"ms, mean {passes['mean']:.2f} ms, {passes['n']} passes"
        )
    for path, lost in results["lost"].items():
        if lost:
            print(f"lost ({path}): {lost}; e.g. {results['lost_reasons']}")
    print(
        json.dumps(
            {
                "tick_to_order_ms": ev,
                "tick_to_order_polling_ms": po,
                "tick_to_order_worker_hop_ms": figures(hop["trade"]),
                "tick_post_to_order_ms": figures(event["post"]),
                "tick_post_to_order_polling_ms": figures(polling["post"]),
                "polling_interval_s": POLL_S,
                "execution_pool": POOL,
                "managed_positions": results["symbols"],
                "polling_over_event_mean": ratio,
                "lost": results["lost"],
                "samples_ms": {
                    "tick_to_order_ms": event["trade"],
                    "tick_to_order_polling_ms": polling["trade"],
                },
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
