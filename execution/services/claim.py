"""The right to send an order, taken on its row immediately before each broker write.

Whoever sends an order (a doorbell lane from its queued payload, pricesync's in-process sender,
the execute task, a settle sending again) hands the KIS client a SendClaim; the client calls it
once the connection is up and the token and rate slot are held, with nothing of the request
written yet (Transport.request's `before_write`). The claim is one compare-and-set UPDATE: the
order is still NEW, has no broker number, is not quarantined, and is unclaimed (or, for a
settle, still claimed by exactly the send it judged, past that send's deadline); the trading
state lets it out (HALTED: nothing; REDUCING: sells only); it was recorded, by the database's
clock, no longer ago than EXECUTION_PAYLOAD_TTL_S for a queued payload and
EXECUTION_ENTRY_MAX_AGE_S for an entry. Of any number of
racing senders, one writes. The claim stamps send_started_at (this host's clock, which KIS's
order time is matched against) and send_deadline (the database's clock, shared by every host):
the moment after which this write can no longer reach KIS. A settle acts only on an inquiry
taken after it (order_settle). Nor is anything claimed in a phase of the KRX day that takes no
regular order (EXECUTION_MARKET_HOURS): KIS would refuse it.
"""

import datetime as dt
import enum
import functools
import uuid

from django.conf import settings
from django.db.models import F

from core import clock
from core.rows import bound_cursor
from kis.errors import KisWriteWithheld
from market import calendar as market_calendar

from ..gate import allows, allows_sql
from ..models import Order, Side
from .trading_state import trading_state_get


class Withheld(str, enum.Enum):
    """Why a claim was refused."""

    GONE = "gone"  # sent, settled, closed or quarantined meanwhile
    TAKEN = "taken"  # another sender holds the right to send, within its deadline
    STATE = "state"  # the trading state forbids the send now
    STALE = "stale"  # the queued payload is older than EXECUTION_PAYLOAD_TTL_S
    ENTRY_EXPIRED = "entry_expired"  # an entry older than EXECUTION_ENTRY_MAX_AGE_S
    ATTEMPTS = "attempts"  # sent EXECUTION_SEND_ATTEMPTS times already
    MARKET = "market"  # the KRX day's phase takes no regular order now


def market_closed(now: dt.datetime, venue: str = market_calendar.Venue.KRX) -> bool:
    """Whether the venue an order to `venue` trades on takes no limit order at `now`
    (market.calendar's day models), when EXECUTION_MARKET_HOURS asks."""
    return (
        settings.EXECUTION_MARKET_HOURS
        and not market_calendar.venue_moment(now, market_calendar.Venue(venue)).accepts()
    )


_CLAIM = """
UPDATE {order} o
SET send_started_at = %(now)s,
    send_deadline = clock_timestamp() + make_interval(secs => %(window_s)s),
    send_attempts = o.send_attempts + CASE WHEN %(renew)s THEN 0 ELSE 1 END,
    updated_at = %(now)s
WHERE o.id = %(order_id)s AND o.status = 'NEW' AND o.broker_order_no IS NULL
  AND o.quarantined_at IS NULL AND {allows}
  AND CASE
      WHEN %(expected)s::timestamptz IS NULL THEN o.send_started_at IS NULL
      WHEN %(renew)s THEN o.send_started_at = %(expected)s::timestamptz
      ELSE o.send_started_at = %(expected)s::timestamptz
           AND (o.send_deadline IS NULL OR o.send_deadline < clock_timestamp())
      END
  AND (%(renew)s OR o.send_attempts < %(max_attempts)s)
  AND (%(max_age_s)s::float8 IS NULL
       OR o.recorded_at >= clock_timestamp() - make_interval(secs => %(max_age_s)s::float8))
  AND (o.side = 'SELL' OR %(entry_max_age_s)s::float8 IS NULL
       OR o.recorded_at >= clock_timestamp() - make_interval(secs => %(entry_max_age_s)s::float8))
RETURNING o.send_started_at
"""


@functools.cache
def _claim_sql() -> str:
    return _CLAIM.format(order=Order._meta.db_table, allows=allows_sql("o.side"))


def _entry_max_age_s() -> float | None:
    """An entry's order not sent this long after it was recorded (the database's clock, as
    every host reads it) is withdrawn instead (EXECUTION_ENTRY_MAX_AGE_S; the intent's own age
    was checked when its order was recorded)."""
    max_age = settings.EXECUTION_ENTRY_MAX_AGE_S
    return float(max_age) if max_age > 0 else None


def order_claim(
    *,
    order_id: uuid.UUID | str,
    window_s: float,
    expected: dt.datetime | None = None,
    renew: bool = False,
    max_age_s: float | None = None,
    venue: str = market_calendar.Venue.KRX,
) -> dt.datetime | None:
    """Take the right to send the order (to `venue`, as recorded) now, for a write that may
    reach KIS until `window_s` from now: the claim's stamp, or None when it is withheld
    (withheld_reason says why).

    `expected` None takes an unclaimed order. Otherwise: with `renew`, the caller's own claim
    `expected` is renewed before another write of the same send (a retry after KIS's rate
    limit answered); without it, a settle takes over the claim `expected` once its deadline
    has passed. `max_age_s`: refuse an order recorded longer ago than this (a queued payload).
    """
    now = clock.now()
    if market_closed(now, venue):
        return None
    params = {
        "order_id": uuid.UUID(str(order_id)),
        "now": now,
        "window_s": float(window_s),
        "expected": expected,
        "renew": renew,
        "max_attempts": settings.EXECUTION_SEND_ATTEMPTS,
        "max_age_s": None if max_age_s is None else float(max_age_s),
        "entry_max_age_s": _entry_max_age_s(),
    }
    with bound_cursor() as cursor:
        cursor.execute(_claim_sql(), params)
        row = cursor.fetchone()
    return row[0] if row else None


def withheld_reason(
    *,
    order_id: uuid.UUID | str,
    expected: dt.datetime | None = None,
    max_age_s: float | None = None,
) -> Withheld:
    """Why order_claim refused the order (read after the fact: the rare path)."""
    order = Order.objects.filter(pk=order_id).first()
    if (
        order is None
        or order.status != Order.Status.NEW
        or order.broker_order_no
        or order.quarantined_at is not None
    ):
        return Withheld.GONE
    if order.send_started_at is not None and order.send_started_at != expected:
        return Withheld.TAKEN
    if market_closed(clock.now(), order.venue):
        return Withheld.MARKET
    state = trading_state_get()
    if not allows(state, order.side):
        return Withheld.STATE
    entry_max_age = _entry_max_age_s()
    if order.side == Side.BUY and entry_max_age is not None and _older_than(order, entry_max_age):
        return Withheld.ENTRY_EXPIRED
    if order.send_attempts >= settings.EXECUTION_SEND_ATTEMPTS:
        return Withheld.ATTEMPTS
    if max_age_s is not None:
        return Withheld.STALE
    return Withheld.TAKEN  # within its deadline still


def _older_than(order: Order, seconds: float) -> bool:
    """Whether `order` was recorded more than `seconds` ago, by the database's clock."""
    with bound_cursor() as cursor:
        cursor.execute(
            f"SELECT recorded_at < clock_timestamp() - make_interval(secs => %s) "
            f"FROM {Order._meta.db_table} WHERE id = %s",
            [float(seconds), order.pk],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def order_unclaim(*, order_id: uuid.UUID | str, claim: dt.datetime) -> bool:
    """Give back the claim `claim` of a send whose request never reached KIS (unreachable,
    still rate-limited): the next sender claims afresh, and the attempt is not counted. Only
    that claim: one taken over since is left alone."""
    return (
        Order.objects.filter(
            pk=order_id,
            status=Order.Status.NEW,
            broker_order_no__isnull=True,
            send_started_at=claim,
        ).update(
            send_started_at=None,
            send_deadline=None,
            send_attempts=F("send_attempts") - 1,
            updated_at=clock.now(),
        )
        == 1
    )


class SendClaim:
    """The before-write hook of one send of one order (KisClient.order_cash's `before_write`):
    the first call claims (order_claim), each later call, a retry of the same send after a
    definite non-acceptance, renews that claim. Raises KisWriteWithheld when refused."""

    def __init__(
        self,
        order_id: uuid.UUID | str,
        *,
        window_s: float,
        expected: dt.datetime | None = None,
        max_age_s: float | None = None,
        venue: str = market_calendar.Venue.KRX,
    ) -> None:
        self.order_id = order_id
        self.venue = venue
        self.window_s = window_s
        self.expected = expected
        self.max_age_s = max_age_s
        self.at: dt.datetime | None = None  # the claim held, once taken

    def __call__(self) -> None:
        if self.at is None:
            at = order_claim(
                order_id=self.order_id,
                window_s=self.window_s,
                expected=self.expected,
                max_age_s=self.max_age_s,
                venue=self.venue,
            )
        else:
            at = order_claim(
                order_id=self.order_id,
                window_s=self.window_s,
                expected=self.at,
                renew=True,
                venue=self.venue,
            )
        if at is None:
            reason = withheld_reason(
                order_id=self.order_id, expected=self.at or self.expected, max_age_s=self.max_age_s
            )
            raise KisWriteWithheld(
                f"order {self.order_id} not sent: {reason.value}", reason=reason.value
            )
        self.at = at

    def release(self) -> None:
        """The request never reached KIS: give the claim back (order_unclaim)."""
        if self.at is not None:
            order_unclaim(order_id=self.order_id, claim=self.at)
            self.at = None
