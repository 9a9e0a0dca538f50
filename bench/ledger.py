"""Benchmark: opening an exit intent under the position's row lock, on real PostgreSQL.

  aegis   the ledger's service: the reservation is a counter on the locked position row
          (kept ≤ qty by a CHECK constraint), so the check is one row read.
  sums    the review's formula as written: under the same lock, sum the open SELL orders'
          remainders and the NEW exit intents, then insert. Everything else (state check,
          idempotency lookup) is the same as in the service.

Both run interleaved in the same process against the same server, so drift hits both alike.
Arrivals are back to back and, separately, paced with random gaps (a tick arrives when it
arrives: PERFORMANCE.md shows idle connections cost 3-7x more). Prints a table; never fails on a
time. Run it with `make bench`.
"""

import json
import os
import random
import sys
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
# The ledger alone: no execute task is enqueued on commit, so neither variant pays a publish
# and no task is left queued for a later benchmark's worker.
os.environ["AEGIS_AUTO_SUBMIT"] = "0"

import django  # noqa: E402

from bench.stats import quantile  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import F, Sum  # noqa: E402
from django.db.models.functions import Coalesce  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from core import clock  # noqa: E402
from execution import services  # noqa: E402
from execution.locks import position_qs_for_update  # noqa: E402
from execution.models import Fill, Order, OrderIntent, Position  # noqa: E402
from execution.services.trading_state import require_state_allows  # noqa: E402

N = int(os.environ.get("BENCH_N", "1500"))
HISTORY_ORDERS = 50  # closed orders a position carries from earlier trading


def sums_exit_intent_open(*, position_id: int, qty: int) -> OrderIntent:
    """The review's formula, evaluated under the row lock."""
    now = clock.now()
    key = f"bench:{uuid.uuid4()}"
    with transaction.atomic():
        require_state_allows(side="SELL", operation="opening an exit")
        position = position_qs_for_update().get(pk=position_id)
        OrderIntent.objects.filter(idempotency_key=key).first()  # as the service does
        by_orders = Order.objects.filter(
            position_id=position_id, side="SELL", status__in=Order.OPEN_STATUSES
        ).aggregate(v=Coalesce(Sum(F("qty") - F("filled_qty")), 0))["v"]
        by_intents = OrderIntent.objects.filter(
            position_id=position_id, side="SELL", status="NEW"
        ).aggregate(v=Coalesce(Sum("qty"), 0))["v"]
        available = position.qty - by_orders - by_intents
        if available <= 0:
            raise RuntimeError("nothing available")
        return OrderIntent.objects.create(
            intent_type="EXIT_STOP_LOSS",
            side="SELL",
            position=position,
            symbol=position.symbol,
            qty=min(qty, available),
            idempotency_key=key,
            event_at=now,
            created_at=now,
        )


def aegis_exit_intent_open(*, position_id: int, qty: int) -> OrderIntent:
    return services.exit_intent_open(
        position_id=position_id,
        qty=qty,
        intent_type="EXIT_STOP_LOSS",
        idempotency_key=f"bench:{uuid.uuid4()}",
    )


def make_position(symbol: str) -> Position:
    intent = services.entry_intent_open(
        symbol=symbol, qty=10_000_000, idempotency_key=f"bench:{uuid.uuid4()}"
    )
    order = services.order_open(intent_id=intent.pk)
    services.fill_apply(
        order_id=order.pk, broker_fill_key=f"bench:{uuid.uuid4()}", qty=10_000_000, price=50_000
    )
    for _ in range(HISTORY_ORDERS):  # a history of finished exits
        exit_intent = aegis_exit_intent_open(position_id=intent.position_id, qty=1)
        sell = services.order_open(intent_id=exit_intent.pk)
        services.fill_apply(
            order_id=sell.pk, broker_fill_key=f"bench:{uuid.uuid4()}", qty=1, price=50_100
        )
    return Position.objects.get(pk=intent.position_id)


def main() -> int:
    services.trading_state_set(state="ACTIVE", reason="benchmark", changed_by="bench")
    run = uuid.uuid4().int % 900_000 + 100_000
    positions = {
        "aegis": make_position(f"{run:06d}"),
        "sums": make_position(f"{(run + 1) % 1_000_000:06d}"),
    }
    calls = {"aegis": aegis_exit_intent_open, "sums": sums_exit_intent_open}

    queries = {}
    for name, call in calls.items():
        with CaptureQueriesContext(connection) as ctx:
            call(position_id=positions[name].pk, qty=1)
        queries[name] = len(ctx.captured_queries)

    rng = random.Random(7)
    results: dict[str, dict[str, list[float]]] = {
        mode: {name: [] for name in calls} for mode in ("back-to-back", "paced 0-20 ms")
    }
    for mode, samples in results.items():
        for _ in range(N):
            for name in rng.sample(list(calls), 2):  # random order: no variant always goes first
                if mode != "back-to-back":
                    time.sleep(rng.uniform(0, 0.020))
                started = time.perf_counter()
                calls[name](position_id=positions[name].pk, qty=1)
                samples[name].append((time.perf_counter() - started) * 1e6)

    print(
        f"exit intent open under the row lock, PostgreSQL {connection.pg_version // 10000}, "
        f"n={N} per cell, {HISTORY_ORDERS} past orders per position"
    )
    print(f"{'arrivals':<15} {'variant':<7} {'queries':>7} {'p50 µs':>8} {'p99 µs':>8}")
    figures = {}
    for mode, samples in results.items():
        for name, values in samples.items():
            p50, p99 = quantile(values, 50), quantile(values, 99)
            figures[f"{mode}/{name}"] = {
                "p50_us": round(p50),
                "p99_us": round(p99),
                "n": len(values),
                "queries": queries[name],
            }
            print(f"{mode:<15} {name:<7} {queries[name]:>7} {p50:>8.0f} {p99:>8.0f}")
    print(json.dumps(figures))
    _remove(list(positions.values()))
    return 0


def _remove(positions: list[Position]) -> None:
    """Delete what the benchmark wrote. The review's formula writes intents without reserving
    their shares, so its rows would otherwise leave an inconsistent ledger to later runs."""
    with transaction.atomic():
        orders = Order.objects.filter(position__in=positions)
        Fill.objects.filter(order__in=orders).delete()
        orders.delete()
        OrderIntent.objects.filter(position__in=positions).delete()
        Position.objects.filter(pk__in=[p.pk for p in positions]).delete()


if __name__ == "__main__":
    sys.exit(main())
