"""The emergency-flatten policy (the review's P2 #7): when KIS has been down for N minutes, or
every held symbol's price has gone stale in the session, a person must decide what to do about
the open positions. Aegis says so once per outage (a critical alert recommending to flatten by
hand in the MTS app) and, only with auto_flatten on, opens one FLATTEN intent per open position
through the ledger and sets trading to REDUCING; the intents wait while KIS is down and go out
when it answers. The decision, and the alert that carries it, are written in one transaction,
keyed by the outage: it is taken once, whichever process checks first.
"""

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext, gettext_noop

from core import clock

from ..alerts import alert_raise
from ..exceptions import InsufficientAvailableQty, PositionClosed
from ..models import Alert, FlattenPolicy, Position
from .positions import position_flatten
from .trading_state import trading_state_set

logger = logging.getLogger("aegis.alerts")

ORDER_BREAKER = "kis-order"


def kis_down_since(breaker_state: str) -> dt.datetime | None:
    """When KIS's order circuit opened, if it is not closed now: the first open alert after
    the last closed one (our clock, so the policy runs on the injectable clock)."""
    if breaker_state == "closed":
        return None
    alerts = Alert.objects.filter(kind=Alert.Kind.BREAKER, subject=ORDER_BREAKER)
    closed = alerts.filter(state="closed").aggregate(at=Max("created_at"))["at"]
    opened = alerts.filter(state="open")
    if closed is not None:
        opened = opened.filter(created_at__gt=closed)
    first = opened.order_by("created_at").values_list("created_at", flat=True).first()
    return first


def flatten_policy_check(
    *,
    breaker_state: str,
    prices_stale_since: dt.datetime | None = None,
    policy: FlattenPolicy | None = None,
) -> Alert | None:
    """Apply the policy now; the decision's alert, or None when nothing is to be decided (the
    policy off, no trigger, or this outage decided already). `breaker_state` is KIS's order
    circuit as the caller's KIS client sees it; `prices_stale_since`, when every held
    symbol's price has been stale in the session (the exit engine knows: trading/services.py).
    `policy`: the one in force, when the caller has read it already."""
    policy = policy or FlattenPolicy.current()
    if not policy.enabled:
        return None
    now = clock.now()
    since = kis_down_since(breaker_state)
    if since is not None and now - since >= dt.timedelta(minutes=policy.kis_down_minutes):
        trigger, kind = gettext_noop("KIS down since %(since)s"), "kis-down"
    elif (
        policy.on_prices_stale
        and prices_stale_since is not None
        and (now - prices_stale_since).total_seconds() >= policy.prices_stale_s
    ):
        since = prices_stale_since
        trigger = gettext_noop("every held symbol's price stale since %(since)s")
        kind = "prices-stale"
    else:
        return None
    return _decide(
        policy,
        trigger=trigger,
        since=f"{since.astimezone(clock.SEOUL):%H:%M:%S}",
        key=f"flatten:{kind}:{int(since.timestamp())}",
    )


def _decide(policy: FlattenPolicy, *, trigger: str, since: str, key: str) -> Alert | None:
    """`trigger`: an English template (gettext_noop) of what set the policy off, `since` its
    %(since)s; alerted in the process's language, kept in English as the trading state's
    reason."""
    with transaction.atomic():
        positions = list(
            Position.objects.filter(status=Position.Status.OPEN, qty__gt=0).order_by("symbol")
        )
        held = ", ".join(f"{p.symbol} ×{p.qty}" for p in positions) or gettext("none")
        if policy.auto_flatten:
            message = gettext(
                "%(trigger)s. Auto-flatten is on: trading goes to REDUCING and each open "
                "position gets a FLATTEN intent, sent when KIS answers. Positions: %(held)s."
            )
        else:
            message = gettext(
                "%(trigger)s. Auto-flatten is off: nothing is sold. Recommendation: flatten by "
                "hand in the MTS app if the outage lasts. Positions: %(held)s."
            )
        alert = alert_raise(
            kind=Alert.Kind.FLATTEN,
            severity=Alert.Severity.CRITICAL,
            subject="flatten",
            message=message % {"trigger": gettext(trigger) % {"since": since}, "held": held},
            key=key,
        )
        if alert is None or not policy.auto_flatten:
            return alert
        trading_state_set(
            state="REDUCING",
            reason=f"emergency flatten: {trigger % {'since': since}}",
            changed_by="flatten policy",
        )
        for position in positions:
            try:
                position_flatten(position_id=position.pk, requested_by="the flatten policy")
            except (InsufficientAvailableQty, PositionClosed) as exc:
                logger.warning("flatten.skipped position_id=%s: %s", position.pk, exc)
    return alert
