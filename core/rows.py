"""Model instances from statements written as SQL (the hot paths, where compiling the ORM's
query costs more than its round trip): the columns to select, and the instances made from a row
that holds them, one model after another, as Django makes them from its own queries. Also the
hot statements' cursor, and idempotent work run again on a fresh connection when its own died."""

import functools
import logging

from django.db import InterfaceError, OperationalError, connection
from django.db.backends.postgresql.base import ServerBindingCursor

logger = logging.getLogger("aegis.db")


def columns(model, alias: str = "") -> str:
    """Every column of `model`, in field order (`alias.` before each when given)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + f.column for f in model._meta.concrete_fields)


def column(model, name: str) -> str:
    """The column of `model`'s field `name` (its name or attname: `position` or `position_id`)."""
    field = model._meta.get_field(name)
    if getattr(field, "column", None) is None:
        raise ValueError(f"{model.__name__}.{name} has no column")
    return field.column


def instances(row, *models) -> list:
    """One instance of each of `models` from `row`, whose leading values are their columns()
    in that order; what follows them is left alone."""
    made, at = [], 0
    for model in models:
        fields = model._meta.concrete_fields
        made.append(
            model.from_db(connection.alias, [f.attname for f in fields], row[at : at + len(fields)])
        )
        at += len(fields)
    return made


def bound_cursor():
    """A cursor for a hot statement whose parameters travel apart from its text (PostgreSQL's
    extended protocol, as an unnamed statement, so PgBouncer's transaction pooling takes it):
    psycopg sends them as they are, where Django's client-side binding quotes each one into the
    text first. On the ledger's one-statement writes, with a score of parameters, that quoting
    cost about 0.6 ms a statement (probe, alternate trades in one run). With a direct connection
    psycopg also prepares a statement run often (its prepare_threshold). Django's wrapping is
    kept: the statement is logged and counted like any other.
    """

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def connection_lost() -> bool:
    """Whether this thread's database connection is gone (closed, or broken by the server's
    going away), as opposed to a statement that failed on a live one (a lock or statement
    timeout), after which the connection serves the next statement as it is."""
    raw = connection.connection
    return raw is None or raw.closed or getattr(raw, "broken", False)


def on_fresh_connection(fn):
    """Run `fn`; when the connection turns out to be dead (PostgreSQL restarted, the backend
    terminated), replace it and run `fn` once more. Only for idempotent work outside any
    transaction: a best price's upsert is newest-wins (market/prices.py), and pricesync's exit
    is decided again under its locks. A statement that failed on a live connection (a lock
    timeout) is not run again: it would wait as long once more."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InterfaceError, OperationalError) as exc:
            if connection.in_atomic_block or not connection_lost():
                raise
            logger.warning("db.reconnect after %s: %s", fn.__name__, exc)
            connection.close()
            return fn(*args, **kwargs)

    return wrapper


def prepares_only_direct(sender, connection, **kwargs) -> None:
    """On each new PostgreSQL connection that would prepare statements (DATABASE_POOLING not
    `pgbouncer`), make sure nothing pools it: PgBouncer hands its clients a process id of its
    own (it answers their cancel requests), never the server process's. Through a pooler a
    prepared statement stays on a server connection that another client gets next, whose own
    statement of the same name then fails ("prepared statement _pg3_0 already exists") at
    random. So prepared statements and server-side cursors are turned off for this process,
    and the mistake logged once: set DATABASE_POOLING=pgbouncer. One query per new connection
    (connection_created, connected by execution's AppConfig)."""
    options = connection.settings_dict["OPTIONS"]
    if options.get("prepare_threshold") is None:
        return
    raw = connection.connection
    with raw.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        server_pid = cursor.fetchone()[0]
    if server_pid == raw.info.backend_pid:
        return
    raw.prepare_threshold = None
    options["prepare_threshold"] = None
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    logger.error(
        "aegis.db.pooled_without_pooling: DATABASE_URL reaches PostgreSQL through a "
        "connection pooler (PgBouncer) but DATABASE_POOLING is not 'pgbouncer'; "
        "prepared statements and server-side cursors are off in this process. Set "
        "DATABASE_POOLING=pgbouncer, or point DATABASE_URL straight at PostgreSQL."
    )
