"""Writing to the outbox: one event's rows, one per channel that wants its kind, in the caller's
transaction and in one statement (or as a part of the caller's own statement: `cte`). Nothing
is sent from here, and nothing is written when no channel wants the kind, which the settings
say without a query."""

import datetime as dt
import functools
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from core import clock

from ..models import Notification
from . import channels

FILL, EXIT, REFUSALS, CLOSE, ALERT = (k.value for k in Notification.Kind)
KEEP_DAYS = 30  # the sent and given-up rows kept, to look back on; pending ones always stay


def wants(kind: str) -> tuple[str, ...]:
    """The configured channels that opted into `kind` (AEGIS_NOTIFY_KINDS_<CHANNEL>)."""
    kinds = settings.NOTIFY["KINDS"]
    return tuple(name for name in channels.configured() if kind in kinds[name])


@dataclass(frozen=True)
class Notice:
    """One event to tell `channels` of: its rows' values."""

    kind: str
    key: str
    text: str
    channels: tuple[str, ...]
    due: dt.datetime | None = None  # not sent before (None: at once)
    alert_id: int | None = None

    def params(self, now: dt.datetime | None = None) -> dict:
        now = now or clock.now()
        return {
            "n_kind": self.kind,
            "n_channels": list(self.channels),
            "n_key": self.key[:255],
            "n_text": self.text,
            "n_due": self.due or now,
            "n_now": now,
            "n_alert": self.alert_id,
        }


# Every value cast: an INSERT ... SELECT gives an untyped parameter no type of its own.
_ROWS = """INSERT INTO {table} (kind, channel, event_key, text, status, attempts,
    next_attempt_at, created_at, sent_at, last_error, alert_id)
SELECT CAST(%(n_kind)s AS varchar), c, CAST(%(n_key)s AS varchar), CAST(%(n_text)s AS text),
    'PENDING', 0, CAST(%(n_due)s AS timestamptz), CAST(%(n_now)s AS timestamptz), NULL, '',
    CAST(%(n_alert)s AS bigint)
FROM {source}unnest(CAST(%(n_channels)s AS varchar[])) AS c
ON CONFLICT (channel, event_key) DO NOTHING"""


@functools.cache
def _rows_sql(source: str = "") -> str:
    return _ROWS.format(table=Notification._meta.db_table, source=source)


def record(notice: Notice | None) -> None:
    """Write `notice`'s rows in the caller's transaction (nothing for None). A key written
    before writes nothing again."""
    if notice is None or not notice.channels:
        return
    with connection.cursor() as cursor:
        cursor.execute(_rows_sql(), notice.params())


def cte(name: str, source: str) -> str:
    """The common table expression `name` that writes a notice's rows (Notice.params) once for
    each row of the CTE `source` (one at most): for the caller's statement, so the rows cost
    no round trip of their own and are written only when the source's row is."""
    return f"{name} AS ({_rows_sql(f'{source}, ')})"


def notifications_prune(now: dt.datetime) -> int:
    """Delete the rows sent or given up more than KEEP_DAYS before `now` (by when they were
    written): the outbox otherwise grows by every event of every day. No event that old is
    reported again, so the uniqueness of (channel, event_key) loses nothing it guards."""
    deleted, _ = Notification.objects.filter(
        created_at__lt=now - dt.timedelta(days=KEEP_DAYS),
        status__in=[Notification.Status.SENT, Notification.Status.FAILED],
    ).delete()
    return deleted
