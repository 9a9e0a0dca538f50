"""The deliverer: the outbox's due rows of a channel, claimed, sent as one message, marked.

One deliverer at a time per channel: a transaction-scoped advisory lock on the channel's name,
taken first (the beat task skips a channel another holds; an alert's own delivery waits for
it). Under it, the channel's pace: no message before its last one's `sent_at` plus
AEGIS_NOTIFY_INTERVAL_S_<CHANNEL>. Then the due rows, locked FOR UPDATE SKIP LOCKED in id
order, go out together in one message (batch): the trader's notices one after another up to
the channel's length, the refused picks summed up in one paragraph, an alert alone. The rows
sent are marked SENT in the same transaction, after the channel took the message. A failed send
marks its rows for another attempt after a backoff (AEGIS_NOTIFY_RETRY_S, doubled each time up
to AEGIS_NOTIFY_RETRY_MAX_S, or the wait the channel asked for), with the failure's HTTP status
or error type, never its URL; a row still unsent a day after its event is given up (FAILED).

So a channel down for minutes loses nothing, and a message the channel took is sent once: the
rows and the send are one transaction's. A crash after the channel took a message and before
the commit sends it again: at least once, as any sender that cannot ask its channel whether a
message arrived.
"""

import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from core import clock

from ..models import Alert, Notification
from . import channels, texts
from .outbox import ALERT, REFUSALS

logger = logging.getLogger("aegis.notify")

# The advisory locks' first key: the notifications' (the second is the channel's name hashed).
LOCK_CLASS = 0x41454749
# At most this many due notices are claimed for one message, and this many refused picks (one
# paragraph sums them up).
CLAIM_MAX = 200
REFUSALS_MAX = 20_000
# A notification still unsent this long after its event is given up: it would tell of an old
# day by now.
GIVE_UP = dt.timedelta(days=1)

PENDING, SENT, FAILED = (s.value for s in Notification.Status)


@dataclass(frozen=True)
class Row:
    id: int
    kind: str
    text: str
    created_at: dt.datetime
    alert_id: int | None


@dataclass(frozen=True)
class Outcome:
    """What one delivery on a channel did: sent, failed, idle (nothing due), busy (another
    deliverer holds the channel), paced (its last message too recent: `wait_s` more), or
    unconfigured (its rows given up); `rows`, how many rows it sent or gave up."""

    state: str
    wait_s: float = 0.0
    rows: int = 0


def _table() -> str:
    return Notification._meta.db_table


def channel_deliver(channel: str, *, wait: bool = False) -> Outcome:
    """One message on `channel` of what is due on it, if its pace allows. `wait`: wait for the
    channel's lock rather than leave the channel to the deliverer that holds it."""
    with transaction.atomic():
        now = clock.now()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {'pg_advisory_xact_lock' if wait else 'pg_try_advisory_xact_lock'}"
                "(%s, hashtext(%s))",
                [LOCK_CLASS, channel],
            )
            if not wait and not cursor.fetchone()[0]:
                return Outcome("busy")
            if channel not in channels.configured():
                given_up = _give_up_unconfigured(cursor, channel, now)
                return Outcome("unconfigured", rows=given_up)
            cursor.execute(f"SELECT max(sent_at) FROM {_table()} WHERE channel = %s", [channel])
            last = cursor.fetchone()[0]
            interval = dt.timedelta(seconds=settings.NOTIFY["INTERVAL_S"][channel])
            # A last message stamped after now (the clock moved back) holds nothing up.
            if last is not None and last <= now < last + interval:
                return Outcome("paced", wait_s=(last + interval - now).total_seconds())
            rows = _claim(cursor, channel, now)
            if not rows:
                return Outcome("idle")
            batch, message = compose(rows, channel)
            try:
                channels.send(channel, message)
            except channels.ChannelError as exc:
                _failed(cursor, channel, batch, exc, now)
                return Outcome("failed")
            _sent(cursor, channel, batch, now)
    logger.info(
        "notify.sent channel=%s notifications=%s",
        channel,
        len(batch),
        extra={"channel": channel, "notifications": len(batch)},
    )
    return Outcome("sent", rows=len(batch))


_CLAIM = """
SELECT id, kind, text, created_at, alert_id FROM {table}
WHERE status = 'PENDING' AND next_attempt_at <= %s AND channel = %s AND kind {kind} 'refusals'
ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"""


def _claim(cursor, channel: str, now: dt.datetime) -> list[Row]:
    """The channel's due rows, locked, in id order: up to CLAIM_MAX notices, and the refused
    picks up to REFUSALS_MAX (summed up in one paragraph, however many)."""
    rows = []
    for kind, most in (("<>", CLAIM_MAX), ("=", REFUSALS_MAX)):
        cursor.execute(_CLAIM.format(table=_table(), kind=kind), [now, channel, most])
        rows += [Row(*r) for r in cursor.fetchall()]
    return sorted(rows, key=lambda r: r.id)


def compose(rows: list[Row], channel: str) -> tuple[list[Row], channels.Message]:
    """The rows (of `rows`, in id order) that go in one message on `channel`, and the message:
    an alert alone; else the trader's notices, one paragraph each, as many as the channel's
    length takes, and every refused pick claimed summed up in one paragraph after them."""
    if rows[0].kind == ALERT:
        return [rows[0]], channels.Message.of(rows[0].text)
    limit = channels.MAX_CHARS[channel]
    refused = [r for r in rows if r.kind == REFUSALS]
    summary = (
        texts.refusals(
            [r.text for r in refused],
            min(r.created_at for r in refused),
            max(r.created_at for r in refused),
        )
        if refused
        else ""
    )
    room = limit - (len(summary) + 2 if summary else 0)
    notices: list[Row] = []
    for row in rows:
        if row.kind == ALERT:
            break  # an alert goes alone, next
        if row.kind == REFUSALS:
            continue
        cost = len(row.text) + (2 if notices else 0)
        if cost > room and (notices or refused):
            break  # next time (a notice alone longer than the channel takes is cut)
        notices.append(row)
        room -= cost
    parts = [r.text for r in notices] + ([summary] if summary else [])
    text = "\n\n".join(parts)
    return notices + refused, channels.Message.of(
        text, subject=texts.batch_subject(parts[0], len(parts))
    )


def _sent(cursor, channel: str, batch: list[Row], now: dt.datetime) -> None:
    cursor.execute(
        f"UPDATE {_table()} SET status = 'SENT', sent_at = %s, attempts = attempts + 1, "
        "last_error = '' WHERE id = ANY(%s)",
        [now, [r.id for r in batch]],
    )
    _alerts_outcome(cursor, channel, batch, "sent")


def _failed(
    cursor, channel: str, batch: list[Row], exc: channels.ChannelError, now: dt.datetime
) -> None:
    """Each row of the failed `batch` tried again after its backoff, or given up a day on."""
    notify = settings.NOTIFY
    cursor.execute(
        f"UPDATE {_table()} SET attempts = attempts + 1, last_error = %(error)s, "
        "next_attempt_at = %(now)s + make_interval(secs => GREATEST(%(asked)s, "
        "LEAST(%(retry)s * power(2, LEAST(attempts, 20)), %(most)s))), "
        "status = CASE WHEN created_at < %(give_up)s THEN 'FAILED' ELSE 'PENDING' END "
        "WHERE id = ANY(%(ids)s)",
        {
            "error": exc.detail,
            "now": now,
            "asked": float(exc.retry_after or 0),
            "retry": float(notify["RETRY_S"]),
            "most": float(notify["RETRY_MAX_S"]),
            "give_up": now - GIVE_UP,
            "ids": [r.id for r in batch],
        },
    )
    _alerts_outcome(cursor, channel, batch, f"failed: {exc.detail}")
    logger.warning(
        "notify.send_failed channel=%s notifications=%s error=%s: tried again later",
        channel,
        len(batch),
        exc.detail,
        extra={"channel": channel, "notifications": len(batch)},
    )


def _alerts_outcome(cursor, channel: str, batch: list[Row], outcome: str) -> None:
    """Each alert's outcome on the channel, on the alert (the admin's alert history)."""
    alert_ids = [r.alert_id for r in batch if r.alert_id is not None]
    if alert_ids:
        cursor.execute(
            f"UPDATE {Alert._meta.db_table} SET deliveries = deliveries || "
            "jsonb_build_object(CAST(%s AS text), CAST(%s AS text)) WHERE id = ANY(%s)",
            [channel, outcome, alert_ids],
        )


def _give_up_unconfigured(cursor, channel: str, now: dt.datetime) -> int:
    cursor.execute(
        f"UPDATE {_table()} SET status = 'FAILED', last_error = 'channel not configured' "
        "WHERE channel = %s AND status = 'PENDING' AND next_attempt_at <= %s",
        [channel, now],
    )
    return cursor.rowcount


def deliver_due() -> dict[str, str]:
    """One message on each channel that has something due (beat's notify.deliver task, every
    second): what each delivery did."""
    due = (
        Notification.objects.filter(status=PENDING, next_attempt_at__lte=clock.now())
        .order_by()
        .values_list("channel", flat=True)
        .distinct()
    )
    return {name: channel_deliver(name).state for name in sorted(set(due))}


def alert_deliver(alert_id: int, names: tuple[str, ...], *, within_s: float = 10.0) -> None:
    """The alert `alert_id`'s rows on `names` sent now, for the process that raised it (from
    its background thread), with whatever else is due on those channels: waiting for each
    channel's lock and its pace, for at most `within_s` seconds each. A failed send is left to
    beat's deliverer, which tries it again."""
    for name in names:
        until = time.monotonic() + within_s
        while True:
            outcome = channel_deliver(name, wait=True)
            if outcome.state == "paced":
                left = until - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(max(outcome.wait_s / clock.speed(), 0.01), left))
                continue
            if outcome.state == "sent" and time.monotonic() < until:
                # Something older went first: the alert's own row may still wait.
                if Notification.objects.filter(
                    alert_id=alert_id, channel=name, status=PENDING
                ).exists():
                    continue
            break
