"""Fills through the deployed processes: a real Celery worker sends the orders and expires them,
`manage.py stream_fills` applies the fills KIS's notices announce, the KIS simulator on loopback.
A notice pushed twice is counted once; what stays unfilled is cancelled by the worker's
orders_expire after its (short) limit-order timeout, and the rest of the ledger follows.
"""

import datetime as dt
import re

import pytest

from core import clock
from execution import services
from execution.models import Fill, Order, Position
from execution.tasks import orders_expire_task
from tests.support import forget_broker_credentials, wait_until
from tests.support.ledger import key
from tests.support.workers import fill_stream_running, start_worker, stop_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIMIT_ORDER_TIMEOUT_S = 1


@pytest.fixture(scope="module")
def worker(kis_sim_process, django_db_setup, tmp_path_factory):
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    # The subject is fills and the expiry, at whatever hour this runs: orders may be cancelled
    # once their timeout has passed, in the session or not (the session guard is tested apart).
    proc = start_worker(
        kis_sim_process,
        log,
        env={"AEGIS_LIMIT_ORDER_TIMEOUT_S": str(LIMIT_ORDER_TIMEOUT_S), "AEGIS_ORDERS_DUE": ""},
    )
    yield log
    stop_worker(proc)


@pytest.fixture
def stream(kis_sim, worker, tmp_path):
    forget_broker_credentials()  # tokens and approval keys of a simulator since reset
    with fill_stream_running(kis_sim, tmp_path / "stream.log") as log:
        yield log


def fill_notices(log, odno: str) -> int:
    """Fill notices of `odno` the stream process has synced."""
    return len(re.findall(rf"fills\.notice odno={odno} fill=True", log.read_text()))


def part_fill_twice_noticed(kis_sim, stream, order: Order, *, filled: int) -> Order:
    """One matching step fills `filled` of the order; its notice arrives twice."""
    kis_sim.control("/_sim/faults", {"notice_repeat_next": 1})
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
    wait_until(lambda: fill_notices(stream, order.broker_order_no) == 2, "the notice, twice")
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == ("PARTIAL_FILLED", filled)
    fills = list(Fill.objects.filter(order=order).values_list("qty", "broker_fill_key"))
    assert [q for q, _ in fills] == [filled] and order.broker_order_no in fills[0][1]
    return order


def expire_by_the_worker(order: Order) -> Order:
    wait_until(
        lambda: (
            clock.now() - order.submitted_at > dt.timedelta(seconds=LIMIT_ORDER_TIMEOUT_S + 0.2)
        ),
        "the limit-order timeout",
    )
    orders_expire_task.delay()
    wait_until(lambda: Order.objects.get(pk=order.pk).status == "CANCELLED", "the expiry")
    order.refresh_from_db()
    return order


def test_a_repeated_fill_notice_counts_once_and_the_unfilled_rest_expires(kis_sim, stream):
    kis_sim.control("/_sim/limits", {"max_fill_per_step": 4})
    entry = services.entry_intent_open(
        symbol="005930", qty=10, limit_price=71_000, idempotency_key=key()
    )
    wait_until(lambda: Order.objects.filter(intent=entry, status="SUBMITTED").exists(), "the buy")
    buy = part_fill_twice_noticed(kis_sim, stream, Order.objects.get(intent=entry), filled=4)
    position = Position.objects.get(pk=entry.position_id)
    assert (position.qty, position.reserved_qty) == (4, 0)

    buy = expire_by_the_worker(buy)
    assert buy.filled_qty == 4
    at_kis = {o["odno"]: o for o in kis_sim.book()["orders"]}
    assert (
        at_kis[buy.broker_order_no]["filled_qty"],
        at_kis[buy.broker_order_no]["remaining"],
    ) == (4, 0)
    assert any(
        o["orgn_odno"] == buy.broker_order_no and o["kind"] == "cancel" for o in at_kis.values()
    )
    position.refresh_from_db()
    assert (position.qty, position.status) == (4, "OPEN")  # what was bought, no more

    kis_sim.control("/_sim/limits", {"max_fill_per_step": 3})
    exit_ = services.exit_intent_open(
        position_id=position.pk,
        qty=4,
        limit_price=71_000,
        intent_type="EXIT_TAKE_PROFIT",
        idempotency_key=key(),
    )
    wait_until(lambda: Order.objects.filter(intent=exit_, status="SUBMITTED").exists(), "the sell")
    position.refresh_from_db()
    assert (position.reserved_qty, position.available_qty) == (4, 0)
    sell = part_fill_twice_noticed(kis_sim, stream, Order.objects.get(intent=exit_), filled=3)
    position.refresh_from_db()
    assert (position.qty, position.reserved_qty, position.available_qty) == (1, 1, 0)

    sell = expire_by_the_worker(sell)
    assert sell.filled_qty == 3
    position.refresh_from_db()
    assert (position.qty, position.reserved_qty, position.available_qty) == (1, 0, 1)  # released
    holding = next(a for a in kis_sim.book()["accounts"] if a["cano"] == kis_sim.cano)
    assert [(h["qty"], h["orderable"]) for h in holding["holdings"]] == [(1, 1)]  # KIS agrees
