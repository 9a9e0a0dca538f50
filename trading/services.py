"""The exit engine's writes: evaluate open positions against their profiles and open the exits
that fire, through the ledger.

An evaluation screens without locks (the rules are pure, trading/rules.py). A position whose
screen decides an exit is decided again under its exit-state row lock, so two evaluators at
once (a tick and the cadence pass) open one exit and advance the tiers once. The ledger then
takes the position's lock and clamps the exit to what is available (I1, I2): the screen never
decides, the locked rows do (I3).
"""

import datetime as dt
import functools
import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Max
from django.utils.translation import gettext, gettext_noop

from core import clock
from execution.alerts import alert_raise
from execution.exceptions import (
    InsufficientAvailableQty,
    InvalidInput,
    PositionClosed,
    TradingNotAllowed,
)
from execution.locks import Beside, Guard, alone_qs_for_update, beside_locked_sql, position_lock
from execution.models import (
    EXIT_INTENT_TYPES,
    Alert,
    IntentType,
    Order,
    OrderIntent,
    Position,
    Reconciliation,
)
from execution.notify import close_record, notifications_prune
from execution.services import (
    Ref,
    Seen,
    Update,
    exit_intent_open_locked,
    exit_open_if,
    market_closed_at,
)
from execution.services.day_end import day_end
from execution.services.reconciliation import reconciliation_run
from market import calendar as market_calendar
from market import prices as market_prices
from market import vi as market_vi
from market.bars import bars_prune
from market.calendar import Phase, Venue
from market.calendar_sync import overrides_refresh
from market.models import BestPrice

from . import hot, screen
from .models import PositionExitState
from .rules import Decision, Evaluation, Holding, Rules, Trade, evaluate, gap_threshold

logger = logging.getLogger("aegis.trading")

# The phases of the KRX day in which the engine decides exits: those where a regular limit order
# trades (market_calendar.KRX_DAY). In the opening auction only a stop loss whose profile allows
# it decides (Rules.opening_auction_stop); outside them nothing is decided, and a rule that
# would have fired is decided again when trading resumes, on the price then.
EXIT_PHASES = frozenset({Phase.OPENING_AUCTION, Phase.CONTINUOUS, Phase.CLOSING_AUCTION})
# Outside them, Nextrade's pre- and after-market (market_calendar.NXT_DAY): a profile that allows
# it (Rules.nxt_exits) decides there on the prices traded there, and its exits go to Nextrade.
NXT_EXIT_PHASES = frozenset({Phase.PRE_MARKET, Phase.AFTER_MARKET})
# The phases in which KRX interrupts a stock's trading for a VI's call auction.
VI_PHASES = frozenset({Phase.CONTINUOUS, Phase.CLOSING_AUCTION})


def exit_phase(now: dt.datetime) -> tuple[Phase, Venue] | None:
    """The phase in which exits are decided at `now` and the venue they go to: KRX's exit
    phases first, else Nextrade's own sessions; None when no exit could trade."""
    phase = market_calendar.moment(now).phase
    if phase in EXIT_PHASES:
        return phase, Venue.KRX
    phase = market_calendar.moment(now, market_calendar.NXT_DAY).phase
    return (phase, Venue.NXT) if phase in NXT_EXIT_PHASES else None


# A trade this soon after the open counts as the opening trade for GAP_DOWN.
OPENING_SPAN = dt.timedelta(seconds=60)
# The GAP_DOWN thresholds are computed this long before the open (08:59:50 on a regular day).
PREQUEUE_LEAD = dt.timedelta(seconds=10)
# KRX's closing call auction: from ten minutes before the close, orders wait for the 15:30 match.
CLOSING_AUCTION = dt.timedelta(minutes=10)
# The exits the engine decides again once a cancel has freed their shares, as their rules are
# checked on every evaluation. A take-profit tier counts as done when it fires, and GAP_DOWN
# looks at the opening trade only: they keep execution's general timeout, as MANUAL and FLATTEN
# exits do.
DECIDED_AGAIN = frozenset(
    {
        IntentType.EXIT_STOP_LOSS,
        IntentType.EXIT_TRAILING,
        IntentType.EXIT_TIME,
        IntentType.EXIT_MAX_HOLD,
    }
)


class MarketHold:
    """KIS's word over the calendar's: after KIS refused an order as out of market hours (the
    calendar missed a closure, or a late open), no exit is decided until the market next moves
    into another phase where exits trade. One refusal per phase, then, instead of one order per
    pass. The refusal's time is read from the trading state at most once a second per process."""

    REFRESH_S = 1.0

    def __init__(self) -> None:
        # (monotonic time of the read, its hold's end)
        self._read: tuple[float, dt.datetime | None] = (-math.inf, None)

    def holds(self, now: dt.datetime) -> bool:
        read_at, until = self._read
        mono = time.monotonic()
        if mono - read_at >= self.REFRESH_S:
            refused = market_closed_at()
            until = (
                None if refused is None else market_calendar.next_phase_start(refused, EXIT_PHASES)
            )
            self._read = (mono, until)
        return until is not None and now < until

    def forget(self) -> None:
        self._read = (-math.inf, None)


market_hold = MarketHold()


def limit_orders_due(now: dt.datetime, timeout: dt.timedelta) -> bool:
    """Whether unfilled limit orders may be cancelled for their `timeout` at `now` (the engine's
    exits, to be decided again; every order through EXECUTION_ORDERS_DUE): in continuous
    trading, once it has run for `timeout` (an order placed before the open had no trade to
    meet), and not in the closing auction, where orders wait for the match."""
    session = market_calendar.session(now.astimezone(clock.SEOUL).date())
    return session is not None and session.open + timeout <= now < session.close - CLOSING_AUCTION


# The day's orders are ended this long after its close: the closing auction's fills are noticed
# by then, and the inquiry the day's end starts with catches any that were not.
DAY_END_AFTER = dt.timedelta(minutes=1)


def last_closed_day(now: dt.datetime, venue: Venue = Venue.KRX) -> market_calendar.Session | None:
    """The latest trading day whose close on `venue` (plus DAY_END_AFTER) is past at `now`,
    within the last three weeks."""
    day = now.astimezone(clock.SEOUL).date()
    for _ in range(21):
        session = market_calendar.session(day)
        if (
            session is not None
            and market_calendar.venue_close(session, venue) + DAY_END_AFTER <= now
        ):
            return session
        day -= dt.timedelta(days=1)
    return None


# Whose orders end at which venue's close (market_calendar.venue_close).
DAY_ENDS = ((Venue.KRX, (Venue.KRX,)), (Venue.NXT, (Venue.NXT, Venue.SOR)))


def day_end_run(*, broker) -> dict:
    """End the day orders of the latest trading day closed by now on each venue (and any
    earlier one a stopped beat missed): execution's day_end, told by the calendar which day
    that is, KRX's orders at its close, Nextrade's and SOR's at the end of the after-market;
    then, once a day, the trader's summary of the day just ended (execution/notify/)."""

    overrides_refresh()
    now = clock.now()
    counts: dict = {}
    for close_of, venues in DAY_ENDS:
        closed = last_closed_day(now, close_of)
        if closed is None:
            counts[close_of] = {"skipped": "no trading day closed within the calendar's reach"}
            continue
        counts[close_of] = day_end(
            broker=broker,
            through=closed.day,
            closed_at=market_calendar.venue_close(closed, close_of),
            venues=venues,
        )
        if counts[close_of].get("gate_closed"):
            # At once, not at the next periodic run: Nextrade's after-market opens ten minutes
            # after KRX's close, and exits wait for the gate.
            run = reconciliation_run(broker=broker, trigger=Reconciliation.Trigger.DAY_END)
            counts[close_of]["reconciled"] = run.result
            counts[close_of]["bars_pruned"] = bars_prune(now)  # the gate closes once a day
            counts[close_of]["notifications_pruned"] = notifications_prune(now)
    # The day's last venue has closed and its orders have ended: the trader's summary of the
    # day, once (nothing when no channel wants it).
    last_venue = DAY_ENDS[-1][0]
    closed = last_closed_day(now, last_venue)
    if closed is not None:
        counts["close_told"] = close_record(
            day=closed.day, closed_at=market_calendar.venue_close(closed, last_venue), now=now
        )
    return counts


def _holding(position: Position, state: PositionExitState, today: dt.date) -> Holding:
    opened = position.opened_at.astimezone(clock.SEOUL).date()
    return Holding(
        qty=position.qty,
        available=position.qty - position.reserved_qty,
        avg_price=position.avg_price,
        held_days=market_calendar.trading_days_between(opened, today),
        high_water_mark=state.high_water_mark,
        peak_qty=state.peak_qty,
        tiers_done=state.tiers_done,
    )


def _trade(
    px: market_prices.Px,
    opening: tuple[dt.datetime, dt.datetime] | None,
    *,
    in_session: bool,
    auction: bool = False,
    vi: bool = False,
) -> Trade:
    return Trade(
        price=px.price,
        at=dt.datetime.fromtimestamp(px.at, clock.SEOUL),
        lower_limit=px.lower_limit,
        prev_close=px.prev_close,
        opening=market_prices.within(px.at, opening),
        in_session=in_session,
        auction=auction,
        vi=vi,
    )


@dataclass
class PassResult:
    evaluated: int = 0  # positions with a price, screened
    examined: int = 0  # of those, evaluated exactly (outside their quiet band, or due)
    exits: int = 0
    skipped_no_price: int = 0


def exit_pass(
    *,
    symbols: list[str] | None = None,
    prices: dict[str, market_prices.Px] | None = None,
    use_cache: bool = True,
    found: dict | None = None,
    vi: market_vi.Vi | None = None,
) -> PassResult:
    """Evaluate every managed open position (or those of `symbols`) at its best price and open
    the exits that fire. `prices` hands in prices already known (a tick's); `found`, what
    hot.read_ahead already read for a tick's one symbol. `vi`: `prices` are the expected
    prices of a volatility interruption's auction (market/vi.py), on which stop losses decide:
    their exits join the auction or wait, as their profiles say.

    Each position is screened by its quiet band (rules.screen_band); only those outside it, in
    the opening minute, or due a time rule are evaluated exactly. A steady tick evaluation
    reads the cache only; a steady full pass makes two queries: the screen's prices and the
    profiles' digest (hot.profiles, verify)."""
    overrides_refresh()
    now = clock.now_seoul()
    today = now.date()
    deciding = exit_phase(now)
    if deciding is None or market_hold.holds(now):
        return PassResult()  # no exit order could trade: nothing is decided, nothing kept
    phase, venue = deciding
    nxt = venue is Venue.NXT
    if vi is not None and phase not in VI_PHASES:
        return PassResult()  # KRX interrupts its continuous trading and closing auction only
    auction = phase is Phase.OPENING_AUCTION or vi is not None
    session = market_calendar.session(today)
    if session is None:  # no exit phase on a day without a session
        return PassResult()
    # A tick's symbol: profiles and its book in one cache round trip.
    if found is None and use_cache and symbols and len(symbols) == 1:
        found = hot.read_ahead(symbols[0])
    # The full pass checks cached rules against the tables: a copy that a lost invalidation
    # left behind lasts one pass.
    rules = hot.profiles(use_cache=use_cache, found=found, verify=symbols is None)
    if auction and vi is None and not any(r.opening_auction_stop for r in rules.rules.values()):
        return PassResult()
    if nxt and not any(r.nxt_exits for r in rules.rules.values()):
        return PassResult()
    book = hot.book(rules, symbols, use_cache=use_cache, found=found)
    opening = (session.open, session.open + OPENING_SPAN)
    gaps: dict[int, Decimal] = {}
    if opening is not None and opening[0] - PREQUEUE_LEAD <= now < opening[1] + dt.timedelta(
        seconds=5
    ):
        gaps = hot.gap_thresholds(today)
    # Only prices of the phase that decides: in the session a trade of the session, never a
    # quote or an expected price from before the open (the opening trade is GAP_DOWN's); in
    # Nextrade's own sessions a trade since the session began.
    since = (
        market_calendar.phase_began(session, phase, market_calendar.NXT_DAY)
        if nxt
        else market_calendar.phase_began(
            session, Phase.OPENING_AUCTION if auction and vi is None else Phase.CONTINUOUS
        )
    )
    if since is None:  # each day model has the phases asked: never met
        return PassResult()
    if prices is None and symbols is None:  # the full pass: the screen's columns only
        price_of, in_opening = market_prices.price_screen(opening, since)
    else:
        if prices is None:
            prices = market_prices.prices(sorted(set(book.symbols)), use_cache=use_cache)
        floor = since.timestamp()
        prices = {symbol: px for symbol, px in prices.items() if px.at >= floor}
        price_of = {symbol: px.price for symbol, px in prices.items()}
        in_opening = {s for s, px in prices.items() if market_prices.within(px.at, opening)}
    seconds = now.hour * 3600 + now.minute * 60 + now.second
    # The time rules act in the regular session only (rules.Trade.in_session).
    in_session = session is not None and session.open <= now < session.close
    due = {
        pid: screen.Due(
            has_gap=r.gap_down_pct is not None,
            time_due=in_session
            and r.time_exit_at is not None
            and seconds >= _seconds(r.time_exit_at),
            max_days=r.max_holding_days
            if r.max_holding_days is not None and in_session
            else math.inf,
            decides=r.nxt_exits if nxt else not auction or vi is not None or r.opening_auction_stop,
        )
        for pid, r in rules.rules.items()
    }
    result = PassResult()
    moved: list[tuple[hot.Watch, int | None, int]] = []
    # The screen reads the book's columns and each symbol's price and time; a position is
    # decoded (a Watch) and its full price read only when it is evaluated exactly.
    examine, result.evaluated, result.skipped_no_price = screen.screen(
        screen.Columns(book.symbols, book.profile_ids, book.lows, book.highs, book.opened),
        price_of,
        in_opening,
        due,
        functools.partial(_held, today=today),
    )
    if prices is None:
        wanted = sorted({book.symbols[i] for i in examine})
        prices = market_prices.prices(wanted, use_cache=use_cache) if wanted else {}
    decided = []
    for i in examine:
        px = prices.get(book.symbols[i])
        if px is None:  # its price row went away since the screen read it
            continue
        result.examined += 1
        watch = book[i]
        profile_id = book.profile_ids[i]
        opened = book.opened[i]
        profile = rules.rules[profile_id]
        trade = _trade(px, opening, in_session=in_session, auction=auction, vi=vi is not None)
        ev = evaluate(
            profile,
            watch.holding(_held(opened, today)),
            trade,
            gap_down_at=gaps.get(watch.position_id),
        )
        if ev.decision is not None:
            decided.append((watch, ev, ev.decision, profile, trade))
        elif _marks_moved(
            profile, (watch.high_water_mark, watch.peak_qty), (ev.high_water_mark, ev.peak_qty)
        ):
            moved.append((watch, ev.high_water_mark, ev.peak_qty))
    # A stock in a volatility interruption: its exit joins the call auction or waits, as its
    # profile says (market/vi.py); read for the decided exits only, in one round trip.
    interrupted = (
        market_vi.vis_of(sorted({w.symbol for w, *_ in decided})) if decided and not vi else {}
    )
    # Exits decided in one pass (the open's burst) go out largest loss first: with KIS's rate
    # the last may leave seconds after the first, and the deepest loss is the one to cut first.
    for watch, ev, decision, profile, trade in sorted(decided, key=_loss, reverse=True):
        in_vi = vi or interrupted.get(watch.symbol)
        if decision.rule == "GAP_DOWN":
            result.exits += gap_down_open(watch.position_id, decision) is not None
        elif in_vi is not None and profile.vi_wait:
            _vi_wait(watch, decision, in_vi)
        else:
            intent = exit_decide(
                position_id=watch.position_id,
                rules=profile,
                trade=trade,
                screened=(watch, ev),
                venue=venue,
                vi=in_vi,
            )
            if intent is not None:
                result.exits += 1
                if trade.lower_limit is not None and intent.limit_price == trade.lower_limit:
                    _limit_down(intent, trade)
    if moved:
        _marks_raise(moved)
    return result


def _limit_down(intent: OrderIntent, trade: Trade) -> None:
    """An exit placed at the day's lower limit: it may not fill (sellers queue there), and it is
    kept in the queue rather than priced again (execution's expiry leaves it): alerted once a
    day per position."""
    day = trade.at.astimezone(clock.SEOUL).date()
    alert_raise(
        kind=Alert.Kind.EXIT,
        severity=Alert.Severity.WARNING,
        subject=intent.symbol,
        key=f"limit-down:{intent.position_id}:{day:%Y%m%d}",
        # Its English keeps its Korean summary (tests/trading/test_exit_pass.py reads it).
        message=gettext(
            "%(rule)s of %(qty)s %(symbol)s placed at the lower limit %(lower_limit)s: it may "
            "not fill while sellers queue there. It keeps its place in the queue and is not "
            "priced again. / 하한가에 손절 주문을 냈습니다. 체결되지 않을 수 있으며, 대기 "
            "순서를 지키기 위해 다시 내지 않습니다."
        )
        % {
            "rule": intent.intent_type,
            "qty": intent.qty,
            "symbol": intent.symbol,
            "lower_limit": f"{trade.lower_limit:,}",
        },
    )


def _vi_wait(watch: hot.Watch, decision: Decision, vi: market_vi.Vi) -> None:
    """An exit its profile holds back while the stock is in a VI: nothing is written, the rule
    is decided again on the first trade after the auction; the wait is recorded once per VI."""
    logger.info(
        "exit.vi_wait position_id=%s rule=%s price=%s: %s",
        watch.position_id,
        decision.rule,
        decision.price,
        vi.describe(),
    )
    alert_raise(
        kind=Alert.Kind.EXIT,
        severity=Alert.Severity.WARNING,
        subject=watch.symbol,
        key=f"vi-wait:{watch.position_id}:{int(vi.since)}",
        message=gettext(
            "%(rule)s of %(symbol)s (%(reason)s) waits: the stock is %(vi)s, and its profile "
            "waits for trading to resume. It is decided again on the first trade after the "
            "auction."
        )
        % {
            "rule": decision.rule,
            "symbol": watch.symbol,
            "reason": decision.reason,
            "vi": vi.describe(),
        },
    )


def _loss(decided: tuple) -> Decimal:
    """The KRW loss a decided exit stands at: (cost − price) × the shares it sells."""
    watch, _, decision, _, trade = decided
    return (Decimal(watch.avg_price) - trade.price) * decision.qty


def _marks_moved(rules: Rules, before: tuple, after: tuple) -> bool:
    """Whether an exit state's marks (the high-water mark first, then peak qty and the like)
    moved in a way worth a write: the high-water mark counts only where a rule reads it, for a
    trailing stop."""
    if rules.trailing_pct is None:
        before, after = before[1:], after[1:]
    return before != after


def _seconds(t: dt.time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@functools.lru_cache(maxsize=1024)
def _held(opened: int, today: dt.date) -> int:
    """Trading days held since the day with ordinal `opened`."""
    return market_calendar.trading_days_between(dt.date.fromordinal(opened), today)


# The exit states locked in position id order first (execution/locks.py).
_MARKS_RAISE = """
WITH {locked}
UPDATE {table} AS s SET
    high_water_mark = GREATEST(COALESCE(s.high_water_mark, 0), v.mark),
    peak_qty = GREATEST(s.peak_qty, v.peak), updated_at = now()
FROM (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])) AS v(id, mark, peak),
     locked
WHERE s.position_id = v.id AND locked.position_id = v.id
"""


def _marks_raise(moved: list[tuple[hot.Watch, int | None, int]]) -> None:
    """Raise the high-water marks and peak qtys the pass saw move, in one statement. Never
    lowers either (another evaluator may have seen a higher price)."""
    ids = [w.position_id for w, _, _ in moved]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _MARKS_RAISE.format(
                    locked=beside_locked_sql(PositionExitState),
                    table=PositionExitState._meta.db_table,
                ),
                [ids, ids, [m or 0 for _, m, _ in moved], [p for _, _, p in moved]],
            )
        hot.positions_changed(w.symbol for w, _, _ in moved)


_MARKS_SET = """
UPDATE {exit_state} SET high_water_mark = %s, peak_qty = %s, tiers_done = %s, updated_at = %s
WHERE position_id = %s
"""


@functools.cache
def _sql(template: str) -> str:
    return template.format(exit_state=PositionExitState._meta.db_table)


@dataclass
class Locked:
    """A managed position locked for an exit, with its exit state and the trading state."""

    position: Position
    state: PositionExitState
    trading_state: str | None


def _lock_position(position_id: int) -> tuple[Position, str | None] | None:
    """The ledger's lock alone, with the trading state in force; None without the position."""
    locked = position_lock(position_id)
    return None if locked is None else (locked[0], locked[2])


# The exit state's marks, locked with the position (execution/locks.py's order).
_MARKS = Beside(PositionExitState, ("high_water_mark", "peak_qty", "tiers_done", "paused_at"))


def _lock(position_id: int) -> Locked | None:
    """Lock the position and its exit state (in the caller's transaction); None when the
    position is not managed (any more)."""
    locked = position_lock(position_id, _MARKS)
    if locked is None:
        return None
    position, (high_water_mark, peak_qty, tiers_done, paused_at), trading_state = locked
    if paused_at is not None:  # a person paused its exits since the screen read it
        return None
    state = PositionExitState(
        position_id=position_id,
        high_water_mark=high_water_mark,
        peak_qty=peak_qty,
        tiers_done=tiers_done,
    )
    return Locked(position, state, trading_state)


def _in_vi(decision: Decision, vi: market_vi.Vi | None) -> Decision:
    """The decision, its reason telling first, when the stock is in a VI, that the order joins
    the VI's call auction."""
    if vi is None:
        return decision
    reason = gettext("%(vi)s: the order joins it; %(reason)s") % {
        "vi": vi.describe(),
        "reason": decision.reason,
    }
    return replace(decision, reason=reason)


def _decide_at_once(
    seen: hot.Watch, ev: Evaluation, venue: Venue, vi: market_vi.Vi | None = None
) -> tuple[bool, OrderIntent | None]:
    """The exit decided on what the screen saw (a cached Watch, `ev` its evaluation), in one
    statement (execution's exit_open_if): written, with the exit state's marks, only if the
    position and its exit state still hold what was seen. (True, the exit or None) when they
    did; (False, None) when they did not (nothing written): then they must be locked and
    read."""
    if ev.decision is None or ev.decision.rule == "GAP_DOWN":
        return False, None
    decision = _in_vi(ev.decision, vi)
    marks = (ev.high_water_mark, ev.peak_qty, ev.tiers_done)
    was = (seen.high_water_mark, seen.peak_qty, seen.tiers_done)
    went, intent = exit_open_if(
        Seen(seen.position_id, seen.symbol, seen.qty, seen.available, Decimal(seen.avg_price)),
        qty=decision.qty,
        intent_type=decision.rule,
        reason=decision.reason[:255],
        idempotency_key=f"exit:{seen.position_id}:{decision.rule}:{uuid.uuid4()}",
        limit_price=decision.limit_price,
        event_at=decision.at,
        trigger_price=decision.price,
        venue=venue,
        guards=[
            Guard(
                PositionExitState,
                where={"position_id": seen.position_id},
                expect={
                    "profile_id": seen.profile_id,
                    "paused_at": None,
                    "high_water_mark": was[0],
                    "peak_qty": was[1],
                    "tiers_done": was[2],
                },
            )
        ],
        writes=[
            Update(
                PositionExitState,
                where={"position_id": Ref.POSITION_ID},
                values={
                    "high_water_mark": marks[0],
                    "peak_qty": marks[1],
                    "tiers_done": marks[2],
                    "updated_at": clock.now(),
                },
            )
        ]
        if marks != was
        else [],
    )
    if went and intent is not None:
        _opened(seen.position_id, decision, intent)
    return went, intent


def exit_decide(
    *,
    position_id: int,
    rules: Rules,
    trade: Trade,
    screened: tuple[hot.Watch, Evaluation] | None = None,
    venue: Venue = Venue.KRX,
    vi: market_vi.Vi | None = None,
) -> OrderIntent | None:
    """Open the exit the rules decide through the ledger, to `venue`, or None when, seen from
    the locked rows, nothing fires any more. `vi`: the stock is in that VI, and the order joins
    its call auction (the decision's reason says so first).

    With `screened` (what the screen saw, and its evaluation at `trade`), first in
    one statement that writes only if the rows still hold what was seen (_decide_at_once). Else,
    or when they moved, decided again under the exit state's and the position's locks, in
    three round trips and the commit: one statement locks both rows and reads the trading
    state in force, one writes the intent, its reservation and its recorded order (the ledger's
    exit_intent_open_locked), one the exit state, only when the evaluation moved it (a raised
    mark, a tier done)."""
    if screened is not None:
        went, intent = _decide_at_once(*screened, venue, vi)
        if went:
            return intent
    today = clock.now_seoul().date()
    with transaction.atomic():
        locked = _lock(position_id)
        if locked is None or locked.position.status != Position.Status.OPEN:
            return None
        position, state = locked.position, locked.state
        ev = evaluate(rules, _holding(position, state, today), trade)
        marks = (ev.high_water_mark, ev.peak_qty, state.tiers_done)
        decision: Decision | None = None if ev.decision is None else _in_vi(ev.decision, vi)
        intent = None
        if decision is not None:
            intent = _open(
                position_id,
                decision,
                f"exit:{position_id}:{decision.rule}:{uuid.uuid4()}",
                locked=(position, locked.trading_state),
                new_key=True,
                venue=venue,
            )
            if intent is not None:
                marks = (ev.high_water_mark, ev.peak_qty, ev.tiers_done)
        if _marks_moved(rules, (state.high_water_mark, state.peak_qty, state.tiers_done), marks):
            _marks_set(position, marks)
    return intent


def exit_pause(*, position_id: int, paused: bool, by: str) -> PositionExitState:
    """Pause (or resume) one position's exits: while paused, none is decided for it, GAP_DOWN
    included, and its orders already sent stay as they are. InvalidInput for a position the
    engine does not manage."""
    if type(position_id) is not int:
        raise InvalidInput("position_id", "must be a position's id.")
    with transaction.atomic():
        state = (
            alone_qs_for_update(PositionExitState)
            .select_related("position")
            .filter(position_id=position_id)
            .first()
        )
        if state is None:
            raise InvalidInput(
                "position_id",
                gettext_noop("position %(position)s has no exit state."),
                position=position_id,
            )
        state.paused_at = clock.now() if paused else None
        state.paused_by = by[:150] if paused else ""
        state.save(update_fields=["paused_at", "paused_by", "updated_at"])
        hot.positions_changed([state.position.symbol])
    logger.warning(
        "exit.%s position_id=%s symbol=%s by=%s",
        "paused" if paused else "resumed",
        position_id,
        state.position.symbol,
        by,
        extra={"position_id": position_id},
    )
    return state


# The exits the engine decides by itself (not a person's MANUAL, not the emergency FLATTEN).
ENGINE_EXITS = EXIT_INTENT_TYPES - {IntentType.MANUAL, IntentType.FLATTEN}


# Who paused a position's exits on a refusal: KIS at KRX (a person resumes them), or Nextrade
# (resumed by themselves once KRX's exit phases begin: nxt_pauses_lift).
KIS_PAUSE, NXT_PAUSE = "KIS", "KIS (Nextrade)"


def exit_refused(*, order: Order, reason: str) -> PositionExitState | None:
    """KIS refused an exit the engine decided, for another reason than the market's hours
    (those hold the whole engine until the next phase: market_hold). Decided again at the next
    pass or tick, the same order would be refused again, and again: KIS holds fewer shares than
    the ledger (sold outside Aegis), the stock is halted, or its venue does not trade it. So the
    position's exits are paused, with an alert: a refusal at KRX until a person has looked,
    reconciled and resumed them (critical); one at Nextrade, which may not trade the stock or
    may have halted it there, until KRX's next exit phase (a warning). None, doing nothing, for
    any other order."""
    if order.intent_id is None:  # no intent: not the engine's
        return None
    intent_type = (
        OrderIntent.objects.filter(pk=order.intent_id).values_list("intent_type", flat=True).first()
    )
    if intent_type not in ENGINE_EXITS:
        return None
    nxt = order.venue == Venue.NXT
    try:
        state = exit_pause(
            position_id=order.position_id, paused=True, by=NXT_PAUSE if nxt else KIS_PAUSE
        )
    except InvalidInput:  # not managed by the engine
        return None
    what = {
        "rule": intent_type,
        "qty": order.qty,
        "symbol": order.symbol,
        "order": order.pk,
        "reason": reason,
    }
    if nxt:
        message = gettext(
            "Nextrade refused %(rule)s of %(qty)s %(symbol)s (order %(order)s): %(reason)s. "
            "The position's exits wait for KRX's next session, where they resume by "
            "themselves (Nextrade may not trade the stock, or halted it there). / "
            "넥스트레이드가 청산 주문을 거부했습니다. 이 포지션의 청산은 KRX 다음 장에서 "
            "자동으로 다시 시작합니다."
        )
    else:
        message = gettext(
            "KIS refused %(rule)s of %(qty)s %(symbol)s (order %(order)s): %(reason)s. The "
            "position's exits are paused, so that it is not sent again at every pass: check "
            "the holding at KIS (sold outside Aegis? a trading halt?), reconcile, then resume "
            "its exits on its exit state's page. / KIS가 청산 주문을 거부했습니다. 같은 "
            "주문이 되풀이되지 않도록 이 포지션의 자동 청산을 멈췄습니다. KIS 잔고를 확인하고 "
            "대사한 뒤 청산 상태 화면에서 다시 시작하세요."
        )
    alert_raise(
        kind=Alert.Kind.EXIT,
        severity=Alert.Severity.WARNING if nxt else Alert.Severity.CRITICAL,
        subject=order.symbol,
        state="paused",
        key=f"exit-refused:{order.pk}",
        message=message % what,
    )
    return state


def nxt_pauses_lift(now: dt.datetime) -> int:
    """Resume the exits a Nextrade refusal paused once KRX's exit phases have begun (its
    opening auction on a regular day): they are decided there from then on. How many."""
    deciding = exit_phase(now.astimezone(clock.SEOUL))
    if deciding is None or deciding[1] is not Venue.KRX:
        return 0
    paused = PositionExitState.objects.filter(paused_by=NXT_PAUSE, paused_at__isnull=False)
    ids = list(paused.values_list("position_id", flat=True))
    for position_id in ids:
        exit_pause(position_id=position_id, paused=False, by="KRX")
    return len(ids)


def _marks_set(position: Position, marks: tuple[int | None, int, int]) -> None:
    """Write the locked exit state's marks; its cached book is forgotten once committed."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_MARKS_SET), [*marks, clock.now(), position.pk])
    hot.positions_changed([position.symbol])


def gap_down_open(position_id: int, decision: Decision) -> OrderIntent | None:
    """GAP_DOWN sells everything available, once a day: straight to the ledger, whose lock
    statement is the only database read on the way; the day's idempotency key makes a second
    evaluator's attempt return the first intent."""
    day = decision.at.astimezone(clock.SEOUL).date()
    with transaction.atomic():
        locked = _lock_position(position_id)
        if locked is None:
            return None
        return _open(position_id, decision, f"gapdown:{position_id}:{day:%Y%m%d}", locked=locked)


def _open(
    position_id: int,
    decision: Decision,
    key: str,
    locked: tuple[Position, str | None],
    new_key: bool = False,
    venue: Venue = Venue.KRX,
) -> OrderIntent | None:
    """Open the decided exit; `locked` is the position already locked in the caller's
    transaction with the trading state read beside it; `new_key` says `key` was just made."""
    try:
        intent = exit_intent_open_locked(
            locked[0],
            trading_state=locked[1],
            new_key=new_key,
            qty=decision.qty,
            intent_type=decision.rule,
            idempotency_key=key,
            reason=decision.reason[:255],
            limit_price=decision.limit_price,
            event_at=decision.at,
            trigger_price=decision.price,
            venue=venue,
        )
    except (InsufficientAvailableQty, TradingNotAllowed, PositionClosed) as exc:
        logger.info("exit.not_opened position_id=%s rule=%s: %s", position_id, decision.rule, exc)
        return None
    _opened(position_id, decision, intent)
    return intent


def _opened(position_id: int, decision: Decision, intent: OrderIntent) -> None:
    logger.info(
        "exit.opened position_id=%s rule=%s qty=%s price=%s reason=%s",
        position_id,
        decision.rule,
        intent.qty,
        decision.price,
        decision.reason,
        extra={"position_id": position_id, "rule": decision.rule, "intent_id": str(intent.pk)},
    )


def gap_prequeue(*, day: dt.date | None = None) -> int:
    """Before the bell: every managed open position's GAP_DOWN threshold, previous close ×
    (1 − gap %), kept hot until a few minutes after the open. The previous close is the last
    trade of an earlier day, or today's quote's previous close. Returns how many were kept."""
    day = day or clock.now_seoul().date()
    session = market_calendar.session(day)
    if session is None:
        return 0
    rules = hot.profiles()
    book = hot.book_from_db(rules)
    prices = dict(market_prices.price_rows(sorted({w.symbol for w in book})))
    thresholds: dict[int, Decimal] = {}
    for watch in book:
        pct, px = rules.rules[watch.profile_id].gap_down_pct, prices.get(watch.symbol)
        if pct is None or px is None:
            continue
        traded_today = dt.datetime.fromtimestamp(px.at, clock.SEOUL).date() >= day
        base = px.prev_close if traded_today else px.price
        if base:
            thresholds[watch.position_id] = gap_threshold(base, pct)
    ttl = (session.open - clock.now()).total_seconds() + hot.GAP_AFTER_OPEN_S
    if ttl > 0:
        hot.gap_thresholds_keep(day, thresholds, ttl)
    logger.info(
        "exit.gap_prequeue day=%s thresholds=%s at=%s",
        day,
        len(thresholds),
        clock.now_seoul().isoformat(sep=" ", timespec="milliseconds"),
    )
    return len(thresholds)


def prices_stale_since(*, stale_s: float, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the freshest price of any held symbol was taken (from any source), if that is at
    least `stale_s` seconds ago during the session; None otherwise (before the open nothing
    trades, and nothing held means nothing to price)."""
    now = now or clock.now()
    session = market_calendar.session(now.astimezone(clock.SEOUL).date())
    if session is None or not session.open <= now < session.close:
        return None
    symbols = list(
        Position.objects.filter(status=Position.Status.OPEN, qty__gt=0).values_list(
            "symbol", flat=True
        )
    )
    if not symbols:
        return None
    freshest = BestPrice.objects.filter(symbol__in=symbols).aggregate(at=Max("event_at"))["at"]
    since = max(freshest, session.open) if freshest else session.open
    return since if (now - since).total_seconds() >= stale_s else None


# The phases in which every held symbol should have fresh prices: trades print.
PRICED_PHASES = frozenset({Phase.CONTINUOUS, Phase.CLOSING_AUCTION})


def prices_stale_alert(*, stale_s: float, now: dt.datetime | None = None) -> list[str]:
    """The held symbols without a price from the last `stale_s` seconds while trades print
    (counted from the open at the earliest): alerted PRICES, once per episode (an episode is
    named by the oldest stale price's time, so a feed that recovers and fails again alerts
    again). Returns the stale symbols."""

    now = now or clock.now()
    at = market_calendar.moment(now)
    if at.phase not in PRICED_PHASES or at.session is None:
        return []
    held = set(
        Position.objects.filter(status=Position.Status.OPEN, qty__gt=0).values_list(
            "symbol", flat=True
        )
    )
    if not held:
        return []
    seen = dict(BestPrice.objects.filter(symbol__in=held).values_list("symbol", "event_at"))
    since = {s: max(seen[s], at.session.open) if seen.get(s) else at.session.open for s in held}
    stale = sorted(s for s, t in since.items() if (now - t).total_seconds() >= stale_s)
    if stale:
        oldest = min(since[s] for s in stale)
        alert_raise(
            kind=Alert.Kind.PRICES,
            severity=Alert.Severity.CRITICAL,
            subject=stale[0],
            key=f"prices:stale:{oldest.astimezone(clock.SEOUL):%Y%m%d%H%M%S}",
            message=gettext(
                "%(count)s held symbol(s) without a price for %(seconds)s s or more since "
                "%(since)s KST: %(symbols)s. Their exits are decided on old prices; check "
                "pricesync and KIS's stream."
            )
            % {
                "count": len(stale),
                "seconds": f"{stale_s:.0f}",
                "since": f"{oldest.astimezone(clock.SEOUL):%H:%M:%S}",
                "symbols": f"{', '.join(stale[:20])}{' …' if len(stale) > 20 else ''}",
            },
        )
    return stale
