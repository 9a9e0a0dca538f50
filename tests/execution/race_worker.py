"""Runs in a separate OS process: hammer the ledger services with random operations.

Each process opens its own connection to the test database, picks random targets (read without
locks, so processes often pick the same intent or order at once) and records every outcome. Typed
ledger refusals are expected under contention; anything else is a bug and is reported back.
"""

import os
import random
import traceback
import uuid


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["AEGIS_AUTO_SUBMIT"] = "0"  # the ledger alone: no broker behind these races
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()


def exit_race(database_url: str, position_ids: list[int], qty: int, barrier) -> list[dict]:
    """Round after round, everyone asks for a whole position at the same instant."""
    _setup(database_url)
    from execution import services
    from execution.exceptions import InsufficientAvailableQty

    results = []
    for position_id in position_ids:
        barrier.wait(timeout=60)
        try:
            intent = services.exit_intent_open(
                position_id=position_id,
                qty=qty,
                intent_type="EXIT_STOP_LOSS",
                idempotency_key=f"race:{uuid.uuid4()}",
            )
            results.append({"granted": intent.qty, "intent_id": str(intent.pk)})
        except InsufficientAvailableQty:
            results.append({"granted": 0})
    return results


def order_race(database_url: str, intent_id: str, barrier, fast: bool = False) -> dict:
    """Everyone tries to turn the same intent into an order at the same instant, through the
    one-statement path (`fast`, which yields None when it lost) or under the position lock."""
    _setup(database_url)
    from execution import services
    from execution.services.orders import order_open_recorded

    barrier.wait(timeout=60)
    if fast:
        order = order_open_recorded(intent_id=intent_id)
    else:
        order = services.order_open(intent_id=intent_id)
    return {"order_id": str(order.pk) if order else None}


def random_operations(database_url: str, seed: int, position_ids: list[int], n_ops: int) -> dict:
    _setup(database_url)
    from django.db import connection

    from execution import services
    from execution.exceptions import LedgerError
    from execution.models import Order, OrderIntent, Position
    from execution.services.orders import order_mark_submitted_fast, order_open_recorded

    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    unexpected: list[str] = []
    min_seen = {"qty": 0, "available": 0}
    used_fill_keys: list[tuple[str, str, int, int]] = []
    first = True

    def note(name: str) -> None:
        outcomes[name] = outcomes.get(name, 0) + 1

    def pick_order(position_id: int, statuses) -> Order | None:
        ids = list(
            Order.objects.filter(position_id=position_id, status__in=statuses).values_list(
                "pk", flat=True
            )[:20]
        )
        return Order.objects.get(pk=rng.choice(ids)) if ids else None

    def pick_new_intent(pid: int) -> str | None:
        ids = list(
            OrderIntent.objects.filter(position_id=pid, status="NEW").values_list("pk", flat=True)[
                :20
            ]
        )
        return rng.choice(ids) if ids else None

    def op_exit(pid: int) -> None:
        services.exit_intent_open(
            position_id=pid,
            qty=rng.randint(1, 400),
            intent_type=rng.choice(["EXIT_STOP_LOSS", "EXIT_TAKE_PROFIT", "GAP_DOWN", "FLATTEN"]),
            idempotency_key=f"x:{uuid.uuid4()}",
        )

    def op_order(pid: int) -> None:
        intent_id = pick_new_intent(pid)
        if intent_id is None:
            return note("order:none")
        sellable = rng.choice([None, None, None, rng.randint(0, 500)])
        if sellable is None and rng.random() < 0.5:  # the execute task's one-statement path
            return note(
                "order:fast" if order_open_recorded(intent_id=intent_id) else "order:fast_declined"
            )
        services.order_open(intent_id=intent_id, broker_sellable_qty=sellable)

    def op_submit(pid: int) -> None:
        order = pick_order(pid, [Order.Status.NEW])
        if order is None:
            return note("submit:none")
        odno = uuid.uuid4().hex[:10]
        if rng.random() < 0.5 and order_mark_submitted_fast(
            order_id=order.pk, broker_order_no=odno
        ):
            return note("submit:fast")
        services.order_mark_submitted(order_id=order.pk, broker_order_no=odno)

    def op_fill(pid: int) -> None:
        if used_fill_keys and rng.random() < 0.1:
            order_id, fill_key, q, p = rng.choice(used_fill_keys)  # a repeated notice
            services.fill_apply(order_id=order_id, broker_fill_key=fill_key, qty=q, price=p)
            return note("fill:repeat")
        order = pick_order(pid, Order.OPEN_STATUSES)
        if order is None:
            return note("fill:none")
        q = rng.randint(1, max(1, order.remaining_qty + 2))  # sometimes too much, on purpose
        p = rng.randint(9_000, 11_000)
        fill_key = f"f:{uuid.uuid4()}"
        services.fill_apply(order_id=order.pk, broker_fill_key=fill_key, qty=q, price=p)
        used_fill_keys.append((str(order.pk), fill_key, q, p))

    def op_cancel_order(pid: int) -> None:
        order = pick_order(pid, Order.OPEN_STATUSES)
        if order is None:
            return note("cancel:none")
        services.order_mark_cancelled(order_id=order.pk, reason="race")

    def op_reject(pid: int) -> None:
        order = pick_order(pid, [Order.Status.NEW, Order.Status.SUBMITTED])
        if order is None:
            return note("reject:none")
        services.order_reject(order_id=order.pk, reason="race")

    def op_cancel_intent(pid: int) -> None:
        intent_id = pick_new_intent(pid)
        if intent_id is None:
            return note("intent_cancel:none")
        services.intent_cancel(intent_id=intent_id, reason="race")

    def op_buy_more(pid: int) -> None:
        symbol = Position.objects.get(pk=pid).symbol
        services.entry_intent_open(
            symbol=symbol, qty=rng.randint(1, 100), idempotency_key=f"b:{uuid.uuid4()}"
        )

    operations = [
        (op_exit, 6),
        (op_order, 5),
        (op_submit, 4),
        (op_fill, 6),
        (op_cancel_order, 2),
        (op_reject, 1),
        (op_cancel_intent, 2),
        (op_buy_more, 1),
    ]
    funcs = [f for f, _ in operations]
    weights = [w for _, w in operations]

    for _ in range(n_ops):
        pid = rng.choice(position_ids)
        op = rng.choices(funcs, weights)[0]
        name = op.__name__[3:]
        try:
            op(pid)
            note(name)
        except LedgerError as exc:
            note(f"{name}:{type(exc).__name__}")
        except Exception:  # noqa: BLE001 - every other error is a bug to report
            unexpected.append(f"{name}: {traceback.format_exc(limit=3)}")
        row = Position.objects.filter(pk=pid).values("qty", "reserved_qty").first()
        if row:
            if first:
                min_seen = {"qty": row["qty"], "available": row["qty"] - row["reserved_qty"]}
                first = False
            min_seen["qty"] = min(min_seen["qty"], row["qty"])
            min_seen["available"] = min(min_seen["available"], row["qty"] - row["reserved_qty"])

    connection.close()
    return {"outcomes": outcomes, "unexpected": unexpected, "min_seen": min_seen}
