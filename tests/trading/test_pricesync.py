"""pricesync against the simulator's WebSocket and REST: a scripted price path becomes best
prices and, at the stop, an exit intent, with nothing between the trade and the ledger but this
process; REST polling covers what the WebSocket does not."""

import time
from decimal import Decimal

import pytest
from django.core.cache import cache

from core import clock
from execution.models import OrderIntent
from market.models import BestPrice
from tests.support import child_database_url, holds_for, in_session, wait_until
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.ledger import open_position
from tests.support.pricesync import Running
from trading.models import ExitProfile, PositionExitState
from trading.pricesync import PriceSync

# Exits are decided only while the market trades: this process and the simulator (whose trades
# carry its time) in the session.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("trading_hours")]


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()  # tokens and approval keys of earlier tests belong to a reset simulator
    yield
    cache.clear()


@pytest.fixture
def managed(settings):
    settings.EXECUTION_AUTO_SUBMIT = False  # the ledger's side only; the broker path has its own
    profile = ExitProfile.objects.create(name="stop", stop_loss_pct=Decimal(3), gap_down_pct=None)
    position = open_position("005930", 10, 71_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    return position


def test_trades_on_the_websocket_reach_the_ledger_at_the_stop(kis_sim, managed):
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    with Running(PriceSync(broker=broker, poll_s=60, stale_s=60)) as sync:
        assert sync.subscribed == {"005930"}
        best = BestPrice.objects.get(symbol="005930")  # the first price and today's limits
        assert (best.price, best.prev_close, best.source) == (71_000, 71_000, "REST")
        kis_sim.control("/_sim/prices", {"pdno": "005930", "path": [70_500, 69_500, 68_800]})
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 3})
        wait_until(
            lambda: OrderIntent.objects.filter(position=managed, side="SELL").exists(),
            "the stop loss",
            timeout=30,
        )
    [intent] = OrderIntent.objects.filter(position=managed, side="SELL")
    assert (intent.intent_type, intent.qty) == ("EXIT_STOP_LOSS", 10)
    assert "68,800" in intent.reason
    best = BestPrice.objects.get(symbol="005930")
    assert (best.price, best.source, best.lower_limit) == (68_800, "WS", 49_700)


def test_symbols_beyond_the_subscription_cap_are_polled(kis_sim, managed):
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    with Running(PriceSync(broker=broker, cap=0, poll_s=0.2, follow_s=0.2)) as sync:
        assert sync.subscribed == set() and sync.stale() == ["005930"]
        kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 68_000})
        wait_until(
            lambda: OrderIntent.objects.filter(position=managed, side="SELL").exists(),
            "the stop loss from a REST price",
            timeout=30,
        )
    assert BestPrice.objects.get(symbol="005930").source == "REST"


def test_subscriptions_follow_positions_as_they_open_and_close(kis_sim, managed):
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    kis_sim.control("/_sim/prices", {"pdno": "000660", "price": 120_000, "prev_close": 120_000})
    with Running(PriceSync(broker=broker, follow_s=0.2, poll_s=60, stale_s=60)) as sync:
        other = open_position("000660", 5, 120_000)
        PositionExitState.objects.create(
            position=other, profile=ExitProfile.objects.get(), peak_qty=5
        )
        wait_until(lambda: sync.subscribed == {"005930", "000660"}, "the new subscription")
        PositionExitState.objects.filter(position=managed).delete()
        wait_until(lambda: sync.subscribed == {"000660"}, "the unsubscription")
        assert ("H0STCNT0", "005930") not in sync.stream.subscriptions


def drop_connections() -> int:
    """PostgreSQL ends every session of the test database but this test's own: pricesync's
    directly, or, through PgBouncer, the server connections in its pool (PgBouncer checks a
    connection before handing it out and replaces the dead ones). Asked over a direct
    connection; the number of sessions ended."""
    import psycopg
    from django.conf import settings
    from django.db import connection

    pooled = settings.DATABASES["default"].get("DISABLE_SERVER_SIDE_CURSORS", False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own = 0 if pooled else cursor.fetchone()[0]
    with psycopg.connect(child_database_url("DATABASE_DIRECT_URL"), autocommit=True) as direct:
        return direct.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s "
            "AND backend_type = 'client backend'",
            [own],
        ).fetchone()[0]


@pytest.mark.parametrize("follow_s", [60, 0.1], ids=["price-first", "follow-first"])
def test_a_lost_database_connection_is_replaced_and_the_next_price_counts(
    kis_sim, managed, follow_s
):
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    running = Running(PriceSync(broker=broker, poll_s=60, stale_s=60, follow_s=follow_s))
    with running:
        assert drop_connections() >= 1  # PostgreSQL drops pricesync's connection
        if follow_s < 1:  # a follow round meets the dead connection before any price does
            time.sleep(0.5)
        kis_sim.control("/_sim/prices", {"pdno": "005930", "path": [68_000]})
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 1})  # the first price after
        wait_until(
            lambda: OrderIntent.objects.filter(position=managed, side="SELL").exists(),
            "the stop loss after the cut",
            timeout=30,
        )
        assert running.thread.is_alive()
    assert BestPrice.objects.get(symbol="005930").price == 68_000


def _quotes_asked(sim) -> int:
    return sum(
        1
        for r in sim.control("/_sim/book", method="GET")["requests"]
        if r["path"].endswith("/inquire-price")
    )


def test_no_rest_quote_is_asked_when_no_exit_could_be_decided(kis_sim, managed):
    """After the close the uncovered symbols are not polled: no exit could use the price."""
    evening = in_session(20, 0)
    kis_sim.control("/_sim/clock", {"start": evening.start.isoformat(), "origin": evening.origin})
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    with (
        clock.installed(evening),
        Running(PriceSync(broker=broker, cap=0, poll_s=0.2, follow_s=0.2)) as sync,
    ):
        assert sync.stale() == ["005930"]
        holds_for(lambda: _quotes_asked(kis_sim) == 0, 2.0, "no quote asked in the evening")
    assert not BestPrice.objects.filter(symbol="005930").exists()


def test_rest_quotes_stay_within_the_keys_share_and_take_turns(kis_sim):
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=2)  # a paper key's 2 calls/s
    sync = PriceSync(broker=broker, cap=0, poll_s=1.0)
    sync.symbols = [f"{n:06d}" for n in range(1, 6)]
    assert sync.poll_budget == 1  # half of 2 calls over a 1 s round
    rounds = [sync.polls_due() for _ in range(5)]
    assert all(len(r) == 1 for r in rounds)
    assert sorted(s for r in rounds for s in r) == sync.symbols  # each in its turn
    sync._db.shutdown(wait=True)
