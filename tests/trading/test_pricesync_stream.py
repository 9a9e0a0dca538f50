"""pricesync's WebSocket outage is alerted (STREAM) while it falls back to REST polling, and its
end too. Real PostgreSQL; a local WebSocket server stands in for KIS's, a stub for its REST."""

import asyncio
import datetime as dt
import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest
from websockets.asyncio.server import serve

from core import clock
from execution.models import Alert
from kis import protocol
from kis.client import Quote
from market.models import BestPrice
from tests.support import free_port, in_session, wait_until
from trading.pricesync import PriceSync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def trading_hours():
    """REST quotes are polled only while the market trades."""
    with clock.installed(in_session()):
        yield


class RestOnly:
    """A broker whose REST answers a fixed quote; its WebSocket is the URL given."""

    def __init__(self, ws_url: str):
        self.config = SimpleNamespace(
            ws_url=ws_url, custtype="P", rate_per_second=20, flavour=protocol.Flavour.REAL
        )
        self.polls = 0

    def approval_key(self) -> str:
        return "approval"

    def approval_key_refused(self, value: str) -> None:
        pass

    def price(self, symbol: str) -> Quote:
        self.polls += 1
        return replace(self.quote(symbol), vi=self.vi)

    vi = False

    def quote(self, symbol: str) -> Quote:
        return Quote(
            symbol=symbol,
            price=71_000,
            prev_close=71_000,
            open=71_000,
            high=71_000,
            low=71_000,
            upper_limit=92_300,
            lower_limit=49_700,
            volume=1,
            tick=100,
            sign="3",
            halted=False,
        )


def stream_alerts() -> list[tuple[str, str]]:
    return list(
        Alert.objects.filter(kind=Alert.Kind.STREAM)
        .order_by("created_at")
        .values_list("subject", "state")
    )


def test_a_stream_outage_is_alerted_while_rest_polling_covers_it_and_its_end_too():
    port = free_port()
    broker = RestOnly(f"ws://127.0.0.1:{port}")
    sync = PriceSync(
        broker=broker,
        watchlist=("005930",),
        evaluate=False,
        poll_s=0.2,
        stale_s=0.5,
        follow_s=0.5,
        stream_alert_after_s=0.5,
    )
    sync.stream.reconnect_min_s, sync.stream.reconnect_max_s = 0.05, 0.2
    loop = asyncio.new_event_loop()
    state = {}

    async def handler(ws):
        await ws.recv()
        record = dict.fromkeys(protocol.TRADE_FIELDS, "0") | {
            "MKSC_SHRN_ISCD": "005930",
            "STCK_PRPR": "71500",
            "STCK_CNTG_HOUR": "090001",
            "BSOP_DATE": "",
        }
        payload = protocol.join_records([record], protocol.TRADE_FIELDS)
        await ws.send(f"0|{protocol.WS_TR_TRADE_TOTAL}|001|{payload}")
        await ws.wait_closed()

    async def main():
        state["stop"] = asyncio.Event()
        await sync.run(state["stop"])

    def server_up():
        async def start():
            state["server"] = await serve(handler, "127.0.0.1", port)

        asyncio.run_coroutine_threadsafe(start(), loop).result(10)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        # No WebSocket at all: prices come over REST, and the outage is alerted once.
        wait_until(lambda: stream_alerts() == [("prices", "down")], "the outage alert")
        polls = broker.polls
        wait_until(lambda: broker.polls > polls + 2, "REST polling meanwhile")
        assert BestPrice.objects.get(symbol="005930").source == "REST"
        assert stream_alerts() == [("prices", "down")]
        server_up()
        wait_until(lambda: stream_alerts() == [("prices", "down"), ("prices", "up")], "its end")
        assert Alert.objects.get(kind=Alert.Kind.STREAM, state="down").severity == "CRITICAL"
    finally:

        async def shut():
            if "server" in state:
                state["server"].close()
                await state["server"].wait_closed()
            state["stop"].set()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(30)
        thread.join(30)
        assert not thread.is_alive()
        loop.close()


def test_the_day_s_quotes_are_read_again_before_its_first_session():
    """A feed running for days re-reads each subscribed symbol's quote (the day's previous
    close and limits) once a trading day, from ten minutes before Nextrade's pre-market; a
    symbol quoted since is not quoted again."""
    broker = RestOnly("ws://127.0.0.1:9")
    sync = PriceSync(broker=broker, watchlist=("005930",), evaluate=False)
    sync.subscribed = {"005930", "000660"}
    monday, tuesday = dt.date(2026, 11, 23), dt.date(2026, 11, 24)

    def requote_at(day, hms):
        moment = dt.datetime.combine(day, dt.time.fromisoformat(hms), clock.SEOUL)
        with clock.installed(clock.FixedClock(moment)):
            asyncio.run(sync.requote_daily())
        return broker.polls

    assert requote_at(monday, "07:49:59") == 0
    assert requote_at(monday, "07:50:00") == 2
    assert requote_at(monday, "12:00:00") == 2  # once a day
    sync.quoted_at["000660"] = dt.datetime(2026, 11, 24, 7, 55, tzinfo=clock.SEOUL)  # since
    assert requote_at(tuesday, "08:00:00") == 3
    assert requote_at(dt.date(2026, 11, 28), "08:00:00") == 3  # a Saturday
    assert BestPrice.objects.filter(symbol="005930", source="REST").exists()


def test_a_quote_in_a_vi_marks_the_stock_and_the_next_quote_clears_it():
    from market import vi as market_vi

    broker = RestOnly("ws://127.0.0.1:9")
    sync = PriceSync(broker=broker, watchlist=("005930",), evaluate=False)
    broker.vi = True
    asyncio.run(sync._poll_one("005930"))
    try:
        assert market_vi.vis_of(["005930"])["005930"].expected == 71_000
        broker.vi = False
        asyncio.run(sync._poll_one("005930"))
        assert market_vi.vis_of(["005930"]) == {}
    finally:
        market_vi.vi_clear("005930")
