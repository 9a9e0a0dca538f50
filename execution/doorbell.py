"""The doorbell: an intent's id from its commit to the execution worker in one Redis round trip.

The intent is already in PostgreSQL when it commits; all the execution worker needs is to hear
its id at once. A Celery hop costs 4–5 ms of that (the publish inside `.delay()` alone is
2–3 ms: the message, its headers and a new Redis client per publish; then the delivery and the
task's set-up; PERFORMANCE.md). So the committing process rings the doorbell instead: one
script that pushes the id onto a Redis list when some execution worker's lanes are listening.
Lanes are threads inside the execution worker, each blocked on the list.

While a lane listens, the intent's own transaction also records its order (the execute task's
one statement, `order_open_recorded`, under the position lock the writer already holds), and
the ring carries what the broker call needs: the lane calls KIS as soon as it hears
(`send_recorded`). An intent rung by id alone is sent through the execute task's own service
(`send_now` → `intent_submit`). Either way the send claims the order on its row right before
the broker write (execution/services/claim.py), so of all the deliveries of one intent only one
writes (I4); a payload left on the list longer than EXECUTION_PAYLOAD_TTL_S (a worker stopped
with items queued) is not sent from the list: the sweep sends its order from the row.

Nothing is lost when nobody answers:
- no lanes alive (no execution worker, a prefork pool, the doorbell switched off):
  `listening` says so, and the commit enqueues the execute task as before; lanes that stopped
  since `listening` answered are found out by the ring, and the task is enqueued;
- Redis unreachable: the same, and the sweep sends what that enqueue could not;
- a lane that dies with an id in hand leaves a NEW intent or an order in flight: the sweep;
- anything a lane cannot send (KIS unreachable, a database error) is handed to the execute
  task, which retries.

The lanes, bells and rings are the bus's (core/bus.py); this is the execution bell. The same
lanes serve the picks router's bell (picks/doorbell.py) in a worker that consumes the picks
queue, the execution bell first.
"""

import datetime as dt
import json
import logging
import time

import redis
from django.conf import settings

from core import bus
from core.bus import Bell, Lanes
from market.calendar import Venue

from .broker import get_broker
from .sender import send_now, send_recorded
from .services.orders import recorded_order

logger = logging.getLogger("aegis.execution")

QUEUE_KEY = "aegis:execution:doorbell"
LANES_KEY = "aegis:execution:doorbell:lanes"

# listening() is asked inside the intent's transaction, under the position lock: its answer is
# kept this long, so that transactions do not wait on Redis (nor, while Redis is down, on its
# connect timeout). A stale answer costs nothing but speed: a claim that nobody hears is
# released to the execute task, and an id rung by itself is sent through intent_submit.
LISTENING_TTL_S = 1.0
_listening: tuple[float, bool] = (0.0, False)  # (monotonic time it holds until, the answer)


def listening() -> bool:
    """Whether some execution worker's lanes listen (False without Redis), as of at most
    LISTENING_TTL_S ago."""
    global _listening
    if not bus.enabled():
        return False
    now = time.monotonic()
    until, answer = _listening
    if now < until:
        return answer
    try:
        answer = bus.listeners(EXECUTION) > 0
    except redis.RedisError:
        answer = False
    _listening = (now + LISTENING_TTL_S, answer)
    return answer


def listening_forget() -> None:
    """Ask Redis again on the next listening() (tests that start and stop lanes)."""
    global _listening
    _listening = (0.0, False)


def ring(intent_id: str) -> bool:
    """Announce a committed intent to the execution worker's lanes; False when none is
    listening or Redis cannot be reached (the caller enqueues the execute task instead)."""
    return bus.push(EXECUTION, [intent_id])


def ring_recorded(order) -> bool:
    """Announce an order recorded in its intent's own transaction, with what the broker call
    needs, so a lane calls KIS at once; False as `ring` (the caller then enqueues the execute
    task)."""
    return bus.push(EXECUTION, [json.dumps(order_payload(order))])


def order_payload(order) -> dict:
    return {
        "order": str(order.pk),
        "intent": str(order.intent_id),
        "position": order.position_id,
        "symbol": order.symbol,
        "venue": order.venue,
        "side": order.side,
        "qty": order.qty,
        "limit_price": order.limit_price,
        "at": order.created_at.isoformat(),
    }


def order_from_payload(payload: dict):
    """The recorded order a ring carried, as order_open_recorded returns it (not read back)."""

    return recorded_order(
        id=payload["order"],
        intent_id=payload["intent"],
        position_id=payload["position"],
        symbol=payload["symbol"],
        venue=payload.get("venue", Venue.KRX),  # rung before orders had venues: KRX
        side=payload["side"],
        qty=payload["qty"],
        limit_price=payload["limit_price"],
        at=dt.datetime.fromisoformat(payload["at"]),
    )


def _send_item(item: str, broker) -> None:
    """The execution bell's item: an order recorded in its intent's transaction (JSON), or an
    intent's id. send_now and send_recorded hand whatever they cannot send to the execute
    task."""

    if item.startswith("{"):
        send_recorded(
            order_from_payload(json.loads(item)),
            broker=broker,
            max_age_s=settings.EXECUTION_PAYLOAD_TTL_S,
        )
    else:
        send_now(item, broker=broker)


EXECUTION = Bell(QUEUE_KEY, LANES_KEY, _send_item)


_worker_lanes: Lanes | None = None


def start_for_worker(consumer, bells: dict[str, Bell] | None = None) -> Lanes | None:
    """Start lanes in a Celery worker on a pool that runs tasks in the worker's own process
    (threads, solo; a prefork parent does not run tasks), listening on the bell of each queue
    the worker consumes: `bells`, by queue name (the execution bell for the execution queue
    by default), in that order of priority."""
    global _worker_lanes
    queues = {queue.name for queue in consumer.task_consumer.queues}
    served = [
        bell for queue, bell in (bells or {"execution": EXECUTION}).items() if queue in queues
    ]
    pool = type(consumer.pool).__module__
    if not bus.enabled() or not served or settings.EXECUTION_DOORBELL_LANES < 1:
        return None
    if not pool.endswith((".thread", ".solo")):
        logger.info(
            "doorbell off: the %s pool runs tasks in child processes; the tasks serve",
            pool.rsplit(".", 1)[-1],
        )
        return None

    _worker_lanes = Lanes(
        count=settings.EXECUTION_DOORBELL_LANES, broker=get_broker(), bells=served
    ).start()
    return _worker_lanes


def stop_for_worker() -> None:
    global _worker_lanes
    if _worker_lanes is not None:
        _worker_lanes.stop()
        _worker_lanes = None
