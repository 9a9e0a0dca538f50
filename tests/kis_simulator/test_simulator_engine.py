"""The simulator's matching engine and books, without a server: examples, then invariants."""

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kis_simulator import engine as eng
from kis_simulator.engine import Engine, Refusal, Side
from market import krx

SEOUL = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 3, 4, 10, 15, 30, tzinfo=SEOUL)
ACCOUNT = ("50000001", "01")


def books(engine: Engine) -> tuple:
    """Everything a refusal must leave untouched."""
    return (
        tuple(
            (k, a.cash, a.deposit, tuple((p, h.qty, h.avg) for p, h in a.holdings.items()))
            for k, a in engine.accounts.items()
        ),
        tuple(
            (o.odno, o.filled_qty, o.cancelled_qty, o.revised_qty, o.remaining)
            for o in engine.orders.values()
        ),
        len(engine.fills),
        engine._next_odno,
    )


@pytest.fixture
def engine() -> Engine:
    e = Engine(seed=7)
    e.set_account(
        cano=ACCOUNT[0],
        acnt_prdt_cd=ACCOUNT[1],
        cash=10_000_000,
        hts_id="aegis-hts",
        holdings=[("000660", 20, Fraction(120_000))],
    )
    e.set_price("005930", now=NOW, price=71_000, name="삼성전자")
    e.set_price("000660", now=NOW, price=120_000)
    return e


def submit(e: Engine, side: Side, pdno: str, qty: int, price: int = 0, ord_dvsn: str | None = None):
    dvsn = ord_dvsn or ("01" if price == 0 else "00")
    return e.submit(
        account=ACCOUNT, pdno=pdno, side=side, ord_dvsn=dvsn, qty=qty, price=price, now=NOW
    )


def account(e: Engine) -> eng.Account:
    return e.accounts[ACCOUNT]


class TestOrders:
    def test_a_market_buy_fills_at_the_next_trade_price(self, engine):
        order, notices = submit(engine, Side.BUY, "005930", 10)
        assert order.odno == "0000000001" and order.orgno == "06010" and order.ord_tmd == "101530"
        assert [(n.filled, n.acpt_yn, n.qty) for n in notices] == [(False, "1", 10)]
        engine.set_price("005930", now=NOW, path=[71_500])
        events = engine.step(now=NOW)
        fills = [(n.filled, n.qty, n.price, n.odno) for n in events if isinstance(n, eng.Notice)]
        assert fills == [(True, 10, 71_500, order.odno)]
        assert account(engine).cash == 10_000_000 - 715_000
        holding = account(engine).holdings["005930"]
        assert (holding.qty, holding.avg_price) == (10, Decimal("71500.0000"))

    def test_a_market_buy_reserves_cash_at_the_upper_limit(self, engine):
        e = Engine()
        e.set_account(cano=ACCOUNT[0], acnt_prdt_cd=ACCOUNT[1], cash=92_300 * 10, hts_id="h")
        e.set_price("005930", now=NOW, price=71_000)
        submit(e, Side.BUY, "005930", 10)  # 10 × upper limit 92,300: all the cash
        with pytest.raises(Refusal) as refused:
            submit(e, Side.BUY, "005930", 1, 49_700)
        assert refused.value.msg_cd == eng.MSG_INSUFFICIENT_CASH

    def test_a_limit_sell_fills_only_when_the_price_reaches_it(self, engine):
        order, _ = submit(engine, Side.SELL, "000660", 5, 121_000)
        engine.set_price("000660", now=NOW, path=[120_500, 120_900, 121_500])
        engine.step(now=NOW, pdno="000660", steps=2)
        assert order.filled_qty == 0
        engine.step(now=NOW, pdno="000660")
        assert (order.filled_qty, order.filled_amount) == (5, 5 * 121_500)  # at the limit or better
        assert account(engine).holdings["000660"].qty == 15

    def test_large_orders_fill_in_parts(self, engine):
        engine.max_fill_per_step = 4
        order, _ = submit(engine, Side.BUY, "005930", 10)
        fills = []
        for _ in range(3):
            fills += [
                n.qty
                for n in engine.step(now=NOW, pdno="005930")
                if isinstance(n, eng.Notice) and n.filled
            ]
        assert fills == [4, 4, 2] and order.remaining == 0

    def test_cancel_releases_the_orderable_qty(self, engine):
        order, _ = submit(engine, Side.SELL, "000660", 15, 150_000)
        assert account(engine).orderable_qty("000660") == 5
        record, notices = engine.revise(
            account=ACCOUNT,
            orgno="06010",
            orgn_odno=order.odno,
            cancel=True,
            ord_dvsn="00",
            qty=None,
            price=0,
            now=NOW,
        )
        assert record.odno != order.odno and record.orgn_odno == order.odno
        assert record.kind == "cancel" and record.qty == 15
        assert notices[0].rctf_cls == "2" and notices[0].orgn_odno == order.odno
        assert account(engine).orderable_qty("000660") == 20
        with pytest.raises(Refusal) as again:
            engine.revise(
                account=ACCOUNT,
                orgno="06010",
                orgn_odno=order.odno,
                cancel=True,
                ord_dvsn="00",
                qty=None,
                price=0,
                now=NOW,
            )
        assert again.value.msg_cd == eng.MSG_NOTHING_TO_REVISE

    def test_a_partial_cancel_leaves_the_rest_open(self, engine):
        order, _ = submit(engine, Side.SELL, "000660", 10, 150_000)
        engine.revise(
            account=ACCOUNT,
            orgno="06010",
            orgn_odno=order.odno,
            cancel=True,
            ord_dvsn="00",
            qty=3,
            price=0,
            now=NOW,
        )
        assert order.remaining == 7 and account(engine).orderable_qty("000660") == 13

    def test_a_modification_is_a_new_order_for_the_remainder(self, engine):
        order, _ = submit(engine, Side.SELL, "000660", 10, 150_000)
        new, notices = engine.revise(
            account=ACCOUNT,
            orgno="06010",
            orgn_odno=order.odno,
            cancel=False,
            ord_dvsn="00",
            qty=None,
            price=119_000,
            now=NOW,
        )
        assert (new.kind, new.orgn_odno, new.qty, new.price) == ("modify", order.odno, 10, 119_000)
        assert order.remaining == 0 and account(engine).orderable_qty("000660") == 10
        assert notices[0].rctf_cls == "1" and notices[0].odno == new.odno
        engine.step(now=NOW, pdno="000660", steps=0)
        assert new.filled_qty == 10  # 120,000 ≥ 119,000

    def test_no_short_selling(self, engine):
        submit(engine, Side.SELL, "000660", 15, 150_000)
        before = books(engine)
        for pdno, qty in (("000660", 6), ("005930", 1)):
            with pytest.raises(Refusal) as refused:
                submit(engine, Side.SELL, pdno, qty, 150_000 if pdno == "000660" else 71_000)
            assert refused.value.msg_cd == eng.MSG_SELL_OVER_ORDERABLE
            assert refused.value.notice.rejected and refused.value.notice.odno == ""
        assert books(engine) == before

    @pytest.mark.parametrize(
        ("pdno", "qty", "price", "code"),
        [
            ("005930", 1, 71_050, eng.MSG_PRICE_OFF_TICK),
            ("005930", 1, 92_400, eng.MSG_PRICE_OUT_OF_LIMITS),  # above 71,000 × 1.3
            ("005930", 1, 49_600, eng.MSG_PRICE_OUT_OF_LIMITS),
            ("005930", 0, 71_000, eng.MSG_QTY_INVALID),
            ("005930", -3, 71_000, eng.MSG_QTY_INVALID),
            ("999999", 1, 71_000, eng.MSG_PRODUCT_NOT_FOUND),
            ("005930", 1_000, 71_000, eng.MSG_INSUFFICIENT_CASH),
        ],
    )
    def test_refusals_change_nothing(self, engine, pdno, qty, price, code):
        before = books(engine)
        with pytest.raises(Refusal) as refused:
            submit(engine, Side.BUY, pdno, qty, price)
        assert refused.value.msg_cd == code
        assert books(engine) == before

    def test_limits_themselves_are_accepted(self, engine):
        for price in (49_700, 92_300):
            submit(engine, Side.BUY, "005930", 1, price)

    def test_market_closed(self, engine):
        engine.set_session(open_=False)
        with pytest.raises(Refusal) as refused:
            submit(engine, Side.BUY, "005930", 1)
        assert refused.value.msg_cd == eng.MSG_MARKET_CLOSED
        assert engine.step(now=NOW) == []

    def test_ioc_fills_what_it_can_and_cancels_the_rest(self, engine):
        engine.max_fill_per_step = 3
        order, _ = submit(engine, Side.BUY, "005930", 5, 72_000, ord_dvsn="11")
        notices = engine.step(now=NOW, pdno="005930", steps=0)
        assert (order.filled_qty, order.cancelled_qty, order.remaining) == (3, 2, 0)
        assert [n.acpt_yn for n in notices] == ["2", "3"]

    def test_fok_fills_all_or_nothing(self, engine):
        engine.max_fill_per_step = 3
        order, _ = submit(engine, Side.BUY, "005930", 5, 72_000, ord_dvsn="12")
        engine.step(now=NOW, pdno="005930", steps=0)
        assert (order.filled_qty, order.cancelled_qty) == (0, 5)
        assert account(engine).reserved_cash == 0


class TestPrices:
    def test_the_walk_stays_on_the_grid_within_the_limits(self):
        e = Engine(seed=3)
        e.set_price("000001", now=NOW, price=1_995, prev_close=1_995)  # 2,000: ticks 1 → 5
        e.set_price("000002", now=NOW, price=2_205, prev_close=1_700)  # one tick under the limit
        seen: dict[str, set[int]] = {"000001": set(), "000002": set()}
        for _ in range(2_000):
            for tick in e.step(now=NOW):
                lower, upper = e.symbols[tick.pdno].limits
                assert lower <= tick.price <= upper and krx.is_on_tick(tick.price)
                seen[tick.pdno].add(tick.price)
        assert min(seen["000001"]) < 2_000 < max(seen["000001"])
        assert max(seen["000002"]) == 2_210 == e.symbols["000002"].limits[1]

    def test_the_same_seed_replays_the_same_walk(self):
        def walk(seed):
            e = Engine(seed=seed)
            e.set_price("005930", now=NOW, price=71_000)
            return [t.price for t in e.step(now=NOW, steps=50)]

        assert walk(1) == walk(1) != walk(2)

    def test_a_gap_jumps_at_once_and_stops_at_the_limit(self, engine):
        (tick,) = [
            e for e in engine.gap("005930", Decimal("-10"), now=NOW) if isinstance(e, eng.Tick)
        ]
        assert tick.price == 63_900 and tick.sign == "5"
        engine.gap("005930", Decimal("80"), now=NOW)
        assert engine.symbols["005930"].price == 92_300
        assert engine.symbols["005930"].sign == "1"

    def test_a_scripted_path_comes_first_and_is_validated(self, engine):
        with pytest.raises(ValueError):
            engine.set_price("005930", now=NOW, path=[71_000, 71_050])
        engine.set_price("005930", now=NOW, path=[70_000, 69_900])
        assert [t.price for t in engine.step(now=NOW, pdno="005930", steps=2)] == [70_000, 69_900]

    def test_a_new_prev_close_starts_a_new_day(self, engine):
        engine.step(now=NOW, steps=3)
        engine.set_price("005930", now=NOW, price=80_000, prev_close=80_000)
        sym = engine.symbols["005930"]
        assert (sym.open, sym.high, sym.low, sym.volume) == (80_000, 80_000, 80_000, 0)
        assert sym.limits == (56_000, 104_000)


# --- invariants over random order streams ------------------------------------------------------
SYMBOLS = {"000001": 1_995, "000002": 49_950}  # both sit at a tick-band boundary
ACCOUNTS = [("50000001", "01"), ("50000002", "01"), ("50000003", "01")]


class BooksStayBalanced(RuleBasedStateMachine):
    """Buys, sells, market and limit, cancels, modifications, price steps and gaps across several
    accounts: cash, shares and order quantities always add up, and nothing goes negative.
    """

    @initialize(
        seed=st.integers(0, 2**16),
        cap=st.sampled_from([0, 1, 3, 7]),
        cash=st.lists(st.sampled_from([0, 30_000, 2_000_000, 50_000_000]), min_size=3, max_size=3),
        held=st.lists(st.integers(0, 40), min_size=6, max_size=6),
    )
    def setup(self, seed, cap, cash, held):
        self.engine = Engine(seed=seed, max_fill_per_step=cap)
        for pdno, price in SYMBOLS.items():
            self.engine.set_price(pdno, now=NOW, price=price)
        self.start = {}
        for i, key in enumerate(ACCOUNTS):
            holdings = [
                (pdno, held[2 * i + j], Fraction(price))
                for j, (pdno, price) in enumerate(SYMBOLS.items())
            ]
            self.engine.set_account(
                cano=key[0], acnt_prdt_cd=key[1], cash=cash[i], hts_id=f"h{i}", holdings=holdings
            )
            self.start[key] = (cash[i], {pdno: qty for pdno, qty, _ in holdings})

    def _try(self, action):
        before = books(self.engine)
        try:
            return action()
        except Refusal:
            assert books(self.engine) == before, "a refusal changed the books"
            return None

    @rule(
        who=st.sampled_from(ACCOUNTS),
        pdno=st.sampled_from(sorted(SYMBOLS)),
        side=st.sampled_from(list(Side)),
        ord_dvsn=st.sampled_from(["00", "01", "03", "11", "12", "13", "99"]),
        qty=st.integers(-1, 30),
        ticks=st.integers(-60, 60),
        raw=st.booleans(),
    )
    def submit(self, who, pdno, side, ord_dvsn, qty, ticks, raw):
        sym = self.engine.symbols[pdno]
        if raw:  # anything near the price: often off the grid or beyond the limits
            price = sym.price + ticks * 37
        else:
            price = sym.price
            for _ in range(abs(ticks)):
                price = krx.round_to_tick(
                    price + (1 if ticks > 0 else -1), direction="up" if ticks > 0 else "down"
                )
        self._try(
            lambda: self.engine.submit(
                account=who, pdno=pdno, side=side, ord_dvsn=ord_dvsn, qty=qty, price=price, now=NOW
            )
        )

    @precondition(lambda self: self.engine.orders)
    @rule(
        data=st.data(),
        cancel=st.booleans(),
        all_qty=st.booleans(),
        qty=st.integers(-1, 30),
        ticks=st.integers(-5, 5),
        ord_dvsn=st.sampled_from(["00", "01"]),
    )
    def revise(self, data, cancel, all_qty, qty, ticks, ord_dvsn):
        order = data.draw(st.sampled_from(list(self.engine.orders.values())))
        sym = self.engine.symbols[order.pdno]
        price = sym.price
        for _ in range(abs(ticks)):
            price = krx.round_to_tick(
                price + (1 if ticks > 0 else -1), direction="up" if ticks > 0 else "down"
            )
        self._try(
            lambda: self.engine.revise(
                account=order.account,
                orgno=order.orgno,
                orgn_odno=order.odno,
                cancel=cancel,
                ord_dvsn=ord_dvsn,
                qty=None if all_qty else qty,
                price=price,
                now=NOW,
            )
        )

    @rule(pdno=st.none() | st.sampled_from(sorted(SYMBOLS)), steps=st.integers(0, 4))
    def step(self, pdno, steps):
        self.engine.step(now=NOW, pdno=pdno, steps=steps)

    @rule(pdno=st.sampled_from(sorted(SYMBOLS)), pct=st.integers(-40, 40))
    def gap(self, pdno, pct):
        self.engine.gap(pdno, Decimal(pct), now=NOW)

    @rule(open_=st.booleans())
    def session(self, open_):
        self.engine.set_session(open_=open_)

    @invariant()
    def cash_and_shares_add_up(self):
        for key, (start_cash, start_held) in self.start.items():
            acct = self.engine.accounts[key]
            mine = [f for f in self.engine.fills if f.account == key]
            bought = sum(f.qty * f.price for f in mine if f.side is Side.BUY)
            sold = sum(f.qty * f.price for f in mine if f.side is Side.SELL)
            assert acct.cash == start_cash - bought + sold
            assert acct.cash >= 0 and acct.cash - acct.reserved_cash >= 0
            for pdno in SYMBOLS:
                delta = sum(f.qty if f.side is Side.BUY else -f.qty for f in mine if f.pdno == pdno)
                qty = acct.holdings[pdno].qty
                assert qty == start_held[pdno] + delta
                assert qty >= 0 and acct.orderable_qty(pdno) >= 0

    @invariant()
    def no_order_is_overfilled(self):
        filled: dict[str, tuple[int, int]] = {}
        for f in self.engine.fills:
            qty, amount = filled.get(f.odno, (0, 0))
            filled[f.odno] = (qty + f.qty, amount + f.qty * f.price)
            order = self.engine.orders[f.odno]
            assert krx.is_on_tick(f.price)
            if not order.market:
                assert f.price <= order.price if f.side is Side.BUY else f.price >= order.price
        for order in self.engine.orders.values():
            assert 0 <= order.filled_qty <= order.qty
            assert order.remaining >= 0
            assert (
                order.filled_qty + order.cancelled_qty + order.revised_qty + order.rejected_qty
                <= order.qty
            )
            assert filled.get(order.odno, (0, 0)) == (order.filled_qty, order.filled_amount)
            assert (order.remaining > 0) == (
                order.odno in self.engine.accounts[order.account].open_orders
            )


BooksStayBalanced.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_books_stay_balanced = BooksStayBalanced.TestCase


# --- venues: KRX and Nextrade ------------------------------------------------------------------


def sell(e: Engine, venue: str, qty: int, price: int):
    return e.submit(
        account=ACCOUNT,
        pdno="000660",
        side=Side.SELL,
        ord_dvsn="00",
        qty=qty,
        price=price,
        now=NOW,
        venue=venue,
    )


def test_after_krx_closes_only_nextrade_takes_orders_and_trades(engine):
    engine.set_session(open_=False)
    engine.nxt_open = True  # Nextrade's after-market
    with pytest.raises(Refusal) as refused:
        sell(engine, "KRX", 5, 119_000)
    assert refused.value.msg_cd == eng.MSG_MARKET_CLOSED
    order, _ = sell(engine, "NXT", 5, 119_000)
    assert order.routed == "NXT"
    events = engine.set_price("000660", now=NOW, price=119_500)
    ticks = [e for e in events if isinstance(e, eng.Tick)]
    assert [t.venue for t in ticks] == ["NXT"]
    assert order.filled_qty == 5 and account(engine).holdings["000660"].qty == 15


def test_sor_goes_where_an_order_trades_now(engine):
    engine.nxt_open = True
    in_session, _ = sell(engine, "SOR", 1, 150_000)
    assert in_session.routed == "KRX"  # both trade, one price: KRX
    engine.set_session(open_=False)
    after_close, _ = sell(engine, "SOR", 1, 150_000)
    assert (after_close.venue, after_close.routed) == ("SOR", "NXT")
    engine.nxt_open = False
    with pytest.raises(Refusal):
        sell(engine, "SOR", 1, 150_000)


def test_krx_orders_wait_while_only_nextrade_trades_and_each_venue_ends_its_own(engine):
    krx_order, _ = sell(engine, "KRX", 4, 121_000)
    engine.nxt_open = True
    nxt_order, _ = sell(engine, "NXT", 4, 121_000)
    engine.set_session(open_=False)  # KRX closed; Nextrade's after-market trades
    engine.set_price("000660", now=NOW, price=121_500)
    assert (krx_order.filled_qty, nxt_order.filled_qty) == (0, 4)
    nxt_late, _ = sell(engine, "NXT", 2, 125_000)
    assert engine.end_day("KRX") == 1
    assert krx_order.remaining == 0 and krx_order.cancelled_qty == 4
    assert nxt_late.remaining == 2  # working on Nextrade until its close
    assert engine.end_day("NXT") == 1 and nxt_late.cancelled_qty == 2


# --- volatility interruptions ------------------------------------------------------------------


def test_a_jump_past_the_dynamic_threshold_interrupts_trading_for_a_call_auction(engine):
    engine.vi = True
    engine.set_price("000660", now=NOW, price=120_000)  # the day's first trade
    resting, _ = sell(engine, "KRX", 5, 112_000)
    events = engine.set_price("000660", now=NOW, price=112_000)  # -6.7 % from 120,000
    [expected] = events
    assert expected.expected and expected.volume == 0 and expected.vi_reference == 120_000
    sym = engine.symbols["000660"]
    assert sym.vi_kind == "dynamic" and sym.vi_until == NOW + dt.timedelta(seconds=120)
    assert resting.filled_qty == 0  # nothing trades in the auction
    assert engine.step(now=NOW, pdno="000660") == []
    assert engine.vi_due(NOW + dt.timedelta(seconds=119)) == []
    ended = engine.vi_due(NOW + dt.timedelta(seconds=120))
    assert [type(e).__name__ for e in ended] == ["Tick", "Notice"]
    assert ended[0].price == 112_000 and not ended[0].expected
    assert resting.filled_qty == 5 and sym.vi_until is None and sym.vi_reference == 112_000


def test_moves_inside_the_thresholds_trade_and_a_static_vi_counts_from_its_base(engine):
    engine.vi = True
    engine.set_price("000660", now=NOW, price=120_000)
    for price in (115_000, 110_500):  # -4.2 %, then -3.9 %: each inside 6 %
        [tick] = engine.set_price("000660", now=NOW, price=price)
        assert not tick.expected
    [expected] = engine.set_price("000660", now=NOW, price=108_000)  # -10 % from 120,000
    assert expected.expected and engine.symbols["000660"].vi_kind == "static"


def test_no_vi_while_they_are_off_or_outside_continuous_trading(engine):
    engine.vi = True
    [opening] = engine.set_price("000660", now=NOW, price=112_000)  # the first trade: -6.7 %
    assert not opening.expected  # the opening auction's price: no dynamic VI
    engine.vi = False
    assert not engine.set_price("000660", now=NOW, price=100_000)[0].expected  # off
    engine.vi = True
    engine.set_session(open_=False, auction=True)
    assert engine.set_price("000660", now=NOW, price=120_000) == []  # an auction's price
    assert engine.symbols["000660"].vi_until is None
