"""The router on the real stack: PostgreSQL, Redis and the KIS simulator on loopback, the router
in this process (tests/picks/test_routing_worker.py runs it in a real worker). A pick becomes an
ENTRY order at the broker with its source's exit profile, or a rejection stored with its gate
and reason and nothing else written; a pick is routed once whoever reaches it; risk decisions
are taken one at a time."""

import datetime as dt
import time
from collections import Counter

import pytest
from django.core.cache import cache
from prometheus_client import REGISTRY

from core import clock, hotcache
from execution.models import Order, OrderIntent, Position
from execution.services.trading_state import trading_state_set
from kis.protocol import PATH_ASKING_PRICE, PATH_PRICE
from market import prices, reads
from picks import routing
from picks.gates import Limits
from picks.models import GateSettings, Pick, PositionOpener
from tests.support import at_once, wait_until
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.picks import CLOCK, a_pick, ingest
from tests.support.workers import broker_orders
from trading.models import PositionExitState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PRICE = 71_000  # the simulator's 005930; its book: bid 71,000, ask 71,100


def route(broker, ids, by="EVENT") -> dict:
    return routing.picks_route(pick_ids=ids, routed_by=by, broker=broker)


def gates_set(**fields) -> None:
    GateSettings.current()
    GateSettings.objects.filter(pk=1).update(**fields)


def test_a_pick_becomes_an_entry_order_with_its_sources_exit_profile(
    broker, source, kis_sim, profile
):
    [pick_id] = ingest(source, a_pick(source[0], limit_price=None, budget_krw=1_000_000))
    assert route(broker, [pick_id]) == {"routed": 1, "rejected": 0, "skipped": 0, "deferred": 0}
    pick = Pick.objects.get(pk=pick_id)
    intent = pick.intent
    assert (pick.status, pick.routed_by, pick.rejected_gate) == ("ROUTED", "EVENT", None)
    # 71,000 + 0.5 % = 71,355, down to the 100-KRW tick; 1,000,000 // 71,300 = 14 shares
    assert (intent.intent_type, intent.side, intent.qty, intent.limit_price) == (
        "ENTRY",
        "BUY",
        14,
        71_300,
    )
    assert intent.idempotency_key == f"pick:{pick_id}"
    assert PositionExitState.objects.get(position_id=intent.position_id).profile == profile
    order = Order.objects.get(intent=intent)  # sent from the routing process itself
    assert order.status == "SUBMITTED"
    [at_broker] = broker_orders(kis_sim)
    assert (at_broker["odno"], at_broker["qty"], at_broker["price"]) == (
        order.broker_order_no,
        14,
        71_300,
    )
    assert route(broker, [pick_id]) == {"routed": 0, "rejected": 0, "skipped": 1, "deferred": 0}
    assert len(broker_orders(kis_sim)) == 1


@pytest.mark.parametrize(
    "pick, settings, sim, gate, words",
    [
        (
            {"generated_at": (CLOCK.now() - dt.timedelta(minutes=2)).isoformat()},
            {},
            None,
            1,
            "stale",
        ),
        ({"symbol": "999990"}, {}, None, 1, "not a listed symbol"),
        ({}, {}, {"halted": True}, 1, "is halted"),
        ({}, {"max_open_positions": 0}, None, 2, "positions open"),
        ({}, {"max_symbol_exposure_krw": 500_000}, None, 2, "005930 exposure"),
        ({}, {"daily_loss_limit_krw": 0, "min_cash_krw": 99_500_000}, None, 2, "of cash"),
        ({}, {"max_spread_pct": "0.10"}, None, 3, "the spread 71,000–71,100"),
        ({"limit_price": None}, {}, {"price": 91_000}, 3, "of the upper limit 92,300"),
        ({"limit_price": 60_000}, {}, None, 3, "from the pick's 60,000"),
    ],
)
def test_each_gate_refuses_with_its_reason_and_writes_nothing_else(
    broker, source, kis_sim, pick, settings, sim, gate, words
):
    gates_set(**settings)
    if sim:
        kis_sim.control("/_sim/prices", {"pdno": "005930", **sim})
    [pick_id] = ingest(source, a_pick(source[0], **pick))
    assert route(broker, [pick_id])["rejected"] == 1
    rejected = Pick.objects.get(pk=pick_id)
    assert (rejected.status, rejected.rejected_gate, rejected.intent) == ("REJECTED", gate, None)
    assert words in rejected.reject_reason, rejected.reject_reason
    assert not OrderIntent.objects.exists() and not Position.objects.exists()
    assert broker_orders(kis_sim) == []


def test_a_second_pick_in_a_symbol_being_bought_is_a_duplicate(
    broker, source, kis_sim, make_source, profile
):
    other = make_source(exit_profile=profile)
    first = ingest(source, a_pick(source[0], 1))
    second = ingest(other, a_pick(other[0], 1))
    route(broker, first + second)
    assert Pick.objects.get(pk=first[0]).status == "ROUTED"
    duplicate = Pick.objects.get(pk=second[0])
    assert (duplicate.rejected_gate, duplicate.reject_reason) == (
        1,
        "duplicate: an entry in 005930 is already pending",
    )
    assert len(broker_orders(kis_sim)) == 1


def test_an_entry_on_an_empty_open_position_takes_the_locking_path(
    broker, source, kis_sim, profile
):
    # The one statement opens a new position; a symbol already open (empty: nothing held,
    # nothing being bought) writes nothing there, and the entry is opened on that position.
    empty = Position.objects.create(symbol="005930", opened_at=clock.now())
    [pick_id] = ingest(source, a_pick(source[0]))
    assert route(broker, [pick_id])["routed"] == 1
    pick = Pick.objects.get(pk=pick_id)
    assert (pick.status, pick.intent.position_id) == ("ROUTED", empty.pk)
    assert Position.objects.filter(symbol="005930").count() == 1
    assert PositionExitState.objects.get(position=empty).profile == profile
    assert PositionOpener.objects.get(position=empty).source_id == source[0].code
    assert Order.objects.get(intent=pick.intent).status == "SUBMITTED"
    assert len(broker_orders(kis_sim)) == 1


def test_a_sell_pick_sells_only_a_position_its_own_source_opened(
    broker, source, kis_sim, make_source, profile
):
    from execution.services import fill_apply

    other = make_source(exit_profile=profile)
    [bought] = ingest(source, a_pick(source[0], 1, limit_price=None, budget_krw=1_000_000))
    assert route(broker, [bought])["routed"] == 1
    intent = Pick.objects.get(pk=bought).intent
    assert PositionOpener.objects.get(position_id=intent.position_id).source_id == source[0].code
    order = Order.objects.get(intent=intent)
    fill_apply(order_id=order.pk, broker_fill_key=f"test-{order.pk}", qty=order.qty, price=71_100)
    sell = {"side": "SELL", "qty": 5, "budget_krw": None}
    [theirs] = ingest(other, a_pick(other[0], 1, **sell))
    assert route(broker, [theirs])["rejected"] == 1
    refused = Pick.objects.get(pk=theirs)
    assert (refused.status, refused.rejected_gate, refused.intent) == ("REJECTED", 2, None)
    assert refused.reject_reason == (
        f"SELL refused: the open 005930 position was not opened by source {other[0].code}; "
        "a source sells only positions its own BUY picks opened"
    )
    assert Position.objects.get(pk=intent.position_id).reserved_qty == 0
    [mine] = ingest(source, a_pick(source[0], 2, **sell))
    assert route(broker, [mine])["routed"] == 1
    sold = Pick.objects.get(pk=mine).intent
    assert (sold.side, sold.qty, sold.position_id) == ("SELL", 5, intent.position_id)


def test_a_sell_pick_never_sells_a_position_no_source_opened(broker, source):
    from execution.services import entry_intent_open, fill_apply, order_mark_submitted, order_open

    intent = entry_intent_open(
        symbol="005930", qty=10, limit_price=71_000, idempotency_key="by-hand", reason="an operator"
    )
    order = order_open(intent_id=intent.pk)
    order_mark_submitted(order_id=order.pk, broker_order_no="0000000001")
    fill_apply(order_id=order.pk, broker_fill_key="by-hand-fill", qty=10, price=71_000)
    [pick_id] = ingest(source, a_pick(source[0], 1, side="SELL", qty=10, budget_krw=None))
    assert route(broker, [pick_id])["rejected"] == 1
    pick = Pick.objects.get(pk=pick_id)
    assert pick.rejected_gate == 2 and "was not opened by source" in pick.reject_reason
    assert not OrderIntent.objects.filter(side="SELL").exists()


def test_a_new_installation_without_gate_settings_routes_on_the_defaults(broker, source):
    GateSettings.objects.all().delete()
    [pick_id] = ingest(source, a_pick(source[0], limit_price=None, budget_krw=1_000_000))
    assert route(broker, [pick_id])["routed"] == 1
    assert GateSettings.objects.filter(pk=1).exists()


def test_a_source_without_an_exit_profile_is_refused(broker, make_source):
    bare = make_source()
    [pick_id] = ingest(bare, a_pick(bare[0]))
    route(broker, [pick_id])
    assert "no exit profile" in Pick.objects.get(pk=pick_id).reject_reason


def test_one_pick_reached_by_every_path_at_once_becomes_one_order(broker, source, kis_sim):
    [pick_id] = ingest(source, a_pick(source[0]))

    def reach(by: str) -> str:
        return routing.pick_route(pick_id, routed_by=by, broker=broker)

    outcomes = at_once(reach, [(by,) for by in ["EVENT", "SWEEP"] * 3])
    assert sorted(outcomes) == ["routed"] + ["skipped"] * 5
    assert OrderIntent.objects.count() == 1
    assert Order.objects.filter(intent__picks=pick_id, status="SUBMITTED").count() == 1
    assert len(broker_orders(kis_sim)) == 1


def test_risk_decisions_are_taken_one_at_a_time(broker, source, kis_sim):
    symbols = [f"00{n}000" for n in range(1, 7)]
    for symbol in symbols:
        kis_sim.control("/_sim/prices", {"pdno": symbol, "price": 10_000, "prev_close": 10_000})
    gates_set(max_open_positions=3)
    ids = ingest(
        source, *[a_pick(source[0], n, symbol=s, limit_price=10_000) for n, s in enumerate(symbols)]
    )
    outcomes = at_once(
        lambda pick_id: routing.pick_route(pick_id, routed_by="EVENT", broker=broker),
        [(pick_id,) for pick_id in ids],
    )
    assert sorted(outcomes) == ["rejected"] * 3 + ["routed"] * 3
    assert Position.objects.filter(status="OPEN").count() == 3
    assert {p.rejected_gate for p in Pick.objects.filter(status="REJECTED")} == {2}


def test_cash_counts_what_pending_entries_may_spend(broker, source, kis_sim):
    # 100,000,000 KRW of deposit; each pick would spend about 9.98 M
    for n in range(1, 13):
        kis_sim.control(
            "/_sim/prices", {"pdno": f"1{n:05d}", "price": 10_000, "prev_close": 10_000}
        )
    gates_set(max_symbol_exposure_krw=10**9, max_total_exposure_krw=10**10)
    ids = ingest(
        source,
        *[
            a_pick(source[0], n, symbol=f"1{n:05d}", limit_price=10_000, budget_krw=9_990_000)
            for n in range(1, 13)
        ],
    )
    counts = route(broker, ids)
    assert (counts["routed"], counts["rejected"]) == (10, 2)
    spent = sum(i.qty * i.limit_price for i in OrderIntent.objects.all())
    assert spent <= kis_sim.cash
    assert all(
        "of cash it may use" in p.reject_reason for p in Pick.objects.filter(status="REJECTED")
    )


def unreachable_broker(kis_sim):
    """A client of the simulator's accounts whose address leads nowhere (port 9)."""
    dead = sim_dict(kis_sim) | {"base_url": "http://127.0.0.1:9", "ws_url": "ws://127.0.0.1:9"}
    return kis_worker.client_for(dead, rate=50, retries=0, read_timeout_s=1.0)


def test_the_broker_unreachable_leaves_the_pick_new_for_the_sweep(kis_sim, source):
    unreachable = unreachable_broker(kis_sim)
    with clock.installed(CLOCK):
        [pick_id] = ingest(source, a_pick(source[0]))
        assert route(unreachable, [pick_id])["deferred"] == 1
    assert Pick.objects.get(pk=pick_id).status == "NEW"


def test_rejections_are_listed_in_the_admin_with_their_gate_and_reason(
    broker, source, admin_client
):
    gates_set(max_open_positions=0)
    [pick_id] = ingest(source, a_pick(source[0]))
    route(broker, [pick_id])
    page = admin_client.get("/admin/picks/pick/?rejected_gate__exact=2").content.decode()
    assert "0 positions open or being bought (at most 0)" in page
    assert (
        admin_client.get("/admin/picks/pick/?rejected_gate__exact=3")
        .content.decode()
        .count("positions open or being bought")
        == 0
    )


def test_the_account_read_beside_the_broker_calls_holds_until_a_pick_is_routed(
    broker, source, kis_sim, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    symbols = ["001000", "002000", "003000"]
    for symbol in symbols:
        kis_sim.control("/_sim/prices", {"pdno": symbol, "price": 10_000, "prev_close": 10_000})
    first, second, third = ingest(
        source, *[a_pick(source[0], n, symbol=s, limit_price=10_000) for n, s in enumerate(symbols)]
    )

    def account_reads(pick_id: int) -> int:
        """How many account statements the decision ran under the lock, on this thread (the
        read beside the broker calls runs on a market thread)."""
        with CaptureQueriesContext(connection) as queries:
            assert routing.pick_route(pick_id, routed_by="EVENT", broker=broker) == "routed"
        return sum("WITH held AS" in q["sql"] for q in queries)

    seq = GateSettings.current().routed_seq
    assert account_reads(first) == 0  # nothing routed since its read: it holds
    assert GateSettings.current().routed_seq == seq + 1

    # Another pick routed while this one's market is read: its account is read again.
    market_read = routing.market_read

    def meanwhile(*args, **kwargs):
        market = market_read(*args, **kwargs)
        monkeypatch.setattr(routing, "market_read", market_read)  # once
        [outcome] = at_once(
            lambda: routing.pick_route(third, routed_by="EVENT", broker=broker), [()]
        )
        assert outcome == "routed"
        return market

    monkeypatch.setattr(routing, "market_read", meanwhile)
    assert account_reads(second) == 1
    assert GateSettings.current().routed_seq == seq + 3


def _thread_statements(pick_id: int, broker) -> tuple[str, list[str]]:
    """pick_route's outcome, and the statements it ran on this thread (the account and the
    pick are read ahead on a market thread)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        outcome = routing.pick_route(pick_id, routed_by="EVENT", broker=broker)
    return outcome, [q["sql"] for q in queries]


LOCKED_TAKE = "FOR UPDATE OF p SKIP LOCKED FOR UPDATE OF g"


def test_an_entry_decided_on_what_was_read_ahead_is_written_in_one_statement(
    broker, source, kis_sim, profile
):
    [pick_id] = ingest(source, a_pick(source[0]))
    seq = GateSettings.current().routed_seq
    outcome, statements = _thread_statements(pick_id, broker)
    assert outcome == "routed"
    # The entry, its position watched and the pick ROUTED, in the guarded statement; no locked
    # read of the pick, so no transaction around it.
    [written] = [s for s in statements if s.lstrip().startswith("WITH guard AS")]
    assert "SKIP LOCKED" in written and not any(LOCKED_TAKE in s for s in statements)
    pick = Pick.objects.get(pk=pick_id)
    assert (pick.status, pick.intent.intent_type, pick.intent.qty) == ("ROUTED", "ENTRY", 14)
    assert PositionExitState.objects.get(position_id=pick.intent.position_id).profile == profile
    assert Order.objects.get(intent=pick.intent).status == "SUBMITTED"
    assert GateSettings.current().routed_seq == seq + 1
    assert len(broker_orders(kis_sim)) == 1


@pytest.mark.parametrize(
    "meanwhile, gate, words",
    [
        # The gate settings edited while the market was read: the limit now refuses it.
        (
            lambda: GateSettings.objects.filter(pk=1).update(max_open_positions=0),
            2,
            "positions open",
        ),
        # Trading reduced meanwhile: no new entries.
        (
            lambda: trading_state_set(state="REDUCING", reason="test", changed_by="test"),
            1,
            "REDUCING",
        ),
    ],
)
def test_what_moved_after_the_read_ahead_is_decided_again_under_the_locks(
    broker, source, kis_sim, monkeypatch, meanwhile, gate, words
):
    [pick_id] = ingest(source, a_pick(source[0]))
    GateSettings.current()
    market_read = routing.market_read

    def moved(*args, **kwargs):
        market = market_read(*args, **kwargs)
        meanwhile()
        return market

    monkeypatch.setattr(routing, "market_read", moved)
    outcome, statements = _thread_statements(pick_id, broker)
    assert outcome == "rejected"
    rejected = Pick.objects.get(pk=pick_id)
    assert (rejected.rejected_gate, rejected.intent) == (gate, None)
    assert words in rejected.reject_reason, rejected.reject_reason
    # The locked read decided: the one statement, when the change came after the router's
    # own read of the state (it may come before: market reads run on threads of their own),
    # was tried once and wrote nothing.
    assert sum("guard AS" in s for s in statements) <= 1
    assert any(s.lstrip().startswith("SELECT") and LOCKED_TAKE in s for s in statements)
    assert not OrderIntent.objects.exists() and not Position.objects.exists()
    assert broker_orders(kis_sim) == []


def _market_calls(kis_sim) -> Counter:
    """The quote and order book requests the simulator has answered, by path."""
    return Counter(
        r["path"]
        for r in kis_sim.book()["requests"]
        if r["path"] in (PATH_PRICE, PATH_ASKING_PRICE)
    )


def _forget_market(symbol: str) -> None:
    """Neither the symbol's price nor its book's top in the cache."""
    cache.delete_many([reads._book_key(symbol), prices.price_key(symbol)])


def test_the_market_read_asks_the_broker_only_for_what_the_cache_lacks(broker, kis_sim):
    def read():
        return reads.market_read(
            "005930", broker=broker, limits=Limits(max_price_age_s=5), now=clock.now()
        )

    # A fresh price (pricesync's) and the kept top of the book: no call.
    before = _market_calls(kis_sim)
    prices.price_keep("005930", prices.Px(70_500, 70_000, 91_000, 49_000, clock.now().timestamp()))
    hotcache.cache_set("picks:book:005930", (70_400, 70_600), 60)
    market = read()
    assert (market.price, market.best_bid, market.best_ask) == (70_500, 70_400, 70_600)
    assert _market_calls(kis_sim) == before
    # A price older than max_price_age_s: the quote is asked for, the book is still kept.
    prices.price_keep(
        "005930", prices.Px(70_500, 70_000, 91_000, 49_000, clock.now().timestamp() - 6)
    )
    market = read()
    assert (market.price, market.best_bid, market.best_ask) == (PRICE, 70_400, 70_600)
    assert _market_calls(kis_sim) - before == Counter({PATH_PRICE: 1})
    # Nothing kept: both, at once. (The quote asked for above is kept as the best price from
    # a market thread: forgotten once it is written.)
    wait_until(
        lambda: getattr(hotcache.cache_get(prices.price_key("005930")), "price", None) == PRICE,
        "the quote kept",
    )
    _forget_market("005930")
    market = read()
    assert (market.price, market.best_bid, market.best_ask) == (PRICE, 71_000, 71_100)
    assert _market_calls(kis_sim) - before == Counter({PATH_PRICE: 2, PATH_ASKING_PRICE: 1})


def test_a_market_read_joins_the_read_a_heads_up_began(broker, kis_sim, settings, fetches):
    def joined() -> float:
        return REGISTRY.get_sample_value("aegis_pick_market_reads_total", {"read": "joined"}) or 0

    limits = Limits(max_price_age_s=5)
    _forget_market("005930")
    kis_sim.control("/_sim/faults", {"latency_ms": 300})  # both calls still under way below
    before = _market_calls(kis_sim)
    joined_before = joined()
    reads.market_prefetch("005930", broker=broker, limits=limits, now=clock.now())
    market = reads.market_read("005930", broker=broker, limits=limits, now=clock.now())
    assert (market.price, market.best_bid, market.best_ask) == (PRICE, 71_000, 71_100)
    assert _market_calls(kis_sim) - before == Counter({PATH_PRICE: 1, PATH_ASKING_PRICE: 1})
    assert joined() == joined_before + 1  # aegis_pick_market_reads_total{read="joined"}

    # A read begun longer ago than a book is kept is not joined: the broker is asked again.
    wait_until(
        lambda: (
            getattr(cache.get(prices.price_key("005930")), "price", None) == PRICE
            and cache.get("picks:book:005930") is not None
        ),
        "the quote and the book kept",
    )
    settings.PICKS_BOOK_CACHE_S = 0.05
    kis_sim.control("/_sim/faults", {"latency_ms": 0})
    _forget_market("005930")
    reads.market_prefetch("005930", broker=broker, limits=limits, now=clock.now())
    wait_until(
        lambda: _market_calls(kis_sim) - before == Counter({PATH_PRICE: 2, PATH_ASKING_PRICE: 2}),
        "the second heads-up's calls",
    )
    time.sleep(0.1)  # twice the time a book is kept; nothing was kept from the unjoined read
    reads.market_read("005930", broker=broker, limits=limits, now=clock.now())
    assert _market_calls(kis_sim) - before == Counter({PATH_PRICE: 3, PATH_ASKING_PRICE: 3})


def test_a_route_reads_the_market_itself_when_the_heads_ups_read_failed(broker, kis_sim, fetches):
    limits = Limits(max_price_age_s=5)
    _forget_market("005930")
    reads.market_prefetch(
        "005930", broker=unreachable_broker(kis_sim), limits=limits, now=clock.now()
    )
    market = reads.market_read("005930", broker=broker, limits=limits, now=clock.now())
    assert (market.price, market.best_bid, market.best_ask) == (PRICE, 71_000, 71_100)
    assert "005930" not in fetches  # nobody joins the failed read again
