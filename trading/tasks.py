"""Exit-engine tasks: thin; each calls one service."""

import datetime as dt
import logging
import uuid

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from core import clock
from execution.broker import get_broker
from execution.models import FlattenPolicy
from execution.services.expiry import orders_expire
from execution.services.flatten import flatten_policy_check
from kis.protocol import Flavour

from .calendar_sync import calendar_check
from .services import (
    DECIDED_AGAIN,
    day_end_run,
    exit_pass,
    gap_prequeue,
    limit_orders_due,
    nxt_pauses_lift,
    prices_stale_alert,
    prices_stale_since,
)

logger = logging.getLogger("aegis.trading")

PASS_LOCK = "trading:exit_pass:running"
PASS_LOCK_TTL_S = 30


@shared_task(name="trading.exit_pass", acks_late=False, ignore_result=True)
def exit_pass_task() -> dict:
    """One evaluation pass over every managed position. Passes never overlap: a pass that
    finds another running is skipped (the next one is at most one interval away)."""
    token = uuid.uuid4().hex
    try:
        mine = cache.add(PASS_LOCK, token, timeout=PASS_LOCK_TTL_S)
    except Exception:  # noqa: BLE001 - no shared cache: this process alone decides
        logger.warning("trading.exit_pass lock unavailable; running without it")
        mine = True
    if not mine:
        return {"skipped": "another pass is running"}
    try:
        result = exit_pass()
        return {
            "evaluated": result.evaluated,
            "exits": result.exits,
            "no_price": result.skipped_no_price,
        }
    finally:
        try:
            if cache.get(PASS_LOCK) == token:
                cache.delete(PASS_LOCK)
        except Exception:  # noqa: BLE001 - the lock expires by itself
            pass


@shared_task(name="trading.exit_orders_expire", expires=5, time_limit=60, ignore_result=True)
def exit_orders_expire_task() -> dict:
    """Re-price the engine's exits: cancel those still unfilled TRADING_EXIT_ORDER_TIMEOUT_S into
    the session; their shares are free again and the next evaluation decides at today's price."""

    timeout = dt.timedelta(seconds=settings.TRADING_EXIT_ORDER_TIMEOUT_S)
    if not limit_orders_due(clock.now_seoul(), timeout):
        return {"skipped": "outside the session"}
    return orders_expire(broker=get_broker(), timeout=timeout, intent_types=DECIDED_AGAIN)


@shared_task(name="trading.gap_prequeue", ignore_result=True)
def gap_prequeue_task() -> int:
    """Before the bell: every managed position's GAP_DOWN threshold, kept hot."""
    return gap_prequeue()


@shared_task(name="trading.flatten_check", expires=10, time_limit=60, ignore_result=True)
def flatten_check_task() -> str:
    """The emergency-flatten policy, every few seconds (beat): KIS's order circuit as this
    process's client sees it (shared through Redis), and whether every held price is stale.
    First, any held symbol without a fresh price is alerted (PRICES), whatever the policy."""

    prices_stale_alert(stale_s=settings.TRADING_PRICES_STALE_ALERT_S)
    policy = FlattenPolicy.current()
    if not policy.enabled:
        return "disabled"
    alert = flatten_policy_check(
        breaker_state=get_broker().breakers.state("order"),
        prices_stale_since=prices_stale_since(stale_s=policy.prices_stale_s),
        policy=policy,
    )
    return alert.key if alert is not None else "nothing to decide"


@shared_task(name="trading.day_end", expires=50, time_limit=120, ignore_result=True)
def day_end_task() -> dict:
    """After each trading day's close: its day orders end in the ledger (execution's day_end).
    Every 10 s (beat's database schedule); it finds nothing to do but once a day, and catches
    up a day a stopped beat missed. In KRX's exit phases it also resumes the exits a Nextrade
    refusal paused (nxt_pauses_lift): not a day's end, but the task that runs every 10 s."""

    nxt_pauses_lift(clock.now())
    return day_end_run(broker=get_broker())


@shared_task(name="trading.calendar_check", expires=3600, time_limit=120, ignore_result=True)
def calendar_check_task() -> list[str]:
    """Once a day (beat, 07:30 Seoul): the market calendar against KIS's holiday inquiry,
    disagreements alerted. The inquiry serves real accounts only."""

    broker = get_broker()
    if broker.config.flavour is Flavour.PAPER:
        return ["skipped: KIS's holiday inquiry serves real accounts only"]
    return calendar_check(broker=broker)
