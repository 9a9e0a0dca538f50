"""Intents become broker orders through a real Celery worker process and the KIS simulator:
exactly one broker order per intent, however often the task is delivered; a broker refusal
releases the shares.
"""

import datetime as dt
import re
import time
from pathlib import Path

import pytest

from core import clock
from execution import services
from execution.models import Alert, Order, OrderIntent, Position
from execution.tasks import intent_execute, sweep
from tests.support import forget_broker_credentials, wait_until
from tests.support.ledger import claimed, key, past_its_deadline
from tests.support.workers import broker_orders

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_entry_intent_becomes_exactly_one_broker_order(kis_sim, worker):
    intent = services.entry_intent_open(symbol="005930", qty=10, idempotency_key=key())
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
        "the order to be submitted",
    )
    for _ in range(3):  # redelivered, or delivered by the sweep and the listener as well
        intent_execute.delay(str(intent.pk))
    time.sleep(1.0)
    order = Order.objects.get(intent=intent)
    assert order.broker_order_no and order.send_started_at and order.submitted_at
    mine = [o for o in broker_orders(kis_sim) if o["odno"] == order.broker_order_no]
    assert len(mine) == 1 and len(broker_orders(kis_sim)) == 1
    intent.refresh_from_db()
    assert intent.status == OrderIntent.Status.ORDERED and intent.ordered_at


def test_the_worker_freezes_its_start_up_objects_before_serving(worker):
    """Out of the garbage collector's full passes (core/memory.py), once, at worker_ready."""
    frozen = re.findall(r"gc\.frozen process=(\S+) objects=(\d+)", worker.read_text())
    assert frozen and {name for name, _ in frozen} == {"worker"}  # threads: no children
    assert all(int(count) > 50_000 for _, count in frozen)


def test_worker_processes_keep_their_database_connections(kis_sim, worker):
    """Celery's Django fixup would open a new PostgreSQL connection for every task (~6 ms)."""
    from django.db import connection

    def worker_backends() -> list:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT backend_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
            return [row[0] for row in cursor.fetchall()]

    def execute_one() -> None:
        intent = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
        wait_until(
            lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
            "the order to be submitted",
        )

    for _ in range(8):  # every pool process has run a task and holds a connection
        execute_one()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        batch_start = cursor.fetchone()[0]
    for _ in range(12):
        execute_one()
    backends = worker_backends()
    assert any(started < batch_start for started in backends), backends
    assert sum(started >= batch_start for started in backends) <= 4  # at most one per process


def test_a_worker_whose_database_connections_were_cut_recovers(kis_sim, worker):
    """PostgreSQL drops every worker connection (a restart, a failover): the next intent's
    task fails on its dead connection, is retried on a new one, and its order goes out once."""
    from django.db import connection

    intent = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
    wait_until(lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(), "warm-up")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        assert cursor.fetchone()[0] >= 1
    intents = [
        services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key()) for _ in range(4)
    ]
    wait_until(
        lambda: Order.objects.filter(intent__in=intents, status="SUBMITTED").count() == 4,
        "the orders after the cut",
        timeout=60,
    )
    assert all(Order.objects.filter(intent=i).count() == 1 for i in intents)
    assert len(broker_orders(kis_sim)) == 5


def test_broker_refusal_rejects_the_order_and_releases_the_shares(kis_sim, worker):
    # The ledger holds shares the broker does not: KIS refuses the sell (no short selling).
    entry = services.entry_intent_open(symbol="005930", qty=5, idempotency_key=key())
    wait_until(lambda: Order.objects.filter(intent=entry, status="SUBMITTED").exists(), "entry")
    order = Order.objects.get(intent=entry)
    services.fill_apply(order_id=order.pk, broker_fill_key=key("local"), qty=5, price=71_000)
    position = Position.objects.get(pk=entry.position_id)
    kis_sim.account_set({}, cash=100_000_000)
    exit_ = services.exit_intent_open(
        position_id=position.pk, qty=5, intent_type="EXIT_STOP_LOSS", idempotency_key=key()
    )
    wait_until(
        lambda: Order.objects.filter(intent=exit_, status="REJECTED").exists(),
        "the broker's refusal",
    )
    position.refresh_from_db()
    assert (position.qty, position.reserved_qty) == (5, 0)
    assert "APBK" in Order.objects.get(intent=exit_).reject_reason


def test_sweep_sends_intents_whose_enqueue_was_lost(kis_sim, worker, settings):
    settings.EXECUTION_AUTO_SUBMIT = False  # as if the broker was down at commit
    intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    assert sweep()["intents"] == 0  # too young: still on its normal path
    with clock.installed(clock.FixedClock(clock.now() + dt.timedelta(seconds=5))):
        assert sweep()["intents"] == 1
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
        "the swept intent to be submitted",
    )
    assert (
        len(
            [
                o
                for o in broker_orders(kis_sim)
                if o["odno"] == Order.objects.get(intent=intent).broker_order_no
            ]
        )
        == 1
    )


def test_sweep_leaves_intents_alone_while_halted(kis_sim, worker, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    services.trading_state_set(state="HALTED", reason="test", changed_by="pytest")
    with clock.installed(clock.FixedClock(clock.now() + dt.timedelta(seconds=5))):
        assert sweep()["intents"] == 0


def test_sweep_sends_orders_whose_task_gave_up(kis_sim, worker, settings):
    # KIS was unreachable until the task ran out of retries: the order is recorded, unclaimed.
    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(symbol="005930", qty=2, idempotency_key=key())
    order = services.order_open(intent_id=intent.pk)
    later = clock.FixedClock(clock.now() + dt.timedelta(seconds=5))
    services.trading_state_set(state="REDUCING", reason="test", changed_by="pytest")
    with clock.installed(later):
        assert sweep()["intents"] == 0  # an entry waits while only exits may go out
    services.trading_state_set(state="ACTIVE", reason="test", changed_by="pytest")
    with clock.installed(later):
        assert sweep()["intents"] == 1
    wait_until(
        lambda: Order.objects.filter(pk=order.pk, status="SUBMITTED").exists(),
        "the abandoned order to be sent",
    )
    assert Order.objects.filter(intent=intent).count() == 1
    assert len(broker_orders(kis_sim)) == 1


def test_a_recorded_order_is_not_sent_while_halted(kis_client, kis_sim, settings):
    from execution.exceptions import TradingNotAllowed
    from execution.services.submission import intent_submit

    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(symbol="005930", qty=2, idempotency_key=key())
    services.order_open(intent_id=intent.pk)
    services.trading_state_set(state="HALTED", reason="test", changed_by="pytest")
    with pytest.raises(TradingNotAllowed):
        intent_submit(intent_id=intent.pk, broker=kis_client)
    assert broker_orders(kis_sim) == []
    assert Order.objects.get(intent=intent).send_started_at is None


def test_an_order_refused_for_its_token_twice_waits_to_be_sent_again(kis_client, kis_sim, settings):
    """KIS's gateway refuses an expired token before the order reaches the exchange: the client
    replaces the token once, and when the new one is refused too the order is left unsent and
    unclaimed for the retry (or the sweep), never rejected, and a person is alerted."""
    from execution.services.submission import NOT_SENT, Outcome, intent_submit
    from kis.errors import KisTokenExpired

    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(symbol="005930", qty=2, idempotency_key=key())
    kis_sim.control("/_sim/limits", {"token_ttl_s": 0, "token_interval_s": 0})  # born expired
    with pytest.raises(NOT_SENT) as refused:
        intent_submit(intent_id=intent.pk, broker=kis_client)
    assert isinstance(refused.value, KisTokenExpired)
    order = Order.objects.get(intent=intent)
    assert (order.status, order.send_started_at, order.broker_order_no) == ("NEW", None, None)
    assert broker_orders(kis_sim) == []
    with pytest.raises(NOT_SENT):  # refused again: still unsent, and alerted once
        intent_submit(intent_id=intent.pk, broker=kis_client)
    [alert] = Alert.objects.filter(kind=Alert.Kind.CREDENTIALS)
    assert alert.severity == "CRITICAL" and alert.subject == "kis-order"
    assert kis_client.config.order_app.fingerprint in alert.message
    assert kis_client.config.order_app.appkey not in alert.message  # a fingerprint, never the key
    kis_sim.control("/_sim/limits", {"token_ttl_s": 86_400})
    assert intent_submit(intent_id=intent.pk, broker=kis_client) is Outcome.SUBMITTED
    assert Order.objects.get(intent=intent).status == "SUBMITTED"
    assert len(broker_orders(kis_sim)) == 1


# --- entries too old to send ---------------------------------------------------------------------


def _past_max_age(settings) -> clock.FixedClock:
    return clock.FixedClock(
        clock.now() + dt.timedelta(seconds=settings.EXECUTION_ENTRY_MAX_AGE_S + 1)
    )


@pytest.mark.parametrize("recorded", [False, True], ids=["no-order-yet", "order-recorded"])
def test_an_entry_not_sent_in_time_is_withdrawn_never_sent_late(
    kis_client, kis_sim, settings, recorded
):
    """KIS was out of reach past the entry's deadline (or its task's retries, then the sweep,
    came late): the entry is withdrawn, its intent or its unsent order cancelled with the
    reason, its empty position closed, and nothing reaches KIS, however often it is retried."""
    from execution.exceptions import InvalidIntentState
    from execution.services.submission import Outcome, intent_submit

    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(
        symbol="005930", qty=2, limit_price=71_000, idempotency_key=key()
    )
    if recorded:
        services.order_open(intent_id=intent.pk)  # its send failed before KIS: unclaimed
    with clock.installed(_past_max_age(settings)):
        assert intent_submit(intent_id=intent.pk, broker=kis_client) is Outcome.EXPIRED
        if recorded:  # delivered again: its order is closed
            assert intent_submit(intent_id=intent.pk, broker=kis_client) is Outcome.ALREADY
        else:  # the intent itself is cancelled, which the ledger refuses to order
            with pytest.raises(InvalidIntentState):
                intent_submit(intent_id=intent.pk, broker=kis_client)
        assert sweep() == {"intents": 0, "orders_in_flight": 0}  # nothing left to send
    intent.refresh_from_db()
    assert broker_orders(kis_sim) == []
    if recorded:
        order = Order.objects.get(intent=intent)
        assert order.status == "CANCELLED" and order.reject_reason.startswith("expired")
    else:
        assert not Order.objects.filter(intent=intent).exists()
        assert intent.status == "CANCELLED" and intent.closed_reason.startswith("expired")
    assert Position.objects.get(pk=intent.position_id).status == "CLOSED"


def test_an_entry_claimed_for_a_send_kis_never_saw_is_withdrawn_when_too_old(
    kis_client, kis_sim, settings
):
    from execution.services.submission import Outcome, order_settle

    order = _recorded_and_claimed(settings)
    with clock.installed(_past_max_age(settings)):
        assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.EXPIRED
        assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.ALREADY
    order.refresh_from_db()
    assert order.status == "CANCELLED" and broker_orders(kis_sim) == []


def test_an_old_exit_is_still_sent(kis_client, kis_sim, settings):
    """A stop loss late is better than none: exits never expire."""
    from execution.services.submission import Outcome, intent_submit

    kis_sim.account_set({"005930": 3})
    settings.EXECUTION_AUTO_SUBMIT = False
    entry = services.entry_intent_open(
        symbol="005930", qty=3, limit_price=71_000, idempotency_key=key()
    )
    bought = services.order_open(intent_id=entry.pk)
    services.order_mark_submitted(order_id=bought.pk, broker_order_no="bought-before")
    services.fill_apply(order_id=bought.pk, broker_fill_key=key("fill"), qty=3, price=71_000)
    exit_ = services.exit_intent_open(
        position_id=entry.position_id, qty=3, intent_type="EXIT_STOP_LOSS", idempotency_key=key()
    )
    with clock.installed(_past_max_age(settings)):
        assert intent_submit(intent_id=exit_.pk, broker=kis_client) is Outcome.SUBMITTED
    assert [o["qty"] for o in broker_orders(kis_sim)] == [3]


def test_entries_never_expire_when_told_so(kis_client, kis_sim, settings):
    from execution.services.submission import Outcome, intent_submit

    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
    later = clock.FixedClock(clock.now() + dt.timedelta(hours=1))
    settings.EXECUTION_ENTRY_MAX_AGE_S = 0
    with clock.installed(later):
        assert intent_submit(intent_id=intent.pk, broker=kis_client) is Outcome.SUBMITTED
    assert len(broker_orders(kis_sim)) == 1


def _recorded_and_claimed(settings):
    """An entry whose order was recorded and claimed for sending, as a worker leaves it when it
    dies around the broker call.
    """
    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(
        symbol="005930", qty=4, limit_price=71_000, idempotency_key=key()
    )
    order = services.order_open(intent_id=intent.pk)
    order = claimed(order.pk)
    past_its_deadline(order.pk)  # its window gone by: the settles below may act
    return Order.objects.get(pk=order.pk)


def test_an_order_that_reached_kis_is_adopted_not_resent(kis_client, kis_sim, settings):
    from execution.services.submission import Outcome, order_settle

    order = _recorded_and_claimed(settings)
    sent = kis_client.order_cash(side="BUY", symbol="005930", qty=4, price=71_000)  # it got out
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.SUBMITTED
    order.refresh_from_db()
    assert order.broker_order_no == sent.odno and order.status == "SUBMITTED"
    assert order.broker_org_no == sent.org_no != ""  # what a cancel of it needs
    assert len(broker_orders(kis_sim)) == 1


def test_identical_orders_settled_at_once_each_adopt_their_own_number(
    kis_client, kis_sim, settings
):
    """Six identical orders whose sends timed out after KIS took them, settled side by side:
    each adopts one of KIS's six numbers (the unique number per day turns a second adopter to
    the next candidate), none is sent again."""
    from execution.services.submission import Outcome, order_settle
    from tests.support import at_once

    orders = [_recorded_and_claimed(settings) for _ in range(6)]
    for _ in orders:  # each got out; no worker heard back
        kis_client.order_cash(side="BUY", symbol="005930", qty=4, price=71_000)
    outcomes = at_once(
        lambda order: order_settle(order_id=order.pk, broker=kis_client),
        [(order,) for order in orders],
    )
    assert outcomes == [Outcome.SUBMITTED] * 6
    numbers = {Order.objects.get(pk=order.pk).broker_order_no for order in orders}
    assert numbers == {o["odno"] for o in broker_orders(kis_sim)} and len(numbers) == 6


def test_an_order_that_never_reached_kis_is_sent_after_its_deadline(kis_client, kis_sim, settings):
    from execution.services.submission import Outcome, order_settle

    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(
        symbol="005930", qty=4, limit_price=71_000, idempotency_key=key()
    )
    order = claimed(services.order_open(intent_id=intent.pk).pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.IN_FLIGHT
    assert broker_orders(kis_sim) == []  # not yet: it may still be on its way
    past_its_deadline(order.pk)
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.SUBMITTED
    assert order_settle(order_id=order.pk, broker=kis_client) is Outcome.ALREADY
    assert len(broker_orders(kis_sim)) == 1
    assert Order.objects.get(pk=order.pk).send_attempts == 2


# --- an order call that times out on a live worker, settled by the sweep ----------------------
KIS_READ_TIMEOUT_S = 5  # KisConfig's read timeout, which the worker runs with
HELD_S = KIS_READ_TIMEOUT_S + 3  # the simulator holds the request longer than that


def _warm_worker(kis_sim) -> Order:
    """One order through the worker first: its token, cached from an earlier test, belongs to a
    reset simulator, and the request that finds out must not be the one meeting the fault."""
    forget_broker_credentials()  # nor may the replacement be another test's void token
    intent = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
    wait_until(lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(), "warm-up")
    return Order.objects.get(intent=intent)


def _timed_out_on_the_worker(kis_sim, log: Path, fault: dict) -> Order:
    kis_sim.control("/_sim/faults", fault | {"timeout_s": HELD_S})
    intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key=key())
    wait_until(lambda: Order.objects.filter(intent=intent).exists(), "the order to be recorded")
    order = Order.objects.get(intent=intent)
    wait_until(
        lambda: f"execution.in_flight order_id={order.pk}" in log.read_text(),
        "the worker's order call to time out",
        timeout=HELD_S + 30,
    )
    order.refresh_from_db()
    assert (order.status, order.broker_order_no) == ("NEW", None) and order.send_started_at
    return order


def _settle_by_sweep(log: Path, *, moved_on: dt.timedelta) -> str:
    """Run the sweep `moved_on` later (the worker settles what it enqueues); the settle task's
    result as the worker logged it."""
    already = len(log.read_text())
    with clock.installed(clock.FixedClock(clock.now() + moved_on)):
        assert sweep()["orders_in_flight"] == 1
    settled = re.compile(r"Task execution\.order_settle\[[^\]]+\] succeeded in [^:]+: '(\w+)'")
    wait_until(lambda: settled.search(log.read_text()[already:]), "the settle task")
    return settled.search(log.read_text()[already:])[1]


def test_an_order_that_timed_out_after_kis_took_it_is_adopted_by_the_settle(kis_sim, worker):
    warm = _warm_worker(kis_sim)
    order = _timed_out_on_the_worker(kis_sim, worker, {"timeout_next": 1, "after": True})
    at_kis = [o for o in broker_orders(kis_sim) if o["odno"] != warm.broker_order_no]
    assert [o["qty"] for o in at_kis] == [3]  # KIS took it; the worker never heard
    past_its_deadline(order.pk)
    assert _settle_by_sweep(worker, moved_on=dt.timedelta(0)) == "submitted"
    order.refresh_from_db()
    assert order.status == "SUBMITTED" and order.broker_order_no == at_kis[0]["odno"]
    assert len(broker_orders(kis_sim)) == 2  # adopted, never sent again
    assert order.intent.status == OrderIntent.Status.ORDERED


def test_an_order_lost_on_its_way_is_sent_once_after_its_deadline(kis_sim, worker):
    warm = _warm_worker(kis_sim)
    order = _timed_out_on_the_worker(kis_sim, worker, {"lost_next": 1})
    assert [o["odno"] for o in broker_orders(kis_sim)] == [warm.broker_order_no]
    # Within its deadline it may still be travelling: the sweep leaves it alone.
    assert sweep()["orders_in_flight"] == 0
    assert [o["odno"] for o in broker_orders(kis_sim)] == [warm.broker_order_no]
    past_its_deadline(order.pk)
    assert _settle_by_sweep(worker, moved_on=dt.timedelta(0)) == "submitted"
    order.refresh_from_db()
    mine = [o for o in broker_orders(kis_sim) if o["odno"] == order.broker_order_no]
    assert order.status == "SUBMITTED" and [o["qty"] for o in mine] == [3]
    assert len(broker_orders(kis_sim)) == 2  # sent exactly once
    requests = [e["fault"] for e in kis_sim.book()["requests"] if "order-cash" in e["path"]]
    assert requests[requests.index("lost") :] == ["lost", None]  # then the settle's, once
