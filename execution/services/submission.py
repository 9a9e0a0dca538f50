"""Sending an intent's order to the broker exactly once (ARCHITECTURE.md, I4; docs/exactly-once.md).

1. The Order is recorded and committed before the call (in the intent's own statement in the
   common case, order_open_recorded; else order_open under the position lock): a crash from
   here on leaves a row that says what was about to happen.
2. Immediately before each broker write, one compare-and-set on the row takes the right to send
   (execution/services/claim.py): whoever sends (a lane's payload, the in-process sender, the
   execute task, a settle) sends only with it, and only while the trading state lets it out.
3. The broker call. Its answer is recorded; only KIS's definite refusals reject (and release the
   shares); a request that never left (KIS unreachable, still rate-limited) gives its claim
   back for a later retry; anything else is an unknown outcome, left in flight.
4. An order in flight is settled against KIS's daily orders inquiry, taken only after its
   send's deadline: the one matching order (within EXECUTION_CLOCK_SKEW_S of the send) is
   adopted; two or more that could be it are alerted and left for a person; none proves the
   send never arrived, and the order is sent again, at most EXECUTION_SEND_ATTEMPTS times.
"""

import datetime as dt
import enum
import logging
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext, gettext_noop

from core import clock, metrics
from kis.client import BadDailyOrder, Balance, DailyOrder, OrderAck
from kis.errors import (
    KisAmbiguousOutcome,
    KisError,
    KisMarketClosed,
    KisRateLimited,
    KisTokenExpired,
    KisTokenInvalid,
    KisTokenRateLimited,
    KisUnavailable,
    KisWriteWithheld,
)
from market import calendar as market_calendar

from .. import signals
from ..alerts import alert_raise
from ..exceptions import BrokerQtyRequired, InvalidIntentState
from ..models import Alert, Order, OrderIntent, Side
from .claim import SendClaim, Withheld
from .intents import intent_cancel
from .matching import could_be
from .orders import (
    entry_cutoff,
    entry_expired_reason,
    entry_order_expire,
    order_mark_submitted,
    order_open,
    order_open_recorded,
    order_reject,
    order_withdraw_unsent,
)
from .reconciliation import broker_orderable_qty
from .trading_state import market_closed_refused

logger = logging.getLogger("aegis.execution")

# Errors that prove the request never reached KIS: safe to send again later. KIS's gateway
# refuses an expired or unknown token (EGW00123, EGW00121) before the order reaches the
# exchange; the client has replaced the token once already, so the order waits for the retry
# (or the sweep) instead of being rejected.
NOT_SENT = (KisUnavailable, KisRateLimited, KisTokenRateLimited, KisTokenExpired, KisTokenInvalid)
# A broker without a send window of its own (KisClient.send_window_s): KIS's defaults.
DEFAULT_SEND_WINDOW_S = 13.0


class Broker(Protocol):
    @property
    def send_window_s(self) -> float: ...

    def order_cash(
        self,
        *,
        side: str,
        symbol: str,
        qty: int,
        price: int | None,
        venue: str = "KRX",
        before_write=None,
    ) -> OrderAck: ...

    def daily_orders(
        self,
        *,
        start: dt.date,
        end: dt.date,
        side: str = "ALL",
        filled: str = "ALL",
        symbol: str = "",
        odno: str = "",
        keep_bad: bool = False,
    ) -> list[DailyOrder | BadDailyOrder]: ...

    def balance(self) -> Balance: ...


class Outcome(str, enum.Enum):
    SUBMITTED = "submitted"
    REJECTED = "rejected"  # by the broker, or sent too often unseen: the shares are released
    REFUSED = "refused"  # by the ledger at order time: no order was made
    IN_FLIGHT = "in_flight"  # outcome unknown: settled by the daily inquiry
    ALREADY = "already"  # another sender has it, or it went out or ended meanwhile
    EXPIRED = "expired"  # an entry not sent in time: withdrawn, never sent late
    HELD = "held"  # not sent now (the trading state, a stale payload): the sweep sends it later
    AMBIGUOUS = "ambiguous"  # KIS shows more than one order it could be: alerted, for a person


def send_window_s(broker) -> float:
    return float(getattr(broker, "send_window_s", DEFAULT_SEND_WINDOW_S))


def intent_submit(*, intent_id, broker: Broker) -> Outcome:
    """Send the intent's order unless it went out already. Raises a NOT_SENT error (after
    giving back the claim) when KIS could not be reached, so the caller retries later.
    """
    order = order_open_recorded(intent_id=intent_id)
    if order is not None:  # the common case: recorded in one statement
        return order_send(order, broker)
    if _entry_expired(intent_id):
        return Outcome.EXPIRED
    try:
        order = order_open(intent_id=intent_id)
    except BrokerQtyRequired as exc:
        # KIS disagreed with the ledger at the last reconciliation: sell no more than KIS
        # would let us (I4b). Asked here, outside the row lock.
        order = order_open(
            intent_id=intent_id,
            broker_sellable_qty=broker_orderable_qty(broker=broker, symbol=exc.symbol),
        )
    if order is None:
        return Outcome.REFUSED
    if order.status != Order.Status.NEW or order.broker_order_no:
        return Outcome.ALREADY
    if order.send_started_at is not None:
        return order_settle(order_id=order.pk, broker=broker)
    return order_send(order, broker)


def _entry_expired(intent_id) -> bool:
    """Withdraw the entry `intent_id` when it is too old to send and nothing of it has left
    (settings.EXECUTION_ENTRY_MAX_AGE_S): the intent when it has no order yet, else its unsent
    order. False when it is not an entry, is young enough, or a send is under way."""
    cutoff = entry_cutoff(clock.now())
    if cutoff is None:
        return False
    try:
        status = _old_entry_status(intent_id, cutoff)
    except ValidationError:
        return False  # a malformed id: order_open says so
    if status == OrderIntent.Status.NEW:
        try:
            intent_cancel(intent_id=intent_id, reason=entry_expired_reason())
        except InvalidIntentState:
            return False  # ordered meanwhile by another sender
    elif status == OrderIntent.Status.ORDERED:
        unsent = (
            Order.objects.filter(
                intent_id=intent_id,
                status=Order.Status.NEW,
                broker_order_no__isnull=True,
                send_started_at__isnull=True,
            )
            .values_list("pk", flat=True)
            .first()
        )
        if unsent is None or not entry_order_expire(order_id=unsent, claim=None):
            return False
    else:
        return False
    logger.warning(
        "execution.entry_expired intent_id=%s: %s",
        intent_id,
        entry_expired_reason(),
        extra={"intent_id": str(intent_id)},
    )
    return True


def _old_entry_status(intent_id, cutoff: dt.datetime) -> str | None:
    """The status of the intent `intent_id` when it is an entry written before `cutoff`."""
    return (
        OrderIntent.objects.filter(
            pk=intent_id,
            side=Side.BUY,
            created_at__lt=cutoff,
        )
        .values_list("status", flat=True)
        .first()
    )


def order_send(
    order: Order,
    broker: Broker,
    *,
    expected: dt.datetime | None = None,
    max_age_s: float | None = None,
) -> Outcome:
    """Send a recorded order: the broker call, the right to send taken on the row right before
    its write (SendClaim), and the answer. `expected`: the claim of an earlier send that never
    arrived, taken over (order_settle). `max_age_s`: the order comes from a queued payload, not
    sent when recorded longer ago than this.
    """
    log = {"order_id": str(order.pk), "intent_id": str(order.intent_id)}
    claim = SendClaim(
        order.pk,
        window_s=send_window_s(broker),
        expected=expected,
        max_age_s=max_age_s,
        venue=order.venue,
    )
    try:
        ack = broker.order_cash(
            side=order.side,
            symbol=order.symbol,
            qty=order.qty,
            price=order.limit_price,
            venue=order.venue,
            before_write=claim,
        )
    except KisWriteWithheld as exc:
        return _withheld(order, Withheld(exc.reason), claim=expected, log=log)
    except KisAmbiguousOutcome as exc:
        logger.warning("execution.in_flight order_id=%s reason=%s", order.pk, exc, extra=log)
        return Outcome.IN_FLIGHT
    except NOT_SENT:
        claim.release()
        raise
    except KisError as exc:
        if claim.at is None:  # refused before any write (a protocol error of the client's)
            raise
        rejected = order_reject(order_id=order.pk, reason=str(exc))
        logger.warning("execution.rejected order_id=%s reason=%s", order.pk, exc, extra=log)
        if isinstance(exc, KisMarketClosed):
            market_closed_refused(reason=f"order {order.pk}: {exc}")
        else:
            signals.refused(rejected, reason=str(exc))
        return Outcome.REJECTED
    try:
        marked = order_mark_submitted(
            order_id=order.pk, broker_order_no=ack.odno, broker_org_no=ack.org_no
        )
    except IntegrityError as exc:
        # KIS gave a number the ledger already holds today: it cannot be both; a person looks.
        _needs_a_person(
            order,
            gettext_noop(
                "KIS answered order number %(odno)s, which another order of the ledger already "
                "holds (%(constraint)s)"
            ),
            odno=ack.odno,
            constraint=_constraint(exc),
        )
        return Outcome.AMBIGUOUS
    if getattr(marked, "intent_kind", None):  # the one-statement path read the intent too
        metrics.order_accepted(
            intent_type=marked.intent_kind,
            created_at=marked.intent_created_at,
            event_at=marked.intent_event_at,
            submitted_at=marked.submitted_at,
        )
    logger.info(
        "execution.submitted order_id=%s odno=%s",
        order.pk,
        ack.odno,
        extra=log | {"odno": ack.odno},
    )
    return Outcome.SUBMITTED


def _withheld(order: Order, reason: Withheld, *, claim: dt.datetime | None, log: dict) -> Outcome:
    """What a refused claim means for the order."""
    logger.info("execution.withheld order_id=%s reason=%s", order.pk, reason.value, extra=log)
    if reason is Withheld.ENTRY_EXPIRED:
        if entry_order_expire(order_id=order.pk, claim=claim):
            logger.warning(
                "execution.entry_expired order_id=%s: %s",
                order.pk,
                entry_expired_reason(),
                extra=log,
            )
            return Outcome.EXPIRED
        return Outcome.ALREADY
    if reason is Withheld.ATTEMPTS:
        return _give_up(order, claim)
    if reason is Withheld.MARKET:
        return _market_closed(order, claim)
    if reason in (Withheld.STATE, Withheld.STALE):
        return Outcome.HELD
    return Outcome.ALREADY


def _market_closed(order: Order, claim: dt.datetime | None) -> Outcome:
    """Not sent while its venue's day takes no limit order (recorded before the close, workers
    down across it): withdrawn, its shares released, alerted once. A day order is not carried
    to the next session on the prices of this one; the exit rules decide again in the next
    phase that allows them."""
    phase = market_calendar.venue_moment(clock.now(), market_calendar.Venue(order.venue)).phase
    reason = (
        f"not sent: {order.venue} takes no limit order in {phase}; withdrawn, its shares released"
    )
    return _withdrawn(
        order,
        claim,
        reason,
        severity=Alert.Severity.WARNING,
        state="withdrawn",
        key="market-closed",
        message=gettext(
            "Order %(order)s (%(side)s %(qty)s %(symbol)s) was not sent: %(venue)s takes no "
            "limit order in %(phase)s; withdrawn, its shares released. The exit rules decide "
            "again when the market next takes orders."
        )
        % {**_described(order), "venue": order.venue, "phase": str(phase)},
    )


def _give_up(order: Order, claim: dt.datetime | None) -> Outcome:
    """Sent EXECUTION_SEND_ATTEMPTS times and never seen at KIS: rejected, shares released,
    alerted."""
    reason = (
        f"sent {order.send_attempts} times, never shown by KIS's daily orders: "
        f"rejected, its shares released"
    )
    return _withdrawn(
        order,
        claim,
        reason,
        severity=Alert.Severity.CRITICAL,
        state="rejected",
        key="gave-up",
        message=gettext(
            "Order %(order)s (%(side)s %(qty)s %(symbol)s): sent %(attempts)s times, never "
            "shown by KIS's daily orders: rejected, its shares released. Check KIS's order "
            "list; the exit rules decide again on the next price."
        )
        % {**_described(order), "attempts": order.send_attempts},
    )


def _described(order: Order) -> dict[str, object]:
    """An order's figures for an alert's message."""
    return {"order": order.pk, "side": order.side, "qty": order.qty, "symbol": order.symbol}


def _withdrawn(
    order: Order,
    claim: dt.datetime | None,
    reason: str,
    *,
    severity: str,
    state: str,
    key: str,
    message: str,
) -> Outcome:
    """The order, never at KIS, rejected with `reason` and its shares released, then alerted
    once (its key under the order's); ALREADY when another sender took it meanwhile."""
    if order_withdraw_unsent(order_id=order.pk, claim=claim, reason=reason) is None:
        return Outcome.ALREADY
    alert_raise(
        kind=Alert.Kind.ORDER,
        severity=severity,
        subject=order.symbol,
        state=state,
        key=f"order:{order.pk}:{key}",
        message=message,
    )
    return Outcome.REJECTED


def _needs_a_person(order: Order, why: str, **params: object) -> None:
    """Alert that `order`'s outcome needs a person: `why`, an English template (marked with
    gettext_noop) that `params` fill, is logged in English and alerted in the language of the
    process."""
    logger.error(
        "execution.ambiguous order_id=%s: %s",
        order.pk,
        why % params,
        extra={"order_id": str(order.pk)},
    )
    alert_raise(
        kind=Alert.Kind.ORDER,
        severity=Alert.Severity.CRITICAL,
        subject=order.symbol,
        state="ambiguous",
        key=f"order:{order.pk}:ambiguous",
        message=gettext(
            "Order %(order)s (%(side)s %(qty)s %(symbol)s, sent at %(sent_at)s): %(why)s. "
            "Nothing more is sent for it. Settle it by hand in the admin (Orders → the order → "
            "settle) once you know which order at KIS is it, if any."
        )
        % {
            **_described(order),
            "sent_at": order.send_started_at,
            "why": gettext(why) % params,
        },
    )


def _constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint PostgreSQL says `exc` broke (None elsewhere)."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _identical_in_flight(order: Order, candidates: list[DailyOrder]) -> int:
    """The ledger's orders that KIS could not tell from `order` (itself included) and that
    are in flight, or were adopted meanwhile as one of `candidates` (settled at once)."""
    return Order.objects.filter(
        Q(status=Order.Status.NEW, broker_order_no__isnull=True, send_started_at__isnull=False)
        | Q(broker_order_no__in=[o.odno for o in candidates]),
        side=order.side,
        symbol=order.symbol,
        qty=order.qty,
        limit_price=order.limit_price,
    ).count()


def _settled_meanwhile(order: Order) -> bool:
    return not Order.objects.filter(
        pk=order.pk, status=Order.Status.NEW, broker_order_no__isnull=True
    ).exists()


def order_settle(*, order_id, broker: Broker) -> Outcome:
    """Settle an order whose send may or may not have reached KIS: only on an inquiry taken
    after the send's deadline; adopt the one order at KIS it can be, alert when several can,
    send it again when none is (through the claim: never while HALTED)."""
    order = Order.objects.filter(pk=order_id).first()
    if (
        order is None
        or order.status != Order.Status.NEW
        or order.broker_order_no
        or order.quarantined_at is not None
    ):
        return Outcome.ALREADY
    started = order.send_started_at
    if started is None:
        return Outcome.ALREADY  # unsent: the sweep's unsent orders send it
    # The database's clock decides, the one every host shares: an inquiry begun before the
    # deadline could miss an order still on its way.
    if not Order.objects.filter(
        Q(send_deadline__lt=Now()) | Q(send_deadline__isnull=True),
        pk=order.pk,
        send_started_at=started,
    ).exists():
        return Outcome.IN_FLIGHT
    skew = dt.timedelta(seconds=settings.EXECUTION_CLOCK_SKEW_S + 1)
    since = started - skew
    # The match window on the sender's clock (KIS's, within the skew): its deadline is the
    # database's, which a host with a shifted clock (a replayed day) does not share.
    until = started + dt.timedelta(seconds=send_window_s(broker)) + skew
    rows = broker.daily_orders(
        start=since.astimezone(clock.SEOUL).date(),
        end=clock.now_seoul().date(),
        side=order.side,
        symbol=order.symbol,
        keep_bad=True,
    )
    unreadable = [r for r in rows if isinstance(r, BadDailyOrder)]
    if unreadable:  # one of them could be ours: neither adopt nor resend on a partial view
        _needs_a_person(
            order,
            gettext_noop("KIS's daily orders hold rows Aegis cannot read (%(rows)s)"),
            rows="; ".join(f"{r.odno or '?'}: {r.reason}" for r in unreadable),
        )
        return Outcome.AMBIGUOUS
    known = set(
        Order.objects.filter(
            symbol=order.symbol,
            broker_order_no__isnull=False,
            trade_date__gte=since.astimezone(clock.SEOUL).date(),
        ).values_list("broker_order_no", flat=True)
    )
    candidates = sorted(
        (
            o
            for o in rows
            if isinstance(o, DailyOrder)  # all are: an unreadable row returned above
            and o.odno not in known
            and could_be(o, order=order, since=since, until=until)
        ),
        key=lambda o: (o.ord_dt, o.ord_tmd, o.odno),
    )
    if len(candidates) > 1:
        # Identical orders of the ledger's own, all in flight, are interchangeable: as many
        # candidates as those are theirs. One more is an order the ledger does not know (a
        # person's, in the MTS app): which one is ours is not guessed.
        ours = _identical_in_flight(order, candidates)
        if len(candidates) > ours:
            _needs_a_person(
                order,
                gettext_noop(
                    "KIS shows %(count)s orders it could be (%(odnos)s) for %(ours)s such "
                    "order(s) of the ledger in flight"
                ),
                count=len(candidates),
                odnos=", ".join(o.odno for o in candidates),
                ours=ours,
            )
            return Outcome.AMBIGUOUS
    for match in candidates:
        try:
            order_mark_submitted(
                order_id=order.pk,
                broker_order_no=match.odno,
                broker_org_no=match.org_no,
                submitted_at=started,
            )
        except IntegrityError as exc:
            # Another settle adopted this number first (identical orders settled at once; KIS
            # numbers are unique within a day): the next candidate.
            if _constraint(exc) != "order_broker_order_no_unique":
                raise
            continue
        logger.warning(
            "execution.settled order_id=%s odno=%s (adopted from the daily inquiry)",
            order.pk,
            match.odno,
            extra={"order_id": str(order.pk)},
        )
        return Outcome.SUBMITTED
    if candidates:
        return Outcome.ALREADY if _settled_meanwhile(order) else Outcome.IN_FLIGHT
    cutoff = entry_cutoff(clock.now())
    if (
        order.side == Side.BUY
        and cutoff is not None
        and _old_entry_status(order.intent_id, cutoff) is not None
    ):
        # KIS never saw it, and it is too late to send it now.
        return _withheld(
            order, Withheld.ENTRY_EXPIRED, claim=started, log={"order_id": str(order.pk)}
        )
    logger.warning(
        "execution.never_arrived order_id=%s attempts=%s: sending it again",
        order.pk,
        order.send_attempts,
        extra={"order_id": str(order.pk)},
    )
    return order_send(order, broker, expected=started)
