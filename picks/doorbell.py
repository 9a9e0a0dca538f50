"""The picks router's doorbell: a stored pick's id from the ingest's commit to a router in one
Redis round trip, instead of the route task's Celery hop (its publish alone costs the web
request 2–3 ms, then the delivery and the task's set-up; bench/ingest.py).

The routers are the doorbell's lanes (execution/doorbell.py) in a worker that consumes the
picks queue on a thread pool: each lane routes one rung pick at a time, and the order an entry
becomes is sent from the same lane once its transaction commits. Nothing is lost when nobody
answers: with no lanes alive, Redis unreachable or the doorbell off, the ring says so and the
ingest enqueues the route task instead; a pick whose lane dies before it is routed stays NEW
for the orphan sweep; a pick rung twice, or reached by the sweep as well, is routed once (the
router takes it with FOR UPDATE SKIP LOCKED among NEW picks)."""

import logging
from collections.abc import Sequence

from execution import doorbell

logger = logging.getLogger("aegis.picks")

QUEUE_KEY = "aegis:picks:doorbell"
LANES_KEY = "aegis:picks:doorbell:lanes"


def _route_rung(item: str, broker) -> None:
    """Route a rung pick; one this lane cannot route (a database error, say) goes to the route
    task, which tries again in another process (a pick already routed is skipped there)."""
    from .tasks import picks_route_task, route_now

    try:
        route_now([int(item)], "EVENT", broker=broker)
    except Exception as exc:  # noqa: BLE001 - the route task, then the sweep, take it
        logger.warning("picks.doorbell_route_failed pick_id=%s: %s: handed to the route task",
                       item, type(exc).__name__, extra={"pick_id": item})
        try:
            picks_route_task.delay([int(item)])
        except Exception as enqueue:  # noqa: BLE001 - the orphan sweep routes it
            logger.error("picks.route_enqueue_failed pick_id=%s error=%s: left for the sweep",
                         item, type(enqueue).__name__)


PICKS = doorbell.Bell(QUEUE_KEY, LANES_KEY, _route_rung)


def ring(pick_ids: Sequence[int]) -> bool:
    """Announce committed picks to the routers' lanes, one item each (lanes route them side
    by side, oldest first); False when no lane listens or Redis cannot be reached (the caller
    enqueues the route task instead)."""
    return doorbell.push(PICKS, [str(pick_id) for pick_id in pick_ids])
