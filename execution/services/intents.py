"""Opening and cancelling intents. An exit intent reserves the shares it will sell, under the
position's row lock, clamped to what is available (I1, I2).
"""

import datetime as dt
import enum
import functools
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction

from core import clock, metrics
from core.rows import bound_cursor, column, columns, instances
from market.calendar import Venue

from ..exceptions import (
    InsufficientAvailableQty,
    InvalidInput,
    InvalidIntentState,
    PositionClosed,
)
from ..locks import (
    Guard,
    guard_params,
    guarded_entry_sql,
    guarded_position_sql,
    position_qs_for_update,
)
from ..models import EXIT_INTENT_TYPES, IntentType, OrderIntent, Position, Side
from ..notify import cte as notice_cte
from ..notify import exit_notice
from ..signals import announce
from ..validation import check_key, check_price, check_qty, check_symbol, check_venue
from . import _ledger
from .handoff import HANDOFF
from .orders import _sql, recorded_order
from .trading_state import require_allowed

logger = logging.getLogger("aegis.ledger")


def _existing_intent(idempotency_key: str, *, position_id: int | None = None) -> OrderIntent | None:
    intent = OrderIntent.objects.filter(idempotency_key=idempotency_key).first()
    if intent is not None and position_id is not None and intent.position_id != position_id:
        raise InvalidInput(
            "idempotency_key",
            f"{idempotency_key!r} already belongs to an intent of position {intent.position_id}.",
        )
    return intent


def exit_intent_open(
    *,
    position_id: int,
    qty: int,
    intent_type: str,
    idempotency_key: str,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trigger_price: int | None = None,
    venue: str = Venue.KRX,
) -> OrderIntent:
    """Reserve up to `qty` shares of the position for a SELL to `venue` and record the intent.
    `event_at` and `trigger_price` record the moment and the price that fired it.

    The qty is clamped to what is available; when nothing is, no intent is written and
    InsufficientAvailableQty is raised. A repeated idempotency key returns the first intent.
    """
    _check_exit(
        qty=qty,
        intent_type=intent_type,
        idempotency_key=idempotency_key,
        limit_price=limit_price,
        trigger_price=trigger_price,
        venue=venue,
    )
    now = clock.now()
    with transaction.atomic():
        require_allowed(None, side=Side.SELL, operation="opening an exit")
        position = _ledger.lock_position(position_id)
        return _exit_open(
            position,
            qty=qty,
            intent_type=intent_type,
            idempotency_key=idempotency_key,
            reason=reason,
            limit_price=limit_price,
            event_at=event_at,
            trigger_price=trigger_price,
            now=now,
            venue=venue,
        )


def exit_intent_open_locked(
    position: Position,
    *,
    trading_state: str | None,
    qty: int,
    intent_type: str,
    idempotency_key: str,
    new_key: bool = False,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trigger_price: int | None = None,
    venue: str = Venue.KRX,
) -> OrderIntent:
    """exit_intent_open for a caller on the hot path that already holds `position`'s row lock
    in its own transaction, read in the statement that took it, with the trading state
    (trading_state_in_force). No savepoint and no second read: the typed exceptions are raised
    before anything is written, so the caller's transaction stays usable. `new_key` says the
    key was just made (a UUID), so no earlier intent can hold it.
    """
    _check_exit(
        qty=qty,
        intent_type=intent_type,
        idempotency_key=idempotency_key,
        limit_price=limit_price,
        trigger_price=trigger_price,
        venue=venue,
    )
    if not transaction.get_connection().in_atomic_block:
        raise InvalidInput("position", "exit_intent_open_locked needs the caller's transaction.")
    require_allowed(trading_state, side=Side.SELL, operation="opening an exit")
    return _exit_open(
        position,
        qty=qty,
        intent_type=intent_type,
        idempotency_key=idempotency_key,
        reason=reason,
        limit_price=limit_price,
        event_at=event_at,
        trigger_price=trigger_price,
        now=clock.now(),
        key_checked=new_key,
        venue=venue,
    )


def _check_exit(
    *, qty, intent_type, idempotency_key, limit_price, trigger_price, venue=Venue.KRX
) -> None:
    if intent_type not in EXIT_INTENT_TYPES:
        raise InvalidInput("intent_type", f"{intent_type!r} is not an exit intent type.")
    check_qty(qty)
    check_price(limit_price)
    check_price(trigger_price, "trigger_price")
    check_key(idempotency_key)
    check_venue(venue, limit_price=limit_price)


def _check_entry(*, symbol, qty, limit_price, idempotency_key, venue=Venue.KRX) -> None:
    check_symbol(symbol)
    check_qty(qty)
    check_price(limit_price)
    check_key(idempotency_key)
    check_venue(venue, limit_price=limit_price)


# An exit's writes on PostgreSQL as common table expressions, for one statement (PERFORMANCE.md:
# round trips dominate) under the position lock taken by the statement's CTE `go` (one row: go
# ahead; none: write nothing) or held by the caller: the intent, the shares it reserves, and,
# when its taker takes recorded orders, its order recorded (unclaimed: the send claims it right
# before the broker write, execution/services/claim.py) with the intent ORDERED (what
# order_open_recorded would do in a statement of its own). A SELL intent's shares are reserved
# by the database's trigger on its insert (migration 0016), in this same statement. A key
# already used inserts nothing and reserves nothing: the caller returns the first intent.
_INTENT_INSERT = """
intent AS (
    INSERT INTO {intent} (id, intent_type, side, position_id, symbol, venue, qty, limit_price,
                          status, reason, idempotency_key, event_at, trigger_price, created_at,
                          closed_reason)
    SELECT %(intent_id)s, %(intent_type)s, %(side)s, %(position_id)s, %(symbol)s, %(venue)s,
           %(qty)s, %(limit_price)s, CASE WHEN %(record)s THEN 'ORDERED' ELSE 'NEW' END,
           %(reason)s, %(key)s, %(event_at)s, %(trigger_price)s, %(now)s, ''
    FROM go
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, position_id, symbol, venue, side, qty, limit_price, status
)"""
_RECORDED = """
recorded AS (
    INSERT INTO {order} (id, intent_id, position_id, symbol, venue, side, qty, filled_qty,
                         limit_price, status, broker_org_no, reject_reason, created_at,
                         updated_at)
    SELECT %(order_id)s, id, position_id, symbol, venue, side, qty, 0, limit_price, 'NEW', '',
           '', %(now)s, %(now)s
    FROM intent WHERE status = 'ORDERED'
    RETURNING id
)"""
_EXIT_WRITES = f"{_INTENT_INSERT}, {_RECORDED}"
_EXIT_WRITTEN = "(SELECT count(*) FROM intent), (SELECT count(*) FROM recorded)"


@functools.cache
def _exit_open_sql(notice: str) -> str:
    """An exit under the position lock the caller holds, in one statement; `notice`: its
    notifications' CTE (_exit_notice_sql) or nothing."""
    return _sql(f"WITH go AS (SELECT 1), {_EXIT_WRITES}{notice}\nSELECT {_EXIT_WRITTEN}")


@functools.cache
def _exit_notice_sql() -> str:
    """The exit's notifications (execution/notify/), when a channel wants them: one more CTE of
    the exit's statement, writing a row per channel only when the intent is written."""
    return f", {notice_cte('notice', 'intent')}"


# An entry's intent and its recorded order (a BUY reserves nothing), under the position lock the
# caller holds.
_ENTRY_OPEN = (
    f"WITH go AS (SELECT 1), {_INTENT_INSERT}, {_RECORDED}\n"
    f"SELECT (SELECT count(*) FROM intent), (SELECT count(*) FROM recorded)"
)


class IntentWrite:
    """An intent and, when its taker takes recorded orders, its order recorded for sending,
    as part of one statement on PostgreSQL (the intent not read back). The caller
    holds the position's lock and has checked the trading state; `record_allowed` False leaves
    the order to order_open (a sell of a position KIS disagrees with)."""

    def __init__(
        self,
        *,
        side: str,
        position_id: int | None,
        symbol: str,
        qty: int,
        intent_type: str,
        idempotency_key: str,
        reason: str = "",
        limit_price: int | None = None,
        event_at: dt.datetime | None = None,
        trigger_price: int | None = None,
        now: dt.datetime | None = None,
        record_allowed: bool = True,
        venue: str = Venue.KRX,
    ) -> None:
        self.takers = HANDOFF.takers() if settings.EXECUTION_AUTO_SUBMIT else (None, None)
        self.take_id, self.take_recorded = self.takers
        now = now or clock.now()
        self.intent = OrderIntent(
            id=uuid.uuid4(),
            intent_type=intent_type,
            side=side,
            symbol=symbol,
            venue=venue,
            qty=qty,
            limit_price=limit_price,
            status=OrderIntent.Status.NEW,
            reason=(reason or "")[:255],
            idempotency_key=idempotency_key,
            event_at=event_at or now,
            trigger_price=trigger_price,
            created_at=now,
            closed_reason="",
        )
        if position_id is not None:  # an entry's is the position its statement inserts
            self.intent.position_id = position_id
        self.record = self.take_recorded is not None and record_allowed
        self.order_id = uuid.uuid4()
        # A taker that can get ready for the order (pricesync's sender) does so while the
        # statement runs and commits.
        prepare = getattr(self.take_id, "prepare", None) if self.record else None
        if prepare is not None:
            prepare()

    @property
    def params(self) -> dict:
        i = self.intent
        return {
            "intent_id": i.id,
            "intent_type": i.intent_type,
            "side": i.side,
            "position_id": i.position_id,
            "symbol": i.symbol,
            "venue": i.venue,
            "qty": i.qty,
            "limit_price": i.limit_price,
            "record": self.record,
            "reason": i.reason,
            "key": i.idempotency_key,
            "event_at": i.event_at,
            "trigger_price": i.trigger_price,
            "now": i.created_at,
            "order_id": self.order_id,
        }

    def execute(self, sql: str, more: dict | None = None) -> tuple:
        """Run the statement `sql` holding these writes (with `more` parameters of the
        caller's); its one row."""
        with bound_cursor() as cursor:
            cursor.execute(sql, self.params | (more or {}))
            return cursor.fetchone()

    def _written(self, inserted: int, recorded: int) -> OrderIntent | None:
        """The intent the statement wrote, handed to its taker once committed; None when its
        key was used."""
        if not inserted:
            return None
        intent = self.intent
        intent._state.adding = False
        intent._state.db = connection.alias
        if recorded:
            intent.status = OrderIntent.Status.ORDERED
        if settings.EXECUTION_AUTO_SUBMIT:
            order = (
                recorded_order(
                    id=self.order_id,
                    intent_id=intent.id,
                    position_id=intent.position_id,
                    symbol=intent.symbol,
                    venue=intent.venue,
                    side=intent.side,
                    qty=intent.qty,
                    limit_price=intent.limit_price,
                    at=intent.created_at,
                )
                if recorded
                else None
            )
            HANDOFF.on_commit(str(intent.id), self.takers, order)
        return intent


class _ExitWrite(IntentWrite):
    """An exit's writes (its intent, reservation and recorded order) as part of one statement.
    They follow the statement's CTE `go`, which locks the position (I1, I2) and yields one row
    when `qty` shares are available to reserve, none otherwise; the statement selects
    _EXIT_WRITTEN, which written() turns into the intent (not read back). `record_allowed`
    False: KIS disagrees with the position (see order_open_recorded). Used by _exit_open and
    exit_open_if."""

    def __init__(self, **fields: Any) -> None:
        """IntentWrite's fields but the side (the caller has checked them: _check_exit)."""
        super().__init__(side=Side.SELL, **fields)
        self.notice = exit_notice(self.intent)  # None: no channel wants exits

    @property
    def params(self) -> dict:
        params = super().params
        if self.notice is not None:
            params |= self.notice.params(self.intent.created_at)
        return params

    @property
    def notice_sql(self) -> str:
        """What the statement's CTEs take on for the notice (nothing without one)."""
        return _exit_notice_sql() if self.notice is not None else ""

    def written(self, inserted: int, recorded: int, position: Position) -> OrderIntent | None:
        """The intent the statement wrote, handed to its taker once committed; None when it
        wrote nothing. `position` is the position as it now stands (its reservation made):
        the cached copies of it are forgotten once committed, as saving it would."""
        intent = self._written(inserted, recorded)
        if intent is not None:  # after the send registered above, which goes first
            announce(position)
        return intent


# An entry on a symbol with no open position, in one statement: the new empty position (the
# partial unique index on open positions turns the INSERT of a symbol already open into
# nothing, after waiting for an opener still in its transaction), the intent on it, and its
# recorded order. The intent's position is the one inserted (`go`), not a parameter.
# A symbol's new empty position (_OPEN_POSITION, below) as the CTE `opened`.
_POSITION_OPENED = """
opened AS ({open_position}),
go AS (SELECT id AS position_id FROM opened)"""
_ENTRY_NEW_WRITES = (
    _POSITION_OPENED
    + ", "
    + _INTENT_INSERT.replace("%(position_id)s", "go.position_id")
    + ", "
    + _RECORDED
)
# What the statement selects: whether the intent and its order were written, and the new
# position's columns (NULLs when the symbol had an open position).
_ENTRY_WRITTEN = """
SELECT (SELECT count(*) FROM intent), (SELECT count(*) FROM recorded), {opened}
FROM (SELECT 1) one LEFT JOIN opened ON true"""


class _EntryWrite(IntentWrite):
    """An ENTRY on a symbol with no open position, in one statement: its new empty position,
    the intent, and, when its taker takes recorded orders, its order recorded
    (_ENTRY_NEW_WRITES), all only when the statement's CTE `guard` yields a row. written()
    turns the statement's row (_ENTRY_WRITTEN) into the intent (not read back); None when the
    symbol had an open position or the guard no row (nothing written). The inputs are checked,
    and the trading state the caller read (`trading_state`), before anything is written."""

    def __init__(self, **fields: Any) -> None:
        """IntentWrite's fields but the side, the intent type and the position (the one the
        statement inserts); the caller has checked them (entry_open_if)."""
        super().__init__(side=Side.BUY, position_id=None, intent_type=IntentType.ENTRY, **fields)

    def written(self, row: tuple) -> OrderIntent | None:
        """The intent the statement wrote (its `row`), handed to its taker once committed, and
        its new position announced (signals.position_changed) after that; None when the symbol
        had an open position (nothing written)."""
        inserted, recorded = row[:2]
        [position] = instances(row[2:], Position)
        if position.pk is None:
            return None
        if not inserted:  # a position without its intent: roll back, the key was used
            raise InvalidInput(
                "idempotency_key",
                f"{self.intent.idempotency_key!r} already belongs to another intent.",
            )
        self.intent.position_id = position.pk
        intent = self._written(inserted, recorded)
        announce(position)
        return intent


def _refusal(position: Position, qty: int) -> Exception:
    """Why the ledger cannot reserve any of `qty` shares of the locked `position`."""
    if position.status != Position.Status.OPEN:
        return PositionClosed(position.pk)
    logger.warning(
        "ledger.refused position_id=%s symbol=%s requested=%s qty=%s locked_qty=%s",
        position.pk,
        position.symbol,
        qty,
        position.qty,
        position.reserved_qty,
        extra={
            "event": "ledger.refused",
            "position_id": position.pk,
            "symbol": position.symbol,
            "requested_qty": qty,
            "qty": position.qty,
            "locked_qty": position.reserved_qty,
        },
    )
    metrics.LEDGER_REFUSALS.inc()
    return InsufficientAvailableQty(
        position_id=position.pk,
        requested=qty,
        qty=position.qty,
        locked=position.reserved_qty,
    )


def _exit_open(
    position: Position,
    *,
    qty: int,
    intent_type: str,
    idempotency_key: str,
    reason: str,
    limit_price: int | None,
    event_at: dt.datetime | None,
    trigger_price: int | None,
    now: dt.datetime,
    key_checked: bool = False,
    venue: str = Venue.KRX,
) -> OrderIntent:
    """The ledger's exit, under the position's lock (I1, I2). A key already used returns its
    first intent, whatever the position's state now."""
    refused = position.status != Position.Status.OPEN or position.qty <= position.reserved_qty
    if not key_checked and refused:
        # Otherwise the statement's ON CONFLICT finds a used key: no read ahead of it.
        existing = _existing_intent(idempotency_key, position_id=position.pk)
        if existing is not None:
            return existing
    if refused:
        raise _refusal(position, qty)

    granted = min(qty, position.qty - position.reserved_qty)
    intent = _exit_write(
        position,
        intent_type=intent_type,
        qty=granted,
        limit_price=limit_price,
        reason=reason,
        idempotency_key=idempotency_key,
        event_at=event_at,
        trigger_price=trigger_price,
        now=now,
        venue=venue,
    )
    if intent is None:  # the key was used after all (by another position's intent too)
        return _used(_existing_intent(idempotency_key, position_id=position.pk))
    if granted < qty:
        logger.info(
            "ledger.clamped position_id=%s intent_id=%s requested=%s granted=%s",
            position.pk,
            intent.pk,
            qty,
            granted,
            extra={"position_id": position.pk, "intent_id": str(intent.pk)},
        )
    return intent


def _exit_write(
    position: Position,
    *,
    intent_type: str,
    qty: int,
    limit_price: int | None,
    reason: str,
    idempotency_key: str,
    event_at: dt.datetime | None,
    trigger_price: int | None,
    now: dt.datetime,
    venue: str = Venue.KRX,
) -> OrderIntent | None:
    """_exit_open_sql's statement: the intent as written, or None when its key was used."""
    write = _ExitWrite(
        position_id=position.pk,
        symbol=position.symbol,
        qty=qty,
        intent_type=intent_type,
        idempotency_key=idempotency_key,
        reason=reason,
        limit_price=limit_price,
        event_at=event_at,
        trigger_price=trigger_price,
        now=now,
        record_allowed=position.broker_qty is None,
        venue=venue,
    )
    inserted, recorded = write.execute(_exit_open_sql(write.notice_sql))
    if inserted:  # the trigger reserved its shares: the in-memory copy follows
        position.reserved_qty += qty
        position.updated_at = now
    return write.written(inserted, recorded, position)


# A symbol's new empty position in one statement, no savepoint: the partial unique index on open
# positions turns the INSERT of a symbol already open into nothing (after waiting for an opener
# still in its transaction), and the caller then locks the open one.
_NEW_POSITION = """
INSERT INTO {position} (symbol, status, qty, reserved_qty, avg_price, realized_pnl, opened_at,
                        updated_at)
{row}
ON CONFLICT (symbol) WHERE status = 'OPEN' DO NOTHING
RETURNING {columns}
"""
_OPEN_POSITION = _NEW_POSITION.replace(
    "{row}", "VALUES (%(symbol)s, 'OPEN', 0, 0, 0, 0, %(now)s, %(now)s)"
)
# The same, inserting only when the statement's CTE `guard` yields a row (_EntryWrite).
_OPEN_POSITION_IF = _NEW_POSITION.replace(
    "{row}", "SELECT %(symbol)s, 'OPEN', 0, 0, 0, 0, %(now)s, %(now)s FROM guard"
)


@functools.cache
def _open_position_sql() -> str:
    return _sql(_OPEN_POSITION.replace("{columns}", columns(Position)))


def _lock_or_open_position(symbol: str) -> tuple[Position, bool]:
    """The symbol's open position, locked; a new empty one if there is none (True). A new one
    is inserted unannounced: the caller announces it once its intent's send is
    registered, so the send runs first after the commit."""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_open_position_sql(), {"symbol": symbol, "now": clock.now()})
            row = cursor.fetchone()
        if row is not None:
            return instances(row, Position)[0], True
        position = (
            position_qs_for_update().filter(symbol=symbol, status=Position.Status.OPEN).first()
        )
        if position is not None:
            return position, False
        # The open position the INSERT met was closed before this read (each statement sees
        # what is committed when it starts): the symbol has none now, so insert again.


def _used(intent: OrderIntent | None) -> OrderIntent:
    """The intent whose key an insert met (ON CONFLICT): it exists, intents are never
    deleted."""
    if intent is None:
        raise RuntimeError("an idempotency key met on insert has no intent")
    return intent


def _existing_entry(idempotency_key: str, symbol: str) -> OrderIntent | None:
    """The entry that holds `idempotency_key`; InvalidInput when another intent holds it."""
    existing = _existing_intent(idempotency_key)
    if existing is not None and (
        existing.symbol != symbol or existing.intent_type != IntentType.ENTRY
    ):
        raise InvalidInput(
            "idempotency_key",
            f"{idempotency_key!r} already belongs to another intent ({existing.pk}).",
        )
    return existing


def entry_intent_open(
    *,
    symbol: str,
    qty: int,
    idempotency_key: str,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trading_state: str | None = None,
    new_key: bool = False,
    venue: str = Venue.KRX,
) -> OrderIntent:
    """Record a BUY intent for `symbol`, opening an empty position to hold what it buys, for an
    order to `venue` (market.calendar.Venue).

    A caller already in a transaction that read the trading state (trading_state_get) passes
    it as `trading_state`; `new_key` says no intent can hold the key yet (the caller holds the
    lock of what the key names). Either saves a query; the refusals are the same.
    """
    _check_entry(
        symbol=symbol,
        qty=qty,
        limit_price=limit_price,
        idempotency_key=idempotency_key,
        venue=venue,
    )
    now = clock.now()

    with transaction.atomic():
        require_allowed(trading_state, side=Side.BUY, operation="opening an entry")
        existing = None if new_key else _existing_entry(idempotency_key, symbol)
        if existing is not None:
            return existing
        position, created = _lock_or_open_position(symbol)
        write = IntentWrite(
            side=Side.BUY,
            position_id=position.pk,
            symbol=symbol,
            qty=qty,
            intent_type=IntentType.ENTRY,
            idempotency_key=idempotency_key,
            reason=reason,
            limit_price=limit_price,
            event_at=event_at,
            now=now,
            venue=venue,
        )
        intent = write._written(*write.execute(_sql(_ENTRY_OPEN)))
        if intent is None:  # the key was used after all
            return _used(_existing_entry(idempotency_key, symbol))
        if created:
            announce(position)
        return intent


def intent_cancel(*, intent_id: object, reason: str) -> OrderIntent:
    """Withdraw an intent that has not become an order; its reserved shares are released."""
    position_id = _ledger.position_id_of_intent(intent_id)
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        intent = _ledger.lock_intent(intent_id)
        if intent.status != OrderIntent.Status.NEW:
            raise InvalidIntentState(intent.pk, intent.status, "cancel")
        intent.status = OrderIntent.Status.CANCELLED
        intent.closed_reason = (reason or "cancelled")[:255]
        intent.save(update_fields=["status", "closed_reason"])
        if intent.side == Side.SELL:
            _ledger.release(position, intent.qty)
        _ledger.close_if_flat(position)
        _ledger.save_position(position)
    return intent


# --- writes decided on what the caller saw, with the rows of the apps above beside them -------
#
# The exit engine (trading) and the router (picks) decide on copies read without a lock and
# write in one statement that holds only if nothing they saw moved: the position (Seen), their
# own rows (locks.Guard) and the trading state, locked in the lock order (execution/locks.py).
# Their own rows written beside the intent (Insert, Update) are named as models and values:
# every statement is written here, none by them.


class Ref(enum.Enum):
    """A value an Insert or Update takes from the intent the statement wrote."""

    INTENT_ID = "intent.id"
    POSITION_ID = "intent.position_id"


@dataclass(frozen=True)
class Plus:
    """The column's value raised by `by` (a counter)."""

    by: int


@dataclass(frozen=True)
class Insert:
    """A row of an app above, inserted once the intent is written (not when it is not), left
    alone if it exists already (ON CONFLICT DO NOTHING)."""

    model: type[models.Model]
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Update:
    """The rows of an app above found by `where`, updated once the intent is written."""

    model: type[models.Model]
    where: Mapping[str, Any]
    values: Mapping[str, Any]


Write = Insert | Update


@dataclass(frozen=True)
class Seen:
    """An open position as its caller saw it (a cached copy): the exit is written only if the
    locked row still holds this."""

    position_id: int
    symbol: str
    qty: int
    available: int
    avg_price: Decimal


def _kind(value: Any) -> Any:
    return value if isinstance(value, Ref) else ("plus" if isinstance(value, Plus) else None)


def _write_shape(write: Write) -> tuple:
    values = tuple((name, _kind(v)) for name, v in write.values.items())
    if isinstance(write, Insert):
        return (Insert, write.model, values, ())
    return (Update, write.model, values, tuple((n, _kind(v)) for n, v in write.where.items()))


def _write_params(writes: Sequence[Write]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, write in enumerate(writes):
        for part, values in (("v", write.values), ("w", getattr(write, "where", {}))):
            for name, value in values.items():
                if not isinstance(value, Ref):
                    params[f"w{i}_{part}_{name}"] = value.by if isinstance(value, Plus) else value
    return params


def _value_sql(model: type[models.Model], name: str, how: Any, param: str) -> str:
    """A write's value: taken from the intent, the column raised, or the parameter, cast to
    the column's type (an INSERT ... SELECT gives an untyped NULL no type of its own)."""
    if isinstance(how, Ref):
        return how.value
    if how == "plus":
        return f"t.{column(model, name)} + {param}"
    return f"CAST({param} AS {model._meta.get_field(name).db_type(connection)})"  # type: ignore[union-attr]


def _writes_sql(shapes: tuple) -> str:
    """The CTEs w<i> of the writes of `shapes`, each FROM intent: nothing when no intent."""
    ctes = []
    for i, (kind, model, values, where) in enumerate(shapes):
        table = model._meta.db_table
        set_to = [(n, _value_sql(model, n, how, f"%(w{i}_v_{n})s")) for n, how in values]
        if kind is Insert:
            ctes.append(
                f"w{i} AS (INSERT INTO {table} ({', '.join(column(model, n) for n, _ in set_to)})"
                f" SELECT {', '.join(v for _, v in set_to)} FROM intent ON CONFLICT DO NOTHING)"
            )
            continue
        sets = ", ".join(f"{column(model, n)} = {v}" for n, v in set_to)
        conditions = " AND ".join(
            f"t.{column(model, n)} = {_value_sql(model, n, how, f'%(w{i}_w_{n})s')}"
            for n, how in where
        )
        ctes.append(f"w{i} AS (UPDATE {table} t SET {sets} FROM intent WHERE {conditions})")
    return "".join(f", {cte}" for cte in ctes)


@functools.cache
def _exit_if_sql(guards: tuple, writes: tuple, notice: str = "") -> str:
    return (
        f"WITH {guarded_position_sql(guards)}, {_sql(_EXIT_WRITES)}{_writes_sql(writes)}"
        f"{notice}\nSELECT (SELECT count(*) FROM go), {_EXIT_WRITTEN}"
    )


def exit_open_if(
    seen: Seen,
    *,
    qty: int,
    intent_type: str,
    idempotency_key: str,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trigger_price: int | None = None,
    guards: Sequence[Guard] = (),
    writes: Sequence[Write] = (),
    venue: str = Venue.KRX,
) -> tuple[bool, OrderIntent | None]:
    """An exit of up to `qty` shares to `venue` decided on what the caller saw, in one statement
    (outside a transaction, one round trip, its commit included): the position locked, then each
    guard's row, and the exit written (its intent, reservation and recorded order, and the
    `writes` beside them) only if the position is still as `seen`, KIS has not disagreed with
    it, every guard holds and the trading state lets exits out. (True, the intent) when it held
    (None for the intent: its key was used); (False, None), nothing written, when anything
    moved: the caller locks the rows and decides again."""
    _check_exit(
        qty=qty,
        intent_type=intent_type,
        idempotency_key=idempotency_key,
        limit_price=limit_price,
        trigger_price=trigger_price,
        venue=venue,
    )
    if seen.available <= 0:
        return False, None
    write = _ExitWrite(
        position_id=seen.position_id,
        symbol=seen.symbol,
        qty=min(qty, seen.available),
        intent_type=intent_type,
        idempotency_key=idempotency_key,
        reason=reason,
        limit_price=limit_price,
        event_at=event_at,
        trigger_price=trigger_price,
        venue=venue,
    )
    went, inserted, recorded = write.execute(
        _exit_if_sql(
            tuple(g.shape() for g in guards), tuple(map(_write_shape, writes)), write.notice_sql
        ),
        {
            "seen_id": seen.position_id,
            "seen_qty": seen.qty,
            "seen_available": seen.available,
            "seen_avg_price": seen.avg_price,
        }
        | guard_params(guards)
        | _write_params(writes),
    )
    if not went:
        return False, None
    position = Position.from_db(
        connection.alias,
        ["id", "symbol", "status", "qty", "reserved_qty", "avg_price"],
        [
            seen.position_id,
            seen.symbol,
            Position.Status.OPEN,
            seen.qty,
            seen.qty - seen.available + write.intent.qty,
            seen.avg_price,
        ],
    )
    return True, write.written(inserted, recorded, position)


@functools.cache
def _entry_if_sql(guards: tuple, writes: tuple) -> str:
    return _sql(
        f"WITH {guarded_entry_sql(guards)}, {_ENTRY_NEW_WRITES}{_writes_sql(writes)}"
        f"{_ENTRY_WRITTEN}".replace("{open_position}", _OPEN_POSITION_IF)
        .replace("{columns}", columns(Position))
        .replace("{opened}", columns(Position, "opened"))
    )


def entry_open_if(
    *,
    symbol: str,
    qty: int,
    idempotency_key: str,
    trading_state: str,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    guards: Sequence[Guard] = (),
    writes: Sequence[Write] = (),
    venue: str = Venue.KRX,
) -> OrderIntent | None:
    """An ENTRY to `venue` on a symbol with no open position, in one statement: each guard's row
    locked, then the new empty position, the intent, its recorded order and the `writes` beside
    them, only if every guard holds and the trading state lets entries out (`trading_state`: as
    the caller read it, checked first). None, with nothing written, when the symbol has an open
    position or anything moved: the caller opens the entry on the locked path
    (entry_intent_open). InvalidInput when the key belongs to another intent."""
    _check_entry(
        symbol=symbol,
        qty=qty,
        limit_price=limit_price,
        idempotency_key=idempotency_key,
        venue=venue,
    )
    require_allowed(trading_state, side=Side.BUY, operation="opening an entry")
    write = _EntryWrite(
        symbol=symbol,
        qty=qty,
        idempotency_key=idempotency_key,
        limit_price=limit_price,
        reason=reason,
        event_at=event_at,
        venue=venue,
    )
    return write.written(
        write.execute(
            _entry_if_sql(tuple(g.shape() for g in guards), tuple(map(_write_shape, writes))),
            guard_params(guards) | _write_params(writes),
        )
    )
