"""The exit engine end to end, one test per rule: a scripted price path in the KIS simulator
reaches pricesync over the WebSocket, the exit it fires goes out through a real Celery worker,
the simulator fills it, the fill notice comes back through `stream_fills`, and the ledger ends
where the rule says, as does the broker's balance.

Every process lives in one simulated trading day (core.clock.ShiftedClock): this process and
the simulator move to the moment each test needs (the bell, the time exit), and the worker and
the fill stream, which only date their orders, sit at noon of the same day.
"""

import datetime as dt
from decimal import Decimal

import pytest

from core import clock
from execution import services
from execution.models import Alert, Fill, Order, OrderIntent, Position
from market import vi as market_vi
from market.models import BestPrice
from tests.support import forget_broker_credentials, holds_for, wait_until
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.ledger import key
from tests.support.pricesync import Running
from tests.support.workers import fill_stream_running, start_worker, stop_worker
from trading.models import ExitProfile, PositionExitState, TakeProfitTier
from trading.pricesync import PriceSync
from trading.services import exit_pause, gap_prequeue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DAY = dt.date(2026, 11, 24)  # a Tuesday: a KRX trading day, opening at 09:00
SYMBOL, QTY, COST = "005930", 10, 71_000


def at(hms: str) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time.fromisoformat(hms), clock.SEOUL)


NOON = clock.ShiftedClock(at("12:00:00"))  # the worker's and the fill stream's day


class Day:
    """This process's clock and the simulator's, moved together to a moment of DAY."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.current = clock.ShiftedClock(at("10:00:00"))
        self.sim.control("/_sim/clock", self._payload())

    def _payload(self) -> dict:
        return {"start": self.current.start.isoformat(), "origin": self.current.origin}

    def now(self) -> dt.datetime:
        return self.current.now()

    def move_to(self, hms: str) -> None:
        self.current = clock.ShiftedClock(at(hms))
        self.sim.control("/_sim/clock", self._payload())


@pytest.fixture(scope="module")
def worker(kis_sim_process, django_db_setup, tmp_path_factory):
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(kis_sim_process, log, env=NOON.environ())
    yield log
    stop_worker(proc)


@pytest.fixture
def day(kis_sim, worker):
    forget_broker_credentials()
    moment = Day(kis_sim)
    with clock.installed(moment):
        yield moment


@pytest.fixture
def fill_stream(kis_sim, day, tmp_path):
    with fill_stream_running(kis_sim, tmp_path / "stream.log", env=NOON.environ()) as log:
        yield log


def held(kis_sim, profile: ExitProfile) -> Position:
    """QTY shares bought at COST through the broker, managed by `profile`."""
    entry = services.entry_intent_open(
        symbol=SYMBOL, qty=QTY, limit_price=COST, idempotency_key=key("entry")
    )
    wait_until(
        lambda: Order.objects.filter(intent=entry, status="SUBMITTED").exists(),
        "the entry at the broker",
    )
    kis_sim.control("/_sim/step", {"pdno": SYMBOL, "steps": 0})
    wait_until(lambda: Order.objects.filter(intent=entry, status="FILLED").exists(), "the entry")
    position = Position.objects.get(pk=entry.position_id)
    assert (position.qty, position.avg_price, broker_qty(kis_sim)) == (QTY, COST, QTY)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=QTY)
    return position


def pricesync(kis_sim, *, send: bool = True) -> Running:
    broker = kis_worker.client_for(sim_dict(kis_sim), rate=50)
    return Running(PriceSync(broker=broker, poll_s=60, stale_s=60, follow_s=60, send=send))


def trade(kis_sim, *path: int) -> None:
    kis_sim.control("/_sim/prices", {"pdno": SYMBOL, "path": list(path)})
    kis_sim.control("/_sim/step", {"pdno": SYMBOL, "steps": len(path)})


def filled_exit(kis_sim, position: Position, rule: str) -> OrderIntent:
    """The exit `rule` opened for `position`: wait for it, for its order at the broker, match
    the book, and wait for the fill notice to bring the fill into the ledger."""
    wait_until(
        lambda: OrderIntent.objects.filter(position=position, intent_type=rule).exists(),
        f"the {rule} intent",
    )
    intent = OrderIntent.objects.get(position=position, intent_type=rule)
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
        f"the {rule} order at the broker",
    )
    kis_sim.control("/_sim/step", {"pdno": SYMBOL, "steps": 0})  # the book matches it
    wait_until(
        lambda: Order.objects.filter(intent=intent, status="FILLED").exists(),
        f"the {rule} fill through the notice",
    )
    order = Order.objects.get(intent=intent)
    assert Order.objects.filter(intent=intent).count() == 1
    assert sum(f.qty for f in Fill.objects.filter(order=order)) == order.qty == intent.qty
    sells = [o for o in kis_sim.book()["orders"] if o["side"] == "SELL"]
    assert [o["qty"] for o in sells if o["odno"] == order.broker_order_no] == [intent.qty]
    return intent


def broker_qty(kis_sim) -> int:
    [account] = kis_sim.book()["accounts"]
    return sum(h["qty"] for h in account["holdings"] if h["pdno"] == SYMBOL)


def closed(position: Position) -> bool:
    position.refresh_from_db()
    return position.status == Position.Status.CLOSED and position.qty == 0


@pytest.mark.parametrize("send", [True, False], ids=["sent-by-pricesync", "sent-by-the-worker"])
def test_stop_loss_sells_everything_at_the_stop(kis_sim, day, fill_stream, worker, caplog, send):
    profile = ExitProfile.objects.create(name="stop", stop_loss_pct=Decimal(3), gap_down_pct=None)
    position = held(kis_sim, profile)
    with pricesync(kis_sim, send=send):
        trade(kis_sim, 70_500, 69_500, 68_800)  # the stop is 68,870
        intent = filled_exit(kis_sim, position, "EXIT_STOP_LOSS")
    assert (intent.qty, intent.trigger_price, intent.limit_price) == (10, 68_800, 68_600)
    assert "68,800 ≤ 68,870" in intent.reason
    assert closed(position) and broker_qty(kis_sim) == 0
    sent_here = f"execution.sent_in_process intent_id={intent.pk} outcome=submitted"
    assert (sent_here in caplog.text) is send
    order = Order.objects.get(intent=intent)
    by_worker = f"execution.submitted order_id={order.pk}"
    if send:
        assert by_worker not in worker.read_text()
    else:  # the worker logs it just after it records the order SUBMITTED: it may trail
        wait_until(lambda: by_worker in worker.read_text(), "the worker's log of the order")


def sells_sent(kis_sim) -> int:
    """Sell orders that reached KIS, accepted or refused."""
    return sum(
        1
        for r in kis_sim.control("/_sim/book", method="GET")["requests"]
        if r["path"].endswith("/order-cash") and r.get("tr_id") == "TTTC0011U"
    )


def test_an_exit_kis_refuses_pauses_its_position_instead_of_being_sent_again(
    kis_sim, day, fill_stream
):
    profile = ExitProfile.objects.create(name="stop", stop_loss_pct=Decimal(3), gap_down_pct=None)
    position = held(kis_sim, profile)
    kis_sim.account_set({})  # sold in KIS's app: KIS refuses the stop's sell
    with pricesync(kis_sim):
        trade(kis_sim, 70_500, 69_500, 68_800)  # the stop is 68,870
        refused = wait_until(
            lambda: Order.objects.filter(position=position, status="REJECTED").first(),
            "the refused stop",
        )
        state = PositionExitState.objects.get(position=position)
        assert (state.paused_at is not None, state.paused_by) == (True, "KIS")
        [alert] = Alert.objects.filter(kind="EXIT", severity="CRITICAL", subject=SYMBOL)
        assert f"order {refused.pk}" in alert.message and "exits are paused" in alert.message
        assert "APBK9901" in alert.message  # KIS's own words, with its code
        # The stop is crossed again and again: each trade reaches the engine, none is sent.
        trade(kis_sim, 68_700, 68_600, 68_500)
        wait_until(
            lambda: BestPrice.objects.filter(symbol=SYMBOL, price=68_500).exists(),
            "the last trade",
        )
        holds_for(
            lambda: (
                sells_sent(kis_sim) == 1
                and Order.objects.filter(position=position, side="SELL").count() == 1
            ),
            seconds=3,
            what="one sell at KIS",
        )
        # A person finds the shares back at KIS (a reconciliation would say) and resumes.
        kis_sim.account_set({SYMBOL: QTY}, avg_price=COST)
        exit_pause(position_id=position.pk, paused=False, by="admin")
        trade(kis_sim, 68_400)
        intent = wait_until(
            lambda: (
                OrderIntent.objects.filter(position=position, intent_type="EXIT_STOP_LOSS")
                .exclude(pk=refused.intent_id)
                .first()
            ),
            "the stop decided again",
        )
        wait_until(
            lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
            "the stop at the broker",
        )
        kis_sim.control("/_sim/step", {"pdno": SYMBOL, "steps": 0})
        wait_until(lambda: closed(position), "the position to close")
    assert broker_qty(kis_sim) == 0 and sells_sent(kis_sim) == 2


def test_take_profit_tiers_sell_their_shares_one_after_the_other(kis_sim, day, fill_stream):
    profile = ExitProfile.objects.create(name="tiers", gap_down_pct=None)
    TakeProfitTier.objects.create(profile=profile, gain_pct=Decimal(3), sell_pct=Decimal(40))
    TakeProfitTier.objects.create(profile=profile, gain_pct=Decimal(6), sell_pct=Decimal(60))
    position = held(kis_sim, profile)
    with pricesync(kis_sim):
        trade(kis_sim, 72_000, 73_200)  # +3.1%: the first tier, 40% of 10
        first = filled_exit(kis_sim, position, "EXIT_TAKE_PROFIT")
        position.refresh_from_db()
        assert (first.qty, position.qty, broker_qty(kis_sim)) == (4, 6, 6)
        assert PositionExitState.objects.get(position=position).tiers_done == 1
        trade(kis_sim, 74_000, 75_300)  # +6.1%: the second tier, the other 60%
        wait_until(
            lambda: (
                OrderIntent.objects.filter(
                    position=position, intent_type="EXIT_TAKE_PROFIT"
                ).count()
                == 2
            ),
            "the second tier",
        )
        second = OrderIntent.objects.filter(position=position).latest("created_at")
        wait_until(
            lambda: Order.objects.filter(intent=second, status="SUBMITTED").exists(),
            "the second tier's order",
        )
        kis_sim.control("/_sim/step", {"pdno": SYMBOL, "steps": 0})
        wait_until(lambda: closed(position), "the position to close")
    assert (second.qty, second.trigger_price) == (6, 75_300)
    assert PositionExitState.objects.get(position=position).tiers_done == 2
    assert broker_qty(kis_sim) == 0


def test_trailing_stop_sells_below_the_high_once_armed(kis_sim, day, fill_stream):
    profile = ExitProfile.objects.create(
        name="trail", gap_down_pct=None, trailing_activation_pct=Decimal(2), trailing_pct=Decimal(1)
    )
    position = held(kis_sim, profile)
    with pricesync(kis_sim):
        trade(kis_sim, 72_000, 72_600, 73_000, 72_400, 72_200)  # armed at 72,420, stop 72,270
        intent = filled_exit(kis_sim, position, "EXIT_TRAILING")
    assert (intent.qty, intent.trigger_price) == (10, 72_200)
    assert PositionExitState.objects.get(position=position).high_water_mark == 73_000
    assert closed(position) and broker_qty(kis_sim) == 0


def test_gap_down_sells_at_the_opening_trade_from_the_prequeued_threshold(
    kis_sim, day, fill_stream
):
    profile = ExitProfile.objects.create(name="gap", gap_down_pct=Decimal(5))
    position = held(kis_sim, profile)
    day.move_to("08:59:49")
    with pricesync(kis_sim):  # its first quote: yesterday's close 71,000
        assert gap_prequeue(day=DAY) == 1  # what beat sends at 08:59:50
        day.move_to("09:00:01")
        kis_sim.control("/_sim/gap", {"pdno": SYMBOL, "pct": -6})  # opens at 66,800 ≤ 67,450
        intent = filled_exit(kis_sim, position, "GAP_DOWN")
    assert (intent.qty, intent.trigger_price) == (10, 66_800)
    assert intent.idempotency_key == f"gapdown:{position.pk}:20261124"
    assert intent.event_at == at("09:00:01")
    assert "67,450" in intent.reason
    assert closed(position) and broker_qty(kis_sim) == 0


def test_time_exit_sells_everything_at_its_time_and_not_before(kis_sim, day, fill_stream):
    profile = ExitProfile.objects.create(
        name="day trade", gap_down_pct=None, day_trade=True, time_exit_at=dt.time(15, 20)
    )
    position = held(kis_sim, profile)
    day.move_to("15:19:58")
    with pricesync(kis_sim):
        trade(kis_sim, 71_100)  # 15:19:5x: quiet
        wait_until(lambda: kis_sim.book()["prices"][SYMBOL]["path_left"] == 0, "the first trade")
        day.move_to("15:20:00")
        trade(kis_sim, 71_200)
        intent = filled_exit(kis_sim, position, "EXIT_TIME")
    assert (intent.qty, intent.trigger_price) == (10, 71_200)  # not the trade before the time
    assert "15:20:0" in intent.reason
    assert closed(position) and broker_qty(kis_sim) == 0


def test_max_holding_days_sells_a_position_held_too_long(kis_sim, day, fill_stream):
    profile = ExitProfile.objects.create(name="swing", gap_down_pct=None, max_holding_days=3)
    position = held(kis_sim, profile)
    Position.objects.filter(pk=position.pk).update(opened_at=at("10:00:00") - dt.timedelta(days=7))
    with pricesync(kis_sim):  # the first price it reads, the REST quote, is enough
        intent = filled_exit(kis_sim, position, "EXIT_MAX_HOLD")
    assert (intent.qty, intent.trigger_price) == (10, 71_000)
    assert "held 5 trading days ≥ 3" in intent.reason
    assert closed(position) and broker_qty(kis_sim) == 0


@pytest.mark.parametrize("action", ["AUCTION", "WAIT"])
def test_a_volatility_interruption_takes_the_stop_as_its_profile_says(
    kis_sim, day, fill_stream, action
):
    """A fall of 6.9 % in one trade stops continuous trading for a two-minute call auction (a
    dynamic VI); the trade feed carries its expected price. AUCTION: the stop decided on that
    price goes in at once, joins the auction and trades at its single price, its reason saying
    so. WAIT: nothing goes out during the auction, the wait is alerted once, and the stop is
    decided on the first trade after it."""
    profile = ExitProfile.objects.create(
        name=f"vi-{action}", stop_loss_pct=Decimal(3), gap_down_pct=None, vi_action=action
    )
    position = held(kis_sim, profile)
    kis_sim.control("/_sim/limits", {"vi": True})
    with pricesync(kis_sim):
        trade(kis_sim, 70_900)
        kis_sim.control("/_sim/prices", {"pdno": SYMBOL, "price": 66_000})  # the VI begins
        if action == "AUCTION":
            wait_until(
                lambda: OrderIntent.objects.filter(position=position, side="SELL").exists(),
                "the stop decided on the auction's expected price",
            )
            intent = OrderIntent.objects.get(position=position, side="SELL")
            wait_until(
                lambda: Order.objects.filter(intent=intent, status="SUBMITTED").exists(),
                "its order in the auction",
            )
            assert intent.intent_type == "EXIT_STOP_LOSS" and intent.trigger_price == 66_000
            assert "volatility interruption" in intent.reason, intent.reason
            [sell] = [o for o in kis_sim.book()["orders"] if o["side"] == "SELL"]
            assert sell["remaining"] == QTY  # nothing trades in the auction
        else:
            wait_until(
                lambda: Alert.objects.filter(kind="EXIT", subject=SYMBOL).exists(),
                "the wait, alerted",
            )
            kis_sim.control("/_sim/prices", {"pdno": SYMBOL, "price": 65_900})  # still in it
            wait_until(
                lambda: getattr(market_vi.vis_of([SYMBOL]).get(SYMBOL), "expected", 0) == 65_900,
                "the auction's next expected price handled",
            )
            assert not OrderIntent.objects.filter(position=position, side="SELL").exists()
            assert Alert.objects.filter(kind="EXIT", subject=SYMBOL).count() == 1
        day.move_to("10:05:00")  # past the auction: its single price prints as a trade
        if action == "AUCTION":
            wait_until(lambda: closed(position), "the stop filled at the auction's price")
            fill = Fill.objects.get(order__intent=intent)
            assert fill.price == 66_000
        else:
            intent = filled_exit(kis_sim, position, "EXIT_STOP_LOSS")
            assert intent.trigger_price == 65_900
            assert "volatility interruption" not in intent.reason
            assert closed(position)
    assert market_vi.vis_of([SYMBOL]) == {}  # the trade ended the VI
    assert broker_qty(kis_sim) == 0
