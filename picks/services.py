"""Storing picks: a whole batch or nothing, idempotent on (source, external_id), routed once
committed."""

import logging

from django.db import transaction

from aegis import clock

from .models import Pick, PickSource

logger = logging.getLogger("aegis.picks")


def picks_ingest(*, source: PickSource, items: list[dict]) -> tuple[list[int], int]:
    """Store the validated picks of one batch. Returns each pick's id, in order (a repeat's is
    its first's), and how many were already known. The new ones are sent to the router when
    the batch commits; a broker outage then is logged, and the sweep routes them later."""
    keys = list(dict.fromkeys(item["external_id"] for item in items))
    now = clock.now()
    with transaction.atomic():
        known = set(Pick.objects.filter(source=source, external_id__in=keys)
                    .values_list("external_id", flat=True))
        first = {}
        for item in items:
            first.setdefault(item["external_id"], item)
        Pick.objects.bulk_create(
            [Pick(source=source, external_id=key, symbol=item["symbol"], side=item["side"],
                  qty=item.get("qty"), budget_krw=item.get("budget_krw"),
                  limit_price=item.get("limit_price"), score=item.get("score"),
                  generated_at=item["generated_at"], received_at=now)
             for key, item in first.items() if key not in known],
            ignore_conflicts=True)  # a concurrent batch with the same pick stored it first
        ids = dict(Pick.objects.filter(source=source, external_id__in=keys)
                   .values_list("external_id", "id"))
        new = [ids[key] for key in keys if key not in known]
        if new:
            from .tasks import picks_route_task

            transaction.on_commit(lambda: picks_route_task.delay(new), robust=True)
    duplicates = len(items) - len(new)
    logger.info("picks.ingested source=%s count=%s new=%s duplicates=%s", source.code,
                len(items), len(new), duplicates, extra={"source": source.code})
    return [ids[item["external_id"]] for item in items], duplicates
