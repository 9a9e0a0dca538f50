"""Exit rules as pure code: one position, one price, one decision.

No database, no clock of its own, no I/O: the engine hands in what it holds (the profile's
rules, the position as it stands, the price and when it traded) and gets back at most one exit
and the exit state to keep. Every decision names the rule that fired, the price and the moment
that fired it, and a limit price on the KRX tick grid inside the day's price limits.

Precedence, when several rules hold at once: GAP_DOWN (only on the opening trade), stop loss,
time exit, maximum holding days, trailing stop, take-profit tiers. All but the tiers sell
everything still available; the tiers sell shares of the most the position ever held (its peak
qty), so a tier means the same thing after partial fills and after earlier tiers.

A decision's reason is stored on its intent and read by people: it is told in the language of
the process that decides (gettext), once a rule fires, never on a quiet trade.
"""

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.utils.translation import gettext

from market import krx

HUNDRED = Decimal(100)
# An exit is a limit order this many ticks below the price that fired it: marketable at once,
# with a bound on how far a thin book can drag it.
EXIT_LIMIT_TICKS = 2


@dataclass(frozen=True)
class Tier:
    gain_pct: Decimal
    sell_pct: Decimal


@dataclass(frozen=True)
class Rules:
    """A profile's exit rules; None switches a rule off. Percentages of percent (5 = 5 %)."""

    stop_loss_pct: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    trailing_activation_pct: Decimal | None = None
    trailing_pct: Decimal | None = None
    gap_down_pct: Decimal | None = None
    time_exit_at: dt.time | None = None
    max_holding_days: int | None = None
    # The stop loss may decide in the opening auction too, on its expected price: the order
    # joins the auction and trades at the opening price (otherwise rules decide from the open).
    opening_auction_stop: bool = False
    # Exits may be decided in Nextrade's pre- and after-market too, and go there.
    nxt_exits: bool = False
    # An exit decided while the stock is in a VI waits for the first trade after it (else its
    # order joins the VI's call auction).
    vi_wait: bool = False
    # The percentages as float factors, for the screen (screen_band), computed once: the stop
    # loss, the trailing activation and trail, each tier's gain. Not an argument (nor compared,
    # nor carried by the cache, which keeps the init fields): __post_init__ sets it.
    factors: tuple[float | None, float | None, float | None, tuple[float, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        gains = [t.gain_pct for t in self.tiers]
        if gains != sorted(gains) or len(set(gains)) != len(gains):
            raise ValueError("tiers must be in strictly rising order of gain")
        if (self.trailing_pct is None) != (self.trailing_activation_pct is None):
            raise ValueError("the trailing stop needs both its activation and its trail")
        pct = lambda v: None if v is None else float(v) / 100  # noqa: E731
        object.__setattr__(
            self,
            "factors",
            (
                pct(self.stop_loss_pct),
                pct(self.trailing_activation_pct),
                pct(self.trailing_pct),
                tuple(float(t.gain_pct) / 100 for t in self.tiers),
            ),
        )


@dataclass(frozen=True)
class Holding:
    """The position as the engine sees it. `available` is qty less what open sell orders and
    exit intents already hold (the ledger's figure; the ledger re-checks under its lock)."""

    qty: int
    available: int
    avg_price: Decimal
    held_days: int = 0  # KRX trading days since the position opened
    high_water_mark: int | None = None
    peak_qty: int = 0
    tiers_done: int = 0


@dataclass(frozen=True)
class Trade:
    """A price and when it traded. `opening` marks the first trade at or after the open;
    `in_session` that it is evaluated in the regular session, where alone the time rules (time
    exit, maximum holding days) act: an order placed before the open would only wait for the
    opening trade. `auction`: the price is the opening auction's expected price, not a trade;
    only a stop loss of a profile that allows it (Rules.opening_auction_stop) decides on it, and
    nothing else is kept of it."""

    price: int
    at: dt.datetime
    lower_limit: int | None = None
    prev_close: int | None = None
    opening: bool = False
    etf: bool = False
    in_session: bool = True
    auction: bool = False
    # The auction is a volatility interruption's (the stock's continuous trading stopped for
    # two minutes): any profile's stop loss decides on it, and the engine holds it back where
    # the profile waits (trading/services.py).
    vi: bool = False


@dataclass(frozen=True)
class Decision:
    rule: str  # an execution IntentType value
    qty: int
    limit_price: int
    price: int
    at: dt.datetime
    reason: str


@dataclass(frozen=True)
class Evaluation:
    decision: Decision | None
    high_water_mark: int | None
    peak_qty: int
    tiers_done: int = field(default=0)


def gap_threshold(prev_close: int, gap_down_pct: Decimal) -> Decimal:
    """The opening price at or below which GAP_DOWN fires: prev close × (1 − gap %)."""
    if prev_close <= 0:
        raise ValueError("the previous close must be positive")
    return Decimal(prev_close) * (HUNDRED - gap_down_pct) / HUNDRED


def exit_limit_price(
    price: int, *, lower_limit: int | None, etf: bool = False, ticks: int = EXIT_LIMIT_TICKS
) -> int:
    """A sell limit `ticks` ticks below `price`, on the grid, never below the day's lower limit
    (a price below it is refused by KRX)."""
    limit = krx.round_to_tick(price, direction="down", etf=etf)
    for _ in range(ticks):
        if limit <= krx.tick_size(limit, etf=etf):
            break
        limit = krx.round_to_tick(limit - 1, direction="down", etf=etf)
    if lower_limit is not None:
        limit = max(limit, lower_limit)
    return limit


def tier_qty(peak_qty: int, tiers: tuple[Tier, ...], done: int, reached: int) -> int:
    """Shares the tiers done..reached-1 sell: their share of the peak qty, counted cumulatively
    so that rounding never drifts, and at least one share per firing."""

    def sold_by(n: int) -> int:
        pct = sum((t.sell_pct for t in tiers[:n]), Decimal(0))
        return min(peak_qty, math.floor(Decimal(peak_qty) * pct / HUNDRED))

    return max(1, sold_by(reached) - sold_by(done))


def evaluate(
    rules: Rules, holding: Holding, trade: Trade, *, gap_down_at: Decimal | None = None
) -> Evaluation:
    """At most one exit for `holding` at `trade`, and the exit state to keep.

    `gap_down_at` is the GAP_DOWN threshold computed before the bell; without it the threshold
    is computed from the trade's previous close.
    """
    high = max(holding.high_water_mark or 0, trade.price)
    peak = max(holding.peak_qty, holding.qty)
    keep = Evaluation(
        decision=None, high_water_mark=high, peak_qty=peak, tiers_done=holding.tiers_done
    )
    if trade.auction:  # an expected price, not a trade: it raises no mark
        keep = replace(keep, high_water_mark=holding.high_water_mark)
        if not (trade.vi or rules.opening_auction_stop):
            return keep
    if holding.available <= 0 or holding.avg_price <= 0:
        return keep
    price, cost = trade.price, holding.avg_price

    def sell(rule: str, qty: int, why: str) -> Evaluation:
        limit = exit_limit_price(price, lower_limit=trade.lower_limit, etf=trade.etf)
        decision = Decision(
            rule=rule,
            qty=min(qty, holding.available),
            limit_price=limit,
            price=price,
            at=trade.at,
            reason=why,
        )
        return replace(keep, decision=decision)

    everything = holding.available
    if rules.gap_down_pct is not None and trade.opening:
        threshold = gap_down_at
        if threshold is None and trade.prev_close:
            threshold = gap_threshold(trade.prev_close, rules.gap_down_pct)
        if threshold is not None and price <= threshold:
            return sell(
                "GAP_DOWN",
                everything,
                gettext(
                    "opened at %(price)s ≤ %(threshold)s (previous close %(prev_close)s − "
                    "%(pct)s%%)"
                )
                % {
                    "price": f"{price:,}",
                    "threshold": f"{threshold:,.0f}",
                    "prev_close": trade.prev_close or "?",
                    "pct": rules.gap_down_pct,
                },
            )
    if rules.stop_loss_pct is not None:
        threshold = cost * (HUNDRED - rules.stop_loss_pct) / HUNDRED
        if price <= threshold:
            if not trade.auction:
                why = gettext("%(price)s ≤ %(threshold)s (cost %(cost)s − %(pct)s%%)")
            elif trade.vi:
                why = gettext(
                    "%(price)s ≤ %(threshold)s (cost %(cost)s − %(pct)s%%) in a volatility "
                    "interruption's auction"
                )
            else:
                why = gettext(
                    "%(price)s ≤ %(threshold)s (cost %(cost)s − %(pct)s%%) in the opening auction"
                )
            return sell(
                "EXIT_STOP_LOSS",
                everything,
                why
                % {
                    "price": f"{price:,}",
                    "threshold": f"{threshold:,.0f}",
                    "cost": f"{cost:,.0f}",
                    "pct": rules.stop_loss_pct,
                },
            )
    if trade.auction:
        return keep
    if (
        rules.time_exit_at is not None
        and trade.in_session
        and trade.at.timetz().replace(tzinfo=None) >= rules.time_exit_at
    ):
        return sell(
            "EXIT_TIME",
            everything,
            gettext("%(at)s ≥ time exit %(time_exit)s")
            % {"at": f"{trade.at:%H:%M:%S}", "time_exit": f"{rules.time_exit_at:%H:%M}"},
        )
    if (
        rules.max_holding_days is not None
        and trade.in_session
        and holding.held_days >= rules.max_holding_days
    ):
        return sell(
            "EXIT_MAX_HOLD",
            everything,
            gettext("held %(days)s trading days ≥ %(max)s")
            % {"days": holding.held_days, "max": rules.max_holding_days},
        )
    if rules.trailing_pct is not None and rules.trailing_activation_pct is not None:
        armed_at = cost * (HUNDRED + rules.trailing_activation_pct) / HUNDRED
        stop = Decimal(high) * (HUNDRED - rules.trailing_pct) / HUNDRED
        if high >= armed_at and price <= stop:
            return sell(
                "EXIT_TRAILING",
                everything,
                gettext(
                    "%(price)s ≤ %(stop)s (%(pct)s%% under the high %(high)s; armed at %(armed)s)"
                )
                % {
                    "price": f"{price:,}",
                    "stop": f"{stop:,.0f}",
                    "pct": rules.trailing_pct,
                    "high": f"{high:,}",
                    "armed": f"{armed_at:,.0f}",
                },
            )
    gain_pct = (Decimal(price) - cost) / cost * HUNDRED
    reached = holding.tiers_done
    while reached < len(rules.tiers) and rules.tiers[reached].gain_pct <= gain_pct:
        reached += 1
    if reached > holding.tiers_done:
        qty = tier_qty(peak, rules.tiers, holding.tiers_done, reached)
        tiers = ", ".join(f"+{t.gain_pct}%" for t in rules.tiers[holding.tiers_done : reached])
        result = sell(
            "EXIT_TAKE_PROFIT",
            qty,
            gettext("gain %(gain)s%% reached tier %(tiers)s (cost %(cost)s)")
            % {"gain": f"{gain_pct:.2f}", "tiers": tiers, "cost": f"{cost:,.0f}"},
        )
        return replace(result, tiers_done=reached)
    return keep


@dataclass(frozen=True, slots=True)
class Band:
    """The prices at which a holding is quiet: `low < price < high` means `evaluate` can neither
    decide an exit nor change the exit state, for any trade that is not the opening trade and
    not due a time rule (the pass checks those apart). A screen only: it is widened by one KRW
    on each side, so float rounding never hides a firing, and prices that near a threshold get
    the exact evaluation."""

    low: float
    high: float

    def quiet(self, price: int) -> bool:
        return self.low < price < self.high


def screen_band(rules: Rules, holding: Holding) -> Band:
    """The quiet band of `holding` under `rules` (see Band). The high-water mark counts only
    where a trailing stop uses it: any higher price moves it."""
    inf = math.inf
    stop_loss, activation, trail, tiers = rules.factors
    high = inf
    if holding.qty > holding.peak_qty:
        return Band(inf, -inf)  # the peak qty moves with any price: never quiet
    mark = holding.high_water_mark
    if trail is not None:
        high = -inf if mark is None else mark + 1
    if holding.available <= 0 or holding.avg_price <= 0:
        return Band(-inf, high)  # nothing to sell: only the state can move
    cost = float(holding.avg_price)
    low = -inf
    if stop_loss is not None:
        low = cost * (1 - stop_loss) + 1
    if (
        trail is not None
        and activation is not None  # set with the trail (Rules.__post_init__)
        and mark is not None
        and mark >= cost * (1 + activation) - 1
    ):
        low = max(low, mark * (1 - trail) + 1)
    if holding.tiers_done < len(tiers):
        high = min(high, cost * (1 + tiers[holding.tiers_done]) - 1)
    return Band(low, high)
