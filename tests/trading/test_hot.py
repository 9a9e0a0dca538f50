"""The exit engine's hot data on real Redis and PostgreSQL: far fewer queries in the steady state,
every change seen by the next evaluation, a Redis outage that slows the engine without stopping
it, and GAP_DOWN thresholds computed before the bell so the opening trade reads nothing but the
ledger's lock."""

import datetime as dt
import socket
import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from core import clock, hotcache
from execution import services
from execution.models import OrderIntent, Position
from market import prices
from market.models import BestPrice
from tests.support.ledger import key, open_position
from trading import hot
from trading.models import ExitProfile, PositionExitState
from trading.services import exit_pass, gap_prequeue

pytestmark = pytest.mark.django_db(transaction=True)  # commits are what invalidate

D = Decimal
NOW = dt.datetime(2026, 11, 24, 10, 30, tzinfo=clock.SEOUL)  # a Tuesday, mid-session


@pytest.fixture
def at_now():
    with clock.installed(clock.FixedClock(NOW)):
        yield


def _bulk_book(n: int, profile: ExitProfile) -> list[str]:
    symbols = [f"9{i:05d}" for i in range(n)]
    positions = Position.objects.bulk_create(
        Position(symbol=s, qty=100, avg_price=D(50_000), opened_at=NOW - dt.timedelta(days=1))
        for s in symbols
    )
    PositionExitState.objects.bulk_create(
        PositionExitState(position=p, profile=profile, peak_qty=100) for p in positions
    )
    BestPrice.objects.bulk_create(
        BestPrice(
            symbol=s,
            price=50_500,
            prev_close=50_000,
            upper_limit=65_000,
            lower_limit=35_000,
            source="WS",
            event_at=NOW,
        )
        for s in symbols
    )
    return symbols


def _managed(symbol: str, profile: ExitProfile, price: int) -> Position:
    """10 shares bought at 70,000, managed by `profile`, last traded at `price`."""
    position = open_position(symbol, 10, 70_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    BestPrice.objects.create(
        symbol=symbol,
        price=price,
        prev_close=70_000,
        lower_limit=49_000,
        upper_limit=91_000,
        source="WS",
        event_at=NOW,
    )
    return position


def _queries(fn) -> int:
    count = [0]

    def counting(execute, sql, params, many, context):
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        fn()
    return count[0]


def test_the_steady_evaluation_loop_makes_90_percent_fewer_queries_with_the_cache(
    at_now, monkeypatch
):
    """1,000 positions: each symbol's trade is evaluated as pricesync does (its price handed in)
    and a full cadence pass runs after every round, with the cache and without it."""
    monkeypatch.setattr(hot, "BOOK_TTL_S", 60)  # steady state: no expiry inside the measurement
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    symbols = _bulk_book(1_000, profile)
    px = {s: prices.Px(50_400, 50_000, 65_000, 35_000, NOW.timestamp()) for s in symbols}

    def loop(use_cache: bool, rounds: int = 3) -> None:
        for _ in range(rounds):
            for symbol in symbols:
                exit_pass(symbols=[symbol], prices={symbol: px[symbol]}, use_cache=use_cache)
            assert exit_pass(use_cache=use_cache).evaluated == 1_000

    without = _queries(lambda: loop(use_cache=False))
    loop(use_cache=True, rounds=1)  # warm up
    with_cache = _queries(lambda: loop(use_cache=True))
    assert without >= 9_000  # profiles (2) and positions (1) for every evaluation
    print(f"queries over 3 rounds: {without} without the cache, {with_cache} with it")
    assert with_cache <= without * 0.10, (with_cache, without)


def test_a_full_pass_reads_full_prices_only_for_what_it_examines(at_now, monkeypatch):
    """The screen reads each symbol's price and time; the positions outside their bands then
    get their full prices: through the cache when few, in one statement (nothing cached) when
    many, as when the whole book leaves its bands at once."""
    monkeypatch.setattr(prices, "PRICES_FROM_CACHE_MAX", 5)
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    symbols = _bulk_book(20, profile)
    exit_pass()  # the book and profiles are cached from here
    result = [None]

    def full_pass() -> int:
        return _queries(lambda: result.__setitem__(0, exit_pass()))

    # The profiles' stamp and the screen's statement only.
    assert full_pass() == 2 and result[0].examined == 0
    with CaptureQueriesContext(connection) as logged:  # logged like any other statement
        exit_pass()
    assert [q["sql"].split()[0:2] for q in logged.captured_queries] == [
        ["SELECT", "md5(concat_ws('|',"],
        ["SELECT", "symbol,"],
    ]

    def crash(chosen: list[str]) -> None:  # 4% down: under the 3% stop
        BestPrice.objects.filter(symbol__in=chosen).update(price=48_000)

    few, many = symbols[:3], symbols[3:11]
    crash(few)
    assert full_pass() >= 2 and (result[0].examined, result[0].exits) == (3, 3)
    assert all(hotcache.cache_get(prices.price_key(s)) is not None for s in few)  # written through
    crash(many)  # more than PRICES_FROM_CACHE_MAX
    assert full_pass() >= 2 and (result[0].examined, result[0].exits) == (8, 8)
    assert all(hotcache.cache_get(prices.price_key(s)) is None for s in many)


def test_every_change_reaches_the_next_evaluation(at_now, new_symbol):
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    position = _managed(new_symbol(), profile, 68_000)
    assert exit_pass().exits == 0  # 68,000 > 67,900: the book and profiles are now cached
    profile.stop_loss_pct = D(2)  # as the admin saves it: 70,000 × 0.98 = 68,600
    profile.save()
    assert exit_pass().exits == 1
    [intent] = OrderIntent.objects.filter(position=position, side="SELL")
    assert (intent.intent_type, intent.trigger_price) == ("EXIT_STOP_LOSS", 68_000)
    # Everything is reserved now: the book knows, so the next pass does not even look closer.
    assert exit_pass().examined == 0
    services.intent_cancel(intent_id=intent.pk, reason="a person changed their mind")
    result = exit_pass()
    assert (result.examined, result.exits) == (1, 1)


def test_a_redis_outage_slows_the_engine_and_never_stops_it(at_now, new_symbol):
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    position = _managed(new_symbol(), profile, 67_000)
    dead = {
        "default": {
            "BACKEND": "aegis.cache.KeptClientRedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens on port 9
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    with override_settings(CACHES=dead):
        assert exit_pass(symbols=[position.symbol]).exits == 1
    assert OrderIntent.objects.filter(position=position, intent_type="EXIT_STOP_LOSS").count() == 1


def test_rules_left_in_the_cache_by_a_lost_invalidation_last_one_full_pass(
    at_now, new_symbol, monkeypatch
):
    """A profile changed while Redis could not take the invalidation: ticks keep the cached
    rules until the next full pass, which finds them older than the tables and reads them
    again, for itself and for every process."""
    profile = ExitProfile.objects.create(name="wide", stop_loss_pct=D(10), gap_down_pct=None)
    position = _managed(new_symbol(), profile, 66_000)  # -5.7 %
    assert exit_pass().exits == 0  # the rules (a 10 % stop) are cached from here
    with monkeypatch.context() as lost:
        lost.setattr(hot, "_bump", lambda keys: None)
        profile.stop_loss_pct = D(3)
        profile.save()
    tick = {position.symbol: prices.Px(66_000, 70_000, 91_000, 49_000, NOW.timestamp())}
    assert exit_pass(symbols=[position.symbol], prices=tick).exits == 0  # the cached 10 %
    assert exit_pass().exits == 1  # the tables' 3 %
    assert OrderIntent.objects.filter(position=position, intent_type="EXIT_STOP_LOSS").count() == 1
    assert hot.profiles().rules[profile.pk].stop_loss_pct == D(3)  # the cache, healed


@pytest.fixture
def silent_redis():
    """A server on loopback that accepts connections and never answers, as a hung Redis does:
    its port, and the connections it has accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_redis_that_never_answers_costs_a_timeout_then_the_database_answers(
    at_now, new_symbol, silent_redis, monkeypatch
):
    """The deployed cache settings against a Redis that hangs: the exit still opens, and once a
    call has timed out, the process reads from PostgreSQL alone for a while instead of waiting
    on Redis at every evaluation."""
    port, accepted = silent_redis
    monkeypatch.setattr(hotcache, "RETRY_AFTER_S", 600)  # the whole test inside one interval
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    falling = _managed(new_symbol(), profile, 67_000)
    quiet = _managed(new_symbol(), profile, 70_500)
    hung = {"default": settings.CACHES["default"] | {"LOCATION": f"redis://127.0.0.1:{port}/0"}}
    seen = []

    def evaluate() -> None:
        try:
            with override_settings(CACHES=hung):
                from django.core.cache import cache

                pool = cache._cache._get_connection_pool(write=False)
                seen.append(pool.connection_kwargs["socket_timeout"])
                seen.append(exit_pass(symbols=[falling.symbol]).exits)
                seen.append(len(accepted))
                seen.append(exit_pass(symbols=[quiet.symbol]).evaluated)
                seen.append(len(accepted))
        finally:
            connection.close()

    worker = threading.Thread(target=evaluate)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the engine is waiting on Redis"
    timeout, exits, tried, evaluated, tried_after = seen
    assert timeout == 0.5  # redis-py's own default is 5 s a call
    assert (exits, evaluated) == (1, 1)
    assert tried >= 1 and tried_after == tried  # the second evaluation never asked Redis
    assert OrderIntent.objects.filter(position=falling, intent_type="EXIT_STOP_LOSS").count() == 1


def test_gap_down_is_ready_before_the_bell_and_reads_only_the_ledger_at_the_open(new_symbol):
    """The previous session's last trade is the previous close; at 08:59:50 the threshold is
    kept hot, and the first trade at 09:00:00 below it opens the exit through the ledger alone."""
    profile = ExitProfile.objects.create(name="gap", gap_down_pct=D(5))
    position = open_position(new_symbol(), 10, 72_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    last_trade = dt.datetime(2026, 11, 23, 15, 30, tzinfo=clock.SEOUL)  # Monday's close
    BestPrice.objects.create(
        symbol=position.symbol,
        price=70_000,
        prev_close=69_000,
        lower_limit=48_300,
        upper_limit=89_700,
        source="WS",
        event_at=last_trade,
    )
    with clock.installed(
        clock.FixedClock(dt.datetime(2026, 11, 24, 8, 59, 50, tzinfo=clock.SEOUL))
    ):
        assert gap_prequeue() == 1
    assert hot.gap_thresholds(dt.date(2026, 11, 24)) == {position.pk: D(66_500)}  # 70,000 × 0.95

    bell = dt.datetime(2026, 11, 24, 9, 0, 0, tzinfo=clock.SEOUL)
    with clock.installed(clock.FixedClock(bell)):
        exit_pass(
            symbols=[position.symbol],  # warm, as pricesync keeps it: nothing fires
            prices={
                position.symbol: prices.Px(70_000, 70_000, 91_000, 49_000, last_trade.timestamp())
            },
        )
        opening = prices.Px(66_500, 70_000, 91_000, 49_000, bell.timestamp())
        with CaptureQueriesContext(connection) as captured:
            assert (
                exit_pass(symbols=[position.symbol], prices={position.symbol: opening}).exits == 1
            )
    tables = " ".join(q["sql"] for q in captured)
    for table in ("prices_best", PositionExitState._meta.db_table, ExitProfile._meta.db_table):
        assert table not in tables, captured.captured_queries
    [intent] = OrderIntent.objects.filter(position=position, side="SELL")
    assert (intent.intent_type, intent.qty, intent.trigger_price) == ("GAP_DOWN", 10, 66_500)
    assert intent.idempotency_key == f"gapdown:{position.pk}:20261124"
    with clock.installed(clock.FixedClock(bell)):  # a second evaluator gets the same intent
        exit_pass(symbols=[position.symbol], prices={position.symbol: opening})
    assert OrderIntent.objects.filter(position=position, side="SELL").count() == 1


def test_no_threshold_without_a_gap_rule_or_on_a_holiday(new_symbol):
    profile = ExitProfile.objects.create(name="none", gap_down_pct=None, stop_loss_pct=D(3))
    position = open_position(new_symbol(), 10, 72_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    BestPrice.objects.create(
        symbol=position.symbol,
        price=70_000,
        source="WS",
        event_at=dt.datetime(2026, 11, 23, 15, 30, tzinfo=clock.SEOUL),
    )
    with clock.installed(
        clock.FixedClock(dt.datetime(2026, 11, 24, 8, 59, 50, tzinfo=clock.SEOUL))
    ):
        assert gap_prequeue() == 0
    assert gap_prequeue(day=dt.date(2026, 12, 25)) == 0


def test_a_copy_read_before_a_commit_is_never_used_after_it(at_now, new_symbol):
    """A reader meets the database, a writer commits a change, then the reader stores what it
    read: that copy is a miss, because it carries the generation from before the commit."""
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    position = open_position(new_symbol(), 10, 70_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    symbol, rules = position.symbol, hot.profiles()
    _, gens = hot._cached(hot.book_key(symbol), [hot.book_gen_key(symbol)])  # the reader first
    stale = hot.book_from_db(rules, [symbol])
    services.exit_intent_open(
        position_id=position.pk, qty=10, intent_type="MANUAL", idempotency_key=key("manual")
    )  # the writer commits
    hot._store(hot.book_key(symbol), gens, (rules.version, hot.Book.of(stale)), 3)
    [watch] = hot.book(rules, [symbol])
    assert (stale[0].available, watch.available) == (10, 0)
