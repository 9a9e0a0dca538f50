"""Concurrency stress: OS processes race the ledger on a few positions with random exits, orders,
fills and cancels, and the run counts oversells afterwards from the rows themselves (must be 0).

An oversell is a position whose sell fills exceed its buy fills, or whose open sell orders and
NEW sell intents hold more shares than it has. Every process has its own database connection;
no broker is involved (orders are filled through the ledger's fill service). `python -m
bench.stress`, beside PostgreSQL (`make bench`). Prints a table and a JSON line.
"""

import json
import multiprocessing
import os
import random
import sys
import time
import uuid

PROCESSES = int(os.environ.get("BENCH_STRESS_PROCESSES", "8"))
OPERATIONS = int(os.environ.get("BENCH_STRESS_OPS", "400"))
POSITIONS = int(os.environ.get("BENCH_STRESS_POSITIONS", "4"))
QTY = 10_000


def _setup() -> None:
    os.environ["AEGIS_AUTO_SUBMIT"] = "0"  # the ledger alone
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()


def storm(seed: int, position_ids: list[int], operations: int, start_at: float) -> dict:
    """Random operations on the positions; counts of what happened (refusals are expected)."""
    _setup()
    from execution import services
    from execution.exceptions import LedgerError
    from execution.models import Order, OrderIntent

    rng = random.Random(seed)
    done = {"exit": 0, "order": 0, "fill": 0, "cancel": 0, "refused": 0}
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(operations):
        position_id = rng.choice(position_ids)
        action = rng.choices(["exit", "order", "fill", "cancel"], [4, 3, 3, 1])[0]
        try:
            if action == "exit":
                services.exit_intent_open(
                    position_id=position_id,
                    qty=rng.randint(1, 60),
                    intent_type="EXIT_STOP_LOSS",
                    idempotency_key=f"stress:{uuid.uuid4()}",
                )
            elif action == "order":
                intent = OrderIntent.objects.filter(
                    position_id=position_id, side="SELL", status="NEW"
                ).first()
                if intent is None:
                    continue
                services.order_open(intent_id=intent.pk)
            elif action == "fill":
                order = Order.objects.filter(
                    position_id=position_id, side="SELL", status__in=Order.OPEN_STATUSES
                ).first()
                if order is None:
                    continue
                qty = rng.randint(1, max(1, order.qty - order.filled_qty))
                services.fill_apply(
                    order_id=order.pk,
                    broker_fill_key=f"stress:{uuid.uuid4()}",
                    qty=qty,
                    price=10_000,
                )
            else:
                intent = OrderIntent.objects.filter(
                    position_id=position_id, side="SELL", status="NEW"
                ).first()
                if intent is None:
                    continue
                services.intent_cancel(intent_id=intent.pk, reason="stress")
            done[action] += 1
        except LedgerError:
            done["refused"] += 1
    return done


def oversells(position_ids: list[int]) -> int:
    """Positions the rows show oversold: sold more than bought, or more held back than held."""
    from django.db.models import Q, Sum

    from execution.models import Fill, Order, OrderIntent, Position

    count = 0
    for position in Position.objects.filter(pk__in=position_ids):
        fills = Fill.objects.filter(order__position=position).aggregate(
            bought=Sum("qty", filter=Q(order__side="BUY")),
            sold=Sum("qty", filter=Q(order__side="SELL")),
        )
        bought, sold = fills["bought"] or 0, fills["sold"] or 0
        open_orders = Order.objects.filter(
            position=position, side="SELL", status__in=Order.OPEN_STATUSES
        )
        held_back = sum(o.qty - o.filled_qty for o in open_orders) + (
            OrderIntent.objects.filter(position=position, side="SELL", status="NEW").aggregate(
                q=Sum("qty")
            )["q"]
            or 0
        )
        if sold > bought or held_back > bought - sold or position.qty != bought - sold:
            count += 1
    return count


def main() -> int:
    _setup()
    from django.db import connection

    from execution import services
    from execution.models import Position

    services.trading_state_set(state="ACTIVE", reason="benchmark", changed_by="bench")
    positions = []
    base = random.SystemRandom().randrange(100_000, 900_000)
    for i in range(POSITIONS):
        intent = services.entry_intent_open(
            symbol=f"{base + i:06d}", qty=QTY, idempotency_key=f"stress-entry:{uuid.uuid4()}"
        )
        order = services.order_open(intent_id=intent.pk)
        services.fill_apply(
            order_id=order.pk, broker_fill_key=f"stress:{uuid.uuid4()}", qty=QTY, price=10_000
        )
        positions.append(intent.position_id)
    connection.close()
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 5
    began = time.monotonic()
    with ctx.Pool(PROCESSES) as pool:
        results = pool.starmap(
            storm, [(seed, positions, OPERATIONS, start) for seed in range(PROCESSES)]
        )
    elapsed = time.monotonic() - began - 5
    totals = {k: sum(r[k] for r in results) for k in results[0]}
    found = oversells(positions)
    closed = Position.objects.filter(pk__in=positions, status="CLOSED").count()
    print(
        f"\nConcurrency stress: {PROCESSES} processes × {OPERATIONS} random operations on "
        f"{POSITIONS} positions of {QTY} shares, {elapsed:.1f} s"
    )
    print(
        "  " + ", ".join(f"{k} {v:,}" for k, v in totals.items()) + f"; positions closed {closed}"
    )
    print(f"  oversells: {found}")
    print(
        json.dumps(
            {
                "oversells": found,
                "stress": totals
                | {
                    "processes": PROCESSES,
                    "operations": PROCESSES * OPERATIONS,
                    "positions": POSITIONS,
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
