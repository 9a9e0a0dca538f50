"""The router's three gates and the entry's sizing, as pure functions of what the router read.

Gate 1, validity: trading allows it, the source is active and maps to an exit profile, the
market is in session before the entry cutoff, the symbol trades (known, not halted), the pick is
not a duplicate of a position held or an entry pending in that symbol, and it is not stale.
Gate 2, risk: open positions, per-symbol and total exposure, today's realised loss, cash.
Gate 3, price: a fresh price, the spread, the distance to the upper limit, the deviation from
the pick's own price.

A BUY pick that passes becomes an ENTRY: qty from the budget and the entry price, the price on
the KRX tick grid, never above the upper limit. A SELL pick asks to sell a held position: it
passes gates 1 and 3 (gate 2 limits what is bought, and selling only lowers it) and becomes a
MANUAL exit, which the ledger clamps to what is available.

Gates are checked in order and the first refusal is the answer, so a rejected pick names the
first gate it failed. A refusal's reason is told in the language of the process that decides it
(it is stored on the pick and read by people), and only on a refusal: a pick that passes costs
no translation.
"""

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext as _

from execution.gate import allows
from market import krx
from market.reads import Market  # what the router read of the market (market/reads.py)

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Rejection:
    gate: int
    reason: str


@dataclass(frozen=True)
class Route:
    """What a passing pick becomes: `qty` shares at `limit_price` (KRW, on the tick grid)."""

    side: str
    qty: int
    limit_price: int
    price: int  # the market price the route was sized on


@dataclass(frozen=True)
class Ask:
    """The pick as the gates see it."""

    side: str
    symbol: str
    qty: int | None
    budget_krw: int | None
    limit_price: int | None
    generated_at: dt.datetime
    source_active: bool = True
    has_profile: bool = True

    @classmethod
    def of(cls, pick) -> "Ask":
        """A pick's (picks.models.Pick, with its source)."""
        return cls(
            side=pick.side,
            symbol=pick.symbol,
            qty=pick.qty,
            budget_krw=pick.budget_krw,
            limit_price=pick.limit_price,
            generated_at=pick.generated_at,
            source_active=pick.source.active,
            has_profile=pick.source.exit_profile_id is not None,
        )


@dataclass(frozen=True)
class Account:
    """The account as the risk gate sees it, read under the router's lock.

    Exposures are KRW at cost: shares held × average price, plus what pending entries (NEW
    intents, open BUY orders' remainders) may still spend at their limit prices."""

    trading_state: str = "ACTIVE"
    open_positions: int = 0  # held or being bought
    symbol_held_qty: int = 0
    symbol_available_qty: int = 0
    symbol_entry_pending: bool = False
    symbol_exposure_krw: int = 0
    total_exposure_krw: int = 0
    realized_today_krw: Decimal = Decimal(0)
    cash_krw: int | None = None  # spendable: last known deposit ± fills since − pending buys


@dataclass(frozen=True)
class Limits:
    """GateSettings' values (picks.models.GateSettings has the same names)."""

    max_pick_age_s: int = 30
    entry_cutoff: dt.time = dt.time(15, 15)
    max_open_positions: int = 20
    max_symbol_exposure_krw: int = 20_000_000
    max_total_exposure_krw: int = 200_000_000
    daily_loss_limit_krw: int = 5_000_000
    min_cash_krw: int = 0
    max_price_age_s: int = 5
    max_spread_pct: Decimal = Decimal("1.00")
    limit_up_guard_pct: Decimal = Decimal("2.00")
    max_deviation_pct: Decimal = Decimal("2.00")
    entry_slippage_pct: Decimal = Decimal("0.50")

    @classmethod
    def of(cls, settings) -> "Limits":
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


def _pct(part: int | Decimal, whole: int | Decimal) -> Decimal:
    return Decimal(part) * HUNDRED / Decimal(whole)


def _krw(value: int) -> str:
    """A KRW amount's figure, with separators (the unit is the message's)."""
    return f"{value:,}"


def screen(
    ask: Ask,
    limits: Limits,
    *,
    trading_state: str | None,
    now: dt.datetime,
    session_open: dt.datetime | None,
    session_close: dt.datetime | None,
) -> str | None:
    """Gate 1's checks that need neither the market nor the account: the router refuses on
    them before it asks the broker anything. `trading_state` None: not known yet, not
    checked."""
    buy = ask.side == "BUY"
    if trading_state is not None and not allows(trading_state, ask.side):
        state = {"state": trading_state}
        return (
            _("trading is %(state)s: no new entries") % state
            if buy
            else _("trading is %(state)s: no new orders") % state
        )
    if not ask.source_active:
        return _("the source is not active")
    if buy and not ask.has_profile:
        return _("the source has no exit profile: an entry would not be watched")
    if session_open is None or session_close is None:
        return _("KRX is closed today")
    cutoff = dt.datetime.combine(session_open.date(), limits.entry_cutoff, session_open.tzinfo)
    end = min(cutoff, session_close) if buy else session_close
    if now < session_open:
        return _("before the open (%(open)s)") % {"open": f"{session_open:%H:%M}"}
    if now >= end:
        at = {"at": f"{end:%H:%M}"}
        return (
            _("after the entry cutoff (%(at)s)") % at
            if buy and end == cutoff
            else _("after the close (%(at)s)") % at
        )
    age = (now - ask.generated_at).total_seconds()
    if age > limits.max_pick_age_s:
        return _("stale: generated %(age)s s ago (at most %(max)s s)") % {
            "age": f"{age:.1f}",
            "max": limits.max_pick_age_s,
        }
    return None


def gate_validity(
    ask: Ask,
    market: Market,
    account: Account,
    limits: Limits,
    *,
    now: dt.datetime,
    session_open: dt.datetime | None,
    session_close: dt.datetime | None,
) -> str | None:
    """Gate 1: the reason the pick is not valid now, or None."""
    reason = screen(
        ask,
        limits,
        trading_state=account.trading_state,
        now=now,
        session_open=session_open,
        session_close=session_close,
    )
    if reason:
        return reason
    buy = ask.side == "BUY"
    symbol = {"symbol": ask.symbol}
    if not market.known:
        return _("%(symbol)s is not a listed symbol") % symbol
    if market.halted:
        return _("%(symbol)s is halted") % symbol
    if buy and account.symbol_held_qty > 0:
        return _("duplicate: %(symbol)s is already held") % symbol
    if buy and account.symbol_entry_pending:
        return _("duplicate: an entry in %(symbol)s is already pending") % symbol
    if not buy and account.symbol_available_qty <= 0:
        return _("no shares of %(symbol)s available to sell") % symbol
    return None


def entry_price(ask: Ask, market: Market, limits: Limits) -> int | None:
    """The BUY's limit price on the tick grid: the pick's own limit rounded down (never pay
    more than the strategy said), else the last price plus the allowed slippage rounded down,
    at least the last price; never above the upper limit. None without a price."""
    if ask.limit_price is not None:
        price = krx.round_to_tick(ask.limit_price, direction="down")
    elif market.price is None:
        return None
    else:
        raw = math.floor(Decimal(market.price) * (HUNDRED + limits.entry_slippage_pct) / HUNDRED)
        price = max(
            krx.round_to_tick(market.price, direction="up"),
            krx.round_to_tick(raw, direction="down"),
        )
    if market.upper_limit:
        price = min(price, market.upper_limit)
    return price


def exit_price(ask: Ask, market: Market, limits: Limits) -> int | None:
    """The SELL's limit price on the tick grid: the pick's own limit rounded up (never sell
    below what the strategy said), else the last price less the allowed slippage rounded up;
    never below the lower limit."""
    if ask.limit_price is not None:
        price = krx.round_to_tick(ask.limit_price, direction="up")
    elif market.price is None:
        return None
    else:
        raw = math.ceil(Decimal(market.price) * (HUNDRED - limits.entry_slippage_pct) / HUNDRED)
        price = krx.round_to_tick(max(raw, 1), direction="up")
    if market.lower_limit:
        price = max(price, market.lower_limit)
    if market.upper_limit:
        price = min(price, market.upper_limit)
    return price


def size(ask: Ask, limit_price: int | None) -> int:
    """Shares: the pick's qty, or as many as its budget buys at the limit price."""
    if ask.qty is not None:
        return ask.qty
    if ask.budget_krw is None or not limit_price:
        return 0
    return ask.budget_krw // limit_price


def gate_risk(
    ask: Ask, account: Account, limits: Limits, *, qty: int, limit_price: int | None
) -> str | None:
    """Gate 2 (BUY only): the reason the entry would take too much risk, or None."""
    if account.open_positions >= limits.max_open_positions:
        return _("%(count)s positions open or being bought (at most %(max)s)") % {
            "count": account.open_positions,
            "max": limits.max_open_positions,
        }
    loss = -account.realized_today_krw
    if limits.daily_loss_limit_krw and loss >= limits.daily_loss_limit_krw:
        return _("today's realised loss %(loss)s KRW reached the daily limit %(limit)s KRW") % {
            "loss": _krw(int(loss)),
            "limit": _krw(limits.daily_loss_limit_krw),
        }
    if limit_price is None:
        return None  # no price to size and value it at: gate 3 refuses it
    if qty <= 0:
        return _budget_too_small(ask, limit_price)
    value = qty * limit_price
    symbol = account.symbol_exposure_krw + value
    if symbol > limits.max_symbol_exposure_krw:
        return _("%(symbol)s exposure would be %(value)s KRW (at most %(max)s KRW)") % {
            "symbol": ask.symbol,
            "value": _krw(symbol),
            "max": _krw(limits.max_symbol_exposure_krw),
        }
    total = account.total_exposure_krw + value
    if total > limits.max_total_exposure_krw:
        return _("total exposure would be %(value)s KRW (at most %(max)s KRW)") % {
            "value": _krw(total),
            "max": _krw(limits.max_total_exposure_krw),
        }
    if account.cash_krw is None:
        return _("cash unknown: no reconciliation with KIS has read the deposit yet")
    spendable = account.cash_krw - limits.min_cash_krw
    if value > spendable:
        return _("the entry costs %(value)s KRW, more than the %(cash)s KRW of cash it may use") % {
            "value": _krw(value),
            "cash": _krw(max(spendable, 0)),
        }
    return None


def _budget_too_small(ask: Ask, limit_price: int) -> str:
    """The refusal of a pick whose budget buys (or sells) not one share at `limit_price`."""
    if ask.side == "BUY":
        message = _("the budget of %(budget)s KRW buys no share at %(price)s KRW")
    else:
        message = _("the budget of %(budget)s KRW sells no share at %(price)s KRW")
    return message % {"budget": _krw(ask.budget_krw or 0), "price": _krw(limit_price)}


def gate_price(ask: Ask, market: Market, limits: Limits, *, now: dt.datetime) -> str | None:
    """Gate 3: the reason the market price forbids the order now, or None."""
    if market.price is None or market.price_at is None:
        return _("no price known for %(symbol)s") % {"symbol": ask.symbol}
    age = (now - market.price_at).total_seconds()
    if age > limits.max_price_age_s:
        return _("the last price is %(age)s s old (at most %(max)s s)") % {
            "age": f"{age:.1f}",
            "max": limits.max_price_age_s,
        }
    buy = ask.side == "BUY"
    if buy and market.upper_limit:
        guard = _pct(market.upper_limit - market.price, market.upper_limit)
        if guard < limits.limit_up_guard_pct:
            return _(
                "%(price)s is within %(pct)s%% of the upper limit %(limit)s (guard %(guard)s%%)"
            ) % {
                "price": f"{market.price:,}",
                "pct": f"{guard:.2f}",
                "limit": f"{market.upper_limit:,}",
                "guard": limits.limit_up_guard_pct,
            }
    if market.best_ask is None:
        return _("no asks in the order book")
    if market.best_bid is None:
        return _("no bids in the order book")
    spread = _pct(market.best_ask - market.best_bid, market.best_bid)
    if spread > limits.max_spread_pct:
        return _("the spread %(bid)s–%(ask)s is %(pct)s%% (at most %(max)s%%)") % {
            "bid": f"{market.best_bid:,}",
            "ask": f"{market.best_ask:,}",
            "pct": f"{spread:.2f}",
            "max": limits.max_spread_pct,
        }
    if ask.limit_price is not None:
        moved = _pct(market.price - ask.limit_price, ask.limit_price)
        if abs(moved) > limits.max_deviation_pct:
            return _(
                "the price %(price)s is %(moved)s%% from the pick's %(pick)s (at most ±%(max)s%%)"
            ) % {
                "price": f"{market.price:,}",
                "moved": f"{moved:+.2f}",
                "pick": f"{ask.limit_price:,}",
                "max": limits.max_deviation_pct,
            }
    return None


def route(
    ask: Ask,
    market: Market,
    account: Account,
    limits: Limits,
    *,
    now: dt.datetime,
    session_open: dt.datetime | None,
    session_close: dt.datetime | None,
) -> Route | Rejection:
    """The three gates in order, then the order the pick becomes."""
    reason = gate_validity(
        ask,
        market,
        account,
        limits,
        now=now,
        session_open=session_open,
        session_close=session_close,
    )
    if reason:
        return Rejection(1, reason)
    if ask.side == "BUY":
        limit_price = entry_price(ask, market, limits)
        qty = size(ask, limit_price)
        reason = gate_risk(ask, account, limits, qty=qty, limit_price=limit_price)
        if reason:
            return Rejection(2, reason)
    else:
        limit_price = exit_price(ask, market, limits)
        qty = min(size(ask, limit_price), account.symbol_available_qty)
        if qty <= 0 and limit_price is not None:
            return Rejection(1, _budget_too_small(ask, limit_price))
    reason = gate_price(ask, market, limits, now=now)
    if reason:
        return Rejection(3, reason)
    # Gate 3 refuses a pick without a market price, and the limit price is None only without
    # one (entry_price, exit_price).
    assert market.price is not None and limit_price is not None
    return Route(side=ask.side, qty=qty, limit_price=limit_price, price=market.price)
