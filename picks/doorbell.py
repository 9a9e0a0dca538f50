"""The picks router's doorbell: a stored pick's id from the ingest's commit to a router in one
Redis round trip, instead of the route task's Celery hop (its publish alone costs the web
request 2–3 ms, then the delivery and the task's set-up; bench/ingest.py).

A small batch is announced before it is stored, too (heads_up): a lane begins reading the
market of its picks (the quote and the order book, asked of KIS unless the cache has them)
while the ingest writes them, and each pick's route, rung once the batch commits, joins that
read instead of beginning its own (market.reads.market_prefetch). The heads-up is written to
Redis without waiting for its answer; it never routes anything, and a route that finds no
read under way (a heads-up lost, or served by another worker) reads the market itself.

The routers are lanes of the bus (core/bus.py) of their own, in a worker that
consumes the picks queue on a thread pool: PICKS_LANES threads that serve the picks bell only,
never the execution bell's threads, so that a flood of picks cannot hold back an exit. Each
routes one rung pick at a time, and the order an entry becomes is sent by the picks' own sender
threads once its transaction commits. Before each route, a lane gives way to exits while the
KIS rate window is short (routing.exits_first). The backlog is bounded: an ingest that would
take it past PICKS_QUEUE_MAX is refused (503) before anything is stored
(services.picks_backlog_room). Nothing is lost when nobody
answers: with no lanes alive, Redis unreachable or the doorbell off, the ring says so and the
ingest enqueues the route task instead; a pick whose lane dies before it is routed stays NEW
for the orphan sweep; a pick rung twice, or reached by the sweep as well, is routed once (the
router takes it with FOR UPDATE SKIP LOCKED among NEW picks)."""

import contextlib
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence

from django.conf import settings

from core import bus, clock
from execution import dispatch
from execution.broker import get_broker
from execution.sender import InProcessSender
from market import reads

from . import gates
from .routing import account_ahead, exits_first, exits_short, heads_up_serve
from .tasks import picks_route_task, route_now

logger = logging.getLogger("aegis.picks")

QUEUE_KEY = "aegis:picks:doorbell"
LANES_KEY = "aegis:picks:doorbell:lanes"


def item(pick_id: int, ask: gates.Ask) -> str:
    """A stored pick as rung: its id and the pick as the gates see it, which the router screens
    before it asks the broker for the market (gates.screen), so that it need not read the pick
    first."""
    return json.dumps(_ask_dict(ask) | {"id": pick_id})


def heads_up_item(asks: Iterable[gates.Ask]) -> str:
    """A heads-up: the picks of a batch about to be stored, as the gates see them, so that a
    lane begins reading their market while the ingest writes them (routing.heads_up_serve)."""
    return json.dumps({"heads_up": [_ask_dict(ask) for ask in asks]})


def _ask_dict(ask: gates.Ask) -> dict:
    return dataclasses.asdict(ask) | {"generated_at": ask.generated_at.isoformat()}


def _ask(payload: dict) -> gates.Ask:
    fields = {name: payload[name] for name in gates.Ask.__dataclass_fields__}
    return gates.Ask(
        **fields | {"generated_at": dt.datetime.fromisoformat(payload["generated_at"])}
    )


def _serve(item: str, broker) -> None:
    """A lane's turn on the picks bell: a heads-up (heads_up_item), or a stored pick's ring
    (item)."""

    payload = json.loads(item)
    if "heads_up" not in payload:
        _route_rung(payload, broker)
        return
    if exits_short(broker):  # only a head start: not while exits need the rate
        return
    try:
        heads_up_serve([_ask(ask) for ask in payload["heads_up"]], broker=broker)
    except Exception as exc:  # noqa: BLE001 - only a head start: the route reads the market
        logger.info("picks.heads_up_failed: %s", type(exc).__name__)


def _route_rung(payload: dict, broker) -> None:
    """Route a rung pick; one this lane cannot route (a database error, say) goes to the route
    task, which tries again in another process (a pick already routed is skipped there)."""

    pick_id = payload["id"]
    try:
        exits_first(broker)
        route_now(
            [pick_id],
            "EVENT",
            broker=broker,
            rung={pick_id: _ask(payload)},
        )
    except Exception as exc:  # noqa: BLE001 - the route task, then the sweep, take it
        logger.warning(
            "picks.doorbell_route_failed pick_id=%s: %s: handed to the route task",
            pick_id,
            type(exc).__name__,
            extra={"pick_id": pick_id},
        )
        try:
            picks_route_task.delay([pick_id])
        except Exception as enqueue:  # noqa: BLE001 - the orphan sweep routes it
            logger.error(
                "picks.route_enqueue_failed pick_id=%s error=%s: left for the sweep",
                pick_id,
                type(enqueue).__name__,
            )


PICKS = bus.Bell(QUEUE_KEY, LANES_KEY, _serve)


def ring(items: Sequence[str]) -> bool:
    """Announce committed picks (item() each) to the routers' lanes, one ring each (lanes
    route them side by side, oldest first); False when no lane listens or Redis cannot be
    reached (the caller enqueues the route task instead)."""
    return bus.push(PICKS, items)


@contextlib.contextmanager
def heads_up(picks: Sequence):
    """Around the storing of a small batch (`picks`, at most PICKS_HEADS_UP_MAX): the routers'
    lanes hear which picks are coming as it begins, so that their market is read while the
    batch is written (nothing when no lane listens). The heads-up is written to Redis without
    waiting for its answer, which is read when the block ends."""
    sent = bus.Unanswered()
    if picks and len(picks) <= settings.PICKS_HEADS_UP_MAX:
        sent = bus.push_unanswered(PICKS, [heads_up_item(map(gates.Ask.of, picks))])
    try:
        yield
    finally:
        sent.answered()


# --- the picks' own lanes in the worker -----------------------------------------------------------

_worker_lanes: bus.Lanes | None = None
_worker_sender: InProcessSender | None = None


def start_for_worker(consumer) -> bus.Lanes | None:
    """Lanes of their own for the picks bell, in a worker that consumes the picks queue on a
    pool that runs tasks in its own process (threads, solo); None otherwise (the route task
    serves)."""
    global _worker_lanes, _worker_sender
    queues = {queue.name for queue in consumer.task_consumer.queues}
    pool = type(consumer.pool).__module__
    if not bus.enabled() or "picks" not in queues or settings.PICKS_LANES < 1:
        return None
    if not pool.endswith((".thread", ".solo")):
        logger.info(
            "picks doorbell off: the %s pool runs tasks in child processes; the route task serves",
            pool.rsplit(".", 1)[-1],
        )
        return None
    # The entries this worker routes are sent from it (execution/sender.py): a thread of the
    # sender's takes the KIS token, the breaker's state and a rate slot while the entry's
    # transaction commits, then sends the order; the lane is free for the next ring.
    _worker_sender = InProcessSender(broker=get_broker())
    dispatch.install(_worker_sender)
    _worker_lanes = bus.Lanes(
        count=settings.PICKS_LANES, broker=get_broker(), bells=(PICKS,)
    ).start()
    return _worker_lanes


def market_lanes_warm() -> int:
    """The market's threads, on which the router reads the market and, beside the broker
    calls, the account: each runs the route's account statement (routing.account_ahead) until
    its connection has it prepared and planned (market.reads.market_lanes_warm). Returns how
    many threads were warmed."""

    return reads.market_lanes_warm(account_ahead, "", trading_state="", now=clock.now(), pick_id=0)


def stop_for_worker() -> None:
    global _worker_lanes, _worker_sender
    if _worker_lanes is not None:
        _worker_lanes.stop()
        _worker_lanes = None
    if _worker_sender is not None:
        dispatch.install(None)
        _worker_sender.close()
        _worker_sender = None
