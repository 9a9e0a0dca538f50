"""Sending intents from the process that opened them: pricesync opens an exit on a trade and
sends its order from its own threads, with no queue hop between the commit and the broker call
(the hop costs 3–4 ms on this kind of machine, PERFORMANCE.md).

Exactly once holds as on the worker's path: intent_submit records and claims the Order before
the call (I4), so a late duplicate delivery (the sweep, the listener) finds it taken. Whatever
this sender cannot do is handed to the execute task, which retries: a full backlog, a broker
that could not be reached, a database error. If the process dies with intents not yet sent,
they are NEW intents, and the sweep sends them.
"""

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, connection, connections

from .services.submission import intent_submit, order_send

logger = logging.getLogger("aegis.execution")


def send_now(intent_id: str, *, broker) -> None:
    """Send a committed intent's order from this thread; whatever fails here is handed to the
    execute task, which retries (and if even that cannot be enqueued, the sweep sends it)."""
    _sending(intent_id, lambda: intent_submit(intent_id=intent_id, broker=broker))


def send_claimed(order, *, broker) -> None:
    """Send an order recorded and claimed in its intent's own transaction (the doorbell's
    common case): straight to the broker call. Failures go as send_now's do; the claim of a
    request that never left is released first (order_send), so the task can send it."""
    _sending(str(order.intent_id), lambda: order_send(order, broker))


def _sending(intent_id: str, send) -> None:
    started = time.perf_counter()
    try:
        outcome = send()
        logger.info("execution.sent_in_process intent_id=%s outcome=%s ms=%.2f", intent_id,
                    outcome.value, (time.perf_counter() - started) * 1000,
                    extra={"intent_id": intent_id})
    except Exception as exc:  # noqa: BLE001 - the worker's task retries what failed here
        if isinstance(exc, DatabaseError):
            connection.close()
        logger.warning("execution.in_process_failed intent_id=%s: %s: %s: handed to the "
                       "execute task", intent_id, type(exc).__name__, exc,
                       extra={"intent_id": intent_id})
        _hand_over(intent_id)


def _hand_over(intent_id: str) -> None:
    from .tasks import intent_execute

    try:
        intent_execute.delay(intent_id)
    except Exception as exc:  # noqa: BLE001 - the sweep sends NEW intents
        logger.error("execution.enqueue_failed intent_id=%s: %s: the sweep will send it",
                     intent_id, exc, extra={"intent_id": intent_id})


class InProcessSender:
    """Callable with an intent id after its commit; True when it took the intent. `claimed`
    takes an order recorded and claimed in its intent's transaction the same way."""

    def __init__(self, *, broker, lanes: int = 2, backlog: int = 64) -> None:
        self.broker = broker
        self.backlog = backlog
        # One thread per lane, each with its own database connection, closed on close().
        self._lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sender-{i}")
                       for i in range(lanes)]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False

    def __call__(self, intent_id: str) -> bool:
        return self._take(send_now, intent_id)

    def claimed(self, order) -> bool:
        return self._take(send_claimed, order)

    def _take(self, send, what) -> bool:
        with self._lock:
            if self._closed or self._pending >= self.backlog:
                return False
            self._pending += 1
        self._lanes[next(self._turn) % len(self._lanes)].submit(self._send, send, what)
        return True

    def _send(self, send, what) -> None:
        try:
            send(what, broker=self.broker)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Send what was taken, then close each lane's database connection."""
        with self._lock:
            self._closed = True
        for lane in self._lanes:
            lane.submit(connections.close_all)
            lane.shutdown(wait=True)
