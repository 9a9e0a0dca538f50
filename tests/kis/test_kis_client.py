"""The KIS client against the KIS simulator on loopback: no HTTP mocking anywhere.

Tokens and the rate limit are shared through the real Redis of the test run, across real OS
processes; faults are injected by the simulator's control endpoint.
"""

import asyncio
import datetime as dt
import multiprocessing
import time

import pytest
from django.core.cache import cache

from core import clock
from kis import errors
from kis.protocol import Flavour, notice_tr_id
from kis.ws import KisStream
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict


def todays_orders(client):
    """The account's orders of the Seoul day (KIS dates its orders in Seoul), read from the day
    before: the suite may run across midnight in Seoul, and each simulator starts empty."""
    today = clock.now_seoul().date()
    return client.daily_orders(start=today - dt.timedelta(days=1), end=today)


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()  # tokens and rate windows of earlier tests belong to a reset simulator
    yield
    cache.clear()


@pytest.fixture
def client(kis_sim):
    return kis_worker.client_for(sim_dict(kis_sim), rate=50)


def issued(sim) -> int:
    return sum(sim.book()["token_issuance"].values())


def test_orders_fill_and_show_in_the_inquiries(kis_sim, client):
    ack = client.order_cash(side="BUY", symbol="005930", qty=10, price=None)
    assert ack.odno.isdigit() and len(ack.odno) == 10
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 1})
    orders = todays_orders(client)
    mine = next(o for o in orders if o.odno == ack.odno)
    assert (mine.side, mine.symbol, mine.ord_qty, mine.tot_ccld_qty, mine.rmn_qty) == (
        "BUY",
        "005930",
        10,
        10,
        0,
    )
    balance = client.balance()
    holding = next(h for h in balance.holdings if h.symbol == "005930")
    assert (holding.hldg_qty, holding.ord_psbl_qty) == (10, 10)

    sell = client.order_cash(side="SELL", symbol="005930", qty=4, price=90_000)  # far above
    balance = client.balance()
    assert next(h for h in balance.holdings if h.symbol == "005930").ord_psbl_qty == 6
    client.order_cancel(org_no=sell.org_no, odno=sell.odno)
    balance = client.balance()
    assert next(h for h in balance.holdings if h.symbol == "005930").ord_psbl_qty == 10


def test_orders_go_to_their_venue_and_the_inquiry_reads_every_venue(kis_sim, client):
    sent = {
        venue: client.order_cash(side="BUY", symbol="005930", qty=1, price=50_000, venue=venue)
        for venue in ("KRX", "NXT", "SOR")
    }
    orders = {o.odno: o for o in todays_orders(client)}
    assert {venue: orders[ack.odno].venue for venue, ack in sent.items()} == {
        "KRX": "KRX",
        "NXT": "NXT",
        "SOR": "SOR",
    }
    with pytest.raises(ValueError, match="no market order"):
        client.order_cash(side="BUY", symbol="005930", qty=1, price=None, venue="NXT")
    with pytest.raises(ValueError, match="venue"):
        client.order_cash(side="BUY", symbol="005930", qty=1, price=50_000, venue="NYSE")
    assert len(todays_orders(client)) == 3  # nothing else went out


def test_a_paper_account_sends_to_krx_only(kis_sim_paper):
    client = kis_worker.client_for(sim_dict(kis_sim_paper), rate=50)
    with pytest.raises(ValueError, match="KRX only"):
        client.order_cash(side="BUY", symbol="005930", qty=1, price=50_000, venue="NXT")
    ack = client.order_cash(side="BUY", symbol="005930", qty=1, price=50_000)
    [row] = todays_orders(client)  # inquired as KRX: paper has no ALL
    assert (row.odno, row.venue) == (ack.odno, "KRX")


def test_quote_and_order_book(client):
    quote = client.price("005930")
    assert quote.price == 71_000 and quote.prev_close == 71_000
    assert (quote.lower_limit, quote.upper_limit) == (49_700, 92_300)
    assert quote.tick == 100
    book = client.order_book("005930")
    assert book.asks and book.bids and book.asks[0][0] > book.bids[0][0]


def test_a_call_takes_its_rate_slot_and_breaker_state_in_one_redis_round_trip(client):
    import redis
    from django.conf import settings

    def counts() -> tuple[int, int]:
        stats = redis.Redis.from_url(settings.REDIS_URL).info("commandstats")
        return tuple(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "mget"))

    client.price("005930")  # the token issued and held; the breaker's state written
    before = counts()
    assert client.price("005930").price == 71_000
    assert counts() == (before[0] + 1, before[1])  # the limiter's script, no state read


def test_a_failing_credentials_alert_leaves_the_calls_own_error(kis_sim):
    told = []

    def failing_alert(**kwargs):
        told.append(kwargs)
        raise RuntimeError("the alert's database is down")

    client = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    client.on_credentials_refused = failing_alert
    kis_sim.control("/_sim/limits", {"token_ttl_s": 0, "token_interval_s": 0})  # born expired
    with pytest.raises(errors.KisTokenExpired):
        client.price("005930")
    assert told == [
        {"app": client.config.query_app.fingerprint, "use": "query", "msg_cd": "EGW00123"}
    ]


def test_one_token_for_four_processes(kis_sim):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        together = manager.Barrier(4)
        results = pool.starmap(kis_worker.price_calls, [(sim_dict(kis_sim), 50, 3, together)] * 4)
    assert all(r["prices"] == [71_000] * 3 for r in results)
    assert issued(kis_sim) == 1


def test_rate_limit_holds_across_four_processes(kis_sim):
    limit, calls = 10, 12
    kis_sim.control("/_sim/limits", {"rps": limit})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        together = manager.Barrier(4)
        results = pool.starmap(
            kis_worker.price_calls, [(sim_dict(kis_sim), limit, calls, together)] * 4
        )
    assert sum(len(r["prices"]) for r in results) == 4 * calls  # none lost
    arrivals = sorted(
        entry["t"]
        for entry in kis_sim.book()["requests"]
        if entry["path"].endswith("inquire-price")
    )
    assert len(arrivals) >= 4 * calls
    busiest = max(
        sum(1 for t in arrivals[i:] if t - start_t < 1.0) for i, start_t in enumerate(arrivals)
    )
    log = [
        (round(e["t"] - arrivals[0], 3), e["status"])
        for e in kis_sim.book()["requests"]
        if e["path"].endswith("inquire-price")
    ]
    assert busiest <= limit, f"{busiest} requests reached KIS within one second: {log}"


def test_paging_reads_every_page(kis_sim_paper):
    sim = kis_sim_paper
    sim.control("/_sim/limits", {"rps": 1000})
    client = kis_worker.client_for(sim_dict(sim), rate=1000)
    holdings = [{"pdno": f"{100000 + i:06d}", "qty": 1, "avg_price": 1_000} for i in range(25)]
    for h in holdings:
        sim.control("/_sim/prices", {"pdno": h["pdno"], "price": 1_000})
    sim.control(
        "/_sim/accounts",
        {
            "cano": sim.cano,
            "acnt_prdt_cd": sim.acnt_prdt_cd,
            "cash": 100_000_000,
            "hts_id": sim.hts_id,
            "holdings": holdings,
        },
    )
    for _ in range(17):  # paper pages hold 15 orders
        client.order_cash(side="BUY", symbol="005930", qty=1, price=50_000)
    assert len(todays_orders(client)) == 17
    assert len(client.balance().holdings) == 25  # paper pages hold 20 holdings


class TestErrorPaths:
    def test_over_the_rate_limit_is_retried_then_succeeds(self, kis_sim):
        kis_sim.control("/_sim/limits", {"rps": 2})
        client = kis_worker.client_for(sim_dict(kis_sim), rate=50)
        assert [client.price("005930").price for _ in range(4)] == [71_000] * 4
        refused = [e for e in kis_sim.book()["requests"] if e["status"] == 500]
        assert refused, "the simulator should have answered EGW00201 at least once"

    def test_rate_limit_retries_are_bounded(self, kis_sim):
        kis_sim.control("/_sim/limits", {"rps": 1})
        client = kis_worker.client_for(sim_dict(kis_sim), rate=50, retries=0)
        with pytest.raises(errors.KisRateLimited):
            for _ in range(5):
                client.price("005930")

    def test_second_token_within_a_minute_is_refused(self, client):
        app = client.config.query_app
        client._issue_token(app)
        with pytest.raises(errors.KisTokenRateLimited, match="EGW00133"):
            client._issue_token(app)

    def test_a_forgotten_token_is_replaced_once(self, kis_sim, client):
        client.price("005930")
        kis_sim.control("/_sim/reset", {})  # the simulator forgets every token it issued
        kis_sim.reinstall()
        kis_sim.control("/_sim/limits", {"token_interval_s": 0})
        assert client.price("005930").price == 71_000
        assert issued(kis_sim) == 1

    def test_market_closed_and_unknown_symbol(self, kis_sim, client):
        with pytest.raises(errors.KisProductNotFound):
            client.order_cash(side="BUY", symbol="999999", qty=1, price=None)
        kis_sim.control("/_sim/session", {"open": False})
        with pytest.raises(errors.KisMarketClosed):
            client.order_cash(side="BUY", symbol="005930", qty=1, price=None)

    def test_sell_beyond_holdings_is_refused(self, client):
        with pytest.raises(errors.KisOrderRefused):
            client.order_cash(side="SELL", symbol="005930", qty=1, price=None)

    def test_server_error_on_a_query_is_unavailable(self, kis_sim, client):
        client.price("005930")
        kis_sim.control("/_sim/faults", {"error_5xx_next": 1})
        with pytest.raises(errors.KisUnavailable):
            client.price("005930")
        assert client.price("005930").price == 71_000

    @pytest.mark.parametrize(
        "fault", [{"error_5xx_next": 1}, {"drop_next": 1}, {"timeout_next": 1, "timeout_s": 3}]
    )
    def test_an_order_with_an_unknown_outcome_is_ambiguous_and_not_resent(self, kis_sim, fault):
        client = kis_worker.client_for(sim_dict(kis_sim), rate=50, read_timeout_s=1.0)
        client.price("005930")  # token in hand
        before = len([e for e in kis_sim.book()["requests"] if "order-cash" in e["path"]])
        kis_sim.control("/_sim/faults", fault)
        with pytest.raises(errors.KisAmbiguousOutcome, match="do not resend|unknown"):
            client.order_cash(side="BUY", symbol="005930", qty=1, price=None)
        after = len([e for e in kis_sim.book()["requests"] if "order-cash" in e["path"]])
        assert after - before <= 1  # sent at most once, never retried

    @staticmethod
    def _sent(sim, path_end: str) -> list:
        return [e["fault"] for e in sim.book()["requests"] if e["path"].endswith(path_end)]

    @pytest.mark.parametrize("use", ["query", "order"])
    def test_the_ledger_limit_is_retried_then_succeeds(self, kis_sim, client, use):
        client.price("005930")  # token in hand
        kis_sim.control("/_sim/faults", {"ledger_limit_next": 2})
        if use == "query":
            assert client.price("005930").price == 71_000
            path = "inquire-price"
        else:
            assert client.order_cash(side="BUY", symbol="005930", qty=2, price=None).odno
            assert [o["qty"] for o in kis_sim.book()["orders"]] == [2]
            path = "order-cash"
        assert self._sent(kis_sim, path)[-3:] == ["ledger_limit", "ledger_limit", None]

    @pytest.mark.parametrize("use", ["query", "order"])
    def test_the_ledger_limit_gives_up_as_rate_limited(self, kis_sim, use):
        client = kis_worker.client_for(sim_dict(kis_sim), rate=50, retries=2)
        client.price("005930")
        kis_sim.control("/_sim/faults", {"ledger_limit_next": 3})
        with pytest.raises(errors.KisRateLimited) as refused:
            if use == "query":
                client.price("005930")
            else:
                client.order_cash(side="BUY", symbol="005930", qty=2, price=None)
        assert refused.value.msg_cd == "EGW00215"
        path = "inquire-price" if use == "query" else "order-cash"
        assert self._sent(kis_sim, path)[-3:] == ["ledger_limit"] * 3  # 1 + 2 retries, no more
        assert kis_sim.book()["orders"] == []  # refused: safe to send again later
        assert client.price("005930").price == 71_000

    @pytest.mark.parametrize(
        "fault",
        [
            {"non_json_next": 1},
            {"omit_next": 1, "omit_field": "stck_prpr"},
            {"omit_next": 1, "omit_field": "rt_cd"},
        ],
    )
    def test_an_unreadable_quote_is_a_protocol_error(self, kis_sim, client, fault):
        client.price("005930")
        kis_sim.control("/_sim/faults", fault)
        with pytest.raises(errors.KisProtocolError):
            client.price("005930")
        assert client.price("005930").price == 71_000

    @pytest.mark.parametrize(
        "fault",
        [
            {"non_json_next": 1, "after": True},  # taken by KIS, its answer cut short
            {"non_json_next": 1},  # something in front of KIS answered instead
            {"omit_next": 1, "omit_field": "odno"},
            {"omit_next": 1, "omit_field": "rt_cd"},
        ],
    )
    def test_an_unreadable_order_answer_is_ambiguous_and_not_resent(self, kis_sim, client, fault):
        """An answer that cannot be read says nothing about the order: it may be working at
        KIS. Treated as a refusal, its shares would be released while it fills."""
        client.price("005930")
        kis_sim.control("/_sim/faults", fault)
        with pytest.raises(errors.KisAmbiguousOutcome):
            client.order_cash(side="BUY", symbol="005930", qty=5, price=None)
        assert len(self._sent(kis_sim, "order-cash")) == 1  # sent once, never retried
        taken = fault.get("after") or "omit_next" in fault
        assert [o["qty"] for o in kis_sim.book()["orders"]] == ([5] if taken else [])

    def test_outage_makes_queries_unavailable(self, kis_sim, client):
        client.price("005930")
        kis_sim.control("/_sim/faults", {"outage_s": 2})
        with pytest.raises(errors.KisUnavailable):
            client.price("005930")


def run_stream(sim, client, body, **stream_kwargs):
    """Run a KisStream against the simulator for the duration of `body(stream, got)`."""
    got = {"trades": [], "notices": []}

    async def main():
        stream = KisStream(
            url=sim.ws_url,
            approval_key=client.approval_key,
            on_trade=got["trades"].append,
            on_notice=got["notices"].append,
            reconnect_min_s=0.1,
            **stream_kwargs,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(stream.run(stop))
        try:
            await asyncio.wait_for(stream.connected.wait(), 10)
            await body(stream, got)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
    return got


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_trades_stream_and_resubscribe_after_a_dropped_connection(kis_sim, client):
    async def body(stream, got):
        await stream.subscribe("H0STCNT0", "005930")
        await until(lambda: stream.acks.get(("H0STCNT0", "005930")) == "OPSP0000")
        await asyncio.to_thread(
            kis_sim.control, "/_sim/prices", {"pdno": "005930", "price": 71_500}
        )
        await until(lambda: any(t.price == 71_500 for t in got["trades"]))
        await asyncio.to_thread(kis_sim.control, "/_sim/faults", {"ws_drop": True})
        await until(lambda: stream.connections >= 2 and stream.connected.is_set())
        await until(lambda: stream.acks.get(("H0STCNT0", "005930")) == "OPSP0000")
        await asyncio.to_thread(
            kis_sim.control, "/_sim/prices", {"pdno": "005930", "price": 71_600}
        )
        await until(lambda: any(t.price == 71_600 for t in got["trades"]))

    got = run_stream(kis_sim, client, body)
    tick = next(t for t in got["trades"] if t.price == 71_600)
    assert tick.symbol == "005930" and len(tick.time) == 6


def test_a_refused_approval_key_is_replaced_and_the_subscription_made(kis_sim, client):
    """KIS forgets the approval keys (expired, revoked): the next subscription is refused with
    OPSP0011, so the stream forgets its key, subscribes with a fresh one, and trades flow."""

    async def body(stream, got):
        await stream.subscribe("H0STCNT0", "000660")
        await until(lambda: stream.acks.get(("H0STCNT0", "000660")) == "OPSP0000")
        first_key = await asyncio.to_thread(client.approval_key)
        await asyncio.to_thread(kis_sim.control, "/_sim/faults", {"approvals_expire": True})
        await stream.subscribe("H0STCNT0", "005930")
        await until(lambda: stream.acks.get(("H0STCNT0", "005930")) == "OPSP0000")
        assert await asyncio.to_thread(client.approval_key) != first_key
        await asyncio.to_thread(
            kis_sim.control, "/_sim/prices", {"pdno": "005930", "price": 71_500}
        )
        await until(lambda: any(t.symbol == "005930" and t.price == 71_500 for t in got["trades"]))

    run_stream(kis_sim, client, body, approval_key_refused=client.approval_key_refused)


def test_a_fresh_approval_key_refused_as_well_is_not_retried_forever(kis_sim, client, caplog):
    """Without a way to forget the key, the renewal sends the same key again, is refused once
    more, and stops there (logged) instead of looping."""

    async def body(stream, got):
        await stream.subscribe("H0STCNT0", "005930")
        await until(lambda: stream.acks.get(("H0STCNT0", "005930")) == "OPSP0000")
        await asyncio.to_thread(kis_sim.control, "/_sim/faults", {"approvals_expire": True})
        await stream.subscribe("H0STCNT0", "000660")
        await until(
            lambda: any("000660 refused: OPSP0011" in r.getMessage() for r in caplog.records)
        )
        await asyncio.sleep(0.5)  # time for any further attempt
        assert stream.acks.get(("H0STCNT0", "000660")) == "OPSP0011"

    with caplog.at_level("WARNING", logger="aegis.kis"):
        run_stream(kis_sim, client, body)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("000660: approval key refused" in m for m in messages) == 1
    assert sum("000660 refused: OPSP0011" in m for m in messages) == 1


def test_fill_notices_arrive_decrypted(kis_sim, client):
    async def body(stream, got):
        tr = notice_tr_id(Flavour(kis_sim.flavour))
        await stream.subscribe(tr, kis_sim.hts_id)
        await until(lambda: stream.acks.get((tr, kis_sim.hts_id)) == "OPSP0000")
        ack = await asyncio.to_thread(
            client.order_cash, side="BUY", symbol="005930", qty=7, price=None
        )
        await asyncio.to_thread(kis_sim.control, "/_sim/step", {"pdno": "005930", "steps": 1})
        await until(lambda: any(n.is_fill and n.odno == ack.odno for n in got["notices"]))
        got["odno"] = ack.odno

    got = run_stream(kis_sim, client, body)
    fills = [n for n in got["notices"] if n.is_fill and n.odno == got["odno"]]
    assert sum(n.qty for n in fills) == 7
    assert all(n.side == "BUY" and n.symbol == "005930" and n.price > 0 for n in fills)


def test_upper_case_keys_are_read_the_same(kis_sim, client):
    kis_sim.control("/_sim/limits", {"upper_keys": True})
    ack = client.order_cash(side="BUY", symbol="005930", qty=3, price=None)
    assert ack.odno and ack.org_no
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 1})
    assert [o.tot_ccld_qty for o in todays_orders(client)] == [3]
    assert [(h.symbol, h.hldg_qty) for h in client.balance().holdings] == [("005930", 3)]
    assert client.price("005930").price == 71_000
    raw = kis_sim.book()["requests"]
    assert any(e["path"].endswith("inquire-price") and e["status"] == 200 for e in raw)


def test_an_expired_token_is_replaced_once(kis_sim):
    from kis.tokens import CredentialStore

    kis_sim.control("/_sim/limits", {"token_ttl_s": 2, "token_interval_s": 0})
    client = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    # This process's clock runs 100 s behind KIS's: it still believes the token fresh.
    client.tokens = CredentialStore(kind="token", renew_before_s=0, clock=lambda: time.time() - 100)
    assert client.price("005930").price == 71_000
    time.sleep(2.5)
    assert client.price("005930").price == 71_000  # EGW00123, a new token, the same call
    assert issued(kis_sim) == 2
    assert any(
        e["status"] == 500 and e["path"].endswith("inquire-price")
        for e in kis_sim.book()["requests"]
    )


@pytest.mark.django_db
def test_a_token_outlives_the_loss_of_redis(kis_sim):
    from execution.broker import DatabaseVault
    from execution.models import BrokerCredential

    first = kis_worker.client_for(sim_dict(kis_sim), rate=50, vault=DatabaseVault())
    token = first.access_token(first.config.query_app)
    row = BrokerCredential.objects.get(kind="token")
    assert token not in row.sealed_value and kis_sim.appsecret not in row.sealed_value
    cache.clear()  # Redis restarted without its data
    # Another process (no memo of its own) must not ask KIS again: KIS refuses for a minute.
    second = kis_worker.client_for(sim_dict(kis_sim), rate=50, vault=DatabaseVault())
    assert second.price("005930").price == 71_000
    assert second.access_token(second.config.query_app) == token
    assert issued(kis_sim) == 1
    assert cache.get(f"kis:token:{second.config.query_app.fingerprint}")["value"] == token


@pytest.mark.django_db
def test_a_vault_entry_sealed_with_another_secret_is_ignored(kis_sim):
    from execution.broker import DatabaseVault
    from kis.config import AppCredentials

    vault = DatabaseVault()
    app = AppCredentials(kis_sim.appkey, kis_sim.appsecret)
    vault.put("token", AppCredentials(kis_sim.appkey, "an-old-secret"), "stale", time.time() + 600)
    assert vault.get("token", app) is None
    vault.put("token", app, "current", time.time() + 600)
    assert vault.get("token", app)[0] == "current"
    vault.discard("token", app, "something else")
    assert vault.get("token", app)[0] == "current"
    vault.discard("token", app, "current")
    assert vault.get("token", app) is None


def test_stream_answers_pingpong(kis_sim, client):
    kis_sim.control("/_sim/limits", {"ping_s": 0.2})

    async def body(stream, got):
        await stream.subscribe("H0STCNT0", "005930")
        await until(lambda: kis_sim.book()["ws"]["pings_echoed"] >= 2)

    run_stream(kis_sim, client, body)
    ws = kis_sim.book()["ws"]
    assert ws["pings_sent"] >= ws["pings_echoed"] >= 2


def test_secrets_never_reach_logs_or_errors(kis_sim, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    client = kis_worker.client_for(sim_dict(kis_sim), rate=50, retries=0, read_timeout_s=1.0)
    texts = [repr(client), str(client.config)]
    client.price("005930")
    token = client.access_token(client.config.query_app)
    failures = [
        lambda: client.order_cash(side="SELL", symbol="005930", qty=1, price=None),
        lambda: client._issue_token(client.config.query_app),
        lambda: (
            kis_sim.control("/_sim/faults", {"drop_next": 1}),
            client.order_cash(side="BUY", symbol="005930", qty=1, price=None),
        ),
        lambda: (
            kis_sim.control("/_sim/session", {"open": False}),
            client.order_cash(side="BUY", symbol="005930", qty=1, price=None),
        ),
    ]
    for fail in failures:
        with pytest.raises(errors.KisError) as err:
            fail()
        texts += [str(err.value), repr(err.value)]
    texts += [record.getMessage() for record in caplog.records]
    for secret in (kis_sim.appsecret, kis_sim.appkey, token):
        assert not any(secret in text for text in texts)
    assert len(texts) > 10
