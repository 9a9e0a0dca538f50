"""Picks tasks: thin; each calls services in picks/routing.py."""

import datetime as dt
import logging

from celery import shared_task

from execution.broker import get_broker

from .models import GateSettings
from .routing import orphans, picks_route

logger = logging.getLogger("aegis.picks")


def route_now(pick_ids: list[int], routed_by: str, *, broker=None, rung=None) -> dict:
    """Route the picks from this thread (`rung`: as the doorbell's ring carried them, by id);
    each entry's order is sent as this process sends (execution/dispatch.py)."""

    return picks_route(
        pick_ids=pick_ids, routed_by=routed_by, broker=broker or get_broker(), rung=rung
    )


@shared_task(name="picks.route", ignore_result=True, time_limit=120)
def picks_route_task(pick_ids: list[int]) -> dict:
    """Route picks just ingested (enqueued when their batch commits and no router's lane
    listens on the doorbell, picks/doorbell.py)."""
    return route_now(pick_ids, "EVENT")


@shared_task(name="picks.sweep", expires=50, time_limit=120)
def picks_sweep_task() -> dict:
    """The safety net, every minute: route picks still NEW some seconds after they arrived
    (their route task was never enqueued, or was lost). A warning says how many."""

    after = dt.timedelta(seconds=GateSettings.current().sweep_after_s)
    pick_ids = orphans(older_than=after)
    if not pick_ids:
        return {"orphans": 0}
    logger.warning(
        "picks.sweep orphans=%d: routing picks still NEW after %s s",
        len(pick_ids),
        int(after.total_seconds()),
        extra={"orphans": len(pick_ids)},
    )
    return {"orphans": len(pick_ids), **route_now(pick_ids, "SWEEP")}
