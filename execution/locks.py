"""Every row lock the ledger takes, in one place (the way Saleor keeps lock_objects.py).

The lock order (ARCHITECTURE.md, I2), everywhere:

    pick → gate settings (the router's, picks) → position → exit state (trading)
         → intent → order

and several rows of one table in id order. PostgreSQL locks a statement's rows in its
FOR UPDATE OF order, so a statement names its position before the rows beside it
(position_lock, guarded_position_sql) and takes several rows through an ORDER BY id ...
FOR UPDATE. An intent or order never changes position, so its position id may be read without
a lock before the position is locked. Two rows are locked alone, never with another: a pick
source while a person changes it, and the trading state while the day is ended.

The apps above the ledger name their own rows as Guards (a model and field values: no SQL of
theirs); the statements that lock them are written here, and the ledger's writes that follow
them in execution/services/intents.py.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import models
from django.db.models import QuerySet

from core.rows import bound_cursor, column, columns, instances

from .gate import allows_sql, trading_state_in_force_sql
from .models import Order, OrderIntent, Position

M = TypeVar("M", bound=models.Model)


def alone_qs_for_update(model: type[M]) -> QuerySet[M]:
    """A row locked alone, with no other lock held or taken after it in its transaction (a pick
    source, the trading state, an exit state a person pauses)."""
    return model._default_manager.select_for_update(of=("self",))


def position_qs_for_update() -> QuerySet[Position]:
    return Position.objects.select_for_update(of=("self",))


def positions_qs_for_update() -> QuerySet[Position]:
    """Several positions at once: locked in id order."""
    return position_qs_for_update().order_by("pk")


def intent_qs_for_update() -> QuerySet[OrderIntent]:
    return OrderIntent.objects.select_for_update(of=("self",))


def order_qs_for_update() -> QuerySet[Order]:
    return Order.objects.select_for_update(of=("self",))


@functools.cache
def intent_position_lock_sql(name: str, fields: tuple[str, ...]) -> str:
    """The CTE `name` that locks the position of the intent %(intent_id)s (first: the position
    before its intent) and reads its `fields`."""
    read = ", ".join(f"p.{column(Position, f)}" for f in fields)
    return (
        f"{name} AS (SELECT {read} FROM {Position._meta.db_table} p "
        f"WHERE p.id = (SELECT position_id FROM {OrderIntent._meta.db_table} "
        "WHERE id = %(intent_id)s) FOR UPDATE OF p)"
    )


# --- the rows of the apps above, beside the ledger's ------------------------------------------


@dataclass(frozen=True)
class Beside:
    """A row an app above keeps one per position (its `position_id`), locked right after the
    position and read with it: `fields` of it (trading's exit state and its marks)."""

    model: type[models.Model]
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Guard:
    """A row of an app above that one statement locks and must find holding what its caller
    saw, or it writes nothing: found by `where` (field → value), holding `expect` (field →
    value, compared IS NOT DISTINCT FROM). `skip_locked`: a row another transaction holds
    counts as moved (the router's claim on a pick)."""

    model: type[models.Model]
    where: Mapping[str, Any]
    expect: Mapping[str, Any] = field(default_factory=dict)
    skip_locked: bool = False

    def shape(self) -> tuple:
        return (self.model, tuple(self.where), tuple(self.expect), self.skip_locked)


def position_lock(
    position_id: int, beside: Beside | None = None
) -> tuple[Position, tuple, str | None] | None:
    """Lock the position (and the row `beside` it, second), in the caller's transaction, and
    read the trading state in force with them, in one statement: (the position, the beside
    row's fields, the state). None when either row is missing."""
    with bound_cursor() as cursor:
        cursor.execute(_position_lock_sql(beside), [position_id])
        row = cursor.fetchone()
    if row is None:
        return None
    [position] = instances(row, Position)
    width = len(beside.fields) if beside is not None else 0
    return position, tuple(row[-1 - width : -1]), row[-1]


@functools.cache
def _position_lock_sql(beside: Beside | None) -> str:
    if beside is None:
        return (
            f"SELECT {columns(Position, 'p')}, {trading_state_in_force_sql()} "
            f"FROM {Position._meta.db_table} p WHERE p.id = %s FOR UPDATE OF p"
        )
    read = "".join(f"b.{column(beside.model, name)}, " for name in beside.fields)
    return (
        f"SELECT {columns(Position, 'p')}, {read}{trading_state_in_force_sql()} "
        f"FROM {Position._meta.db_table} p "
        f"JOIN {beside.model._meta.db_table} b ON b.position_id = p.id "
        f"WHERE p.id = %s FOR UPDATE OF p, b"
    )


@functools.cache
def beside_locked_sql(model: type[models.Model]) -> str:
    """The CTE `locked` that locks the rows of `model` (kept one per position, as Beside) whose
    position ids are its one parameter (a bigint array), in position id order: two writers of
    overlapping rows never wait on each other in a circle. For a statement that writes those
    rows and holds no position lock (one is never taken after)."""
    return (
        f"locked AS (SELECT position_id FROM {model._meta.db_table} "
        "WHERE position_id = ANY(%s::bigint[]) ORDER BY position_id FOR UPDATE)"
    )


def router_lock(pick: str, gates: str) -> str:
    """The lock clause of the router's read: the pick (aliased `pick`) only if no other router
    holds it, then the gate settings (`gates`): one risk decision at a time, on the settings
    in force."""
    return f"FOR UPDATE OF {pick} SKIP LOCKED FOR UPDATE OF {gates}"


def guard_params(guards: Sequence[Guard]) -> dict[str, Any]:
    """The parameters of guarded_*_sql's conditions."""
    params: dict[str, Any] = {}
    for i, guard in enumerate(guards):
        params.update({f"g{i}_w_{name}": value for name, value in guard.where.items()})
        params.update({f"g{i}_e_{name}": value for name, value in guard.expect.items()})
    return params


def _guards_sql(shapes: tuple) -> tuple[str, str, str]:
    """(tables, conditions, lock clauses) of the guards of `shapes` (Guard.shape()), each as
    g<i>, in the order given (the lock order)."""
    tables, conditions, locks = [], [], []
    for i, (model, where, expect, skip_locked) in enumerate(shapes):
        alias = f"g{i}"
        tables.append(f"{model._meta.db_table} {alias}")
        conditions += [f"{alias}.{column(model, n)} = %(g{i}_w_{n})s" for n in where]
        conditions += [
            f"{alias}.{column(model, n)} IS NOT DISTINCT FROM %(g{i}_e_{n})s" for n in expect
        ]
        locks.append(f"FOR UPDATE OF {alias}" + (" SKIP LOCKED" if skip_locked else ""))
    return ", ".join(tables), " AND ".join(conditions), " ".join(locks)


@functools.cache
def guarded_position_sql(shapes: tuple) -> str:
    """The CTE `go` of an exit decided on what its caller saw: the position locked, then the
    guards' rows, only if the position is still open as seen (%(seen_id)s, %(seen_qty)s,
    %(seen_available)s, %(seen_avg_price)s), KIS has not disagreed with it, every guard holds,
    and the trading state lets a sell out. One row: go ahead; none: write nothing."""
    tables, conditions, locks = _guards_sql(shapes)
    return (
        f"go AS (SELECT p.id FROM {Position._meta.db_table} p"
        + (f", {tables}" if tables else "")
        + " WHERE p.id = %(seen_id)s AND p.status = 'OPEN' AND p.broker_qty IS NULL"
        " AND p.qty = %(seen_qty)s AND p.qty - p.reserved_qty = %(seen_available)s"
        " AND p.avg_price = %(seen_avg_price)s"
        + (f" AND {conditions}" if conditions else "")
        + f" AND {allows_sql(repr('SELL'))}"
        + " FOR UPDATE OF p"
        + (f" {locks}" if locks else "")
        + ")"
    )


@functools.cache
def guarded_entry_sql(shapes: tuple) -> str:
    """The CTE `guard` of an entry: the guards' rows locked (taken before the position, in
    the lock order), one row only if every one holds and the trading state lets a buy out."""
    tables, conditions, locks = _guards_sql(shapes)
    where = " AND ".join(c for c in (conditions, allows_sql(repr("BUY"))) if c)
    return (
        "guard AS (SELECT 1"
        + (f" FROM {tables}" if tables else "")
        + f" WHERE {where}"
        + (f" {locks}" if locks else "")
        + ")"
    )
