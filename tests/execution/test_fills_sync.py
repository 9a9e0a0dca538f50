"""Fills come back into the ledger from KIS's daily orders inquiry (the simulator on loopback):
entry and exit to a closed position, partial fills, repeated and overlapping syncs that count
nothing twice, exact amounts across several prices, and remainders that end at KIS.
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from execution import services
from execution.models import Fill, Order, Position
from execution.services.sync import orders_sync
from tests.support.fills import held, send
from tests.support.kis import client_for, sim_dict
from tests.support.ledger import key

pytestmark = pytest.mark.django_db(transaction=True)


def working(position, broker, limit_price: int, intent_type: str):
    """A sell of 4 of the position's shares at `limit_price`, at KIS and not filled yet."""
    return send(
        services.exit_intent_open(
            position_id=position.pk,
            qty=4,
            limit_price=limit_price,
            intent_type=intent_type,
            idempotency_key=key(),
        ),
        broker,
    )


def test_entry_and_exit_to_a_closed_position(kis_sim, broker):
    entry = services.entry_intent_open(symbol="005930", qty=10, idempotency_key=key())
    send(entry, broker)
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
    assert orders_sync(broker=broker)["filled"] == 1
    position = Position.objects.get(pk=entry.position_id)
    assert (position.qty, position.avg_price) == (10, Decimal("71000"))

    exit_ = services.exit_intent_open(
        position_id=position.pk, qty=10, intent_type="EXIT_TAKE_PROFIT", idempotency_key=key()
    )
    order = send(exit_, broker)
    kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 72_000})
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
    orders_sync(broker=broker)
    position.refresh_from_db()
    assert position.status == "CLOSED" and position.qty == 0
    assert position.realized_pnl == Decimal(10 * 1_000)
    assert Order.objects.get(pk=order.pk).status == "FILLED"


def test_partial_fills_and_repeated_syncs(kis_sim, broker):
    kis_sim.control("/_sim/limits", {"max_fill_per_step": 3})
    entry = services.entry_intent_open(symbol="005930", qty=8, idempotency_key=key())
    order = send(entry, broker)
    seen = []
    for _ in range(3):
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
        orders_sync(broker=broker)
        orders_sync(broker=broker)  # the same figures again: nothing more
        seen.append(Order.objects.get(pk=order.pk).filled_qty)
    assert seen == [3, 6, 8]
    assert Order.objects.get(pk=order.pk).status == "FILLED"
    assert list(Fill.objects.filter(order=order).order_by("qty").values_list("qty", flat=True)) == [
        2,
        3,
        3,
    ]


def test_overlapping_syncs_count_nothing_twice(kis_sim, broker):
    entry = services.entry_intent_open(symbol="005930", qty=9, idempotency_key=key())
    order = send(entry, broker)
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})

    def sync():
        try:
            orders_sync(broker=client_for(sim_dict(kis_sim), rate=200))
        finally:
            connection.close()

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Order.objects.get(pk=order.pk).filled_qty == 9
    assert Position.objects.get(pk=entry.position_id).qty == 9
    assert Fill.objects.filter(order=order).count() == 1


def test_a_catch_up_over_several_prices_keeps_the_exact_amount(kis_sim, broker):
    kis_sim.control("/_sim/limits", {"max_fill_per_step": 2})
    entry = services.entry_intent_open(symbol="005930", qty=4, idempotency_key=key())
    send(entry, broker)
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})  # 2 at 71,000
    kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 71_100})
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})  # 2 at 71,100
    orders_sync(broker=broker)  # one catch-up over both trades
    position = Position.objects.get(pk=entry.position_id)
    assert position.qty == 4 and position.avg_price == Decimal("71050")


def test_a_remainder_cancelled_at_kis_is_released(kis_sim, broker):
    position_entry = services.entry_intent_open(symbol="005930", qty=5, idempotency_key=key())
    send(position_entry, broker)
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
    orders_sync(broker=broker)
    exit_ = services.exit_intent_open(
        position_id=position_entry.position_id,
        qty=5,
        limit_price=90_000,
        intent_type="EXIT_TRAILING",
        idempotency_key=key(),
    )
    order = send(exit_, broker)
    broker.order_cancel(org_no=order.broker_org_no, odno=order.broker_order_no)  # e.g. by MTS
    assert orders_sync(broker=broker)["closed"] == 1
    assert Order.objects.get(pk=order.pk).status == "CANCELLED"
    position = Position.objects.get(pk=position_entry.position_id)
    assert (position.qty, position.reserved_qty) == (5, 0)


@pytest.mark.usefixtures("trading_hours")  # the same Seoul day throughout
def test_the_exit_engine_expires_only_the_exits_it_decides_again(kis_sim, broker):
    """With intent types (the exit engine's re-pricing), only those orders meet the timeout:
    the stop loss is cancelled after the short one, the take-profit tier waits for the general
    one."""
    import datetime as dt

    from core import clock
    from execution.services.expiry import orders_expire
    from trading.services import DECIDED_AGAIN

    position = held(kis_sim, broker)
    # Both above the market (71,000): neither fills.
    stop = working(position, broker, 72_000, "EXIT_STOP_LOSS")
    tier = working(position, broker, 72_000, "EXIT_TAKE_PROFIT")
    general, exits = dt.timedelta(seconds=60), dt.timedelta(seconds=10)
    start = clock.now()

    def expire(after: dt.timedelta, **only) -> dict:
        with clock.installed(clock.FixedClock(start + after)):
            return orders_expire(broker=broker, **only)

    decided_again = {"timeout": exits, "intent_types": DECIDED_AGAIN}
    assert expire(dt.timedelta(seconds=0), **decided_again)["expired"] == 0
    assert expire(exits + dt.timedelta(seconds=1), **decided_again) == {"expired": 1, "closed": 1}
    stop.refresh_from_db()
    tier.refresh_from_db()
    position.refresh_from_db()
    assert (stop.status, tier.status) == ("CANCELLED", "SUBMITTED")
    assert (position.qty, position.available_qty) == (10, 6)  # the stop's shares are free
    assert expire(general - dt.timedelta(seconds=1), **decided_again)["expired"] == 0
    assert expire(general + dt.timedelta(seconds=1), timeout=general) == {"expired": 1, "closed": 1}
    tier.refresh_from_db()
    assert tier.status == "CANCELLED"


@pytest.mark.usefixtures("trading_hours")  # the same Seoul day throughout
def test_a_stop_at_the_lower_limit_keeps_its_place_in_the_queue(kis_sim, broker):
    """Priced again it would go in at the same price, last: the expiry leaves it working."""
    import datetime as dt

    from core import clock
    from execution.services.expiry import orders_expire
    from market.models import BestPrice
    from trading.services import DECIDED_AGAIN

    position = held(kis_sim, broker)
    BestPrice.objects.update_or_create(
        symbol="005930",
        defaults={
            "price": 49_700,
            "prev_close": 71_000,
            "lower_limit": 49_700,
            "upper_limit": 92_300,
            "source": "WS",
            "event_at": clock.now(),
        },
    )
    at_limit = working(position, broker, 49_700, "EXIT_STOP_LOSS")
    above = working(position, broker, 72_000, "EXIT_STOP_LOSS")
    later = clock.now() + dt.timedelta(seconds=11)
    with clock.installed(clock.FixedClock(later)):
        counts = orders_expire(
            broker=broker, timeout=dt.timedelta(seconds=10), intent_types=DECIDED_AGAIN
        )
    assert counts == {"expired": 1, "closed": 1}
    at_limit.refresh_from_db()
    above.refresh_from_db()
    assert (at_limit.status, above.status) == ("SUBMITTED", "CANCELLED")
    [left] = [o for o in kis_sim.book()["orders"] if o["remaining"] and o["side"] == "SELL"]
    assert left["odno"] == at_limit.broker_order_no


@pytest.mark.usefixtures("trading_hours")  # the same Seoul day throughout
def test_an_order_in_a_volatility_interruptions_auction_waits_for_its_match(kis_sim, broker):
    import datetime as dt

    from core import clock
    from execution.services.expiry import orders_expire
    from market import vi as market_vi

    position = held(kis_sim, broker)
    stop = working(position, broker, 72_000, "EXIT_STOP_LOSS")
    market_vi.vi_mark("005930", expected=66_000, reference=71_000, at=clock.now())
    later = clock.now() + dt.timedelta(seconds=11)
    try:
        with clock.installed(clock.FixedClock(later)):
            timeout = dt.timedelta(seconds=10)
            assert orders_expire(broker=broker, timeout=timeout)["expired"] == 0
            stop.refresh_from_db()
            assert stop.status == "SUBMITTED"
            market_vi.vi_clear("005930")  # a trade: the auction is over
            assert orders_expire(broker=broker, timeout=timeout) == {"expired": 1, "closed": 1}
    finally:
        market_vi.vi_clear("005930")


@pytest.mark.usefixtures("trading_hours")  # the same Seoul day throughout
def test_unfilled_limit_orders_are_cancelled_after_the_timeout(kis_sim, broker):
    import datetime as dt

    from core import clock
    from execution.services.expiry import orders_expire

    kis_sim.control("/_sim/limits", {"max_fill_per_step": 2})
    entry = services.entry_intent_open(symbol="005930", qty=6, idempotency_key=key())
    send(entry, broker)
    for _ in range(3):
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
    orders_sync(broker=broker)
    position = Position.objects.get(pk=entry.position_id)
    exit_ = services.exit_intent_open(
        position_id=position.pk,
        qty=6,
        limit_price=71_500,
        intent_type="EXIT_TAKE_PROFIT",
        idempotency_key=key(),
    )
    order = send(exit_, broker)
    kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 71_500})  # part fills

    timeout = dt.timedelta(seconds=60)
    assert orders_expire(broker=broker, timeout=timeout)["expired"] == 0  # not yet
    with clock.installed(clock.FixedClock(clock.now() + timeout + dt.timedelta(seconds=1))):
        assert orders_expire(broker=broker, timeout=timeout) == {"expired": 1, "closed": 1}
    order.refresh_from_db()
    position.refresh_from_db()
    at_kis = next(o for o in kis_sim.book()["orders"] if o["odno"] == order.broker_order_no)
    sold = order.filled_qty
    assert 0 < sold < 6 and sold == at_kis["filled_qty"]  # what filled before the cancel counts
    assert order.status == "CANCELLED"
    assert (position.qty, position.reserved_qty, position.available_qty) == (6 - sold, 0, 6 - sold)
    cancelled_at_kis = [
        o for o in kis_sim.book()["orders"] if o["orgn_odno"] == order.broker_order_no
    ]
    assert cancelled_at_kis, "the cancel must have gone to KIS"


def test_an_order_in_the_closing_auction_waits_for_the_match(kis_sim, broker):
    """KIS takes an exit in the closing auction; the timeout does not cancel it there, and it
    fills at the auction's single price when the auction ends (15:30)."""
    import datetime as dt

    from core import clock
    from execution.tasks import orders_expire_task

    day = dt.datetime(2026, 11, 24, 15, 19, 30, tzinfo=clock.SEOUL)  # a Tuesday
    closing = clock.ShiftedClock(day)
    kis_sim.control("/_sim/clock", {"start": day.isoformat(), "origin": closing.origin})
    with clock.installed(closing):
        entry = services.entry_intent_open(symbol="005930", qty=10, idempotency_key=key())
        send(entry, broker)
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
        orders_sync(broker=broker)
        position = Position.objects.get(pk=entry.position_id)
        assert position.qty == 10

        kis_sim.control("/_sim/session", {"open": False, "auction": True})  # 15:20
        order = send(
            services.exit_intent_open(
                position_id=position.pk,
                qty=10,
                limit_price=71_000,
                intent_type="EXIT_TAKE_PROFIT",
                idempotency_key=key(),
            ),
            broker,
        )
        kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 71_500})  # expected price
        later = dt.datetime(2026, 11, 24, 15, 27, tzinfo=clock.SEOUL)  # 7 minutes on
        with clock.installed(clock.FixedClock(later)):
            assert orders_expire_task() == {"skipped": "outside continuous trading"}
        orders_sync(broker=broker)
        order.refresh_from_db()
        assert (order.status, order.filled_qty) == ("SUBMITTED", 0)

        assert kis_sim.control("/_sim/session", {"open": False})["fills"] == 1  # 15:30
        orders_sync(broker=broker)
    order.refresh_from_db()
    position.refresh_from_db()
    assert (order.status, order.filled_qty) == ("FILLED", 10)
    assert position.status == "CLOSED"
    assert position.realized_pnl == Decimal(10 * 500)  # the auction's price, not the limit


@pytest.mark.usefixtures("trading_hours")
def test_an_earlier_days_order_is_never_cancelled(kis_sim, broker):
    """KIS numbers orders from 1 each day and its cancel names no date: a cancel of
    yesterday's order number would hit today's order of that number."""
    import datetime as dt

    from core import clock
    from execution.services.expiry import orders_expire

    position = held(kis_sim, broker)
    order = working(position, broker, 72_000, "EXIT_STOP_LOSS")  # above the market: left working
    Order.objects.filter(pk=order.pk).update(trade_date=order.trade_date - dt.timedelta(days=1))
    later = clock.FixedClock(clock.now() + dt.timedelta(minutes=5))
    with clock.installed(later):
        assert orders_expire(broker=broker, timeout=dt.timedelta(seconds=60))["expired"] == 0
    cancels = [
        r
        for r in kis_sim.control("/_sim/book", method="GET")["requests"]
        if r["path"].endswith("/order-rvsecncl")
    ]
    assert cancels == []
    assert Order.objects.get(pk=order.pk).status == "SUBMITTED"


@pytest.mark.slow
def test_a_notices_order_is_asked_for_by_number_not_by_paging_the_day(kis_sim_paper, settings):
    """On a paper key (2 calls/s, 15 rows a page) a fill notice's sync takes one call, where the
    day's list takes a call per page: a burst's notices would otherwise spend the key."""
    settings.EXECUTION_AUTO_SUBMIT = False
    broker = client_for(sim_dict(kis_sim_paper), rate=2)
    orders = [
        send(
            services.entry_intent_open(
                symbol="005930", qty=1, idempotency_key=key(), limit_price=60_000
            ),
            broker,
        )  # below: working
        for _ in range(16)
    ]

    def inquiries() -> int:
        return sum(
            1
            for r in kis_sim_paper.control("/_sim/book", method="GET")["requests"]
            if r["path"].endswith("/inquire-daily-ccld")
        )

    before = inquiries()
    assert orders_sync(broker=broker, order_ids=[orders[3].pk])["orders"] == 1
    assert inquiries() - before == 1
    before = inquiries()
    assert orders_sync(broker=broker)["orders"] == 16
    assert inquiries() - before == 2  # 16 rows: two pages
