"""I1 and I2 under real contention: separate OS processes, each with its own PostgreSQL
connection, race every ledger operation on a handful of positions.
"""

import multiprocessing

import pytest
from django.db.models import F, Sum

from execution.models import Fill, Order, OrderIntent, Position
from execution.selectors import position_ledger_breakdown
from tests import support
from tests.execution import race_worker
from tests.support.ledger import open_position

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROCESSES = 8
OPS_PER_PROCESS = 400
RACE_ROUNDS = 25


@pytest.fixture
def test_database_url():
    return support.child_database_url()


@pytest.fixture
def pool():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as p:
        yield p, ctx


def _fill_sum(position, side):
    return (
        Fill.objects.filter(order__position=position, order__side=side).aggregate(s=Sum("qty"))["s"]
        or 0
    )


def test_simultaneous_full_exits_sell_each_position_once(pool, test_database_url, new_symbol):
    p, ctx = pool
    positions = [open_position(new_symbol(), 100) for _ in range(RACE_ROUNDS)]
    ids = [pos.pk for pos in positions]
    barrier = ctx.Manager().Barrier(PROCESSES)
    per_process = p.starmap(
        race_worker.exit_race, [(test_database_url, ids, 100, barrier)] * PROCESSES
    )
    for round_no in range(RACE_ROUNDS):
        granted = sorted(results[round_no]["granted"] for results in per_process)
        assert granted == [0] * (PROCESSES - 1) + [100], (round_no, granted)
    for position in Position.objects.filter(pk__in=ids):
        assert position.reserved_qty == 100
        assert position_ledger_breakdown(position=position).consistent

    # Every round has exactly one winner (asserted above), but which process wins is up to the
    # scheduler: one process can win all 25, so look through every process's results.
    intent_id = next(r["intent_id"] for results in per_process for r in results if r["granted"])
    barrier = ctx.Manager().Barrier(PROCESSES)
    # Half take the execute task's one-statement path, half go under the position lock.
    orders = p.starmap(
        race_worker.order_race,
        [(test_database_url, intent_id, barrier, i % 2 == 0) for i in range(PROCESSES)],
    )
    assert len({o["order_id"] for o in orders} - {None}) == 1
    assert Order.objects.filter(intent_id=intent_id).count() == 1


def test_random_operation_storm_never_oversells(pool, test_database_url, new_symbol):
    p, _ = pool
    positions = [open_position(new_symbol(), qty) for qty in (300, 500, 800, 1_000)]
    ids = [pos.pk for pos in positions]
    results = p.starmap(
        race_worker.random_operations,
        [(test_database_url, seed, ids, OPS_PER_PROCESS) for seed in range(PROCESSES)],
    )

    unexpected = [u for r in results for u in r["unexpected"]]
    assert not unexpected, "\n".join(unexpected[:5])
    assert all(r["min_seen"]["qty"] >= 0 and r["min_seen"]["available"] >= 0 for r in results)

    totals: dict[str, int] = {}
    for r in results:
        for name, count in r["outcomes"].items():
            totals[name] = totals.get(name, 0) + count
    assert sum(totals.values()) >= PROCESSES * OPS_PER_PROCESS
    # The storm must have exercised the paths it claims to: successes and refusals alike.
    for needed in (
        "exit",
        "order",
        "submit",
        "fill",
        "cancel_order",
        "reject",
        "exit:InsufficientAvailableQty",
        "fill:repeat",
    ):
        assert totals.get(needed, 0) > 0, (needed, totals)
    mine = {"position__in": ids}
    assert Order.objects.filter(status="REJECTED", **mine).exists(), "no order was rejected"
    assert Fill.objects.filter(order__position__in=ids, qty__lt=F("order__qty")).exists(), (
        "no order filled in part"
    )
    assert (
        Order.objects.filter(status="PARTIAL_FILLED", **mine).exists()
        or Order.objects.filter(status="CANCELLED", filled_qty__gt=0, **mine).exists()
    ), "no order was left part-filled"

    for position in Position.objects.filter(pk__in=ids):
        bought, sold = _fill_sum(position, "BUY"), _fill_sum(position, "SELL")
        assert sold <= bought, f"{position}: sold {sold} > bought {bought}"
        assert position.qty == bought - sold, position
        breakdown = position_ledger_breakdown(position=position)
        assert breakdown.consistent, breakdown
        for order in Order.objects.filter(position=position):
            filled = order.fills.aggregate(s=Sum("qty"))["s"] or 0
            assert order.filled_qty == filled <= order.qty, order
        for intent in OrderIntent.objects.filter(position=position, side="SELL"):
            sent = intent.orders.aggregate(s=Sum("qty"))["s"] or 0
            assert sent <= intent.qty, intent
            assert intent.orders.count() <= 1, intent
