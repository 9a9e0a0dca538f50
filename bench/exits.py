"""Benchmark: one full exit-evaluation pass over 10,000 open positions, and the database queries
the evaluation loop makes with the cache and without it, on real PostgreSQL and Redis.

  warm     Aegis in its steady state: profiles and the book (with each position's quiet band)
           from Redis, every best price in one statement; only positions outside their band
           are evaluated exactly.
  cold     the same pass with the book expired (profiles cached for their hour): the book and
           the prices read from PostgreSQL, the bands computed.
  nocache  the same code with the cache switched off (profiles read too).
  naive    the baseline: every position loaded through the ORM and evaluated exactly by the
           same rules, as a loop that polls the database would.

All run interleaved in one process against the same server. The process freezes its start-up
objects, as the worker that runs the pass does (core/memory.py), and each variant's garbage is
collected after its pass, outside the timing: the naive pass leaves 70,000 ORM objects in
reference cycles, whose full collection (100-230 ms, measured) would otherwise land in whichever
pass came next. The query loop evaluates each of
1,000 symbols' trades (as pricesync does) and a full pass, three rounds, with the real TTLs.
Prints a table and a JSON line; never fails on a time. Run it with `make bench`.
"""

import datetime as dt
import gc
import json
import os
import statistics
import time
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
os.environ["AEGIS_AUTO_SUBMIT"] = "0"

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402

from core import clock, memory  # noqa: E402
from execution.models import Position  # noqa: E402
from market import prices  # noqa: E402
from market.models import BestPrice  # noqa: E402
from trading import hot  # noqa: E402
from trading.models import ExitProfile, PositionExitState, TakeProfitTier  # noqa: E402
from trading.rules import Holding, Trade, evaluate  # noqa: E402
from trading.services import exit_pass  # noqa: E402

N = int(os.environ.get("BENCH_POSITIONS", "10000"))
RUNS = int(os.environ.get("BENCH_PASSES", "20"))
NOW = dt.datetime(2026, 11, 24, 10, 30, tzinfo=clock.SEOUL)  # a Tuesday, mid-session
D = Decimal


class Queries:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def setup(n: int) -> tuple[ExitProfile, list[str]]:
    profile = ExitProfile.objects.create(
        name="bench-exits",
        stop_loss_pct=D(3),
        trailing_activation_pct=D(5),
        trailing_pct=D(3),
        gap_down_pct=D(5),
        max_holding_days=20,
    )
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(10), sell_pct=D(50))
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(20), sell_pct=D(50))
    symbols = [f"8{i:05d}" for i in range(n)]
    positions = Position.objects.bulk_create(
        Position(symbol=s, qty=100, avg_price=D(50_000), opened_at=NOW - dt.timedelta(days=2))
        for s in symbols
    )
    PositionExitState.objects.bulk_create(
        PositionExitState(position=p, profile=profile, peak_qty=100, high_water_mark=52_000)
        for p in positions
    )
    BestPrice.objects.bulk_create(
        BestPrice(
            symbol=s,
            price=50_500 + (i % 7) * 100,
            prev_close=50_000,
            upper_limit=65_000,
            lower_limit=35_000,
            source="WS",
            event_at=NOW,
        )
        for i, s in enumerate(symbols)
    )
    return profile, symbols


def teardown(profile: ExitProfile, symbols: list[str]) -> None:
    PositionExitState.objects.filter(profile=profile).delete()
    Position.objects.filter(symbol__in=symbols).delete()
    BestPrice.objects.filter(symbol__in=symbols).delete()
    profile.delete()
    cache.clear()


def naive_pass() -> int:
    """Every position through the ORM, evaluated exactly: the loop a poller runs."""
    states = list(
        PositionExitState.objects.select_related("position").filter(
            position__status=Position.Status.OPEN, position__qty__gt=0
        )
    )
    prices = {
        b.symbol: b
        for b in BestPrice.objects.filter(symbol__in={s.position.symbol for s in states})
    }
    rules = {
        p.pk: hot.profile_rules(p, p.tiers.all())
        for p in ExitProfile.objects.filter(pk__in={s.profile_id for s in states}).prefetch_related(
            "tiers"
        )
    }
    decided = 0
    for state in states:
        best = prices.get(state.position.symbol)
        if best is None:
            continue
        position = state.position
        holding = Holding(
            qty=position.qty,
            available=position.qty - position.reserved_qty,
            avg_price=position.avg_price,
            held_days=2,
            high_water_mark=state.high_water_mark,
            peak_qty=state.peak_qty,
            tiers_done=state.tiers_done,
        )
        trade = Trade(
            price=best.price,
            at=best.event_at,
            lower_limit=best.lower_limit,
            prev_close=best.prev_close,
        )
        decided += evaluate(rules[state.profile_id], holding, trade).decision is not None
    return decided


def forget_book() -> None:
    cache.delete(hot.BOOK)


VARIANTS = {
    "warm": (lambda: None, lambda: exit_pass()),
    "cold": (forget_book, lambda: exit_pass()),
    "nocache": (lambda: None, lambda: exit_pass(use_cache=False)),
    "naive": (lambda: None, naive_pass),
}


def measure() -> dict[str, dict]:
    times = {name: [] for name in VARIANTS}
    queries = {name: [] for name in VARIANTS}
    exit_pass()  # fill the cache once
    for _ in range(RUNS):
        for name, (prepare, run) in VARIANTS.items():
            prepare()
            counter = Queries()
            with connection.execute_wrapper(counter):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
            queries[name].append(counter.count)
            gc.collect()
    out = {}
    for name in VARIANTS:
        ordered = sorted(times[name])
        out[name] = {
            "p50": round(statistics.median(ordered), 2),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
            "n": len(ordered),
            "queries": max(queries[name]),
            "samples": times[name],
        }
    return out


def query_loop(symbols: list[str]) -> dict[str, float]:
    """Each symbol's trade evaluated as pricesync does, then a full pass: three rounds."""
    px = {s: prices.Px(50_400, 50_000, 65_000, 35_000, NOW.timestamp()) for s in symbols}

    def loop(use_cache: bool) -> int:
        counter = Queries()
        with connection.execute_wrapper(counter):
            for _ in range(3):
                for symbol in symbols:
                    exit_pass(symbols=[symbol], prices={symbol: px[symbol]}, use_cache=use_cache)
                exit_pass(use_cache=use_cache)
        return counter.count

    without = loop(False)
    loop(True)  # warm up
    with_cache = loop(True)
    return {"without": without, "with": with_cache, "reduction": round(1 - with_cache / without, 4)}


def main() -> None:
    cache.clear()
    profile, symbols = setup(N)
    memory.freeze_startup_objects("bench.exits")
    try:
        with clock.installed(clock.FixedClock(NOW)):
            passes = measure()
            queries = query_loop(symbols[:1000])
    finally:
        teardown(profile, symbols)
    print(
        f"\nExit evaluation: one full pass over {N:,} open positions, {RUNS} passes each "
        "(PostgreSQL, Redis)"
    )
    print(f"{'variant':<10}{'p50 ms':>10}{'p99 ms':>10}{'queries':>10}")
    for name, row in passes.items():
        print(f"{name:<10}{row['p50']:>10.1f}{row['p99']:>10.1f}{row['queries']:>10}")
    print(
        f"\nQueries of the evaluation loop over 1,000 positions (3 rounds of every symbol's "
        f"trade and a full pass): {queries['without']:,} without the cache, "
        f"{queries['with']:,} with it ({queries['reduction']:.1%} fewer)"
    )
    print(
        json.dumps(
            {
                "exit_pass_10k_ms": {k: passes["warm"][k] for k in ("p50", "p99", "n")},
                "exit_pass_10k_queries": passes["warm"]["queries"],
                "exit_pass_10k_cold_ms": {k: passes["cold"][k] for k in ("p50", "p99", "n")},
                "exit_pass_10k_cold_queries": passes["cold"]["queries"],
                "exit_pass_10k_naive_ms": {k: passes["naive"][k] for k in ("p50", "p99", "n")},
                "cache_query_reduction": queries["reduction"],
                "samples_ms": {
                    "exit_pass_10k_ms": passes["warm"]["samples"],
                    "exit_pass_10k_naive_ms": passes["naive"]["samples"],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
