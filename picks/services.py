"""Writes of the picks app: storing a batch of picks (whole or nothing, idempotent on
(source, external_id), routed once committed) and managing pick sources and their tokens."""

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Field

from core import clock
from core.rows import bound_cursor
from execution.locks import alone_qs_for_update

from . import doorbell, gates
from .models import Pick, PickSource
from .tasks import picks_route_task

logger = logging.getLogger("aegis.picks")

# Rows per INSERT statement: 1000 picks x 16 columns stays far below PostgreSQL's 65,535 and
# SQLite's 32,766 bound parameters either way; smaller statements just plan faster.
_INSERT_CHUNK = 500


class PickSourceInvalid(Exception):
    """A source's fields do not pass the model's validators; the message says which."""


class PicksBacklogFull(Exception):
    """The routers' backlog is full: the batch is refused before anything is stored. `waiting`
    picks wait for a router, `limit` at most (the message, in English, is the API's)."""

    def __init__(self, message: str, *, waiting: int, limit: int) -> None:
        super().__init__(message)
        self.waiting, self.limit = waiting, limit


class PickStoreRace(Exception):
    """A pick neither inserted nor found afterwards (deleted by a concurrent writer)."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _column(field: Field) -> str:
    """A concrete field's column (the stubs allow None: a field without one is not concrete)."""
    if field.column is None:
        raise ValueError(f"{field.name} has no column")
    return field.column


def _insert_new(rows: list[Pick]) -> dict[str, int]:
    """INSERT … ON CONFLICT (source, external_id) DO NOTHING RETURNING: the ids of the rows this
    statement stored, by external_id. Rows stored by anyone else (earlier, or by a concurrent
    ingest that commits first: PostgreSQL makes this statement wait for it) are left out, so
    exactly one ingest of a pick counts it as new. bulk_create(ignore_conflicts=True) cannot
    say which rows were inserted, hence the SQL."""
    fields = [f for f in Pick._meta.concrete_fields if not f.primary_key]
    table = connection.ops.quote_name(Pick._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(_column(f)) for f in fields)
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    by_name = {f.name: f for f in fields}
    conflict = ", ".join(
        connection.ops.quote_name(_column(by_name[name])) for name in ("source", "external_id")
    )
    stored: dict[str, int] = {}
    # Its parameters bound server-side (16 a pick): Django's client-side binding would quote
    # each into the text first.
    with bound_cursor() as cursor:
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            params = [
                f.get_db_prep_save(getattr(row, f.attname), connection)
                for row in chunk
                for f in fields
            ]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([one_row] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING id, external_id",
                params,
            )
            stored.update((external_id, pk) for pk, external_id in cursor.fetchall())
    return stored


def _route_enqueue(*, source_code: str, picks: list[tuple[int, str]]) -> None:
    """Runs after the commit: the routers' doorbell when a lane listens, else the route task.
    `picks`: (id, the ring's item) of each. The picks are stored either way: if the broker is
    down, say so and leave them NEW for the orphan sweep."""

    if doorbell.ring([rung for _, rung in picks]):
        return
    pick_ids = [pick_id for pick_id, _ in picks]
    try:
        picks_route_task.delay(pick_ids)
    except Exception as exc:  # noqa: BLE001 - any broker failure; the sweep is the fallback
        logger.error(
            "picks.route_enqueue_failed source=%s count=%s error=%s",
            source_code,
            len(pick_ids),
            type(exc).__name__,
        )


def picks_backlog_room(*, count: int) -> None:
    """Raise PicksBacklogFull when `count` more picks would take the picks waiting for a router
    (NEW: rung, queued as route tasks, or left for the sweep) past settings.PICKS_QUEUE_MAX.
    Counted in PostgreSQL, whatever carries them to the routers, at most PICKS_QUEUE_MAX + 1
    rows of the status index. A soft bound: ingests checking at the same moment may together
    pass it by their batches."""
    limit = settings.PICKS_QUEUE_MAX
    waiting = Pick.objects.filter(status=Pick.Status.NEW)[: limit + 1].count()
    if waiting + count > limit:
        raise PicksBacklogFull(
            f"{waiting} picks already wait for a router (at most {limit}); nothing of this "
            "batch was stored: send it again in a moment",
            waiting=waiting,
            limit=limit,
        )


def picks_ingest(*, source: PickSource, items: Sequence[dict]) -> tuple[list[int], int]:
    """Store the validated picks of one batch of `source`. Returns one id per item, in order (a
    pick already known, from this batch or an earlier one, answers the id it was first stored
    with, and its first version stands), and how many items were not newly stored. The new
    picks are sent to the router once they are committed. Raises PicksBacklogFull,
    storing nothing, when the routers' backlog has no room for the batch.

    A batch of up to _INSERT_CHUNK picks is one INSERT in autocommit, its own transaction
    (one round trip, where a transaction around it costs three), then, only when some were
    known already, one SELECT of their ids. A larger batch is several INSERTs in one
    transaction. Either way the batch is stored whole or not at all."""
    picks_backlog_room(count=len(items))  # PicksBacklogFull, before anything is written
    now = clock.now()
    first: dict[str, dict] = {}
    for item in items:
        first.setdefault(item["external_id"], item)
    rows = {
        key: Pick(
            source=source,
            external_id=key,
            symbol=item["symbol"],
            side=item["side"],
            qty=item.get("qty"),
            budget_krw=item.get("budget_krw"),
            limit_price=item.get("limit_price"),
            score=item.get("score"),
            generated_at=item["generated_at"],
            received_at=now,
        )
        for key, item in first.items()
    }
    one_statement = len(rows) <= _INSERT_CHUNK
    with contextlib.nullcontext() if one_statement else transaction.atomic():
        picks = list(rows.values())
        with doorbell.heads_up(picks):
            new = _insert_new(picks)
        ids = new.copy()
        if len(new) < len(first):
            ids.update(
                Pick.objects.filter(
                    source=source, external_id__in=[key for key in first if key not in new]
                ).values_list("external_id", "id")
            )
        missing = [key for key in first if key not in ids]
        if missing and one_statement:
            # Known when inserted, deleted since (an operator's delete): stored anew, so the
            # batch still ends whole.
            again = _insert_new([rows[key] for key in missing])
            new.update(again)
            ids.update(again)
            missing = [key for key in missing if key not in again]
        if missing:
            raise PickStoreRace(
                f"{len(missing)} picks of source {source.code} were neither "
                "stored nor found; send the batch again."
            )
        if new:
            stored = [(pk, doorbell.item(pk, gates.Ask.of(rows[key]))) for key, pk in new.items()]
            transaction.on_commit(
                lambda: _route_enqueue(source_code=source.code, picks=stored), robust=True
            )
    duplicates = len(items) - len(new)
    logger.info(
        "picks.ingested source=%s count=%s new=%s duplicates=%s",
        source.code,
        len(items),
        len(new),
        duplicates,
    )
    return [ids[item["external_id"]] for item in items], duplicates


def source_token_issue(*, source: PickSource) -> str:
    """A new token for `source`, replacing the old one; only its SHA-256 is kept. The caller
    shows it once."""
    token = secrets.token_urlsafe(32)
    source.token_sha256 = token_digest(token)
    source.save(update_fields=["token_sha256"])
    logger.info("picks.token_issued source=%s", source.code)
    return token


def source_upsert(
    *,
    code: str,
    name: str | None = None,
    exit_profile=None,
    rate_limit: str | None = None,
    require_hmac: bool | None = None,
    rotate: bool = False,
) -> tuple[PickSource, bool, str | None]:
    """Create the source `code` or change the fields given (None: leave as is). Returns the
    source, whether it was created, and its new token when one was issued (on creation or
    `rotate`). Raises PickSourceInvalid, changing nothing, when a field is refused."""
    with transaction.atomic():
        source = alone_qs_for_update(PickSource).filter(code=code).first()
        created = source is None
        if source is None:
            source = PickSource(code=code)
        if name is not None:
            source.name = name
        if rate_limit is not None:
            source.rate_limit = rate_limit
        if require_hmac is not None:
            source.require_hmac = require_hmac
        if exit_profile is not None:
            source.exit_profile = exit_profile
        try:
            source.full_clean()
        except ValidationError as exc:
            raise PickSourceInvalid(
                "; ".join(
                    f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
                )
            ) from None
        source.save()
        token = source_token_issue(source=source) if created or rotate else None
    logger.info(
        "picks.source_saved source=%s created=%s rotated=%s", code, created, token is not None
    )
    return source, created, token
