"""The simulator's books and matching engine: accounts, orders, fills and per-symbol prices.

Pure: no I/O, no Django, no clock of its own. Every call that can change the books takes `now`
(an aware datetime, Asia/Seoul) and returns the events it caused — trade prints and order
notices — for the server to push. Randomness comes only from a generator seeded at construction,
so the same seed and the same calls replay the same session.

Money and quantities are ints (KRW, shares). An average purchase price is kept as an exact
Fraction and shown as a Decimal. There are no fees or taxes (KIS charges both: UNCONFIRMED rates,
left out so that cash + proceeds − costs balances exactly).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from fractions import Fraction

from kis import protocol
from market import krx

# --- refusals ---------------------------------------------------------------------------------
# Market closed and unknown product are codes KIS is known to send (KIS.md). For every other
# refusal KIS's code is UNCONFIRMED: those sit in the block APBK99xx, which KIS is not known to
# use, so nobody mistakes them for KIS's own. A client must treat them as a plain refusal.
MSG_MARKET_CLOSED = protocol.MSG_MARKET_CLOSED
MSG_NOT_MARKET_DAY = protocol.MSG_NOT_MARKET_DAY
MSG_PRODUCT_NOT_FOUND = protocol.MSG_PRODUCT_NOT_FOUND
MSG_SELL_OVER_ORDERABLE = "APBK9901"  # UNCONFIRMED: no short selling, KIS refuses the order
MSG_INSUFFICIENT_CASH = "APBK9902"  # UNCONFIRMED
MSG_PRICE_OFF_TICK = "APBK9903"  # UNCONFIRMED
MSG_PRICE_OUT_OF_LIMITS = "APBK9904"  # UNCONFIRMED
MSG_QTY_INVALID = "APBK9905"  # UNCONFIRMED
MSG_ORDER_NOT_FOUND = "APBK9906"  # UNCONFIRMED
MSG_NOTHING_TO_REVISE = "APBK9907"  # UNCONFIRMED: already filled or cancelled
MSG_ORD_DVSN_UNSUPPORTED = "APBK9908"  # UNCONFIRMED
MSG_ORGNO_MISMATCH = "APBK9910"  # UNCONFIRMED: KRX_FWDG_ORD_ORGNO is not the order's

REFUSAL_TEXT = {
    MSG_MARKET_CLOSED: "장운영시간이 아닙니다.(주문불가)",
    MSG_NOT_MARKET_DAY: "장운영일자가 주문일과 상이합니다.",
    MSG_PRODUCT_NOT_FOUND: "해당 종목정보가 없습니다.",
    MSG_SELL_OVER_ORDERABLE: "주문가능수량을 초과하였습니다.",
    MSG_INSUFFICIENT_CASH: "주문가능금액을 초과하였습니다.",
    MSG_PRICE_OFF_TICK: "호가단위가 올바르지 않습니다.",
    MSG_PRICE_OUT_OF_LIMITS: "주문가격이 상하한가 범위를 벗어났습니다.",
    MSG_QTY_INVALID: "주문수량이 올바르지 않습니다.",
    MSG_ORDER_NOT_FOUND: "원주문번호가 존재하지 않습니다.",
    MSG_NOTHING_TO_REVISE: "정정/취소 가능수량이 없습니다.",
    MSG_ORD_DVSN_UNSUPPORTED: "지원하지 않는 주문구분입니다.",
    MSG_ORGNO_MISMATCH: "주문조직번호가 올바르지 않습니다.",
}

DEFAULT_ORGNO = "06010"  # KRX_FWDG_ORD_ORGNO as KIS's sample shows it
AVG_PLACES = Decimal("0.0001")  # pchs_avg_pric carries four decimals


class Side(str, Enum):
    """SELN_BYOV_CLS and SLL_BUY_DVSN_CD share these codes."""

    SELL = protocol.SELN_BYOV_SELL
    BUY = protocol.SELN_BYOV_BUY


@dataclass(frozen=True)
class OrderType:
    # "limit" fills at the order's price or better; "market" at whatever trades next; "best"
    # (최유리/최우선) takes the current price as its limit on acceptance, since the simulator
    # keeps one price per symbol rather than a book.
    pricing: str
    tif: str  # DAY, IOC (fill what you can, cancel the rest), FOK (all at once or nothing)


ORDER_TYPES = {
    "00": OrderType("limit", "DAY"),
    "01": OrderType("market", "DAY"),
    "02": OrderType("limit", "DAY"),  # conditional limit: becomes market at the close
    "03": OrderType("best", "DAY"),
    "04": OrderType("best", "DAY"),
    "11": OrderType("limit", "IOC"),
    "12": OrderType("limit", "FOK"),
    "13": OrderType("market", "IOC"),
    "14": OrderType("market", "FOK"),
    "15": OrderType("best", "IOC"),
    "16": OrderType("best", "FOK"),
}

AccountKey = tuple[str, str]  # (CANO, ACNT_PRDT_CD)


class Refusal(Exception):
    """KIS refused the request. Nothing in the books changed."""

    def __init__(self, msg_cd: str, *, notice: Notice | None = None, detail: str = "") -> None:
        self.msg_cd = msg_cd
        self.msg1 = REFUSAL_TEXT.get(msg_cd, "주문이 거부되었습니다.")
        self.notice = notice
        super().__init__(f"{msg_cd} {self.msg1}" + (f" ({detail})" if detail else ""))


class UnknownAccount(LookupError):
    pass


# --- events -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tick:
    """One trade print of a symbol, as H0STCNT0 reports it."""

    pdno: str
    date: str  # YYYYMMDD
    time: str  # HHMMSS
    price: int
    prev_close: int
    open: int
    high: int
    low: int
    upper_limit: int
    lower_limit: int
    tick: int
    volume: int
    cumulative_volume: int
    cumulative_amount: int
    halted: bool
    sign: str
    open_time: str
    high_time: str
    low_time: str
    venue: str = "KRX"  # where it printed: KRX's trade feed (H0STCNT0) or Nextrade's (H0NXCNT0)
    # A volatility interruption's expected price, not a trade: KIS's HOUR_CLS_CODE "C" (after
    # 09:00, an expected price, VI triggered). `vi_reference` is the static VI's base price.
    expected: bool = False
    vi_reference: int = 0


@dataclass(frozen=True)
class Notice:
    """One H0STCNI0/H0STCNI9 record: an accept, modify, cancel, reject or fill of an order."""

    hts_id: str
    cano: str
    acnt_prdt_cd: str
    account_name: str
    odno: str
    orgn_odno: str
    side: Side
    rctf_cls: str  # "0" new, "1" modify, "2" cancel (UNCONFIRMED reading of 접수구분)
    ord_dvsn: str
    pdno: str
    name: str
    qty: int  # the fill's qty, or the order's on a non-fill notice
    price: int  # the fill's price, or the order's on a non-fill notice
    time: str
    rejected: bool
    filled: bool
    acpt_yn: str  # "1" accepted, "2" confirmed, "3" cancelled (IOC/FOK expiry)
    order_qty: int
    order_price: int
    orgno: str


# --- books ------------------------------------------------------------------------------------
@dataclass
class Symbol:
    pdno: str
    name: str
    prev_close: int
    price: int
    etf: bool = False
    halted: bool = False
    open: int = 0
    high: int = 0
    low: int = 0
    open_time: str = ""
    high_time: str = ""
    low_time: str = ""
    volume: int = 0
    amount: int = 0
    last_volume: int = 0
    path: deque[int] = field(default_factory=deque)
    # A volatility interruption under way: its call auction ends at vi_until; its kind is
    # "static" or "dynamic". vi_reference: the static VI's base (the day's first trade, then
    # each VI's single price).
    vi_until: datetime | None = None
    vi_kind: str = ""
    vi_reference: int = 0

    @property
    def limits(self) -> tuple[int, int]:
        return krx.price_limits(self.prev_close, etf=self.etf)

    @property
    def tick(self) -> int:
        return krx.tick_size(self.price, etf=self.etf)

    @property
    def sign(self) -> str:
        """prdy_vrss_sign: 1 upper limit, 2 up, 3 flat, 4 lower limit, 5 down."""
        lower, upper = self.limits
        if self.price == upper:
            return "1"
        if self.price == lower:
            return "4"
        if self.price > self.prev_close:
            return "2"
        return "5" if self.price < self.prev_close else "3"

    def check_price(self, price: int) -> None:
        lower, upper = self.limits
        if not lower <= price <= upper:
            raise ValueError(f"{price} lies outside {self.pdno}'s limits {lower}–{upper}")
        if not krx.is_on_tick(price, etf=self.etf):
            raise ValueError(f"{price} is not on the tick grid")


@dataclass
class Holding:
    qty: int = 0
    avg: Fraction = Fraction(0)
    bought_today: int = 0
    sold_today: int = 0

    @property
    def avg_price(self) -> Decimal:
        exact = Decimal(self.avg.numerator) / Decimal(self.avg.denominator)
        return exact.quantize(AVG_PLACES, rounding=ROUND_HALF_UP)


@dataclass
class Account:
    cano: str
    acnt_prdt_cd: str
    hts_id: str
    name: str
    deposit: int  # start-of-day deposit (dnca_tot_amt): trades settle T+2, after the sim's day
    cash: int  # deposit − today's buys + today's sells: what a buy may spend
    holdings: dict[str, Holding] = field(default_factory=dict)
    open_orders: dict[str, Order] = field(default_factory=dict)
    bought_amount: int = 0
    sold_amount: int = 0

    @property
    def key(self) -> AccountKey:
        return self.cano, self.acnt_prdt_cd

    @property
    def reserved_cash(self) -> int:
        return sum(
            o.remaining * o.reserve_price for o in self.open_orders.values() if o.side is Side.BUY
        )

    def orderable_qty(self, pdno: str) -> int:
        holding = self.holdings.get(pdno)
        held = holding.qty if holding else 0
        selling = sum(
            o.remaining for o in self.open_orders.values() if o.side is Side.SELL and o.pdno == pdno
        )
        return held - selling


@dataclass
class Order:
    odno: str
    orgno: str
    account: AccountKey
    pdno: str
    side: Side
    ord_dvsn: str
    qty: int
    price: int  # the limit; 0 for a market order
    reserve_price: int  # KRW per share a buy holds back: its limit, or the upper limit
    ord_dt: str
    ord_tmd: str
    kind: str = "new"  # new, modify (a re-priced remainder) or cancel (a cancel request)
    orgn_odno: str = ""
    market: bool = False
    tif: str = "DAY"
    venue: str = "KRX"  # EXCG_ID_DVSN_CD as sent: KRX, NXT or SOR
    routed: str = "KRX"  # the venue it trades on: its own, or where SOR sent it (Engine.route)
    filled_qty: int = 0
    filled_amount: int = 0
    cancelled_qty: int = 0  # cancelled, or expired (IOC/FOK)
    revised_qty: int = 0  # moved to a modification order
    rejected_qty: int = 0

    @property
    def remaining(self) -> int:
        if self.kind == "cancel":
            return 0
        return (
            self.qty - self.filled_qty - self.cancelled_qty - self.revised_qty - self.rejected_qty
        )


@dataclass(frozen=True)
class Fill:
    seq: int
    odno: str
    account: AccountKey
    pdno: str
    side: Side
    qty: int
    price: int
    date: str
    time: str


def _ymd(now: datetime) -> str:
    return now.strftime("%Y%m%d")


def _hms(now: datetime) -> str:
    return now.strftime("%H%M%S")


class Engine:
    """Accounts, orders and prices of one simulated trading day."""

    def __init__(
        self,
        *,
        seed: int = 0,
        max_fill_per_step: int = 0,
        orgno: str = DEFAULT_ORGNO,
        first_odno: int = 1,
        reject_notices: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.max_fill_per_step = max_fill_per_step  # 0: no cap
        self.orgno = orgno
        # UNCONFIRMED whether KIS sends an H0STCNI0 reject notice for an order its API refuses;
        # the simulator does (with an empty ODER_NO, as no order number was given) unless told not.
        self.reject_notices = reject_notices
        self.session_open = True  # KRX's continuous trading: prices print and orders match
        # Nextrade's continuous market (its pre-, main and after-market): orders routed there
        # are taken and match on the symbol's price. None: it follows KRX's session (sessions
        # set by hand: one market for every venue); the exchange's day (day.py) sets it.
        self.nxt_open: bool | None = None
        # KRX's volatility interruptions (docs/market-day.md gives the sources): a trade that
        # would print `vi_dynamic_pct` or more away from the last trade, or `vi_static_pct` or
        # more from the static base, is not printed; the symbol goes into a call auction of
        # `vi_seconds` and then trades at one price. Off by default (a scenario turns it on).
        self.vi = False
        self.vi_dynamic_pct = Decimal(6)  # 3 % for KOSPI 200 stocks, 6 % for others
        self.vi_static_pct = Decimal(10)
        self.vi_seconds = 120
        # A call auction (KRX's opening 08:30–09:00 and closing 15:20–15:30): orders are taken
        # but nothing trades; prices set are the expected price; its end matches every order
        # that crosses at one price (set_session).
        self.auction = False
        # A day the exchange is closed (a holiday): orders are refused as not a market day.
        self.market_day = True
        self.symbols: dict[str, Symbol] = {}
        self.accounts: dict[AccountKey, Account] = {}
        self.orders: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self._open_by_symbol: dict[str, dict[str, Order]] = {}
        self._next_odno = first_odno

    # --- venues -------------------------------------------------------------------------------
    def trading(self, venue: str) -> bool:
        """Whether orders on `venue` (KRX or NXT) match as prices print now."""
        if venue == protocol.EXCG_NXT and self.nxt_open is not None:
            return self.nxt_open
        return self.session_open

    def accepting(self, venue: str) -> bool:
        """Whether `venue` (KRX or NXT) takes an order now (in KRX's auctions too)."""
        if venue == protocol.EXCG_NXT and self.nxt_open is not None:
            return self.nxt_open
        return self.session_open or self.auction

    def route(self, venue: str) -> str:
        """The venue an order sent to `venue` trades on. SOR: the venue with the better book
        for it; the simulator keeps one price per symbol, so both quote alike and SOR takes
        KRX while KRX takes orders, else Nextrade. (KIS's rule for a tie is UNCONFIRMED.)"""
        if venue != protocol.EXCG_SOR:
            return venue
        if self.accepting(protocol.EXCG_KRX) or not self.accepting(protocol.EXCG_NXT):
            return protocol.EXCG_KRX
        return protocol.EXCG_NXT

    def _any_trading(self) -> bool:
        return self.session_open or bool(self.nxt_open)

    # --- set-up -------------------------------------------------------------------------------
    def set_account(
        self,
        *,
        cano: str,
        acnt_prdt_cd: str,
        cash: int,
        hts_id: str,
        name: str = "",
        holdings: Iterable[tuple[str, int, Fraction]] = (),
    ) -> Account:
        """Create or replace an account. Replacing cancels its open orders without notices."""
        if cash < 0:
            raise ValueError("cash cannot be negative")
        key = (cano, acnt_prdt_cd)
        old = self.accounts.get(key)
        if old is not None:
            for order in list(old.open_orders.values()):
                order.cancelled_qty += order.remaining
                self._close(order)
        account = Account(
            cano=cano,
            acnt_prdt_cd=acnt_prdt_cd,
            hts_id=hts_id,
            name=name or hts_id,
            deposit=cash,
            cash=cash,
        )
        for pdno, qty, avg in holdings:
            if qty < 0 or avg < 0:
                raise ValueError(f"holding of {pdno} cannot be negative")
            account.holdings[pdno] = Holding(qty=qty, avg=Fraction(avg) if qty else Fraction(0))
        self.accounts[key] = account
        return account

    def set_price(
        self,
        pdno: str,
        *,
        now: datetime,
        price: int | None = None,
        prev_close: int | None = None,
        path: Iterable[int] | None = None,
        name: str | None = None,
        etf: bool | None = None,
        halted: bool | None = None,
    ) -> list[Tick | Notice]:
        """Create a symbol or move it. A new prev_close starts a new day for the symbol; a price
        is a trade print (while the session is open; in an auction, the expected price) and
        matches orders. Invalid input raises ValueError and changes nothing.
        """
        sym = self.symbols.get(pdno)
        if sym is None:
            if price is None:
                raise ValueError(f"{pdno} is new: give its price")
            candidate = Symbol(
                pdno=pdno,
                name=name or pdno,
                prev_close=prev_close or price,
                price=price,
                etf=bool(etf),
            )
        else:
            candidate = replace(sym, path=deque(sym.path))
            if name:
                candidate.name = name
            if etf is not None:
                candidate.etf = etf
            if prev_close is not None:
                candidate.prev_close = prev_close
        if candidate.prev_close <= 0:
            raise ValueError("prev_close must be positive")
        if halted is not None:
            candidate.halted = halted
        new_price = candidate.price if price is None else price
        candidate.check_price(new_price)
        steps = list(path) if path is not None else None
        for p in steps or ():
            candidate.check_price(p)

        fresh_day = sym is None or (prev_close is not None and prev_close != sym.prev_close)
        if steps is not None:
            candidate.path = deque(steps)
        self.symbols[pdno] = candidate
        if fresh_day:
            candidate.vi_until, candidate.vi_kind, candidate.vi_reference = None, "", new_price
            candidate.price = new_price
            candidate.open = candidate.high = candidate.low = new_price
            candidate.open_time = candidate.high_time = candidate.low_time = _hms(now)
            candidate.volume = candidate.amount = candidate.last_volume = 0
            return []
        if price is None or not self._any_trading():
            candidate.price = new_price
            return []
        interrupted = self._vi_check(candidate, new_price, now)
        if interrupted is not None:
            return [interrupted]
        return [self._trade(candidate, new_price, now)] + self._match(candidate, now)

    # --- volatility interruptions -------------------------------------------------------------
    def _vi_check(self, sym: Symbol, price: int, now: datetime) -> Tick | None:
        """In a VI, or a price that triggers one in KRX's continuous trading: the expected
        price it becomes (nothing trades, nothing matches); None when `price` trades."""
        if sym.vi_until is None:
            # The day's first trade is the opening auction's (no dynamic VI on it).
            if not (self.vi and self.session_open and sym.volume):
                return None
            base = sym.vi_reference or sym.price
            moved = abs(Fraction(price - sym.price, sym.price)) * 100
            away = abs(Fraction(price - base, base)) * 100
            if away >= self.vi_static_pct:
                sym.vi_kind = "static"
            elif moved >= self.vi_dynamic_pct:
                sym.vi_kind = "dynamic"
            else:
                return None
            sym.vi_reference = base
            sym.vi_until = now + timedelta(seconds=self.vi_seconds)
        sym.price = price
        return self._print(sym, now, volume=0, expected=True)

    def vi_due(self, now: datetime) -> list[Tick | Notice]:
        """End each VI whose call auction is over at `now`: one trade at its price, the orders
        that cross it filled there, and that price the static VI's new base."""
        events: list[Tick | Notice] = []
        for pdno in sorted(self.symbols):
            sym = self.symbols[pdno]
            if sym.vi_until is None or sym.vi_until > now:
                continue
            sym.vi_until, sym.vi_kind, sym.vi_reference = None, "", sym.price
            if self._any_trading() and not sym.halted:
                events.append(self._trade(sym, sym.price, now))
                events += self._match(sym, now)
        return events

    def gap(self, pdno: str, pct: Decimal, *, now: datetime) -> list[Tick | Notice]:
        """Jump the price by `pct` percent at once, onto the tick grid and within the limits."""
        sym = self._symbol_or_error(pdno)
        target = Fraction(sym.price) * (100 + Fraction(pct)) / 100
        up = target >= sym.price
        raw = int(target) if up else -int(-target)  # floor going up, ceil going down
        lower, upper = sym.limits
        raw = min(max(raw, lower), upper)
        price = krx.round_to_tick(raw, direction="down" if up else "up", etf=sym.etf)
        price = min(max(price, lower), upper)
        return self.set_price(pdno, now=now, price=price)

    def end_day(self, venue: str | None = None) -> int:
        """A venue's close (None: every venue's): every order still working on it ends, its
        remainder cancelled (day orders do not carry over; whether KIS sends a notice for it is
        not documented, so none is sent). Returns how many orders ended."""
        ended = 0
        for book in list(self._open_by_symbol.values()):
            for order in list(book.values()):
                if venue is not None and order.routed != venue:
                    continue
                order.cancelled_qty += order.remaining
                self._close(order)
                ended += 1
        return ended

    def set_session(
        self, *, open_: bool, auction: bool = False, now: datetime | None = None
    ) -> list[Tick | Notice]:
        """Continuous trading (`open_`), a call auction (`auction`, not open) or closed. An
        auction that ends matches at once: each symbol with open orders prints one trade at
        its price (the auction's single price) and every order that crosses it fills there;
        then trading goes on (`open_`) or the market closes."""
        if auction and open_:
            raise ValueError("a session is either in continuous trading or in an auction")
        events: list[Tick | Notice] = []
        if self.auction and not auction:
            if now is None:
                raise ValueError("an auction's end needs the time it ends at")
            for pdno in sorted(self._open_by_symbol):
                sym = self.symbols[pdno]
                if self._open_by_symbol[pdno] and not sym.halted:
                    events.append(self._trade(sym, sym.price, now))
                    events.extend(self._match(sym, now, venues={protocol.EXCG_KRX}))
        self.session_open, self.auction = open_, auction
        return events

    # --- orders -------------------------------------------------------------------------------
    def submit(
        self,
        *,
        account: AccountKey,
        pdno: str,
        side: Side,
        ord_dvsn: str,
        qty: int,
        price: int,
        now: datetime,
        venue: str = "KRX",
    ) -> tuple[Order, list[Notice]]:
        acct = self.account(account)
        try:
            order_type = ORDER_TYPES.get(ord_dvsn)
            if order_type is None:
                raise Refusal(MSG_ORD_DVSN_UNSUPPORTED, detail=ord_dvsn)
            sym = self.symbols.get(pdno)
            if sym is None:
                raise Refusal(MSG_PRODUCT_NOT_FOUND, detail=pdno)
            if not self.market_day:
                raise Refusal(MSG_NOT_MARKET_DAY)
            routed = self.route(venue)
            if not self.accepting(routed):
                raise Refusal(MSG_MARKET_CLOSED)
            if qty <= 0:
                raise Refusal(MSG_QTY_INVALID, detail=str(qty))
            limit, reserve = self._pricing(sym, order_type, price)
            if side is Side.BUY:
                free = acct.cash - acct.reserved_cash
                if qty * reserve > free:
                    raise Refusal(
                        MSG_INSUFFICIENT_CASH, detail=f"needs {qty * reserve}, {free} free"
                    )
            elif qty > acct.orderable_qty(pdno):
                raise Refusal(
                    MSG_SELL_OVER_ORDERABLE, detail=f"{qty} > orderable {acct.orderable_qty(pdno)}"
                )
        except Refusal as refusal:
            refusal.notice = self._reject_notice(acct, pdno, side, ord_dvsn, qty, price, now)
            raise
        order = Order(
            odno=self._new_odno(),
            orgno=self.orgno,
            account=acct.key,
            pdno=pdno,
            side=side,
            ord_dvsn=ord_dvsn,
            qty=qty,
            price=limit,
            reserve_price=reserve,
            ord_dt=_ymd(now),
            ord_tmd=_hms(now),
            market=order_type.pricing == "market",
            tif=order_type.tif,
            venue=venue,
            routed=routed,
        )
        self._open(order)
        return order, [self._notice(order, now=now, qty=qty, price=limit, acpt_yn="1")]

    def revise(
        self,
        *,
        account: AccountKey,
        orgno: str,
        orgn_odno: str,
        cancel: bool,
        ord_dvsn: str,
        qty: int | None,
        price: int,
        now: datetime,
    ) -> tuple[Order, list[Notice]]:
        """Cancel (cancel=True) or modify `qty` of an order's remainder (all of it when None).
        A modification becomes a new order with its own ODNO and ORGN_ODNO = the original, as at
        KIS; so does a cancel request. Price and type apply to modifications only.
        """
        acct = self.account(account)
        original = self.orders.get(orgn_odno)
        if original is None or original.account != acct.key or original.kind == "cancel":
            raise Refusal(MSG_ORDER_NOT_FOUND, detail=orgn_odno)
        if orgno != original.orgno:
            raise Refusal(MSG_ORGNO_MISMATCH, detail=orgno)
        if original.remaining == 0:
            raise Refusal(MSG_NOTHING_TO_REVISE, detail=orgn_odno)
        moved = original.remaining if qty is None else qty
        if not 0 < moved <= original.remaining:
            raise Refusal(MSG_QTY_INVALID, detail=f"{moved} of {original.remaining} remaining")
        if cancel:
            return self._cancel(original, moved, now)
        if not self.accepting(original.routed):
            raise Refusal(MSG_MARKET_CLOSED)
        order_type = ORDER_TYPES.get(ord_dvsn)
        if order_type is None:
            raise Refusal(MSG_ORD_DVSN_UNSUPPORTED, detail=ord_dvsn)
        sym = self.symbols[original.pdno]
        limit, reserve = self._pricing(sym, order_type, price)
        if original.side is Side.BUY:
            free = acct.cash - acct.reserved_cash + moved * original.reserve_price
            if moved * reserve > free:
                raise Refusal(MSG_INSUFFICIENT_CASH, detail=f"needs {moved * reserve}, {free} free")
        original.revised_qty += moved
        if original.remaining == 0:
            self._close(original)
        order = Order(
            odno=self._new_odno(),
            orgno=self.orgno,
            account=acct.key,
            pdno=original.pdno,
            side=original.side,
            ord_dvsn=ord_dvsn,
            qty=moved,
            price=limit,
            reserve_price=reserve,
            ord_dt=_ymd(now),
            ord_tmd=_hms(now),
            kind="modify",
            orgn_odno=original.odno,
            market=order_type.pricing == "market",
            tif=order_type.tif,
            venue=original.venue,
            routed=original.routed,
        )
        self._open(order)
        return order, [self._notice(order, now=now, qty=moved, price=limit, acpt_yn="2")]

    def _cancel(self, original: Order, qty: int, now: datetime) -> tuple[Order, list[Notice]]:
        original.cancelled_qty += qty
        if original.remaining == 0:
            self._close(original)
        record = Order(
            odno=self._new_odno(),
            orgno=self.orgno,
            account=original.account,
            pdno=original.pdno,
            side=original.side,
            ord_dvsn=original.ord_dvsn,
            qty=qty,
            price=original.price,
            reserve_price=0,
            ord_dt=_ymd(now),
            ord_tmd=_hms(now),
            kind="cancel",
            orgn_odno=original.odno,
            market=original.market,
            venue=original.venue,
            routed=original.routed,
        )
        self.orders[record.odno] = record
        return record, [self._notice(record, now=now, qty=qty, price=original.price, acpt_yn="2")]

    def _pricing(self, sym: Symbol, order_type: OrderType, price: int) -> tuple[int, int]:
        """(limit price, KRW per share a buy reserves) for an order on `sym`."""
        lower, upper = sym.limits
        if order_type.pricing == "market":
            # KIS reserves a market buy at the upper limit and settles at the fill price.
            return 0, upper
        if order_type.pricing == "best":
            return sym.price, sym.price
        if not lower <= price <= upper:
            raise Refusal(MSG_PRICE_OUT_OF_LIMITS, detail=f"{price} not in {lower}–{upper}")
        if not krx.is_on_tick(price, etf=sym.etf):
            raise Refusal(MSG_PRICE_OFF_TICK, detail=str(price))
        return price, price

    # --- price path and matching --------------------------------------------------------------
    def step(
        self, *, now: datetime, pdno: str | None = None, steps: int = 1
    ) -> list[Tick | Notice]:
        """Advance prices `steps` trades (the scripted path first, then a random walk on the tick
        grid within the limits) and match after each. steps=0 matches at the current prices.
        Nothing trades while no venue trades (KRX closed or in an auction, Nextrade closed).
        """
        if steps < 0:
            raise ValueError("steps cannot be negative")
        symbols = (
            [self._symbol_or_error(pdno)]
            if pdno
            else [self.symbols[p] for p in sorted(self.symbols)]
        )
        if not self._any_trading():
            return []
        events: list[Tick | Notice] = []
        if steps == 0:
            for sym in symbols:
                events += self._match(sym, now)
        for _ in range(steps):
            for sym in symbols:
                if sym.halted or sym.vi_until is not None:
                    continue
                events.append(self._trade(sym, self._next_price(sym), now))
                events += self._match(sym, now)
        return events

    def _next_price(self, sym: Symbol) -> int:
        if sym.path:
            return sym.path.popleft()
        lower, upper = sym.limits
        move = self.rng.randrange(3)
        if move == 0 and sym.price > lower:
            return max(krx.round_to_tick(sym.price - 1, direction="down", etf=sym.etf), lower)
        if move == 2 and sym.price < upper:
            return min(krx.round_to_tick(sym.price + 1, direction="up", etf=sym.etf), upper)
        return sym.price

    def _trade(self, sym: Symbol, price: int, now: datetime) -> Tick:
        volume = self.rng.randint(1, 500)
        hms = _hms(now)
        sym.price = price
        if price > sym.high:
            sym.high, sym.high_time = price, hms
        if price < sym.low:
            sym.low, sym.low_time = price, hms
        sym.volume += volume
        sym.amount += volume * price
        sym.last_volume = volume
        return self._print(sym, now, volume=volume)

    def _print(self, sym: Symbol, now: datetime, *, volume: int, expected: bool = False) -> Tick:
        """The symbol as the trade feed prints it: a trade of `volume`, or a VI's expected
        price."""
        lower, upper = sym.limits
        return Tick(
            pdno=sym.pdno,
            date=_ymd(now),
            time=_hms(now),
            price=sym.price,
            prev_close=sym.prev_close,
            open=sym.open,
            high=sym.high,
            low=sym.low,
            upper_limit=upper,
            lower_limit=lower,
            tick=sym.tick,
            volume=volume,
            cumulative_volume=sym.volume,
            cumulative_amount=sym.amount,
            halted=sym.halted,
            sign=sym.sign,
            open_time=sym.open_time,
            high_time=sym.high_time,
            low_time=sym.low_time,
            venue=protocol.EXCG_KRX if self.session_open or self.auction else protocol.EXCG_NXT,
            expected=expected,
            vi_reference=sym.vi_reference,
        )

    def _match(self, sym: Symbol, now: datetime, venues: set[str] | None = None) -> list[Notice]:
        """Fill what crosses the symbol's price among the orders on `venues` (None: those
        trading now)."""
        if sym.halted or sym.vi_until is not None:
            return []
        notices: list[Notice] = []
        price = sym.price
        for order in list(self._open_by_symbol.get(sym.pdno, {}).values()):
            if not (order.routed in venues if venues is not None else self.trading(order.routed)):
                continue
            acct = self.accounts[order.account]
            marketable = order.market or (
                price <= order.price if order.side is Side.BUY else price >= order.price
            )
            qty = order.remaining if marketable else 0
            if qty and self.max_fill_per_step:
                qty = min(qty, self.max_fill_per_step)
            if qty and order.side is Side.BUY:
                # The reservation covered this order at its reserve price; never let a fill take
                # cash that other open buys hold, even if limits moved since.
                own = order.remaining * order.reserve_price
                qty = min(qty, (acct.cash - acct.reserved_cash + own) // price)
            elif qty:
                held = acct.holdings.get(order.pdno)
                qty = min(qty, held.qty if held else 0)
            if order.tif == "FOK" and qty < order.remaining:
                qty = 0
            if qty > 0:
                notices.append(self._fill(order, acct, qty, price, now))
            if order.tif != "DAY" and order.remaining:
                order.cancelled_qty += order.remaining
                self._close(order)
                notices.append(
                    self._notice(
                        order, now=now, qty=order.qty, price=order.price, acpt_yn="3", rctf_cls="2"
                    )
                )
        return notices

    def _fill(self, order: Order, acct: Account, qty: int, price: int, now: datetime) -> Notice:
        amount = qty * price
        holding = acct.holdings.setdefault(order.pdno, Holding())
        if order.side is Side.BUY:
            holding.avg = (holding.avg * holding.qty + amount) / (holding.qty + qty)
            holding.qty += qty
            holding.bought_today += qty
            acct.cash -= amount
            acct.bought_amount += amount
        else:
            holding.qty -= qty
            holding.sold_today += qty
            if holding.qty == 0:
                holding.avg = Fraction(0)
            acct.cash += amount
            acct.sold_amount += amount
        order.filled_qty += qty
        order.filled_amount += amount
        self.fills.append(
            Fill(
                seq=len(self.fills) + 1,
                odno=order.odno,
                account=acct.key,
                pdno=order.pdno,
                side=order.side,
                qty=qty,
                price=price,
                date=_ymd(now),
                time=_hms(now),
            )
        )
        if order.remaining == 0:
            self._close(order)
        return self._notice(order, now=now, qty=qty, price=price, acpt_yn="2", filled=True)

    # --- queries ------------------------------------------------------------------------------
    def account(self, key: AccountKey) -> Account:
        try:
            return self.accounts[key]
        except KeyError:
            raise UnknownAccount(f"no account {key[0]}-{key[1]}") from None

    def open_orders(self, pdno: str | None = None) -> list[Order]:
        if pdno is not None:
            return list(self._open_by_symbol.get(pdno, {}).values())
        return [o for orders in self._open_by_symbol.values() for o in orders.values()]

    # --- internals ----------------------------------------------------------------------------
    def _symbol_or_error(self, pdno: str) -> Symbol:
        try:
            return self.symbols[pdno]
        except KeyError:
            raise ValueError(f"unknown symbol {pdno}") from None

    def _new_odno(self) -> str:
        odno = f"{self._next_odno:010d}"
        self._next_odno += 1
        return odno

    def _open(self, order: Order) -> None:
        self.orders[order.odno] = order
        self.accounts[order.account].open_orders[order.odno] = order
        self._open_by_symbol.setdefault(order.pdno, {})[order.odno] = order

    def _close(self, order: Order) -> None:
        self.accounts[order.account].open_orders.pop(order.odno, None)
        self._open_by_symbol.get(order.pdno, {}).pop(order.odno, None)

    def _notice(
        self,
        order: Order,
        *,
        now: datetime,
        qty: int,
        price: int,
        acpt_yn: str,
        filled: bool = False,
        rctf_cls: str | None = None,
    ) -> Notice:
        acct = self.accounts[order.account]
        sym = self.symbols.get(order.pdno)
        if rctf_cls is None:
            rctf_cls = {"new": "0", "modify": "1", "cancel": "2"}[order.kind]
        return Notice(
            hts_id=acct.hts_id,
            cano=acct.cano,
            acnt_prdt_cd=acct.acnt_prdt_cd,
            account_name=acct.name,
            odno=order.odno,
            orgn_odno=order.orgn_odno,
            side=order.side,
            rctf_cls=rctf_cls,
            ord_dvsn=order.ord_dvsn,
            pdno=order.pdno,
            name=sym.name if sym else order.pdno,
            qty=qty,
            price=price,
            time=_hms(now),
            rejected=False,
            filled=filled,
            acpt_yn=acpt_yn,
            order_qty=order.qty,
            order_price=order.price,
            orgno=order.orgno,
        )

    def _reject_notice(
        self,
        acct: Account,
        pdno: str,
        side: Side,
        ord_dvsn: str,
        qty: int,
        price: int,
        now: datetime,
    ) -> Notice | None:
        if not self.reject_notices:
            return None
        sym = self.symbols.get(pdno)
        return Notice(
            hts_id=acct.hts_id,
            cano=acct.cano,
            acnt_prdt_cd=acct.acnt_prdt_cd,
            account_name=acct.name,
            odno="",
            orgn_odno="",
            side=side,
            rctf_cls="0",
            ord_dvsn=ord_dvsn,
            pdno=pdno,
            name=sym.name if sym else pdno,
            qty=qty,
            price=price,
            time=_hms(now),
            rejected=True,
            filled=False,
            acpt_yn="1",
            order_qty=qty,
            order_price=price,
            orgno=self.orgno,
        )
