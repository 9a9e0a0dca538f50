"""Circuit breakers around KIS (pybreaker): one per app key and use ("query": prices, holdings,
inquiries; "order": submit and cancel), CLOSED → OPEN after `fail_max` failures in a row, a
trial call let through `reset_s` seconds later (HALF_OPEN), CLOSED again when it succeeds.

The state lives in Redis (pybreaker's CircuitRedisStorage), so every process sees a breaker open
as soon as one process opened it; on the embedded default (no Redis) it lives in the process.
Only what says KIS is unwell counts as a failure: no answer, a 5xx, a timeout, an answer this
client cannot read. A refusal (an order refused, a rate limit, an unknown symbol) is KIS working.

pybreaker holds a lock for the whole guarded call, which would make a process's KIS calls take
turns; each thread therefore gets its own CircuitBreaker object over the shared storage.

While Redis does not answer (within its timeout: core/redis_clients.py), each breaker keeps
its state in the process instead, counting the failures it sees itself, so that it still
opens when KIS is unwell; Redis is asked again every settings.REDIS_RETRY_S, and the shared
state is used again once it answers. The outage is logged once, not on every call.
"""

import calendar
import datetime as dt
import logging
import threading
from collections.abc import Callable

import pybreaker
import redis

from core import redis_clients

from .errors import KisAmbiguousOutcome, KisCircuitOpen, KisProtocolError, KisUnavailable

logger = logging.getLogger("aegis.kis")

FAILURES = (KisUnavailable, KisAmbiguousOutcome, KisProtocolError)
USES = ("query", "order")

# on_transition(name, old_state, new_state, opened_at_epoch): the state names are pybreaker's
# "closed", "open", "half-open"; opened_at_epoch names the outage (None without Redis).
Transition = Callable[[str, str, str, int | None], None]


def _not_a_failure(exc: BaseException) -> bool:
    return not isinstance(exc, FAILURES)


class _SharedStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, one round trip lighter on every successful call (the order
    path's common case): the state read before the call also reads the failure counter (one
    MGET), and the success after it writes the counter only when that read found failures.

    The trade: a failure that another process counts between this call's read and its success
    is not cleared by this success, so in that interleaving the breaker can open one failure
    early. That is the safe side: it tries again after `reset_s`.

    Every operation is also applied to a state in the process (`local`), which answers while
    Redis does not (`outage`): pybreaker's own storage would log an exception and take the
    breaker as closed on every call instead.
    """

    def __init__(
        self, state: str, redis_object, *, namespace: str, outage: redis_clients.Outage
    ) -> None:
        self._outage = outage
        self.local = pybreaker.CircuitMemoryStorage(state)
        self._seen = threading.local()  # the failures this thread's last state read found
        pybreaker.CircuitBreakerStorage.__init__(self, "redis")
        self._redis = redis_object
        self._namespace_name = namespace
        self._fallback_circuit_state = state
        self._initial_state = str(state)
        self._cluster_mode = False
        self._shared(self._initialize_redis_state, self._initial_state)

    def _shared(self, op, *args):
        """op(*args) on Redis; _DOWN, without asking, while Redis is taken as down, or when it
        fails now (the outage begins)."""
        if self._outage.active():
            return _DOWN
        try:
            result = op(*args)
        except redis.RedisError as exc:
            self._outage.failed(exc)
            return _DOWN
        self._outage.answered()
        return result

    def keys(self) -> list[str]:
        """The Redis keys a state read reads: the state and the failure counter."""
        return [self._namespace("state"), self._namespace("fail_counter")]

    def prefetched(self, state: bytes | None, failures: bytes | None) -> None:
        """What a caller read of keys() just now (with its rate slot, KisClient._ahead, while
        something else is waited for): this thread's next guarded call uses it instead of a
        read of its own. A state that is missing is left for the call's own read (which
        writes it afresh)."""
        self._seen.prefetched = self._seen_state(state, failures)

    def _seen_state(self, state: bytes | None, failures: bytes | None) -> str | None:
        """The state read (None when missing), noting the failures read with it."""
        self._seen.failures = int(failures) if failures is not None else None
        return None if state is None else state.decode()

    def _read_state(self) -> str:
        prefetched = getattr(self._seen, "prefetched", None)
        if prefetched is not None:
            self._seen.prefetched = None
            return prefetched
        return self._read_redis()

    def _read_redis(self) -> str:
        read = self._shared(self._redis.mget, *self.keys())
        if read is _DOWN:
            self._seen.failures = None
            return self.local.state
        seen = self._seen_state(*read)
        if seen is None:  # lost (Redis restarted, key evicted): written afresh, as pybreaker does
            self._shared(self._initialize_redis_state, self._fallback_circuit_state)
            return self._fallback_circuit_state
        return seen

    def _write_state(self, state: str) -> None:
        self.local.state = state
        self._shared(self._redis.set, self._namespace("state"), str(state))

    state = property(_read_state, _write_state)

    def increment_counter(self) -> None:
        self.local.increment_counter()
        self._shared(self._redis.incr, self._namespace("fail_counter"))

    def reset_counter(self) -> None:
        self.local.reset_counter()
        if getattr(self._seen, "failures", None) == 0 and not self._outage.down:
            return
        if self._shared(self._redis.set, self._namespace("fail_counter"), 0) is not _DOWN:
            self._seen.failures = 0

    def increment_success_counter(self) -> None:
        self.local.increment_success_counter()
        self._shared(self._redis.incr, self._namespace("success_counter"))

    def reset_success_counter(self) -> None:
        self.local.reset_success_counter()
        self._shared(self._redis.set, self._namespace("success_counter"), 0)

    def _count(self, name: str, local: int) -> int:
        value = self._shared(self._redis.get, self._namespace(name))
        return local if value is _DOWN else int(value or 0)

    @property
    def counter(self) -> int:
        return self._count("fail_counter", self.local.counter)

    @property
    def success_counter(self) -> int:
        return self._count("success_counter", self.local.success_counter)

    def _read_opened_at(self) -> dt.datetime | None:
        value = self._shared(self._redis.get, self._namespace("opened_at"))
        if value is _DOWN:
            return self.local.opened_at
        return dt.datetime.fromtimestamp(int(value), dt.UTC) if value else None

    def _write_opened_at(self, now: dt.datetime) -> None:
        self.local.opened_at = now
        key, stamp = self._namespace("opened_at"), int(calendar.timegm(now.timetuple()))

        def set_if_greater(pipe) -> None:  # pybreaker's: the latest opening wins
            current = pipe.get(key)
            pipe.multi()
            if not current or stamp > int(current):
                pipe.set(key, stamp)

        self._shared(self._redis.transaction, set_if_greater, key)

    opened_at = property(_read_opened_at, _write_opened_at)


_DOWN = object()


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, breakers: "Breakers", use: str) -> None:
        self.breakers, self.use = breakers, use

    def state_change(self, cb, old_state, new_state) -> None:
        old = old_state.name if old_state is not None else ""
        self.breakers.transition(self.use, old, new_state.name)


class Breakers:
    """The two breakers of one app key pair."""

    def __init__(
        self,
        *,
        fingerprints: dict[str, str],
        fail_max: int,
        reset_s: float,
        redis_url: str = "",
        on_transition: Transition | None = None,
    ) -> None:
        self.fail_max, self.reset_s = fail_max, reset_s
        self.on_transition = on_transition
        self.fingerprints = fingerprints
        self._local = threading.local()
        self._storage: dict[str, pybreaker.CircuitBreakerStorage] = {}
        self._redis = redis_clients.client(redis_url) if redis_url else None
        # One outage for the breakers of both uses: they share one Redis.
        self.outage = redis_clients.Outage("kis.breaker", logger)
        for use in USES:
            if self._redis is None:
                self._storage[use] = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            else:
                self._storage[use] = _SharedStorage(
                    pybreaker.STATE_CLOSED,
                    self._redis,
                    namespace=self.namespace(use, fingerprints[use]),
                    outage=self.outage,
                )

    @staticmethod
    def namespace(use: str, fingerprint: str) -> str:
        return f"aegis:kis:{use}:{fingerprint}"

    def name(self, use: str) -> str:
        return f"kis-{use}"

    def _breaker(self, use: str) -> pybreaker.CircuitBreaker:
        mine = getattr(self._local, "breakers", None)
        if mine is None:
            mine = self._local.breakers = {}
        breaker = mine.get(use)
        if breaker is None:
            breaker = mine[use] = pybreaker.CircuitBreaker(
                fail_max=self.fail_max,
                reset_timeout=self.reset_s,
                exclude=[_not_a_failure],
                listeners=[_Listener(self, use)],
                state_storage=self._storage[use],
                name=self.name(use),
                throw_new_error_on_trip=False,
            )  # the call's own error: ambiguous stays ambiguous
        return breaker

    def call(self, breaker: str, fn, /, *args, **kwargs):
        """`fn(*args, **kwargs)` guarded by the breaker of `breaker` (a use: query, order);
        KisCircuitOpen, without calling it, while that breaker is open."""
        try:
            return self._breaker(breaker).call(fn, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            raise KisCircuitOpen(f"the KIS {breaker} circuit is open: not called") from None

    def shared_keys(self, use: str) -> list[str]:
        """The Redis keys of the state of the breaker of `use` (none without Redis), for
        prefetched()."""
        storage = self._storage[use]
        return storage.keys() if isinstance(storage, _SharedStorage) else []

    def prefetched(self, use: str, values: list) -> None:
        """The values of shared_keys(use), read by the caller just now: this thread's next call
        of `use` takes its state from them instead of reading it."""
        storage = self._storage[use]
        if isinstance(storage, _SharedStorage):
            self._breaker(use)  # made first: making it reads the state too
            storage.prefetched(*values)

    def state(self, use: str) -> str:
        return self._storage[use].state

    def opened_at(self, use: str) -> int | None:
        at = self._storage[use].opened_at
        return int(at.timestamp()) if at is not None else None

    def _first_to_report(self, use: str, new: str) -> bool:
        """Every process that notices a change reports it, and two processes can trip the
        breaker at once: the first report of a state within `reset_s` wins (a real change of
        state is at least `reset_s` after the last one of its kind)."""
        if self._redis is None or self.outage.active():
            return True  # the alert's own key still keeps it to one record
        key = f"{self.namespace(use, self.fingerprints[use])}:reported:{new}"
        try:
            return bool(self._redis.set(key, 1, nx=True, px=max(1, int(self.reset_s * 1000))))
        except redis.RedisError as exc:
            self.outage.failed(exc)
            return True

    def transition(self, use: str, old: str, new: str) -> None:
        if not self._first_to_report(use, new):
            return
        logger.warning(
            "kis.breaker name=%s %s → %s",
            self.name(use),
            old or "-",
            new,
            extra={"breaker": self.name(use), "state": new},
        )
        if self.on_transition is None:
            return
        try:
            self.on_transition(self.name(use), old, new, self.opened_at(use))
        except Exception:  # noqa: BLE001 - an alert that fails never breaks a KIS call
            logger.exception("kis.breaker_alert_failed name=%s", self.name(use))
