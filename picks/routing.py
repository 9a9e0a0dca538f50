"""The router: each NEW pick through the three gates (picks/gates.py) into an ENTRY intent with
its source's exit profile, or a rejection with its gate and reason. A pick is routed at most
once, whichever path reaches it first (the event on ingest, or the orphan sweep): it is taken
with FOR UPDATE SKIP LOCKED among NEW picks, and everything it becomes is written in the same
transaction as its new status.

The order of the work keeps the locks short: the checks that need nothing but the pick and the
clock first; then the market, read from the hot cache or asked of the broker, outside any
transaction (or joined, when the ingest's heads-up began reading it while the pick was being
stored: market_prefetch), and beside it the account, the pick, the gate settings and the
trading state in one statement; then the decision. A BUY entry decided on what was read is
written in one statement that takes the router's locks and writes only if nothing it was
decided on moved (_route_at_once). Otherwise, in one transaction, the pick's row and the gate
settings' row locked (the latter makes risk decisions one at a time, so two picks cannot both
take the last open slot or the last of the cash), the account read again unless no pick was
routed since, the gates decided, and the outcome written.
"""

import dataclasses
import datetime as dt
import functools
import logging
import math
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils.translation import gettext

from core import clock, metrics
from core.rows import bound_cursor, columns, instances
from execution.broker import get_broker
from execution.exceptions import InsufficientAvailableQty, TradingNotAllowed
from execution.gate import trading_state_in_force_sql
from execution.locks import Guard, router_lock
from execution.models import (
    Fill,
    IntentType,
    Order,
    OrderIntent,
    Position,
    Reconciliation,
    Side,
    TradingState,
)
from execution.notify import refusal_record
from execution.services import (
    Insert,
    Plus,
    Ref,
    Update,
    entry_intent_open,
    entry_open_if,
    exit_intent_open,
)
from execution.services.trading_state import trading_state_get
from kis.errors import KisError
from market import calendar as market_calendar
from market.models import BestPrice
from market.reads import market_lanes as _market_lanes  # the account is read on them too
from market.reads import market_prefetch, market_read
from trading.models import PositionExitState

from . import gates
from .models import GateSettings, Pick, PickSource, PositionOpener

logger = logging.getLogger("aegis.picks")

ROUTED, REJECTED, SKIPPED, DEFERRED = "routed", "rejected", "skipped", "deferred"


# --- the account, read under the router's lock ---------------------------------------------------

_ACCOUNT = """
WITH held AS (
    SELECT count(*) AS positions,
           COALESCE(sum(qty) FILTER (WHERE symbol = %(symbol)s), 0) AS symbol_qty,
           COALESCE(sum(qty - reserved_qty) FILTER (WHERE symbol = %(symbol)s), 0)
               AS symbol_available,
           COALESCE(sum(qty * avg_price) FILTER (WHERE symbol = %(symbol)s), 0) AS symbol_cost,
           COALESCE(sum(qty * avg_price), 0) AS cost
    FROM {position} WHERE status = 'OPEN'),
pending AS (
    SELECT count(*) FILTER (WHERE symbol = %(symbol)s) AS symbol_entries,
           COALESCE(sum(value) FILTER (WHERE symbol = %(symbol)s), 0) AS symbol_value,
           COALESCE(sum(value), 0) AS value
    FROM (SELECT i.symbol, i.qty * COALESCE(i.limit_price, b.price, 0) AS value
          FROM {intent} i LEFT JOIN {price} b ON b.symbol = i.symbol
          WHERE i.status = 'NEW' AND i.side = 'BUY'
          UNION ALL
          SELECT o.symbol, (o.qty - o.filled_qty) * COALESCE(o.limit_price, b.price, 0)
          FROM {order} o LEFT JOIN {price} b ON b.symbol = o.symbol
          WHERE o.status IN ('NEW', 'SUBMITTED', 'PARTIAL_FILLED') AND o.side = 'BUY')
         entries),
run AS (
    SELECT cash_krw, started_at, finished_at FROM {reconciliation}
    WHERE cash_krw IS NOT NULL ORDER BY started_at DESC LIMIT 1),
filled AS (
    SELECT COALESCE(sum(f.realized_pnl) FILTER (WHERE f.filled_at >= %(day_start)s), 0)
               AS realized,
           COALESCE(sum(f.amount) FILTER (WHERE o.side = 'BUY'
                                          AND f.filled_at >= run.started_at), 0) AS bought,
           COALESCE(sum(f.amount) FILTER (WHERE o.side = 'SELL'
                                          AND f.filled_at > run.finished_at), 0) AS sold
    FROM {fill} f JOIN {order} o ON o.id = f.order_id LEFT JOIN run ON true
    WHERE f.filled_at >= CASE WHEN run.started_at < %(day_start)s THEN run.started_at
                              ELSE %(day_start)s END)
{taken}
SELECT held.positions, held.symbol_qty, held.symbol_available, pending.symbol_entries,
       held.symbol_cost, pending.symbol_value, held.cost, pending.value, filled.realized,
       (SELECT cash_krw FROM run), filled.bought, filled.sold,
       (SELECT routed_seq FROM {gates} WHERE id = 1){taken_columns}
FROM held, pending, filled{taken_join}
"""


@functools.cache
def _account_sql(with_pick: bool = False) -> str:
    """_ACCOUNT with the table names filled in, once per process; `with_pick`: and the pick's
    take (_TAKE, unlocked) in the same statement."""
    return _ACCOUNT.format(
        position=Position._meta.db_table,
        intent=OrderIntent._meta.db_table,
        order=Order._meta.db_table,
        price=BestPrice._meta.db_table,
        fill=Fill._meta.db_table,
        reconciliation=Reconciliation._meta.db_table,
        gates=GateSettings._meta.db_table,
        taken=f", taken AS ({_take_sql(False)})" if with_pick else "",
        taken_columns=", taken.*" if with_pick else "",
        taken_join=" LEFT JOIN taken ON true" if with_pick else "",
    )


class Taken(NamedTuple):
    """A NEW pick with its source, the gate settings and the trading state in force, as one
    statement read them."""

    pick: Pick
    gate_settings: GateSettings
    state: str | None


class Ahead(NamedTuple):
    """An account read before the router's lock, with the gate settings' routed_seq its
    statement saw, and (`taken`) the pick as the same statement saw it: None when it was not
    asked for, or was not NEW."""

    account: gates.Account
    routed_seq: int | None
    taken: Taken | None = None


def account_read(symbol: str, *, trading_state: str, now: dt.datetime) -> gates.Account:
    """The account (account_ahead's), read under the router's lock."""
    return account_ahead(symbol, trading_state=trading_state, now=now).account


def account_ahead(
    symbol: str, *, trading_state: str, now: dt.datetime, pick_id: int | None = None
) -> Ahead:
    """Positions, pending entries (NEW BUY intents, open BUY orders' remainders, valued at
    their limit price or else the best price), today's realised P&L and the cash left to
    spend, in one statement with one pass over each table (2.6–2.7 ms p50 here, against
    3.0–3.4 ms for a scalar subquery per figure).

    Cash: the last D+2 deposit KIS reported (reconciliation), less buys filled since it
    started, plus sells filled since it finished (a fill in between counts against the cash,
    never for it), less what pending entries may still spend. None before any reconciliation
    read it.

    Also the gate settings' routed_seq as the same statement saw it: read outside the
    router's lock (beside the broker calls), the account holds for the decision if the locked
    row's routed_seq is still that (no pick was routed in between).

    `pick_id`: that pick too, with what the router decides on (_take's, unlocked), all as of
    the account's snapshot; the decision can then be written in one statement that holds only
    if none of it moved (_route_at_once)."""
    day_start = dt.datetime.combine(now.astimezone(clock.SEOUL).date(), dt.time(), clock.SEOUL)
    with bound_cursor() as cursor:
        cursor.execute(
            _account_sql(pick_id is not None),
            {
                "symbol": symbol,
                "day_start": connection.ops.adapt_datetimefield_value(day_start),
                "pick_id": pick_id,
            },
        )
        row = cursor.fetchone()
    (
        open_positions,
        held_qty,
        available,
        pending,
        symbol_cost,
        symbol_pending,
        total_cost,
        total_pending,
        realized,
        cash,
        bought,
        sold,
        routed_seq,
    ) = row[:13]
    taken = None
    if pick_id is not None and row[13] is not None:
        taken = Taken(*_taken_row(row[13:]), row[-1])
    return Ahead(
        gates.Account(
            trading_state=trading_state,
            open_positions=open_positions,
            symbol_held_qty=int(held_qty),
            symbol_available_qty=int(available),
            symbol_entry_pending=pending > 0,
            symbol_exposure_krw=int(symbol_cost) + int(symbol_pending),
            total_exposure_krw=int(total_cost) + int(total_pending),
            realized_today_krw=Decimal(str(realized)),
            cash_krw=None
            if cash is None
            else int(cash) - int(bought) + int(sold) - int(total_pending),
        ),
        routed_seq,
        taken,
    )


# --- exits first --------------------------------------------------------------------------------


def _exit_reserve(broker) -> tuple[Any, list[str], int] | None:
    """(the broker's rate limiter, the app keys a route uses, the slots kept for exits), or
    None for a broker without a shared rate (the embedded default's)."""
    limiter, config = getattr(broker, "limiter", None), getattr(broker, "config", None)
    if limiter is None or config is None or not hasattr(limiter, "free"):
        return None
    keys = sorted({config.query_app.fingerprint, config.order_app.fingerprint})
    reserve = max(1, math.ceil(limiter.per_second * settings.PICKS_EXIT_RESERVE_SHARE))
    return limiter, keys, reserve


def exits_short(broker) -> bool:
    """Whether the KIS rate window of the app keys a route uses has no more free slots than
    those kept for exits (settings.PICKS_EXIT_RESERVE_SHARE of the rate, at least one)."""
    reserve = _exit_reserve(broker)
    if reserve is None:
        return False
    limiter, keys, kept = reserve
    return any(limiter.free(key) <= kept for key in keys)


def exits_first(broker) -> None:
    """Before a route: wait while the rate window is short (exits_short), so that an exit
    decided meanwhile takes the slots; at most settings.PICKS_YIELD_MAX_S, then the route goes
    on (the gates' age limits judge a pick that waited)."""
    started = time.monotonic()
    while exits_short(broker) and time.monotonic() - started < settings.PICKS_YIELD_MAX_S:
        time.sleep(0.02)


# --- one pick ----------------------------------------------------------------------------------


def _reject(pick: Pick, rejection: gates.Rejection, *, routed_by: str, now: dt.datetime) -> str:
    pick.status, pick.rejected_gate = Pick.Status.REJECTED, rejection.gate
    pick.reject_reason, pick.routed_at, pick.routed_by = rejection.reason[:255], now, routed_by
    pick.save(update_fields=["status", "rejected_gate", "reject_reason", "routed_at", "routed_by"])
    # Told summed up with the period's others, if a channel wants refusals; in this transaction.
    refusal_record(
        pick_id=pick.pk,
        gate=gettext("gate %(gate)s") % {"gate": Pick.Gate(rejection.gate).label},
        reason=rejection.reason,
        at=now,
    )
    metrics.PICK_REJECTIONS.labels(str(rejection.gate)).inc()
    logger.info(
        "picks.rejected pick_id=%s source=%s symbol=%s gate=%s reason=%s",
        pick.pk,
        pick.source_id,
        pick.symbol,
        rejection.gate,
        rejection.reason,
        extra={"pick_id": pick.pk, "gate": rejection.gate},
    )
    return REJECTED


def _intent_of(pick: Pick) -> tuple[str, str]:
    """The idempotency key and the reason of the intent `pick` becomes (the pick is locked
    NEW: no intent holds its key yet)."""
    return f"pick:{pick.pk}", f"pick {pick.source_id}/{pick.external_id}"


def _routed(pick: Pick, intent: OrderIntent, *, routed_by: str, now: dt.datetime) -> None:
    pick.status, pick.intent, pick.routed_at, pick.routed_by = (
        Pick.Status.ROUTED,
        intent,
        now,
        routed_by,
    )


class NotTheOpener(Exception):
    """A SELL pick for a position another source (or an operator) opened; refused, recorded on
    the pick as a risk-gate rejection."""


def _profile_of(pick: Pick) -> int:
    """The exit profile an entry of `pick`'s is watched under (gate 1 refuses a BUY pick whose
    source has none)."""
    profile_id = pick.source.exit_profile_id
    if profile_id is None:
        raise RuntimeError(f"pick {pick.pk}: its source has no exit profile, past gate 1")
    return profile_id


def _open(pick: Pick, route: gates.Route, *, trading_state: str) -> OrderIntent:
    """The intent the pick becomes; an entry's position gets the source's exit profile. The
    ledger's services raise their refusals before writing anything, inside savepoints of
    their own, so the caller's transaction stays usable for the rejection."""
    key, reason = _intent_of(pick)
    if route.side == Side.BUY:
        intent = entry_intent_open(
            symbol=pick.symbol,
            qty=route.qty,
            idempotency_key=key,
            reason=reason,
            limit_price=route.limit_price,
            event_at=pick.received_at,
            trading_state=trading_state,
            new_key=True,
            venue=pick.source.entry_venue,
        )
        # One INSERT … ON CONFLICT DO NOTHING: a position already watched keeps its profile.
        # (The position's own save bumps its symbol's cached book once this commits.)
        PositionExitState.objects.bulk_create(
            [PositionExitState(position_id=intent.position_id, profile_id=_profile_of(pick))],
            ignore_conflicts=True,
        )
        PositionOpener.objects.bulk_create(
            [
                PositionOpener(
                    position_id=intent.position_id,
                    source_id=pick.source_id,
                    opened_at=pick.received_at,
                )
            ],
            ignore_conflicts=True,
        )
        return intent
    position = Position.objects.get(symbol=pick.symbol, status=Position.Status.OPEN)
    # The source's key is its code (the foreign key's to_field), which django-stubs cannot see.
    opener = PositionOpener.objects.filter(position=position, source=pick.source_id)  # type: ignore[misc]
    if not opener.exists():
        raise NotTheOpener(
            gettext(
                "SELL refused: the open %(symbol)s position was not opened by source "
                "%(source)s; a source sells only positions its own BUY picks opened"
            )
            % {"symbol": pick.symbol, "source": pick.source_id}
        )
    return exit_intent_open(
        position_id=position.pk,
        qty=route.qty,
        intent_type=IntentType.MANUAL,
        idempotency_key=key,
        reason=reason,
        limit_price=route.limit_price,
        event_at=pick.received_at,
    )


# Every column of the gate settings, routed_seq included: a decision holds only on the
# settings it was taken on, and only if no pick was routed since (the account holds).
_GATE_FIELDS = GateSettings._meta.concrete_fields


def _entry_at_once(
    pick: Pick,
    route: gates.Route,
    *,
    trading_state: str,
    routed_by: str,
    now: dt.datetime,
    seen: GateSettings | None = None,
) -> OrderIntent | None:
    """A BUY pick's entry, its new position watched under the source's exit profile, the source
    recorded as its opener, the pick ROUTED to the intent and the gate settings' routed_seq
    moved on, in one statement (execution's entry_open_if; the common case: the symbol has no
    open position). None, with nothing written, when the symbol has one: the caller takes
    _open's path, which locks it.

    `seen` (the gate settings the decision was taken on, read without a lock): the statement
    takes the router's locks itself (the pick, unless another router holds it; the gate
    settings) and writes only if the pick is still NEW and the settings, routed_seq included
    (the account holds), are as seen; None, with nothing written, when they are not. Without
    it, the caller holds those locks."""
    key, reason = _intent_of(pick)
    guards = []
    if seen is not None:
        guards = [
            Guard(
                Pick, where={"id": pick.pk}, expect={"status": Pick.Status.NEW}, skip_locked=True
            ),
            Guard(
                GateSettings,
                where={"id": seen.pk},
                expect={f.attname: getattr(seen, f.attname) for f in _GATE_FIELDS},
            ),
        ]
    intent = entry_open_if(
        symbol=pick.symbol,
        qty=route.qty,
        idempotency_key=key,
        trading_state=trading_state,
        limit_price=route.limit_price,
        reason=reason,
        event_at=pick.received_at,
        venue=pick.source.entry_venue,
        guards=guards,
        writes=[
            Insert(
                PositionExitState,
                {
                    "position_id": Ref.POSITION_ID,
                    "profile_id": _profile_of(pick),
                    "high_water_mark": None,
                    "peak_qty": 0,
                    "tiers_done": 0,
                    "updated_at": now,
                },
            ),
            Insert(
                PositionOpener,
                {"position_id": Ref.POSITION_ID, "source_id": pick.source_id, "opened_at": now},
            ),
            Update(
                Pick,
                where={"id": pick.pk},
                values={
                    "status": Pick.Status.ROUTED,
                    "intent_id": Ref.INTENT_ID,
                    "routed_at": now,
                    "routed_by": routed_by,
                },
            ),
            Update(GateSettings, where={"id": 1}, values={"routed_seq": Plus(1)}),
        ],
    )
    if intent is not None:
        _routed(pick, intent, routed_by=routed_by, now=now)
    return intent


# What the router reads, in one statement (written as SQL: the ORM's compiling of the three it
# replaces cost more than their round trips): the pick, if it is still NEW, with its source; the
# gate settings; the trading state in force. Under the router's locks (`lock`), the pick only if
# no other router holds it, and the gate settings' row locked: one risk decision at a time, on
# the settings in force.
_TAKE = """
SELECT {pick}, {source}, {gates}, {state_in_force}
FROM {pick_table} p JOIN {source_table} s ON s.{source_key} = p.{source_column}
CROSS JOIN {gates_table} g
WHERE p.id = %(pick_id)s AND p.status = 'NEW' AND g.id = 1
{lock}
"""


@functools.cache
def _take_sql(lock: bool) -> str:
    return _TAKE.format(
        pick=columns(Pick, "p"),
        source=columns(PickSource, "s"),
        gates=columns(GateSettings, "g"),
        lock=router_lock("p", "g") if lock else "",
        state_in_force=trading_state_in_force_sql(),
        pick_table=Pick._meta.db_table,
        source_table=PickSource._meta.db_table,
        source_column=Pick._meta.get_field("source").column,
        source_key=Pick._meta.get_field("source").target_field.column,
        gates_table=GateSettings._meta.db_table,
    )


def _take(pick_id: int, *, lock: bool = True) -> tuple[Pick, GateSettings, str] | None:
    """The pick with its source, the gate settings and the trading state; None when the pick
    is not NEW or (`lock`: under the router's locks, in the caller's transaction) another
    router holds it."""
    with bound_cursor() as cursor:
        cursor.execute(_take_sql(lock), {"pick_id": pick_id})
        row = cursor.fetchone()
    if row is None:
        if not lock and GateSettings.objects.get_or_create(pk=1)[1]:
            return _take(pick_id, lock=False)  # a new installation: its settings' row made
        return None
    pick, gate_settings = _taken_row(row)
    return pick, gate_settings, row[-1] or trading_state_get()  # no state row yet: made


def _taken_row(row) -> tuple[Pick, GateSettings]:
    """The pick, with its source, and the gate settings from a row that begins with _TAKE's
    columns."""
    pick, source, gate_settings = instances(row, Pick, PickSource, GateSettings)
    pick.source = source
    return pick, gate_settings


_limits_kept: tuple[float, gates.Limits] = (0.0, gates.Limits())
LIMITS_KEPT_S = 1.0


def limits_recent() -> gates.Limits:
    """The gate settings as of at most LIMITS_KEPT_S ago: what a rung pick is screened with
    before the broker is asked (the decision itself reads them afresh, under the lock)."""
    global _limits_kept
    until, limits = _limits_kept
    if time.monotonic() >= until:
        limits = gates.Limits.of(GateSettings.current())
        _limits_kept = (time.monotonic() + LIMITS_KEPT_S, limits)
    return limits


def _session(now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """When today's session opens and closes (None, None on a day without one)."""
    session = market_calendar.session(now.astimezone(clock.SEOUL).date())
    return (session.open, session.close) if session else (None, None)


def heads_up_serve(asks: Iterable[gates.Ask], *, broker) -> None:
    """A heads-up from the ingest (picks/doorbell.py): begin reading the market of each pick
    that passes the checks needing nothing but the pick and the clock (gates.screen, as the
    route does first), so that its route joins the read (market_prefetch)."""
    now, limits = clock.now(), limits_recent()
    opens, closes = _session(now)
    for ask in asks:
        if (
            gates.screen(
                ask, limits, trading_state=None, now=now, session_open=opens, session_close=closes
            )
            is None
        ):
            market_prefetch(ask.symbol, broker=broker, limits=limits, now=now)


def pick_route(pick_id: int, *, routed_by: str, broker, rung: gates.Ask | None = None) -> str:
    """Route one pick; returns routed, rejected, skipped (not NEW, or taken by another
    router) or deferred (the broker could not be asked: it stays NEW for the sweep).

    `rung`: the pick as the doorbell's ring carried it from the ingest. The router screens it
    and asks the broker for the market at once, without reading the pick first; the decision
    is taken on the pick's row, read under the lock, as always."""
    now = clock.now()
    opens, closes = _session(now)
    if rung is None:
        read = _take(pick_id, lock=False)
        if read is None:
            return SKIPPED
        ask, limits = gates.Ask.of(read[0]), gates.Limits.of(read[1])
    else:
        ask, limits = rung, limits_recent()
    # The checks that need no market data, before the broker is asked anything (the trading
    # state is read under the locks below).
    reason = gates.screen(
        ask, limits, trading_state=None, now=now, session_open=opens, session_close=closes
    )
    market = ahead = None
    if reason is None:
        # The account, read beside the broker calls.
        reading = _market_lanes.submit(_account_ahead, ask.symbol, now, pick_id)
        try:
            market = market_read(ask.symbol, broker=broker, limits=limits, now=now)
        except KisError as exc:
            logger.warning(
                "picks.deferred pick_id=%s symbol=%s: the broker could not be "
                "asked (%s): left NEW for the sweep",
                pick_id,
                ask.symbol,
                type(exc).__name__,
                extra={"pick_id": pick_id},
            )
            return DEFERRED
        finally:
            ahead = reading.result()
    outcome = None
    if market is not None and ahead is not None and ahead.taken is not None:
        outcome = _route_at_once(
            ahead,
            rung=rung,
            market=market,
            routed_by=routed_by,
            now=now,
            opens=opens,
            closes=closes,
        )
    if outcome is None:
        outcome = _route_locked(
            pick_id,
            rung=rung,
            market=market,
            reason=reason,
            ahead=ahead,
            routed_by=routed_by,
            now=now,
            opens=opens,
            closes=closes,
        )
    if outcome is None:  # the rung pick's screen differs on its row: the long way
        return pick_route(pick_id, routed_by=routed_by, broker=broker)
    return outcome


def _account_ahead(symbol: str, now: dt.datetime, pick_id: int) -> Ahead | None:
    """account_ahead, with the pick, on a market thread; None when it cannot be read (the
    decision reads the account under the lock instead)."""
    try:
        return account_ahead(symbol, trading_state="", now=now, pick_id=pick_id)
    except Exception as exc:  # noqa: BLE001 - read again under the lock
        logger.warning("picks.account_ahead_failed symbol=%s: %s", symbol, type(exc).__name__)
        connection.close()
        return None


def _route_at_once(
    ahead: Ahead,
    *,
    rung: gates.Ask | None,
    market: gates.Market,
    routed_by: str,
    now: dt.datetime,
    opens: dt.datetime | None,
    closes: dt.datetime | None,
) -> str | None:
    """ROUTED when the pick passed the gates on what was read ahead (`ahead`: the account, the
    pick and the settings as of one snapshot) and became an entry in one statement, outside
    any transaction: BEGIN, the locked read and COMMIT spared. None, with nothing written,
    when the locked path must decide: a rejection (written under the locks), a SELL, a
    symbol with an open position, or anything read ahead that moved."""
    if ahead.taken is None:
        return None
    pick, gate_settings, state = ahead.taken
    if state != TradingState.State.ACTIVE or (rung is not None and pick.symbol != rung.symbol):
        return None
    limits, ask = gates.Limits.of(gate_settings), gates.Ask.of(pick)
    if (
        gates.screen(
            ask, limits, trading_state=None, now=now, session_open=opens, session_close=closes
        )
        is not None
    ):
        return None
    decision = gates.route(
        ask,
        market,
        dataclasses.replace(ahead.account, trading_state=state),
        limits,
        now=now,
        session_open=opens,
        session_close=closes,
    )
    if not isinstance(decision, gates.Route) or decision.side != Side.BUY:
        return None
    intent = _entry_at_once(
        pick,
        decision,
        trading_state=state,
        routed_by=routed_by,
        now=now,
        seen=gate_settings,
    )
    if intent is None:
        return None
    _log_routed(pick, decision, intent, routed_by)
    return ROUTED


def _log_routed(pick: Pick, decision: gates.Route, intent: OrderIntent, routed_by: str) -> None:
    logger.info(
        "picks.routed pick_id=%s source=%s symbol=%s side=%s qty=%s limit=%s intent_id=%s by=%s",
        pick.pk,
        pick.source_id,
        pick.symbol,
        decision.side,
        decision.qty,
        decision.limit_price,
        intent.pk,
        routed_by,
        extra={"pick_id": pick.pk, "intent_id": str(intent.pk)},
    )


def _route_locked(
    pick_id: int,
    *,
    rung: gates.Ask | None,
    market: gates.Market | None,
    reason: str | None,
    ahead: Ahead | None,
    routed_by: str,
    now: dt.datetime,
    opens: dt.datetime | None,
    closes: dt.datetime | None,
) -> str | None:
    """pick_route's decision, under the router's locks, on the pick's row; None, with nothing
    written, for a `rung` pick that the long way must route: its row screens otherwise than
    the ring did and the market was not read for it, or it was not found (already routed,
    held by another router, or no gate settings row yet).

    The account read `ahead` of the lock is the decision's when no pick was routed since
    (the locked gate settings' routed_seq is the one it saw: every routed pick moves it on,
    under this lock); otherwise the account is read again here."""
    with transaction.atomic():
        taken = _take(pick_id)
        if taken is None:
            if rung is not None:  # or no gate settings yet: the long way makes them
                return None
            logger.info(
                "picks.skipped pick_id=%s: not NEW, or another router holds it",
                pick_id,
                extra={"pick_id": pick_id},
            )
            return SKIPPED
        pick, gate_settings, state = taken
        limits = gates.Limits.of(gate_settings)
        ask = gates.Ask.of(pick)
        if rung is not None:  # screened on the ring and settings kept up to a second
            if pick.symbol != rung.symbol:
                return None
            reason = gates.screen(
                ask, limits, trading_state=None, now=now, session_open=opens, session_close=closes
            )
            if reason is None and market is None:
                return None
        if reason is not None:
            return _reject(pick, gates.Rejection(1, reason), routed_by=routed_by, now=now)
        if ahead is not None and ahead.routed_seq == gate_settings.routed_seq:
            account = dataclasses.replace(ahead.account, trading_state=state)
        else:
            account = account_read(pick.symbol, trading_state=state, now=now)
        assert market is not None  # read whenever the pick passed the screen
        decision = gates.route(
            ask, market, account, limits, now=now, session_open=opens, session_close=closes
        )
        if isinstance(decision, gates.Rejection):
            return _reject(pick, decision, routed_by=routed_by, now=now)
        try:
            intent = None
            if decision.side == Side.BUY:
                intent = _entry_at_once(
                    pick, decision, trading_state=state, routed_by=routed_by, now=now
                )
            if intent is None:
                intent = _open(pick, decision, trading_state=state)
                _routed(pick, intent, routed_by=routed_by, now=now)
                pick.save(update_fields=["status", "intent", "routed_at", "routed_by"])
                GateSettings.objects.filter(pk=1).update(routed_seq=F("routed_seq") + 1)
        except (TradingNotAllowed, InsufficientAvailableQty) as exc:
            return _reject(pick, gates.Rejection(1, str(exc)), routed_by=routed_by, now=now)
        except NotTheOpener as exc:
            return _reject(pick, gates.Rejection(2, str(exc)), routed_by=routed_by, now=now)
    _log_routed(pick, decision, intent, routed_by)
    return ROUTED


def picks_route(
    *,
    pick_ids: Iterable[int],
    routed_by: str,
    broker=None,
    rung: dict[int, gates.Ask] | None = None,
) -> dict[str, int]:
    """Route each pick in turn; counts of each outcome. `rung`: picks as the doorbell's ring
    carried them, by id (pick_route)."""
    if broker is None:
        broker = get_broker()
    counts = {ROUTED: 0, REJECTED: 0, SKIPPED: 0, DEFERRED: 0}
    for pick_id in pick_ids:
        counts[
            pick_route(pick_id, routed_by=routed_by, broker=broker, rung=(rung or {}).get(pick_id))
        ] += 1
    return counts


def orphans(*, older_than: dt.timedelta, limit: int = 1000) -> list[int]:
    """NEW picks that arrived before now − `older_than`, oldest first."""
    cutoff = clock.now() - older_than
    return list(
        Pick.objects.filter(status=Pick.Status.NEW, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
