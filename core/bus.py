"""The bus: items rung from one process to lanes (threads) listening in another, in one Redis
round trip, instead of a Celery hop (4–5 ms of publish, delivery and task set-up).

A bell is a Redis list and a sorted set of the owners (one per process) whose lanes serve it.
Ringing pushes the items only when some owner is alive, in one script, so items never pile up
where nobody listens: the caller then falls back to its Celery task, and so does a ringer that
cannot reach Redis. A lane waits on every bell its process serves at once, the first bell
first, and hands each item to the bell's `serve` with the lanes' broker; whatever that cannot
do it hands to a task of its own. The execution bell (execution/doorbell.py) sends orders; the
picks bell (picks/doorbell.py) routes picks.
"""

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import redis
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger("aegis.bus")

# Who is listening: a sorted set of lane owners (one per worker process), scored by the moment
# (Redis's clock, ms) until which each counts as alive. A lane renews its owner's score every
# BLOCK_S; a process that dies stops renewing, and its entry lapses after ALIVE_MS.
BLOCK_S = 1
ALIVE_MS = 3_000

# 1 and the items pushed (in order: lanes pop the oldest first) when a lane is alive, else 0
# and nothing pushed (so items never pile up where nobody listens).
_RING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) == 0 then
    return 0
end
redis.call('LPUSH', KEYS[1], unpack(ARGV))
return 1
"""

# How many lane owners are alive right now.
_LISTENING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

# The owner renewed in every bell its lanes serve.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[2]) * 2)
end
return now
"""


class Bell(NamedTuple):
    """What lanes listen on: the list rung (`queue`), the sorted set of the owners whose lanes
    serve it (`lanes`), and what a lane does with an item taken off the list (`serve`, called
    with the item and the lanes' broker; whatever it cannot do it hands to a Celery task)."""

    queue: str
    lanes: str
    serve: Callable[[str, object], None]


_scripts: dict[str, object] = {}
_scripts_lock = threading.Lock()


def enabled() -> bool:
    return bool(
        settings.EXECUTION_DOORBELL and settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER
    )


def _script(source: str):
    """`source` registered on this process's Redis client (thread-safe; made once, and loaded
    on Redis then, so that a push whose answer is read later finds it)."""
    script = _scripts.get(source)
    if script is None:
        with _scripts_lock:
            if not _scripts:
                client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5
                )
                _scripts.update({s: client.register_script(s) for s in (_RING, _LISTENING)})
                try:
                    for s in (_RING, _LISTENING):
                        client.script_load(s)
                except redis.RedisError:  # loaded by its first call instead
                    pass
        script = _scripts[source]
    return script


def reset() -> None:
    """Forget this process's Redis client and scripts: the next call makes them afresh from
    settings.REDIS_URL."""
    with _scripts_lock:
        _scripts.clear()


def listeners(bell: Bell) -> int:
    """How many owners' lanes serve `bell` right now (Redis errors propagate)."""
    return _script(_LISTENING)(keys=[bell.lanes])


def push(bell: Bell, items: Sequence[str]) -> bool:
    """Ring `bell` with `items`, in one round trip: True when some owner's lanes listen (the
    items wait on its list for them), False when none does, Redis cannot be reached or the
    doorbell is off (nothing pushed: the caller falls back to its Celery task)."""
    if not enabled():
        return False
    try:
        return _script(_RING)(keys=[bell.queue, bell.lanes], args=list(items)) == 1
    except redis.RedisError as exc:
        logger.warning("doorbell.unreachable bell=%s items=%d: %s", bell.queue, len(items), exc)
        return False


# After a push_unanswered that met a Redis failure, none is tried for this long: a ring that only
# gives a head start must not cost every request a connect timeout while Redis is down.
UNANSWERED_PAUSE_S = 1.0
_unanswered_paused_until = 0.0


def unanswered_paused() -> bool:
    """Whether pushes whose answer is read later are paused after a Redis failure."""
    return time.monotonic() < _unanswered_paused_until


def _unanswered_failed(what: str, exc: Exception) -> None:
    global _unanswered_paused_until
    _unanswered_paused_until = time.monotonic() + UNANSWERED_PAUSE_S
    logger.info(
        "doorbell.unanswered %s: %s; none sent for %.0f s",
        what,
        type(exc).__name__,
        UNANSWERED_PAUSE_S,
    )


class Unanswered:
    """A push sent without waiting for Redis's answer (push_unanswered): the sender goes on
    with its own work meanwhile, then reads the answer (`answered`), which frees the
    connection."""

    def __init__(self, pool=None, conn=None) -> None:
        self._pool, self._conn = pool, conn

    def answered(self) -> bool:
        """True when some owner's lanes listen and the items were pushed (as push); False
        when none does, Redis failed, or nothing was sent. Reads once."""
        conn, self._conn = self._conn, None
        if conn is None:
            return False
        try:
            return conn.read_response() == 1
        except redis.exceptions.NoScriptError:  # the next push's script loads it again
            return False
        except redis.RedisError as exc:
            _unanswered_failed("answer", exc)
            return False
        finally:
            self._pool.release(conn)


def push_unanswered(bell: Bell, items: Sequence[str]) -> Unanswered:
    """push, but its answer read later: the script's call is written to Redis and the caller
    goes on (for a ring that only gives the lanes a head start; push's own script loads it on
    Redis, so a Redis that lost it answers this one with an error, read as False). Nothing is
    sent for UNANSWERED_PAUSE_S after one met a Redis failure."""
    if not enabled() or unanswered_paused():
        return Unanswered()
    script = _script(_RING)
    pool = script.registered_client.connection_pool
    conn = None
    try:
        conn = pool.get_connection()
        conn.send_command("EVALSHA", script.sha, 2, bell.queue, bell.lanes, *items)
    except redis.RedisError as exc:
        _unanswered_failed(f"bell={bell.queue}", exc)
        if conn is not None:
            pool.release(conn)
        return Unanswered()
    return Unanswered(pool, conn)


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the lanes' client answers bytes: no decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value


class Lanes:
    """`count` threads that wait on the `bells` and serve what is rung, with `broker` (given
    before start)."""

    def __init__(
        self,
        *,
        count: int,
        broker=None,
        owner: str | None = None,
        bells: Sequence[Bell],
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        if not bells:
            raise ValueError("lanes listen on at least one bell")
        self.count = count
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.bells = {bell.queue: bell for bell in bells}
        self._broker = broker
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Blocking reads outlast BLOCK_S; a connection that hangs longer than that is dropped.
        self._redis = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=BLOCK_S + 5,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
        self._renew = self._redis.register_script(_RENEW)
        self._renewed_at = -math.inf

    def start(self) -> "Lanes":
        if self._broker is None:
            raise ValueError("lanes serve their bells with a broker: give it before start")
        self._alive()  # rings go to the list from now on, before the threads are up
        for index in range(self.count):
            thread = threading.Thread(target=self._run, name=f"doorbell-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "doorbell lanes=%d owner=%s bells=%s", self.count, self.owner, ",".join(self.bells)
        )
        return self

    def _alive(self) -> None:
        self._renew(keys=[bell.lanes for bell in self.bells.values()], args=[self.owner, ALIVE_MS])
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
                logger.warning("bus.lane Redis: %s; retrying in 1 s", exc)
                self._stop.wait(1)
            except Exception:  # noqa: BLE001 - a lane never dies of one bad turn
                logger.exception("bus.lane failed; going on in 1 s")
                self._stop.wait(1)
        connections.close_all()

    def _serve_one(self) -> None:
        """Wait up to BLOCK_S for an item on any of the bells (the first bell's before the
        others' when several wait) and serve it."""
        self._keep_alive()
        taken = self._redis.brpop(list(self.bells), timeout=BLOCK_S)
        if taken is not None:
            self.bells[_text(taken[0])].serve(_text(taken[1]), self._broker)
        close_old_connections()  # as after a task: a broken or aged connection goes

    def stop(self, timeout_s: float = 10) -> None:
        """Stop listening (the owner is withdrawn at once, so rings go to the execute task),
        then let each lane finish the order in hand."""
        self._stop.set()
        try:
            for bell in self.bells.values():
                self._redis.zrem(bell.lanes, self.owner)
        except redis.RedisError:
            pass  # the entry lapses by itself
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._redis.close()
