"""Picks tasks: thin; each calls one service in picks/routing.py."""

from celery import shared_task


@shared_task(name="picks.route", ignore_result=True)
def picks_route_task(pick_ids: list[int]) -> dict:
    """Route picks just ingested (enqueued when their batch commits)."""
    from .routing import picks_route

    return picks_route(pick_ids=pick_ids, routed_by="EVENT")
