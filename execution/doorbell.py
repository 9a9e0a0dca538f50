"""The doorbell: an intent's id from its commit to the execution worker in one Redis round trip.

The intent is already in PostgreSQL when it commits; all the execution worker needs is to hear
its id at once. A Celery hop costs 4–5 ms of that (the publish inside `.delay()` alone is
2–3 ms: the message, its headers and a new Redis client per publish; then the delivery and the
task's set-up; PERFORMANCE.md). So the committing process rings the doorbell instead: one
script that pushes the id onto a Redis list when some execution worker's lanes are listening.
Lanes are threads inside the execution worker, each blocked on the list.

While a lane listens, the intent's own transaction also records and claims its order (the
execute task's one statement, `order_open_claimed`, under the position lock the writer already
holds), and the ring carries what the broker call needs: the lane calls KIS as soon as it
hears, with no statement of its own before the call (`send_claimed`). An intent rung by id
alone is sent through the execute task's own service (`send_now` → `intent_submit`). Either
way the order is recorded and claimed before the call, so any other delivery of the same
intent finds it taken (I4).

Nothing is lost when nobody answers:
- no lanes alive (no execution worker, a prefork pool, the doorbell switched off):
  `listening` says so, and the commit enqueues the execute task as before; lanes that stopped
  since `listening` answered are found out by the ring, and the claim made meanwhile is
  released before the task is enqueued;
- Redis unreachable: the same, and the sweep sends what that enqueue could not;
- a lane that dies with an id in hand leaves a NEW intent or an order in flight: the sweep;
- anything a lane cannot send (KIS unreachable, a database error) is handed to the execute
  task, which retries.
"""

import datetime as dt
import json
import logging
import math
import os
import socket
import threading
import time

import redis
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger("aegis.execution")

QUEUE_KEY = "aegis:execution:doorbell"
# Who is listening: a sorted set of lane owners (one per worker process), scored by the moment
# (Redis's clock, ms) until which each counts as alive. A lane renews its owner's score every
# BLOCK_S; a process that dies stops renewing, and its entry lapses after ALIVE_MS.
LANES_KEY = "aegis:execution:doorbell:lanes"
BLOCK_S = 1
ALIVE_MS = 3_000

# 1 and the id pushed when a lane is alive, else 0 and nothing pushed (so ids never pile up
# where nobody listens).
_RING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) == 0 then
    return 0
end
redis.call('LPUSH', KEYS[1], ARGV[1])
return 1
"""

# How many lane owners are alive right now.
_LISTENING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return now
"""

_scripts: dict[str, object] = {}
_scripts_lock = threading.Lock()


def enabled() -> bool:
    return bool(settings.EXECUTION_DOORBELL and settings.REDIS_URL
                and not settings.CELERY_TASK_ALWAYS_EAGER)


def _script(source: str):
    """`source` registered on this process's Redis client (thread-safe; made once)."""
    script = _scripts.get(source)
    if script is None:
        with _scripts_lock:
            if not _scripts:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5,
                                              socket_connect_timeout=0.5)
                _scripts.update({s: client.register_script(s) for s in (_RING, _LISTENING)})
        script = _scripts[source]
    return script


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
    if not enabled():
        return False
    now = time.monotonic()
    until, answer = _listening
    if now < until:
        return answer
    try:
        answer = _script(_LISTENING)(keys=[LANES_KEY]) > 0
    except redis.RedisError:
        answer = False
    _listening = (now + LISTENING_TTL_S, answer)
    return answer


def listening_forget() -> None:
    """Ask Redis again on the next listening() (tests that start and stop lanes)."""
    global _listening
    _listening = (0.0, False)


def _push(item: str, log_id: str) -> bool:
    if not enabled():
        return False
    try:
        return _script(_RING)(keys=[QUEUE_KEY, LANES_KEY], args=[item]) == 1
    except redis.RedisError as exc:
        logger.warning("execution.doorbell_unreachable intent_id=%s: %s", log_id, exc,
                       extra={"intent_id": log_id})
        return False


def ring(intent_id: str) -> bool:
    """Announce a committed intent to the execution worker's lanes; False when none is
    listening or Redis cannot be reached (the caller enqueues the execute task instead)."""
    return _push(intent_id, intent_id)


def ring_claimed(order) -> bool:
    """Announce an order recorded and claimed in its intent's own transaction, with what the
    broker call needs, so a lane calls KIS at once without a statement of its own; False as
    `ring` (the caller then releases the claim and enqueues the execute task)."""
    return _push(json.dumps(order_payload(order)), str(order.intent_id))


def order_payload(order) -> dict:
    return {"order": str(order.pk), "intent": str(order.intent_id),
            "position": order.position_id, "symbol": order.symbol, "side": order.side,
            "qty": order.qty, "limit_price": order.limit_price,
            "claimed_at": order.send_started_at.isoformat()}


def order_from_payload(payload: dict):
    """The claimed order a ring carried, as order_open_claimed returns it (not read back)."""
    from .services.orders import claimed_order

    return claimed_order(id=payload["order"], intent_id=payload["intent"],
                         position_id=payload["position"], symbol=payload["symbol"],
                         side=payload["side"], qty=payload["qty"],
                         limit_price=payload["limit_price"],
                         at=dt.datetime.fromisoformat(payload["claimed_at"]))


class Lanes:
    """`count` threads that take intent ids off the doorbell and send their orders."""

    def __init__(self, *, count: int, broker=None, owner: str | None = None) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._broker = broker
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Blocking reads outlast BLOCK_S; a connection that hangs longer than that is dropped.
        self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=BLOCK_S + 5,
                                           socket_connect_timeout=2, health_check_interval=30)
        self._renew = self._redis.register_script(_RENEW)
        self._renewed_at = -math.inf

    def start(self) -> "Lanes":
        if self._broker is None:
            from .brokers import get_broker

            self._broker = get_broker()
        self._alive()  # rings go to the list from now on, before the threads are up
        for index in range(self.count):
            thread = threading.Thread(target=self._run, name=f"doorbell-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("execution.doorbell lanes=%d owner=%s", self.count, self.owner)
        return self

    def _alive(self) -> None:
        self._renew(keys=[LANES_KEY], args=[self.owner, ALIVE_MS])
        self._renewed_at = time.monotonic()

    def _keep_alive(self) -> None:
        """Renew the owner once a BLOCK_S for all lanes, not before every wait of each."""
        if time.monotonic() - self._renewed_at >= BLOCK_S:
            self._alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve_one()
            except redis.RedisError as exc:
                logger.warning("execution.doorbell_lane Redis: %s; retrying in 1 s", exc)
                self._stop.wait(1)
            except Exception:  # noqa: BLE001 - a lane never dies of one bad turn
                logger.exception("execution.doorbell_lane failed; going on in 1 s")
                self._stop.wait(1)
        connections.close_all()

    def _serve_one(self) -> None:
        """Wait up to BLOCK_S for an id and send its order (send_now hands whatever it cannot
        send to the execute task)."""
        from .sender import send_claimed, send_now

        self._keep_alive()
        taken = self._redis.brpop([QUEUE_KEY], timeout=BLOCK_S)
        if taken is not None:
            item = taken[1].decode()
            if item.startswith("{"):  # an order claimed in its intent's transaction
                send_claimed(order_from_payload(json.loads(item)), broker=self._broker)
            else:
                send_now(item, broker=self._broker)
        close_old_connections()  # as after a task: a broken or aged connection goes

    def stop(self, timeout_s: float = 10) -> None:
        """Stop listening (the owner is withdrawn at once, so rings go to the execute task),
        then let each lane finish the order in hand."""
        self._stop.set()
        try:
            self._redis.zrem(LANES_KEY, self.owner)
        except redis.RedisError:
            pass  # the entry lapses by itself
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._redis.close()


_worker_lanes: Lanes | None = None


def start_for_worker(consumer) -> Lanes | None:
    """Start lanes in a Celery worker that consumes the execution queue on a pool that runs
    tasks in the worker's own process (threads, solo); a prefork parent does not run tasks."""
    global _worker_lanes
    queues = {queue.name for queue in consumer.task_consumer.queues}
    pool = type(consumer.pool).__module__
    if not enabled() or "execution" not in queues or settings.EXECUTION_DOORBELL_LANES < 1:
        return None
    if not pool.endswith((".thread", ".solo")):
        logger.info("execution.doorbell off: the %s pool runs tasks in child processes; the "
                    "execute task serves", pool.rsplit(".", 1)[-1])
        return None
    _worker_lanes = Lanes(count=settings.EXECUTION_DOORBELL_LANES).start()
    return _worker_lanes


def stop_for_worker() -> None:
    global _worker_lanes
    if _worker_lanes is not None:
        _worker_lanes.stop()
        _worker_lanes = None
